// `restore users` end to end: users seeded fully on a real Synapse (profile and avatar, account data
// global and per room, custom and changed default push rules, two pushers (one disabled, MSC3881
// being on), a key backup with sessions,
// cross-signing keys, a second device, passwords), dumped with their hashes; then Synapse's database
// is deleted and it starts empty with the same server name and signing key; restore brings them
// back: a fresh dump equals the first section by section, users log in with their old passwords, and
// a second restore changes nothing. Bad dumps are refused before anything is written.
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { cp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { canonicalJson } from '../../src/federation/canonical-json.ts';
import { MatrixTestClient } from '../rig/client.ts';
import type { RegisteredUser } from '../rig/synapse.ts';
import { startStewardWithSynapse, type StewardSetup } from '../rig/steward.ts';
import { command, replyMatching } from './room-helpers.ts';

const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64').replace(/=+$/, '');
const fileFor = (userId: string): string => `${encodeURIComponent(userId)}.json`;

/** An ed25519 key pair as cross-signing wants it: the unpadded base64 public key is also its id. */
function ed25519() {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const pub = b64(publicKey.export({ format: 'der', type: 'spki' }).subarray(-32));
  return {
    pub,
    sign(userId: string, obj: Record<string, unknown>): Record<string, unknown> {
      const { signatures: _s, unsigned: _u, ...rest } = obj as Record<string, unknown>;
      const sig = b64(sign(null, Buffer.from(canonicalJson(rest)), privateKey));
      return { ...obj, signatures: { [userId]: { [`ed25519:${pub}`]: sig } } };
    },
  };
}

async function cliJson(s: StewardSetup, args: string[]): Promise<any> {
  const out = await s.steward.cli([...args, '--json']);
  const last = out.stdout.trim().split('\n').pop() ?? '';
  let parsed: any;
  try {
    parsed = JSON.parse(last);
  } catch {
    throw new Error(`steward ${args.join(' ')} exited ${out.code}: ${out.stdout}\n${out.stderr}`);
  }
  return { ...parsed, code: out.code, stderr: out.stderr };
}

/** The parts of a user file that a restore must bring back, without times and ids the server picks anew. */
function comparable(doc: any): any {
  const keyParts = (k: any) => (k ? { keys: k.keys, usage: k.usage, user_id: k.user_id } : null);
  const { last_seen_ts: _l, creation_ts: _c, consent_ts: _ct, consent_version: _cv, consent_server_notice_sent: _cs, appservice_id: _a, ...account } = doc.account;
  return {
    profile: { displayname: doc.profile.displayname, avatar_sha256: doc.profile.avatar_media?.sha256 ?? null },
    account: { ...account, threepids: (account.threepids ?? []).map((t: any) => ({ medium: t.medium, address: t.address })) },
    account_data: doc.account_data,
    push_rules: doc.push_rules,
    pushers: doc.pushers,
    devices: (doc.devices ?? []).map((d: any) => ({ device_id: d.device_id, display_name: d.display_name })).sort((a: any, b: any) => a.device_id.localeCompare(b.device_id)),
    key_backup: doc.key_backup ? { algorithm: doc.key_backup.algorithm, auth_data: doc.key_backup.auth_data, rooms: doc.key_backup.rooms } : null,
    cross_signing: doc.cross_signing ? { master: keyParts(doc.cross_signing.master_key), self: keyParts(doc.cross_signing.self_signing_key), user: keyParts(doc.cross_signing.user_signing_key) } : null,
  };
}

describe('restore users', () => {
  let s: StewardSetup;
  let alice: RegisteredUser;
  let bob: RegisteredUser;
  let goneId: string;
  let roomId: string;
  let avatarBytes: Buffer;
  let dumpDir: string;
  let archiveDir: string;
  const session = { first_message_index: 0, forwarded_count: 0, is_verified: false, session_data: { ephemeral: 'ZXBoZW1lcmFs', ciphertext: 'Y2lwaGVydGV4dA', mac: 'bWFj' } };

  before(async () => {
    // MSC3881 on: pushers can be disabled, and GET /pushers and the admin API say which are.
    s = await startStewardWithSynapse({ synapse: { extraConfig: { experimental_features: { msc3881_enabled: true } } } });
    alice = await s.hs.registerUser('alice', { displayname: 'Alice Liddell', password: 'alice-password' });
    bob = await s.hs.registerUser('bob', { displayname: 'Bob', password: 'bob-password' });
    const a = new MatrixTestClient(s.hs.clientUrl, alice.userId, alice.accessToken);
    await MatrixTestClient.login(s.hs.clientUrl, alice.userId, alice.password, 'ALICEPHONE');
    await a.request('PUT', `/_matrix/client/v3/devices/ALICEPHONE`, { display_name: 'Alice phone' });

    avatarBytes = Buffer.from('\x89PNG\r\n\x1a\n fake avatar of alice', 'binary');
    const up = await fetch(`${s.hs.clientUrl}/_matrix/media/v3/upload?filename=alice.png`, { method: 'POST', headers: { authorization: `Bearer ${alice.accessToken}`, 'content-type': 'image/png' }, body: avatarBytes });
    assert.equal(up.status, 200, await up.clone().text());
    const mxc = ((await up.json()) as { content_uri: string }).content_uri;
    await a.request('PUT', `/_matrix/client/v3/profile/${encodeURIComponent(alice.userId)}/avatar_url`, { avatar_url: mxc });

    await a.setAccountData('org.example.settings', { theme: 'dark', volume: 7 });
    roomId = await a.createRoom({ name: 'Tea party' });
    await a.setAccountData('org.example.room_note', { note: 'remember the tea' }, roomId);

    // Push rules: two of her own in an order, and changed server defaults.
    const rule = (id: string, place: Record<string, string> = {}, body: unknown = { actions: ['notify'], conditions: [{ kind: 'event_match', key: 'content.body', pattern: id }] }) =>
      a.request('PUT', `/_matrix/client/v3/pushrules/global/override/${id}`, body, place);
    await rule('org.example.first');
    await rule('org.example.second', { after: 'org.example.first' });
    await a.request('PUT', '/_matrix/client/v3/pushrules/global/content/org.example.tea', { actions: ['notify', { set_tweak: 'highlight' }], pattern: 'tea' });
    await a.request('PUT', '/_matrix/client/v3/pushrules/global/override/org.example.second/enabled', { enabled: false });
    await a.request('PUT', '/_matrix/client/v3/pushrules/global/override/.m.rule.invite_for_me/enabled', { enabled: false });
    await a.request('PUT', '/_matrix/client/v3/pushrules/global/underride/.m.rule.message/actions', { actions: ['notify', { set_tweak: 'sound', value: 'bell' }] });

    await a.setPusher({
      kind: 'http', app_id: 'org.example.app', pushkey: 'alice-pushkey', app_display_name: 'Example', device_display_name: 'Phone', lang: 'en',
      data: { url: 'http://127.0.0.1:1/_matrix/push/v1/notify' },
    });
    await a.setPusher({
      kind: 'http', app_id: 'org.example.muted', pushkey: 'alice-muted', app_display_name: 'Muted', device_display_name: 'Tablet', lang: 'en',
      data: { url: 'http://127.0.0.1:1/_matrix/push/v1/notify' }, 'org.matrix.msc3881.enabled': false,
    });

    const version = (await a.request('POST', '/_matrix/client/v3/room_keys/version', { algorithm: 'm.megolm_backup.v1.curve25519-aes-sha2', auth_data: { public_key: 'aGVsbG8gd29ybGQ' } })).version;
    await a.request('PUT', '/_matrix/client/v3/room_keys/keys', { rooms: { [roomId]: { sessions: { 'session-one': session, 'session-two': { ...session, first_message_index: 3 } } } } }, { version });

    const master = ed25519();
    const selfSigning = ed25519();
    const masterKey = { user_id: alice.userId, usage: ['master'], keys: { [`ed25519:${master.pub}`]: master.pub } };
    const selfKey = master.sign(alice.userId, { user_id: alice.userId, usage: ['self_signing'], keys: { [`ed25519:${selfSigning.pub}`]: selfSigning.pub } });
    await a.request('POST', '/_matrix/client/v3/keys/device_signing/upload', { master_key: masterKey, self_signing_key: selfKey });

    const gone = await s.hs.registerUser('gone', { displayname: 'Gone' });
    goneId = gone.userId;
    await s.adminClient.request('POST', `/_synapse/admin/v1/deactivate/${encodeURIComponent(goneId)}`, { erase: false });

    // The archive's content-addressed media, as `archive --media` keeps it.
    archiveDir = path.join(s.hs.dir, 'archive');
    const sha = createHash('sha256').update(avatarBytes).digest('hex');
    await mkdir(path.join(archiveDir, 'media', sha.slice(0, 2)), { recursive: true });
    await writeFile(path.join(archiveDir, 'media', sha.slice(0, 2), sha), avatarBytes);
  });

  after(async () => {
    await s?.steward.stop();
    await s?.hs.cleanup();
  });

  it('dumps users with key-backup sessions, the avatar checksum and (asked for, warned about, 0600) password hashes', async () => {
    const r = await cliJson(s, ['dump', 'users', '--include-deactivated', '--with-password-hashes', '--synapse-db', s.hs.dbPath]);
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.match(r.job.result.summary, /password hashes recorded/);
    dumpDir = r.job.result.details.directory;
    const manifest = JSON.parse(await readFile(path.join(dumpDir, 'manifest.json'), 'utf8'));
    assert.equal(manifest.key_backup_sessions, true);
    assert.match(manifest.password_hashes.warning, /crack/);
    assert.equal(manifest.checksums.algorithm, 'sha256');
    assert.ok(manifest.checksums.files[`users/${fileFor(alice.userId)}`]);
    const hashesFile = path.join(dumpDir, 'password-hashes.json');
    assert.equal((await stat(hashesFile)).mode & 0o777, 0o600);
    const hashes = JSON.parse(await readFile(hashesFile, 'utf8'));
    assert.match(hashes.hashes[alice.userId], /^\$2b\$/);
    const doc = JSON.parse(await readFile(path.join(dumpDir, 'users', fileFor(alice.userId)), 'utf8'));
    assert.deepEqual(doc.key_backup.rooms[roomId].sessions['session-one'], session);
    assert.equal(doc.profile.avatar_media.sha256, createHash('sha256').update(avatarBytes).digest('hex'));
    assert.equal(doc.password_hash, undefined, 'hashes stay out of the user files');
    const enabled = Object.fromEntries(doc.pushers.map((p: any) => [p.app_id, p.enabled]));
    assert.deepEqual(enabled, { 'org.example.app': true, 'org.example.muted': false }, 'the dump records which pushers are enabled');
  });

  it('on the same server, a dry run in the room finds nothing to change', async () => {
    const { eventId } = await command(s.adminClient, s.steward.adminRoomId, s.steward.botUserId, `!restore users ${dumpDir} --dry-run`);
    const reply = await replyMatching(s.adminClient, s.steward.adminRoomId, s.steward.botUserId, eventId, /finished|failed/);
    assert.match(reply.content.body, /Dry run of restore users .*: 0 would change, \d+ unchanged, 0 failed\. Nothing was written\./, reply.content.body);
    assert.match(reply.content.body, /Cannot be moved for anyone: access tokens/);
  });

  it('refuses a dump of another server, of an unknown format, or with a truncated or edited file, writing nothing', async () => {
    const bad = path.join(os.tmpdir(), `steward-bad-dump-${process.pid}`);
    const copy = async (edit: (dir: string) => Promise<void>): Promise<string> => {
      await rm(bad, { recursive: true, force: true });
      await cp(dumpDir, bad, { recursive: true });
      await edit(bad);
      return bad;
    };
    const editManifest = (f: (m: any) => void) => async (dir: string) => {
      const m = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8'));
      f(m);
      await writeFile(path.join(dir, 'manifest.json'), JSON.stringify(m));
    };
    try {
      let r = await cliJson(s, ['restore', 'users', await copy(editManifest((m) => { m.server_name = 'other.example'; }))]);
      assert.equal(r.ok, false);
      assert.match(r.error, /dump is of the server "other\.example", not of localhost:\d+/);
      r = await cliJson(s, ['restore', 'users', await copy(editManifest((m) => { m.format = 'steward.dump-manifest/2'; }))]);
      assert.match(r.error, /steward\.dump-manifest\/2, a version this Steward does not know/);

      // A truncated file fails its user before anything is written for them; the others are restored (here: unchanged).
      const target = path.join(bad, 'users', fileFor(bob.userId));
      await copy(async () => undefined);
      const text = await readFile(target, 'utf8');
      await writeFile(target, text.slice(0, text.length / 2));
      r = await cliJson(s, ['restore', 'users', bad, '--user', bob.userId, '--user', alice.userId]);
      assert.equal(r.job.failed, 1);
      assert.equal(r.job.errors[0].item, bob.userId);
      assert.match(r.job.errors[0].message, /does not match its checksum in the manifest: the file was truncated or edited/);

      // An edit that keeps the JSON valid is caught the same way.
      await writeFile(target, text.replace('"Bob"', '"Robert"'));
      r = await cliJson(s, ['restore', 'users', bad, '--user', bob.userId]);
      assert.match(r.job.errors[0].message, /truncated or edited/);
      const profile = await s.adminClient.request('GET', `/_synapse/admin/v2/users/${encodeURIComponent(bob.userId)}`);
      assert.equal(profile.displayname, 'Bob', 'nothing of the edited file was written');
    } finally {
      await rm(bad, { recursive: true, force: true });
    }
  });

  it('after the database is lost, restores everyone so that a new dump equals the old one, passwords included', async () => {
    // Total loss: Synapse's database is deleted; it starts empty with the same name and signing key.
    await s.steward.stop();
    await s.hs.stop();
    for (const suffix of ['', '-wal', '-shm', '-journal']) await rm(s.hs.dbPath + suffix, { force: true });
    await s.hs.start();
    const admin = await s.hs.registerUser('admin', { admin: true, password: 'admin-password' });
    const reg = await fetch(`${s.hs.clientUrl}/_matrix/client/v3/register`, { method: 'POST', headers: { authorization: `Bearer ${s.steward.asToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ type: 'm.login.application_service', username: s.steward.botUserId.slice(1, s.steward.botUserId.indexOf(':')), inhibit_login: true }) });
    assert.equal(reg.status, 200, await reg.text());
    const promote = await fetch(`${s.hs.clientUrl}/_synapse/admin/v2/users/${encodeURIComponent(s.steward.botUserId)}`, { method: 'PUT', headers: { authorization: `Bearer ${admin.accessToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ admin: true }) });
    assert.equal(promote.status, 200);
    await assert.rejects(MatrixTestClient.login(s.hs.clientUrl, alice.userId, 'alice-password'), 'alice is gone');

    const dry = await cliJson(s, ['restore', 'users', dumpDir, '--dry-run']);
    assert.equal(dry.ok, true, JSON.stringify(dry));
    assert.match(dry.job.result.summary, /would change/);
    assert.match(dry.job.result.summary, new RegExp(`${alice.userId.replace(/[.]/g, '\\.')} — would change: create the account`));
    const still = await fetch(`${s.hs.clientUrl}/_synapse/admin/v2/users/${encodeURIComponent(alice.userId)}`, { headers: { authorization: `Bearer ${admin.accessToken}` } });
    assert.equal(still.status, 404, 'a dry run writes nothing');

    const r = await cliJson(s, ['restore', 'users', dumpDir, '--synapse-db', s.hs.dbPath, '--archive', archiveDir]);
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.job.failed, 0, JSON.stringify(r.job.errors));
    assert.ok(r.job.result.details.restored >= 3, r.job.result.summary);
    assert.doesNotMatch(r.job.result.summary, /Need a password reset/, r.job.result.summary);

    // A fresh dump equals the first, section by section.
    const again = await cliJson(s, ['dump', 'users', '--include-deactivated']);
    assert.equal(again.ok, true);
    for (const userId of [alice.userId, bob.userId, goneId]) {
      const before = JSON.parse(await readFile(path.join(dumpDir, 'users', fileFor(userId)), 'utf8'));
      const now = JSON.parse(await readFile(path.join(again.job.result.details.directory, 'users', fileFor(userId)), 'utf8'));
      const [x, y] = [comparable(before), comparable(now)];
      for (const section of Object.keys(x)) assert.deepEqual(y[section], x[section], `${userId}: ${section}`);
    }
    const aliceNow = JSON.parse(await readFile(path.join(again.job.result.details.directory, 'users', fileFor(alice.userId)), 'utf8'));
    assert.notEqual(aliceNow.profile.avatar_url, null);
    // Compared whole above; said once more: the disabled pusher came back disabled.
    assert.equal(aliceNow.pushers.find((p: any) => p.app_id === 'org.example.muted')?.enabled, false);
    const order = aliceNow.push_rules.global.override.filter((x: any) => !x.default).map((x: any) => x.rule_id);
    assert.deepEqual(order, ['org.example.first', 'org.example.second']);

    // Old passwords work (after the comparison: a login adds a device).
    await MatrixTestClient.login(s.hs.clientUrl, alice.userId, 'alice-password');
    await MatrixTestClient.login(s.hs.clientUrl, bob.userId, 'bob-password');
  });

  it('a second restore changes nothing', async () => {
    const r = await cliJson(s, ['restore', 'users', dumpDir, '--synapse-db', s.hs.dbPath, '--archive', archiveDir]);
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.job.result.details.restored, 0, r.job.result.summary);
    assert.equal(r.job.result.details.failed, 0, r.job.result.summary);
    assert.ok(r.job.result.details.unchanged >= 3);
  });
});
