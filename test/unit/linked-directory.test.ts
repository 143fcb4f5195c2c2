// The linked-accounts directory client against a real HTTP server on 127.0.0.1: answers, caching,
// negative caching, the address guard (on the resolved address), timeouts and bad answers.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { AddressGuard } from '../../src/federation/address-guard.ts';
import { createLogger } from '../../src/log.ts';
import { DirectoryClient, parseDirectoryAnswer } from '../../src/linked/directory.ts';
import type { DirectoryConfig } from '../../src/linked/linked-config.ts';

const log = createLogger({ level: 'silent' });

describe('parseDirectoryAnswer', () => {
  it('accepts a JSON array of Matrix IDs, dropping the asked ID and duplicates', () => {
    const r = parseDirectoryAnswer('["@a:x","@b:y","@a:x","@b:y"]', '@a:x');
    assert.deepEqual(r, { ok: true, value: ['@b:y'] });
    assert.deepEqual(parseDirectoryAnswer('[]', '@a:x'), { ok: true, value: [] });
  });

  it('refuses anything else as malformed, saying why', () => {
    const cases: [string, RegExp][] = [
      ['not json', /not JSON/],
      ['{"linked":["@b:y"]}', /not a JSON array .*object/],
      ['null', /not a JSON array .*null/],
      ['["@b:y", 42]', /entry 1 .* not a Matrix ID \(42\)/],
      ['["b:y"]', /entry 0/],
      ['["@b"]', /entry 0/],
      [JSON.stringify(Array.from({ length: 101 }, (_, i) => `@u${i}:x`)), /101 IDs, more than 100/],
    ];
    for (const [body, why] of cases) {
      const r = parseDirectoryAnswer(body, '@a:x');
      assert.equal(r.ok, false, body);
      if (!r.ok) {
        assert.equal(r.error.kind, 'malformed');
        assert.match(r.error.human, why);
      }
    }
  });
});

describe('DirectoryClient', () => {
  let server: http.Server;
  let port: number;
  let requests: string[] = [];
  let answer: (path: string, res: http.ServerResponse, req: http.IncomingMessage) => void = (_p, res) => res.writeHead(404).end();
  let now = 1_000_000;
  let counts: Record<string, number> = {};
  let remembered: [string, readonly string[]][] = [];

  before(async () => {
    server = http.createServer((req, res) => {
      requests.push(req.url ?? '');
      answer(req.url ?? '', res, req);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  beforeEach(() => {
    requests = [];
    counts = {};
    remembered = [];
    now = 1_000_000;
  });

  function client(opts: { allow?: string[]; config?: Partial<DirectoryConfig>; resolveHost?: (h: string) => Promise<string[]> } = {}): DirectoryClient {
    const guard = AddressGuard.create(opts.allow ?? ['127.0.0.1/32']);
    assert.ok(guard.ok);
    return new DirectoryClient({
      config: { urlTemplate: `http://127.0.0.1:${port}/links?mxid={mxid}`, timeoutMs: 1000, cacheSeconds: 60, negativeCacheSeconds: 10, addressAllowlist: [], ...opts.config },
      guard: guard.value,
      log,
      bump: (name) => { counts[name] = (counts[name] ?? 0) + 1; },
      remember: (u, m) => { remembered.push([u, m]); },
      now: () => now,
      ...(opts.resolveHost ? { resolveHost: opts.resolveHost } : {}),
    });
  }

  it('asks with the URL-encoded Matrix ID and caches the answer for cache_seconds', async () => {
    answer = (_p, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('["@alice:a.example:8448","@alice:b.example"]');
    const dir = client();
    assert.deepEqual(await dir.lookup('@alice:a.example:8448'), { ok: true, value: ['@alice:b.example'] });
    assert.deepEqual(requests, ['/links?mxid=%40alice%3Aa.example%3A8448']);
    now += 59_000;
    assert.deepEqual(await dir.lookup('@alice:a.example:8448'), { ok: true, value: ['@alice:b.example'] });
    assert.equal(requests.length, 1, 'served from the cache');
    now += 2_000;
    await dir.lookup('@alice:a.example:8448');
    assert.equal(requests.length, 2, 'asked again after the TTL');
    assert.deepEqual(counts, { 'directory.lookups': 2, 'directory.cache_hits': 1 });
    assert.deepEqual(remembered[0], ['@alice:a.example:8448', ['@alice:b.example']]);
  });

  it('shares one request between concurrent lookups of the same ID', async () => {
    answer = (_p, res) => setTimeout(() => res.writeHead(200).end('["@b:y"]'), 50);
    const dir = client();
    const [x, y] = await Promise.all([dir.lookup('@a:x'), dir.lookup('@a:x')]);
    assert.deepEqual(x, y);
    assert.equal(requests.length, 1);
  });

  it('caches "no links" (404 or only itself) for negative_cache_seconds', async () => {
    answer = (p, res) => (p.includes('nobody') ? res.writeHead(404).end() : res.writeHead(200).end('["@self:x"]'));
    const dir = client();
    assert.deepEqual(await dir.lookup('@nobody:x'), { ok: true, value: [] });
    assert.deepEqual(await dir.lookup('@self:x'), { ok: true, value: [] });
    now += 9_000;
    await dir.lookup('@nobody:x');
    assert.equal(requests.length, 2);
    now += 2_000;
    await dir.lookup('@nobody:x');
    assert.equal(requests.length, 3);
    assert.equal(counts['directory.not_linked'], 3);
  });

  it('fails, counts and remembers the failure briefly on garbage, bad status, redirects and timeouts', async () => {
    const dir = client({ config: { timeoutMs: 200 } });
    const cases: [(p: string, res: http.ServerResponse) => void, string, RegExp][] = [
      [(_p, res) => res.writeHead(200).end('<html>'), 'malformed', /not JSON/],
      [(_p, res) => res.writeHead(500).end('oops'), 'http_status', /HTTP 500/],
      [(_p, res) => res.writeHead(302, { location: 'http://169.254.169.254/' }).end(), 'http_status', /HTTP 302/],
      [() => undefined, 'timeout', /no answer within 200 ms/],
      [(_p, res) => res.writeHead(200).end('x'.repeat(70 * 1024)), 'malformed', /larger than/],
    ];
    for (const [i, [behaviour, kind, human]] of cases.entries()) {
      answer = behaviour;
      const user = `@u${i}:x`;
      const r = await dir.lookup(user);
      assert.equal(r.ok, false, kind);
      if (!r.ok) {
        assert.equal(r.error.kind, kind);
        assert.match(r.error.human, human);
      }
      const before = requests.length;
      const again = await dir.lookup(user);
      assert.equal(again.ok, false);
      assert.equal(requests.length, before, 'the failure is cached for negative_cache_seconds');
    }
    assert.equal(counts['directory.errors'], 5);
    assert.equal(counts['directory.errors.malformed'], 2);
    assert.equal(counts['directory.errors.timeout'], 1);
  });

  it('reports a dropped connection as a network error', async () => {
    answer = (_p, _res, req) => req.socket.destroy();
    const r = await client().lookup('@a:x');
    assert.equal(r.ok, false);
    if (!r.ok) assert.equal(r.error.kind, 'network');
  });

  it('refuses a loopback directory that is not allowlisted, without connecting', async () => {
    answer = (_p, res) => res.writeHead(200).end('["@b:y"]');
    const r = await client({ allow: [] }).lookup('@a:x');
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.equal(r.error.kind, 'address_refused');
      assert.match(r.error.human, /127\.0\.0\.1: it is a loopback address.*linked_accounts\.directory\.address_allowlist/);
    }
    assert.equal(requests.length, 0);
  });

  it('checks the resolved addresses of a host name and connects to an allowed one only', async () => {
    answer = (_p, res, req) => res.writeHead(200).end(JSON.stringify([`@via-${req.headers.host}:y`]));
    const config = { urlTemplate: `http://directory.internal:${port}/links?mxid={mxid}` };
    const refused = await client({ allow: [], config, resolveHost: async () => ['10.1.2.3', '127.0.0.1'] }).lookup('@a:x');
    assert.equal(refused.ok, false);
    if (!refused.ok) assert.match(refused.error.human, /directory\.internal \(10\.1\.2\.3: it is a private address/);
    assert.equal(requests.length, 0);
    // One allowed address among refused ones: that one is used, with the name as Host.
    const ok = await client({ allow: ['127.0.0.1/32'], config, resolveHost: async () => ['10.1.2.3', '127.0.0.1'] }).lookup('@a:x');
    assert.deepEqual(ok, { ok: true, value: [`@via-directory.internal:${port}:y`] });
  });
});
