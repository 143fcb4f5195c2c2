// The total-loss drill (issue 9 §4), on two real federating Synapses. A's users are seeded with
// everything a person has (profile and avatar, account data, push rules, a pusher, a key backup
// with sessions, cross-signing keys, a second device, a password); they share a room with B and
// have rooms only A was in, with history over several days. A is dumped (users with their
// password hashes, rooms) and archived; then A is stopped, its database deleted, and it starts
// empty with the same signing key. `restore users`, then `restore rooms --archive` bring it back:
// a fresh user dump equals the first section by section, old passwords work, the shared room is
// joined again and sees B's new messages, the local rooms exist again with their state, aliases
// and imported history, and a second restore changes nothing. Bad input restores nothing.
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { canonicalJson } from '../../src/federation/canonical-json.ts';
import { MatrixTestClient } from '../rig/client.ts';
import { attachSteward, type StewardSetup } from '../rig/steward.ts';
import { prepareSynapse, type RegisteredUser, type SynapseInstance } from '../rig/synapse.ts';
import { roomHistory } from './room-helpers.ts';
import { wipeSynapse } from './restore-helpers.ts';

const DAY_MS = 86_400_000;
const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64').replace(/=+$/, '');
const userFile = (userId: string): string => `${encodeURIComponent(userId)}.json`;
const roomFile = (roomId: string): string => `${encodeURIComponent(roomId)}.json`;

function signingKey() {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const pub = b64(publicKey.export({ format: 'der', type: 'spki' }).subarray(-32));
  return {
    pub,
    sign(userId: string, obj: Record<string, unknown>): Record<string, unknown> {
      const sig = b64(sign(null, Buffer.from(canonicalJson(obj)), privateKey));
      return { ...obj, signatures: { [userId]: { [`ed25519:${pub}`]: sig } } };
    },
  };
}

/**
 * What a restore must bring back of a user file; times and ids the server picks anew are left out.
 * `newRooms`: rooms restore made (their account data is checked on its own); `recreated`: old ids
 * of rooms recreated elsewhere, whose read marker moves with the room (checked on its own too).
 */
function restorable(doc: any, newRooms: ReadonlySet<string> = new Set(), recreated: ReadonlySet<string> = new Set()): Record<string, unknown> {
  const omit = new Set(['last_seen_ts', 'creation_ts', 'consent_ts', 'consent_version', 'consent_server_notice_sent', 'appservice_id']);
  const account = Object.fromEntries(Object.entries(doc.account ?? {}).filter(([k]) => !omit.has(k)));
  account.threepids = ((account.threepids as any[]) ?? []).map((t) => ({ medium: t.medium, address: t.address }));
  const key = (k: any) => (k ? { keys: k.keys, usage: k.usage, user_id: k.user_id } : null);
  return {
    profile: { displayname: doc.profile?.displayname, avatar_sha256: doc.profile?.avatar_media?.sha256 ?? null },
    account,
    // Room account data restore rooms copied to the rooms it recreated is checked on its own.
    account_data: {
      ...doc.account_data,
      rooms: Object.fromEntries(Object.entries(doc.account_data?.rooms ?? {}).filter(([r]) => !newRooms.has(r)).map(([r, types]: [string, any]) => {
        if (!recreated.has(r)) return [r, types];
        const { 'm.fully_read': _marker, ...rest } = types;
        return [r, rest];
      })),
    },
    push_rules: doc.push_rules,
    pushers: doc.pushers,
    devices: (doc.devices ?? []).map((d: any) => `${d.device_id}=${d.display_name}`).sort(),
    key_backup: doc.key_backup ? { algorithm: doc.key_backup.algorithm, auth_data: doc.key_backup.auth_data, rooms: doc.key_backup.rooms } : null,
    cross_signing: doc.cross_signing ? { master: key(doc.cross_signing.master_key), self: key(doc.cross_signing.self_signing_key), user: key(doc.cross_signing.user_signing_key) } : null,
  };
}

async function cliJson(s: StewardSetup, args: string[]): Promise<any> {
  const out = await s.steward.cli([...args, '--json']);
  const last = out.stdout.trim().split('\n').pop() ?? '';
  try {
    return { ...JSON.parse(last), code: out.code, stderr: out.stderr };
  } catch {
    throw new Error(`steward ${args.join(' ')} exited ${out.code}: ${out.stdout}\n${out.stderr}`);
  }
}

describe('total-loss drill: dump and archive A, lose its database, restore users and rooms', () => {
  let hsA: SynapseInstance;
  let hsB: SynapseInstance;
  let s: StewardSetup;
  let carol: MatrixTestClient;
  const users: Record<'alice' | 'bob', RegisteredUser> = {} as never;
  const clients: Record<'alice' | 'bob', MatrixTestClient> = {} as never;
  let shared: string;
  let local: string;
  const ids: Record<string, string> = {};
  let usersDump: string;
  let roomsDump: string;
  let archive: string;
  let adminA: MatrixTestClient;
  let newLocal: string;
  let avatar: Buffer;
  const dayTs = (n: number): number => Math.floor(Date.now() / DAY_MS) * DAY_MS - (3 - n) * DAY_MS + 9 * 3600_000;

  /** A message sent as a local user at a chosen time (appservice `ts`), as a past day's history would have been. */
  const sendAt = async (roomId: string, user: string, ts: number, type: string, content: object): Promise<string> => {
    const url = `${hsA.clientUrl}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/${encodeURIComponent(type)}/drill-${ts}-${Math.random()}?user_id=${encodeURIComponent(user)}&ts=${ts}`;
    const res = await fetch(url, { method: 'PUT', headers: { authorization: `Bearer ${s.steward.asToken}`, 'content-type': 'application/json' }, body: JSON.stringify(content) });
    assert.equal(res.status, 200, await res.clone().text());
    return ((await res.json()) as { event_id: string }).event_id;
  };
  const restoreRooms = (...args: string[]) => cliJson(s, ['restore', 'rooms', roomsDump, ...args]);
  const restoreUsers = (...args: string[]) => cliJson(s, ['restore', 'users', usersDump, '--synapse-db', hsA.dbPath, '--archive', archive, ...args]);
  const roomCount = async (): Promise<number> => (await adminA.request('GET', '/_synapse/admin/v1/rooms')).total_rooms;

  before(async () => {
    [hsA, hsB] = await Promise.all([
      prepareSynapse({ name: 'hs-a', federation: true, extraConfig: { room_list_publication_rules: [{ action: 'allow' }], redaction_retention_period: null } }),
      prepareSynapse({ name: 'hs-b', federation: true }),
    ]);
    [s] = await Promise.all([attachSteward(hsA, { federation: true }, [hsB]), hsB.start()]);
    for (const name of ['alice', 'bob'] as const) {
      users[name] = await hsA.registerUser(name, { password: `${name}-password`, displayname: name === 'alice' ? 'Alice Liddell' : 'Bob' });
      clients[name] = new MatrixTestClient(hsA.clientUrl, users[name].userId, users[name].accessToken);
    }
    const c = await hsB.registerUser('carol');
    carol = new MatrixTestClient(hsB.clientUrl, c.userId, c.accessToken);
    const { alice, bob } = clients;

    // Everything a person has on a server.
    await MatrixTestClient.login(hsA.clientUrl, users.alice.userId, 'alice-password', 'ALICEPHONE');
    await alice.request('PUT', '/_matrix/client/v3/devices/ALICEPHONE', { display_name: 'Alice phone' });
    avatar = Buffer.from('\x89PNG\r\n\x1a\n the drill avatar', 'binary');
    const up = await fetch(`${hsA.clientUrl}/_matrix/media/v3/upload?filename=a.png`, { method: 'POST', headers: { authorization: `Bearer ${users.alice.accessToken}`, 'content-type': 'image/png' }, body: avatar });
    assert.equal(up.status, 200);
    await alice.request('PUT', `/_matrix/client/v3/profile/${encodeURIComponent(users.alice.userId)}/avatar_url`, { avatar_url: ((await up.json()) as { content_uri: string }).content_uri });
    await alice.setAccountData('org.example.settings', { theme: 'dark' });
    await alice.request('PUT', '/_matrix/client/v3/pushrules/global/override/org.example.tea', { actions: ['notify'], conditions: [{ kind: 'event_match', key: 'content.body', pattern: 'tea' }] });
    await alice.request('PUT', '/_matrix/client/v3/pushrules/global/override/.m.rule.invite_for_me/enabled', { enabled: false });
    await alice.setPusher({ kind: 'http', app_id: 'org.example.app', pushkey: 'alice-key', app_display_name: 'Ex', device_display_name: 'Phone', lang: 'en', data: { url: 'http://127.0.0.1:1/_matrix/push/v1/notify' } });
    const master = signingKey();
    const selfSigning = signingKey();
    await alice.request('POST', '/_matrix/client/v3/keys/device_signing/upload', {
      master_key: { user_id: users.alice.userId, usage: ['master'], keys: { [`ed25519:${master.pub}`]: master.pub } },
      self_signing_key: master.sign(users.alice.userId, { user_id: users.alice.userId, usage: ['self_signing'], keys: { [`ed25519:${selfSigning.pub}`]: selfSigning.pub } }),
    });

    // SHARED: alice's, carol from B joined. LOCAL: only A's users, with history over three days.
    shared = await alice.createRoom({ preset: 'public_chat', name: 'Shared' });
    await carol.join(shared, [hsA.serverName]);
    await alice.sendText(shared, 'hello carol');
    local = await alice.createRoom({ preset: 'private_chat', name: 'Local', topic: 'only A was here', room_alias_name: 'drill-local', visibility: 'public', invite: [bob.userId] });
    await bob.join(local);
    await alice.setAccountData('m.tag', { tags: { 'm.favourite': {} } }, local);
    const version = (await alice.request('POST', '/_matrix/client/v3/room_keys/version', { algorithm: 'm.megolm_backup.v1.curve25519-aes-sha2', auth_data: { public_key: 'aGVsbG8gd29ybGQ' } })).version;
    await alice.request('PUT', '/_matrix/client/v3/room_keys/keys', { rooms: { [local]: { sessions: { s1: { first_message_index: 0, forwarded_count: 0, is_verified: false, session_data: { ephemeral: 'ZQ', ciphertext: 'Yw', mac: 'bQ' } } } } } }, { version });
    ids.d0 = await sendAt(local, users.alice.userId, dayTs(0), 'm.room.message', { msgtype: 'm.text', body: 'day zero' });
    ids.d1 = await sendAt(local, users.bob.userId, dayTs(1), 'm.room.message', { msgtype: 'm.text', body: 'day one, a reply', 'm.relates_to': { 'm.in_reply_to': { event_id: ids.d0 } } });
    ids.d1r = await sendAt(local, users.alice.userId, dayTs(1) + 1000, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: ids.d1, key: '👍' } });
    ids.today = await alice.sendText(local, 'today');
    // alice has read up to day one: the marker must follow the room to its recreated copy.
    await alice.request('POST', `/_matrix/client/v3/rooms/${encodeURIComponent(local)}/read_markers`, { 'm.fully_read': ids.d1 });

    for (let i = 0; ; i++) {
      const st = await alice.roomState(shared);
      if (st.some((e: any) => e.state_key === carol.userId && e.content.membership === 'join')) break;
      assert.ok(i < 200, 'carol\'s join reached A');
      await sleep(100);
    }
  });

  after(async () => {
    await s?.steward.stop();
    await Promise.all([hsA?.cleanup(), hsB?.cleanup()]);
  });

  it('dumps A\'s users (with password hashes) and rooms, and archives its rooms', async () => {
    const u = await cliJson(s, ['dump', 'users', '--with-password-hashes', '--synapse-db', hsA.dbPath]);
    assert.equal(u.ok, true, JSON.stringify(u));
    usersDump = u.job.result.details.directory;
    const r = await cliJson(s, ['dump', 'rooms']);
    assert.equal(r.ok, true, JSON.stringify(r));
    roomsDump = r.job.result.details.directory;
    archive = path.join(s.steward.dir, 'archive');
    const a = await cliJson(s, ['archive', '--out', archive, '--media']);
    assert.equal(a.ok, true, JSON.stringify(a));
    // The avatar's bytes where `archive --media` keeps media (content-addressed), whether or not this archive run fetched it.
    const sha = createHash('sha256').update(avatar).digest('hex');
    await mkdir(path.join(archive, 'media', sha.slice(0, 2)), { recursive: true, mode: 0o700 });
    await writeFile(path.join(archive, 'media', sha.slice(0, 2), sha), avatar, { mode: 0o600 });
    const lines = (await readFile(path.join(archive, 'rooms', encodeURIComponent(local), ...new Date(dayTs(0)).toISOString().slice(0, 10).split('-').slice(0, 2), `${new Date(dayTs(0)).toISOString().slice(0, 10)}.jsonl`), 'utf8')).trim().split('\n');
    assert.ok(lines.some((l) => JSON.parse(l).event_id === ids.d0), 'day zero is in its day file');
  });

  it('loses A\'s database: A starts empty with the same signing key', async () => {
    await s.steward.stop();
    const admin = await wipeSynapse(hsA, s.steward);
    adminA = new MatrixTestClient(hsA.clientUrl, admin.userId, admin.accessToken);
    assert.equal(await roomCount(), 0);
    await assert.rejects(MatrixTestClient.login(hsA.clientUrl, users.alice.userId, 'alice-password'), 'alice is gone');
  });

  it('refuses bad input and restores nothing: a truncated room file, another server\'s dump, an unknown format version', async () => {
    const bad = path.join(s.steward.dir, 'bad');
    const copyOf = async (dir: string): Promise<string> => {
      await rm(bad, { recursive: true, force: true });
      await cp(dir, bad, { recursive: true });
      return bad;
    };
    const manifestEdit = async (dir: string, f: (m: any) => void): Promise<void> => {
      const m = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8'));
      f(m);
      await writeFile(path.join(dir, 'manifest.json'), JSON.stringify(m));
    };
    let dir = await copyOf(roomsDump);
    const file = path.join(dir, 'rooms', roomFile(local));
    await writeFile(file, (await readFile(file, 'utf8')).slice(0, 500));
    let r = await cliJson(s, ['restore', 'rooms', dir]);
    assert.equal(r.ok, false);
    assert.match(JSON.stringify(r), /Nothing was restored: .*does not match its checksum/);

    dir = await copyOf(roomsDump);
    await manifestEdit(dir, (m) => { m.server_name = 'other.example'; });
    r = await cliJson(s, ['restore', 'rooms', dir]);
    assert.match(JSON.stringify(r), /dump is of the server \\"other\.example\\"/);

    dir = await copyOf(roomsDump);
    await manifestEdit(dir, (m) => { m.format = 'steward.dump-manifest/2'; });
    r = await cliJson(s, ['restore', 'rooms', dir]);
    assert.match(JSON.stringify(r), /steward\.dump-manifest\/2, a version this Steward does not know/);

    dir = await copyOf(usersDump);
    await manifestEdit(dir, (m) => { m.server_name = 'other.example'; });
    r = await cliJson(s, ['restore', 'users', dir]);
    assert.equal(r.ok, false);
    assert.match(JSON.stringify(r), /other\.example/);

    dir = await copyOf(usersDump);
    await manifestEdit(dir, (m) => { m.format = 'steward.dump-manifest/2'; });
    r = await cliJson(s, ['restore', 'users', dir]);
    assert.match(JSON.stringify(r), /a version this Steward does not know/);

    await rm(bad, { recursive: true, force: true });
    assert.equal(await roomCount(), 0, 'no room was created');
    const alice = await adminA.request('GET', `/_synapse/admin/v2/users/${encodeURIComponent(users.alice.userId)}`).catch((e: any) => e.status);
    assert.equal(alice, 404, 'no user was created');
  });

  it('restores the users, then the rooms with their history', async () => {
    const u = await restoreUsers();
    assert.equal(u.ok, true, JSON.stringify(u));
    assert.equal(u.job.failed, 0, JSON.stringify(u.job.errors));
    const r = await restoreRooms('--archive', archive);
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.job.failed, 0, JSON.stringify(r.job.errors));
    assert.equal(r.job.result.details.rejoined, 1, r.job.result.summary);
    assert.equal(r.job.result.details.recreated, 1, r.job.result.summary);
    newLocal = r.job.result.details.map[local];
    assert.ok(newLocal && newLocal !== local, r.job.result.summary);
    assert.equal(r.job.result.details.map[shared], shared);
    assert.equal(r.job.result.details.read_markers_not_restored, 0, r.job.result.summary);
  });

  it('a fresh dump of the users equals the first one, section by section', async () => {
    const again = await cliJson(s, ['dump', 'users']);
    assert.equal(again.ok, true);
    for (const userId of [users.alice.userId, users.bob.userId]) {
      const before = restorable(JSON.parse(await readFile(path.join(usersDump, 'users', userFile(userId)), 'utf8')), new Set(), new Set([local]));
      const now = restorable(JSON.parse(await readFile(path.join(again.job.result.details.directory, 'users', userFile(userId)), 'utf8')), new Set([newLocal]), new Set([local]));
      for (const section of Object.keys(before)) assert.deepEqual(now[section], before[section], `${userId}: ${section}`);
    }
  });

  it('users log in with their old passwords', async () => {
    for (const name of ['alice', 'bob'] as const) {
      clients[name] = await MatrixTestClient.login(hsA.clientUrl, users[name].userId, `${name}-password`);
    }
  });

  it('the shared room is joined again and sees B\'s new messages', async () => {
    assert.ok((await clients.alice.joinedRooms()).includes(shared));
    await carol.sendText(shared, 'carol after the drill');
    await clients.alice.waitForEvent((ev, room) => room === shared && ev.content?.body === 'carol after the drill', { timeoutMs: 60_000 });
  });

  it('the local room exists again with its state, alias, members and imported history', async () => {
    const { alice, bob } = clients;
    const state = await alice.roomState(newLocal);
    const get = (type: string) => state.find((e: any) => e.type === type && e.state_key === '')?.content;
    assert.equal(get('m.room.name')?.name, 'Local');
    assert.equal(get('m.room.topic')?.topic, 'only A was here');
    assert.equal(get('m.room.join_rules')?.join_rule, 'invite');
    const alias = `#drill-local:${hsA.serverName}`;
    assert.equal((await alice.request('GET', `/_matrix/client/v3/directory/room/${encodeURIComponent(alias)}`)).room_id, newLocal);
    assert.equal(get('m.room.canonical_alias')?.alias, alias);
    assert.equal((await alice.request('GET', `/_matrix/client/v3/directory/list/room/${encodeURIComponent(newLocal)}`)).visibility, 'public');
    assert.deepEqual(state.filter((e: any) => e.type === 'm.room.member' && e.content.membership === 'join').map((e: any) => e.state_key).sort(), [users.alice.userId, users.bob.userId].sort());

    const history = (await roomHistory(bob, newLocal)).filter((e) => e.content?.['org.steward.imported']);
    assert.match(history[0].content.body, /History imported from Steward's archive/);
    const byOld = new Map(history.filter((e) => e.content['org.steward.imported'].event_id).map((e) => [e.content['org.steward.imported'].event_id, e]));
    for (const [key, sender, ts] of [['d0', users.alice.userId, dayTs(0)], ['d1', users.bob.userId, dayTs(1)], ['d1r', users.alice.userId, dayTs(1) + 1000]] as const) {
      const ev = byOld.get(ids[key]!);
      assert.ok(ev, `${key} was imported`);
      assert.equal(ev.sender, sender);
      assert.equal(ev.origin_server_ts, ts, `${key} keeps its time`);
    }
    assert.equal(byOld.get(ids.d1).content['m.relates_to']['m.in_reply_to'].event_id, byOld.get(ids.d0).event_id);
    assert.equal(byOld.get(ids.d1r).content['m.relates_to'].event_id, byOld.get(ids.d1).event_id);
    assert.equal(byOld.get(ids.today)?.content.body, 'today');
    // alice's favourite tag moved with the room.
    const tag = await alice.request('GET', `/_matrix/client/v3/user/${encodeURIComponent(users.alice.userId)}/rooms/${encodeURIComponent(newLocal)}/account_data/m.tag`);
    assert.deepEqual(tag, { tags: { 'm.favourite': {} } });
    // alice's read marker is on the imported copy of day one's message.
    const marker = await alice.request('GET', `/_matrix/client/v3/user/${encodeURIComponent(users.alice.userId)}/rooms/${encodeURIComponent(newLocal)}/account_data/m.fully_read`);
    assert.deepEqual(marker, { event_id: byOld.get(ids.d1).event_id });
  });

  it('a second restore changes nothing', async () => {
    const before = await roomCount();
    const events = (await roomHistory(clients.alice, newLocal)).map((e) => e.event_id);
    const u = await restoreUsers();
    assert.equal(u.ok, true, JSON.stringify(u));
    assert.equal(u.job.result.details.restored, 0, u.job.result.summary);
    const r = await restoreRooms('--archive', archive);
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.job.result.details['already-restored'], 2, r.job.result.summary);
    assert.equal(await roomCount(), before);
    assert.deepEqual((await roomHistory(clients.alice, newLocal)).map((e) => e.event_id), events);
    const db = new Database(s.steward.dbPath, { readonly: true });
    try {
      assert.equal((db.prepare('SELECT count(*) AS n FROM restored_rooms WHERE old_room_id = ?').get(local) as { n: number }).n, 1);
    } finally {
      db.close();
    }
  });
});

