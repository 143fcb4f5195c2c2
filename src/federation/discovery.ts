import { promises as dns } from "node:dns";
import type { IncomingHttpHeaders } from "node:http";
import { isIP } from "node:net";
import type { Logger } from "../log.ts";
import { errorMessage, fail, failure, ok } from "../util/result.ts";
import type { Failure, Result } from "../util/result.ts";
import type { AddressGuard } from "./address-guard.ts";
import { formatTarget, httpsExchange } from "./https-exchange.ts";
import type { ConnectTarget, HttpsEndpoint, TlsTrust } from "./https-exchange.ts";
import { isJsonObject } from "./json-object.ts";
import { isValidServerName } from "./server-name.ts";

/**
 * Server name → where to connect and how to present ourselves, per the spec's
 * "Resolving server names" (Server-Server API): IP literal; explicit port;
 * `.well-known/matrix/server` delegation (itself IP literal / explicit port /
 * `_matrix-fed._tcp` SRV / deprecated `_matrix._tcp` SRV / port 8448); otherwise
 * `_matrix-fed._tcp` SRV, `_matrix._tcp` SRV, port 8448. Every address learnt on the
 * way (including those a `.well-known` request or its redirects connect to) passes the
 * address guard before anything connects to it.
 */

export const DEFAULT_FEDERATION_PORT = 8448;

export interface ResolvedAddress {
  readonly address: string;
  readonly family: 4 | 6;
}

export interface SrvRecord {
  readonly name: string;
  readonly port: number;
  readonly priority: number;
  readonly weight: number;
}

/** DNS as discovery needs it; tests pass a fake so that nothing leaves loopback. */
export interface Resolver {
  /** CNAME/AAAA/A for a host name. No address at all is a failure (E_DNS_NOT_FOUND). */
  lookup(hostname: string): Promise<Result<readonly ResolvedAddress[]>>;
  /** The SRV records of `name`; a name without any answers ok([]). */
  resolveSrv(name: string): Promise<Result<readonly SrvRecord[]>>;
}

const NOT_FOUND = new Set(["ENOTFOUND", "ENODATA", "NXDOMAIN", "EAI_NONAME", "EAI_NODATA"]);

/** The machine's resolver: getaddrinfo (so /etc/hosts counts) for addresses, DNS for SRV. */
export function systemResolver(): Resolver {
  const srvResolver = new dns.Resolver();
  return {
    async lookup(hostname) {
      try {
        const found = await dns.lookup(hostname, { all: true, order: "verbatim" });
        if (found.length === 0) return fail("E_DNS_NOT_FOUND", `${hostname} has no address in DNS.`);
        return ok(found.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 })));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? "";
        if (NOT_FOUND.has(code)) return fail("E_DNS_NOT_FOUND", `${hostname} has no address in DNS.`);
        return fail("E_DNS", `Looking up ${hostname} failed (${code || errorMessage(err)}).`);
      }
    },
    async resolveSrv(name) {
      try {
        return ok(await srvResolver.resolveSrv(name));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? "";
        if (NOT_FOUND.has(code)) return ok([]);
        return fail("E_DNS", `Looking up the SRV record ${name} failed (${code || errorMessage(err)}).`);
      }
    },
  };
}

export type DiscoveryRoute =
  | "ip-literal"
  | "explicit-port"
  | "well-known-ip-literal"
  | "well-known-explicit-port"
  | "well-known-srv"
  | "well-known-legacy-srv"
  | "well-known-default-port"
  | "srv"
  | "legacy-srv"
  | "default-port";

export interface ResolvedServer extends HttpsEndpoint {
  readonly serverName: string;
  readonly route: DiscoveryRoute;
  /** What discovery did, step by step, for diagnostics (`!fed query`, debug logs). */
  readonly steps: readonly string[];
}

export interface Discovery {
  resolve(serverName: string, signal?: AbortSignal): Promise<Result<ResolvedServer>>;
  /** Drops the cached resolution of `serverName` (DNS is asked again), e.g. after its addresses stopped answering. */
  forget(serverName: string): void;
}

export interface DiscoveryOptions {
  readonly guard: AddressGuard;
  readonly trust: TlsTrust;
  readonly resolver?: Resolver;
  readonly log?: Logger;
  /** Clock for the caches (ms since the epoch). */
  readonly now?: () => number;
  /** Port of `https://<host>/.well-known/…` requests; 443, tests point it elsewhere. */
  readonly wellKnownPort?: number;
  readonly wellKnownTimeoutMs?: number;
  /** How long a complete resolution is reused; `.well-known` has its own cache. */
  readonly resolutionCacheMs?: number;
  readonly userAgent?: string;
}

// Spec and Synapse's defaults for `.well-known` caching.
const WELL_KNOWN_DEFAULT_CACHE_MS = 24 * 3600_000;
const WELL_KNOWN_MIN_CACHE_MS = 5 * 60_000;
const WELL_KNOWN_MAX_CACHE_MS = 48 * 3600_000;
const WELL_KNOWN_ERROR_CACHE_MS = 3600_000;
const WELL_KNOWN_MAX_BYTES = 50 * 1024;
const WELL_KNOWN_MAX_REDIRECTS = 5;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

interface WellKnownEntry {
  readonly result: Result<string>;
  readonly expiresAt: number;
}

interface ResolutionEntry {
  readonly resolved: ResolvedServer;
  readonly expiresAt: number;
}

export class ServerDiscovery implements Discovery {
  readonly #guard: AddressGuard;
  readonly #trust: TlsTrust;
  readonly #resolver: Resolver;
  readonly #log: Logger | undefined;
  readonly #now: () => number;
  readonly #wellKnownPort: number;
  readonly #wellKnownTimeoutMs: number;
  readonly #resolutionCacheMs: number;
  readonly #userAgent: string;
  readonly #wellKnown = new Map<string, WellKnownEntry>();
  readonly #wellKnownInFlight = new Map<string, Promise<Result<string>>>();
  readonly #resolutions = new Map<string, ResolutionEntry>();

  constructor(opts: DiscoveryOptions) {
    this.#guard = opts.guard;
    this.#trust = opts.trust;
    this.#resolver = opts.resolver ?? systemResolver();
    this.#log = opts.log?.child({ module: "federation-discovery" });
    this.#now = opts.now ?? Date.now;
    this.#wellKnownPort = opts.wellKnownPort ?? 443;
    this.#wellKnownTimeoutMs = opts.wellKnownTimeoutMs ?? 10_000;
    this.#resolutionCacheMs = opts.resolutionCacheMs ?? 5 * 60_000;
    this.#userAgent = opts.userAgent ?? "Steward";
  }

  forget(serverName: string): void {
    // The .well-known answer keeps its own cache period, as the spec asks.
    this.#resolutions.delete(serverName);
  }

  async resolve(serverName: string, signal?: AbortSignal): Promise<Result<ResolvedServer>> {
    const cached = this.#resolutions.get(serverName);
    if (cached !== undefined && cached.expiresAt > this.#now()) return ok(cached.resolved);
    const parsed = isValidServerName(serverName) ? splitServerName(serverName) : undefined;
    if (parsed === undefined) {
      return fail("E_BAD_SERVER_NAME", `"${serverName}" is not a valid server name.`);
    }
    const steps: string[] = [];
    const resolved = await this.#resolveParsed(serverName, parsed, steps, signal);
    if (!resolved.ok) {
      const log = `${resolved.error.log} [discovery of ${serverName}: ${steps.join("; ")}]`;
      return { ok: false, error: { ...resolved.error, log } };
    }
    this.#log?.debug({ serverName, route: resolved.value.route, steps }, "resolved server name");
    if (this.#resolutionCacheMs > 0) {
      this.#resolutions.set(serverName, { resolved: resolved.value, expiresAt: this.#now() + this.#resolutionCacheMs });
    }
    return resolved;
  }

  async #resolveParsed(
    serverName: string,
    { host, port, ipLiteral }: ServerNameParts,
    steps: string[],
    signal: AbortSignal | undefined,
  ): Promise<Result<ResolvedServer>> {
    if (ipLiteral) {
      steps.push(`${host} is an IP literal`);
      return this.#direct(serverName, "ip-literal", host, port ?? DEFAULT_FEDERATION_PORT, serverName, steps);
    }
    if (port !== undefined) {
      steps.push(`explicit port ${port}`);
      return this.#viaAddresses(serverName, "explicit-port", host, port, serverName, host, steps);
    }
    // Shared by concurrent resolutions and bounded by its own timeout, so not tied to one caller's signal.
    const wellKnown = await this.wellKnown(host);
    if (signal?.aborted) return fail("E_CANCELLED", `Resolving ${serverName} was cancelled.`);
    if (wellKnown.ok) {
      steps.push(`.well-known delegates to ${wellKnown.value}`);
      return this.#delegated(serverName, wellKnown.value, steps);
    }
    steps.push(`no usable .well-known (${wellKnown.error.log})`);
    const srv = await this.#viaSrv(serverName, host, host, ["srv", "legacy-srv"], steps);
    if (srv !== undefined) return srv;
    return this.#viaAddresses(serverName, "default-port", host, DEFAULT_FEDERATION_PORT, host, host, steps);
  }

  async #delegated(serverName: string, delegated: string, steps: string[]): Promise<Result<ResolvedServer>> {
    const parts = splitServerName(delegated);
    if (parts === undefined) return fail("E_DISCOVERY", `The .well-known of ${serverName} names an invalid server.`);
    const { host, port, ipLiteral } = parts;
    if (ipLiteral) {
      return this.#direct(serverName, "well-known-ip-literal", host, port ?? DEFAULT_FEDERATION_PORT, delegated, steps);
    }
    if (port !== undefined) {
      return this.#viaAddresses(serverName, "well-known-explicit-port", host, port, delegated, host, steps);
    }
    const srv = await this.#viaSrv(serverName, host, host, ["well-known-srv", "well-known-legacy-srv"], steps);
    if (srv !== undefined) return srv;
    return this.#viaAddresses(serverName, "well-known-default-port", host, DEFAULT_FEDERATION_PORT, host, host, steps);
  }

  #direct(
    serverName: string,
    route: DiscoveryRoute,
    ip: string,
    port: number,
    hostHeader: string,
    steps: string[],
  ): Result<ResolvedServer> {
    const checked = this.#guard.check(ip);
    if (!checked.ok) {
      steps.push(`refused ${ip}`);
      return checked;
    }
    return ok({ serverName, route, targets: [{ address: ip, port }], hostHeader, certificateName: ip, steps });
  }

  async #viaAddresses(
    serverName: string,
    route: DiscoveryRoute,
    host: string,
    port: number,
    hostHeader: string,
    certificateName: string,
    steps: string[],
  ): Promise<Result<ResolvedServer>> {
    const targets = await this.#targetsOf(host, port, steps);
    if (!targets.ok) return targets;
    return ok({ serverName, route, targets: targets.value, hostHeader, certificateName, steps });
  }

  /**
   * SRV delegation: `_matrix-fed._tcp` then the deprecated `_matrix._tcp`. Undefined
   * when neither has records, so the caller falls back to port 8448. The Host header
   * and certificate name stay `host` (spec: DNS is not trusted to change the name).
   */
  async #viaSrv(
    serverName: string,
    host: string,
    certificateName: string,
    [route, legacyRoute]: [DiscoveryRoute, DiscoveryRoute],
    steps: string[],
  ): Promise<Result<ResolvedServer> | undefined> {
    for (const [service, which] of [["_matrix-fed._tcp", route], ["_matrix._tcp", legacyRoute]] as const) {
      const name = `${service}.${host}`;
      const records = await this.#resolver.resolveSrv(name);
      if (!records.ok) {
        steps.push(`SRV ${name} failed`);
        return records;
      }
      if (records.value.length === 0) {
        steps.push(`no SRV ${name}`);
        continue;
      }
      const ordered = orderSrv(records.value);
      if (ordered.length === 1 && (ordered[0]!.name === "." || ordered[0]!.name === "")) {
        steps.push(`SRV ${name} says there is no such service`);
        return fail("E_DISCOVERY", `${serverName} declares in DNS (${name}) that it offers no federation.`);
      }
      steps.push(`SRV ${name} → ${ordered.map((r) => `${r.name}:${r.port}`).join(", ")}`);
      const targets: ConnectTarget[] = [];
      let firstFailure: Failure | undefined;
      for (const record of ordered) {
        const found = await this.#targetsOf(record.name.replace(/\.$/, ""), record.port, steps);
        if (found.ok) targets.push(...found.value);
        else firstFailure ??= found.error;
      }
      if (targets.length === 0) {
        return { ok: false, error: firstFailure ?? failure("E_DISCOVERY", `The SRV targets of ${serverName} have no address.`) };
      }
      return ok({ serverName, route: which, targets, hostHeader: host, certificateName, steps });
    }
    return undefined;
  }

  /** Addresses of `host` that pass the guard, each with `port`. */
  async #targetsOf(host: string, port: number, steps: string[]): Promise<Result<ConnectTarget[]>> {
    if (isIP(host) !== 0) {
      const checked = this.#guard.check(host);
      if (!checked.ok) return checked;
      return ok([{ address: host, port }]);
    }
    const addresses = await this.#resolver.lookup(host);
    if (!addresses.ok) {
      steps.push(`lookup of ${host} failed`);
      return addresses;
    }
    const targets: ConnectTarget[] = [];
    const refused: string[] = [];
    for (const { address } of addresses.value) {
      const reason = this.#guard.refusalReason(address);
      if (reason === undefined) targets.push({ address, port });
      else refused.push(`${address} (${reason})`);
    }
    steps.push(`${host} → ${addresses.value.map((a) => a.address).join(", ")}${refused.length > 0 ? `; refused ${refused.join(", ")}` : ""}`);
    if (targets.length === 0) {
      return fail(
        "E_ADDRESS_REFUSED",
        `Refusing to connect to ${host}: ${refused.join("; ")}. If this is intended, add the address to federation.address_allowlist.`,
        `address guard refused every address of ${host}: ${refused.join("; ")}`,
      );
    }
    return ok(targets);
  }

  /**
   * The `m.server` of `https://<host>/.well-known/matrix/server`, cached per the answer's
   * Cache-Control/Expires (24 h by default, clamped to 5 min–48 h); failures are cached
   * for an hour. Concurrent calls for one host share one fetch.
   */
  async wellKnown(host: string): Promise<Result<string>> {
    const cached = this.#wellKnown.get(host);
    if (cached !== undefined && cached.expiresAt > this.#now()) return cached.result;
    const running = this.#wellKnownInFlight.get(host);
    if (running !== undefined) return running;
    const fetching = this.#fetchWellKnown(host).then(({ result, cacheMs }) => {
      this.#wellKnownInFlight.delete(host);
      if (cacheMs > 0) {
        this.#wellKnown.set(host, { result, expiresAt: this.#now() + cacheMs });
      }
      return result;
    });
    this.#wellKnownInFlight.set(host, fetching);
    return fetching;
  }

  async #fetchWellKnown(host: string): Promise<{ result: Result<string>; cacheMs: number }> {
    const failed = (code: string, human: string, log?: string) => ({ result: fail(code, human, log), cacheMs: WELL_KNOWN_ERROR_CACHE_MS });
    let url = new URL(`https://${host}:${this.#wellKnownPort}/.well-known/matrix/server`);
    const visited = new Set<string>();
    for (let hop = 0; ; hop++) {
      visited.add(url.href);
      const endpoint = await this.#wellKnownEndpoint(url);
      if (!endpoint.ok) return { result: endpoint, cacheMs: WELL_KNOWN_ERROR_CACHE_MS };
      const answer = await httpsExchange(
        endpoint.value,
        {
          method: "GET",
          path: `${url.pathname}${url.search}`,
          headers: { "user-agent": this.#userAgent, accept: "application/json" },
          maxResponseBytes: WELL_KNOWN_MAX_BYTES,
          timeoutMs: this.#wellKnownTimeoutMs,
        },
        this.#trust,
        this.#guard,
      );
      if (!answer.ok) return failed(answer.error.code, `${url.href}: ${answer.error.human}`);
      const { status, headers, body } = answer.value;
      if (REDIRECTS.has(status)) {
        const location = headers.location;
        if (typeof location !== "string") return failed("E_WELL_KNOWN", `${url.href} redirects without a Location.`);
        let next: URL;
        try {
          next = new URL(location, url);
        } catch {
          return failed("E_WELL_KNOWN", `${url.href} redirects to an invalid URL.`);
        }
        if (next.protocol !== "https:") return failed("E_WELL_KNOWN", `${url.href} redirects to a non-HTTPS URL.`);
        if (next.username !== "" || next.password !== "") return failed("E_WELL_KNOWN", `${url.href} redirects to a URL with credentials.`);
        if (visited.has(next.href)) return failed("E_WELL_KNOWN", `${url.href} redirects in a loop.`);
        if (hop + 1 > WELL_KNOWN_MAX_REDIRECTS) return failed("E_WELL_KNOWN", `.well-known of ${host} redirects more than ${WELL_KNOWN_MAX_REDIRECTS} times.`);
        this.#log?.debug({ host, from: url.href, to: next.href }, "following .well-known redirect");
        url = next;
        continue;
      }
      if (status !== 200) return failed("E_WELL_KNOWN", `${url.href} answered ${status}.`);
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.toString("utf8"));
      } catch {
        return failed("E_WELL_KNOWN", `${url.href} is not JSON.`);
      }
      const delegated = isJsonObject(parsed) ? parsed["m.server"] : undefined;
      if (typeof delegated !== "string" || !isValidServerName(delegated)) {
        return failed("E_WELL_KNOWN", `${url.href} has no valid m.server.`);
      }
      return { result: ok(delegated), cacheMs: cachePeriodMs(headers, this.#now()) };
    }
  }

  async #wellKnownEndpoint(url: URL): Promise<Result<HttpsEndpoint>> {
    const hostname = url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
    const port = url.port === "" ? 443 : Number(url.port);
    const steps: string[] = [];
    const targets = await this.#targetsOf(hostname, port, steps);
    if (!targets.ok) {
      const log = `.well-known request to ${url.href} not made: ${targets.error.log}`;
      return { ok: false, error: { ...targets.error, log } };
    }
    this.#log?.trace({ url: url.href, targets: targets.value.map(formatTarget) }, "fetching .well-known");
    return ok({ targets: targets.value, hostHeader: url.host, certificateName: hostname });
  }
}

interface ServerNameParts {
  /** Without brackets for IPv6. */
  readonly host: string;
  readonly port: number | undefined;
  readonly ipLiteral: boolean;
}

/** Splits a (grammatically valid) server name into host and port. */
export function splitServerName(name: string): ServerNameParts | undefined {
  const match = /^(\[[^\]]+\]|[^:]+)(?::([0-9]{1,5}))?$/.exec(name);
  if (match === null) return undefined;
  const bracketed = match[1]!.startsWith("[");
  const host = bracketed ? match[1]!.slice(1, -1) : match[1]!;
  const port = match[2] === undefined ? undefined : Number(match[2]);
  if (port !== undefined && (port < 1 || port > 65535)) return undefined;
  const family = isIP(host);
  if (bracketed && family !== 6) return undefined;
  if (!bracketed && family === 6) return undefined;
  return { host, port, ipLiteral: family !== 0 };
}

/** RFC 2782: by priority, then weighted random within a priority. */
export function orderSrv(records: readonly SrvRecord[], random: () => number = Math.random): SrvRecord[] {
  const byPriority = new Map<number, SrvRecord[]>();
  for (const record of records) {
    const group = byPriority.get(record.priority) ?? [];
    group.push(record);
    byPriority.set(record.priority, group);
  }
  const ordered: SrvRecord[] = [];
  for (const priority of [...byPriority.keys()].sort((a, b) => a - b)) {
    const pool = [...byPriority.get(priority)!].sort((a, b) => a.weight - b.weight);
    while (pool.length > 0) {
      const total = pool.reduce((sum, r) => sum + r.weight, 0);
      let pick = 0;
      if (total > 0) {
        let threshold = random() * total;
        pick = pool.findIndex((r) => (threshold -= r.weight) < 0);
        if (pick === -1) pick = pool.length - 1;
      }
      ordered.push(pool.splice(pick, 1)[0]!);
    }
  }
  return ordered;
}

/** Cache lifetime from Cache-Control / Expires: no-store → 0; clamped to 5 min–48 h; default 24 h. */
export function cachePeriodMs(headers: IncomingHttpHeaders, nowMs: number): number {
  const cacheControl = headers["cache-control"];
  const directives = new Map<string, string | undefined>();
  for (const part of (cacheControl ?? "").split(",")) {
    const [key, value] = part.split("=", 2).map((s) => s.trim());
    if (key) directives.set(key.toLowerCase(), value?.replace(/^"|"$/g, ""));
  }
  if (directives.has("no-store")) return 0;
  let period: number | undefined;
  const maxAge = directives.get("max-age");
  if (maxAge !== undefined && /^[0-9]+$/.test(maxAge)) {
    period = Number(maxAge) * 1000;
  } else if (typeof headers.expires === "string") {
    const expires = Date.parse(headers.expires);
    period = Number.isNaN(expires) ? 0 : expires - nowMs;
  }
  if (period === undefined) return WELL_KNOWN_DEFAULT_CACHE_MS;
  return Math.min(WELL_KNOWN_MAX_CACHE_MS, Math.max(WELL_KNOWN_MIN_CACHE_MS, period));
}
