import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { CommandContext } from '../../src/commands/context.ts';
import { parseInput } from '../../src/commands/parse.ts';
import type { CommandOutput } from '../../src/commands/types.ts';
import { parseConfig } from '../../src/config/config.ts';
import { fedStateCommand, parseTime, roomIdServer } from '../../src/federation-commands/fed-commands.ts';
import { fetchRoomState } from '../../src/federation/room-state.ts';
import { safeName, stateFilePath } from '../../src/federation-commands/state-file.ts';
import { summariseState, summaryHtml, summaryLines } from '../../src/federation-commands/state-summary.ts';
import { hashAndSignEvent, signingKeyFromSeed } from '../../src/federation/index.ts';
import type { JsonObject } from '../../src/federation/index.ts';
import type { FederationProvider } from '../../src/federation/federation-access.ts';
import { ok, type Result } from '../../src/util/result.ts';
import { HS1, HS2, buildRoom, fakeClient, keys, serve, type FixtureRoom } from './fed-commands-fixture.ts';
import { unwrap, version } from './federation-test-key.ts';

const ids = (room: FixtureRoom, names: readonly string[]) => names.map((n) => room.events.get(n)!.id);
const pdu = (room: FixtureRoom, name: string) => room.events.get(name)!.pdu;
const sortedIds = (list: readonly string[]) => [...list].sort();

/** Re-signs an event's content as `server` with another key: what a forger without the real key can do. */
function resign(room: FixtureRoom, event: JsonObject, server: string, seedByte: number, keyVersion: string): JsonObject {
  const { signatures: _s, hashes: _h, ...base } = event;
  const impostor = unwrap(signingKeyFromSeed(keyVersion, new Uint8Array(32).fill(seedByte)));
  return hashAndSignEvent(base, version(room.roomVersion), server, impostor);
}

describe('fed state: fetching and verifying a room\'s state', () => {
  for (const roomVersion of ['1', '10', '12']) {
    it(`room version ${roomVersion}: the state now is the state after the latest event, every event verified`, async () => {
      const room = buildRoom(roomVersion);
      const calls: string[] = [];
      const got = unwrap(await fetchRoomState({ client: fakeClient(HS2, serve(room), calls), keys }, room.roomId, HS2, { kind: 'ts', ts: 1_800_000_000_000 }));
      assert.equal(got.roomVersion, roomVersion);
      assert.equal(got.position, 'after');
      assert.equal(got.eventId, room.events.get('msg')!.id);
      assert.deepEqual(sortedIds(got.stateIds), sortedIds(ids(room, room.stateNames)));
      assert.deepEqual(got.counts, { state: { received: 10, verified: 10, redacted: 0, failed: 0 }, authChain: { received: 4, verified: 4, redacted: 0, failed: 0 } });
      assert.deepEqual(got.rejected, []);
      assert.deepEqual(got.warnings, []);
      // Every kept event carries its (verified) id, also where the wire format has none.
      assert.deepEqual(got.state.map((e) => e['event_id']), got.stateIds);
      assert.deepEqual(calls.map((c) => c.split('?')[0]!.split(' ').slice(0, 2).join(' ') + ' ' + c.split(' ')[2]!.split('/').slice(0, 5).join('/')), [
        `GET ${HS2} /_matrix/federation/v1/timestamp_to_event`,
        `GET ${HS2} /_matrix/federation/v1/state`,
        `GET ${HS2} /_matrix/federation/v1/event`,
      ]);
      assert.match(calls[0]!, /\?dir=b&ts=1800000000000$/);
      assert.ok(calls[1]!.endsWith(`?event_id=${encodeURIComponent(got.eventId)}`));
    });
  }

  it('--at an event gives the state before it, without asking for the event itself', async () => {
    const room = buildRoom('10');
    const calls: string[] = [];
    const name2 = room.events.get('name2')!.id;
    const got = unwrap(await fetchRoomState({ client: fakeClient(HS2, serve(room), calls), keys }, room.roomId, HS2, { kind: 'event', eventId: name2 }));
    assert.equal(got.position, 'before');
    assert.equal(got.eventId, name2);
    assert.equal(calls.length, 1);
    assert.equal(summariseState(got.state, '10').name, 'First');
    assert.deepEqual(summariseState(got.state, '10').membershipTotals, { join: 1 });
  });

  it('applies the latest event when it is a state event (the state as of a moment includes it)', async () => {
    const room = buildRoom('10');
    const fake = serve(room);
    const name2 = room.events.get('name2')!;
    fake.latest = { event_id: name2.id, origin_server_ts: name2.pdu['origin_server_ts'] as number };
    const got = unwrap(await fetchRoomState({ client: fakeClient(HS2, fake), keys }, room.roomId, HS2, { kind: 'ts', ts: 1 }));
    assert.equal(got.position, 'after');
    assert.equal(summariseState(got.state, '10').name, 'Second');
    assert.ok(got.stateIds.includes(name2.id));
    assert.ok(!got.stateIds.includes(room.events.get('name1')!.id));
  });

  it('drops and counts forged events, never trusting them; altered content keeps only the redacted copy', async () => {
    const room = buildRoom('10');
    const foreign = resign(room, { ...pdu(room, 'bob'), room_id: '!elsewhere:hs2.test' }, HS2, 2, 'a_two'); // hs2's real key
    const statePdus = [
      ...['create', 'bob', 'pl', 'jr', 'hv', 'name2', 'carol', 'dave'].map((n) => pdu(room, n)),
      resign(room, pdu(room, 'alice'), HS1, 9, 'a_one'), // hs1's key id, someone else's key
      { ...pdu(room, 'topic'), content: { topic: 'forged topic' } }, // content altered after signing
      foreign, // properly signed by hs2, but for another room
      resign(room, { ...pdu(room, 'hv'), state_key: 'x' }, HS2, 7, 'a_unknown'), // signed with a key hs2 never published
      'not an event',
    ];
    const authChain = [...['create', 'bob', 'pl'].map((n) => pdu(room, n)), { ...pdu(room, 'jr'), origin_server_ts: 5 }];
    const got = unwrap(await fetchRoomState({ client: fakeClient(HS2, serve(room, { statePdus, authChain })), keys }, room.roomId, HS2, { kind: 'ts', ts: Date.now() }));
    assert.deepEqual(got.counts.state, { received: 13, verified: 9, redacted: 1, failed: 4 });
    assert.deepEqual(got.counts.authChain, { received: 4, verified: 3, redacted: 0, failed: 1 });
    assert.deepEqual(got.rejected.map((r) => `${r.where} ${r.code}`).sort(), [
      'auth_chain E_BAD_SIGNATURE',
      'state E_BAD_SIGNATURE',
      'state E_MALFORMED_EVENT',
      'state E_UNKNOWN_KEY',
      'state E_WRONG_ROOM',
    ]);
    // The foreign-room event is validly signed: it fails on the room check alone.
    const wrongRoom = await fetchRoomState({ client: fakeClient(HS2, serve(room, { statePdus: [pdu(room, 'create'), foreign] })), keys }, room.roomId, HS2, { kind: 'event', eventId: room.events.get('msg')!.id });
    assert.deepEqual(unwrap(wrongRoom).rejected.map((r) => r.code), ['E_WRONG_ROOM']);
    // The forged join is not in the state: alice does not count as a member.
    const summary = summariseState(got.state, '10');
    assert.deepEqual(summary.membersByServer, [
      { server: HS1, memberships: { leave: 1 } },
      { server: HS2, memberships: { join: 1, invite: 1 } },
    ]);
    // The altered topic survives only redacted: no content.
    const topic = got.state.find((e) => e['type'] === 'm.room.topic')!;
    assert.deepEqual(topic['content'], {});
    assert.equal(summary.topic, null);
  });

  it('refuses the whole answer when the create event does not verify or names another room', async () => {
    const room = buildRoom('10');
    const forgedCreate = resign(room, pdu(room, 'create'), HS2, 9, 'a_two');
    const bad = await fetchRoomState({ client: fakeClient(HS2, serve(room, { statePdus: [forgedCreate, pdu(room, 'bob')], authChain: [] })), keys }, room.roomId, HS2, { kind: 'event', eventId: room.events.get('msg')!.id });
    assert.equal(bad.ok ? 'ok' : bad.error.code, 'E_BAD_CREATE_EVENT');

    const v12 = buildRoom('12');
    const fake = serve(v12);
    const otherId = `!${'B'.repeat(43)}`;
    const mismatch = await fetchRoomState({ client: fakeClient(HS2, fake), keys }, otherId, HS2, { kind: 'event', eventId: v12.events.get('msg')!.id });
    assert.equal(mismatch.ok ? 'ok' : mismatch.error.code, 'E_ROOM_ID_MISMATCH');

    const noCreate = await fetchRoomState({ client: fakeClient(HS2, serve(room, { statePdus: [pdu(room, 'bob')], authChain: [] })), keys }, room.roomId, HS2, { kind: 'event', eventId: room.events.get('msg')!.id });
    assert.equal(noCreate.ok ? 'ok' : noCreate.error.code, 'E_NO_CREATE_EVENT');
  });

  it('explains a 403 (our server is not in the room) and a 404 from timestamp_to_event', async () => {
    const room = buildRoom('10');
    const forbidden: Parameters<typeof fetchRoomState>[0]['client'] = {
      request: (async (destination: string) => ({
        ok: false,
        error: { code: 'M_FORBIDDEN', human: 'GET … 403 M_FORBIDDEN Host not in room.', log: '403', status: 403, errcode: 'M_FORBIDDEN', body: {}, destination },
      })) as Parameters<typeof fetchRoomState>[0]['client']['request'],
    };
    const denied = await fetchRoomState({ client: forbidden, keys }, room.roomId, HS2, { kind: 'ts', ts: 1 });
    assert.ok(!denied.ok);
    assert.equal(denied.error.code, 'M_FORBIDDEN');
    assert.match(denied.error.human, /Host not in room\. .*only to servers in the room/);
    const fake = serve(room);
    fake.latest = null;
    const none = await fetchRoomState({ client: fakeClient(HS2, fake), keys }, room.roomId, HS2, { kind: 'ts', ts: 1 });
    assert.ok(!none.ok);
    assert.match(none.error.human, /knows no event of .* at or before that time/);
  });
});

describe('fed state: summary', () => {
  it('groups members by server and membership, lists non-default power levels and thresholds', () => {
    const room = buildRoom('10');
    const s = summariseState(room.stateNames.map((n) => pdu(room, n)), '10');
    assert.equal(s.name, 'Second');
    assert.equal(s.topic, 'A topic');
    assert.equal(s.creator, `@bob:${HS2}`);
    assert.deepEqual(s.creators, []);
    assert.equal(s.joinRule, 'public');
    assert.equal(s.historyVisibility, 'shared');
    assert.deepEqual(s.membersByServer, [
      { server: HS1, memberships: { join: 1, leave: 1 } },
      { server: HS2, memberships: { join: 1, invite: 1 } },
    ]);
    assert.deepEqual(s.membershipTotals, { join: 2, invite: 1, leave: 1 });
    assert.deepEqual(s.powerLevels?.users, [[`@bob:${HS2}`, 100], [`@carol:${HS2}`, 50], [`@alice:${HS1}`, 20]]);
    assert.deepEqual(s.powerLevels?.events, [['m.room.name', 50]]);
    assert.equal(s.powerLevels?.ban, 50);
    assert.equal(s.powerLevels?.invite, 0);
    const text = summaryLines(s).join('\n');
    assert.match(text, /Members \(4: 2 join, 1 invite, 1 leave\) by server:\n {2}hs1\.test: 1 join, 1 leave\n {2}hs2\.test: 1 join, 1 invite/);
    assert.match(text, /Power levels: @bob:hs2\.test 100, @carol:hs2\.test 50, @alice:hs1\.test 20; everyone else 0/);
    assert.match(text, /thresholds: ban 50, kick 50, redact 50, invite 0, state 50, messages 0/);
    assert.match(text, /Join rule: public · history visibility: shared/);
  });

  it('room version 12: creators are named apart, above every level', () => {
    const room = buildRoom('12');
    const s = summariseState(room.stateNames.map((n) => pdu(room, n)), '12');
    assert.deepEqual(s.creators, [`@bob:${HS2}`]);
    assert.deepEqual(s.powerLevels?.users, [[`@carol:${HS2}`, 50], [`@alice:${HS1}`, 20]]);
    assert.match(summaryLines(s).join('\n'), /Creators \(above every power level\): @bob:hs2\.test/);
  });

  it('uses spec defaults for missing keys, skips default-level users, and escapes HTML', () => {
    const events: JsonObject[] = [
      { type: 'm.room.name', state_key: '', content: { name: '<b>pwn</b> & co' } },
      { type: 'm.room.power_levels', state_key: '', content: { users: { '@a:x': 0, '@b:x': '75' }, users_default: 0 } },
      { type: 'm.room.member', state_key: 'not-a-user', content: { membership: 'join' } },
    ];
    const s = summariseState(events, '5');
    assert.deepEqual(s.powerLevels?.users, [['@b:x', 75]]);
    assert.equal(s.powerLevels?.stateDefault, 50);
    assert.equal(s.powerLevels?.invite, 0);
    assert.deepEqual(s.membersByServer, [{ server: '(not a user id)', memberships: { join: 1 } }]);
    const html = summaryHtml(s);
    assert.ok(html.includes('&lt;b&gt;pwn&lt;/b&gt; &amp; co'));
    assert.ok(!html.includes('<b>pwn'));
    assert.match(summaryLines(summariseState([], '10')).join('\n'), /no m\.room\.power_levels event/);
  });
});

describe('fed state: arguments', () => {
  it('parses --ts as milliseconds or ISO-8601, refusing seconds and other formats', () => {
    assert.deepEqual(parseTime('1700000000123'), ok(1_700_000_000_123));
    assert.deepEqual(parseTime('2025-06-01T12:00:00Z'), ok(Date.UTC(2025, 5, 1, 12)));
    assert.deepEqual(parseTime('2025-06-01T12:00:00.250+02:00'), ok(Date.UTC(2025, 5, 1, 10, 0, 0, 250)));
    assert.deepEqual(parseTime('2025-06-01'), ok(Date.UTC(2025, 5, 1)));
    for (const bad of ['1700000000', 'yesterday', '2025-13-45T99:99:99Z', '06/01/2025']) {
      const r = parseTime(bad);
      assert.equal(r.ok, false, bad);
    }
    assert.match((parseTime('1700000000') as { error: { human: string } }).error.human, /looks like seconds/);
  });

  it('takes the server from room ids up to v11, none from v12 ids', () => {
    assert.equal(roomIdServer('!abc:example.org'), 'example.org');
    assert.equal(roomIdServer('!abc:localhost:8448'), 'localhost:8448');
    assert.equal(roomIdServer(`!${'A'.repeat(43)}`), undefined);
  });

  it('makes safe file names from room ids', () => {
    assert.equal(safeName('!abc/../x:example.org'), '_abc_.._x_example.org');
    const p = stateFilePath('/dumps', '!a:b', Date.UTC(2025, 0, 2, 3, 4, 5, 6));
    assert.equal(p, '/dumps/fed-state/_a_b-2025-01-02T03-04-05-006Z.json');
  });
});

describe('fed state: the command', () => {
  let dumps: string;
  before(async () => {
    dumps = await mkdtemp(path.join(os.tmpdir(), 'steward-fed-state-'));
  });
  after(async () => {
    await rm(dumps, { recursive: true, force: true });
  });

  function ctx(room: FixtureRoom, frontEnd: 'room' | 'terminal' = 'room'): CommandContext {
    const config = unwrap(parseConfig({ homeserver: { url: 'http://127.0.0.1:8008', server_name: HS1 }, admin_room: { admins: [`@admin:${HS1}`] }, storage: { dumps } }, dumps));
    const federation: FederationProvider = {
      get: async () => ok({ client: fakeClient(HS2, serve(room)) as never, keyStore: null as never, keys }),
      close: () => {},
    };
    return { frontEnd, sender: undefined, roomId: undefined, commandEventId: undefined, config, federation } as unknown as CommandContext;
  }

  async function run(c: CommandContext, line: string[]): Promise<Result<CommandOutput>> {
    return fedStateCommand.execute(c, unwrap(parseInput(fedStateCommand, line)));
  }

  it('replies with the summary and writes the verified state to a private file', async () => {
    const room = buildRoom('10');
    const out = unwrap(await run(ctx(room), [room.roomId, '--server', HS2]));
    assert.equal(out.kind, 'reply');
    if (out.kind !== 'reply') return;
    assert.match(out.text, /as hs2\.test sees it, room version 10/);
    assert.match(out.text, /hs1\.test: 1 join, 1 leave/);
    assert.match(out.text, /Verified 10 of 10 state events and 4 of 4 auth chain events\./);
    assert.match(out.html, /<li><code>hs2\.test<\/code>: 1 join, 1 invite<\/li>/);
    const file = /Full state: (\S+)/.exec(out.text)![1]!;
    assert.ok(file.startsWith(path.join(dumps, 'fed-state', safeName(room.roomId))));
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await stat(path.dirname(file))).mode & 0o777, 0o700);
    const written = JSON.parse(await readFile(file, 'utf8'));
    assert.equal(written.room_id, room.roomId);
    assert.equal(written.at.position, 'after');
    assert.deepEqual(sortedIds(written.state.map((e: JsonObject) => e['event_id'])), sortedIds(ids(room, room.stateNames)));
    assert.equal(written.auth_chain.length, 4);
    assert.equal(written.summary.name, 'Second');
  });

  it('defaults to the room id\'s server, and needs --server for a v12 room id', async () => {
    const room = buildRoom('10');
    // The fixture room id names hs2.test: no --server needed.
    assert.ok(roomIdServer(room.roomId) === HS2);
    assert.equal((await run(ctx(room), [room.roomId])).ok, true);
    const v12 = buildRoom('12');
    const refused = await run(ctx(v12), [v12.roomId]);
    assert.ok(!refused.ok);
    assert.equal(refused.error.code, 'E_USAGE');
    assert.match(refused.error.human, /names no server .* add --server/);
    const out = unwrap(await run(ctx(v12), [v12.roomId, '--server', HS2]));
    assert.match(out.kind === 'reply' ? out.text : '', /Creators \(above every power level\): @bob:hs2\.test/);
  });

  it('--at gives the earlier state; --at with --ts or a malformed value is refused', async () => {
    const room = buildRoom('10');
    const out = unwrap(await run(ctx(room), [room.roomId, '--at', room.events.get('name2')!.id]));
    assert.match(out.kind === 'reply' ? out.text : '', /Name: First\n/);
    assert.match(out.kind === 'reply' ? out.text : '', /the state before it/);
    for (const args of [['--at', room.events.get('name2')!.id, '--ts', '1700000000000'], ['--at', 'nope'], ['--ts', 'soon']]) {
      const r = await run(ctx(room), [room.roomId, ...args]);
      assert.equal(r.ok ? 'ok' : r.error.code, 'E_USAGE', args.join(' '));
    }
  });
});
