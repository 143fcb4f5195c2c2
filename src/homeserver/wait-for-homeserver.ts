import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log.ts';
import { fail, ok, type Result } from '../util/result.ts';
import type { HomeserverHttp } from './http.ts';

export interface WaitForHomeserverOptions {
  /** Total time to keep trying; 0 means one attempt. */
  readonly waitMs: number;
  readonly log: Logger;
  /** Per-attempt timeout (a black-holed connection must not eat the whole budget). */
  readonly attemptTimeoutMs?: number;
  readonly signal?: AbortSignal;
  /** Backoff sequence start and cap; tests shorten them. */
  readonly firstDelayMs?: number;
  readonly maxDelayMs?: number;
}

/**
 * Before anything else, the homeserver must answer at all: Steward is often started beside
 * Synapse (systemd, compose) and gets there first. Polls `GET /_matrix/client/versions` with
 * backoff (1, 2, 4 … 30 s, each wait logged) until it answers or `waitMs` is spent, so that
 * "not reachable" is reported as such and not as a registration problem.
 */
export async function waitForHomeserver(http: HomeserverHttp, opts: WaitForHomeserverOptions): Promise<Result<{ versions: string[]; attempts: number }>> {
  const log = opts.log.child({ module: 'startup' });
  const deadline = Date.now() + opts.waitMs;
  const maxDelay = opts.maxDelayMs ?? 30_000;
  let delay = opts.firstDelayMs ?? 1000;
  for (let attempt = 1; ; attempt++) {
    const answer = await http.request<{ versions?: unknown }>('GET', '/_matrix/client/versions', {
      maxRetries: 0,
      // Reachability only: with a token, an unloaded registration's as_token would get a 401 here.
      anonymous: true,
      timeoutMs: opts.attemptTimeoutMs ?? 10_000,
      signal: opts.signal,
    });
    if (answer.ok) {
      const versions = Array.isArray(answer.value.versions) ? answer.value.versions.filter((v): v is string => typeof v === 'string') : [];
      if (attempt > 1) log.info({ attempts: attempt }, 'the homeserver answers now');
      return ok({ versions, attempts: attempt });
    }
    const { status } = answer.error;
    if (answer.error.code === 'E_CANCELLED') return fail('E_CANCELLED', 'Stopped while waiting for the homeserver.');
    // A 4xx means something answered that is not a Matrix client API: waiting will not fix that.
    if (status >= 400 && status < 500) {
      return fail('E_HOMESERVER', `${http.baseUrl} answered ${status} to GET /_matrix/client/versions: is homeserver.url the client-server API of Synapse?`, answer.error.log);
    }
    const why = status === 0 ? answer.error.human.replace(/^GET \S+: /, '') : `it answers ${status}`;
    const left = deadline - Date.now();
    if (left <= 0) {
      const waited = opts.waitMs > 0 ? ` (waited ${Math.round(opts.waitMs / 1000)} s, homeserver.startup_wait_seconds)` : '';
      return fail('E_HOMESERVER_UNREACHABLE', `The homeserver at ${http.baseUrl} is not reachable: ${why}${waited}. Is Synapse running, and is homeserver.url right?`, answer.error.log);
    }
    const waitMs = Math.min(delay, left);
    log.warn({ url: http.baseUrl, attempt, reason: answer.error.log, retryInMs: waitMs }, `the homeserver is not reachable yet; trying again in ${Math.round(waitMs / 100) / 10} s`);
    try {
      await sleep(waitMs, undefined, opts.signal ? { signal: opts.signal } : undefined);
    } catch {
      return fail('E_CANCELLED', 'Stopped while waiting for the homeserver.');
    }
    delay = Math.min(maxDelay, delay * 2);
  }
}
