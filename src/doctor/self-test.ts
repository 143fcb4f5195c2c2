import { randomUUID } from 'node:crypto';
import type { EventHandler } from '../appservice/event-router.ts';
import type { ClientApi } from '../homeserver/client-api.ts';
import type { MatrixEvent } from '../store/inbox.ts';
import type { CheckResult } from './check.ts';

/** An event type clients do not show, so the probe does not clutter the admin room. */
export const PROBE_TYPE = 'org.steward.doctor.probe';
const WAIT_MS = 15_000;

/**
 * The running service's round trip: an event sent as the bot in the admin room must come back
 * through Steward's own transaction endpoint, and a read receipt on it as an
 * ephemeral event. Proves what a ping cannot: that Synapse pushes this room's events and
 * receipts to Steward, and that they are handled.
 */
export class TransactionSelfTest implements EventHandler {
  readonly name = 'doctor-self-test';
  readonly #client: ClientApi;
  readonly #roomId: string;
  readonly #botUserId: string;
  readonly #events = new Map<string, () => void>();
  readonly #receipts = new Map<string, () => void>();

  constructor(client: ClientApi, roomId: string, botUserId: string) {
    this.#client = client;
    this.#roomId = roomId;
    this.#botUserId = botUserId;
  }

  /**
   * Seen at intake, in the transaction endpoint itself, and never stored: the command that runs
   * the self-test is itself being handled by the router, which handles events one at a time.
   */
  wants(event: MatrixEvent, kind: 'pdu' | 'ephemeral'): boolean {
    if (event.room_id !== this.#roomId) return false;
    if (kind === 'pdu') {
      if (event.type === PROBE_TYPE && typeof event.content.nonce === 'string') this.#events.get(event.content.nonce)?.();
    } else if (event.type === 'm.receipt') {
      const id = this.#receiptFor(event);
      if (id !== undefined) this.#receipts.get(id)?.();
    }
    return false;
  }

  async handle(): Promise<void> {
    // Nothing is ever stored for this handler (see wants).
  }

  #receiptFor(event: MatrixEvent): string | undefined {
    for (const [eventId, byType] of Object.entries(event.content)) {
      const readers = (byType as Record<string, Record<string, unknown>> | undefined)?.['m.read'];
      if (this.#receipts.has(eventId) && readers && typeof readers === 'object' && this.#botUserId in readers) return eventId;
    }
    return undefined;
  }

  async run(signal: AbortSignal): Promise<CheckResult[]> {
    const transactions = 'Transactions reach Steward';
    const ephemeral = 'Ephemeral events (read receipts) reach Steward';
    const nonce = randomUUID();
    const eventBack = waitFor(this.#events, nonce, signal);
    const started = Date.now();
    const sent = await this.#client.sendEvent(this.#roomId, PROBE_TYPE, { nonce });
    if (!sent.ok) {
      this.#events.delete(nonce);
      return [
        { title: transactions, status: 'fail', detail: `could not send a test event in the admin room: ${sent.error.human}`, fix: 'check the admin API and registration lines above' },
        { title: ephemeral, status: 'warn', detail: 'not tested (no test event)' },
      ];
    }
    if (!(await eventBack)) {
      return [
        {
          title: transactions, status: 'fail',
          detail: `a test event sent as the bot (${sent.value.event_id}) did not come back through the transaction endpoint within ${WAIT_MS / 1000} s`,
          fix: 'Synapse may have marked Steward down after failed transactions (it backs off up to 8.5 minutes) or the registration url points elsewhere: see Synapse\'s log for "appservice" and the ping result',
        },
        { title: ephemeral, status: 'warn', detail: 'not tested (no transactions)' },
      ];
    }
    const eventMs = Date.now() - started;
    const okTransactions: CheckResult = { title: transactions, status: 'ok', detail: `a test event sent as the bot came back through the transaction endpoint in ${eventMs} ms` };
    const receiptBack = waitFor(this.#receipts, sent.value.event_id, signal);
    const receiptStarted = Date.now();
    const receipt = await this.#client.sendReceipt(this.#roomId, 'm.read', sent.value.event_id, undefined);
    if (!receipt.ok) {
      this.#receipts.delete(sent.value.event_id);
      return [okTransactions, { title: ephemeral, status: 'fail', detail: `could not send a test read receipt: ${receipt.error.human}` }];
    }
    if (!(await receiptBack)) {
      return [okTransactions, {
        title: ephemeral, status: 'fail',
        detail: `a test read receipt did not arrive within ${WAIT_MS / 1000} s`,
        fix: 'set receive_ephemeral: true (and de.sorunome.msc2409.push_ephemeral: true for older Synapse) in the registration and restart Synapse; without it linked-account receipts are never mirrored',
      }];
    }
    return [okTransactions, { title: ephemeral, status: 'ok', detail: `a test read receipt arrived as an ephemeral event in ${Date.now() - receiptStarted} ms` }];
  }
}

function waitFor(waiters: Map<string, () => void>, key: string, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (value: boolean): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      waiters.delete(key);
      resolve(value);
    };
    const onAbort = (): void => done(false);
    const timer = setTimeout(() => done(false), WAIT_MS);
    signal.addEventListener('abort', onAbort, { once: true });
    waiters.set(key, () => done(true));
  });
}
