import type { JobStore } from '../jobs/job-store.ts';
import type { LinkedAccounts } from '../linked/linked-accounts.ts';
import type { Logger } from '../log.ts';
import type { LogSourceStore, LostRoomStore } from '../recovery/lost-rooms.ts';
import { COUNTERS, type CounterName, type MetricsBackend } from './metrics.ts';

export interface PrometheusSources {
  readonly jobs: JobStore;
  readonly lostRooms: LostRoomStore;
  readonly logSources: LogSourceStore;
  readonly linked: LinkedAccounts | undefined;
  readonly version: string;
  readonly log: Logger;
}

export interface PrometheusExporter extends MetricsBackend {
  /** The text exposition format, gauges refreshed from the database first. */
  scrape(): Promise<{ contentType: string; body: string }>;
}

/**
 * The exporter of `steward run`, built on matrix-appservice-bridge's PrometheusMetrics (the same
 * counters, gauges, collectors and process metrics its bridges expose), with a registry of our
 * own: the bridge keeps its registry private and serves it only through a whole Bridge, which
 * Steward does not run, so prom-client's Registry is imported to serve it ourselves.
 * Loaded only by the service, never by the terminal front end.
 */
export async function createPrometheusExporter(src: PrometheusSources): Promise<PrometheusExporter> {
  const [bridge, prom] = await Promise.all([import('matrix-appservice-bridge'), import('prom-client')]);
  // bridge_app_version then carries Steward's version, not whatever package.json is nearest.
  bridge.setBridgeVersion(src.version);
  const registry = new prom.Registry();
  const metrics = new bridge.PrometheusMetrics(registry); // also collects process and Node metrics
  const namespace = 'steward';

  const counters = new Map<CounterName, ReturnType<typeof metrics.addCounter>>();
  for (const [name, spec] of Object.entries(COUNTERS) as [CounterName, (typeof COUNTERS)[CounterName]][]) {
    counters.set(name, metrics.addCounter({ namespace, name, help: spec.help, labels: [...spec.labels] }));
  }

  metrics.addGauge({ namespace, name: 'info', help: 'Steward version (always 1)', labels: ['version'], refresh: (g) => g.set({ version: src.version }, 1) });
  metrics.addGauge({
    namespace, name: 'jobs', help: 'Stored jobs by state', labels: ['state'],
    refresh: (g) => {
      g.reset();
      const counts = src.jobs.countByState();
      for (const state of ['queued', 'running', 'done', 'failed', 'cancelled', 'interrupted']) g.set({ state }, counts[state] ?? 0);
    },
  });
  metrics.addGauge({
    namespace, name: 'job_items', help: 'Items done and failed over all stored jobs, by job type', labels: ['type', 'outcome'],
    refresh: (g) => {
      g.reset();
      for (const t of src.jobs.itemTotalsByType()) {
        g.set({ type: t.type, outcome: 'done' }, t.done ?? 0);
        g.set({ type: t.type, outcome: 'failed' }, t.failed ?? 0);
      }
    },
  });
  metrics.addGauge({
    namespace, name: 'lost_rooms', help: 'Rooms found lost in Synapse\'s logs, by state', labels: ['state'],
    refresh: (g) => {
      g.reset();
      for (const [state, n] of Object.entries(src.lostRooms.countByState())) g.set({ state }, n);
    },
  });
  metrics.addGauge({
    namespace, name: 'log_lines', help: 'Log lines read from each Synapse log source since Steward started, by outcome (read, unparsed, sighting)', labels: ['source', 'outcome'],
    refresh: (g) => {
      g.reset();
      for (const s of src.logSources.statuses()) {
        g.set({ source: s.source, outcome: 'read' }, s.lines);
        g.set({ source: s.source, outcome: 'unparsed' }, s.unparsed);
        g.set({ source: s.source, outcome: 'sighting' }, s.sightings);
      }
    },
  });
  metrics.addGauge({
    namespace, name: 'log_source_up', help: 'Whether each log source is being followed (1) or failing/ended (0)', labels: ['source'],
    refresh: (g) => {
      g.reset();
      for (const s of src.logSources.statuses()) g.set({ source: s.source }, s.status === 'following' ? 1 : 0);
    },
  });
  metrics.addGauge({
    namespace, name: 'linked_mirror', help: 'Linked accounts counters (invites and receipts mirrored, skipped, directory lookups and errors), as in !links status', labels: ['counter'],
    refresh: (g) => {
      g.reset();
      for (const [counter, n] of Object.entries(src.linked?.store.counters() ?? {})) g.set({ counter }, n);
    },
  });

  return {
    inc(name, labels, by) {
      counters.get(name)?.inc(labels, by);
    },
    async scrape() {
      try {
        await metrics.refresh();
      } catch (err) {
        src.log.warn({ err }, 'could not refresh the metrics gauges');
      }
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
