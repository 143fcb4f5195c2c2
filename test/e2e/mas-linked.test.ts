// Linked accounts between two servers that both delegate auth to MAS (stand-ins, see
// test/rig/fake-mas.ts): invites and read receipts are mirrored through identity assertion alone,
// which Synapse still honours under MAS (with MSC4190 forced on for appservices).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MatrixTestClient } from '../rig/client.ts';
import { FakeMas } from '../rig/fake-mas.ts';
import { startStewardPair, type StewardSetup } from '../rig/steward.ts';
import { command } from './room-helpers.ts';
import { eventually, ReceiptWatcher } from './linked-helpers.ts';

describe('linked accounts under MAS', () => {
  let masA: FakeMas;
  let masB: FakeMas;
  let a: StewardSetup;
  let b: StewardSetup;
  let aliceA: MatrixTestClient;
  let bobA: MatrixTestClient;
  let aliceB: MatrixTestClient;
  let watch: ReceiptWatcher | undefined;

  before(async () => {
    [masA, masB] = await Promise.all([FakeMas.start(), FakeMas.start()]);
    const linked = { linked_accounts: { enabled: true } };
    const pair = await startStewardPair({ both: true, a: { mas: masA, config: linked }, b: { mas: masB, config: linked } });
    a = pair.a;
    b = pair.b as StewardSetup;
    const user = async (mas: FakeMas, s: StewardSetup, localpart: string) => {
      const u = await mas.provisionUser(s.hs, localpart);
      return new MatrixTestClient(s.hs.clientUrl, u.userId, u.accessToken);
    };
    [aliceA, bobA, aliceB] = await Promise.all([user(masA, a, 'alice'), user(masA, a, 'bob'), user(masB, b, 'alice')]);
    for (const s of [a, b]) {
      const { reply } = await command(s.adminClient, s.steward.adminRoomId, s.steward.botUserId, `!link ${aliceA.userId} ${aliceB.userId}`);
      assert.match(reply.content.body, /Linked/);
    }
  });

  after(async () => {
    await watch?.stop();
    await Promise.all([a?.steward.stop(), b?.steward.stop()]);
    await Promise.all([a?.hs.cleanup(), b?.hs.cleanup()]);
    await Promise.all([masA?.close(), masB?.close()]);
  });

  it('mirrors an invite (auto-joined on B) and a read receipt from alice@A to alice@B', async () => {
    const room = await bobA.createRoom({ preset: 'private_chat', name: 'linked under MAS' });
    await bobA.invite(room, aliceA.userId);
    await eventually('alice@B joined the room', async () => (await aliceB.joinedRooms()).includes(room), 30_000);
    await aliceA.join(room);
    watch = new ReceiptWatcher(aliceB, room);
    await watch.start();
    const m = await bobA.sendText(room, 'read me');
    await aliceA.sendReceipt(room, m);
    await watch.waitFor(aliceB.userId, m);
  });
});
