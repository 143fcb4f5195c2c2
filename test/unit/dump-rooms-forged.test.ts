// `dump rooms` against a FAKE remote answering /state and /event with forged events: a bad
// signature (a power-levels escalation), altered content, an unknown key id, a key expired
// before the event, an event id that does not match its hash, and an /event answer for another
// event. Keys are served by the fake as a self-signed key response and checked by the real
// ServerKeyStore. Each forgery is rejected and counted, the room file records the counts, and
// nothing forged is in the file.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { computeEventId, hashAndSignEvent, signJson, signingKeyFromSeed, encodeBase64 } from '../../src/federation/index.ts';
import type { JsonObject, SigningKey } from '../../src/federation/index.ts';
import type { FederationAccess, FederationProvider } from '../../src/federation/federation-access.ts';
import type { FederationClient, FederationFailure } from '../../src/federation/federation-client.ts';
import { ServerKeyStore } from '../../src/federation/server-keys.ts';
import type { SynapseAdmin } from '../../src/homeserver/synapse-admin.ts';
import type { JobItemError, JobRecord, JobStore } from '../../src/jobs/job-store.ts';
import type { JobContext } from '../../src/jobs/runner.ts';
import { createLogger } from '../../src/log.ts';
import { dumpRoomsJob } from '../../src/dump/dump-rooms.ts';
import { verifyRoomState } from '../../src/dump/room-auth-chain.ts';
import { ok, type Failure, type Result } from '../../src/util/result.ts';
import { unwrap, version } from './federation-test-key.ts';

const OURS = 'hs1.test';
const REMOTE = 'remote.test';
const ROOM = `!forged:${OURS}`;
const CLEAN = `!clean:${OURS}`;
const LEFT = `!left:${OURS}`;
const T0 = Date.now() - 3600_000;
const log = createLogger({ level: 'silent' });

const ourKey = unwrap(signingKeyFromSeed('a_ours', new Uint8Array(32).fill(1)));
const remoteKey = unwrap(signingKeyFromSeed('a_new', new Uint8Array(32).fill(2)));
const remoteOldKey = unwrap(signingKeyFromSeed('a_old', new Uint8Array(32).fill(3)));
const strangerKey = unwrap(signingKeyFromSeed('nope', new Uint8Array(32).fill(4)));
const V10 = version('10');

const dirs: string[] = [];
after(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

interface Built {
  readonly id: string;
  readonly pdu: JsonObject;
}

function build(roomId: string, fields: JsonObject, server: string, key: SigningKey): Built {
  const pdu = hashAndSignEvent({ room_id: roomId, origin_server_ts: T0, prev_events: [], ...fields }, V10, server, key);
  return { id: unwrap(computeEventId(pdu, V10)), pdu };
}

/** A small, valid v10 room; `forge` may add or replace events of the answer. */
function room(roomId: string) {
  const alice = `@alice:${OURS}`;
  const ours = (fields: JsonObject) => build(roomId, { sender: alice, ...fields }, OURS, ourKey);
  const create = ours({ type: 'm.room.create', state_key: '', content: { creator: alice, room_version: '10' }, depth: 1, auth_events: [] });
  const join = ours({ type: 'm.room.member', state_key: alice, content: { membership: 'join' }, depth: 2, auth_events: [create.id], prev_events: [create.id] });
  const power = ours({
    type: 'm.room.power_levels', state_key: '', depth: 3, auth_events: [create.id, join.id], prev_events: [join.id],
    content: { users: { [alice]: 100 }, users_default: 0, events_default: 0, state_default: 50, ban: 50, kick: 50, redact: 50, invite: 0, events: {} },
  });
  const rules = ours({ type: 'm.room.join_rules', state_key: '', content: { join_rule: 'public' }, depth: 4, auth_events: [create.id, join.id, power.id], prev_events: [power.id] });
  const topic = ours({ type: 'm.room.topic', state_key: '', content: { topic: 'the real topic' }, depth: 5, auth_events: [create.id, join.id, power.id], prev_events: [rules.id] });
  const bob = build(roomId, {
    type: 'm.room.member', state_key: `@bob:${REMOTE}`, sender: `@bob:${REMOTE}`, content: { membership: 'join' }, depth: 6,
    auth_events: [create.id, power.id, rules.id], prev_events: [topic.id],
  }, REMOTE, remoteKey);
  const message = ours({ type: 'm.room.message', content: { msgtype: 'm.text', body: 'latest' }, depth: 7, auth_events: [create.id, join.id, power.id], prev_events: [bob.id] });
  const state = [create, join, power, rules, topic, bob];
  return { create, join, power, rules, topic, bob, message, state, authChain: [create, join, power, rules], ours };
}

const clean = room(CLEAN);
const forged = room(ROOM);

// The forgeries, each marked with a string that must not reach the file.
const escalated: JsonObject = { ...forged.power.pdu, content: { ...(forged.power.pdu.content as JsonObject), users_default: 100, 'org.example.marker': 'FORGED-SIGNATURE' } };
const alteredTopic: JsonObject = { ...forged.topic.pdu, content: { topic: 'FORGED-CONTENT' } };
const remoteMember = (name: string, key: SigningKey, marker: string): Built => build(ROOM, {
  type: 'm.room.member', state_key: `@${name}:${REMOTE}`, sender: `@${name}:${REMOTE}`, content: { membership: 'join', displayname: marker }, depth: 6,
  auth_events: [forged.create.id, forged.power.id, forged.rules.id], prev_events: [forged.topic.id],
}, REMOTE, key);
const unknownKey = remoteMember('mallory', strangerKey, 'FORGED-UNKNOWN-KEY');
const expiredKey = remoteMember('eve', remoteOldKey, 'FORGED-EXPIRED-KEY');
const wrongId = forged.ours({ type: 'org.example.state', state_key: 'x', content: { marker: 'FORGED-EVENT-ID' }, depth: 6, auth_events: [forged.create.id, forged.join.id, forged.power.id], prev_events: [forged.topic.id] });
const otherEvent = forged.ours({ type: 'm.room.message', content: { msgtype: 'm.text', body: 'FORGED-AT-EVENT' }, depth: 8, auth_events: [forged.create.id], prev_events: [forged.message.id] });
const FORGED_MARKERS = ['FORGED-SIGNATURE', 'FORGED-CONTENT', 'FORGED-UNKNOWN-KEY', 'FORGED-EXPIRED-KEY', 'FORGED-EVENT-ID', 'FORGED-AT-EVENT'];

const KEY_RESPONSE = signJson({
  server_name: REMOTE,
  valid_until_ts: Date.now() + 24 * 3600_000,
  verify_keys: { [remoteKey.keyId]: { key: encodeBase64(remoteKey.publicKey) } },
  old_verify_keys: { [remoteOldKey.keyId]: { key: encodeBase64(remoteOldKey.publicKey), expired_ts: T0 - 60_000 } },
}, REMOTE, remoteKey);

function answers(): Map<string, unknown> {
  const m = new Map<string, unknown>();
  const enc = encodeURIComponent;
  m.set(`${REMOTE} /_matrix/key/v2/server`, KEY_RESPONSE);
  m.set(`${OURS} /_matrix/federation/v1/state/${enc(CLEAN)}?event_id=${enc(clean.message.id)}`, { pdus: clean.state.map((e) => e.pdu), auth_chain: clean.authChain.map((e) => e.pdu) });
  m.set(`${OURS} /_matrix/federation/v1/event/${enc(clean.message.id)}`, { origin: OURS, pdus: [clean.message.pdu] });
  const state = [forged.create, forged.join, { pdu: escalated }, forged.rules, { pdu: alteredTopic }, forged.bob, unknownKey, expiredKey, { pdu: { ...wrongId.pdu, event_id: '$not-its-hash' } }];
  const chain = [forged.create, forged.join, { pdu: escalated }, forged.rules];
  m.set(`${OURS} /_matrix/federation/v1/state/${enc(ROOM)}?event_id=${enc(forged.message.id)}`, { pdus: state.map((e) => e.pdu), auth_chain: chain.map((e) => e.pdu) });
  // Asked for the latest event, the fake answers another one.
  m.set(`${OURS} /_matrix/federation/v1/event/${enc(forged.message.id)}`, { origin: OURS, pdus: [otherEvent.pdu] });
  return m;
}

function fakeRemote() {
  const table = answers();
  const requests: string[] = [];
  const client = {
    serverName: OURS,
    async request<T>(destination: string, method: string, path: string): Promise<Result<T, FederationFailure>> {
      requests.push(`${method} ${destination} ${path}`);
      const found = table.get(`${destination} ${path}`);
      if (found !== undefined) return ok(structuredClone(found) as T);
      const status = path.includes(encodeURIComponent(LEFT)) ? 403 : 404;
      const errcode = status === 403 ? 'M_FORBIDDEN' : 'M_NOT_FOUND';
      return { ok: false, error: { code: errcode, errcode, human: `${method} ${destination} ${path}: ${status} ${errcode}`, log: `${status}`, status, body: undefined, destination } };
    },
    close() {},
  };
  const keyStore = new ServerKeyStore(client, { serverName: OURS, signingKey: ourKey, notary: undefined }, { log });
  const access: FederationAccess = { client: client as unknown as FederationClient, keyStore, keys: keyStore.lookup };
  const provider: FederationProvider = { get: async () => ok(access), close() {} };
  return { provider, requests };
}

/** Synapse's admin API for the three rooms: details, current state (the truth), the latest event. */
function fakeAdmin(): SynapseAdmin {
  const latest: Record<string, string> = { [CLEAN]: clean.message.id, [ROOM]: forged.message.id, [LEFT]: '$left-latest' };
  const current = (r: ReturnType<typeof room>) => r.state.map((e) => ({ ...e.pdu, event_id: e.id }));
  const currentState: Record<string, unknown[]> = { [CLEAN]: current(clean), [ROOM]: current(forged), [LEFT]: [] };
  return {
    serverVersion: async () => ok({ server_version: '1.163.2' }),
    listRooms: async () => ok({ rooms: [CLEAN, ROOM, LEFT].map((room_id) => ({ room_id, version: '10' })), total_rooms: 3, offset: 0 }),
    room: async (roomId: string) => ok({ room_id: roomId, version: '10', name: roomId.slice(1, 6) }),
    roomState: async (roomId: string) => ok({ state: currentState[roomId] ?? [] }),
    forwardExtremities: async (roomId: string) => ok({ count: 1, results: [{ event_id: latest[roomId]!, depth: 7, received_ts: T0 }] }),
    roomAliases: async () => ok({ aliases: [] }),
  } as unknown as SynapseAdmin;
}

function fakeJobs() {
  const errors: JobItemError[] = [];
  const jobs = { errors: () => errors } as unknown as JobStore;
  return { jobs, errors };
}

function context(args: Record<string, unknown>, errors: JobItemError[]) {
  let done = 0;
  let total: number | null = null;
  const ctx: JobContext = {
    job: { id: 4, type: 'dump-rooms', args, resumedCount: 0 } as unknown as JobRecord,
    resumeFrom: undefined,
    signal: new AbortController().signal,
    log,
    setTotal: (n) => { total = n; },
    advance: (n = 1) => { done += n; },
    itemFailed: (item, failure: Failure) => { errors.push({ item, code: failure.code, message: failure.human, ts: Date.now() }); },
    checkpoint: () => undefined,
    counters: () => ({ done, failed: errors.length, total }),
  };
  return { ctx, progress: () => ({ done, total }) };
}

async function runDump(): Promise<{ dir: string; requests: string[]; result: Awaited<ReturnType<ReturnType<typeof dumpRoomsJob>['run']>> }> {
  const out = await mkdtemp(join(tmpdir(), 'steward-dump-rooms-'));
  dirs.push(out);
  const { provider, requests } = fakeRemote();
  const { jobs, errors } = fakeJobs();
  const { ctx } = context({ out, rooms: [], concurrency: 2 }, errors);
  const result = await dumpRoomsJob({ admin: fakeAdmin(), jobs, federation: provider, serverName: OURS, stewardVersion: 'test' }).run(ctx);
  const [dumpId] = await readdir(out);
  return { dir: join(out, dumpId!), requests, result };
}

describe('dump rooms: forged answers from a fake remote', () => {
  it('rejects and counts each forgery, keeps only verified events, and records it all in the room file', async () => {
    const { dir, result } = await runDump();
    assert.ok(result.ok, JSON.stringify(result));
    const text = await readFile(join(dir, 'rooms', `${encodeURIComponent(ROOM)}.json`), 'utf8');
    const doc = JSON.parse(text);
    const fed = doc.federation;

    assert.equal(fed.counts.state_events, 9);
    assert.equal(fed.counts.auth_chain_events, 4);
    assert.deepEqual(fed.counts.failed_by_code, { E_EVENT_ID_MISMATCH: 2, E_BAD_SIGNATURE: 2, E_UNKNOWN_KEY: 2 });
    assert.equal(fed.counts.failed, 6);
    assert.equal(fed.counts.verified, 8, 'create, join, rules in both lists; bob; the topic as its redacted copy');
    assert.equal(fed.counts.distinct_events, 5);
    assert.equal(fed.counts.redacted_copies_used, 1);
    assert.equal(fed.counts.state_events + fed.counts.auth_chain_events + 1, fed.counts.verified + fed.counts.failed);

    const reasons = (code: string) => fed.rejected.filter((r: any) => r.code === code);
    assert.deepEqual(reasons('E_EVENT_ID_MISMATCH').map((r: any) => [r.section, r.event_id]).sort(), [['at_event', forged.message.id], ['state', '$not-its-hash']].sort());
    assert.deepEqual(reasons('E_BAD_SIGNATURE').map((r: any) => r.section).sort(), ['auth_chain', 'state']);
    const unknown = reasons('E_UNKNOWN_KEY');
    assert.equal(unknown.length, 2);
    assert.ok(unknown.some((r: any) => /nope/.test(r.reason)), 'the unknown key id is named');
    assert.ok(unknown.some((r: any) => /a_old/.test(r.reason)), `the expired key is named: ${JSON.stringify(unknown)}`);

    // Nothing forged is in the file: not the escalation, not the altered text, not the members signed with bad keys.
    for (const marker of FORGED_MARKERS) assert.ok(!text.includes(marker), `${marker} is not in the file`);
    assert.ok(!JSON.stringify(fed).includes('the real topic'), 'the redacted copy has no topic either (only the admin API part has it)');
    const kept = [...fed.state, ...fed.auth_chain];
    assert.ok(kept.every((e: any) => e.pdu.type !== 'm.room.power_levels'));
    assert.ok(!kept.some((e: any) => [unknownKey.id, expiredKey.id, wrongId.id].includes(e.event_id)));
    const topic = fed.state.find((e: any) => e.pdu.type === 'm.room.topic');
    assert.equal(topic.event_id, forged.topic.id);
    assert.equal(topic.redacted_copy, true);
    assert.deepEqual(topic.pdu.content, {});
    assert.equal(fed.at_event, null);

    // The dropped power levels are an auth event of others: the chain does not close, and says where.
    assert.equal(fed.auth_chain_closed, false);
    assert.deepEqual(fed.missing_auth_events, [forged.power.id]);
    assert.equal(fed.matches_current_state, false);
    assert.deepEqual(fed.current_state_differences.only_in_current_state.map((e: any) => e.event_id), [forged.power.id]);

    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
    assert.equal(manifest.counts.events_failed, 6);
    assert.equal(manifest.counts.redacted_copies_used, 1);
    assert.equal(manifest.counts.rooms_auth_chain_open, 1);
  });

  it('accepts a clean answer from the same remote: all verified, closed, matching the current state', async () => {
    const { dir } = await runDump();
    const doc = JSON.parse(await readFile(join(dir, 'rooms', `${encodeURIComponent(CLEAN)}.json`), 'utf8'));
    const fed = doc.federation;
    assert.equal(fed.counts.failed, 0, JSON.stringify(fed.rejected));
    assert.equal(fed.counts.verified, 6 + 4 + 1);
    assert.equal(fed.counts.distinct_events, 7);
    assert.equal(fed.auth_chain_closed, true);
    assert.equal(fed.matches_current_state, true);
    assert.equal(fed.at_event.event_id, clean.message.id);
    assert.ok(fed.state.some((e: any) => e.event_id === clean.bob.id), "the remote member's join verifies with the remote's current key");
  });

  it('records a room our server no longer answers for as a per-room error and carries on', async () => {
    const { dir, result } = await runDump();
    assert.ok(result.ok);
    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
    assert.equal(manifest.state, 'complete');
    assert.equal(manifest.counts.rooms_total, 3);
    assert.equal(manifest.counts.rooms_dumped, 2);
    assert.equal(manifest.counts.rooms_failed, 1);
    assert.equal(manifest.errors[0].room, LEFT);
    assert.equal(manifest.errors[0].code, 'M_FORBIDDEN');
    assert.match(manifest.errors[0].message, /still in/);
    const left = JSON.parse(await readFile(join(dir, 'rooms', `${encodeURIComponent(LEFT)}.json`), 'utf8'));
    assert.equal(left.federation, null);
    assert.equal(left.errors.federation.code, 'M_FORBIDDEN');
    assert.equal(left.details.room_id, LEFT);
  });

  it('rejects the old key because it had expired: the same key verifies an event from before its expiry', async () => {
    const { provider } = fakeRemote();
    const access = await provider.get();
    assert.ok(access.ok);
    const before = build(ROOM, {
      type: 'm.room.member', state_key: `@eve:${REMOTE}`, sender: `@eve:${REMOTE}`, content: { membership: 'join' }, depth: 6,
      origin_server_ts: T0 - 120_000, auth_events: [forged.create.id], prev_events: [],
    }, REMOTE, remoteOldKey);
    const answer = { atEventId: forged.create.id, atEvent: forged.create.pdu, pdus: [forged.create.pdu, before.pdu, expiredKey.pdu], authChain: [] };
    const verified = unwrap(await verifyRoomState(answer, ROOM, '10', access.value.keys));
    assert.deepEqual(verified.state.map((e) => e.event_id), [forged.create.id, before.id]);
    assert.deepEqual(verified.rejected.map((r) => [r.event_id, r.code]), [[null, 'E_UNKNOWN_KEY']]);
  });

  it('drops events of another room, non-state events in the state, and a second event for one state key', async () => {
    const { provider } = fakeRemote();
    const access = await provider.get();
    assert.ok(access.ok);
    const secondTopic = forged.ours({ type: 'm.room.topic', state_key: '', content: { topic: 'second' }, depth: 6, auth_events: [forged.create.id], prev_events: [] });
    const answer = {
      atEventId: forged.message.id,
      atEvent: forged.message.pdu,
      pdus: [forged.create.pdu, clean.join.pdu, forged.message.pdu, forged.topic.pdu, secondTopic.pdu, forged.topic.pdu],
      authChain: [forged.create.pdu, forged.create.pdu],
    };
    const verified = unwrap(await verifyRoomState(answer, ROOM, '10', access.value.keys));
    assert.deepEqual(verified.state.map((e) => e.event_id), [forged.create.id, forged.topic.id]);
    assert.deepEqual(verified.authChain.map((e) => e.event_id), [forged.create.id]);
    assert.deepEqual(verified.rejected.map((r) => r.code), ['E_WRONG_ROOM', 'E_NOT_STATE', 'E_STATE_CONFLICT', 'E_DUPLICATE', 'E_DUPLICATE']);
    assert.equal(verified.counts.verified, 4);
    assert.equal(verified.counts.failed, 5);
  });
});
