// The baseline for `steward dump rooms`: a plain script making the same admin API calls (room
// list, details, current state, forward extremities) and the same federation calls to our own
// server (/state at the latest event and /event, in parallel, signed with X-Matrix by Steward's
// own signing code) per room, `concurrency` rooms in flight, verifying every distinct event with
// the same verifyEvent (one verification per distinct event, as Steward does), checking the auth
// chain closes and comparing with the current state, and writing the same files the same way
// (temp file, fsync, rename, mode 0600). Plain fetch and node:https; no retries, no discovery or
// address guard, no job store, no framework.
//
// What it skips that Steward does (all cheap, no crypto): the per-event checks for a state
// event without state_key, two events for one (type, state_key), duplicates, and a PDU's own
// `event_id` claim; the key store (only our own key signs these rooms).
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { loadSigningKey, roomIdOfCreateEvent, roomVersion, verifyEvent, xMatrixAuthorization } from '../../src/federation/index.ts';
import type { JsonObject, KeyLookup, SigningKey } from '../../src/federation/index.ts';
import { fail, ok } from '../../src/util/result.ts';
import { call, callOk } from '../lib/http.ts';
import { forEachLimit } from '../lib/pool.ts';

export interface PlainRoomDumpOptions {
  readonly baseUrl: string;
  /** The appservice's as_token: the bot is a Synapse admin. */
  readonly asToken: string;
  readonly serverName: string;
  readonly signingKey: SigningKey;
  /** PEM of our server's TLS certificate (the rig's is self-signed). */
  readonly ca: string;
  readonly out: string;
  readonly concurrency: number;
}

export interface PlainRoomDumpResult {
  readonly directory: string;
  readonly roomsDir: string;
  readonly written: number;
  readonly failed: { room: string; error: string }[];
  readonly seconds: number;
}

const PAGE_SIZE = 100;
const enc = encodeURIComponent;

async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  const temp = path.join(path.dirname(file), `.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(value, null, 2)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, file);
}

const authIds = (pdu: JsonObject): string[] =>
  (Array.isArray(pdu['auth_events']) ? pdu['auth_events'] : []).map((a: unknown) => (Array.isArray(a) ? a[0] : a)).filter((a): a is string => typeof a === 'string');

export async function plainDumpRooms(o: PlainRoomDumpOptions): Promise<PlainRoomDumpResult> {
  const started = performance.now();
  const startedTs = Date.now();
  const admin = (p: string): string => `${o.baseUrl}/_synapse/admin${p}`;
  const auth = { token: o.asToken };
  const [host, port] = [o.serverName.slice(0, o.serverName.lastIndexOf(':')), Number(o.serverName.slice(o.serverName.lastIndexOf(':') + 1))];
  const agent = new https.Agent({ keepAlive: true, maxSockets: 32, ca: o.ca });

  const federation = (uri: string): Promise<any> => {
    const authorization = xMatrixAuthorization({ method: 'GET', uri, origin: o.serverName, destination: o.serverName }, o.signingKey);
    if (!authorization.ok) throw new Error(authorization.error.log);
    return new Promise((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', servername: host === 'localhost' ? 'localhost' : host, port, path: uri, method: 'GET', agent, headers: { authorization: authorization.value, host: o.serverName, accept: 'application/json' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if ((res.statusCode ?? 0) >= 300) reject(new Error(`GET ${uri} → ${res.statusCode} ${text.slice(0, 200)}`));
          else resolve(JSON.parse(text));
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  };
  const keys: KeyLookup = async (server, keyId) =>
    server === o.serverName && keyId === o.signingKey.keyId ? ok(o.signingKey.publicKey) : fail('E_UNKNOWN_KEY', `no key ${keyId} of ${server}`);

  const directory = path.join(o.out, `rooms-plain-${new Date().toISOString().replace(/[-:.]/g, '')}`);
  const roomsDir = path.join(directory, 'rooms');
  await mkdir(roomsDir, { recursive: true, mode: 0o700 });
  const version = await callOk<{ server_version: string }>('GET', admin('/v1/server_version'), auth);
  const manifest = (state: string, written: number, failed: { room: string; error: string }[]): Record<string, unknown> => ({
    format: 'steward.dump-manifest/1',
    kind: 'rooms',
    state,
    server_name: o.serverName,
    synapse_version: version.server_version,
    started_ts: startedTs,
    finished_ts: state === 'complete' ? Date.now() : null,
    counts: { rooms_dumped: written, rooms_failed: failed.length },
    errors: failed,
  });
  await writeJsonAtomic(path.join(directory, 'manifest.json'), manifest('in-progress', 0, []));

  async function* roomIds(): AsyncGenerator<string> {
    let from = 0;
    for (;;) {
      const page = await callOk<{ rooms: { room_id: string }[]; next_batch?: number }>('GET', admin(`/v1/rooms?from=${from}&limit=${PAGE_SIZE}&order_by=creator`), auth);
      for (const r of page.rooms) yield r.room_id;
      if (page.next_batch === undefined || page.next_batch === null) return;
      from = Number(page.next_batch);
    }
  }

  let written = 0;
  const failed: { room: string; error: string }[] = [];
  await forEachLimit(roomIds(), o.concurrency, async (roomId) => {
    try {
      const details = await callOk<Record<string, unknown>>('GET', admin(`/v1/rooms/${enc(roomId)}`), auth);
      const stateAnswer = await call('GET', admin(`/v1/rooms/${enc(roomId)}/state`), auth);
      const currentState = stateAnswer.status === 200 ? ((stateAnswer.json as { state: JsonObject[] }).state) : null;
      const versionId = String(details['version']);
      const v = roomVersion(versionId);
      if (!v.ok) throw new Error(v.error.log);
      const ext = await callOk<{ results: { event_id: string; depth: number; received_ts?: number }[] }>('GET', admin(`/v1/rooms/${enc(roomId)}/forward_extremities`), auth);
      const at = [...ext.results].sort((a, b) => b.depth - a.depth || (b.received_ts ?? 0) - (a.received_ts ?? 0))[0]!;
      const [st, ev] = await Promise.all([
        federation(`/_matrix/federation/v1/state/${enc(roomId)}?event_id=${enc(at.event_id)}`),
        federation(`/_matrix/federation/v1/event/${enc(at.event_id)}`),
      ]);

      const counts = { state_events: st.pdus.length, auth_chain_events: st.auth_chain.length, verified: 0, failed: 0, redacted_copies_used: 0, distinct_events: 0, failed_by_code: {} as Record<string, number> };
      const rejected: { section: string; event_id: string | null; code: string; reason: string }[] = [];
      const cache = new Map<string, Awaited<ReturnType<typeof verifyEvent>>>();
      const check = async (pdu: JsonObject, section: string, expected?: string): Promise<{ event_id: string; redacted_copy?: true; pdu: JsonObject } | null> => {
        const key = JSON.stringify(pdu);
        let r = cache.get(key);
        if (r === undefined) {
          r = await verifyEvent(pdu, versionId, keys, expected);
          cache.set(key, r);
        }
        const inRoom = r.ok ? (r.value.event['type'] === 'm.room.create' && v.value.roomIdIsCreateEventHash ? roomIdOfCreateEvent(r.value.event, v.value) : ok(r.value.event['room_id'])) : null;
        if (!r.ok || !inRoom?.ok || inRoom.value !== roomId) {
          const code = r.ok ? 'E_WRONG_ROOM' : r.error.code;
          counts.failed += 1;
          counts.failed_by_code[code] = (counts.failed_by_code[code] ?? 0) + 1;
          rejected.push({ section, event_id: r.ok ? r.value.eventId : null, code, reason: r.ok ? 'wrong room' : r.error.log });
          return null;
        }
        counts.verified += 1;
        if (r.value.redacted) counts.redacted_copies_used += 1;
        return r.value.redacted ? { event_id: r.value.eventId, redacted_copy: true, pdu: r.value.event } : { event_id: r.value.eventId, pdu: r.value.event };
      };
      const atEvent = Array.isArray(ev.pdus) && ev.pdus.length === 1 ? await check(ev.pdus[0], 'at_event', at.event_id) : null;
      const state = [];
      for (const pdu of st.pdus) {
        const kept = await check(pdu, 'state');
        if (kept) state.push(kept);
      }
      const authChain = [];
      for (const pdu of st.auth_chain) {
        const kept = await check(pdu, 'auth_chain');
        if (kept) authChain.push(kept);
      }
      const all = [...(atEvent ? [atEvent] : []), ...state, ...authChain];
      counts.distinct_events = new Set(all.map((e) => e.event_id)).size;
      const present = new Set(all.map((e) => e.event_id));
      const missing = new Set<string>();
      const createId = `$${roomId.slice(1)}`;
      for (const e of all) {
        for (const id of authIds(e.pdu)) if (!present.has(id)) missing.add(id);
        if (v.value.roomIdIsCreateEventHash && e.event_id !== createId && !present.has(createId)) missing.add(createId);
      }
      const after = new Map<string, { type: string; state_key: string; event_id: string }>();
      for (const e of [...state, ...(atEvent ? [atEvent] : [])]) {
        if (typeof e.pdu['state_key'] === 'string') after.set(`${e.pdu['type']}\u0000${e.pdu['state_key']}`, { type: String(e.pdu['type']), state_key: e.pdu['state_key'], event_id: e.event_id });
      }
      const current = new Map((currentState ?? []).map((e) => [`${e['type']}\u0000${e['state_key']}`, { type: String(e['type']), state_key: String(e['state_key']), event_id: String(e['event_id']) }]));
      const onlyInCurrent = [...current].filter(([k, e]) => after.get(k)?.event_id !== e.event_id).map(([, e]) => e);
      const onlyInFed = [...after].filter(([k, e]) => current.get(k)?.event_id !== e.event_id).map(([, e]) => e);
      const matches = currentState === null ? null : onlyInCurrent.length === 0 && onlyInFed.length === 0;

      const document: Record<string, unknown> = {
        format: 'steward.room-dump/1',
        room_id: roomId,
        dumped_ts: Date.now(),
        room_version: versionId,
        details,
        current_state: currentState,
        federation: {
          server: o.serverName,
          at_event_id: at.event_id,
          forward_extremities: ext.results.map((e) => ({ event_id: e.event_id, depth: e.depth })),
          counts,
          auth_chain_closed: missing.size === 0,
          missing_auth_events: [...missing].sort().slice(0, 100),
          missing_auth_events_count: missing.size,
          matches_current_state: matches,
          current_state_differences: matches === false ? { only_in_current_state: onlyInCurrent.slice(0, 100), only_in_federation: onlyInFed.slice(0, 100) } : null,
          rejected: rejected.slice(0, 100),
          at_event: atEvent,
          state,
          auth_chain: authChain,
        },
      };
      await writeJsonAtomic(path.join(roomsDir, `${enc(roomId)}.json`), document);
      written += 1;
    } catch (err) {
      failed.push({ room: roomId, error: err instanceof Error ? err.message : String(err) });
    }
  });
  agent.destroy();
  await writeJsonAtomic(path.join(directory, 'manifest.json'), manifest('complete', written, failed));
  return { directory, roomsDir, written, failed, seconds: (performance.now() - started) / 1000 };
}

/**
 * Run as a process of its own, like the Steward CLI it is compared with (fresh JIT, own memory):
 *   node bench/federation/plain-dump.ts '{"baseUrl":…,"asToken":…,"serverName":…,"signingKeyPath":…,"caFile":…,"out":…,"concurrency":4}'
 * Prints the result as one line of JSON.
 */
if (import.meta.main) {
  const args = JSON.parse(process.argv[2] ?? '{}') as Omit<PlainRoomDumpOptions, 'signingKey' | 'ca'> & { signingKeyPath: string; caFile: string };
  const key = await loadSigningKey(args.signingKeyPath);
  if (!key.ok) throw new Error(key.error.log);
  const result = await plainDumpRooms({ ...args, signingKey: key.value.key, ca: await readFile(args.caFile, 'utf8') });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
