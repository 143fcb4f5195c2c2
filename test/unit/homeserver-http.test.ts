import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { HomeserverHttp, path, type HttpFailure } from '../../src/homeserver/http.ts';
import { createLogger } from '../../src/log.ts';
import type { Result } from '../../src/util/result.ts';

interface Seen {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

let server: Server;
let base: string;
let seen: Seen[];
/** Answers in order; the last one repeats. */
let script: Handler[];

function json(status: number, body: unknown, headers: Record<string, string> = {}): Handler {
  return (_req, res) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };
}

const never: Handler = () => {
  // Holds the request open; the client must give up by itself.
};

// A fresh server per test, so no kept-alive connection outlives the test that opened it.
beforeEach(async () => {
  seen = [];
  script = [json(200, {})];
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      const handler = script.length > 1 ? script.shift()! : script[0]!;
      handler(req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  // Also drops any request a test left hanging.
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

function client(opts: { maxRetries?: number; timeoutMs?: number; logLines?: Record<string, unknown>[]; baseUrl?: string } = {}): HomeserverHttp {
  const lines = opts.logLines;
  const log = lines
    ? createLogger({
      level: 'debug',
      stream: new Writable({
        write(chunk: Buffer, _enc, done) {
          for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
          done();
        },
      }),
    })
    : createLogger({ level: 'silent' });
  return new HomeserverHttp({ baseUrl: opts.baseUrl ?? `${base}/`, token: 'as-token-123', timeoutMs: opts.timeoutMs ?? 5000, maxRetries: opts.maxRetries ?? 3, log, userAgent: 'steward-test' });
}

function failed<T>(result: Result<T, HttpFailure>): HttpFailure {
  if (result.ok) assert.fail(`expected a failure, got ${JSON.stringify(result.value)}`);
  return result.error;
}

function value<T>(result: Result<T, HttpFailure>): T {
  if (!result.ok) assert.fail(`expected success, got ${result.error.code}: ${result.error.human}`);
  return result.value;
}

/** The waits the client announced before each retry. */
function waits(lines: Record<string, unknown>[]): unknown[] {
  return lines.filter((l) => l.msg === 'retrying homeserver request').map((l) => l.waitMs);
}

describe('HomeserverHttp: requests', () => {
  it('sends the token as a Bearer header, the user agent and a JSON body', async () => {
    script = [json(200, { event_id: '$e' })];
    const result = await client().request<{ event_id: string }>('PUT', '/_matrix/client/v3/rooms/x/send/m.room.message/1', { body: { body: 'hi' } });
    assert.deepEqual(value(result), { event_id: '$e' });
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.method, 'PUT');
    assert.equal(seen[0]!.headers.authorization, 'Bearer as-token-123');
    assert.equal(seen[0]!.headers['user-agent'], 'steward-test');
    assert.equal(seen[0]!.headers['content-type'], 'application/json');
    assert.equal(seen[0]!.body, '{"body":"hi"}');
  });

  it('sends no body and no content type without a body', async () => {
    await client().request('GET', '/x');
    assert.equal(seen[0]!.body, '');
    assert.equal(seen[0]!.headers['content-type'], undefined);
  });

  it('adds user_id for identity assertion, after the other query parameters', async () => {
    await client().request('GET', '/_matrix/client/v3/account/whoami', { asUser: '@alice:hs', query: { limit: 5, dir: 'b', skip: undefined, on: true } });
    assert.equal(seen[0]!.url, '/_matrix/client/v3/account/whoami?limit=5&dir=b&on=true&user_id=%40alice%3Ahs');
    await client().request('GET', '/x?already=1', { asUser: '@bob:hs' });
    assert.equal(seen[1]!.url, '/x?already=1&user_id=%40bob%3Ahs');
  });

  it('treats an empty 200 as an empty object', async () => {
    script = [(_req, res) => { res.writeHead(200); res.end(); }];
    assert.deepEqual(value(await client().request('GET', '/x')), {});
  });

  it('refuses a 200 whose body is not JSON', async () => {
    script = [(_req, res) => { res.writeHead(200, { 'content-type': 'text/html' }); res.end('<html>proxy</html>'); }];
    const error = failed(await client().request('GET', '/x'));
    assert.equal(error.code, 'E_BAD_RESPONSE');
    assert.equal(error.status, 200);
    assert.equal(seen.length, 1);
  });
});

describe('path tag', () => {
  it('encodes user ids with a port, room ids and aliases ("!" may stay: it is legal in a path)', () => {
    assert.equal(path`/_matrix/client/v3/profile/${'@u:hs:8448'}`, '/_matrix/client/v3/profile/%40u%3Ahs%3A8448');
    assert.equal(path`/_matrix/client/v3/rooms/${'!room:hs'}/state/${'m.room.member'}/${'@u:hs'}`, '/_matrix/client/v3/rooms/!room%3Ahs/state/m.room.member/%40u%3Ahs');
    assert.equal(path`/d/${'#a/b?c:hs'}`, '/d/%23a%2Fb%3Fc%3Ahs');
    assert.equal(path`/n/${42}/end`, '/n/42/end');
    assert.equal(path`/plain`, '/plain');
  });

  it('arrives at the server as one path segment', async () => {
    await client().request('GET', path`/_synapse/admin/v2/users/${'@u:hs:8448'}`);
    assert.equal(seen[0]!.url, '/_synapse/admin/v2/users/%40u%3Ahs%3A8448');
  });
});

describe('HomeserverHttp: retries', () => {
  it('waits retry_after_ms after a 429, then succeeds', async () => {
    script = [json(429, { errcode: 'M_LIMIT_EXCEEDED', error: 'Too many requests', retry_after_ms: 50 }), json(200, { ok: 1 })];
    const lines: Record<string, unknown>[] = [];
    assert.deepEqual(value(await client({ logLines: lines }).request('GET', '/x')), { ok: 1 });
    assert.equal(seen.length, 2);
    assert.deepEqual(waits(lines), [50]);
  });

  it('retries a 429 on POST too: it was refused before anything happened', async () => {
    script = [json(429, { errcode: 'M_LIMIT_EXCEEDED', retry_after_ms: 1 }), json(200, { room_id: '!r:hs' })];
    assert.deepEqual(value(await client().request('POST', '/createRoom', { body: {} })), { room_id: '!r:hs' });
    assert.equal(seen.length, 2);
  });

  it('honours a Retry-After header when the body has no retry_after_ms', async () => {
    script = [json(429, { errcode: 'M_LIMIT_EXCEEDED', error: 'slow down' }, { 'retry-after': '0' }), json(200, {})];
    const lines: Record<string, unknown>[] = [];
    value(await client({ logLines: lines }).request('GET', '/x'));
    assert.equal(seen.length, 2);
    assert.deepEqual(waits(lines), [0], 'the header said 0 s; the fallback back-off would wait at least 250 ms');
  });

  it('puts a Retry-After header into the failure body, and the body value wins over the header', async () => {
    script = [json(429, { errcode: 'M_LIMIT_EXCEEDED' }, { 'retry-after': '2' })];
    const error = failed(await client({ maxRetries: 0 }).request('GET', '/x'));
    assert.deepEqual(error.body, { errcode: 'M_LIMIT_EXCEEDED', retry_after_ms: 2000 });
    script = [json(429, { errcode: 'M_LIMIT_EXCEEDED', retry_after_ms: 7 }, { 'retry-after': '2' })];
    assert.deepEqual(failed(await client({ maxRetries: 0 }).request('GET', '/x')).body, { errcode: 'M_LIMIT_EXCEEDED', retry_after_ms: 7 });
  });

  it('retries a 5xx on GET with back-off, then succeeds', async () => {
    script = [json(500, { errcode: 'M_UNKNOWN' }), json(502, {}), json(200, { fine: true })];
    const lines: Record<string, unknown>[] = [];
    assert.deepEqual(value(await client({ logLines: lines }).request('GET', '/x')), { fine: true });
    assert.equal(seen.length, 3);
    const [first, second] = waits(lines) as number[];
    assert.ok(first! >= 250 && first! <= 500, `first back-off ${first}`);
    assert.ok(second! >= 500 && second! <= 1000, `second back-off ${second}`);
  });

  it('does not retry a 5xx on POST, which might have acted', async () => {
    script = [json(500, { errcode: 'M_UNKNOWN', error: 'Internal server error' }), json(200, {})];
    const error = failed(await client().request('POST', '/_matrix/client/v3/join/x', { body: {} }));
    assert.equal(seen.length, 1);
    assert.equal(error.status, 500);
    assert.equal(error.code, 'M_UNKNOWN');
  });

  it('retries a 5xx on POST marked idempotent', async () => {
    script = [json(503, {}), json(200, { ok: true })];
    assert.deepEqual(value(await client().request('POST', '/x', { body: {}, idempotent: true })), { ok: true });
    assert.equal(seen.length, 2);
  });

  it('gives up on a 5xx after maxRetries retries', async () => {
    script = [json(500, { errcode: 'M_UNKNOWN' })];
    const error = failed(await client({ maxRetries: 1 }).request('GET', '/x'));
    assert.equal(seen.length, 2);
    assert.equal(error.status, 500);
  });

  it('answers a 404 at once with the errcode and status from the body', async () => {
    script = [json(404, { errcode: 'M_NOT_FOUND', error: 'User not found' })];
    const error = failed(await client().request('GET', path`/_synapse/admin/v2/users/${'@ghost:hs'}`));
    assert.equal(seen.length, 1);
    assert.equal(error.status, 404);
    assert.equal(error.errcode, 'M_NOT_FOUND');
    assert.equal(error.code, 'M_NOT_FOUND');
    assert.equal(error.human, 'GET /_synapse/admin/v2/users/%40ghost%3Ahs: 404 M_NOT_FOUND User not found');
    assert.deepEqual(error.body, { errcode: 'M_NOT_FOUND', error: 'User not found' });
  });

  it('names a non-Matrix error by its status and shows the start of its text', async () => {
    script = [(_req, res) => { res.writeHead(403, { 'content-type': 'text/plain' }); res.end('Forbidden by proxy'); }];
    const error = failed(await client().request('GET', '/x'));
    assert.equal(error.code, 'HTTP_403');
    assert.equal(error.errcode, undefined);
    assert.equal(error.human, 'GET /x: 403 Forbidden by proxy');
  });

  it('scrubs tokens out of error text', async () => {
    script = [json(400, { errcode: 'M_BAD', error: 'bad url /x?access_token=s3cr3t and header Bearer s3cr3t' })];
    const error = failed(await client().request('GET', '/x'));
    assert.doesNotMatch(error.human, /s3cr3t/);
    assert.match(error.human, /access_token=\[redacted\]/);
  });

  it('stops retrying a persistent 429 after maxRetries * 4 retries', async () => {
    script = [json(429, { errcode: 'M_LIMIT_EXCEEDED', retry_after_ms: 1 })];
    const error = failed(await client({ maxRetries: 1 }).request('GET', '/x'));
    assert.equal(seen.length, 5, 'one request and four retries');
    assert.equal(error.status, 429);
    assert.equal(error.code, 'M_LIMIT_EXCEEDED');
  });

  it('does not retry a 429 at all with maxRetries 0', async () => {
    script = [json(429, { errcode: 'M_LIMIT_EXCEEDED', retry_after_ms: 1 })];
    failed(await client({ maxRetries: 0 }).request('GET', '/x'));
    assert.equal(seen.length, 1);
  });
});

describe('HomeserverHttp: no answer', () => {
  it('fails with E_TIMEOUT when the server never answers', async () => {
    script = [never];
    const error = failed(await client({ timeoutMs: 200, maxRetries: 0 }).request('GET', '/slow'));
    assert.equal(error.code, 'E_TIMEOUT');
    assert.equal(error.status, 0);
    assert.equal(seen.length, 1);
    assert.match(error.human, /^GET \/slow: no answer within/);
  });

  it('fails with E_CANCELLED for an already aborted signal, without a request', async () => {
    const abort = new AbortController();
    abort.abort();
    const error = failed(await client().request('GET', '/x', { signal: abort.signal }));
    assert.equal(error.code, 'E_CANCELLED');
    assert.equal(error.status, 0);
    assert.equal(seen.length, 0);
  });

  it('fails with E_CANCELLED when the signal aborts mid-request, and does not retry', async () => {
    const abort = new AbortController();
    script = [() => abort.abort()];
    const error = failed(await client().request('GET', '/x', { signal: abort.signal }));
    assert.equal(error.code, 'E_CANCELLED');
    assert.equal(seen.length, 1);
  });

  it('fails with E_CANCELLED when the signal aborts while waiting to retry',
    async () => {
      const abort = new AbortController();
      script = [(req, res) => {
        json(429, { errcode: 'M_LIMIT_EXCEEDED', retry_after_ms: 60_000 })(req, res);
        setImmediate(() => abort.abort());
      }];
      const error = failed(await client().request('GET', '/x', { signal: abort.signal }));
      assert.equal(seen.length, 1);
      assert.equal(error.code, 'E_CANCELLED');
    });

  it('fails with E_NETWORK when nothing listens, retrying idempotent requests', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const lines: Record<string, unknown>[] = [];
    const error = failed(await client({ baseUrl: `http://127.0.0.1:${port}`, maxRetries: 1, logLines: lines }).request('GET', '/x'));
    assert.equal(error.code, 'E_NETWORK');
    assert.equal(error.status, 0);
    assert.match(error.human, /cannot reach the homeserver \(ECONNREFUSED\)/);
    assert.equal(waits(lines).length, 1, 'one retry');
  });
});
