// `!dump rooms` end to end, beside two federating Synapses (Steward on hs-a): rooms of versions
// 1, 6, 10, 11 and 12 with several state changes and a member from hs-b. Every state and
// auth-chain event in the files is verified again here with the servers' own keys (read from
// their key files, independent of Steward's key store), the auth chain closes, and the state
// matches the admin API's current state. A room our server has left is a per-room error; a dump
// killed with SIGKILL resumes and completes.
import assert from 'node:assert/strict';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { loadSigningKey, verifyEvent } from '../../src/federation/index.ts';
import type { KeyLookup } from '../../src/federation/index.ts';
import { fail, ok } from '../../src/util/result.ts';
import { MatrixTestClient } from '../rig/client.ts';
import { attachSteward, runCli, type StewardSetup } from '../rig/steward.ts';
import { prepareSynapse, type RegisteredUser, type SynapseInstance } from '../rig/synapse.ts';
import { command, isReactionTo, isReplyTo, replyMatching } from './room-helpers.ts';

const VERSIONS = ['1', '6', '10', '11', '12'] as const;
const fileFor = (roomId: string) => `${encodeURIComponent(roomId)}.json`;

function dumpDirOf(summary: string): string {
  const m = /dumped to (\S+)/.exec(summary);
  assert.ok(m, `summary names the dump folder: ${summary}`);
  return m[1]!;
}

async function readRoomFile(dir: string, roomId: string): Promise<any> {
  return JSON.parse(await readFile(path.join(dir, 'rooms', fileFor(roomId)), 'utf8'));
}

function authIds(pdu: any): string[] {
  return (pdu.auth_events ?? []).map((a: unknown) => (Array.isArray(a) ? a[0] : a));
}

describe('dump rooms', () => {
  let hsA: SynapseInstance;
  let hsB: SynapseInstance;
  let s: StewardSetup;
  let room: string;
  let bot: string;
  let bob: RegisteredUser;
  let bobClient: MatrixTestClient;
  let keys: KeyLookup;
  const rooms = new Map<string, string>(); // version → room id
  let leftRoom: string;

  before(async () => {
    [hsA, hsB] = await Promise.all([prepareSynapse({ name: 'hs-a', federation: true }), prepareSynapse({ name: 'hs-b', federation: true })]);
    // Both rig certificates as the CA file: TLS verification stays on.
    const caFile = path.join(hsA.dir, 'rig-ca.pem');
    await writeFile(caFile, (await Promise.all([hsA, hsB].map((hs) => readFile(path.join(hs.dir, 'tls.crt'), 'utf8')))).join('\n'));
    [s] = await Promise.all([
      attachSteward(hsA, { config: { federation: { signing_key_path: hsA.signingKeyPath, address_allowlist: ['127.0.0.0/8', '::1/128'], ca_file: caFile } } }),
      hsB.start(),
    ]);
    room = s.steward.adminRoomId;
    bot = s.steward.botUserId;
    bob = await hsB.registerUser('bob', { displayname: 'Bob Remote' });
    bobClient = new MatrixTestClient(hsB.clientUrl, bob.userId, bob.accessToken);

    const known = await Promise.all([hsA, hsB].map(async (hs) => {
      const loaded = await loadSigningKey(hs.signingKeyPath);
      assert.ok(loaded.ok);
      return { server: hs.serverName, key: loaded.value.key };
    }));
    keys = async (server, keyId) => {
      const found = known.find((k) => k.server === server && k.key.keyId === keyId);
      return found ? ok(found.key.publicKey) : fail('E_UNKNOWN_KEY', `no key ${keyId} of ${server}`);
    };

    const admin = s.adminClient;
    for (const version of VERSIONS) {
      const roomId = await admin.createRoom({ room_version: version, name: `Room v${version}`, topic: 'first topic', preset: 'private_chat' });
      rooms.set(version, roomId);
      await admin.sendState(roomId, 'm.room.topic', '', { topic: 'second topic' });
      await admin.sendState(roomId, 'org.example.state', 'a', { n: 1 });
      await admin.sendState(roomId, 'org.example.state', 'b', { n: 2 });
      await admin.sendText(roomId, `hello v${version}`);
      const power = await admin.request('GET', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.power_levels/`);
      await admin.sendState(roomId, 'm.room.power_levels', '', { ...power, events_default: 0, state_default: 60 });
      await admin.invite(roomId, bob.userId);
      await bobClient.join(roomId, [hsA.serverName]);
    }
    // Wait until every remote join has arrived, then a last local event merges the extremities.
    for (const roomId of rooms.values()) {
      for (let i = 0; ; i++) {
        const state = await admin.roomState(roomId);
        if (state.some((e: any) => e.type === 'm.room.member' && e.state_key === bob.userId && e.content.membership === 'join')) break;
        assert.ok(i < 200, `bob's join reached hs-a in ${roomId}`);
        await sleep(100);
      }
      await admin.sendState(roomId, 'm.room.topic', '', { topic: 'last topic' });
    }

    // A room hs-a has left: only bob (hs-b) is in it, so our server no longer answers for it.
    const carol = await hsA.registerUser('carol');
    const carolClient = new MatrixTestClient(hsA.clientUrl, carol.userId, carol.accessToken);
    leftRoom = await carolClient.createRoom({ name: 'Abandoned', preset: 'public_chat' });
    await bobClient.join(leftRoom, [hsA.serverName]);
    await carolClient.leave(leftRoom);
  });

  after(async () => {
    await s?.steward.stop();
    await Promise.all([hsA?.cleanup(), hsB?.cleanup()]);
  });

  it('dumps every room: each state and auth-chain event verified, the auth chain closed, the state as the admin API has it', async () => {
    const { eventId } = await command(s.adminClient, room, bot, '!dump rooms');
    const summary = await replyMatching(s.adminClient, room, bot, eventId, /finished|failed/, 120_000);
    const dir = dumpDirOf(summary.content.body);

    for (const [version, roomId] of rooms) {
      const doc = await readRoomFile(dir, roomId);
      const label = `v${version} ${roomId}`;
      assert.equal(doc.format, 'steward.room-dump/1');
      assert.equal(doc.room_id, roomId);
      assert.equal(doc.room_version, version);
      assert.equal(doc.details.room_id, roomId);
      assert.equal(doc.details.version, version);
      assert.equal(doc.errors, undefined, label);
      const fed = doc.federation;
      assert.equal(fed.server, hsA.serverName);
      assert.equal(fed.counts.failed, 0, `${label}: ${JSON.stringify(fed.rejected)}`);
      assert.equal(fed.counts.redacted_copies_used, 0, label);
      assert.equal(fed.counts.verified, fed.counts.state_events + fed.counts.auth_chain_events + 1, label);
      assert.equal(fed.state.length, fed.counts.state_events);
      assert.equal(fed.auth_chain.length, fed.counts.auth_chain_events);
      assert.ok(fed.auth_chain.length >= 5, `${label}: an auth chain`);
      assert.equal(fed.auth_chain_closed, true, `${label}: missing ${fed.missing_auth_events}`);
      assert.deepEqual(fed.missing_auth_events, []);
      assert.equal(fed.matches_current_state, true, `${label}: ${JSON.stringify(fed.current_state_differences)}`);
      assert.equal(fed.at_event.event_id, fed.at_event_id);
      assert.equal(fed.at_event.pdu.type, 'm.room.topic', 'the latest event is the last topic change');

      // Verified again here, with keys read from the servers' key files.
      const all = [fed.at_event, ...fed.state, ...fed.auth_chain];
      for (const e of all) {
        const verified = await verifyEvent(e.pdu, version, keys, e.event_id);
        assert.ok(verified.ok && !verified.value.redacted, `${label}: ${e.event_id} verifies: ${verified.ok ? 'redacted' : verified.error.log}`);
      }
      // The auth chain closes: every auth event of every event is there (from v12 also the create event, never listed).
      const present = new Set(all.map((e: any) => e.event_id));
      for (const e of all) for (const id of authIds(e.pdu)) assert.ok(present.has(id), `${label}: auth event ${id} of ${e.event_id} is in the file`);
      if (version === '12') {
        assert.ok(present.has(`$${roomId.slice(1)}`), 'the v12 create event is present');
        assert.ok(all.every((e: any) => !authIds(e.pdu).includes(`$${roomId.slice(1)}`)), 'and listed as an auth event nowhere');
      }
      if (version === '1') assert.ok(all.every((e: any) => e.pdu.event_id === e.event_id), 'v1 events carry their ids');

      // The state after the latest event is the admin API's current state, event for event.
      const current: any[] = (await s.adminClient.request('GET', `/_synapse/admin/v1/rooms/${encodeURIComponent(roomId)}/state`)).state;
      const after = new Map<string, string>();
      for (const e of [...fed.state, fed.at_event]) after.set(`${e.pdu.type}|${e.pdu.state_key}`, e.event_id);
      assert.deepEqual([...after.values()].sort(), current.map((e) => e.event_id).sort(), label);
      assert.deepEqual(doc.current_state.map((e: any) => e.event_id).sort(), current.map((e) => e.event_id).sort());
      const bobJoin = fed.state.find((e: any) => e.pdu.type === 'm.room.member' && e.pdu.state_key === bob.userId);
      assert.equal(bobJoin.pdu.content.membership, 'join', `${label}: the remote member's join, signed by hs-b, is in the state`);
      assert.ok(bobJoin.pdu.signatures[hsB.serverName]);
      assert.ok(fed.state.some((e: any) => e.pdu.type === 'org.example.state' && e.pdu.state_key === 'b'));
    }

    // The room our server has left: a per-room error, the admin API's part still written.
    const left = await readRoomFile(dir, leftRoom);
    assert.equal(left.federation, null);
    assert.match(left.errors.federation.code, /M_FORBIDDEN|HTTP_403/);
    assert.ok(Array.isArray(left.current_state));

    const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8'));
    assert.equal(manifest.kind, 'rooms');
    assert.equal(manifest.state, 'complete');
    assert.equal(manifest.server_name, hsA.serverName);
    const files = (await readdir(path.join(dir, 'rooms'))).filter((f) => f.endsWith('.json'));
    const listed = (await s.adminClient.request('GET', '/_synapse/admin/v1/rooms', undefined, { limit: '1000' })).rooms.map((r: any) => r.room_id);
    assert.deepEqual(files.sort(), listed.map(fileFor).sort(), 'one file per room the admin API lists');
    assert.equal(manifest.counts.rooms_total, listed.length);
    assert.equal(manifest.counts.rooms_dumped, listed.length - 1);
    assert.equal(manifest.counts.rooms_failed, 1);
    assert.deepEqual(manifest.errors.map((e: any) => e.room), [leftRoom]);
    assert.match(manifest.errors[0].message, /federation/);
    assert.equal(manifest.counts.events_failed, 0);
    assert.equal(manifest.counts.rooms_auth_chain_open, 0);
    assert.equal(manifest.counts.rooms_not_matching_current_state, 0);
    assert.ok(manifest.counts.events_verified > 100);

    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    assert.equal((await stat(path.join(dir, 'rooms'))).mode & 0o777, 0o700);
    assert.equal((await stat(path.join(dir, 'rooms', fileFor(rooms.get('12')!)))).mode & 0o777, 0o600);
    await s.adminClient.waitForEvent((ev) => isReactionTo(ev, eventId, '✅'), { fromStart: true });
  });

  it('dumps the rooms named, from the terminal, with JSON output', async () => {
    const out = await s.steward.cli(['dump', 'rooms', '--room', rooms.get('12')!, '--room', rooms.get('1')!, '--json']);
    assert.equal(out.code, 0, out.stderr);
    const result = JSON.parse(out.stdout);
    assert.equal(result.ok, true);
    assert.equal(result.job.origin, 'terminal');
    assert.equal(result.job.done, 2);
    const names = await readdir(path.join(result.job.result.details.directory, 'rooms'));
    assert.deepEqual(names.sort(), [fileFor(rooms.get('12')!), fileFor(rooms.get('1')!)].sort());
    const doc = await readRoomFile(result.job.result.details.directory, rooms.get('12')!);
    assert.equal(doc.federation.auth_chain_closed, true);
  });

  it('refuses an alias and answers without a job when federation is not configured', async () => {
    const alias = await s.steward.cli(['dump', 'rooms', '--room', '#somewhere:example.org']);
    assert.equal(alias.code, 2);
    assert.match(alias.stderr, /room ids/);
    const noKey = path.join(s.steward.dir, 'no-federation.yaml');
    const config = JSON.parse(await readFile(s.steward.configPath, 'utf8'));
    delete config.federation;
    await writeFile(noKey, JSON.stringify(config));
    const out = await runCli(['dump', 'rooms', '-c', noKey, '-r', s.steward.registrationPath]);
    assert.equal(out.code, 1);
    assert.match(out.stderr, /signing_key_path/);
  });

  it('finishes a dump killed with SIGKILL after a restart, with no corrupt or missing files', async () => {
    const ids = Array.from({ length: 60 }, (_, i) => i);
    for (let i = 0; i < ids.length; i += 10) {
      await Promise.all(ids.slice(i, i + 10).map(async (n) => {
        const roomId = await s.adminClient.createRoom({ name: `bulk ${n}`, room_version: VERSIONS[n % VERSIONS.length] });
        await s.adminClient.sendState(roomId, 'm.room.topic', '', { topic: `topic ${n}` });
      }));
    }
    const { eventId } = await command(s.adminClient, room, bot, '!dump rooms --concurrency 1');
    const db = new Database(s.steward.dbPath, { readonly: true, fileMustExist: true });
    try {
      for (;;) {
        const row = db.prepare('SELECT done, state FROM jobs WHERE command_event_id = ?').get(eventId) as { done: number; state: string } | undefined;
        if (row && row.done >= 15) {
          assert.equal(row.state, 'running');
          break;
        }
        await sleep(10);
      }
      await s.steward.kill();
    } finally {
      db.close();
    }
    await s.steward.start();
    await replyMatching(s.adminClient, room, bot, eventId, /was interrupted by a restart and resumes from its checkpoint/);
    const summary = await replyMatching(s.adminClient, room, bot, eventId, /finished|failed/, 120_000);
    const dir = dumpDirOf(summary.content.body);

    const listed = (await s.adminClient.request('GET', '/_synapse/admin/v1/rooms', undefined, { limit: '1000' })).rooms.map((r: any) => r.room_id);
    const names = await readdir(path.join(dir, 'rooms'));
    assert.deepEqual(names.filter((n) => !n.endsWith('.json')), [], 'no temp files left');
    assert.deepEqual(names.sort(), listed.map(fileFor).sort(), 'exactly one file per room');
    let verified = 0;
    for (const name of names) {
      const doc = JSON.parse(await readFile(path.join(dir, 'rooms', name), 'utf8'));
      assert.equal(fileFor(doc.room_id), name);
      if (doc.room_id === leftRoom) continue;
      assert.equal(doc.federation.auth_chain_closed, true);
      assert.equal(doc.federation.counts.failed, 0);
      verified += doc.federation.counts.verified;
    }
    const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8'));
    assert.equal(manifest.state, 'complete');
    assert.equal(manifest.counts.resumed_runs, 1);
    assert.equal(manifest.counts.rooms_total, listed.length);
    assert.equal(manifest.counts.rooms_dumped, listed.length - 1);
    assert.equal(manifest.counts.rooms_failed, 1);
    assert.equal(manifest.counts.events_verified, verified, 'totals cover the rooms of both runs');
    assert.ok(manifest.counts.rooms_already_present >= 1, 'the resumed run skipped the rooms written before the kill');
    const history = await s.adminClient.request('GET', `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/messages`, undefined, { dir: 'b', limit: '200' });
    assert.equal(history.chunk.filter((e: any) => e.sender === bot && isReplyTo(e, eventId) && /finished|failed/.test(e.content.body)).length, 1);
  });
});
