import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { JobStore } from '../../src/jobs/job-store.ts';
import { createLogger } from '../../src/log.ts';
import { Metrics } from '../../src/metrics/metrics.ts';
import { createPrometheusExporter } from '../../src/metrics/prometheus.ts';
import { LogSourceStore, LostRoomStore } from '../../src/recovery/lost-rooms.ts';
import { openDatabase } from '../../src/store/database.ts';

describe('metrics', () => {
  it('drops counts until a backend is attached, and never throws from a broken one', () => {
    const m = new Metrics();
    m.inc('transactions_received_total', { outcome: 'taken' });
    assert.equal(m.attached, false);
    m.attach({ inc: () => { throw new Error('broken'); } });
    m.inc('transactions_received_total', { outcome: 'taken' });
  });

  it('exports counters, and gauges read from the store at scrape time', async () => {
    const db = openDatabase(':memory:');
    const jobs = new JobStore(db);
    const { job } = jobs.create({ type: 'dump-users', args: {}, origin: 'terminal' });
    jobs.start(job.id);
    jobs.progress(job.id, 7, 9, 2);
    jobs.finish(job.id, 'done', { summary: 'ok' }, null);
    const lostRooms = new LostRoomStore(db);
    lostRooms.record([{ roomId: '!a:remote', server: 'remote', ts: 1 }], 'own', 1);
    const logSources = new LogSourceStore(db);
    logSources.saveStatus('file:/var/log/synapse.log', 'following', null, { lines: 120, unparsed: 3, sightings: 1 });
    const exporter = await createPrometheusExporter({ jobs, lostRooms, logSources, linked: undefined, version: '9.9.9', log: createLogger({ level: 'silent' }) });
    const metrics = new Metrics();
    metrics.attach(exporter);
    metrics.inc('transactions_received_total', { outcome: 'taken' }, 2);
    metrics.inc('federation_requests_total', { outcome: 'E_TIMEOUT' });
    const { contentType, body } = await exporter.scrape();
    assert.match(contentType, /^text\/plain; version=0\.0\.4/);
    for (const sample of [
      'steward_transactions_received_total{outcome="taken"} 2',
      'steward_federation_requests_total{outcome="E_TIMEOUT"} 1',
      'steward_jobs{state="done"} 1',
      'steward_jobs{state="running"} 0',
      'steward_job_items{type="dump-users",outcome="done"} 7',
      'steward_job_items{type="dump-users",outcome="failed"} 2',
      'steward_lost_rooms{state="lost"} 1',
      'steward_log_lines{source="file:/var/log/synapse.log",outcome="read"} 120',
      'steward_log_lines{source="file:/var/log/synapse.log",outcome="unparsed"} 3',
      'steward_log_source_up{source="file:/var/log/synapse.log"} 1',
      'steward_info{version="9.9.9"} 1',
      'bridge_app_version{version="9.9.9"} 1',
    ]) assert.ok(body.split('\n').includes(sample), `missing ${sample}`);
    assert.match(body, /^process_cpu_user_seconds_total /m);
    db.close();
  });
});
