import { lookup } from 'node:dns/promises';
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import type { AddressGuard } from '../federation/address-guard.ts';
import type { Logger } from '../log.ts';
import { errorMessage, type Failure, type Result } from '../util/result.ts';
import { DIRECTORY_PLACEHOLDER, type DirectoryConfig } from './linked-config.ts';
import { isMxid } from './mxid.ts';

/** Why a lookup failed; each kind has its own counter (directory.errors.<kind>). */
export type DirectoryErrorKind = 'timeout' | 'network' | 'address_refused' | 'http_status' | 'malformed';

export interface DirectoryFailure extends Failure {
  readonly kind: DirectoryErrorKind;
}

export interface DirectoryDeps {
  readonly config: DirectoryConfig;
  readonly guard: AddressGuard;
  readonly log: Logger;
  /** Counter sink (persisted by the store). */
  readonly bump: (name: string) => void;
  /** Remembers positive answers for !links and the start-up catch-up. */
  readonly remember: (userId: string, members: readonly string[]) => void;
  readonly now?: () => number;
  /** For tests: resolve a host name to addresses (default: the system resolver, all families). */
  readonly resolveHost?: (host: string) => Promise<string[]>;
}

type CacheEntry =
  | { readonly kind: 'ok'; readonly members: readonly string[]; readonly expires: number }
  | { readonly kind: 'failed'; readonly failure: DirectoryFailure; readonly expires: number };

const MAX_ANSWER_BYTES = 64 * 1024;
const MAX_MEMBERS = 100;
const MAX_CACHE_ENTRIES = 20_000;

/**
 * The HTTP directory that knows which Matrix IDs belong to one person: GET the URL template with
 * the URL-encoded Matrix ID, answer a JSON array of Matrix IDs (possibly including the asked one).
 * Answers are cached (`cache_seconds`); "none" answers and failures for `negative_cache_seconds`.
 * Every address is checked by the address guard after resolution and the socket is opened to
 * that checked address, so a DNS answer cannot change between the check and the connect.
 * Redirects are not followed. Any failure means "do not mirror" for that user.
 */
export class DirectoryClient {
  private readonly deps: DirectoryDeps;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly cache = new Map<string, CacheEntry>();
  private readonly inFlight = new Map<string, Promise<Result<readonly string[], DirectoryFailure>>>();

  constructor(deps: DirectoryDeps) {
    this.deps = deps;
    this.log = deps.log.child({ module: 'linked-directory' });
    this.now = deps.now ?? Date.now;
  }

  get cacheSize(): number {
    return this.cache.size;
  }

  /** The other Matrix IDs linked to `userId` ([] when none), or why the directory could not tell. */
  lookup(userId: string): Promise<Result<readonly string[], DirectoryFailure>> {
    const hit = this.cache.get(userId);
    if (hit && hit.expires > this.now()) {
      this.deps.bump('directory.cache_hits');
      return Promise.resolve(hit.kind === 'ok' ? { ok: true, value: hit.members } : { ok: false, error: hit.failure });
    }
    const pending = this.inFlight.get(userId);
    if (pending) return pending;
    const started = this.fetchAndCache(userId).finally(() => this.inFlight.delete(userId));
    this.inFlight.set(userId, started);
    return started;
  }

  /** Forgets cached answers (all, or one user's), e.g. after the directory was fixed. */
  forget(userId?: string): void {
    if (userId === undefined) this.cache.clear();
    else this.cache.delete(userId);
  }

  private async fetchAndCache(userId: string): Promise<Result<readonly string[], DirectoryFailure>> {
    this.deps.bump('directory.lookups');
    const answer = await this.fetch(userId);
    const { cacheSeconds, negativeCacheSeconds } = this.deps.config;
    if (this.cache.size >= MAX_CACHE_ENTRIES) this.evictExpiredOrOldest();
    if (answer.ok) {
      const members = answer.value;
      this.cache.set(userId, { kind: 'ok', members, expires: this.now() + (members.length > 0 ? cacheSeconds : negativeCacheSeconds) * 1000 });
      if (members.length === 0) this.deps.bump('directory.not_linked');
      this.deps.remember(userId, members);
    } else {
      this.cache.set(userId, { kind: 'failed', failure: answer.error, expires: this.now() + negativeCacheSeconds * 1000 });
      this.deps.bump('directory.errors');
      this.deps.bump(`directory.errors.${answer.error.kind}`);
      this.log.warn({ userId, kind: answer.error.kind, detail: answer.error.log },
        `linked accounts directory: no usable answer for ${userId} (${answer.error.human}); nothing is mirrored for this user until it answers`);
    }
    return answer;
  }

  private evictExpiredOrOldest(): void {
    const now = this.now();
    for (const [key, entry] of this.cache) if (entry.expires <= now) this.cache.delete(key);
    while (this.cache.size >= MAX_CACHE_ENTRIES) {
      const oldest = this.cache.keys().next();
      if (oldest.done) break;
      this.cache.delete(oldest.value);
    }
  }

  private async fetch(userId: string): Promise<Result<readonly string[], DirectoryFailure>> {
    const { urlTemplate, timeoutMs } = this.deps.config;
    let url: URL;
    try {
      url = new URL(urlTemplate.split(DIRECTORY_PLACEHOLDER).join(encodeURIComponent(userId)));
    } catch (err) {
      return failed('network', 'the directory URL is not valid', errorMessage(err));
    }
    const deadline = this.now() + timeoutMs;
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    let addresses: string[];
    if (isIP(host)) {
      addresses = [host];
    } else {
      try {
        addresses = await withTimeout((this.deps.resolveHost ?? systemResolve)(host), timeoutMs);
      } catch (err) {
        const timedOut = err instanceof TimeoutError;
        return failed(timedOut ? 'timeout' : 'network', timedOut ? `resolving ${host} took longer than ${timeoutMs} ms` : `cannot resolve ${host}`, errorMessage(err));
      }
    }
    const allowed = addresses.find((a) => this.deps.guard.isAllowed(a));
    if (allowed === undefined) {
      const reason = addresses.length ? this.deps.guard.refusalReason(addresses[0]!) : 'no address';
      return failed('address_refused', `refused to connect to ${host} (${addresses[0] ?? 'no address'}: ${reason}); list it in linked_accounts.directory.address_allowlist if intended`);
    }
    const remaining = Math.max(1, deadline - this.now());
    const answer = await httpGet(url, allowed, remaining);
    if (!answer.ok) return answer;
    const { status, body } = answer.value;
    // 404 is the directory's way of saying "I know no links for this ID".
    if (status === 404) return { ok: true, value: [] };
    if (status !== 200) return failed('http_status', `the directory answered HTTP ${status}`);
    return parseDirectoryAnswer(body, userId);
  }
}

/** Checks a directory answer: a JSON array of distinct Matrix IDs; `userId` itself is dropped. */
export function parseDirectoryAnswer(body: string, userId: string): Result<readonly string[], DirectoryFailure> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return failed('malformed', 'the answer is not JSON', `answer starts with ${JSON.stringify(body.slice(0, 80))}`);
  }
  if (!Array.isArray(parsed)) return failed('malformed', `the answer is not a JSON array of Matrix IDs (got ${parsed === null ? 'null' : typeof parsed})`);
  if (parsed.length > MAX_MEMBERS) return failed('malformed', `the answer lists ${parsed.length} IDs, more than ${MAX_MEMBERS}`);
  const bad = parsed.findIndex((v) => !isMxid(v));
  if (bad !== -1) return failed('malformed', `entry ${bad} of the answer is not a Matrix ID (${JSON.stringify(parsed[bad])?.slice(0, 80)})`);
  return { ok: true, value: [...new Set(parsed as string[])].filter((u) => u !== userId) };
}

function failed(kind: DirectoryErrorKind, human: string, log?: string): { ok: false; error: DirectoryFailure } {
  return { ok: false, error: { kind, code: `E_DIRECTORY_${kind.toUpperCase()}`, human, log: log ? `${human}: ${log}` : human } };
}

async function systemResolve(host: string): Promise<string[]> {
  const answers = await lookup(host, { all: true, verbatim: true });
  return answers.map((a) => a.address);
}

class TimeoutError extends Error {}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new TimeoutError(`no answer within ${ms} ms`)), ms);
    p.then((v) => { clearTimeout(timer); resolve(v); }, (e: unknown) => { clearTimeout(timer); reject(e); });
  });
}

/** One GET to an already-checked address, with the URL's host as Host header and TLS name. */
function httpGet(url: URL, address: string, timeoutMs: number): Promise<Result<{ status: number; body: string }, DirectoryFailure>> {
  const secure = url.protocol === 'https:';
  const port = url.port ? Number(url.port) : secure ? 443 : 80;
  const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return new Promise((resolve) => {
    let settled = false;
    const finish = (r: Result<{ status: number; body: string }, DirectoryFailure>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    const options: https.RequestOptions = {
      method: 'GET',
      host: address,
      port,
      path: `${url.pathname}${url.search}`,
      headers: { host: url.host, accept: 'application/json', 'user-agent': 'Steward linked-accounts' },
      agent: false,
      ...(secure && !isIP(hostname) ? { servername: hostname } : {}),
    };
    const req = (secure ? https : http).request(options, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_ANSWER_BYTES) {
          req.destroy();
          finish(failed('malformed', `the answer is larger than ${MAX_ANSWER_BYTES} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => finish({ ok: true, value: { status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') } }));
      res.on('error', (err) => finish(failed('network', 'the connection broke while reading the answer', errorMessage(err))));
    });
    const timer = setTimeout(() => {
      req.destroy();
      finish(failed('timeout', `no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    req.on('error', (err) => {
      const code = (err as NodeJS.ErrnoException).code;
      finish(failed('network', `cannot reach the directory (${code ?? errorMessage(err)})`, errorMessage(err)));
    });
    req.end();
  });
}
