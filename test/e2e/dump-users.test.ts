// `!dump users` end to end: seeded users with devices, pushers, account data and a key backup;
// files checked for those values; a dump killed with SIGKILL resumes and completes.
import assert from 'node:assert/strict';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { MatrixTestClient } from '../rig/client.ts';
import type { RegisteredUser } from '../rig/synapse.ts';
import { startStewardWithSynapse, type StewardSetup } from '../rig/steward.ts';
import { command, isReactionTo, isReplyTo, replyMatching, roomHistory } from './room-helpers.ts';

// An ed25519 public key is 32 bytes; Synapse checks the shape of uploaded keys.
const MASTER_KEY = Buffer.alloc(32, 7).toString('base64').replace(/=+$/, '');
const fileFor = (userId: string) => `${encodeURIComponent(userId)}.json`;

async function dumpDirOf(summary: string): Promise<string> {
  const m = /dumped to (\S+)/.exec(summary);
  assert.ok(m, `summary names the dump folder: ${summary}`);
  return m[1]!;
}

async function readUserFile(dir: string, userId: string): Promise<any> {
  return JSON.parse(await readFile(path.join(dir, 'users', fileFor(userId)), 'utf8'));
}

describe('dump users', () => {
  let s: StewardSetup;
  let room: string;
  let bot: string;
  let alice: RegisteredUser;
  let aliceClient: MatrixTestClient;
  let sharedRoom: string;
  let backupVersion: string;
  let deactivatedId: string;

  before(async () => {
    s = await startStewardWithSynapse();
    room = s.steward.adminRoomId;
    bot = s.steward.botUserId;
    alice = await s.hs.registerUser('alice', { displayname: 'Alice Liddell', password: 'alice-password' });
    aliceClient = new MatrixTestClient(s.hs.clientUrl, alice.userId, alice.accessToken);
    await MatrixTestClient.login(s.hs.clientUrl, alice.userId, alice.password, 'ALICEPHONE'); // a second device
    await aliceClient.setPusher({
      kind: 'http', app_id: 'org.example.app', pushkey: 'alice-pushkey', app_display_name: 'Example', device_display_name: 'Phone', lang: 'en',
      data: { url: 'http://127.0.0.1:1/_matrix/push/v1/notify' },
    });
    await aliceClient.setAccountData('org.example.settings', { theme: 'dark', volume: 7 });
    sharedRoom = await aliceClient.createRoom({ name: 'Tea party' });
    await aliceClient.setAccountData('org.example.room_note', { note: 'remember the tea' }, sharedRoom);
    backupVersion = (await aliceClient.request('POST', '/_matrix/client/v3/room_keys/version', {
      algorithm: 'm.megolm_backup.v1.curve25519-aes-sha2', auth_data: { public_key: 'aGVsbG8gd29ybGQ' },
    })).version;
    // First-time cross-signing upload needs no interactive auth on current Synapse.
    await aliceClient.request('POST', '/_matrix/client/v3/keys/device_signing/upload', {
      master_key: { user_id: alice.userId, usage: ['master'], keys: { [`ed25519:${MASTER_KEY}`]: MASTER_KEY } },
    });
    const gone = await s.hs.registerUser('gone');
    deactivatedId = gone.userId;
    await s.adminClient.request('POST', `/_synapse/admin/v1/deactivate/${encodeURIComponent(gone.userId)}`, { erase: false });
  });

  after(async () => {
    await s?.steward.stop();
    await s?.hs.cleanup();
  });

  it('writes one file per user with profile, devices, pushers, account data, push rules, memberships and key backup', async () => {
    const { eventId } = await command(s.adminClient, room, bot, '!dump users');
    const summary = await replyMatching(s.adminClient, room, bot, eventId, /finished/);
    const dir = await dumpDirOf(summary.content.body);

    const a = await readUserFile(dir, alice.userId);
    assert.equal(a.format, 'steward.user-dump/1');
    assert.equal(a.user_id, alice.userId);
    assert.equal(a.profile.displayname, 'Alice Liddell');
    assert.equal(a.account.admin, false);
    assert.equal(a.account.deactivated, false);
    assert.ok(Array.isArray(a.account.threepids));
    assert.equal(a.devices.length, 2);
    assert.ok(a.devices.some((d: any) => d.device_id === 'ALICEPHONE'));
    assert.equal(a.pushers.length, 1);
    assert.equal(a.pushers[0].pushkey, 'alice-pushkey');
    assert.equal(a.pushers[0].app_id, 'org.example.app');
    assert.deepEqual(a.account_data.global['org.example.settings'], { theme: 'dark', volume: 7 });
    assert.deepEqual(a.account_data.rooms[sharedRoom]['org.example.room_note'], { note: 'remember the tea' });
    assert.ok(a.push_rules.global.override.some((r: any) => r.rule_id === '.m.rule.master'));
    assert.equal(a.memberships[sharedRoom], 'join');
    assert.equal(a.key_backup.version, backupVersion);
    assert.equal(a.key_backup.algorithm, 'm.megolm_backup.v1.curve25519-aes-sha2');
    assert.deepEqual(a.cross_signing.master_key.keys, { [`ed25519:${MASTER_KEY}`]: MASTER_KEY });
    assert.deepEqual(a.cross_signing.master_key.usage, ['master']);
    assert.equal(a.errors, undefined);

    // Deactivated users are left out unless asked for.
    await assert.rejects(readFile(path.join(dir, 'users', fileFor(deactivatedId))), { code: 'ENOENT' });

    const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8'));
    assert.equal(manifest.state, 'complete');
    assert.equal(manifest.server_name, s.hs.serverName);
    assert.match(manifest.synapse_version, /^1\.\d+/);
    const files = (await readdir(path.join(dir, 'users'))).filter((f) => f.endsWith('.json'));
    assert.equal(manifest.counts.users_dumped, files.length);
    assert.equal(manifest.counts.users_failed, 0);
    assert.equal(manifest.counts.users_total, files.length);

    // Private by default: 0700 folders, 0600 files.
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    assert.equal((await stat(path.join(dir, 'users'))).mode & 0o777, 0o700);
    assert.equal((await stat(path.join(dir, 'users', fileFor(alice.userId)))).mode & 0o777, 0o600);

    await s.adminClient.waitForEvent((ev) => isReactionTo(ev, eventId, '✅'), { fromStart: true });
  });

  it('shows progress as one status message edited in place', async () => {
    const history = await roomHistory(s.adminClient, room);
    const status = history.find((e) => e.sender === bot && /^. Job #1 dump users/.test(e.content?.body ?? '') && !e.content['m.relates_to']?.rel_type);
    assert.ok(status, 'a status message for job #1');
    const edits = history.filter((e) => e.content?.['m.relates_to']?.rel_type === 'm.replace' && e.content['m.relates_to'].event_id === status.event_id);
    assert.ok(edits.length >= 1, 'edited at least once');
    assert.match(edits.at(-1).content['m.new_content'].body, /Job #1 dump users — done\n\[█{20}\] · 100%/);
  });

  it('includes deactivated users when asked, from the terminal, with JSON output', async () => {
    const out = await s.steward.cli(['dump', 'users', '--include-deactivated', '--user', deactivatedId, '--user', alice.userId, '--json']);
    assert.equal(out.code, 0, out.stderr);
    const result = JSON.parse(out.stdout);
    assert.equal(result.ok, true);
    assert.equal(result.job.origin, 'terminal');
    assert.equal(result.job.done, 2);
    const gone = await readUserFile(result.job.result.details.directory, deactivatedId);
    assert.equal(gone.account.deactivated, true);
    assert.deepEqual(gone.not_collected.sections, ['push_rules', 'key_backup', 'cross_signing']);
  });

  it('records a user that fails and carries on', async () => {
    const out = await s.steward.cli(['dump', 'users', '--user', `@nobody:${s.hs.serverName}`, '--user', alice.userId, '--json']);
    assert.equal(out.code, 0, out.stderr);
    const result = JSON.parse(out.stdout);
    assert.equal(result.job.done, 1);
    assert.equal(result.job.failed, 1);
    assert.equal(result.job.errors[0].item, `@nobody:${s.hs.serverName}`);
    assert.equal(result.job.errors[0].code, 'M_NOT_FOUND');
    const manifest = JSON.parse(await readFile(path.join(result.job.result.details.directory, 'manifest.json'), 'utf8'));
    assert.equal(manifest.errors[0].user, `@nobody:${s.hs.serverName}`);
  });

  it('finishes a dump killed with SIGKILL after a restart, with no corrupt or missing files', async () => {
    const created: string[] = [];
    const ids = Array.from({ length: 240 }, (_, i) => `bulk${String(i).padStart(3, '0')}`);
    for (let i = 0; i < ids.length; i += 12) {
      await Promise.all(ids.slice(i, i + 12).map(async (localpart) => {
        const userId = `@${localpart}:${s.hs.serverName}`;
        await s.adminClient.request('PUT', `/_synapse/admin/v2/users/${encodeURIComponent(userId)}`, { password: 'pw', displayname: localpart });
        created.push(userId);
      }));
    }
    const { eventId } = await command(s.adminClient, room, bot, '!dump users --concurrency 1');
    // Wait until the first page (100 users) is checkpointed and the second is under way.
    const db = new Database(s.steward.dbPath, { readonly: true, fileMustExist: true });
    let jobId = 0;
    try {
      for (;;) {
        const row = db.prepare('SELECT id, done, state, checkpoint FROM jobs WHERE command_event_id = ?').get(eventId) as { id: number; done: number; state: string; checkpoint: string | null } | undefined;
        if (row && row.done >= 130) {
          assert.equal(row.state, 'running');
          jobId = row.id;
          break;
        }
        await sleep(25);
      }
      await s.steward.kill();
      const after = db.prepare('SELECT state, done, total FROM jobs WHERE id = ?').get(jobId) as { state: string; done: number; total: number };
      assert.equal(after.state, 'running', 'a killed job is still marked running');
      assert.ok(after.done < after.total, 'killed before the end');
    } finally {
      db.close();
    }

    await s.steward.start();
    await replyMatching(s.adminClient, room, bot, eventId, /was interrupted by a restart and resumes from its checkpoint/);
    const summary = await replyMatching(s.adminClient, room, bot, eventId, /finished/, 120_000);
    const dir = await dumpDirOf(summary.content.body);

    const listed: string[] = [];
    let from: string | undefined;
    do {
      const page = await s.adminClient.request('GET', '/_synapse/admin/v2/users', undefined, { limit: '500', ...(from ? { from } : {}) });
      listed.push(...page.users.map((u: any) => u.name));
      from = page.next_token;
    } while (from);
    for (const id of created) assert.ok(listed.includes(id));

    const names = await readdir(path.join(dir, 'users'));
    assert.deepEqual(names.filter((n) => !n.endsWith('.json')), [], 'no temp files left');
    assert.deepEqual(names.sort(), listed.map(fileFor).sort(), 'exactly one file per user');
    for (const name of names) {
      const doc = JSON.parse(await readFile(path.join(dir, 'users', name), 'utf8'));
      assert.equal(fileFor(doc.user_id), name);
    }
    const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8'));
    assert.equal(manifest.state, 'complete');
    assert.equal(manifest.counts.users_dumped, listed.length);
    assert.equal(manifest.counts.users_total, listed.length);
    assert.equal(manifest.counts.resumed_runs, 1);

    const history = await roomHistory(s.adminClient, room);
    assert.equal(history.filter((e) => e.sender === bot && isReplyTo(e, eventId) && /finished/.test(e.content.body)).length, 1);
  });
});
