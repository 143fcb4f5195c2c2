// Linked accounts end to end: two federating Synapses, each with its own Steward, a directory
// served by this test on 127.0.0.1, and local links made with !link. Invites are mirrored (and
// auto-joined), read receipts follow the person across servers without loops, a broken directory
// mirrors nothing, and receipts missed while a Steward was down are caught up at its start.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { MatrixTestClient } from '../rig/client.ts';
import { startStewardPair, type StewardSetup } from '../rig/steward.ts';
import { command } from './room-helpers.ts';
import { currentReceipts, eventually, ReceiptWatcher, startTestDirectory, type TestDirectory } from './linked-helpers.ts';

type Users = { alice: MatrixTestClient; bob?: MatrixTestClient; carol: MatrixTestClient; dave: MatrixTestClient };

async function client(s: StewardSetup, localpart: string): Promise<MatrixTestClient> {
  const u = await s.hs.registerUser(localpart, { password: `${localpart}-password` });
  return new MatrixTestClient(s.hs.clientUrl, u.userId, u.accessToken);
}

/** Log lines of one Steward with this message, optionally filtered. */
async function logged(s: StewardSetup, msg: string, where: (l: Record<string, unknown>) => boolean = () => true): Promise<Record<string, unknown>[]> {
  return (await s.steward.logLines()).filter((l) => l.msg === msg && where(l));
}

/** Receipt requests made through identity assertion (Steward's), from Synapse's access log. */
async function assertedReceiptPosts(s: StewardSetup): Promise<number> {
  const text = await readFile(s.hs.logPath, 'utf8');
  return text.split('\n').filter((l) => /"POST \/_matrix\/client\/v3\/rooms\/[^ ]+\/receipt\/[^ ]+\?user_id=/.test(l)).length;
}

const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

async function membership(c: MatrixTestClient, roomId: string, userId: string): Promise<string | undefined> {
  const state = await c.roomState(roomId);
  return state.find((e: any) => e.type === 'm.room.member' && e.state_key === userId)?.content?.membership;
}

describe('linked accounts across two servers', () => {
  let directory: TestDirectory;
  let a: StewardSetup;
  let b: StewardSetup;
  let A: Users & { bob: MatrixTestClient };
  let B: Users;
  let room: string; // bob@A's room with alice@A and alice@B
  let watchB: ReceiptWatcher; // alice@B's view of that room
  let watchA: ReceiptWatcher; // alice@A's view

  before(async () => {
    directory = await startTestDirectory();
    const linked = {
      enabled: true,
      directory: { url: directory.urlTemplate, timeout_ms: 1500, cache_seconds: 300, negative_cache_seconds: 1, address_allowlist: ['127.0.0.1/32'] },
    };
    const pair = await startStewardPair({ both: true, a: { config: { linked_accounts: linked } }, b: { config: { linked_accounts: linked } } });
    a = pair.a;
    b = pair.b as StewardSetup;
    const [aliceA, bobA, carolA, daveA, aliceB, carolB, daveB] = await Promise.all([
      client(a, 'alice'), client(a, 'bob'), client(a, 'carol'), client(a, 'dave'),
      client(b, 'alice'), client(b, 'carol'), client(b, 'dave'),
    ]);
    A = { alice: aliceA, bob: bobA, carol: carolA, dave: daveA };
    B = { alice: aliceB, carol: carolB, dave: daveB };
    directory.link(aliceA.userId, aliceB.userId);
    // command() waits from the client's sync position: take it now, so no reply can slip before it.
    await Promise.all([a.adminClient, b.adminClient].map((c) => c.waitForEvent(() => true, { timeoutMs: 1 }).catch(() => undefined)));
  });

  after(async () => {
    await Promise.all([watchA?.stop(), watchB?.stop()]);
    await Promise.all([a?.steward.stop(), b?.steward.stop()]);
    await Promise.all([a?.hs.cleanup(), b?.hs.cleanup()]);
    await directory?.close();
  });

  it('bob@A invites alice@A → alice@B is invited by bob@A and auto-joins (directory link)', async () => {
    room = await A.bob.createRoom({ preset: 'private_chat', name: 'linked' });
    await A.bob.invite(room, A.alice.userId);
    await eventually('alice@B joined the room', async () => (await B.alice.joinedRooms()).includes(room), 30_000);
    // The invite came from bob@A (the inviter), marked as mirrored for alice@A.
    const history = await A.bob.request('GET', `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/messages`, undefined, { dir: 'b', limit: '100' });
    const invite = history.chunk.find((e: any) => e.type === 'm.room.member' && e.state_key === B.alice.userId && e.content?.membership === 'invite');
    assert.ok(invite, 'an invite for alice@B');
    assert.equal(invite.sender, A.bob.userId);
    assert.deepEqual(invite.content['org.steward.linked'], { account: A.alice.userId });
    // alice@A's own invite was a real one: she decides herself.
    assert.equal(await membership(A.bob, room, A.alice.userId), 'invite');
    await A.alice.join(room);
    const autoJoined = new RegExp(`✓ auto-join → ${escape(B.alice.userId)} \\(for ${escape(A.alice.userId)}\\)`);
    await eventually('Steward B lists the auto-join in !links activity', async () => autoJoined.test((await command(b.adminClient, b.steward.adminRoomId, b.steward.botUserId, '!links activity')).reply.content.body));
    const onA = await command(a.adminClient, a.steward.adminRoomId, a.steward.botUserId, '!links activity');
    assert.match(onA.reply.content.body, /✓ invite → @alice:/);
  });

  it('a room created by alice@B gets alice@A, auto-joined', async () => {
    const created = await B.alice.createRoom({ preset: 'private_chat', name: 'made on B' });
    await eventually('alice@A joined the room alice@B created', async () => (await A.alice.joinedRooms()).includes(created), 30_000);
    assert.equal(await membership(B.alice, created, A.alice.userId), 'join');
  });

  it('alice@A reads bob\'s message → alice@B\'s receipt moves to it; and the other way; threads keep their id', async () => {
    watchB = new ReceiptWatcher(B.alice, room);
    watchA = new ReceiptWatcher(A.alice, room);
    await Promise.all([watchB.start(), watchA.start()]);
    const m1 = await A.bob.sendText(room, 'first');
    await A.alice.sendReceipt(room, m1);
    await watchB.waitFor(B.alice.userId, m1);

    const m2 = await A.bob.sendText(room, 'second');
    await eventually('m2 reached B', async () => (await B.alice.request('GET', `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/event/${encodeURIComponent(m2)}`)).event_id === m2);
    await B.alice.sendReceipt(room, m2);
    await watchA.waitFor(A.alice.userId, m2);

    const reply = await A.bob.sendEvent(room, 'm.room.message', { msgtype: 'm.text', body: 'in a thread', 'm.relates_to': { rel_type: 'm.thread', event_id: m2 } });
    await A.alice.sendReceipt(room, reply, 'm.read', m2);
    const mirrored = await watchB.waitFor(B.alice.userId, reply);
    assert.equal(mirrored.threadId, m2, 'the mirrored receipt is in the same thread');
  });

  it('mirrors 100 receipts in a row exactly once each, and then all receipt traffic stops', async () => {
    const events: string[] = [];
    for (let i = 0; i < 100; i++) events.push(await A.bob.sendText(room, `message ${i}`));
    await eventually('the last message reached B', async () => (await B.alice.request('GET', `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/event/${encodeURIComponent(events.at(-1)!)}`)).event_id);
    const postsBefore = { a: await assertedReceiptPosts(a), b: await assertedReceiptPosts(b) };
    for (const eventId of events) {
      await A.alice.sendReceipt(room, eventId);
      await watchB.waitFor(B.alice.userId, eventId);
    }
    const ids = new Set(events);
    const onB = await logged(b, 'mirrored a read receipt', (l) => ids.has(String(l.eventId)));
    const onA = await logged(a, 'mirrored a read receipt', (l) => ids.has(String(l.eventId)));
    assert.equal(onB.length, 100, 'Steward B mirrored each of the 100 receipts');
    assert.equal(new Set(onB.map((l) => l.eventId)).size, 100, 'each exactly once');
    assert.ok(onB.every((l) => l.from === A.alice.userId && l.to === B.alice.userId));
    assert.equal(onA.length, 0, 'Steward A bounced none back: alice@A was already there');

    // Quiet: no receipt is sent by either Steward any more. (First let the last mirrored receipt
    // travel back to A, where Steward A finds alice@A already there.)
    await watchA.waitFor(B.alice.userId, events.at(-1)!);
    const posts = { a: await assertedReceiptPosts(a), b: await assertedReceiptPosts(b) };
    assert.equal(posts.b - postsBefore.b, 100, 'Synapse B saw exactly 100 receipts sent by Steward');
    assert.equal(posts.a - postsBefore.a, 0, 'Synapse A saw none');
    const seenBefore = watchB.seen.length + watchA.seen.length;
    await sleep(4000);
    assert.deepEqual({ a: await assertedReceiptPosts(a), b: await assertedReceiptPosts(b) }, posts, 'no receipt requests after they stopped');
    assert.equal(watchB.seen.length + watchA.seen.length, seenBefore, 'no receipt traffic in the room after they stopped');
    assert.equal((await logged(b, 'mirrored a read receipt', (l) => ids.has(String(l.eventId)))).length, 100);
    const status = await command(a.adminClient, a.steward.adminRoomId, a.steward.botUserId, '!links status');
    assert.match(status.reply.content.body, /receipts\.skipped_already_there: \d+/);
  });

  it('links carol@A and carol@B with !link (no directory entry): invite mirrored, !links shows where links come from', async () => {
    for (const s of [a, b]) {
      const linked = await command(s.adminClient, s.steward.adminRoomId, s.steward.botUserId, `!link ${A.carol.userId} ${B.carol.userId}`);
      assert.match(linked.reply.content.body, /Linked .* \(1 new link\)/);
    }
    const shown = await command(a.adminClient, a.steward.adminRoomId, a.steward.botUserId, `!links ${A.carol.userId}`);
    assert.match(shown.reply.content.body, new RegExp(`${escape(B.carol.userId)} — local`));
    assert.match(shown.reply.content.body, /Directory: knows no linked accounts/);
    const terminal = await a.steward.cli(['links', A.carol.userId]);
    assert.equal(terminal.code, 0, terminal.stderr);
    assert.match(terminal.stdout, new RegExp(`${escape(B.carol.userId)} — local`), 'the same from the terminal');
    const alice = await command(a.adminClient, a.steward.adminRoomId, a.steward.botUserId, `!links ${A.alice.userId}`);
    assert.match(alice.reply.content.body, new RegExp(`${escape(B.alice.userId)} — directory`));

    const carolRoom = await A.bob.createRoom({ preset: 'private_chat', name: 'carol' });
    await A.bob.invite(carolRoom, A.carol.userId);
    await eventually('carol@B joined', async () => (await B.carol.joinedRooms()).includes(carolRoom), 30_000);
  });

  it('a directory answering garbage, or down: nothing mirrored, nothing crashes, a clear log line; mirroring resumes when it is fixed', async () => {
    directory.set(A.dave.userId, 'garbage');
    directory.set(B.dave.userId, 'garbage');
    for (const d of [A.dave, B.dave]) await A.bob.invite(room, d.userId);
    await A.dave.join(room);
    await B.dave.join(room, [a.hs.serverName]);
    const m = await A.bob.sendText(room, 'for dave');
    await eventually('m reached B', async () => (await B.dave.request('GET', `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/event/${encodeURIComponent(m)}`)).event_id === m);
    await A.dave.sendReceipt(room, m);
    const line = await eventually('Steward B logs the malformed answer', async () => (await b.steward.logLines()).find((l) => l.kind === 'malformed' && l.userId === A.dave.userId));
    assert.match(String(line.msg), /linked accounts directory: no usable answer for @dave:.* \(the answer is not JSON\); nothing is mirrored for this user/);
    await watchB.waitFor(A.dave.userId, m); // the receipt itself did reach B
    await sleep(1500);
    assert.ok(!(await currentReceipts(B.dave, room, B.dave.userId)).some((r) => r.eventId === m), 'dave@B got no receipt');

    // The directory down (connections refused), after the negative cache (1 s) expired.
    await directory.down();
    const m2 = await A.bob.sendText(room, 'for dave again');
    await eventually('m2 reached B', async () => (await B.dave.request('GET', `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/event/${encodeURIComponent(m2)}`)).event_id === m2);
    await A.dave.sendReceipt(room, m2);
    const down = await eventually('Steward B logs the refused connection', async () => (await b.steward.logLines()).find((l) => l.kind === 'network' && l.userId === A.dave.userId));
    assert.match(String(down.msg), /no usable answer for @dave:.* \(cannot reach the directory \(ECONNREFUSED\)\); nothing is mirrored/);
    await sleep(1500);
    assert.ok(!(await currentReceipts(B.dave, room, B.dave.userId)).some((r) => r.eventId === m2), 'dave@B got no receipt');
    assert.equal(await membership(A.bob, room, B.dave.userId), 'join');
    assert.ok(a.steward.running && b.steward.running, 'both Stewards still run');
    const status = await command(b.adminClient, b.steward.adminRoomId, b.steward.botUserId, '!links status');
    assert.match(status.reply.content.body, /directory\.errors\.malformed: [1-9]/);
    assert.match(status.reply.content.body, /directory\.errors\.network: [1-9]/);
    const shown = await command(b.adminClient, b.steward.adminRoomId, b.steward.botUserId, `!links ${A.dave.userId}`);
    assert.match(shown.reply.content.body, /Directory: no usable answer/);

    // Back up and fixed: the next receipt is mirrored.
    await directory.resume();
    directory.link(A.dave.userId, B.dave.userId);
    await sleep(1200);
    const m3 = await A.bob.sendText(room, 'dave, fixed');
    await eventually('m3 reached B', async () => (await B.dave.request('GET', `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/event/${encodeURIComponent(m3)}`)).event_id === m3);
    await A.dave.sendReceipt(room, m3);
    await watchB.waitFor(B.dave.userId, m3);
  });

  it('catches up receipts sent while Steward B was down, at its start', async () => {
    await b.steward.stop();
    const m = await A.bob.sendText(room, 'read while Steward B is down');
    await A.alice.sendReceipt(room, m);
    // The receipt reaches Synapse B (alice@B sees alice@A's receipt) but no Steward hears of it.
    await watchB.waitFor(A.alice.userId, m);
    await sleep(500);
    assert.ok(!watchB.find(B.alice.userId, m));
    await b.steward.start();
    await watchB.waitFor(B.alice.userId, m, { timeoutMs: 30_000 });
    const caught = await logged(b, 'catch-up: mirrored a read receipt', (l) => l.eventId === m);
    assert.equal(caught.length, 1);
    const summaries = await eventually('the catch-up of the second start is done', async () => {
      const lines = (await b.steward.logLines()).filter((l) => String(l.msg).startsWith('linked accounts catch-up done'));
      return lines.length === 2 ? lines : undefined;
    });
    assert.ok(Number(summaries.at(-1)!.sent) >= 1 && Number(summaries.at(-1)!.failed) === 0, JSON.stringify(summaries.at(-1)));
  });
});
