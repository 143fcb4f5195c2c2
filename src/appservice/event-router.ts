import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { Inbox, MatrixEvent } from '../store/inbox.ts';
import { errorMessage } from '../util/result.ts';

export interface EventHandler {
  readonly name: string;
  /** Decides at intake whether the event is kept at all; must be cheap and synchronous. */
  wants(event: MatrixEvent, kind: 'pdu' | 'ephemeral'): boolean;
  handle(event: MatrixEvent, kind: 'pdu' | 'ephemeral'): Promise<void>;
}

/**
 * Drains the inbox in arrival order through the handlers that want each event. One event that
 * fails is marked failed with its error and the queue moves on.
 */
export class EventRouter {
  private readonly handlers: EventHandler[] = [];
  private readonly inbox: Inbox;
  private readonly log: Logger;
  private draining: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private readonly metrics: Metrics | undefined;

  constructor(inbox: Inbox, log: Logger, metrics?: Metrics) {
    this.inbox = inbox;
    this.log = log.child({ module: 'router' });
    this.metrics = metrics;
  }

  add(handler: EventHandler): void {
    this.handlers.push(handler);
  }

  wants = (event: MatrixEvent, kind: 'pdu' | 'ephemeral'): boolean => this.handlers.some((h) => h.wants(event, kind));

  /** Starts draining if idle; if a drain is under way, it takes another pass when done. */
  kick = (): void => {
    if (this.stopped) return;
    if (this.draining) {
      this.again = true;
      return;
    }
    this.draining = this.drain().finally(() => {
      this.draining = null;
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
  };

  async stop(): Promise<void> {
    this.stopped = true;
    await this.draining;
  }

  private async drain(): Promise<void> {
    for (;;) {
      const batch = this.inbox.pending(100);
      if (batch.length === 0 || this.stopped) return;
      for (const item of batch) {
        if (this.stopped) return;
        let current = '';
        try {
          for (const h of this.handlers) {
            if (!h.wants(item.event, item.kind)) continue;
            current = h.name;
            await h.handle(item.event, item.kind);
            this.metrics?.inc('events_routed_total', { handler: h.name, outcome: 'ok' });
          }
          this.inbox.markDone(item.seq);
        } catch (err) {
          if (current) this.metrics?.inc('events_routed_total', { handler: current, outcome: 'error' });
          this.log.error({ err, seq: item.seq, type: item.event.type, roomId: item.event.room_id }, 'event handler failed');
          this.inbox.markFailed(item.seq, errorMessage(err));
        }
      }
    }
  }
}
