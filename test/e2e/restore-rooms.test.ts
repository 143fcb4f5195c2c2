// `restore rooms` end to end on two real federating Synapses after a real total loss of A.
// alice and bob on A, carol on B. SHARED (alice's, carol joined) and FROM_B (carol's, alice joined)
// live on on B; LOCAL (alice's,
// bob a moderator, an alias, listed in the directory, a history with a reply, a reaction, an
// edit and a redaction) and SECRET (encrypted) only A was in. alice has read markers: in FROM_B on
// carol's message (fetched back from B after the rejoin), in SHARED on a message she sent while B
// was down (B never got it: reported), in LOCAL, and in SECRET on an encrypted message (not
// imported: reported). Dump A's
// users and rooms, archive the rooms, wipe A's database, start it empty with the same key, bring
// the users back (restore users records the read markers), restore. An admin has taken LOCAL's
// alias for another room meanwhile: that step fails, and once the alias is freed a re-run sets it
// in the room already made.
import assert from 'node:assert/strict';
import { cp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { MatrixTestClient } from '../rig/client.ts';
import { spawn } from 'node:child_process';
import { trackChild } from '../rig/reaper.ts';
import { attachSteward, MAIN, type StewardSetup } from '../rig/steward.ts';
import { prepareSynapse, type RegisteredUser, type SynapseInstance } from '../rig/synapse.ts';
import { command, replyMatching, roomHistory } from './room-helpers.ts';
import { dumpDirOf, wipeSynapse, writeArchiveFixture } from './restore-helpers.ts';

const fileFor = (roomId: string) => `${encodeURIComponent(roomId)}.json`;

describe('restore rooms after a total loss', () => {
  let hsA: SynapseInstance;
  let hsB: SynapseInstance;
  let s: StewardSetup;
  let carol: MatrixTestClient;
  const users: Record<'alice' | 'bob', RegisteredUser> = {} as never;
  const clients: Record<'alice' | 'bob', MatrixTestClient> = {} as never;
  let shared: string;
  let fromB: string;
  let local: string;
  let secret: string;
  let big: string;
  let twelve: string;
  const bigEvents: string[] = [];
  let dump: string;
  let archive: string;
  const sent: Record<string, string> = {};
  let adminA: MatrixTestClient;
  let newLocal: string;
  let newSecret: string;
  let usersDump: string;
  let squatter: string;

  const restore = (...args: string[]) => s.steward.cli(['restore', 'rooms', ...args]);
  const roomCount = async (): Promise<number> => (await adminA.request('GET', '/_synapse/admin/v1/rooms')).total_rooms;

  before(async () => {
    [hsA, hsB] = await Promise.all([prepareSynapse({ name: 'hs-a', federation: true, extraConfig: { room_list_publication_rules: [{ action: 'allow' }] } }), prepareSynapse({ name: 'hs-b', federation: true })]);
    [s] = await Promise.all([attachSteward(hsA, { federation: true }, [hsB]), hsB.start()]);
    for (const name of ['alice', 'bob'] as const) {
      users[name] = await hsA.registerUser(name, { password: `${name}-password` });
      clients[name] = new MatrixTestClient(hsA.clientUrl, users[name].userId, users[name].accessToken);
    }
    const c = await hsB.registerUser('carol');
    carol = new MatrixTestClient(hsB.clientUrl, c.userId, c.accessToken);
    const { alice, bob } = clients;

    shared = await alice.createRoom({ preset: 'public_chat', name: 'Shared' });
    await carol.join(shared, [hsA.serverName]);
    await alice.sendText(shared, 'hello carol');
    sent.carol = await carol.sendText(shared, 'hello alice, news from B');
    fromB = await carol.createRoom({ preset: 'public_chat', name: 'From B' });
    await alice.join(fromB, [hsB.serverName]);
    sent.fromB = await carol.sendText(fromB, 'carol in her own room');

    local = await alice.createRoom({
      preset: 'private_chat', name: 'Local', topic: 'only on A', room_alias_name: 'local-room', visibility: 'public',
      invite: [bob.userId],
    });
    await bob.join(local);
    assert.equal((await alice.request('GET', `/_matrix/client/v3/directory/list/room/${encodeURIComponent(local)}`)).visibility, 'public', 'LOCAL is listed in the directory');
    const levels = await alice.request('GET', `/_matrix/client/v3/rooms/${encodeURIComponent(local)}/state/m.room.power_levels/`);
    await alice.sendState(local, 'm.room.power_levels', '', { ...levels, users: { ...levels.users, [bob.userId]: 50 } });
    await alice.sendState(local, 'm.room.history_visibility', '', { history_visibility: 'joined' });
    await alice.sendState(local, 'org.example.custom', 'k', { n: 7 });
    sent.first = await alice.sendText(local, 'first message');
    sent.reply = await bob.sendEvent(local, 'm.room.message', { msgtype: 'm.text', body: 'a reply', 'm.relates_to': { 'm.in_reply_to': { event_id: sent.first } } });
    sent.reaction = await bob.sendEvent(local, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: sent.first, key: '👍' } });
    sent.edit = await alice.sendEvent(local, 'm.room.message', { msgtype: 'm.text', body: '* first message, edited', 'm.new_content': { msgtype: 'm.text', body: 'first message, edited' }, 'm.relates_to': { rel_type: 'm.replace', event_id: sent.first } });
    sent.regret = await bob.sendText(local, 'something bob regrets');
    await bob.request('PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(local)}/redact/${encodeURIComponent(sent.regret)}/r1`, { reason: 'oops' });
    sent.last = await alice.sendText(local, 'last message');

    secret = await alice.createRoom({ preset: 'private_chat', name: 'Secret', invite: [bob.userId] });
    await bob.join(secret);
    await alice.sendText(secret, 'said before encryption');
    await alice.sendState(secret, 'm.room.encryption', '', { algorithm: 'm.megolm.v1.aes-sha2' });
    sent.encrypted = await alice.sendEvent(secret, 'm.room.encrypted', { algorithm: 'm.megolm.v1.aes-sha2', ciphertext: 'AAAA', sender_key: 'x', session_id: 'y', device_id: 'D' });

    // TWELVE: room version 12, where the creator's power comes from being the creator.
    twelve = await alice.createRoom({ room_version: '12', preset: 'private_chat', name: 'Twelve', invite: [bob.userId] });
    await bob.join(twelve);
    const levels12 = await alice.request('GET', `/_matrix/client/v3/rooms/${encodeURIComponent(twelve)}/state/m.room.power_levels/`);
    assert.equal(levels12.users?.[alice.userId], undefined, 'v12: the creator is not in the users map');
    await alice.sendState(twelve, 'm.room.power_levels', '', { ...levels12, users: { ...levels12.users, [bob.userId]: 50 } });
    await bob.sendText(twelve, 'hello in twelve');

    // BIG: a long history, for an import killed half-way.
    big = await alice.createRoom({ preset: 'private_chat', name: 'Big' });
    for (let i = 0; i < 150; i += 10) {
      bigEvents.push(...await Promise.all(Array.from({ length: 10 }, (_, j) => alice.sendText(big, `big #${i + j}`))));
    }

    // carol's join must have reached A before the dump, or the dump shows SHARED as A's alone.
    for (let i = 0; ; i++) {
      const st = await alice.roomState(shared);
      if (st.some((e: any) => e.state_key === carol.userId && e.content.membership === 'join')) break;
      assert.ok(i < 200, 'carol\'s join reached A');
      await sleep(100);
    }

    // alice's read markers: on carol's message in FROM_B (once it has reached A), on the last message in LOCAL, on the encrypted one in SECRET.
    for (let i = 0; ; i++) {
      const marked = await alice.request('POST', `/_matrix/client/v3/rooms/${encodeURIComponent(fromB)}/read_markers`, { 'm.fully_read': sent.fromB }).then(() => true, () => false);
      if (marked) break;
      assert.ok(i < 200, 'carol\'s message reached A');
      await sleep(100);
    }
    // In SHARED on a message sent while B is down: A is lost before it can hand it on, so no server has it when A comes back.
    await hsB.stop();
    sent.unseen = await alice.sendText(shared, 'said while B was down');
    await alice.request('POST', `/_matrix/client/v3/rooms/${encodeURIComponent(shared)}/read_markers`, { 'm.fully_read': sent.unseen });
    await alice.request('POST', `/_matrix/client/v3/rooms/${encodeURIComponent(local)}/read_markers`, { 'm.fully_read': sent.last });
    await alice.request('POST', `/_matrix/client/v3/rooms/${encodeURIComponent(secret)}/read_markers`, { 'm.fully_read': sent.encrypted });
    const usersDumped = await s.steward.cli(['dump', 'users', '--out', path.join(s.steward.dir, 'dumps')]);
    assert.equal(usersDumped.code, 0, usersDumped.stderr);
    usersDump = dumpDirOf(usersDumped.stdout);
    const aliceFile = JSON.parse(await readFile(path.join(usersDump, 'users', `${encodeURIComponent(users.alice.userId)}.json`), 'utf8'));
    assert.deepEqual(aliceFile.account_data.rooms[fromB]['m.fully_read'], { event_id: sent.fromB }, 'the user dump holds the read markers');

    const dumped = await s.steward.cli(['dump', 'rooms', '--out', path.join(s.steward.dir, 'dumps')]);
    assert.equal(dumped.code, 0, dumped.stderr);
    dump = dumpDirOf(dumped.stdout);
    archive = path.join(s.steward.dir, 'archive');
    await writeArchiveFixture(s.adminClient, hsA.serverName, [local, secret, big, twelve], archive);

    await s.steward.stop();
    adminA = new MatrixTestClient(hsA.clientUrl, ...(await (async () => {
      const admin = await wipeSynapse(hsA, s.steward);
      return [admin.userId, admin.accessToken] as const;
    })()));
    assert.equal(await roomCount(), 0, 'A has lost every room');
    await hsB.start();
    for (const name of ['alice', 'bob'] as const) {
      users[name] = await hsA.registerUser(name, { password: `${name}-password` });
      clients[name] = new MatrixTestClient(hsA.clientUrl, users[name].userId, users[name].accessToken);
    }
    const restoredUsers = await s.steward.cli(['restore', 'users', usersDump, '--user', users.alice.userId, '--user', users.bob.userId]);
    assert.equal(restoredUsers.code, 0, restoredUsers.stdout + restoredUsers.stderr);
    assert.match(restoredUsers.stdout, /read markers \(m\.fully_read\) in 4 room\(s\): set by restore rooms once the rooms are back/);
  });

  after(async () => {
    await s?.steward.stop();
    await Promise.all([hsA?.cleanup(), hsB?.cleanup()]);
  });

  it('refuses bad dumps with a clear error and restores nothing', async () => {
    const copy = async (name: string): Promise<string> => {
      const dir = path.join(s.steward.dir, `bad-${name}`);
      await cp(dump, dir, { recursive: true });
      return dir;
    };
    const check = async (dir: string, pattern: RegExp): Promise<void> => {
      const r = await restore(dir);
      assert.equal(r.code, 1, `${dir}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout + r.stderr, /Nothing was restored/);
      assert.match(r.stdout + r.stderr, pattern);
    };
    const truncated = await copy('truncated');
    const file = path.join(truncated, 'rooms', fileFor(local));
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.slice(0, text.length / 2));
    await check(truncated, /does not match its checksum in the manifest: the file was truncated or edited/);

    const edited = await copy('edited');
    const efile = path.join(edited, 'rooms', fileFor(local));
    await writeFile(efile, (await readFile(efile, 'utf8')).replace('only on A', 'only on Z'));
    await check(edited, /does not match its checksum/);

    const other = await copy('other-server');
    const manifest = JSON.parse(await readFile(path.join(other, 'manifest.json'), 'utf8'));
    await writeFile(path.join(other, 'manifest.json'), JSON.stringify({ ...manifest, server_name: 'elsewhere.example' }));
    await check(other, /This dump is of the server "elsewhere\.example", not of /);

    const future = await copy('future');
    const ffile = path.join(future, 'rooms', fileFor(local));
    const doc = JSON.parse(await readFile(ffile, 'utf8'));
    const changed = `${JSON.stringify({ ...doc, format: 'steward.room-dump/2' })}\n`;
    await writeFile(ffile, changed);
    // The checksum made to match, so that the format check itself is what refuses it.
    const fm = JSON.parse(await readFile(path.join(future, 'manifest.json'), 'utf8'));
    fm.checksums.files[`rooms/${fileFor(local)}`] = createHash('sha256').update(changed).digest('hex');
    await writeFile(path.join(future, 'manifest.json'), JSON.stringify(fm));
    await check(future, /has format steward\.room-dump\/2, a version this Steward does not know/);

    const badArchive = path.join(s.steward.dir, 'bad-archive');
    await cp(archive, badArchive, { recursive: true });
    const roomDir = path.join(badArchive, 'rooms', encodeURIComponent(local));
    const year = (await readdir(roomDir)).find((n) => /^\d{4}$/.test(n))!;
    const month = (await readdir(path.join(roomDir, year)))[0]!;
    const dayFile = path.join(roomDir, year, month, (await readdir(path.join(roomDir, year, month)))[0]!);
    await writeFile(dayFile, `${await readFile(dayFile, 'utf8')}{"event_id": "$cut`);
    const r = await restore(dump, '--archive', badArchive);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /Nothing was restored: The archive of .*line \d+ is not valid JSON/);

    assert.equal(await roomCount(), 0, 'no room was created by any of these');
    const db = new Database(s.steward.dbPath, { readonly: true });
    try {
      assert.equal((db.prepare('SELECT count(*) AS n FROM restored_rooms').get() as { n: number }).n, 0);
    } finally {
      db.close();
    }
  });

  it('lists in a dry run what it would do per room, and changes nothing', async () => {
    const r = await restore(dump, '--archive', archive, '--dry-run');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Dry run, nothing was changed/);
    assert.match(r.stdout, new RegExp(`${escape(shared)} — would rejoin via ${escape(hsB.serverName)}`));
    assert.match(r.stdout, new RegExp(`${escape(local)} — would recreate as ${escape(users.alice.userId)} with \\d+ state event\\(s\\), 2 member\\(s\\), 1 alias\\(es\\), [1-9]\\d* history event\\(s\\) to import`));
    assert.match(r.stdout, new RegExp(`${escape(secret)} — would recreate .* \\(1 encrypted not imported\\)`));
    assert.equal(await roomCount(), 0);
  });

  it('resumes an import killed with SIGKILL half-way, posting no event twice', async () => {
    const child = spawn(process.execPath, [MAIN, 'restore', 'rooms', dump, '--room', big, '--archive', archive, '-c', s.steward.configPath, '-r', s.steward.registrationPath], { stdio: 'ignore' });
    trackChild(child);
    child.ref();
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const db = new Database(s.steward.dbPath, { readonly: true, fileMustExist: true });
    try {
      for (let i = 0; ; i++) {
        const row = (() => {
          try {
            return db.prepare('SELECT count(*) AS n FROM restored_events WHERE old_room_id = ?').get(big) as { n: number };
          } catch {
            return { n: 0 }; // the tables are made by the child's first migration
          }
        })();
        if (row.n >= 20) break;
        assert.ok(i < 1200, 'the import got under way');
        await sleep(50);
      }
    } finally {
      db.close();
    }
    child.kill('SIGKILL');
    await exited;
    const again = await restore(dump, '--room', big, '--archive', archive);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.match(again.stdout, /1 room\(s\) from .*: 0 rejoined, 1 recreated/);
    const newBig = /recreated as (\S+)/.exec(again.stdout)?.[1] ?? '';
    const imported = (await roomHistory(clients.alice, newBig)).map((e) => e.content?.['org.steward.imported']?.event_id).filter(Boolean);
    assert.deepEqual([...imported].sort(), [...bigEvents].sort(), 'every message once, none twice');
  });

  it('rejoins the shared room through B and recreates the local ones with their state, aliases, members and history', async () => {
    const localAlias = `#local-room:${hsA.serverName}`;
    // Meanwhile an admin has made a room with LOCAL's alias.
    squatter = await adminA.createRoom({ name: 'Squatter', room_alias_name: 'local-room' });
    const firstRun = await restore(dump, '--archive', archive);
    assert.equal(firstRun.code, 0, firstRun.stdout + firstRun.stderr);
    // LOCAL's alias is taken: the room is made, that step fails and is said.
    assert.match(firstRun.stdout, /7 room\(s\) from .*: 2 rejoined, 2 recreated, 1 already restored, 1 partly, 1 skipped, 0 failed\./);
    const lineIn = (out: string, roomId: string): string => out.split('\n').find((l) => l.startsWith(`${roomId} — `)) ?? '';
    const line = (roomId: string): string => lineIn(firstRun.stdout, roomId);
    assert.match(line(local), new RegExp(`recreated as !\\S+ .*alias ${escape(localAlias)} is taken \\(it points to ${escape(squatter)}\\): left as it is.*; a re-run retries what failed`));
    const rooms = await roomCount();

    // The cause fixed, a re-run sets the alias in the room already made, and creates nothing.
    await adminA.request('DELETE', `/_matrix/client/v3/directory/room/${encodeURIComponent(localAlias)}`);
    const r = await restore(dump, '--archive', archive);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /7 room\(s\) from .*: 0 rejoined, 0 recreated, 5 already restored, 0 partly, 1 skipped, 0 failed, 1 completed \(what had failed is done now\)\./);
    assert.equal(await roomCount(), rooms, 'no room made twice');
    assert.match(lineIn(r.stdout, local), /restored before as !\S+; what had failed is done now \(aliases\)/);
    {
      const db = new Database(s.steward.dbPath, { readonly: true });
      try {
        assert.equal((db.prepare('SELECT count(*) AS n FROM restored_rooms WHERE old_room_id = ?').get(local) as { n: number }).n, 1);
        assert.deepEqual(db.prepare('SELECT step, outcome FROM restored_room_steps WHERE old_room_id = ? ORDER BY step').all(local), [{ step: 'aliases', outcome: 'done' }, { step: 'directory', outcome: 'done' }, { step: 'members', outcome: 'done' }]);
      } finally {
        db.close();
      }
    }
    assert.match(line(shared), new RegExp(`rejoined via ${escape(hsB.serverName)}: ${escape(users.alice.userId)}; read markers: 0 set, 1 not \\(${escape(users.alice.userId)}; see the list below\\)`));
    assert.match(line(fromB), new RegExp(`rejoined via ${escape(hsB.serverName)}: ${escape(users.alice.userId)}; read markers: 1 set$`));
    const reportPath = /Report: (\S+)/.exec(r.stdout)?.[1];
    assert.ok(reportPath, 'the summary names the report');
    assert.equal((await stat(reportPath)).mode & 0o777, 0o600);
    const report = JSON.parse(await readFile(reportPath, 'utf8'));
    assert.equal(report.format, 'steward.restore-rooms-report/1');
    assert.deepEqual(report.rooms.map((x: any) => x.roomId).sort(), [...r.stdout.matchAll(/^(!\S+) — /gm)].map((m) => m[1]).sort());
    newLocal = /recreated as (\S+)/.exec(line(local))?.[1] ?? '';
    assert.equal(/restored before as ([^\s;]+)/.exec(lineIn(r.stdout, local))?.[1], newLocal, 'the re-run worked in the room the first run made');
    newSecret = /recreated as (\S+)/.exec(line(secret))?.[1] ?? '';
    assert.ok(newLocal.startsWith('!') && newLocal !== local, line(local));

    // Read markers: exactly the two that could not be restored are reported, in the summary and the report.
    const notRestored = [
      { user_id: users.alice.userId, room_id: shared, event_id: sent.unseen, state: 'failed' },
      { user_id: users.alice.userId, room_id: secret, event_id: sent.encrypted, state: 'lost' },
    // In the report's order: by room id as SQLite compares text (code units; localeCompare would put '!d…' before '!I…').
    ].sort((a, b) => (a.room_id < b.room_id ? -1 : a.room_id > b.room_id ? 1 : 0));
    assert.deepEqual(report.read_markers_not_restored.map(({ reason: _r, ...m }: any) => m), notRestored);
    assert.match(r.stdout, /Read markers not restored \(2\):/);
    assert.match(r.stdout, new RegExp(`\\n• ${escape(users.alice.userId)} in ${escape(secret)} \\(event ${escape(sent.encrypted!)}\\): the event it marks .* was not re-posted from the archive`));
    assert.match(r.stdout, new RegExp(`\\n• ${escape(users.alice.userId)} in ${escape(shared)} \\(event ${escape(sent.unseen!)}\\): the event it marks .* is not known here`));
    const marker = (roomId: string) => clients.alice.request('GET', `/_matrix/client/v3/user/${encodeURIComponent(users.alice.userId)}/rooms/${encodeURIComponent(roomId)}/account_data/m.fully_read`);
    // FROM_B was rejoined: carol's message was fetched back from B (backfill) before the marker could be set.
    assert.deepEqual(await marker(fromB), { event_id: sent.fromB });

    // SHARED: alice is in it again and sees carol's new message.
    assert.ok((await clients.alice.joinedRooms()).includes(shared));
    await carol.sendText(shared, 'welcome back alice');
    await clients.alice.waitForEvent((ev, room) => room === shared && ev.content?.body === 'welcome back alice', { timeoutMs: 60_000 });

    // LOCAL: state, levels, alias, directory, members.
    const { alice, bob } = clients;
    const state = await alice.roomState(newLocal);
    const get = (type: string, key = '') => state.find((e: any) => e.type === type && e.state_key === key)?.content;
    assert.equal(get('m.room.name')?.name, 'Local');
    assert.equal(get('m.room.topic')?.topic, 'only on A');
    assert.equal(get('m.room.join_rules')?.join_rule, 'invite');
    assert.equal(get('m.room.history_visibility')?.history_visibility, 'joined');
    assert.deepEqual(get('org.example.custom', 'k'), { n: 7 });
    assert.equal(get('m.room.power_levels')?.users?.[bob.userId], 50);
    assert.equal(get('m.room.power_levels')?.users?.[s.steward.botUserId], undefined, 'the bot is not left with power');
    assert.equal(get('m.room.create')?.['org.steward.restored_from'], local);
    const alias = `#local-room:${hsA.serverName}`;
    assert.equal(get('m.room.canonical_alias')?.alias, alias);
    assert.equal((await alice.request('GET', `/_matrix/client/v3/directory/room/${encodeURIComponent(alias)}`)).room_id, newLocal);
    assert.equal((await alice.request('GET', `/_matrix/client/v3/directory/list/room/${encodeURIComponent(newLocal)}`)).visibility, 'public');
    const joined = state.filter((e: any) => e.type === 'm.room.member' && e.content.membership === 'join').map((e: any) => e.state_key).sort();
    assert.deepEqual(joined, [users.alice.userId, users.bob.userId].sort());

    // LOCAL: the history, by the original senders at the original times, relations pointing at the new events.
    const history = (await roomHistory(bob, newLocal)).filter((e) => e.content?.['org.steward.imported'] || e.unsigned?.redacted_because);
    const notice = history[0];
    assert.equal(notice.sender, s.steward.botUserId);
    assert.match(notice.content.body, /History imported from Steward's archive of /);
    const byOld = new Map(history.filter((e) => e.content?.['org.steward.imported']?.event_id).map((e) => [e.content['org.steward.imported'].event_id, e]));
    const first = byOld.get(sent.first);
    assert.ok(first, 'the first message was imported');
    assert.equal(first.sender, users.alice.userId);
    assert.equal(first.content.body, 'first message');
    assert.equal(byOld.get(sent.reply).sender, users.bob.userId);
    assert.equal(byOld.get(sent.reply).content['m.relates_to']['m.in_reply_to'].event_id, first.event_id);
    assert.equal(byOld.get(sent.reaction).content['m.relates_to'].event_id, first.event_id);
    assert.equal(byOld.get(sent.edit).content['m.relates_to'].event_id, first.event_id);
    assert.ok(byOld.get(sent.first).origin_server_ts < byOld.get(sent.last).origin_server_ts);
    const regret = history.find((e) => e.unsigned?.redacted_because);
    assert.ok(regret, 'the redacted message is redacted in the new room too');
    assert.ok(!JSON.stringify(history).includes('something bob regrets'));
    assert.equal(byOld.get(sent.last).content.body, 'last message');
    // LOCAL was recreated: alice's marker is on the imported copy of the last message.
    assert.deepEqual(await marker(newLocal), { event_id: byOld.get(sent.last).event_id });

    // TWELVE: version 12 again, alice its creator (so not in the users map), bob at 50.
    const newTwelve = /recreated as (\S+)/.exec(line(twelve))?.[1] ?? '';
    const twelveState = await alice.roomState(newTwelve);
    const create12 = twelveState.find((e: any) => e.type === 'm.room.create');
    assert.equal(create12.content.room_version, '12');
    assert.equal(create12.sender, users.alice.userId);
    assert.deepEqual(twelveState.find((e: any) => e.type === 'm.room.power_levels').content.users, { [users.bob.userId]: 50 });
    assert.ok((await roomHistory(bob, newTwelve)).some((e) => e.sender === users.bob.userId && e.content?.body === 'hello in twelve'));

    // SECRET: encryption on again, the clear-text message imported, the encrypted one not.
    const secretState = await alice.roomState(newSecret);
    assert.equal(secretState.find((e: any) => e.type === 'm.room.encryption')?.content.algorithm, 'm.megolm.v1.aes-sha2');
    const secretHistory = await roomHistory(alice, newSecret);
    assert.ok(secretHistory.some((e) => e.content?.body === 'said before encryption'));
    assert.ok(!secretHistory.some((e) => e.type === 'm.room.encrypted'));
  });

  it('keeps the original timestamps of imported events', async () => {
    const db = new Database(s.steward.dbPath, { readonly: true });
    let newFirst: string;
    try {
      newFirst = (db.prepare('SELECT new_event_id FROM restored_events WHERE old_room_id = ? AND old_event_id = ?').get(local, sent.first) as { new_event_id: string }).new_event_id;
    } finally {
      db.close();
    }
    const ev = await clients.alice.request('GET', `/_matrix/client/v3/rooms/${encodeURIComponent(newLocal)}/event/${encodeURIComponent(newFirst)}`);
    assert.equal(ev.origin_server_ts, ev.content['org.steward.imported'].origin_server_ts);
  });

  it('a second restore changes nothing', async () => {
    const before = await roomCount();
    const events = async (roomId: string) => (await roomHistory(clients.alice, roomId)).map((e) => e.event_id);
    const [l, sh] = [await events(newLocal), await events(shared)];
    const r = await restore(dump, '--archive', archive);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /0 rejoined, 0 recreated, 6 already restored/);
    assert.equal(await roomCount(), before);
    assert.deepEqual(await events(newLocal), l);
    assert.deepEqual(await events(shared), sh);
  });

  it('answers in the admin room too: Steward comes back after the loss with a new admin room, and a dry run there shows everything restored', async () => {
    await s.steward.start();
    await adminA.join(s.steward.adminRoomId);
    const { eventId } = await command(adminA, s.steward.adminRoomId, s.steward.botUserId, `!restore rooms ${dump} --dry-run`);
    const reply = await replyMatching(adminA, s.steward.adminRoomId, s.steward.botUserId, eventId, /finished|failed/, 60_000);
    assert.match(reply.content.body, /Dry run, nothing was changed\. 7 room\(s\) in .*: 0 to restore, 6 already restored, 1 skipped/);
    assert.match(reply.content.body, new RegExp(`${escape(local)} — already restored as ${escape(newLocal)}`));
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\!]/g, '\\$&');
}
