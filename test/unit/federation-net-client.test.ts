import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { FederationClient } from "../../src/federation/federation-client.ts";
import type { FederationClientDeps, FederationFailure } from "../../src/federation/federation-client.ts";
import type { FederationSettings } from "../../src/federation/federation-settings.ts";
import { parseXMatrix, signingKeyFromSeed, verifyXMatrix } from "../../src/federation/index.ts";
import type { Result } from "../../src/util/result.ts";
import { captureLog, fakeResolver, json, makeTestCert, startTlsServer } from "./federation-net-fixtures.ts";
import type { LogCapture, SeenRequest, TestCert, TestServer } from "./federation-net-fixtures.ts";
import { unwrap } from "./federation-test-key.ts";

const ORIGIN = "steward.test";
const key = unwrap(signingKeyFromSeed("a_test", new Uint8Array(32).fill(7)));

let cert: TestCert;
let server: TestServer;
let logs: LogCapture;
const clients: FederationClient[] = [];

before(async () => {
  cert = await makeTestCert();
  server = await startTlsServer(cert);
  logs = captureLog("trace");
});

after(async () => {
  for (const client of clients) client.close();
  await server?.close();
  await cert?.cleanup();
  // Nothing that was signed may have reached the log.
  const text = logs.text();
  assert.doesNotMatch(text, /X-Matrix/);
  assert.doesNotMatch(text, /sig=/);
});

beforeEach(() => {
  server.seen.length = 0;
  server.connections = 0;
  server.handler = json(200, { ok: true });
});

function settings(overrides: Partial<FederationSettings> = {}): FederationSettings {
  return {
    serverName: ORIGIN,
    signingKey: key,
    allowlist: ["127.0.0.0/8"],
    caFile: cert.certPath,
    insecureSkipTlsVerify: false,
    timeoutMs: 3000,
    maxRetries: 2,
    ...overrides,
  };
}

async function client(overrides: Partial<FederationSettings> = {}, deps: Partial<FederationClientDeps> = {}): Promise<FederationClient> {
  const created = unwrap(
    await FederationClient.create(settings(overrides), {
      log: logs.log,
      resolver: fakeResolver({ "hs.test": ["127.0.0.1"], "other.test": ["127.0.0.1"], "two.test": ["127.0.0.2", "127.0.0.1"] }),
      backoffMs: () => 0,
      ...deps,
    }),
  );
  clients.push(created);
  return created;
}

function dest(host = "hs.test"): string {
  return `${host}:${server.port}`;
}

function failed<T>(result: Result<T, FederationFailure>): FederationFailure {
  if (result.ok) assert.fail(`expected a failure, got ${JSON.stringify(result.value)}`);
  return result.error;
}

/** What the receiving server would check: the X-Matrix header against the request as received. */
function verifyAsReceiver(req: SeenRequest, destination: string): Result<void> {
  const auth = unwrap(parseXMatrix(String(req.headers.authorization)));
  assert.equal(auth.origin, ORIGIN);
  assert.equal(auth.key, key.keyId);
  return verifyXMatrix(
    auth,
    { method: req.method, uri: req.url, destination, ...(req.body ? { content: JSON.parse(req.body) } : {}) },
    key.publicKey,
  );
}

describe("federation client: signed requests", () => {
  it("signs a GET over exactly the uri sent, with Host, SNI and JSON answer", async () => {
    server.handler = json(200, { server: { name: "fake" } });
    const fed = await client();
    const uri = "/_matrix/federation/v1/query/profile?user_id=%40alice%3Ahs.test&field=displayname";
    const answer = await fed.request<{ server: { name: string } }>(dest(), "GET", uri);
    assert.deepEqual(unwrap(answer), { server: { name: "fake" } });
    const seen = server.seen[0]!;
    assert.equal(seen.url, uri);
    assert.equal(seen.headers.host, dest());
    assert.equal(seen.servername, "hs.test");
    assert.equal(verifyAsReceiver(seen, dest()).ok, true);
    // Signed for this destination only.
    assert.equal(verifyAsReceiver(seen, "elsewhere.test").ok, false);
  });

  it("sends a JSON body as canonical JSON and signs it as content", async () => {
    const fed = await client();
    const body = { b: [1, 2, { z: "é" }], a: "x" };
    unwrap(await fed.request(dest(), "PUT", "/_matrix/federation/v1/send/txn1", { body }));
    const seen = server.seen[0]!;
    assert.equal(seen.body, '{"a":"x","b":[1,2,{"z":"é"}]}');
    assert.equal(seen.headers["content-type"], "application/json");
    assert.equal(verifyAsReceiver(seen, dest()).ok, true);
  });

  it("sends no Authorization when asked for an unauthenticated request", async () => {
    const fed = await client();
    unwrap(await fed.request(dest(), "GET", "/_matrix/key/v2/server", { authenticate: false }));
    assert.equal(server.seen[0]!.headers.authorization, undefined);
  });

  it("signs requests to our own server name like any other", async () => {
    const fed = await client({ serverName: dest() });
    unwrap(await fed.request(dest(), "GET", "/_matrix/federation/v1/version"));
    const auth = unwrap(parseXMatrix(String(server.seen[0]!.headers.authorization)));
    assert.equal(auth.origin, dest());
    assert.equal(auth.destination, dest());
  });

  it("refuses what cannot be signed or sent, without sending", async () => {
    const fed = await client();
    assert.equal(failed(await fed.request(dest(), "GET", "no-slash")).code, "E_BAD_REQUEST");
    assert.equal(failed(await fed.request(dest(), "GET", "/a b")).code, "E_BAD_REQUEST");
    assert.equal(failed(await fed.request(dest(), "GET", "/café", { authenticate: false })).code, "E_BAD_REQUEST");
    assert.equal(failed(await fed.request(dest(), "GET", "/x#frag")).code, "E_BAD_REQUEST");
    assert.equal(failed(await fed.request("bad name", "GET", "/x")).code, "E_BAD_SERVER_NAME");
    assert.equal(failed(await fed.request(dest(), "POST", "/x", { body: { n: 1.5 } })).code, "E_BAD_JSON");
    assert.equal(server.seen.length, 0);
  });
});

describe("federation client: answers, retries and limits", () => {
  it("answers a 4xx at once, with errcode and body, and never retries it", async () => {
    server.handler = json(401, { errcode: "M_UNAUTHORIZED", error: "Invalid signature" });
    const fed = await client();
    const error = failed(await fed.request(dest(), "GET", "/_matrix/federation/v1/event/%24x"));
    assert.equal(error.status, 401);
    assert.equal(error.code, "M_UNAUTHORIZED");
    assert.equal(error.errcode, "M_UNAUTHORIZED");
    assert.deepEqual(error.body, { errcode: "M_UNAUTHORIZED", error: "Invalid signature" });
    assert.equal(error.destination, dest());
    assert.match(error.human, /401 M_UNAUTHORIZED Invalid signature/);
    assert.equal(server.seen.length, 1);

    server.handler = json(429, { errcode: "M_LIMIT_EXCEEDED" });
    assert.equal(failed(await fed.request(dest(), "GET", "/x")).status, 429);
    assert.equal(server.seen.length, 2);
  });

  it("retries 5xx with backoff and succeeds when the server recovers", async () => {
    let calls = 0;
    server.handler = (req, res) => (++calls < 3 ? json(502, { error: "busy" }) : json(200, { done: true }))(req, res);
    const waits: number[] = [];
    const fed = await client({}, { backoffMs: (attempt) => (waits.push(attempt), 0) });
    assert.deepEqual(unwrap(await fed.request(dest(), "GET", "/x")), { done: true });
    assert.equal(calls, 3);
    assert.deepEqual(waits, [1, 2]);
  });

  it("gives up on 5xx after maxRetries, or at once with retry: false", async () => {
    server.handler = json(500, { errcode: "M_UNKNOWN" });
    const fed = await client({ maxRetries: 3 });
    assert.equal(failed(await fed.request(dest(), "GET", "/x")).status, 500);
    assert.equal(server.seen.length, 4);
    server.seen.length = 0;
    assert.equal(failed(await fed.request(dest(), "GET", "/x", { retry: false })).status, 500);
    assert.equal(server.seen.length, 1);
  });

  it("times out a remote that hangs, retrying within the bound", async () => {
    server.handler = () => {
      // Never answers.
    };
    const fed = await client({ timeoutMs: 200, maxRetries: 1 });
    const started = Date.now();
    const error = failed(await fed.request(dest(), "GET", "/_matrix/federation/v1/version"));
    const elapsed = Date.now() - started;
    assert.equal(error.code, "E_TIMEOUT");
    assert.equal(error.status, 0);
    assert.equal(server.seen.length, 2);
    assert.ok(elapsed >= 380 && elapsed < 2000, `took ${elapsed}ms`);
  });

  it("honours the caller's signal", async () => {
    server.handler = () => {};
    const fed = await client({ timeoutMs: 5000 });
    const error = failed(await fed.request(dest(), "GET", "/x", { signal: AbortSignal.timeout(100) }));
    assert.equal(error.code, "E_CANCELLED");
    assert.equal(server.seen.length, 1);
  });

  it("refuses an answer larger than the limit", async () => {
    server.handler = json(200, { big: "x".repeat(10_000) });
    const fed = await client();
    const error = failed(await fed.request(dest(), "GET", "/x", { maxResponseBytes: 1000 }));
    assert.equal(error.code, "E_RESPONSE_TOO_LARGE");
    assert.equal(server.seen.length, 1);
  });

  it("refuses a 200 whose body is not JSON", async () => {
    server.handler = (_req, res) => res.end("<html>");
    const fed = await client();
    assert.equal(failed(await fed.request(dest(), "GET", "/x")).code, "E_BAD_RESPONSE");
  });

  it("moves on to the next address when one refuses the connection", async () => {
    const fed = await client();
    unwrap(await fed.request(dest("two.test"), "GET", "/x"));
    assert.equal(server.seen.length, 1);
  });
});

describe("federation client: TLS and the address guard", () => {
  it("verifies certificates: unknown CA and wrong name are refused, not retried", async () => {
    const noCa = await client({ caFile: undefined });
    assert.equal(failed(await noCa.request(dest(), "GET", "/x")).code, "E_TLS");
    const wrongName = await client();
    const error = failed(await wrongName.request(dest("other.test"), "GET", "/x"));
    assert.equal(error.code, "E_TLS");
    assert.match(error.human, /other\.test/);
    assert.equal(server.seen.length, 0);
    assert.equal(server.connections, 2, "one connection each, no retries");
  });

  it("skips verification only with insecureSkipTlsVerify, and warns about it", async () => {
    const before = logs.lines.length;
    const insecure = await client({ caFile: undefined, insecureSkipTlsVerify: true });
    unwrap(await insecure.request(dest("other.test"), "GET", "/x"));
    const warning = logs.lines.slice(before).map((l) => JSON.parse(l) as { level: number; msg: string }).find((l) => /insecure_skip_tls_verify/.test(l.msg));
    assert.ok(warning, "a warning was logged");
    assert.equal(warning.level, 40);
  });

  it("does not connect to loopback unless allowlisted", async () => {
    const fed = await client({ allowlist: [] });
    const error = failed(await fed.request(dest(), "GET", "/x"));
    assert.equal(error.code, "E_ADDRESS_REFUSED");
    assert.match(error.human, /127\.0\.0\.1/);
    assert.equal(server.connections, 0);
    const literal = failed(await fed.request(`127.0.0.1:${server.port}`, "GET", "/x"));
    assert.equal(literal.code, "E_ADDRESS_REFUSED");
    assert.equal(server.connections, 0);
  });

  it("accepts an IP literal destination whose certificate names the IP", async () => {
    const fed = await client();
    unwrap(await fed.request(`127.0.0.1:${server.port}`, "GET", "/x"));
    assert.equal(server.seen[0]!.servername, false, "no SNI for an IP");
    assert.equal(server.seen[0]!.headers.host, `127.0.0.1:${server.port}`);
  });

  it("refuses settings that cannot work", async () => {
    const deps = { log: logs.log };
    assert.equal((await FederationClient.create(settings({ allowlist: ["nonsense"] }), deps)).ok, false);
    const missingCa = await FederationClient.create(settings({ caFile: "/nonexistent/ca.pem" }), deps);
    assert.equal(missingCa.ok ? "" : missingCa.error.code, "E_BAD_CA_FILE");
    const notPem = await FederationClient.create(settings({ caFile: "/etc/hostname" }), deps);
    assert.equal(notPem.ok ? "" : notPem.error.code, "E_BAD_CA_FILE");
  });
});
