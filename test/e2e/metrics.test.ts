// GET /metrics of a real running Steward, scraped after real commands went through a real Synapse.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MatrixTestClient } from '../rig/client.ts';
import { attachSteward, type StewardSetup } from '../rig/steward.ts';
import { prepareSynapse } from '../rig/synapse.ts';
import { STEWARD_VERSION } from '../../src/version.ts';
import { command } from './room-helpers.ts';

/** `name{labels} value` lines of the exposition format. */
function parse(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const cut = line.lastIndexOf(' ');
    samples.set(line.slice(0, cut), Number(line.slice(cut + 1)));
  }
  return samples;
}

describe('metrics', () => {
  let s: StewardSetup;

  before(async () => {
    const hs = await prepareSynapse({ name: 'metrics-hs', federation: true });
    s = await attachSteward(hs, {
      federation: true,
      config: {
        recovery: { log_sources: [{ file: hs.logPath, start_at: 'start' }], poll_interval_ms: 200 },
        // On, so the mirror counters are exported (linked_accounts.enabled: false exports none).
        linked_accounts: { enabled: true, auto_join: false },
      },
    });
  });

  after(async () => {
    await s?.steward.stop();
    await s?.hs.cleanup();
  });

  it('is served in the Prometheus text format after commands ran, with every family', async () => {
    // A job (dump users), a reply (status) and a federation request (fed query to our own server).
    await command(s.adminClient, s.steward.adminRoomId, s.steward.botUserId, '!dump users');
    await command(s.adminClient, s.steward.adminRoomId, s.steward.botUserId, '!status');
    await command(s.adminClient, s.steward.adminRoomId, s.steward.botUserId, `!fed query ${s.hs.serverName} /_matrix/federation/v1/version`);

    // The dump's job is finished before its summary is sent; wait for the state to show in the store.
    let samples = new Map<string, number>();
    let response: Response | undefined;
    for (let i = 0; i < 200; i++) {
      response = await fetch(`http://127.0.0.1:${s.steward.port}/metrics`);
      samples = parse(await response.text());
      if ((samples.get('steward_jobs_finished_total{type="dump-users",state="done"}') ?? 0) >= 1) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(response!.status, 200);
    assert.match(response!.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4; charset=utf-8$/);

    assert.equal(samples.get('steward_jobs_finished_total{type="dump-users",state="done"}'), 1);
    assert.ok((samples.get('steward_jobs{state="done"}') ?? 0) >= 1);
    assert.equal(samples.get('steward_jobs{state="failed"}'), 0);
    assert.ok((samples.get('steward_job_items{type="dump-users",outcome="done"}') ?? 0) >= 2, 'admin and bot dumped');
    assert.equal(samples.get('steward_job_items{type="dump-users",outcome="failed"}'), 0);
    assert.ok((samples.get('steward_transactions_received_total{outcome="taken"}') ?? 0) >= 3);
    assert.ok((samples.get('steward_events_received_total{kind="pdu"}') ?? 0) >= 3);
    assert.ok((samples.get('steward_events_routed_total{handler="admin-room-commands",outcome="ok"}') ?? 0) >= 3);
    assert.ok((samples.get('steward_federation_requests_total{outcome="ok"}') ?? 0) >= 1);
    assert.equal(samples.get('steward_lost_rooms{state="lost"}'), 0);
    assert.equal(samples.get(`steward_info{version="${STEWARD_VERSION}"}`), 1);
    assert.equal(samples.get(`bridge_app_version{version="${STEWARD_VERSION}"}`), 1);
    // Process metrics, from prom-client's default collectors through the bridge.
    assert.ok((samples.get('process_cpu_user_seconds_total') ?? 0) > 0);
    assert.ok((samples.get('process_resident_memory_bytes') ?? 0) > 0);
    assert.ok([...samples.keys()].some((k) => k.startsWith('nodejs_eventloop_lag_seconds')));
  });

  it('counts Synapse log lines read from a followed log source', async () => {
    let samples = new Map<string, number>();
    const source = `file:${s.hs.logPath}`;
    for (let i = 0; i < 200; i++) {
      samples = parse(await (await fetch(`http://127.0.0.1:${s.steward.port}/metrics`)).text());
      if ((samples.get(`steward_log_lines{source="${source}",outcome="read"}`) ?? 0) > 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok((samples.get(`steward_log_lines{source="${source}",outcome="read"}`) ?? 0) > 0, [...samples.keys()].filter((k) => k.includes('log')).join('\n'));
    assert.equal(samples.get(`steward_log_source_up{source="${source}"}`), 1);
  });

  it('counts a transaction refused for a bad token', async () => {
    const before = parse(await (await fetch(`http://127.0.0.1:${s.steward.port}/metrics`)).text()).get('steward_transactions_received_total{outcome="refused"}') ?? 0;
    const res = await fetch(`http://127.0.0.1:${s.steward.port}/_matrix/app/v1/transactions/x`, { method: 'PUT', headers: { authorization: 'Bearer wrong' }, body: '{"events":[]}' });
    assert.equal(res.status, 403);
    const after = parse(await (await fetch(`http://127.0.0.1:${s.steward.port}/metrics`)).text()).get('steward_transactions_received_total{outcome="refused"}');
    assert.equal(after, before + 1);
  });

  const scrape = async (): Promise<Map<string, number>> => parse(await (await fetch(`http://127.0.0.1:${s.steward.port}/metrics`)).text());

  it('exports the linked-accounts mirror counters, the same numbers !links status shows', async () => {
    const [alice, carol, bob] = await Promise.all(['alice', 'carol', 'bob'].map((u) => s.hs.registerUser(u)));
    const room = s.steward.adminRoomId;
    const bot = s.steward.botUserId;
    await command(s.adminClient, room, bot, `!link ${alice!.userId} ${carol!.userId}`);
    // bob invites alice: Steward mirrors the invite to carol, as bob.
    const bobClient = new MatrixTestClient(s.hs.clientUrl, bob!.userId, bob!.accessToken);
    const roomId = await bobClient.createRoom({ name: 'Invites mirrored' });
    await bobClient.invite(roomId, alice!.userId);
    let samples = new Map<string, number>();
    for (let i = 0; i < 200; i++) {
      samples = await scrape();
      if ((samples.get('steward_linked_mirror{counter="invites.sent"}') ?? 0) >= 1) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(samples.get('steward_linked_mirror{counter="invites.sent"}'), 1, [...samples.keys()].filter((k) => k.includes('linked')).join('\n'));
    const status = await command(s.adminClient, room, bot, '!links status');
    for (const [key, value] of samples) {
      const counter = /^steward_linked_mirror\{counter="([^"]+)"\}$/.exec(key)?.[1];
      if (counter) assert.ok(String(status.reply.content.body).includes(`${counter}: ${value}`), `${counter} ${value} in:\n${status.reply.content.body}`);
    }
  });

  it('counts lost rooms by state', async () => {
    const before = (await scrape()).get('steward_lost_rooms{state="lost"}');
    assert.equal(before, 0);
    await command(s.adminClient, s.steward.adminRoomId, s.steward.botUserId, '!lost add !gone:elsewhere.example elsewhere.example');
    assert.equal((await scrape()).get('steward_lost_rooms{state="lost"}'), 1);
    await command(s.adminClient, s.steward.adminRoomId, s.steward.botUserId, '!lost forget !gone:elsewhere.example');
    const after = await scrape();
    assert.equal(after.get('steward_lost_rooms{state="lost"}'), 0);
    assert.equal(after.get('steward_lost_rooms{state="forgotten"}'), 1);
  });
});
