// `archive` catches an event that reaches our server late with a lower depth than what it had
// already archived (a netsplit healing): Synapse orders /messages pages by depth, so such an
// event lands before the position a naive forward reader would resume from. Two federating
// Synapses; Steward beside hs-a.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { MatrixTestClient } from '../rig/client.ts';
import { startStewardPair, type StewardSetup } from '../rig/steward.ts';
import type { RegisteredUser, SynapseInstance } from '../rig/synapse.ts';
import { adminEventIds, readArchive } from './archive-helpers.ts';

describe('archive across a netsplit', () => {
  let a: StewardSetup;
  let hsB: SynapseInstance;
  let bob: RegisteredUser;
  let bobClient: MatrixTestClient;
  let room: string;

  const hasEvent = async (eventId: string): Promise<boolean> => {
    try {
      await a.adminClient.request('GET', `/_synapse/admin/v1/fetch_event/${encodeURIComponent(eventId)}`);
      return true;
    } catch {
      return false;
    }
  };
  const archive = async (): Promise<any[]> => {
    const run = await a.steward.cli(['archive', '--room', room, '--json']);
    assert.equal(run.code, 0, run.stderr + run.stdout);
    assert.equal(JSON.parse(run.stdout).job.failed, 0, run.stdout);
    const files = (await readArchive(`${a.steward.dir}/archive`)).get(room)!;
    return [...files.values()].flat();
  };

  before(async () => {
    const pair = await startStewardPair();
    a = pair.a;
    hsB = pair.b.hs;
    bob = await hsB.registerUser('bob');
    bobClient = new MatrixTestClient(hsB.clientUrl, bob.userId, bob.accessToken);
    room = await a.adminClient.createRoom({ room_version: '10', name: 'Split', preset: 'private_chat' });
    await a.adminClient.invite(room, bob.userId);
    await bobClient.join(room, [a.hs.serverName]);
    const hello = await bobClient.sendText(room, 'hello from b');
    for (let i = 0; !(await hasEvent(hello)); i++) {
      assert.ok(i < 300, 'bob\'s message reached hs-a');
      await sleep(100);
    }
  });

  after(async () => {
    await a?.steward.stop();
    await Promise.all([a?.hs.cleanup(), hsB?.cleanup()]);
  });

  it('archives on the next run the events hs-b sent while the servers were apart, though their depth is lower', async () => {
    await hsB.stop();
    for (let i = 0; i < 8; i++) await a.adminClient.sendText(room, `a alone #${i}`);
    const first = await archive();
    const maxDepth = Math.max(...first.map((l) => l.event.depth));

    // hs-a goes down; hs-b comes back and bob talks on a branch that forked at the split.
    await a.hs.stop();
    await hsB.start();
    const late: string[] = [];
    for (let i = 0; i < 3; i++) late.push(await bobClient.sendText(room, `b alone #${i}`));
    await a.hs.start();
    // Federation delivers once hs-b retries (destination_min_retry_interval is 1s in the rig);
    // each new message from bob is a fresh reason to send, and hs-a fetches the missing ones.
    for (let i = 0; ; i++) {
      // In the room's timeline, not only known: fetched missing events may first be outliers.
      const timeline = new Set(await adminEventIds(a.adminClient, room));
      const arrived = late.map((id) => timeline.has(id));
      if (arrived.every(Boolean)) break;
      assert.ok(i < 120, `bob's messages reached hs-a (${arrived.filter(Boolean).length}/${late.length})`);
      if (i % 5 === 4) late.push(await bobClient.sendText(room, `b nudge #${i}`));
      await sleep(250);
    }

    const second = await archive();
    const byId = new Map(second.map((l) => [l.event_id, l]));
    assert.equal(byId.size, second.length, 'every event once');
    for (const id of late) assert.ok(byId.has(id), `${id} archived`);
    const lowest = Math.min(...late.slice(0, 3).map((id) => byId.get(id).event.depth));
    assert.ok(lowest < maxDepth, `bob's events (depth from ${lowest}) lie before what the first run had reached (depth ${maxDepth})`);
    assert.deepEqual(second.slice(0, first.length).map((l) => l.event_id), first.map((l) => l.event_id), 'the first run\'s lines are untouched');
    assert.deepEqual(second.slice(first.length).map((l) => l.event_id).sort(), [...late].sort(), 'and exactly the late events were appended');
  });
});
