import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { AddressGuard } from "../../src/federation/address-guard.ts";
import { cachePeriodMs, orderSrv, ServerDiscovery, splitServerName } from "../../src/federation/discovery.ts";
import type { ResolvedServer, Resolver } from "../../src/federation/discovery.ts";
import { loadTlsTrust } from "../../src/federation/https-exchange.ts";
import type { TlsTrust } from "../../src/federation/https-exchange.ts";
import type { Result } from "../../src/util/result.ts";
import { fakeResolver, json, makeTestCert, redirect, startTlsServer } from "./federation-net-fixtures.ts";
import type { FakeResolver, TestCert, TestServer } from "./federation-net-fixtures.ts";
import { unwrap } from "./federation-test-key.ts";

// Addresses a fake resolver hands out for "public" hosts; nothing ever connects to them.
const PUBLIC_A = "93.184.216.34";
const PUBLIC_B = "151.101.1.69";
const PUBLIC_V6 = "2606:2800:220:1::1";

let cert: TestCert;
let trust: TlsTrust;
let server: TestServer;

before(async () => {
  cert = await makeTestCert();
  trust = unwrap(await loadTlsTrust({ caFile: cert.certPath, verify: true }));
  server = await startTlsServer(cert);
});

after(async () => {
  await server?.close();
  await cert?.cleanup();
});

beforeEach(() => {
  server.seen.length = 0;
  server.connections = 0;
  server.handler = json(404, { errcode: "M_NOT_FOUND" });
});

interface Setup {
  discovery: ServerDiscovery;
  resolver: FakeResolver;
  clock: { now: number };
}

function setup(
  hosts: Record<string, string[]>,
  srv: Parameters<typeof fakeResolver>[1] = {},
  allowlist: string[] = ["127.0.0.1/32"],
): Setup {
  const resolver = fakeResolver(hosts, srv);
  const clock = { now: 1_800_000_000_000 };
  const discovery = new ServerDiscovery({
    guard: unwrap(AddressGuard.create(allowlist)),
    trust,
    resolver,
    now: () => clock.now,
    wellKnownPort: server.port,
    wellKnownTimeoutMs: 2000,
    resolutionCacheMs: 0,
  });
  return { discovery, resolver, clock };
}

function resolved(result: Result<ResolvedServer>): ResolvedServer {
  if (!result.ok) assert.fail(`expected a resolution, got ${result.error.code}: ${result.error.log}`);
  return result.value;
}

function refusedCode(result: Result<unknown>): string {
  assert.equal(result.ok, false, "expected a failure");
  return result.ok ? "" : result.error.code;
}

describe("discovery: IP literals and explicit ports (no .well-known)", () => {
  it("uses an IPv4 literal directly with port 8448", async () => {
    const { discovery, resolver } = setup({});
    const r = resolved(await discovery.resolve(PUBLIC_A));
    assert.equal(r.route, "ip-literal");
    assert.deepEqual(r.targets, [{ address: PUBLIC_A, port: 8448 }]);
    assert.equal(r.hostHeader, PUBLIC_A);
    assert.equal(r.certificateName, PUBLIC_A);
    assert.deepEqual(resolver.lookups, []);
    assert.equal(server.seen.length, 0);
  });

  it("uses a bracketed IPv6 literal with its port", async () => {
    const { discovery } = setup({});
    const r = resolved(await discovery.resolve(`[${PUBLIC_V6}]:8449`));
    assert.deepEqual(r.targets, [{ address: PUBLIC_V6, port: 8449 }]);
    assert.equal(r.hostHeader, `[${PUBLIC_V6}]:8449`);
    assert.equal(r.certificateName, PUBLIC_V6);
  });

  it("refuses IP literal server names the guard refuses", async () => {
    const { discovery } = setup({}, {}, ["127.0.0.0/8"]);
    for (const name of ["10.0.0.1", "169.254.169.254:80", "[::ffff:127.0.0.1]:8448", "[::ffff:7f00:1]", "100.64.0.1", "[fd00::1]:443", "[::1]"]) {
      assert.equal(refusedCode(await discovery.resolve(name)), "E_ADDRESS_REFUSED", name);
    }
    assert.equal(server.seen.length, 0);
  });

  it("resolves a host name with an explicit port through DNS, no .well-known and no SRV", async () => {
    const { discovery, resolver } = setup({ "hs.test": [PUBLIC_A, PUBLIC_V6] });
    const r = resolved(await discovery.resolve("hs.test:8449"));
    assert.equal(r.route, "explicit-port");
    assert.deepEqual(r.targets, [{ address: PUBLIC_A, port: 8449 }, { address: PUBLIC_V6, port: 8449 }]);
    assert.equal(r.hostHeader, "hs.test:8449");
    assert.equal(r.certificateName, "hs.test");
    assert.deepEqual(resolver.srvLookups, []);
    assert.equal(server.seen.length, 0);
  });

  it("drops refused addresses of a host name and refuses it when none is left", async () => {
    const { discovery } = setup({ "mixed.test": ["10.0.0.1", PUBLIC_B, "::ffff:127.0.0.1"], "inside.test": ["10.0.0.1", "169.254.169.254", "fd00::1"] });
    const r = resolved(await discovery.resolve("mixed.test:8448"));
    assert.deepEqual(r.targets, [{ address: PUBLIC_B, port: 8448 }]);
    const inside = await discovery.resolve("inside.test:8448");
    assert.equal(refusedCode(inside), "E_ADDRESS_REFUSED");
    if (!inside.ok) assert.match(inside.error.human, /10\.0\.0\.1.*169\.254\.169\.254.*fd00::1/);
  });

  it("refuses invalid server names", async () => {
    const { discovery } = setup({});
    for (const name of ["", "a b", "host:99999", "host:0", "[not-ip]:80", "::1", "https://x"]) {
      assert.equal((await discovery.resolve(name)).ok, false, name);
    }
  });
});

describe("discovery: .well-known delegation", () => {
  it("delegates to a host with a port: DNS of the delegated host, Host header with port", async () => {
    server.handler = json(200, { "m.server": "delegated.test:1234" });
    const { discovery, resolver } = setup({ "example.test": ["127.0.0.1"], "delegated.test": [PUBLIC_A] });
    const r = resolved(await discovery.resolve("example.test"));
    assert.equal(r.route, "well-known-explicit-port");
    assert.deepEqual(r.targets, [{ address: PUBLIC_A, port: 1234 }]);
    assert.equal(r.hostHeader, "delegated.test:1234");
    assert.equal(r.certificateName, "delegated.test");
    assert.deepEqual(resolver.srvLookups, []);
    assert.equal(server.seen.length, 1);
    assert.equal(server.seen[0]!.url, "/.well-known/matrix/server");
    assert.equal(server.seen[0]!.headers.host, `example.test:${server.port}`);
    assert.equal(server.seen[0]!.servername, "example.test");
  });

  it("delegates to a host without port: _matrix-fed._tcp SRV of the delegated host", async () => {
    server.handler = json(200, { "m.server": "delegated.test" });
    const { discovery, resolver } = setup(
      { "example.test": ["127.0.0.1"], "srv-target.test": [PUBLIC_B] },
      { "_matrix-fed._tcp.delegated.test": [{ name: "srv-target.test", port: 8500 }] },
    );
    const r = resolved(await discovery.resolve("example.test"));
    assert.equal(r.route, "well-known-srv");
    assert.deepEqual(r.targets, [{ address: PUBLIC_B, port: 8500 }]);
    assert.equal(r.hostHeader, "delegated.test");
    assert.equal(r.certificateName, "delegated.test");
    assert.deepEqual(resolver.srvLookups, ["_matrix-fed._tcp.delegated.test"]);
  });

  it("delegates to a host without port and without SRV: deprecated _matrix._tcp, then 8448", async () => {
    server.handler = json(200, { "m.server": "delegated.test" });
    const legacy = setup(
      { "example.test": ["127.0.0.1"], "srv-target.test": [PUBLIC_B] },
      { "_matrix._tcp.delegated.test": [{ name: "srv-target.test", port: 8600 }] },
    );
    const viaLegacy = resolved(await legacy.discovery.resolve("example.test"));
    assert.equal(viaLegacy.route, "well-known-legacy-srv");
    assert.deepEqual(viaLegacy.targets, [{ address: PUBLIC_B, port: 8600 }]);
    assert.deepEqual(legacy.resolver.srvLookups, ["_matrix-fed._tcp.delegated.test", "_matrix._tcp.delegated.test"]);

    const plain = setup({ "example.test": ["127.0.0.1"], "delegated.test": [PUBLIC_A] });
    const viaDefault = resolved(await plain.discovery.resolve("example.test"));
    assert.equal(viaDefault.route, "well-known-default-port");
    assert.deepEqual(viaDefault.targets, [{ address: PUBLIC_A, port: 8448 }]);
    assert.equal(viaDefault.hostHeader, "delegated.test");
  });

  it("delegates to an IP literal, which the guard checks too", async () => {
    server.handler = json(200, { "m.server": `${PUBLIC_A}:9000` });
    const { discovery } = setup({ "example.test": ["127.0.0.1"] });
    const r = resolved(await discovery.resolve("example.test"));
    assert.equal(r.route, "well-known-ip-literal");
    assert.deepEqual(r.targets, [{ address: PUBLIC_A, port: 9000 }]);
    assert.equal(r.hostHeader, `${PUBLIC_A}:9000`);

    server.handler = json(200, { "m.server": "169.254.169.254:8448" });
    const refused = setup({ "example.test": ["127.0.0.1"] });
    assert.equal(refusedCode(await refused.discovery.resolve("example.test")), "E_ADDRESS_REFUSED");
  });

  it("refuses a delegated host whose DNS points inside", async () => {
    server.handler = json(200, { "m.server": "delegated.test:8448" });
    const { discovery } = setup({ "example.test": ["127.0.0.1"], "delegated.test": ["10.0.0.1"] });
    assert.equal(refusedCode(await discovery.resolve("example.test")), "E_ADDRESS_REFUSED");
  });
});

describe("discovery: without a usable .well-known", () => {
  it("falls back to _matrix-fed._tcp SRV of the server name, with its Host and certificate name", async () => {
    const { discovery, resolver } = setup(
      { "example.test": ["127.0.0.1"], "srv-target.test": [PUBLIC_A], "srv-backup.test": [PUBLIC_B] },
      {
        "_matrix-fed._tcp.example.test": [
          { name: "srv-backup.test", port: 8449, priority: 20 },
          { name: "srv-target.test", port: 8448, priority: 10 },
        ],
      },
    );
    const r = resolved(await discovery.resolve("example.test"));
    assert.equal(r.route, "srv");
    assert.deepEqual(r.targets, [{ address: PUBLIC_A, port: 8448 }, { address: PUBLIC_B, port: 8449 }]);
    assert.equal(r.hostHeader, "example.test");
    assert.equal(r.certificateName, "example.test");
    assert.deepEqual(resolver.srvLookups, ["_matrix-fed._tcp.example.test"]);
    assert.equal(server.seen.length, 1, "the .well-known was asked first");
  });

  it("then the deprecated _matrix._tcp SRV, then port 8448", async () => {
    const legacy = setup({ "example.test": ["127.0.0.1"], "srv-target.test": [PUBLIC_A] }, { "_matrix._tcp.example.test": [{ name: "srv-target.test", port: 8555 }] });
    const viaLegacy = resolved(await legacy.discovery.resolve("example.test"));
    assert.equal(viaLegacy.route, "legacy-srv");
    assert.deepEqual(viaLegacy.targets, [{ address: PUBLIC_A, port: 8555 }]);

    const plain = setup({ "example.test": [PUBLIC_B] }, {}, []);
    const fallback = resolved(await plain.discovery.resolve("example.test"));
    assert.equal(fallback.route, "default-port");
    assert.deepEqual(fallback.targets, [{ address: PUBLIC_B, port: 8448 }]);
    assert.equal(fallback.hostHeader, "example.test");
    assert.deepEqual(plain.resolver.srvLookups, ["_matrix-fed._tcp.example.test", "_matrix._tcp.example.test"]);
  });

  it("treats bad JSON, a missing m.server and an invalid m.server like no .well-known", async () => {
    for (const handler of [
      (_req: unknown, res: import("node:http").ServerResponse) => res.end("not json"),
      json(200, { "m.homeserver": "x" }),
      json(200, { "m.server": "not a server name!" }),
      json(200, ["m.server"]),
    ]) {
      server.handler = handler;
      const { discovery } = setup({ "example.test": ["127.0.0.1"] });
      const r = resolved(await discovery.resolve("example.test"));
      assert.equal(r.route, "default-port");
      assert.deepEqual(r.targets, [{ address: "127.0.0.1", port: 8448 }]);
    }
  });

  it("does not accept a .well-known larger than 50 KiB", async () => {
    server.handler = json(200, { "m.server": "delegated.test:1", padding: "x".repeat(60 * 1024) });
    const { discovery } = setup({ "example.test": ["127.0.0.1"], "delegated.test": [PUBLIC_A] });
    const wellKnown = await discovery.wellKnown("example.test");
    assert.equal(refusedCode(wellKnown), "E_RESPONSE_TOO_LARGE");
  });

  it("does not connect for .well-known to a host the guard refuses", async () => {
    server.handler = json(200, { "m.server": "delegated.test:1" });
    const { discovery } = setup({ "example.test": ["127.0.0.1"] }, {}, []);
    assert.equal(refusedCode(await discovery.wellKnown("example.test")), "E_ADDRESS_REFUSED");
    assert.equal(server.connections, 0);
  });

  it("does not accept a certificate for another name", async () => {
    server.handler = json(200, { "m.server": "delegated.test:1" });
    const { discovery } = setup({ "unlisted.test": ["127.0.0.1"] });
    assert.equal(refusedCode(await discovery.wellKnown("unlisted.test")), "E_TLS");
  });
});

describe("discovery: .well-known redirects", () => {
  it("follows a redirect to an allowed address, each hop resolved and checked", async () => {
    server.handler = (req, res) => {
      if (req.headers.host?.startsWith("example.test")) redirect(`https://redirect.test:${server.port}/elsewhere`)(req, res);
      else json(200, { "m.server": "delegated.test:4321" })(req, res);
    };
    const { discovery, resolver } = setup({ "example.test": ["127.0.0.1"], "redirect.test": ["127.0.0.1"], "delegated.test": [PUBLIC_A] });
    const r = resolved(await discovery.resolve("example.test"));
    assert.equal(r.route, "well-known-explicit-port");
    assert.deepEqual(r.targets, [{ address: PUBLIC_A, port: 4321 }]);
    assert.deepEqual(server.seen.map((s) => s.url), ["/.well-known/matrix/server", "/elsewhere"]);
    assert.equal(server.seen[1]!.servername, "redirect.test");
    assert.deepEqual(resolver.lookups.slice(0, 2), ["example.test", "redirect.test"]);
  });

  const inside = [
    ["10.0.0.1", "https://10.0.0.1/.well-known/matrix/server"],
    ["169.254.169.254", "https://169.254.169.254/latest/meta-data/"],
    ["::ffff:127.0.0.1", "https://[::ffff:127.0.0.1]:PORT/"],
    ["::ffff:7f00:1", "https://[::ffff:7f00:1]:PORT/"],
    ["100.64.0.1", "https://100.64.0.1/"],
    ["fd00::1", "https://[fd00::1]/"],
    ["a host resolving to 10.0.0.1", "https://internal.test/"],
  ] as const;
  for (const [what, location] of inside) {
    it(`refuses a redirect to ${what} and falls back as without .well-known`, async () => {
      server.handler = redirect(location.replace("PORT", String(server.port)));
      const { discovery } = setup({ "example.test": ["127.0.0.1"], "internal.test": ["10.0.0.1"] });
      const wellKnown = await discovery.wellKnown("example.test");
      assert.equal(refusedCode(wellKnown), "E_ADDRESS_REFUSED");
      assert.equal(server.seen.length, 1, "only the first hop reached a server");
      const r = resolved(await discovery.resolve("example.test"));
      assert.equal(r.route, "default-port");
      assert.ok(r.steps.some((s) => /no usable \.well-known/.test(s)), r.steps.join(" | "));
    });
  }

  it("refuses redirect loops, non-HTTPS targets and endless chains", async () => {
    server.handler = redirect("/.well-known/matrix/server");
    const loop = setup({ "example.test": ["127.0.0.1"] });
    const looped = await loop.discovery.wellKnown("example.test");
    assert.equal(refusedCode(looped), "E_WELL_KNOWN");
    if (!looped.ok) assert.match(looped.error.human, /loop/);

    server.handler = redirect(`http://example.test:${server.port}/x`);
    const plain = setup({ "example.test": ["127.0.0.1"] });
    const insecure = await plain.discovery.wellKnown("example.test");
    if (!insecure.ok) assert.match(insecure.error.human, /non-HTTPS/);
    else assert.fail("an http redirect was followed");

    let hop = 0;
    server.handler = (req, res) => redirect(`/hop${++hop}`)(req, res);
    const chain = setup({ "example.test": ["127.0.0.1"] });
    const endless = await chain.discovery.wellKnown("example.test");
    if (!endless.ok) assert.match(endless.error.human, /more than 5 times/);
    else assert.fail("an endless redirect chain ended well");
    assert.equal(hop, 6);
  });
});

describe("discovery: caching", () => {
  it("caches .well-known per Cache-Control and refetches after it expires", async () => {
    server.handler = json(200, { "m.server": "delegated.test:1" }, { "cache-control": "public, max-age=600" });
    const { discovery, clock } = setup({ "example.test": ["127.0.0.1"], "delegated.test": [PUBLIC_A] });
    resolved(await discovery.resolve("example.test"));
    resolved(await discovery.resolve("example.test"));
    assert.equal(server.seen.length, 1);
    clock.now += 599_000;
    resolved(await discovery.resolve("example.test"));
    assert.equal(server.seen.length, 1);
    clock.now += 2_000;
    resolved(await discovery.resolve("example.test"));
    assert.equal(server.seen.length, 2);
  });

  it("caches a .well-known without cache headers for 24 hours and errors for an hour", async () => {
    server.handler = json(200, { "m.server": "delegated.test:1" });
    const ok = setup({ "example.test": ["127.0.0.1"], "delegated.test": [PUBLIC_A] });
    await ok.discovery.wellKnown("example.test");
    ok.clock.now += 23 * 3600_000;
    await ok.discovery.wellKnown("example.test");
    assert.equal(server.seen.length, 1);
    ok.clock.now += 2 * 3600_000;
    await ok.discovery.wellKnown("example.test");
    assert.equal(server.seen.length, 2);

    server.seen.length = 0;
    server.handler = json(404, {});
    const missing = setup({ "example.test": ["127.0.0.1"] });
    await missing.discovery.wellKnown("example.test");
    missing.clock.now += 59 * 60_000;
    await missing.discovery.wellKnown("example.test");
    assert.equal(server.seen.length, 1);
    missing.clock.now += 2 * 60_000;
    await missing.discovery.wellKnown("example.test");
    assert.equal(server.seen.length, 2);
  });

  it("shares one .well-known fetch between concurrent resolutions", async () => {
    server.handler = json(200, { "m.server": "delegated.test:1" });
    const { discovery } = setup({ "example.test": ["127.0.0.1"], "delegated.test": [PUBLIC_A] });
    const all = await Promise.all([1, 2, 3, 4].map(() => discovery.resolve("example.test")));
    assert.ok(all.every((r) => r.ok));
    assert.equal(server.seen.length, 1);
  });

  it("reuses a whole resolution for resolutionCacheMs, until forgotten", async () => {
    const resolver: Resolver = fakeResolver({ "hs.test": [PUBLIC_A] });
    const discovery = new ServerDiscovery({ guard: unwrap(AddressGuard.create([])), trust, resolver, resolutionCacheMs: 60_000 });
    resolved(await discovery.resolve("hs.test:8448"));
    resolved(await discovery.resolve("hs.test:8448"));
    assert.equal((resolver as ReturnType<typeof fakeResolver>).lookups.length, 1);
    discovery.forget("hs.test:8448");
    resolved(await discovery.resolve("hs.test:8448"));
    assert.equal((resolver as ReturnType<typeof fakeResolver>).lookups.length, 2);
  });

  it("reads cache periods like Synapse: no-store, max-age clamped to 5 min–48 h, Expires, default 24 h", () => {
    const now = Date.parse("2030-01-01T00:00:00Z");
    assert.equal(cachePeriodMs({ "cache-control": "no-store" }, now), 0);
    assert.equal(cachePeriodMs({ "cache-control": "max-age=3600" }, now), 3600_000);
    assert.equal(cachePeriodMs({ "cache-control": "max-age=1" }, now), 5 * 60_000);
    assert.equal(cachePeriodMs({ "cache-control": "max-age=999999999" }, now), 48 * 3600_000);
    assert.equal(cachePeriodMs({ expires: "Wed, 01 Jan 2030 02:00:00 GMT" }, now), 2 * 3600_000);
    assert.equal(cachePeriodMs({}, now), 24 * 3600_000);
  });
});

describe("discovery helpers", () => {
  it("splits server names", () => {
    assert.deepEqual(splitServerName("example.org"), { host: "example.org", port: undefined, ipLiteral: false });
    assert.deepEqual(splitServerName("example.org:8448"), { host: "example.org", port: 8448, ipLiteral: false });
    assert.deepEqual(splitServerName("1.2.3.4:80"), { host: "1.2.3.4", port: 80, ipLiteral: true });
    assert.deepEqual(splitServerName("[::1]:80"), { host: "::1", port: 80, ipLiteral: true });
    assert.equal(splitServerName("[example.org]:80"), undefined);
    assert.equal(splitServerName("example.org:70000"), undefined);
  });

  it("orders SRV records by priority, then weight at random", () => {
    const records = [
      { name: "c", port: 1, priority: 20, weight: 0 },
      { name: "a", port: 1, priority: 10, weight: 100 },
      { name: "b", port: 1, priority: 10, weight: 0 },
    ];
    // A weight of 0 comes last unless every weight in its priority is 0.
    assert.deepEqual(orderSrv(records, () => 0.99).map((r) => r.name), ["a", "b", "c"]);
    assert.deepEqual(orderSrv(records, () => 0).map((r) => r.name), ["a", "b", "c"]);
    const weighted = [
      { name: "x", port: 1, priority: 0, weight: 1 },
      { name: "y", port: 1, priority: 0, weight: 3 },
    ];
    assert.deepEqual(orderSrv(weighted, () => 0.1).map((r) => r.name), ["x", "y"]);
    assert.deepEqual(orderSrv(weighted, () => 0.5).map((r) => r.name), ["y", "x"]);
  });
});
