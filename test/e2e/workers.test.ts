// Steward beside a Synapse with workers: the main process plus one generic worker that sends
// appservice transactions (notify_appservices_from_worker) and federation
// (federation_sender_instances), replicating over Redis, on PostgreSQL. The checks here prove
// the worker (not main) carried Steward's traffic; then a representative part of the suite runs
// unchanged in this mode: the admin room, !dump users, and linked accounts (invite and read
// receipt mirroring across two federating servers, each with its worker).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MatrixTestClient } from '../rig/client.ts';
import { startStewardPair, type StewardSetup } from '../rig/steward.ts';
import type { SynapseInstance } from '../rig/synapse.ts';
import { command, replyMatching } from './room-helpers.ts';

process.env['STEWARD_RIG_WORKERS'] = '1';

/** Sum of a Prometheus counter's samples whose labels include `labels`. */
async function counter(url: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(url)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => have.includes(`${k}="${v}"`))) total += Number(m[3]);
  }
  return total;
}

describe('Synapse with a worker sending appservice traffic and federation', () => {
  let a: StewardSetup;
  let hsB: SynapseInstance;
  let bClient: MatrixTestClient;

  before(async () => {
    const pair = await startStewardPair({ a: { federation: true } });
    a = pair.a;
    hsB = pair.b.hs;
    const bob = await hsB.registerUser('bob');
    bClient = new MatrixTestClient(hsB.clientUrl, bob.userId, bob.accessToken);
  });

  after(async () => {
    await a?.steward.stop();
    await Promise.all([a?.hs.cleanup(), hsB?.cleanup()]);
  });

  it('runs main and worker on PostgreSQL, with Redis', () => {
    assert.equal(a.hs.database, 'postgres');
    assert.ok(a.hs.worker, 'a worker');
    const config = a.hs.config;
    assert.equal(config['notify_appservices_from_worker'], a.hs.worker.name);
    assert.deepEqual(config['federation_sender_instances'], [a.hs.worker.name]);
    assert.equal((config['redis'] as { enabled: boolean }).enabled, true);
  });

  it('admin commands answer, and the worker, not main, sent the transactions that carried them', async () => {
    const room = a.steward.adminRoomId;
    const bot = a.steward.botUserId;
    const { reply } = await command(a.adminClient, room, bot, '!status');
    assert.match(reply.content.body, /^Steward \d+\.\d+\.\d+/);
    const fromWorker = await counter(a.hs.worker!.metricsUrl, 'synapse_appservice_api_sent_transactions_total', { service: 'steward' });
    const fromMain = await counter(a.hs.metricsUrl!, 'synapse_appservice_api_sent_transactions_total', { service: 'steward' });
    assert.ok(fromWorker > 0, `the worker sent ${fromWorker} transactions`);
    assert.equal(fromMain, 0, 'main sent none');
  });

  it('!dump users works through the main process admin API', async () => {
    const { eventId } = await command(a.adminClient, a.steward.adminRoomId, a.steward.botUserId, '!dump users');
    const done = await replyMatching(a.adminClient, a.steward.adminRoomId, a.steward.botUserId, eventId, /finished|failed/, 120_000);
    assert.match(done.content.body, /finished/, done.content.body);
  });

  it('federation leaves through the worker: a remote user joins a room here and sees its messages', async () => {
    const roomId = await a.adminClient.createRoom({ preset: 'public_chat', name: 'federated via worker' });
    await bClient.join(roomId, [a.hs.serverName]);
    const sent = await a.adminClient.sendText(roomId, 'sent by main, delivered by the worker');
    await bClient.waitForEvent((ev, r) => r === roomId && ev.event_id === sent, { timeoutMs: 30_000, fromStart: true });
    const fromWorker = await counter(a.hs.worker!.metricsUrl, 'synapse_federation_client_sent_transactions_total');
    const fromMain = await counter(a.hs.metricsUrl!, 'synapse_federation_client_sent_transactions_total');
    assert.ok(fromWorker > 0, `the worker sent ${fromWorker} federation transactions`);
    assert.equal(fromMain, 0, 'main sent none');
  });

  it('a command sent while the worker was down is answered once it is back and the next event arrives', async () => {
    const room = a.steward.adminRoomId;
    const bot = a.steward.botUserId;
    await a.hs.stopWorker();
    const eventId = await a.adminClient.sendText(room, '!status');
    await a.hs.startWorker();
    // Synapse's appservice sender works through its backlog when it is told of a new event
    // (handlers/appservice.py notify_interested_services), not at start-up: one more event wakes it.
    await a.adminClient.sendText(room, 'anyone there?');
    const reply = await replyMatching(a.adminClient, room, bot, eventId, /^Steward/, 60_000);
    assert.ok(reply);
  });
});

await import('./admin-room.test.ts');
await import('./dump-users.test.ts');
await import('./linked-accounts.test.ts');
