/**
 * Counters Steward keeps while it runs, by name. Code at the counting points calls `inc`; nothing
 * is kept until a backend is attached (`steward run` attaches the Prometheus one), so the terminal
 * front end never loads a metrics library. Values that live in the database (jobs, items done,
 * lost rooms, log sources, mirror counters) are read at scrape time instead (src/metrics/prometheus.ts).
 */
export const COUNTERS = {
  transactions_received_total: { help: 'Appservice transactions pushed by the homeserver, by outcome (taken, duplicate, refused, bad, error)', labels: ['outcome'] },
  events_received_total: { help: 'Events kept from transactions for a handler, by kind (pdu, ephemeral)', labels: ['kind'] },
  events_routed_total: { help: 'Events handed to a handler, by handler and outcome (ok, error)', labels: ['handler', 'outcome'] },
  jobs_finished_total: { help: 'Jobs finished by this process, by type and final state', labels: ['type', 'state'] },
  federation_requests_total: { help: 'Federation requests made as our server, by outcome (ok, http_4xx, http_5xx, or the failure code such as E_TIMEOUT)', labels: ['outcome'] },
} as const satisfies Record<string, { help: string; labels: readonly string[] }>;

export type CounterName = keyof typeof COUNTERS;
export type Labels<N extends CounterName> = Record<(typeof COUNTERS)[N]['labels'][number], string>;

export interface MetricsBackend {
  inc(name: CounterName, labels: Record<string, string>, by: number): void;
}

export class Metrics {
  #backend: MetricsBackend | undefined;

  attach(backend: MetricsBackend): void {
    this.#backend = backend;
  }

  get attached(): boolean {
    return this.#backend !== undefined;
  }

  inc<N extends CounterName>(name: N, labels: Labels<N>, by = 1): void {
    // A metric must never break the work it counts.
    try {
      this.#backend?.inc(name, labels, by);
    } catch {
      // ignored
    }
  }
}
