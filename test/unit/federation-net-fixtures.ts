// Shared by the federation-net-* tests: a certificate for made-up names, a local TLS
// server on 127.0.0.1, a fake resolver, and a log capture. Nothing leaves loopback.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { promisify } from "node:util";
import type { TLSSocket } from "node:tls";
import { createLogger } from "../../src/log.ts";
import type { Logger } from "../../src/log.ts";
import type { ResolvedAddress, Resolver, SrvRecord } from "../../src/federation/discovery.ts";
import { fail, ok } from "../../src/util/result.ts";

const execFileAsync = promisify(execFile);

/** Names the test certificate is valid for (besides localhost and 127.0.0.1). */
export const CERT_NAMES = ["example.test", "delegated.test", "redirect.test", "hs.test", "srv-target.test", "two.test"];

export interface TestCert {
  readonly dir: string;
  readonly certPath: string;
  readonly cert: string;
  readonly key: string;
  cleanup(): Promise<void>;
}

/** A self-signed certificate (EC, quick to make) for CERT_NAMES, localhost and 127.0.0.1. */
export async function makeTestCert(): Promise<TestCert> {
  const dir = await mkdtemp(join(tmpdir(), "steward-fednet-"));
  const certPath = join(dir, "cert.pem");
  const keyPath = join(dir, "key.pem");
  const san = [...CERT_NAMES, "localhost"].map((n) => `DNS:${n}`).concat("IP:127.0.0.1").join(",");
  await execFileAsync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
    "-subj", "/CN=steward-test", "-addext", `subjectAltName=${san}`, "-keyout", keyPath, "-out", certPath,
  ]);
  const [cert, key] = await Promise.all([readFile(certPath, "utf8"), readFile(keyPath, "utf8")]);
  return { dir, certPath, cert, key, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage["headers"];
  readonly body: string;
  /** The SNI name the client sent, or false when none. */
  readonly servername: string | false;
}

export type Handler = (req: SeenRequest, res: ServerResponse) => void;

export interface TestServer {
  readonly port: number;
  readonly seen: SeenRequest[];
  handler: Handler;
  /** TLS connections accepted, including ones that failed the handshake on the client side. */
  connections: number;
  close(): Promise<void>;
}

export async function startTlsServer(cert: TestCert, handler: Handler = json(200, {})): Promise<TestServer> {
  const seen: SeenRequest[] = [];
  const server = https.createServer({ cert: cert.cert, key: cert.key }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const socket = req.socket as TLSSocket;
      const request: SeenRequest = {
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
        servername: socket.servername ?? false,
      };
      seen.push(request);
      state.handler(request, res);
    });
  });
  const state: TestServer = {
    port: 0,
    seen,
    handler,
    connections: 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  server.on("connection", () => state.connections++);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (typeof address !== "object" || address === null) throw new Error("server has no port");
  (state as { port: number }).port = address.port;
  return state;
}

export function json(status: number, body: unknown, headers: Record<string, string> = {}): Handler {
  return (_req, res) => {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify(body));
  };
}

export function redirect(location: string, status = 302): Handler {
  return (_req, res) => {
    res.writeHead(status, { location });
    res.end();
  };
}

export interface FakeResolver extends Resolver {
  readonly lookups: string[];
  readonly srvLookups: string[];
}

/** Host names → addresses and SRV names → records; anything else is "not found". */
export function fakeResolver(
  hosts: Record<string, string[]>,
  srv: Record<string, Array<Partial<SrvRecord> & { name: string; port: number }>> = {},
): FakeResolver {
  const lookups: string[] = [];
  const srvLookups: string[] = [];
  return {
    lookups,
    srvLookups,
    async lookup(hostname) {
      lookups.push(hostname);
      const found = hosts[hostname];
      if (found === undefined || found.length === 0) return fail("E_DNS_NOT_FOUND", `${hostname} has no address`);
      return ok(found.map((address): ResolvedAddress => ({ address, family: address.includes(":") ? 6 : 4 })));
    },
    async resolveSrv(name) {
      srvLookups.push(name);
      return ok((srv[name] ?? []).map((r) => ({ priority: 10, weight: 0, ...r })));
    },
  };
}

export interface LogCapture {
  readonly log: Logger;
  readonly lines: string[];
  text(): string;
}

export function captureLog(level = "trace"): LogCapture {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString("utf8").split("\n").filter((l) => l.length > 0));
      done();
    },
  });
  const log = createLogger({ level, stream });
  return { log, lines, text: () => lines.join("\n") };
}
