// Checks the test rig itself against real Synapse, so other end-to-end tests can
// trust it: two servers federate, users register, a client session sees remote
// events, and a database restore really rolls a server back.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MatrixHttpError, MatrixTestClient } from '../rig/client.ts';
import { startFederatingPair } from '../rig/synapse.ts';
import type { RegisteredUser, SynapseInstance } from '../rig/synapse.ts';

describe('test rig: two federating Synapses', () => {
  let hs1: SynapseInstance;
  let hs2: SynapseInstance;
  let admin1: RegisteredUser;
  let alice: RegisteredUser;
  let bob: RegisteredUser;

  before(async () => {
    [hs1, hs2] = await startFederatingPair();
    [admin1, alice, , bob] = await Promise.all([
      hs1.registerUser('admin', { admin: true }),
      hs1.registerUser('alice', { displayname: 'Alice' }),
      hs2.registerUser('admin', { admin: true }),
      hs2.registerUser('bob'),
    ]);
  });

  after(async () => {
    await Promise.all([hs1?.cleanup(), hs2?.cleanup()]);
  });

  it('names each server by its TLS port, distinct from the client port', () => {
    assert.match(hs1.serverName, /^localhost:\d+$/);
    assert.notEqual(hs1.serverName, hs2.serverName);
    assert.equal(alice.userId, `@alice:${hs1.serverName}`);
    assert.equal(hs1.federationUrl, `https://${hs1.serverName}`);
  });

  it('carries an invite, a remote join and a message across federation', async () => {
    const aliceClient = new MatrixTestClient(hs1.clientUrl, alice.userId, alice.accessToken);
    const bobClient = await MatrixTestClient.login(hs2.clientUrl, bob.userId, bob.password);

    const roomId = await aliceClient.createRoom({ preset: 'private_chat', name: 'rig' });
    await aliceClient.invite(roomId, bob.userId);
    assert.equal(await bobClient.join(roomId, [hs1.serverName]), roomId);

    const seenJoin = await aliceClient.waitForEvent(
      (ev) => ev.type === 'm.room.member' && ev.state_key === bob.userId && ev.content?.membership === 'join',
      { fromStart: true },
    );
    assert.equal(seenJoin.roomId, roomId);

    const eventId = await bobClient.sendText(roomId, 'hello from hs2');
    const seen = await aliceClient.waitForEvent((ev) => ev.event_id === eventId);
    assert.equal(seen.roomId, roomId);
    assert.equal(seen.event.sender, bob.userId);
    assert.equal(seen.event.content.body, 'hello from hs2');

    // Two messages that may land in one sync batch: the second wait must still see it.
    const first = await bobClient.sendText(roomId, 'one');
    const second = await bobClient.sendText(roomId, 'two');
    assert.equal((await aliceClient.waitForEvent((ev) => ev.event_id === first)).event.content.body, 'one');
    assert.equal((await aliceClient.waitForEvent((ev) => ev.event_id === second)).event.content.body, 'two');
  });

  it('makes admin:true users server admins and others not', async () => {
    const adminClient = new MatrixTestClient(hs1.clientUrl, admin1.userId, admin1.accessToken);
    const version = await adminClient.request('GET', '/_synapse/admin/v1/server_version');
    assert.equal(typeof version.server_version, 'string');
    const details = await adminClient.request(
      'GET',
      `/_synapse/admin/v2/users/${encodeURIComponent(alice.userId)}`,
    );
    assert.equal(details.admin, false);
    assert.equal(details.displayname, 'Alice');

    const aliceClient = new MatrixTestClient(hs1.clientUrl, alice.userId, alice.accessToken);
    await assert.rejects(
      aliceClient.request('GET', `/_synapse/admin/v2/users/${encodeURIComponent(admin1.userId)}`),
      (err: unknown) => err instanceof MatrixHttpError && err.status === 403 && err.errcode === 'M_FORBIDDEN',
    );
  });

  it('rolls a server back to a database backup', async () => {
    const aliceClient = new MatrixTestClient(hs1.clientUrl, alice.userId, alice.accessToken);
    const before = await aliceClient.joinedRooms();

    await assert.rejects(hs1.backupDatabase(), /stopped/);
    await hs1.stop();
    const backup = await hs1.backupDatabase();
    await hs1.start();

    const doomed = await aliceClient.createRoom({ name: 'after the backup' });
    assert.ok((await aliceClient.joinedRooms()).includes(doomed));

    await hs1.stop();
    await hs1.restoreDatabase(backup);
    await hs1.start();

    const afterRestore = await aliceClient.joinedRooms();
    assert.ok(!afterRestore.includes(doomed), 'room created after the backup survived the restore');
    assert.deepEqual([...afterRestore].sort(), [...before].sort());
  });
});
