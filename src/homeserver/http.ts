import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log.ts';
import { scrubSecrets } from '../log.ts';
import type { Failure, Result } from '../util/result.ts';

export interface HttpFailure extends Failure {
  /** HTTP status, or 0 when no response arrived (network error, timeout, cancelled). */
  readonly status: number;
  readonly errcode: string | undefined;
  readonly body: unknown;
}

export interface RequestOptions {
  readonly query?: Record<string, string | number | boolean | undefined>;
  readonly body?: unknown;
  /** Identity assertion: act as this local user through the appservice namespace. */
  readonly asUser?: string;
  readonly signal?: AbortSignal;
  /**
   * Whether a 5xx or lost connection may be retried. Defaults to true except for POST, whose
   * retry could do the thing twice; a 429 is always retried because it was refused before acting.
   */
  readonly idempotent?: boolean;
  /** A body sent as is (media uploads) instead of `body` as JSON. */
  readonly rawBody?: { readonly data: Uint8Array; readonly contentType: string };
  /** Overrides the client's retry budget for this request (0: a single attempt). */
  readonly maxRetries?: number;
  /** Overrides the client's per-attempt timeout for this request. */
  readonly timeoutMs?: number;
  /**
   * Send the admin token (when one is configured) although the path is not under
   * `/_synapse/admin/`: for client-API calls Synapse opens to server admins, which under MAS
   * means a token with the admin scope, not the appservice token.
   */
  readonly asServerAdmin?: boolean;
  /**
   * Send no token at all: for `GET /_matrix/client/versions`, which Synapse answers 401 when a
   * token it does not know is sent (it authenticates any token given, for per-user features), so
   * a probe with the appservice token of an unloaded registration would look like a server that
   * is not a Matrix homeserver.
   */
  readonly anonymous?: boolean;
}

/** A successful answer whose body is read chunk by chunk. */
export interface StreamedBody {
  readonly status: number;
  readonly headers: Headers;
  readonly body: AsyncIterable<Uint8Array>;
}

export interface HttpClientOptions {
  readonly baseUrl: string;
  readonly token: string;
  readonly timeoutMs: number;
  readonly maxRetries: number;
  readonly log: Logger;
  readonly userAgent?: string;
  /**
   * Sent instead of `token` on Synapse admin API paths (`/_synapse/admin/…`): under delegated auth
   * (MAS) the appservice token carries no admin scope, so those calls need a token that does.
   */
  readonly adminToken?: string;
}

/** Paths that are Synapse's admin API: the only ones the admin token is ever sent to. */
export const ADMIN_API_PREFIX = '/_synapse/admin/';

/** Builds a path, URL-encoding every interpolated value (user ids, room ids, server names with ports). */
export function path(strings: TemplateStringsArray, ...values: (string | number)[]): string {
  return strings.reduce((acc, s, i) => acc + s + (i < values.length ? encodeURIComponent(String(values[i])) : ''), '');
}

const RATE_LIMIT_RETRY_FACTOR = 4;
const MAX_BACKOFF_MS = 30_000;

/**
 * The one place where requests to the homeserver are made, retried and backed off: 429s wait the
 * time the server asks for, 5xx and lost connections back off exponentially with jitter, 4xx are
 * answered at once as values.
 */
export class HomeserverHttp {
  private readonly opts: HttpClientOptions;
  private readonly log: Logger;
  private adminToken: string | undefined;

  constructor(opts: HttpClientOptions) {
    this.opts = { ...opts, baseUrl: opts.baseUrl.replace(/\/+$/, '') };
    this.log = opts.log.child({ module: 'homeserver-http' });
    this.adminToken = opts.adminToken;
  }

  /**
   * Admin API calls use this token from now on (read at start-up from `homeserver.admin_token_file`);
   * everything else keeps the appservice token and identity assertion.
   */
  setAdminToken(token: string | undefined): void {
    this.adminToken = token;
  }

  /** The admin token for the admin API (and calls that ask for it), the appservice token for the rest. */
  private tokenFor(url: string, opts: { readonly asServerAdmin?: boolean }): string {
    if (this.adminToken === undefined) return this.opts.token;
    return opts.asServerAdmin === true || new URL(url).pathname.startsWith(ADMIN_API_PREFIX) ? this.adminToken : this.opts.token;
  }

  get hasAdminToken(): boolean {
    return this.adminToken !== undefined;
  }

  get baseUrl(): string {
    return this.opts.baseUrl;
  }

  async request<T>(method: string, urlPath: string, opts: RequestOptions = {}): Promise<Result<T, HttpFailure>> {
    return this.withRetries(method, urlPath, opts, (url) => this.once<T>(method, url, opts));
  }

  /**
   * A GET whose body is read as a stream (media downloads: never a whole file in memory). Retries
   * like `request` until the headers arrive; then the timeout counts the time between chunks, and
   * the body's iterator throws if the transfer stops or is cancelled. Consume it to its end or break.
   */
  async stream(urlPath: string, opts: RequestOptions = {}): Promise<Result<StreamedBody, HttpFailure>> {
    return this.withRetries('GET', urlPath, opts, (url) => this.onceStream(url, opts));
  }

  private async withRetries<T>(method: string, urlPath: string, opts: RequestOptions, attemptOnce: (url: string) => Promise<Result<T, HttpFailure>>): Promise<Result<T, HttpFailure>> {
    const url = this.buildUrl(urlPath, opts);
    const idempotent = opts.idempotent ?? method !== 'POST';
    const maxRetries = opts.maxRetries ?? this.opts.maxRetries;
    let serverErrors = 0;
    let rateLimits = 0;
    for (;;) {
      const attempt = await attemptOnce(url);
      if (attempt.ok) return attempt;
      const { status } = attempt.error;
      if (opts.signal?.aborted) return attempt;
      let waitMs: number;
      if (status === 429) {
        if (++rateLimits > maxRetries * RATE_LIMIT_RETRY_FACTOR) return attempt;
        waitMs = retryAfterMs(attempt.error.body) ?? backoffMs(rateLimits);
      } else if ((status === 0 || status >= 500) && idempotent && attempt.error.code !== 'E_CANCELLED') {
        if (++serverErrors > maxRetries) return attempt;
        waitMs = backoffMs(serverErrors);
      } else {
        return attempt;
      }
      this.log.debug({ method, path: redactPath(urlPath), status, waitMs }, 'retrying homeserver request');
      try {
        await sleep(waitMs, undefined, opts.signal ? { signal: opts.signal } : undefined);
      } catch {
        return { ok: false, error: httpFailure(0, 'E_CANCELLED', `${method} ${redactPath(urlPath)}: cancelled`, undefined) };
      }
    }
  }

  private buildUrl(urlPath: string, opts: RequestOptions): string {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) params.set(k, String(v));
    if (opts.asUser) params.set('user_id', opts.asUser);
    const qs = params.toString();
    return `${this.opts.baseUrl}${urlPath}${qs ? (urlPath.includes('?') ? '&' : '?') + qs : ''}`;
  }

  private async once<T>(method: string, url: string, opts: RequestOptions): Promise<Result<T, HttpFailure>> {
    // One controller per attempt, its timer cleared and its listener removed as soon as the answer
    // is read: AbortSignal.timeout/any would keep every request's timer alive for the whole timeout.
    const controller = new AbortController();
    let timedOut = false;
    const timeoutMs = opts.timeoutMs ?? this.opts.timeoutMs;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    const onCancel = (): void => controller.abort();
    opts.signal?.addEventListener('abort', onCancel, { once: true });
    if (opts.signal?.aborted) controller.abort();
    const headers: Record<string, string> = { 'user-agent': this.opts.userAgent ?? 'Steward' };
    if (opts.anonymous !== true) headers['authorization'] = `Bearer ${this.tokenFor(url, opts)}`;
    let body: string | Uint8Array | undefined;
    if (opts.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.body);
    } else if (opts.rawBody) {
      headers['content-type'] = opts.rawBody.contentType;
      body = opts.rawBody.data;
    }
    let response: Response;
    let text: string;
    try {
      response = await fetch(url, { method, headers, body, signal: controller.signal });
      text = await response.text();
    } catch (err) {
      const cancelled = opts.signal?.aborted === true;
      const cause = (err as { cause?: { code?: string } }).cause?.code;
      const what = cancelled ? 'cancelled' : timedOut ? `no answer within ${timeoutMs < 10_000 ? `${timeoutMs} ms` : `${Math.round(timeoutMs / 1000)}s`}` : `cannot reach the homeserver (${cause ?? (err as Error).message})`;
      return { ok: false, error: httpFailure(0, cancelled ? 'E_CANCELLED' : timedOut ? 'E_TIMEOUT' : 'E_NETWORK', `${method} ${redactPath(new URL(url).pathname)}: ${what}`, undefined) };
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onCancel);
    }
    return this.answer<T>(method, url, response, text);
  }

  private async onceStream(url: string, opts: RequestOptions): Promise<Result<StreamedBody, HttpFailure>> {
    const controller = new AbortController();
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, this.opts.timeoutMs);
    };
    const onCancel = (): void => controller.abort();
    const release = (): void => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onCancel);
    };
    arm();
    opts.signal?.addEventListener('abort', onCancel, { once: true });
    if (opts.signal?.aborted) controller.abort();
    const headers = { authorization: `Bearer ${this.tokenFor(url, opts)}`, 'user-agent': this.opts.userAgent ?? 'Steward' };
    const what = (err: unknown): string => opts.signal?.aborted ? 'cancelled' : timedOut ? `no data within ${Math.round(this.opts.timeoutMs / 1000)}s` : `the transfer broke off (${(err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message})`;
    let response: Response;
    try {
      response = await fetch(url, { method: 'GET', headers, signal: controller.signal });
    } catch (err) {
      release();
      const code = opts.signal?.aborted ? 'E_CANCELLED' : timedOut ? 'E_TIMEOUT' : 'E_NETWORK';
      return { ok: false, error: httpFailure(0, code, `GET ${redactPath(new URL(url).pathname)}: ${what(err)}`, undefined) };
    }
    if (!response.ok || !response.body) {
      let text = '';
      try {
        text = await response.text();
      } catch {
        text = '';
      } finally {
        release();
      }
      return this.answer<StreamedBody>('GET', url, response, text);
    }
    const reader = response.body.getReader();
    const pathname = redactPath(new URL(url).pathname);
    async function* chunks(): AsyncGenerator<Uint8Array> {
      let done = false;
      try {
        for (;;) {
          let next: Awaited<ReturnType<typeof reader.read>>;
          try {
            next = await reader.read();
          } catch (err) {
            throw new Error(`GET ${pathname}: ${what(err)}`);
          }
          if (next.done) {
            done = true;
            return;
          }
          arm();
          yield next.value;
        }
      } finally {
        release();
        if (!done) await reader.cancel().catch(() => undefined);
      }
    }
    return { ok: true, value: { status: response.status, headers: response.headers, body: chunks() } };
  }

  private answer<T>(method: string, url: string, response: Response, text: string): Result<T, HttpFailure> {
    let parsed: unknown = undefined;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
    }
    if (response.ok) {
      if (text && parsed === undefined) {
        return { ok: false, error: httpFailure(response.status, 'E_BAD_RESPONSE', `${method} ${redactPath(new URL(url).pathname)}: the homeserver answered ${response.status} with a body that is not JSON`, undefined) };
      }
      return { ok: true, value: (parsed ?? {}) as T };
    }
    const errcode = typeof (parsed as { errcode?: unknown })?.errcode === 'string' ? (parsed as { errcode: string }).errcode : undefined;
    const error = typeof (parsed as { error?: unknown })?.error === 'string' ? (parsed as { error: string }).error : text.slice(0, 200);
    const retryAfter = response.headers.get('retry-after');
    // A Retry-After header stands in when the body does not say how long to wait.
    const failureBody = retryAfter && retryAfterMs(parsed) === undefined && Number.isFinite(Number(retryAfter))
      ? { ...(typeof parsed === 'object' && parsed !== null ? parsed : {}), retry_after_ms: Number(retryAfter) * 1000 }
      : parsed;
    return {
      ok: false,
      error: httpFailure(response.status, errcode ?? `HTTP_${response.status}`, `${method} ${redactPath(new URL(url).pathname)}: ${response.status} ${errcode ?? ''} ${scrubSecrets(error)}`.replace(/\s+/g, ' ').trim(), failureBody, errcode),
    };
  }
}

function httpFailure(status: number, code: string, message: string, body: unknown, errcode?: string): HttpFailure {
  return { status, code, human: message, log: message, errcode, body };
}

function retryAfterMs(body: unknown): number | undefined {
  const ms = (body as { retry_after_ms?: unknown })?.retry_after_ms;
  return typeof ms === 'number' && Number.isFinite(ms) && ms >= 0 ? Math.min(ms, 5 * 60_000) : undefined;
}

function backoffMs(attempt: number): number {
  const base = Math.min(MAX_BACKOFF_MS, 500 * 2 ** (attempt - 1));
  return base / 2 + Math.random() * (base / 2);
}

/** Paths are safe to log; this keeps them short. */
function redactPath(p: string): string {
  return p.length > 200 ? `${p.slice(0, 200)}…` : p;
}
