import { readFile } from "node:fs/promises";
import type { IncomingHttpHeaders, IncomingMessage } from "node:http";
import https from "node:https";
import type { LookupFunction } from "node:net";
import { isIP } from "node:net";
import tls from "node:tls";
import type { PeerCertificate, SecureContext } from "node:tls";
import { errorMessage, fail, ok } from "../util/result.ts";
import type { Failure, Result } from "../util/result.ts";
import type { AddressGuard } from "./address-guard.ts";

/**
 * One HTTPS request/response to an address that has already passed the address guard,
 * with the TLS name and Host header chosen by server discovery. The socket is opened to
 * the IP itself, so no DNS lookup happens between the guard's check and the connect.
 * Shared by the `.well-known` fetch and the federation client; retries live above it.
 */

export interface ConnectTarget {
  readonly address: string;
  readonly port: number;
}

/** Where to send a request and how to talk to it. */
export interface HttpsEndpoint {
  /** Tried in order: a connection failure on one moves on to the next. */
  readonly targets: readonly ConnectTarget[];
  readonly hostHeader: string;
  /** The name the certificate must be valid for: a DNS name or an IP literal. */
  readonly certificateName: string;
}

/** How certificates are checked; build it with `loadTlsTrust`. */
export interface TlsTrust {
  readonly secureContext: SecureContext;
  readonly verify: boolean;
}

export interface ExchangeRequest {
  readonly method: string;
  /** Path and query, put on the wire exactly as given. */
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: Buffer;
  readonly maxResponseBytes: number;
  /** For the whole exchange, every target included: connect, send, headers, body. */
  readonly timeoutMs: number;
  readonly signal?: AbortSignal | undefined;
  readonly agent?: https.Agent | undefined;
}

export interface ExchangeResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  readonly target: ConnectTarget;
}

export interface ExchangeFailure extends Failure {
  /** Whether trying again later may help (timeouts, resets) or not (a bad certificate). */
  readonly retryable: boolean;
}

/**
 * CAs: Node's default store plus the operating system's, plus `caFile` if given. The
 * system store is read once per process (it takes tens of milliseconds).
 */
export async function loadTlsTrust(opts: { caFile?: string | undefined; verify: boolean }): Promise<Result<TlsTrust>> {
  const ca = [...baseCertificates()];
  if (opts.caFile !== undefined) {
    let text: string;
    try {
      text = await readFile(opts.caFile, "utf8");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return fail("E_BAD_CA_FILE", `Cannot read the CA file ${opts.caFile}${code ? ` (${code})` : ""}.`, `cannot read CA file ${opts.caFile}: ${errorMessage(err)}`);
    }
    if (!text.includes("-----BEGIN CERTIFICATE-----")) {
      return fail("E_BAD_CA_FILE", `The CA file ${opts.caFile} holds no PEM certificate.`);
    }
    ca.push(text);
  }
  try {
    return ok({ secureContext: tls.createSecureContext({ ca }), verify: opts.verify });
  } catch (err) {
    return fail("E_BAD_CA_FILE", `The CA file ${opts.caFile ?? ""} could not be used: ${errorMessage(err)}`);
  }
}

let cachedBase: readonly string[] | undefined;

function baseCertificates(): readonly string[] {
  if (cachedBase !== undefined) return cachedBase;
  const certs = new Set<string>();
  if (typeof tls.getCACertificates === "function") {
    for (const cert of tls.getCACertificates("default")) certs.add(cert);
    try {
      for (const cert of tls.getCACertificates("system")) certs.add(cert);
    } catch {
      // No readable system store: Node's own bundle still applies.
    }
  } else {
    for (const cert of tls.rootCertificates) certs.add(cert);
  }
  cachedBase = [...certs];
  return cachedBase;
}

// Failures to reach one address, after which the next address may well work.
const CONNECT_ERRORS = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL", "EAFNOSUPPORT", "ENETDOWN", "EHOSTDOWN"]);

/**
 * Sends one request, trying the endpoint's targets in order until one answers. Every
 * target is checked by `guard` right before its socket opens.
 */
export async function httpsExchange(
  endpoint: HttpsEndpoint,
  request: ExchangeRequest,
  trust: TlsTrust,
  guard: AddressGuard,
): Promise<Result<ExchangeResponse, ExchangeFailure>> {
  const deadline = Date.now() + request.timeoutMs;
  let last: ExchangeFailure | undefined;
  for (const target of endpoint.targets) {
    const checked = guard.check(target.address);
    if (!checked.ok) {
      last = { ...checked.error, retryable: false };
      continue;
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) break;
    const attempt = await exchangeOnce(endpoint, target, request, trust, remaining);
    if (attempt.ok) return attempt;
    last = attempt.error;
    if (!attempt.nextTarget) break;
  }
  if (last !== undefined) return { ok: false, error: last };
  return { ok: false, error: exchangeFailure("E_TIMEOUT", `no answer from ${endpoint.hostHeader} within ${seconds(request.timeoutMs)}`, true) };
}

type Attempt = { ok: true; value: ExchangeResponse } | { ok: false; error: ExchangeFailure; nextTarget: boolean };

function exchangeOnce(
  endpoint: HttpsEndpoint,
  target: ConnectTarget,
  request: ExchangeRequest,
  trust: TlsTrust,
  timeoutMs: number,
): Promise<Attempt> {
  const where = formatTarget(target);
  return new Promise<Attempt>((resolve) => {
    let settled = false;
    let responded = false;
    const finish = (attempt: Attempt): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request.signal?.removeEventListener("abort", onAbort);
      if (!attempt.ok) req.destroy();
      resolve(attempt);
    };
    const failWith = (code: string, what: string, retryable: boolean, nextTarget = false): void =>
      finish({ ok: false, error: exchangeFailure(code, `${what} (${where})`, retryable), nextTarget });

    const family = isIP(target.address);
    const pinnedLookup: LookupFunction = (hostname, options, callback) => {
      // The socket is opened to an IP, so Node should never ask; if it does, only the checked address is answered.
      if (hostname !== target.address) {
        callback(Object.assign(new Error(`refusing to resolve ${hostname}`), { code: "E_UNEXPECTED_LOOKUP" }), "", 0);
      } else if (options.all) {
        (callback as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address: target.address, family }]);
      } else {
        callback(null, target.address, family);
      }
    };
    const certificateName = endpoint.certificateName;
    const options: https.RequestOptions & Pick<tls.ConnectionOptions, "secureContext"> = {
      host: target.address,
      port: target.port,
      method: request.method,
      path: request.path,
      headers: { ...request.headers, host: endpoint.hostHeader },
      // SNI carries a DNS name only; for an IP literal none is sent.
      servername: isIP(certificateName) === 0 ? certificateName : "",
      // With an agent the check lives on the agent (see identityCheckingAgent): a function passed per
      // request makes every socket unique, so keep-alive connections would never be reused.
      ...(request.agent ? {} : { checkServerIdentity: (_host: string, cert: PeerCertificate) => tls.checkServerIdentity(certificateName, cert) }),
      secureContext: trust.secureContext,
      rejectUnauthorized: trust.verify,
      lookup: pinnedLookup,
      agent: request.agent ?? false,
    };
    // Node hands these options on to tls.connect, which takes a ready SecureContext.
    let req: ReturnType<typeof https.request>;
    try {
      req = https.request(options);
    } catch (err) {
      // Node refuses e.g. a path with characters that must be percent-encoded.
      resolve({ ok: false, error: exchangeFailure("E_BAD_REQUEST", `the request cannot be sent: ${errorMessage(err)}`, false), nextTarget: false });
      return;
    }

    const timer = setTimeout(() => failWith("E_TIMEOUT", `no answer within ${seconds(timeoutMs)}`, true), timeoutMs);
    const onAbort = (): void => failWith("E_CANCELLED", "cancelled", false);

    req.on("error", (err: NodeJS.ErrnoException) => {
      const code = err.code ?? "";
      if (CONNECT_ERRORS.has(code)) {
        failWith("E_NETWORK", `cannot connect (${code})`, true, true);
      } else if (isTlsError(code)) {
        failWith("E_TLS", `TLS failed (${code}: ${err.message})`, false, true);
      } else {
        failWith("E_NETWORK", `connection failed${responded ? " while reading the answer" : ""} (${code || err.message})`, true);
      }
    });
    req.on("response", (res: IncomingMessage) => {
      responded = true;
      readBody(res, request.maxResponseBytes, (body) => {
        if (body === undefined) {
          failWith("E_RESPONSE_TOO_LARGE", `the answer is larger than ${request.maxResponseBytes} bytes`, false);
        } else {
          finish({ ok: true, value: { status: res.statusCode ?? 0, headers: res.headers, body, target } });
        }
      });
      res.on("error", (err: NodeJS.ErrnoException) => failWith("E_NETWORK", `the answer broke off (${err.code ?? err.message})`, true));
      res.on("close", () => {
        if (!res.complete) failWith("E_NETWORK", "the answer broke off", true);
      });
    });
    // Handlers are in place before anything can destroy the request.
    if (request.signal?.aborted) {
      onAbort();
      return;
    }
    request.signal?.addEventListener("abort", onAbort, { once: true });
    req.end(request.body);
  });
}

function readBody(res: IncomingMessage, maxBytes: number, done: (body: Buffer | undefined) => void): void {
  const declared = Number(res.headers["content-length"]);
  if (Number.isFinite(declared) && declared > maxBytes) {
    res.destroy();
    done(undefined);
    return;
  }
  const chunks: Buffer[] = [];
  let total = 0;
  let over = false;
  res.on("data", (chunk: Buffer) => {
    if (over) return;
    total += chunk.length;
    if (total > maxBytes) {
      over = true;
      res.destroy();
      done(undefined);
      return;
    }
    chunks.push(chunk);
  });
  res.on("end", () => {
    if (!over) done(Buffer.concat(chunks, total));
  });
}

function isTlsError(code: string): boolean {
  return (
    code.startsWith("ERR_SSL_") ||
    code.startsWith("ERR_TLS_") ||
    /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY|DECRYPT)|HOSTNAME_MISMATCH|ALTNAME/.test(code)
  );
}

function exchangeFailure(code: string, message: string, retryable: boolean): ExchangeFailure {
  return { code, human: message, log: message, retryable };
}

export function formatTarget(target: ConnectTarget): string {
  return isIP(target.address) === 6 ? `[${target.address}]:${target.port}` : `${target.address}:${target.port}`;
}

function seconds(ms: number): string {
  return ms < 1000 ? `${ms}ms` : `${Math.round(ms / 100) / 10}s`;
}

/**
 * A keep-alive agent for one destination whose certificates must name `certificateName`. The
 * identity check is part of the agent, not of each request, so its sockets are reused.
 */
export function identityCheckingAgent(certificateName: string): https.Agent {
  return new https.Agent({
    keepAlive: true,
    maxSockets: 32,
    maxFreeSockets: 32,
    timeout: 60_000,
    checkServerIdentity: (_host: string, cert: PeerCertificate) => tls.checkServerIdentity(certificateName, cert),
  });
}
