// Stale memberships after a database restore, on two real Synapses: carol@A joined a room of B
// after A's backup, A was restored and carol deactivated there; B still counts her as joined.
// !rejoin reports it, and --leave-skipped makes her leave in B's view (make_leave/send_leave as A).
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { MatrixTestClient } from '../rig/client.ts';
import { startStewardPair, type StewardSetup } from '../rig/steward.ts';
import type { RegisteredUser, SynapseInstance } from '../rig/synapse.ts';
import { command, replyMatching } from './room-helpers.ts';

const enc = encodeURIComponent;

describe('rejoin: stale memberships of deactivated users', () => {
  let a: StewardSetup;
  let hsB: SynapseInstance;
  let adminB: MatrixTestClient;
  let alice: RegisteredUser;
  let carol: RegisteredUser;
  let room: string;

  const membershipInB = async (user: string): Promise<string | undefined> => {
    const state = await adminB.request<{ state: Array<{ type: string; state_key: string; content: { membership?: string } }> }>('GET', `/_synapse/admin/v1/rooms/${enc(room)}/state`);
    return state.state.find((e) => e.type === 'm.room.member' && e.state_key === user)?.content.membership;
  };
  const rejoin = async (args: string): Promise<string> => {
    const admin = new MatrixTestClient(a.hs.clientUrl, a.admin.userId, a.admin.accessToken);
    const { eventId } = await command(admin, a.steward.adminRoomId, a.steward.botUserId, `!rejoin ${room} ${args}`, 60_000);
    const done = await replyMatching(admin, a.steward.adminRoomId, a.steward.botUserId, eventId, /room\(s\)/, 120_000);
    return String(done.content.body);
  };

  before(async () => {
    const pair = await startStewardPair({ a: { federation: true } });
    a = pair.a;
    hsB = pair.b.hs;
    adminB = pair.b.adminClient;
    // Registered before the backup, so they exist in the restored database.
    [alice, carol] = await Promise.all([a.hs.registerUser('alice'), a.hs.registerUser('carol')]);
    const bob = await hsB.registerUser('bob');
    const bobClient = new MatrixTestClient(hsB.clientUrl, bob.userId, bob.accessToken);

    await a.hs.stop();
    const backup = await a.hs.backupDatabase();
    await a.hs.start();
    room = await bobClient.createRoom({ preset: 'public_chat', room_version: '10', name: 'Joined after the backup' });
    for (const u of [alice, carol]) await new MatrixTestClient(a.hs.clientUrl, u.userId, u.accessToken).join(room, [hsB.serverName]);
    assert.equal(await membershipInB(carol.userId), 'join');

    await a.steward.stop();
    await a.hs.stop();
    await a.hs.restoreDatabase(backup);
    await a.hs.start();
    await a.steward.start();
    // Deactivated on the restored A, which no longer knows the room: nothing leaves it there.
    const admin = new MatrixTestClient(a.hs.clientUrl, a.admin.userId, a.admin.accessToken);
    await admin.request('POST', `/_synapse/admin/v1/deactivate/${enc(carol.userId)}`, { erase: false });
    assert.equal(await membershipInB(carol.userId), 'join', 'B still counts carol as joined');
    await command(admin, a.steward.adminRoomId, a.steward.botUserId, `!lost add ${room} ${hsB.serverName}`);
  });

  after(async () => {
    await a?.steward.stop();
    await a?.hs.cleanup();
    await hsB?.cleanup();
  });

  it('the dry run reports carol\'s stale membership and how to end it', async () => {
    const body = await rejoin('--dry-run');
    assert.match(body, /Stale memberships: 1 skipped user\(s\) \(deactivated or gone\) are still joined as remote servers see it\. Run the same !rejoin with --leave-skipped/);
    const line = body.split('\n').find((l) => l.includes(`${room} — `));
    assert.ok(line, body);
    assert.ok(line.includes(`would rejoin ${alice.userId}`), line);
    assert.ok(line.includes(`skipped ${carol.userId} (deactivated)`), line);
    assert.ok(line.includes(`stale: ${carol.userId} still joined as ${hsB.serverName} sees it`), line);
  });

  it('--leave-skipped makes carol leave in B\'s view, over federation as A, and rejoins alice', async () => {
    const body = await rejoin('--leave-skipped');
    const line = body.split('\n').find((l) => l.includes(`${room} — `));
    assert.ok(line, body);
    assert.ok(line.includes(`rejoined ${alice.userId}`), line);
    assert.ok(line.includes(`left over federation ${carol.userId}`), line);
    let membership: string | undefined;
    for (let i = 0; i < 100 && membership !== 'leave'; i++) {
      membership = await membershipInB(carol.userId);
      if (membership !== 'leave') await sleep(100);
    }
    assert.equal(membership, 'leave');
    assert.equal(await membershipInB(alice.userId), 'join');
  });
});
