import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { createLogger, scrubSecrets } from '../../src/log.ts';

/** A logger whose lines land in an array, parsed. */
function capture(level = 'info'): { log: ReturnType<typeof createLogger>; lines: Record<string, unknown>[]; raw: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk.toString('utf8'));
      done();
    },
  });
  const log = createLogger({ level, stream });
  return {
    log,
    get lines() {
      return chunks.join('').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    raw: () => chunks.join(''),
  };
}

describe('createLogger redaction', () => {
  it('redacts secrets at the top level', () => {
    const c = capture();
    c.log.info({ as_token: 'AS-SECRET', hs_token: 'HS-SECRET', access_token: 'AT-SECRET', password: 'PW-SECRET', user: '@a:hs' }, 'hello');
    const [line] = c.lines;
    assert.equal(line!.as_token, '[redacted]');
    assert.equal(line!.hs_token, '[redacted]');
    assert.equal(line!.access_token, '[redacted]');
    assert.equal(line!.password, '[redacted]');
    assert.equal(line!.user, '@a:hs', 'other fields stay');
    assert.equal(line!.msg, 'hello');
    assert.doesNotMatch(c.raw(), /SECRET/);
  });

  it('redacts secrets one and two levels down', () => {
    const c = capture();
    c.log.info({
      registration: { as_token: 'AS-SECRET', hs_token: 'HS-SECRET', id: 'steward' },
      request: { headers: { authorization: 'Bearer AUTH-SECRET', host: 'hs' }, body: { password: 'PW-SECRET' } },
    }, 'nested');
    const [line] = c.lines as [{ registration: Record<string, unknown>; request: { headers: Record<string, unknown>; body: Record<string, unknown> } }];
    assert.equal(line.registration.as_token, '[redacted]');
    assert.equal(line.registration.hs_token, '[redacted]');
    assert.equal(line.registration.id, 'steward');
    assert.equal(line.request.headers.authorization, '[redacted]');
    assert.equal(line.request.headers.host, 'hs');
    assert.equal(line.request.body.password, '[redacted]');
    assert.doesNotMatch(c.raw(), /SECRET/);
  });

  it('redacts the camel-case spellings and signing keys too', () => {
    const c = capture();
    c.log.warn({ asToken: 'A-SECRET', hsToken: 'H-SECRET', accessToken: 'T-SECRET', signing_key: 'K-SECRET', core: { registration: { asToken: 'B-SECRET' } } }, 'camel');
    assert.doesNotMatch(c.raw(), /SECRET/);
    assert.equal(c.lines.length, 1);
  });

  it('redacts in child loggers bindings as well as in calls', () => {
    const c = capture();
    c.log.child({ module: 'x', token: 'CHILD-SECRET' }).info({ password: 'PW-SECRET' }, 'child');
    const [line] = c.lines;
    assert.equal(line!.module, 'x');
    assert.equal(line!.token, '[redacted]');
    assert.equal(line!.password, '[redacted]');
    assert.doesNotMatch(c.raw(), /SECRET/);
  });

  it('respects the level', () => {
    const c = capture('warn');
    c.log.info('quiet');
    c.log.warn('loud');
    assert.deepEqual(c.lines.map((l) => l.msg), ['loud']);
    assert.equal(c.lines[0]!.name, 'steward');
  });
});

describe('scrubSecrets', () => {
  it('removes access_token query values', () => {
    assert.equal(scrubSecrets('GET /sync?since=s1&access_token=syt_abc.123&x=1'), 'GET /sync?since=s1&access_token=[redacted]&x=1');
    assert.equal(scrubSecrets('url "http://hs/x?ACCESS_TOKEN=abc" end'), 'url "http://hs/x?ACCESS_TOKEN=[redacted]" end');
    assert.equal(scrubSecrets('a access_token=one b access_token=two'), 'a access_token=[redacted] b access_token=[redacted]');
  });

  it('removes Bearer tokens', () => {
    assert.equal(scrubSecrets('Authorization: Bearer syt_c3RldmFyZA_AbCdEf_0aB1cD'), 'Authorization: Bearer [redacted]');
    assert.equal(scrubSecrets('header Bearer abc+/=~.-_x, next'), 'header Bearer [redacted], next');
  });

  it('removes X-Matrix signatures', () => {
    assert.equal(scrubSecrets('X-Matrix origin="a",key="ed25519:k",sig="c2lnbmF0dXJl"'), 'X-Matrix origin="a",key="ed25519:k",sig="[redacted]"');
  });

  it('leaves text without secrets alone', () => {
    const text = 'GET /_matrix/client/v3/rooms/!r:hs/messages?dir=b: 404 M_NOT_FOUND';
    assert.equal(scrubSecrets(text), text);
  });
});
