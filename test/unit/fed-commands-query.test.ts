import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CommandContext } from '../../src/commands/context.ts';
import { parseInput } from '../../src/commands/parse.ts';
import { fedQueryCommand } from '../../src/federation-commands/fed-commands.ts';
import { parseQuery, roomReply, runQuery, terminalReply, truncateJson, wirePath } from '../../src/federation-commands/query.ts';
import type { QueryAnswer } from '../../src/federation-commands/query.ts';
import type { FederationFailure } from '../../src/federation/federation-client.ts';
import type { FederationProvider } from '../../src/federation/federation-access.ts';
import { fail, ok, type Result } from '../../src/util/result.ts';
import { unwrap } from './federation-test-key.ts';

type Call = { destination: string; method: string; path: string; opts: Record<string, unknown> };

function client(answer: (call: Call) => Result<unknown, FederationFailure>, calls: Call[] = []) {
  return {
    request: (async (destination: string, method: string, path: string, opts: Record<string, unknown> = {}) => {
      const call = { destination, method, path, opts };
      calls.push(call);
      return answer(call);
    }) as never,
  };
}

function failure(status: number, errcode: string, error: string, body: unknown = { errcode, error }): Result<never, FederationFailure> {
  return { ok: false, error: { code: errcode, human: `GET x /p: ${status} ${errcode} ${error}`, log: 'l', status, errcode, body, destination: 'x' } };
}

describe('fed query: input', () => {
  it('accepts /_matrix/ paths, GET by default, POST with --json', () => {
    assert.deepEqual(unwrap(parseQuery('example.org', '/_matrix/federation/v1/version', undefined, undefined)), {
      server: 'example.org', method: 'GET', path: '/_matrix/federation/v1/version', body: undefined,
    });
    assert.deepEqual(unwrap(parseQuery('example.org:8448', '/_matrix/key/v2/query', undefined, '{"server_keys":{}}')), {
      server: 'example.org:8448', method: 'POST', path: '/_matrix/key/v2/query', body: { server_keys: {} },
    });
    assert.equal(unwrap(parseQuery('a.b', '/_matrix/x', 'put', '{}')).method, 'PUT');
  });

  it('refuses other paths, dot segments, unknown methods, bad JSON, a GET with a body and bad server names', () => {
    const cases: Array<[string, string, string | undefined, string | undefined, RegExp]> = [
      ['example.org', '/_synapse/admin/v1/users', undefined, undefined, /must start with \/_matrix\//],
      ['example.org', 'federation/v1/version', undefined, undefined, /must start with \/_matrix\//],
      ['example.org', '/_matrix/../_synapse/admin/v1/users', undefined, undefined, /"\." or "\.\." segments/],
      ['example.org', '/_matrix/%2E%2E/_synapse/admin', undefined, undefined, /"\." or "\.\." segments/],
      ['example.org', '/_matrix/federation/v1/version', 'DELETE', undefined, /--method must be one of GET, POST, PUT/],
      ['example.org', '/_matrix/x', 'POST', '{nope', /--json is not valid JSON/],
      ['example.org', '/_matrix/x', 'GET', '{}', /A GET request has no body/],
      ['not a server', '/_matrix/x', undefined, undefined, /is not a server name/],
    ];
    for (const [server, path, method, json, message] of cases) {
      const r = parseQuery(server, path, method, json);
      assert.ok(!r.ok, path);
      assert.equal(r.error.code, 'E_USAGE');
      assert.match(r.error.human, message);
    }
  });

  it('percent-encodes what cannot go on the request line, keeps what is already encoded', () => {
    assert.equal(wirePath('/_matrix/federation/v1/query/directory?room_alias=#room:example.org'), '/_matrix/federation/v1/query/directory?room_alias=%23room:example.org');
    assert.equal(wirePath('/_matrix/x?q=a b&u=é'), '/_matrix/x?q=a%20b&u=%C3%A9');
    assert.equal(wirePath('/_matrix/x/%21abc%3Aexample.org'), '/_matrix/x/%21abc%3Aexample.org');
  });
});

describe('fed query: answers', () => {
  const request = unwrap(parseQuery('peer.test', '/_matrix/federation/v1/version', undefined, undefined));

  it('sends the request as parsed; PUT/POST are not retried, GET may be', async () => {
    const calls: Call[] = [];
    const c = client(() => ok({ server: { name: 'Synapse' } }), calls);
    const answer = unwrap(await runQuery(c, request));
    assert.deepEqual(answer.value, { server: { name: 'Synapse' } });
    assert.equal(answer.bytes, JSON.stringify({ server: { name: 'Synapse' } }).length);
    await runQuery(c, unwrap(parseQuery('peer.test', '/_matrix/x', 'PUT', '{"a":1}')));
    assert.deepEqual(calls.map((x) => [x.destination, x.method, x.path, x.opts['body'], x.opts['retry']]), [
      ['peer.test', 'GET', '/_matrix/federation/v1/version', undefined, undefined],
      ['peer.test', 'PUT', '/_matrix/x', { a: 1 }, false],
    ]);
  });

  it('reports error answers as failures with the errcode, the error and extra fields', async () => {
    const r = await runQuery(client(() => failure(429, 'M_LIMIT_EXCEEDED', 'Too many requests', { errcode: 'M_LIMIT_EXCEEDED', error: 'Too many requests', retry_after_ms: 2000 })), request);
    assert.ok(!r.ok);
    assert.equal(r.error.code, 'M_LIMIT_EXCEEDED');
    assert.match(r.error.human, /429 M_LIMIT_EXCEEDED Too many requests \(after \d+ ms\)\n\{"retry_after_ms":2000\}/);
    const refused = await runQuery(client(() => ({ ok: false, error: { code: 'E_ADDRESS_REFUSED', human: 'GET 10.0.0.1 /_matrix/x: address 10.0.0.1 is private', log: 'l', status: 0, errcode: undefined, body: undefined, destination: '10.0.0.1' } })), request);
    assert.ok(!refused.ok);
    assert.equal(refused.error.code, 'E_ADDRESS_REFUSED');
    assert.doesNotMatch(refused.error.human, /\n/);
  });

  it('room reply: summary plus formatted JSON cut at a line end; terminal: the whole JSON only', () => {
    const big = { items: Array.from({ length: 400 }, (_, i) => ({ i, s: '<&>"' })) };
    const answer: QueryAnswer = { request, value: big, elapsedMs: 12, bytes: 9999 };
    const room = roomReply(answer, 1000);
    assert.match(room.text, /^GET peer\.test \/_matrix\/federation\/v1\/version → OK in 12 ms, 9\.8 KiB\n\{/);
    assert.match(room.text, /Showing \d+ of \d+ characters; the terminal form/);
    assert.ok(room.html.includes('<pre><code class="language-json">{\n  &quot;items&quot;'));
    assert.ok(!room.html.includes('"<&>'));
    assert.ok(room.html.length < 10_000);
    const terminal = terminalReply(answer);
    assert.deepEqual(JSON.parse(terminal.text), big);
    const small = roomReply({ request, value: { a: 1 }, elapsedMs: 1, bytes: 7 });
    assert.equal(small.text, 'GET peer.test /_matrix/federation/v1/version → OK in 1 ms, 7 B\n{\n  "a": 1\n}');
    assert.deepEqual(truncateJson('{\n  "a": 1\n}', 100), { text: '{\n  "a": 1\n}', truncated: false });
  });

  it('the command: needs the federation setup, refuses non-/_matrix paths before any request', async () => {
    const calls: Call[] = [];
    let provided: Result<never> | null = null;
    const federation: FederationProvider = {
      get: async () => provided ?? ok({ client: client(() => ok({ ok: true }), calls) as never, keyStore: null as never, keys: null as never }),
      close: () => {},
    };
    const ctx = (frontEnd: 'room' | 'terminal') => ({ frontEnd, federation }) as unknown as CommandContext;
    const exec = (frontEnd: 'room' | 'terminal', words: string[]) => fedQueryCommand.execute(ctx(frontEnd), unwrap(parseInput(fedQueryCommand, words)));

    const refused = await exec('room', ['peer.test', '/_synapse/admin/v1/server_version']);
    assert.ok(!refused.ok);
    assert.match(refused.error.human, /must start with \/_matrix\//);
    assert.equal(calls.length, 0);

    const room = unwrap(await exec('room', ['peer.test', '/_matrix/federation/v1/version']));
    assert.ok(room.kind === 'reply' && room.text.startsWith('GET peer.test /_matrix/federation/v1/version → OK in'));
    const terminal = unwrap(await exec('terminal', ['peer.test', '/_matrix/federation/v1/version', '--json', '{"b": [1]}', '--method', 'PUT']));
    assert.ok(terminal.kind === 'reply');
    assert.deepEqual(JSON.parse(terminal.text), { ok: true });
    assert.deepEqual(calls.at(-1)?.opts['body'], { b: [1] });

    provided = fail('E_NO_SIGNING_KEY', 'Federation needs Synapse\'s signing key: set federation.signing_key_path');
    const noKey = await exec('room', ['peer.test', '/_matrix/federation/v1/version']);
    assert.ok(!noKey.ok);
    assert.equal(noKey.error.code, 'E_NO_SIGNING_KEY');
  });
});
