// A small room signed by two fake servers, and a fake federation client that serves it, for the
// `fed state` / `fed query` unit tests.
import { computeEventId, hashAndSignEvent, roomIdOfCreateEvent, signingKeyFromSeed } from '../../src/federation/index.ts';
import type { JsonObject, KeyLookup, SigningKey } from '../../src/federation/index.ts';
import type { FederationFailure } from '../../src/federation/federation-client.ts';
import type { RoomStateDeps } from '../../src/federation/room-state.ts';
import { fail, ok } from '../../src/util/result.ts';
import type { Result } from '../../src/util/result.ts';
import { unwrap, version } from './federation-test-key.ts';

export const HS1 = 'hs1.test';
export const HS2 = 'hs2.test';
export const hs1Key = unwrap(signingKeyFromSeed('a_one', new Uint8Array(32).fill(1)));
export const hs2Key = unwrap(signingKeyFromSeed('a_two', new Uint8Array(32).fill(2)));
const KEYS: Record<string, SigningKey> = { [HS1]: hs1Key, [HS2]: hs2Key };

export const keys: KeyLookup = async (server, keyId) => {
  const key = KEYS[server];
  return key && key.keyId === keyId ? ok(key.publicKey) : fail('E_UNKNOWN_KEY', `no key ${keyId} for ${server}`);
};

export interface FixtureRoom {
  readonly roomId: string;
  readonly roomVersion: string;
  /** Signed PDUs by a short name, in creation order. */
  readonly events: Map<string, { id: string; pdu: JsonObject }>;
  /** Names of the events in the current state. */
  readonly stateNames: readonly string[];
}

function serverOf(userId: string): string {
  return userId.slice(userId.indexOf(':') + 1);
}

/**
 * bob@hs2 creates the room (name "First"), sets power levels (carol@hs2 50, alice@hs1 20),
 * a topic, renames it "Second"; alice@hs1 joins, carol@hs2 is invited, dave@hs1 left.
 */
export function buildRoom(roomVersion: string): FixtureRoom {
  const v = version(roomVersion);
  const events = new Map<string, { id: string; pdu: JsonObject }>();
  let roomId = '';
  let depth = 0;
  let ts = 1_700_000_000_000;
  let prev: string[] = [];
  const add = (name: string, type: string, stateKey: string | null, sender: string, content: JsonObject): void => {
    depth++;
    ts += 1000;
    const isCreate = type === 'm.room.create';
    const base: JsonObject = {
      type,
      ...(stateKey === null ? {} : { state_key: stateKey }),
      sender,
      content,
      origin_server_ts: ts,
      depth,
      prev_events: prev,
      auth_events: [],
      origin: serverOf(sender),
      ...(isCreate && v.roomIdIsCreateEventHash ? {} : { room_id: isCreate ? `!fixture:${HS2}` : roomId }),
      ...(v.eventIdFormat === 'server-generated' ? { event_id: `$${name}:${serverOf(sender)}` } : {}),
    };
    const pdu = hashAndSignEvent(base, v, serverOf(sender), KEYS[serverOf(sender)]!);
    const id = v.eventIdFormat === 'server-generated' ? String(base['event_id']) : unwrap(computeEventId(pdu, v));
    if (isCreate) roomId = unwrap(roomIdOfCreateEvent(pdu, v));
    events.set(name, { id, pdu });
    prev = [id];
  };
  add('create', 'm.room.create', '', `@bob:${HS2}`, { room_version: roomVersion, ...(v.roomIdIsCreateEventHash ? {} : { creator: `@bob:${HS2}` }) });
  add('bob', 'm.room.member', `@bob:${HS2}`, `@bob:${HS2}`, { membership: 'join' });
  const users: JsonObject = { [`@carol:${HS2}`]: 50, [`@alice:${HS1}`]: 20 };
  if (!v.roomIdIsCreateEventHash) users[`@bob:${HS2}`] = 100;
  add('pl', 'm.room.power_levels', '', `@bob:${HS2}`, { users, users_default: 0, events: { 'm.room.name': 50 }, state_default: 50, ban: 50, kick: 50, redact: 50, invite: 0, events_default: 0 });
  add('jr', 'm.room.join_rules', '', `@bob:${HS2}`, { join_rule: 'public' });
  add('hv', 'm.room.history_visibility', '', `@bob:${HS2}`, { history_visibility: 'shared' });
  add('name1', 'm.room.name', '', `@bob:${HS2}`, { name: 'First' });
  add('topic', 'm.room.topic', '', `@bob:${HS2}`, { topic: 'A topic' });
  add('name2', 'm.room.name', '', `@bob:${HS2}`, { name: 'Second' });
  add('alice', 'm.room.member', `@alice:${HS1}`, `@alice:${HS1}`, { membership: 'join' });
  add('carol', 'm.room.member', `@carol:${HS2}`, `@bob:${HS2}`, { membership: 'invite' });
  add('dave-join', 'm.room.member', `@dave:${HS1}`, `@dave:${HS1}`, { membership: 'join' });
  add('dave', 'm.room.member', `@dave:${HS1}`, `@dave:${HS1}`, { membership: 'leave' });
  add('msg', 'm.room.message', null, `@alice:${HS1}`, { body: 'hello' });
  return { roomId, roomVersion, events, stateNames: ['create', 'bob', 'pl', 'jr', 'hv', 'name2', 'topic', 'alice', 'carol', 'dave'] };
}

export interface FakeServer {
  /** The room's state as the server would answer /state with `event_id` = the given event (state before it). */
  stateAt: Map<string, { pdus: unknown[]; auth_chain: unknown[] }>;
  latest: { event_id: string; origin_server_ts: number } | null;
  eventsById: Map<string, unknown>;
}

/** A fake FederationClient that serves one fixture room from one server, recording requests. */
export function fakeClient(server: string, fake: FakeServer, calls: string[] = []): RoomStateDeps['client'] {
  const request = async (destination: string, method: string, path: string): Promise<Result<unknown, FederationFailure>> => {
    calls.push(`${method} ${destination} ${path}`);
    const notFound = (): Result<unknown, FederationFailure> => ({
      ok: false,
      error: { code: 'M_NOT_FOUND', human: `${method} ${destination} ${path}: 404 M_NOT_FOUND`, log: '404', status: 404, errcode: 'M_NOT_FOUND', body: { errcode: 'M_NOT_FOUND' }, destination },
    });
    if (destination !== server) return notFound();
    const url = new URL(path, 'https://x');
    if (url.pathname.startsWith('/_matrix/federation/v1/timestamp_to_event/')) return fake.latest ? ok(fake.latest) : notFound();
    if (url.pathname.startsWith('/_matrix/federation/v1/state/')) {
      const at = fake.stateAt.get(url.searchParams.get('event_id') ?? '');
      return at ? ok(at) : notFound();
    }
    if (url.pathname.startsWith('/_matrix/federation/v1/event/')) {
      const ev = fake.eventsById.get(decodeURIComponent(url.pathname.slice('/_matrix/federation/v1/event/'.length)));
      return ev ? ok({ origin: server, origin_server_ts: 1, pdus: [ev] }) : notFound();
    }
    if (url.pathname === '/_matrix/federation/v1/version') return ok({ server: { name: 'Fake', version: '1.0' } });
    return notFound();
  };
  return { request: request as RoomStateDeps['client']['request'] };
}

/** Serves the fixture: latest event "msg", state before it = the current state, auth chain = create, bob, pl, jr. */
export function serve(room: FixtureRoom, overrides: { statePdus?: unknown[]; authChain?: unknown[] } = {}): FakeServer {
  const pdu = (n: string) => room.events.get(n)!.pdu;
  const msg = room.events.get('msg')!;
  const eventsById = new Map<string, unknown>();
  for (const { id, pdu: p } of room.events.values()) eventsById.set(id, p);
  return {
    latest: { event_id: msg.id, origin_server_ts: msg.pdu['origin_server_ts'] as number },
    stateAt: new Map([
      [msg.id, { pdus: overrides.statePdus ?? room.stateNames.map(pdu), auth_chain: overrides.authChain ?? ['create', 'bob', 'pl', 'jr'].map(pdu) }],
      // Before the rename: the first name, and nobody from hs1 yet.
      [room.events.get('name2')!.id, { pdus: ['create', 'bob', 'pl', 'jr', 'hv', 'name1', 'topic'].map(pdu), auth_chain: ['create', 'bob', 'pl', 'jr'].map(pdu) }],
    ]),
    eventsById,
  };
}
