// Lost rooms after a database restore, end to end on two real Synapses (issue 4 §3).
// A (ours, Steward attached, following A's log file) and B. b1 on B creates R1 (private) and
// R2 (public); a1, a2 join R1 and a3 joins R2 after A's database was backed up. A is restored
// from that backup, so it no longer knows R1 and R2 while B keeps sending it their events.
import assert from 'node:assert/strict';
import { copyFile, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FederationClient } from '../../src/federation/federation-client.ts';
import { loadSigningKey } from '../../src/federation/index.ts';
import { createLogger } from '../../src/log.ts';
import { MatrixTestClient } from '../rig/client.ts';
import { attachSteward, type StewardSetup } from '../rig/steward.ts';
import { prepareSynapse, type RegisteredUser, type SynapseInstance } from '../rig/synapse.ts';
import { startFakeRemote, type FakeRemote } from './recovery-fake-remote.ts';
import { command, replyMatching, roomHistory } from './room-helpers.ts';

const LOOPBACK = ['127.0.0.0/8', '::1/128'];

/** The line of the job's final table about one room. */
function lineFor(body: string, roomId: string): string {
  const line = body.split('\n').find((l) => l.includes(`${roomId} — `));
  assert.ok(line, `the summary has a line for ${roomId}:\n${body}`);
  return line;
}

describe('recovery of rooms lost after a database restore', () => {
  let s: StewardSetup;
  let hsA: SynapseInstance;
  let hsB: SynapseInstance;
  let fake: FakeRemote;
  let admin: MatrixTestClient;
  let room: string;
  let bot: string;
  const users: Record<'a1' | 'a2' | 'a3', RegisteredUser> = {} as never;
  const clients: Record<'a1' | 'a2' | 'a3', MatrixTestClient> = {} as never;
  let b1: MatrixTestClient;
  let r1: string;
  let r2: string;
  let stewardFed: FederationClient;
  /** What b1 sent into each room while A had lost it. */
  const sentWhileLost = new Map<string, string[]>();

  before(async () => {
    [hsA, hsB] = await Promise.all([prepareSynapse({ name: 'hs-a', federation: true }), prepareSynapse({ name: 'hs-b', federation: true })]);
    [s] = await Promise.all([
      attachSteward(hsA, {
        config: {
          federation: { signing_key_path: hsA.signingKeyPath, address_allowlist: LOOPBACK, insecure_skip_tls_verify: true },
          recovery: { log_sources: [{ file: hsA.logPath }], announce_interval_seconds: 1, poll_interval_ms: 200 },
        },
      }),
      hsB.start(),
    ]);
    room = s.steward.adminRoomId;
    bot = s.steward.botUserId;
    // Registered before the backup: tokens issued after it would be gone once it is restored.
    for (const name of ['a1', 'a2', 'a3'] as const) {
      users[name] = await hsA.registerUser(name);
      clients[name] = new MatrixTestClient(hsA.clientUrl, users[name].userId, users[name].accessToken);
    }
    const b1User = await hsB.registerUser('b1');
    b1 = new MatrixTestClient(hsB.clientUrl, b1User.userId, b1User.accessToken);
    fake = await startFakeRemote();
    const key = await loadSigningKey(hsA.signingKeyPath);
    assert.ok(key.ok);
    const fed = await FederationClient.create(
      { serverName: hsA.serverName, signingKey: key.value.key, allowlist: LOOPBACK, insecureSkipTlsVerify: true, timeoutMs: 10_000, maxRetries: 1 },
      { log: createLogger({ level: 'silent' }) },
    );
    assert.ok(fed.ok);
    stewardFed = fed.value;
  });

  after(async () => {
    stewardFed?.close();
    await s?.steward.stop();
    await fake?.close();
    await Promise.all([hsA?.cleanup(), hsB?.cleanup()]);
  });

  it('detects R1 and R2 from A\'s log after the restore, with B as sender, and says so in the status room', async () => {
    await hsA.stop();
    const backup = await hsA.backupDatabase();
    await hsA.start();

    r1 = await b1.createRoom({ preset: 'private_chat', name: 'R1', invite: [users.a1.userId, users.a2.userId] });
    r2 = await b1.createRoom({ preset: 'public_chat', name: 'R2' });
    await clients.a1.join(r1, [hsB.serverName]);
    await clients.a2.join(r1, [hsB.serverName]);
    await clients.a3.join(r2, [hsB.serverName]);
    assert.ok((await clients.a1.joinedRooms()).includes(r1));

    await hsA.stop();
    await hsA.restoreDatabase(backup);
    await hsA.start();
    assert.ok(!(await clients.a1.joinedRooms()).includes(r1), 'the restored A has forgotten R1');
    // Sync positions from after the backup mean nothing to the restored server: fresh clients.
    admin = new MatrixTestClient(hsA.clientUrl, s.admin.userId, s.admin.accessToken);

    // B sends into both rooms until A's log has shown both to Steward and the status room was told.
    const told = new Set<string>();
    const deadline = Date.now() + 90_000;
    let n = 0;
    while (told.size < 2 && Date.now() < deadline) {
      n += 1;
      const last = await b1.sendText(r1, `R1 message ${n} after the restore`);
      await b1.sendText(r2, `R2 message ${n} after the restore`);
      for (const [r, label] of [[r1, 'R1'], [r2, 'R2']] as const) sentWhileLost.set(r, [...(sentWhileLost.get(r) ?? []), `${label} message ${n} after the restore`]);
      await b1.sendReceipt(r1, last); // an EDU: A logs "Ignoring receipt … as we're not in the room"
      await b1.request('PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(r2)}/typing/${encodeURIComponent(b1.userId)}`, { typing: true, timeout: 5000 });
      await sleep(1500);
      for (const ev of await roomHistory(admin, room)) {
        const body = String(ev.content?.body ?? '');
        if (ev.sender === bot && /this server is no longer in (is|are) still sending us events/.test(body)) {
          for (const r of [r1, r2]) if (body.includes(r) && body.includes(`from ${hsB.serverName}`)) told.add(r);
        }
      }
    }
    assert.deepEqual([...told].sort(), [r1, r2].sort(), 'the status room names both rooms, sent from B');

    const { reply } = await command(admin, room, bot, '!lost list');
    const body = String(reply.content.body);
    for (const r of [r1, r2]) {
      const line = lineFor(body, r);
      assert.match(line, new RegExp(`${hsB.serverName.replace(/[.]/g, '\\.')} ×\\d+`), 'B is recorded as a sender');
      assert.match(line, /seen \d+×/);
    }
    assert.match(body, new RegExp(`file:${hsA.logPath.replace(/[.]/g, '\\.')}: following · \\d+ lines read, \\d+ not parsed, [1-9]\\d* lost-room lines`));
  });

  it('finds the same rooms in a gzip copy of the log with `steward lost scan`', async () => {
    const gz = path.join(s.steward.dir, 'homeserver.log.1.gz');
    await writeFile(gz, await promisify(gzip)(await readFile(hsA.logPath)));
    const scanned = await s.steward.cli(['lost', 'scan', gz]);
    assert.equal(scanned.code, 0, scanned.stderr);
    assert.match(scanned.stdout, /lost-room lines naming 2 room\(s\): 0 new/);
  });

  it('plans a1, a2 → R1 and a3 → R2 in a dry run, and joins nobody', async () => {
    const { eventId } = await command(admin, room, bot, '!rejoin all --dry-run');
    const summary = String((await replyMatching(admin, room, bot, eventId, /Job #\d+ .* (finished|failed)/, 90_000)).content.body);
    assert.match(summary, /Dry run, nothing was joined/);
    const l1 = lineFor(summary, r1);
    const l2 = lineFor(summary, r2);
    assert.match(l1, new RegExp(`state from ${hsB.serverName}`));
    assert.match(l1, new RegExp(`would rejoin ${users.a1.userId}, ${users.a2.userId}$|would rejoin ${users.a1.userId}, ${users.a2.userId} ·`));
    assert.doesNotMatch(l1, /@a3:/);
    assert.match(l2, new RegExp(`would rejoin ${users.a3.userId}`));
    assert.doesNotMatch(l2, /@a[12]:/);
    for (const c of Object.values(clients)) {
      const joined = await c.joinedRooms();
      assert.ok(!joined.includes(r1) && !joined.includes(r2), `${c.userId} was not joined by a dry run`);
    }
  });

  it('passes over a remote that answers tampered state and takes the state from the next server', async () => {
    // The real state of R1 from B, with a1's join re-labelled as a3's: its signature no longer holds.
    const latest = await stewardFed.request<{ event_id: string }>(hsB.serverName, 'GET', `/_matrix/federation/v1/timestamp_to_event/${encodeURIComponent(r1)}?dir=b&ts=${Date.now()}`);
    assert.ok(latest.ok, JSON.stringify(!latest.ok && latest.error));
    const state = await stewardFed.request<{ pdus: any[]; auth_chain: any[] }>(hsB.serverName, 'GET', `/_matrix/federation/v1/state/${encodeURIComponent(r1)}?event_id=${encodeURIComponent(latest.value.event_id)}`);
    assert.ok(state.ok);
    const pdus = state.value.pdus.map((p) => (p.type === 'm.room.member' && p.state_key === users.a1.userId ? { ...p, state_key: users.a3.userId, sender: users.a3.userId } : p));
    assert.ok(pdus.some((p) => p.state_key === users.a3.userId), 'the test tampered with the state');
    const event = await stewardFed.request<{ pdus: any[] }>(hsB.serverName, 'GET', `/_matrix/federation/v1/event/${encodeURIComponent(latest.value.event_id)}`);
    assert.ok(event.ok);
    fake.rooms.set(r1, { latestEventId: latest.value.event_id, latestEvent: event.value.pdus[0], pdus, authChain: state.value.auth_chain });

    const { eventId } = await command(admin, room, bot, `!rejoin ${r1} --via ${fake.serverName} --dry-run`);
    const summary = String((await replyMatching(admin, room, bot, eventId, /Job #\d+ .* (finished|failed)/, 90_000)).content.body);
    const line = lineFor(summary, r1);
    assert.match(line, new RegExp(`not used: ${fake.serverName.replace(/[.]/g, '\\.')} \\(\\d+ event\\(s\\) in its answer do not verify \\(state: `));
    assert.match(line, new RegExp(`state from ${hsB.serverName}`));
    assert.match(line, new RegExp(`would rejoin ${users.a1.userId}, ${users.a2.userId}`));
    assert.doesNotMatch(line, /would rejoin[^·]*@a3:/);
    assert.ok(fake.requests.some((r) => r.startsWith('GET /_matrix/federation/v1/state/')), 'the fake was asked for the state');
  });

  it('rejoins a1, a2 to R1 and a3 to R2; each sees the room and b1\'s new messages in /sync, and the missed ones on paging back', async () => {
    const { eventId } = await command(admin, room, bot, '!rejoin all');
    const summary = String((await replyMatching(admin, room, bot, eventId, /Job #\d+ .* (finished|failed)/, 120_000)).content.body);
    assert.match(summary, /2 room\(s\): 2 rejoined, 0 already recovered, 0 partly, 0 failed/);
    assert.match(lineFor(summary, r1), new RegExp(`rejoined ${users.a1.userId}, ${users.a2.userId}|rejoined ${users.a2.userId}, ${users.a1.userId}`));
    assert.match(lineFor(summary, r2), new RegExp(`rejoined ${users.a3.userId}`));

    const reportPath = /Report: (\S+)/.exec(summary)?.[1];
    assert.ok(reportPath, 'the summary names the report');
    assert.equal((await stat(reportPath)).mode & 0o777, 0o600);
    const report = JSON.parse(await readFile(reportPath, 'utf8'));
    assert.equal(report.format, 'steward.rejoin-report/1');
    assert.deepEqual(report.rooms.map((r: any) => r.outcome).sort(), ['rejoined', 'rejoined']);

    await b1.sendText(r1, 'welcome back to R1');
    await b1.sendText(r2, 'welcome back to R2');
    const expect: [keyof typeof clients, string][] = [['a1', r1], ['a2', r1], ['a3', r2]];
    for (const [who, r] of expect) {
      const c = clients[who];
      const want = r === r1 ? 'welcome back to R1' : 'welcome back to R2';
      const deadline = Date.now() + 60_000;
      // Initial sync, then incremental ones (Synapse caches an initial sync's answer for a while).
      const bodies: string[] = [];
      let inRoom = false;
      let since: string | undefined;
      while (Date.now() < deadline && !bodies.includes(want)) {
        const res = await c.sync({ filter: { room: { timeline: { limit: 50 } } }, ...(since ? { since, timeoutMs: 5000 } : {}) });
        since = res.next_batch;
        const joined = res.rooms?.join?.[r];
        if (joined) inRoom = true;
        for (const e of joined?.timeline?.events ?? []) if (e.type === 'm.room.message') bodies.push(String(e.content.body));
      }
      assert.ok(inRoom, `${who} has ${r} among the joined rooms of /sync`);
      assert.ok(bodies.includes(want), `${who} sees b1's new message in ${r} via /sync (saw ${JSON.stringify(bodies)})`);
      // What b1 said while A had lost the room is there too, once the client pages back (Synapse backfills it from B).
      const history = (await roomHistory(c, r)).filter((e) => e.type === 'm.room.message').map((e) => String(e.content.body));
      assert.deepEqual(history, [...sentWhileLost.get(r)!, want], `${who}'s history of ${r}`);
    }
  });

  it('a second rejoin changes nothing and reports the rooms as already recovered', async () => {
    const memberEvents = async (): Promise<string[]> => {
      const st = await clients.a1.roomState(r1);
      return st.filter((e) => e.type === 'm.room.member').map((e) => `${e.state_key}=${e.event_id}`).sort();
    };
    const before = await memberEvents();
    const { eventId } = await command(admin, room, bot, '!rejoin all');
    const summary = String((await replyMatching(admin, room, bot, eventId, /Job #\d+ .* (finished|failed)/, 90_000)).content.body);
    assert.match(summary, /2 room\(s\): 0 rejoined, 2 already recovered/);
    assert.match(summary, /users: 0 rejoined, 3 already joined/);
    assert.match(lineFor(summary, r1), /already recovered/);
    assert.deepEqual(await memberEvents(), before, 'no membership event was sent');

    // The terminal front end runs the same job in-process.
    const cli = await s.steward.cli(['rejoin', 'all']);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /2 room\(s\): 0 rejoined, 2 already recovered/);
    assert.deepEqual(await memberEvents(), before);
  });

  it('joins nobody to a room that only a forging remote answers for', async () => {
    const forged = `!forged:${fake.serverName}`;
    fake.forgeRoom(forged, [users.a1.userId, users.a2.userId]);
    await command(admin, room, bot, `!lost add ${forged} ${fake.serverName}`);
    const { eventId } = await command(admin, room, bot, `!rejoin ${forged}`);
    const summary = String((await replyMatching(admin, room, bot, eventId, /Job #\d+ .* (finished|failed)/, 90_000)).content.body);
    const line = lineFor(summary, forged);
    assert.match(line, /failed/);
    assert.match(line, /event\(s\) in its answer do not verify \(.*is not signed by /);
    assert.match(line, /nobody was joined/);
    for (const c of [clients.a1, clients.a2]) assert.ok(!(await c.joinedRooms()).includes(forged));
  });
});
