// !rejoin on a server that delegates auth to MAS: A (MAS stand-in, Steward) loses a room to a
// database restore; Steward learns the members from B over federation, checks them through the
// admin API (with the admin token) and joins them back by identity assertion, never by login.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MatrixTestClient } from '../rig/client.ts';
import { FakeMas } from '../rig/fake-mas.ts';
import { startStewardPair, type StewardSetup } from '../rig/steward.ts';
import type { SynapseInstance } from '../rig/synapse.ts';
import { command, replyMatching } from './room-helpers.ts';

describe('rejoin under MAS', () => {
  let mas: FakeMas;
  let a: StewardSetup;
  let hsB: SynapseInstance;
  let a1: MatrixTestClient;
  let b1: MatrixTestClient;

  before(async () => {
    mas = await FakeMas.start();
    const pair = await startStewardPair({ a: { mas, federation: true } });
    a = pair.a;
    hsB = pair.b.hs;
    const u = await mas.provisionUser(a.hs, 'a1');
    a1 = new MatrixTestClient(a.hs.clientUrl, u.userId, u.accessToken);
    const b = await hsB.registerUser('b1');
    b1 = new MatrixTestClient(hsB.clientUrl, b.userId, b.accessToken);
  });

  after(async () => {
    await a?.steward.stop();
    await Promise.all([a?.hs.cleanup(), hsB?.cleanup()]);
    await mas?.close();
  });

  it('rejoins a MAS user to a room the restored server forgot', async () => {
    await a.steward.stop();
    await a.hs.stop();
    const backup = await a.hs.backupDatabase();
    await a.hs.start();
    const roomId = await b1.createRoom({ preset: 'public_chat', name: 'R under MAS' });
    await a1.join(roomId, [hsB.serverName]);
    await a.hs.stop();
    await a.hs.restoreDatabase(backup);
    await a.hs.start();
    await a.steward.start();
    assert.ok(!(await a1.joinedRooms()).includes(roomId), 'the restored A has forgotten the room');

    const admin = new MatrixTestClient(a.hs.clientUrl, a.admin.userId, a.admin.accessToken);
    const room = a.steward.adminRoomId;
    const bot = a.steward.botUserId;
    await command(admin, room, bot, `!lost add ${roomId} ${hsB.serverName}`);
    const { eventId } = await command(admin, room, bot, `!rejoin ${roomId}`);
    const summary = String((await replyMatching(admin, room, bot, eventId, /Job #\d+ .* (finished|failed)/, 120_000)).content.body);
    assert.match(summary, /1 rejoined/, summary);
    assert.match(summary, new RegExp(`rejoined ${a1.userId.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    assert.ok((await a1.joinedRooms()).includes(roomId), 'a1 is in the room again');
  });
});
