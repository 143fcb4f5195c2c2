import { setTimeout as sleep } from 'node:timers/promises';
import type { HttpFailure } from '../homeserver/http.ts';
import type { Result } from '../util/result.ts';

export interface JoinPacerOptions {
  /** Joins in flight at once. */
  readonly concurrency: number;
  /** Least time between the starts of two joins. */
  readonly intervalMs: number;
  /** Told each time the homeserver refuses a join for its rate limit, with how long it asks to wait. */
  onRateLimited?(waitMs: number): void;
  /** Further attempts after a 5xx or a lost connection. */
  readonly serverErrorRetries?: number;
  /** Attempts after a 429 before giving up on one join. */
  readonly rateLimitRetries?: number;
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

const defaultSleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  sleep(ms, undefined, signal ? { signal } : undefined).then(() => undefined, () => undefined);

/**
 * Paces joins: at most `concurrency` at once, starts at least `intervalMs` apart, and when the
 * homeserver answers 429 every join waits the time it asks for (not just the refused one), so
 * Steward stays under the limit instead of hammering it. The requests themselves must not retry
 * 429s on their own: the pacer has to see them.
 */
export class JoinPacer {
  private readonly opts: JoinPacerOptions;
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  private nextStart = 0;
  private pausedUntil = 0;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  rateLimited = 0;

  constructor(opts: JoinPacerOptions) {
    this.opts = opts;
    this.sleep = opts.sleep ?? defaultSleep;
  }

  async run<T>(attempt: () => Promise<Result<T, HttpFailure>>, signal?: AbortSignal): Promise<Result<T, HttpFailure>> {
    await this.acquire();
    try {
      let serverErrors = 0;
      let limits = 0;
      for (;;) {
        await this.waitTurn(signal);
        const outcome = await attempt();
        if (outcome.ok || signal?.aborted) return outcome;
        const { status } = outcome.error;
        if (status === 429) {
          limits += 1;
          this.rateLimited += 1;
          if (limits > (this.opts.rateLimitRetries ?? 50)) return outcome;
          const asked = (outcome.error.body as { retry_after_ms?: unknown } | undefined)?.retry_after_ms;
          const waitMs = typeof asked === 'number' && asked >= 0 ? Math.min(asked, 15 * 60_000) : 2000 * limits;
          this.pausedUntil = Math.max(this.pausedUntil, Date.now() + waitMs);
          this.opts.onRateLimited?.(waitMs);
          continue;
        }
        if ((status === 0 || status >= 500) && outcome.error.code !== 'E_CANCELLED' && serverErrors < (this.opts.serverErrorRetries ?? 3)) {
          serverErrors += 1;
          await this.sleep(Math.min(30_000, 1000 * 2 ** (serverErrors - 1)), signal);
          continue;
        }
        return outcome;
      }
    } finally {
      this.release();
    }
  }

  private async waitTurn(signal?: AbortSignal): Promise<void> {
    for (;;) {
      const now = Date.now();
      const at = Math.max(this.pausedUntil, this.nextStart);
      if (at <= now || signal?.aborted) break;
      await this.sleep(at - now, signal);
    }
    this.nextStart = Date.now() + this.opts.intervalMs;
  }

  private async acquire(): Promise<void> {
    if (this.active < this.opts.concurrency) {
      this.active += 1;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next(); // the slot passes straight on
    else this.active -= 1;
  }
}

/** A counting semaphore as a function: runs `fn` when fewer than `n` others are running. */
export function limiter(n: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async (fn) => {
    if (active >= n) await new Promise<void>((resolve) => waiting.push(resolve));
    else active += 1;
    try {
      return await fn();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else active -= 1;
    }
  };
}
