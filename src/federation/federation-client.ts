import https from "node:https";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "../log.ts";
import { scrubSecrets } from "../log.ts";
import { errorMessage } from "../util/result.ts";
import type { Failure, Result } from "../util/result.ts";
import { AddressGuard } from "./address-guard.ts";
import { CanonicalJsonError, canonicalJsonBytes } from "./canonical-json.ts";
import { ServerDiscovery } from "./discovery.ts";
import type { Discovery, Resolver } from "./discovery.ts";
import type { FederationSettings } from "./federation-settings.ts";
import { httpsExchange, identityCheckingAgent, loadTlsTrust } from "./https-exchange.ts";
import type { ExchangeFailure, TlsTrust } from "./https-exchange.ts";
import { isJsonObject } from "./json-object.ts";
import { isValidServerName } from "./server-name.ts";
import { xMatrixAuthorization } from "./x-matrix.ts";

export interface FederationFailure extends Failure {
  /** HTTP status, or 0 when no answer arrived (discovery, network, timeout, cancelled). */
  readonly status: number;
  /** The Matrix errcode of an error answer, e.g. M_UNAUTHORIZED. */
  readonly errcode: string | undefined;
  /** The parsed error answer, when it was JSON. */
  readonly body: unknown;
  readonly destination: string;
}

export interface FederationRequestOptions {
  /** Sent as JSON and covered by the X-Matrix signature. */
  readonly body?: unknown;
  /** Per attempt; defaults to the settings' timeout. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
  /** Sign with X-Matrix (default). The key APIs are fetched unsigned. */
  readonly authenticate?: boolean;
  /** Retry 5xx, timeouts and lost connections (default true); 4xx are never retried. */
  readonly retry?: boolean;
  readonly maxResponseBytes?: number;
}

export interface FederationClientDeps {
  readonly log: Logger;
  /** DNS for discovery; the machine's resolver by default. */
  readonly resolver?: Resolver;
  /** Replaces server discovery altogether (tests, or a shared instance). */
  readonly discovery?: Discovery;
  /** Port for `.well-known` requests; 443 except in tests. */
  readonly wellKnownPort?: number;
  /** Wait before retry number `attempt` (1-based). */
  readonly backoffMs?: (attempt: number) => number;
  readonly userAgent?: string;
  /** Told the outcome of every request (after retries): ok, http_4xx, http_5xx or the failure code. */
  readonly onOutcome?: (outcome: string) => void;
}

export const DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024;
const MAX_BACKOFF_MS = 10_000;
// What goes on the request line as is; anything else must be percent-encoded by the caller.
const WIRE_PATH = /^\/[\x21-\x22\x24-\x7E]*$/;

/**
 * Requests to other homeservers (or our own) as our homeserver: discovery, the address
 * guard, TLS, X-Matrix signing, JSON, timeouts and bounded retries. Answers are values:
 * the parsed JSON of a 2xx, or a FederationFailure.
 */
export class FederationClient {
  readonly serverName: string;
  readonly discovery: Discovery;
  readonly #settings: FederationSettings;
  readonly #guard: AddressGuard;
  readonly #trust: TlsTrust;
  readonly #log: Logger;
  readonly #backoffMs: (attempt: number) => number;
  readonly #userAgent: string;
  readonly #agents = new Map<string, https.Agent>();
  readonly #onOutcome: ((outcome: string) => void) | undefined;

  private constructor(settings: FederationSettings, guard: AddressGuard, trust: TlsTrust, deps: FederationClientDeps) {
    this.serverName = settings.serverName;
    this.#settings = settings;
    this.#guard = guard;
    this.#trust = trust;
    this.#log = deps.log.child({ module: "federation-client" });
    this.#backoffMs = deps.backoffMs ?? defaultBackoffMs;
    this.#userAgent = deps.userAgent ?? "Steward";
    this.#onOutcome = deps.onOutcome;
    this.discovery =
      deps.discovery ??
      new ServerDiscovery({
        guard,
        trust,
        log: deps.log,
        userAgent: this.#userAgent,
        ...(deps.resolver ? { resolver: deps.resolver } : {}),
        ...(deps.wellKnownPort ? { wellKnownPort: deps.wellKnownPort } : {}),
      });
  }

  /** Fails (E_BAD_CIDR, E_BAD_CA_FILE, E_BAD_SERVER_NAME) when the settings cannot work. */
  static async create(settings: FederationSettings, deps: FederationClientDeps): Promise<Result<FederationClient>> {
    if (!isValidServerName(settings.serverName)) {
      return { ok: false, error: simpleFailure("E_BAD_SERVER_NAME", `Our server name "${settings.serverName}" is not a valid server name.`) };
    }
    const guard = AddressGuard.create(settings.allowlist);
    if (!guard.ok) return guard;
    const trust = await loadTlsTrust({ caFile: settings.caFile, verify: !settings.insecureSkipTlsVerify });
    if (!trust.ok) return trust;
    if (settings.insecureSkipTlsVerify) {
      deps.log.warn(
        { module: "federation-client" },
        "federation.insecure_skip_tls_verify is on: certificates of remote servers are NOT verified. Use this only in tests.",
      );
    }
    return { ok: true, value: new FederationClient(settings, guard.value, trust.value, deps) };
  }

  /**
   * `pathWithQuery` is put on the wire and signed exactly as given, so encode path
   * parameters (`encodeURIComponent`) before calling.
   */
  async request<T>(
    destination: string,
    method: string,
    pathWithQuery: string,
    opts: FederationRequestOptions = {},
  ): Promise<Result<T, FederationFailure>> {
    const what = `${method} ${destination} ${shortPath(pathWithQuery)}`;
    const prepared = this.#prepare(destination, method, pathWithQuery, opts);
    if (!prepared.ok) return prepared;
    const { headers, body } = prepared.value;
    const retries = opts.retry === false ? 0 : this.#settings.maxRetries;
    for (let attempt = 1; ; attempt++) {
      const answer = await this.#once<T>(destination, method, pathWithQuery, headers, body, opts, what);
      if (answer.ok || !answer.retryable || attempt > retries || opts.signal?.aborted) {
        this.#outcome(answer.ok ? "ok" : answer.error.status >= 500 ? "http_5xx" : answer.error.status >= 400 ? "http_4xx" : answer.error.code);
        return answer.ok ? answer : { ok: false, error: answer.error };
      }
      const waitMs = this.#backoffMs(attempt);
      this.#log.debug({ destination, method, path: shortPath(pathWithQuery), code: answer.error.code, status: answer.error.status, waitMs }, "retrying federation request");
      try {
        await sleep(waitMs, undefined, opts.signal ? { signal: opts.signal } : undefined);
      } catch {
        return { ok: false, error: answer.error };
      }
    }
  }

  #outcome(outcome: string): void {
    try {
      this.#onOutcome?.(outcome);
    } catch {
      // Counting never breaks a request.
    }
  }

  /** Closes idle keep-alive connections; the client stays usable. */
  close(): void {
    for (const agent of this.#agents.values()) agent.destroy();
    this.#agents.clear();
  }

  #prepare(
    destination: string,
    method: string,
    pathWithQuery: string,
    opts: FederationRequestOptions,
  ): Result<{ headers: Record<string, string>; body: Buffer | undefined }, FederationFailure> {
    const refuse = (code: string, human: string, log?: string): Result<never, FederationFailure> => ({
      ok: false,
      error: federationFailure(destination, 0, code, human, log),
    });
    if (!isValidServerName(destination)) return refuse("E_BAD_SERVER_NAME", `"${destination}" is not a valid server name.`);
    if (!WIRE_PATH.test(pathWithQuery)) {
      return refuse("E_BAD_REQUEST", "The request path must start with / and be percent-encoded (printable ASCII, no #).");
    }
    const headers: Record<string, string> = { "user-agent": this.#userAgent, accept: "application/json" };
    let body: Buffer | undefined;
    if (opts.body !== undefined) {
      try {
        body = canonicalJsonBytes(opts.body);
      } catch (err) {
        if (!(err instanceof CanonicalJsonError)) throw err;
        return refuse("E_BAD_JSON", "The request body cannot be encoded as canonical JSON.", errorMessage(err));
      }
      headers["content-type"] = "application/json";
    }
    if (opts.authenticate !== false) {
      const authorization = xMatrixAuthorization(
        {
          method,
          uri: pathWithQuery,
          origin: this.#settings.serverName,
          destination,
          ...(opts.body !== undefined ? { content: opts.body } : {}),
        },
        this.#settings.signingKey,
      );
      if (!authorization.ok) return refuse(authorization.error.code, authorization.error.human, authorization.error.log);
      headers["authorization"] = authorization.value;
    }
    return { ok: true, value: { headers, body } };
  }

  async #once<T>(
    destination: string,
    method: string,
    pathWithQuery: string,
    headers: Record<string, string>,
    body: Buffer | undefined,
    opts: FederationRequestOptions,
    what: string,
  ): Promise<{ ok: true; value: T } | { ok: false; error: FederationFailure; retryable: boolean }> {
    const resolved = await this.discovery.resolve(destination, opts.signal);
    if (!resolved.ok) {
      const { code, human, log } = resolved.error;
      return { ok: false, error: federationFailure(destination, 0, code, human, log), retryable: code === "E_DNS" };
    }
    const exchanged = await httpsExchange(
      resolved.value,
      {
        method,
        path: pathWithQuery,
        headers,
        ...(body !== undefined ? { body } : {}),
        maxResponseBytes: opts.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES,
        timeoutMs: opts.timeoutMs ?? this.#settings.timeoutMs,
        signal: opts.signal,
        agent: this.#agentFor(destination, resolved.value.certificateName),
      },
      this.#trust,
      this.#guard,
    );
    if (!exchanged.ok) {
      const failed: ExchangeFailure = exchanged.error;
      // Addresses that stopped answering may have moved: resolve afresh next time.
      if (failed.code === "E_NETWORK" || failed.code === "E_TIMEOUT") this.discovery.forget(destination);
      const human = `${what}: ${failed.human}`;
      return { ok: false, error: federationFailure(destination, 0, failed.code, human, failed.log), retryable: failed.retryable };
    }
    const { status, body: raw } = exchanged.value;
    let parsed: unknown;
    let parseable = true;
    if (raw.length > 0) {
      try {
        parsed = JSON.parse(raw.toString("utf8"));
      } catch {
        parseable = false;
      }
    }
    if (status >= 200 && status < 300) {
      if (!parseable) {
        return { ok: false, error: federationFailure(destination, status, "E_BAD_RESPONSE", `${what}: answered ${status} with a body that is not JSON.`), retryable: false };
      }
      return { ok: true, value: (parsed ?? {}) as T };
    }
    const errcode = isJsonObject(parsed) && typeof parsed["errcode"] === "string" ? parsed["errcode"] : undefined;
    const error = isJsonObject(parsed) && typeof parsed["error"] === "string" ? parsed["error"] : parseable ? "" : raw.subarray(0, 200).toString("utf8");
    const message = scrubSecrets(`${what}: ${status} ${errcode ?? ""} ${error}`.replace(/\s+/g, " ").trim());
    return {
      ok: false,
      error: { ...federationFailure(destination, status, errcode ?? `HTTP_${status}`, message), errcode, body: parsed },
      retryable: status >= 500,
    };
  }

  #agentFor(destination: string, certificateName: string): https.Agent {
    const key = `${destination}\n${certificateName}`;
    let agent = this.#agents.get(key);
    if (agent === undefined) {
      agent = identityCheckingAgent(certificateName);
      this.#agents.set(key, agent);
    }
    return agent;
  }
}

function federationFailure(destination: string, status: number, code: string, human: string, log?: string): FederationFailure {
  return { code, human, log: log ?? human, status, errcode: undefined, body: undefined, destination };
}

function simpleFailure(code: string, human: string): Failure {
  return { code, human, log: human };
}

function defaultBackoffMs(attempt: number): number {
  const base = Math.min(MAX_BACKOFF_MS, 500 * 2 ** (attempt - 1));
  return base / 2 + Math.random() * (base / 2);
}

function shortPath(p: string): string {
  return p.length > 200 ? `${p.slice(0, 200)}…` : p;
}
