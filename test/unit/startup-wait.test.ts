import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import net from 'node:net';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { HomeserverHttp } from '../../src/homeserver/http.ts';
import { waitForHomeserver } from '../../src/homeserver/wait-for-homeserver.ts';
import { createLogger } from '../../src/log.ts';
import { listenFailure } from '../../src/service.ts';
import { freePort } from '../rig/ports.ts';

function capture(): { log: ReturnType<typeof createLogger>; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger({ level: 'debug', stream }), lines };
}

function http(base: string, log: ReturnType<typeof createLogger>): HomeserverHttp {
  return new HomeserverHttp({ baseUrl: base, token: 'as-token', timeoutMs: 5000, maxRetries: 3, log });
}

const servers: Server[] = [];
after(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
});

function serve(port: number, handler: (url: string) => { status: number; body: unknown }): Promise<Server> {
  const server = createServer((req, res) => {
    const { status, body } = handler(req.url ?? '');
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  servers.push(server);
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

describe('waitForHomeserver', () => {
  it('waits for a homeserver that starts late, logging each retry, and then goes on', async () => {
    const port = await freePort();
    const { log, lines } = capture();
    let started = false;
    // Start the server once Steward has logged two failed attempts (no timing assumptions).
    const watcher = setInterval(() => {
      if (!started && lines.filter((l) => String(l.msg).includes('not reachable yet')).length >= 2) {
        started = true;
        void serve(port, () => ({ status: 200, body: { versions: ['v1.11'] } }));
      }
    }, 5);
    const result = await waitForHomeserver(http(`http://127.0.0.1:${port}`, log), { waitMs: 60_000, log, firstDelayMs: 20, maxDelayMs: 100 });
    clearInterval(watcher);
    assert.ok(result.ok, JSON.stringify(result));
    assert.deepEqual(result.value.versions, ['v1.11']);
    assert.ok(result.value.attempts >= 3);
    const retries = lines.filter((l) => String(l.msg).includes('not reachable yet'));
    assert.ok(retries.length >= 2);
    assert.ok(retries.every((l) => typeof l.retryInMs === 'number' && l.url === `http://127.0.0.1:${port}`));
    // Backoff grows and is capped.
    const delays = retries.map((l) => l.retryInMs as number);
    assert.equal(delays[0], 20);
    assert.equal(delays[1], 40);
    assert.ok(delays.every((d) => d <= 100));
    assert.ok(lines.some((l) => l.msg === 'the homeserver answers now'));
  });

  it('says the homeserver is not reachable (not something about the registration) when it never comes', async () => {
    const port = await freePort();
    const { log } = capture();
    const result = await waitForHomeserver(http(`http://127.0.0.1:${port}`, log), { waitMs: 100, log, firstDelayMs: 20, maxDelayMs: 40 });
    assert.ok(!result.ok);
    assert.equal(result.error.code, 'E_HOMESERVER_UNREACHABLE');
    assert.match(result.error.human, new RegExp(`The homeserver at http://127\\.0\\.0\\.1:${port} is not reachable: cannot reach the homeserver \\(ECONNREFUSED\\)`));
    assert.match(result.error.human, /homeserver\.startup_wait_seconds/);
    assert.doesNotMatch(result.error.human, /registration/);
  });

  it('makes a single attempt when waitMs is 0 (the terminal)', async () => {
    const port = await freePort();
    const { log, lines } = capture();
    const result = await waitForHomeserver(http(`http://127.0.0.1:${port}`, log), { waitMs: 0, log });
    assert.ok(!result.ok);
    assert.equal(result.error.code, 'E_HOMESERVER_UNREACHABLE');
    assert.equal(lines.filter((l) => String(l.msg).includes('not reachable yet')).length, 0);
  });

  it('keeps waiting through 502s of a proxy in front of a starting Synapse', async () => {
    const port = await freePort();
    let calls = 0;
    await serve(port, () => (++calls < 3 ? { status: 502, body: { error: 'bad gateway' } } : { status: 200, body: { versions: ['v1.1'] } }));
    const { log } = capture();
    const result = await waitForHomeserver(http(`http://127.0.0.1:${port}`, log), { waitMs: 60_000, log, firstDelayMs: 10, maxDelayMs: 20 });
    assert.ok(result.ok);
    assert.equal(result.value.attempts, 3);
  });

  it('does not wait when something that is not a Matrix client API answers (404)', async () => {
    const port = await freePort();
    await serve(port, () => ({ status: 404, body: { errcode: 'M_UNRECOGNIZED' } }));
    const { log } = capture();
    const result = await waitForHomeserver(http(`http://127.0.0.1:${port}`, log), { waitMs: 60_000, log, firstDelayMs: 10 });
    assert.ok(!result.ok);
    assert.equal(result.error.code, 'E_HOMESERVER');
    assert.match(result.error.human, /answered 404/);
  });
});

describe('listenFailure', () => {
  it('names the port and the key to change when the port is taken', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
    const port = (blocker.address() as net.AddressInfo).port;
    const err = await new Promise<Error>((resolve) => {
      const second = net.createServer();
      second.once('error', resolve);
      second.listen(port, '127.0.0.1');
    });
    await new Promise<void>((resolve) => blocker.close(() => resolve()));
    assert.match(listenFailure(err, '127.0.0.1', port), new RegExp(`port ${port} is taken \\(another appservice\\?\\) — set appservice\\.port`));
  });
});
