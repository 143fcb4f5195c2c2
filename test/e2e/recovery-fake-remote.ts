// A lying homeserver for the rejoin tests: real TLS (self-signed), a real signing key served
// on /_matrix/key/v2/server, and room state that is whatever the test hands it — tampered
// copies of real state, or forged rooms. It checks nothing and answers everything.
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import {
  computeEventId, hashAndSignEvent, publicKeyBase64, roomVersion, signingKeyFromSeed, signJson,
  type JsonObject, type SigningKey,
} from '../../src/federation/index.ts';
import { writeSelfSignedCert } from '../rig/keys.ts';

export interface FakeRoom {
  /** What timestamp_to_event answers, and the event /event answers for it. */
  readonly latestEventId: string;
  readonly latestEvent: unknown;
  readonly pdus: unknown[];
  readonly authChain: unknown[];
}

export interface FakeRemote {
  readonly serverName: string;
  readonly key: SigningKey;
  readonly rooms: Map<string, FakeRoom>;
  /** Requests received, as "METHOD path". */
  readonly requests: string[];
  /** A room of version 10 created by this server, in which it claims `members` joined. */
  forgeRoom(roomId: string, members: readonly string[]): void;
  close(): Promise<void>;
}

function unwrap<T>(r: { ok: true; value: T } | { ok: false; error: { log: string } }): T {
  if (!r.ok) throw new Error(r.error.log);
  return r.value;
}

export async function startFakeRemote(): Promise<FakeRemote> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'steward-fake-remote-'));
  await writeSelfSignedCert(path.join(dir, 'tls.crt'), path.join(dir, 'tls.key'));
  const [cert, tlsKey] = await Promise.all([readFile(path.join(dir, 'tls.crt')), readFile(path.join(dir, 'tls.key'))]);
  const key = unwrap(signingKeyFromSeed('fake', randomBytes(32)));
  const rooms = new Map<string, FakeRoom>();
  const requests: string[] = [];
  let serverName = '';

  const server = https.createServer({ cert, key: tlsKey }, (req, res) => {
    const url = new URL(req.url ?? '/', 'https://fake');
    requests.push(`${req.method} ${url.pathname}`);
    const send = (status: number, body: unknown): void => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    req.resume();
    if (url.pathname === '/_matrix/key/v2/server') {
      const now = Date.now();
      send(200, signJson({ server_name: serverName, valid_until_ts: now + 3600_000, old_verify_keys: {}, verify_keys: { [key.keyId]: { key: publicKeyBase64(key) } } }, serverName, key));
      return;
    }
    const ev = /^\/_matrix\/federation\/v1\/event\/([^/]+)$/.exec(url.pathname);
    const holder = ev ? [...rooms.values()].find((r) => r.latestEventId === decodeURIComponent(ev[1]!)) : undefined;
    if (ev) {
      if (holder) send(200, { origin: serverName, origin_server_ts: Date.now(), pdus: [holder.latestEvent] });
      else send(404, { errcode: 'M_NOT_FOUND', error: 'no such event here' });
      return;
    }
    const m = /^\/_matrix\/federation\/v1\/(timestamp_to_event|state)\/([^/]+)$/.exec(url.pathname);
    const room = m ? rooms.get(decodeURIComponent(m[2]!)) : undefined;
    if (!m || !room) {
      send(404, { errcode: 'M_NOT_FOUND', error: 'no such room here' });
      return;
    }
    if (m[1] === 'timestamp_to_event') send(200, { event_id: room.latestEventId, origin_server_ts: Date.now() });
    else send(200, { pdus: room.pdus, auth_chain: room.authChain });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  serverName = `127.0.0.1:${(server.address() as AddressInfo).port}`;

  const v10 = unwrap(roomVersion('10'));
  const fakeUser = `@mallory:${serverName}`;
  const forgeRoom = (roomId: string, members: readonly string[]): void => {
    const ts = Date.now();
    const sign = (ev: JsonObject): JsonObject => hashAndSignEvent(ev, v10, serverName, key);
    const base = { room_id: roomId, origin_server_ts: ts, prev_events: [], auth_events: [], depth: 1 };
    const create = sign({ ...base, type: 'm.room.create', state_key: '', sender: fakeUser, content: { creator: fakeUser, room_version: '10' } });
    const creator = sign({ ...base, type: 'm.room.member', state_key: fakeUser, sender: fakeUser, content: { membership: 'join' }, depth: 2 });
    // The forgery: joins "by" users of another server, signed only with this server's key.
    const joins = members.map((u, i) => sign({ ...base, type: 'm.room.member', state_key: u, sender: u, content: { membership: 'join' }, depth: 3 + i }));
    const pdus = [create, creator, ...joins];
    const latest = pdus.pop()!;
    rooms.set(roomId, { latestEventId: unwrap(computeEventId(latest, v10)), latestEvent: latest, pdus, authChain: [create, creator] });
  };

  return {
    get serverName() {
      return serverName;
    },
    key,
    rooms,
    requests,
    forgeRoom,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
