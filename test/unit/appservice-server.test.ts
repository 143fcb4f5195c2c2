import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { createAppserviceApp, listen } from '../../src/appservice/server.ts';
import { createLogger } from '../../src/log.ts';
import { openDatabase, type Db } from '../../src/store/database.ts';
import { Inbox, type MatrixEvent } from '../../src/store/inbox.ts';

const HS_TOKEN = 'hs-secret-token';

interface Harness {
  db: Db;
  inbox: Inbox;
  server: Server;
  base: string;
  taken: number;
}

let h: Harness;

async function startHarness(extra: { allowQueryToken?: boolean; logLines?: string[] } = {}): Promise<Harness> {
  const db = openDatabase(':memory:');
  const inbox = new Inbox(db);
  const app = createAppserviceApp({
    hsToken: HS_TOKEN,
    inbox,
    log: extra.logLines ? createLogger({ level: 'warn', stream: new Writable({ write(chunk, _enc, done) { extra.logLines!.push(String(chunk)); done(); } }) }) : createLogger({ level: 'silent' }),
    // Keep messages and receipts; drop typing notifications and anything marked unwanted.
    wants: (event: MatrixEvent, kind) => event.type !== 'm.typing' && event.content.unwanted !== true && (kind === 'pdu' || event.type === 'm.receipt'),
    onTaken: () => {
      h.taken += 1;
    },
    health: () => ({ version: 'test' }),
    allowQueryToken: extra.allowQueryToken,
  });
  const server = await listen(app, 0, '127.0.0.1');
  const { port } = server.address() as AddressInfo;
  return { db, inbox, server, base: `http://127.0.0.1:${port}`, taken: 0 };
}

async function stopHarness(old: Harness): Promise<void> {
  old.server.closeAllConnections();
  await new Promise<void>((resolve) => old.server.close(() => resolve()));
  old.db.close();
}

beforeEach(async () => {
  h = await startHarness();
});

afterEach(async () => {
  await stopHarness(h);
});

function message(id: string, body = 'hi', room = '!admin:hs'): MatrixEvent {
  return { type: 'm.room.message', event_id: id, room_id: room, sender: '@alice:hs', origin_server_ts: 1, content: { msgtype: 'm.text', body } };
}

function receipt(room = '!admin:hs'): MatrixEvent {
  return { type: 'm.receipt', room_id: room, content: { $e: { 'm.read': { '@alice:hs': { ts: 1 } } } } };
}

async function put(txnId: string, body: unknown, opts: { token?: string | null; query?: string; prefix?: string } = {}): Promise<{ status: number; json: unknown }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const token = opts.token === undefined ? HS_TOKEN : opts.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  const prefix = opts.prefix ?? '/_matrix/app/v1';
  const response = await fetch(`${h.base}${prefix}/transactions/${encodeURIComponent(txnId)}${opts.query ?? ''}`, {
    method: 'PUT',
    headers,
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, json: await response.json() };
}

function stored(): { kind: string; event: MatrixEvent }[] {
  return h.inbox.pending(1000).map(({ kind, event }) => ({ kind, event }));
}

function count(table: 'inbox' | 'as_transactions'): number {
  return (h.db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
}

describe('appservice transactions: authentication', () => {
  it('refuses a wrong token with 403 M_FORBIDDEN and stores nothing', async () => {
    const res = await put('1', { events: [message('$a')] }, { token: 'wrong' });
    assert.equal(res.status, 403);
    assert.equal((res.json as { errcode: string }).errcode, 'M_FORBIDDEN');
    assert.equal(count('inbox'), 0);
    assert.equal(count('as_transactions'), 0);
    assert.equal(h.taken, 0);
  });

  it('refuses a missing token with 403', async () => {
    const res = await put('1', { events: [message('$a')] }, { token: null });
    assert.equal(res.status, 403);
    assert.equal((res.json as { errcode: string }).errcode, 'M_FORBIDDEN');
    assert.equal(count('inbox'), 0);
  });

  it('refuses the hs_token in the query string by default, with a message that says why, and never logs it', async () => {
    await stopHarness(h);
    const lines: string[] = [];
    h = await startHarness({ logLines: lines });
    const res = await put('1', { events: [message('$a')] }, { token: null, query: `?access_token=${HS_TOKEN}` });
    assert.equal(res.status, 403);
    assert.equal((res.json as { errcode: string }).errcode, 'M_FORBIDDEN');
    assert.match((res.json as { error: string }).error, /query string.*allow_query_token/s);
    assert.equal(count('inbox'), 0);
    assert.equal(h.taken, 0);
    assert.ok(lines.some((l) => l.includes('query string')), lines.join('\n'));
    assert.ok(!lines.join('\n').includes(HS_TOKEN), 'the token must not be logged');
    // The header still works on the same server.
    assert.equal((await put('2', { events: [message('$b')] })).status, 200);
  });

  it('with appservice.allow_query_token, refuses a wrong legacy access_token query parameter and accepts the right one', async () => {
    await stopHarness(h);
    h = await startHarness({ allowQueryToken: true });
    assert.equal((await put('1', { events: [message('$a')] }, { token: null, query: '?access_token=nope' })).status, 403);
    assert.equal(count('inbox'), 0);
    assert.equal((await put('1', { events: [message('$a')] }, { token: null, query: `?access_token=${HS_TOKEN}` })).status, 200);
    assert.equal(count('inbox'), 1);
  });

  it('protects the user and room queries and the ping too', async () => {
    for (const path of ['/_matrix/app/v1/users/%40a%3Ahs', '/_matrix/app/v1/rooms/%23a%3Ahs']) {
      assert.equal((await fetch(`${h.base}${path}`)).status, 403, path);
      const res = await fetch(`${h.base}${path}`, { headers: { authorization: `Bearer ${HS_TOKEN}` } });
      assert.equal(res.status, 404, path);
      assert.equal(((await res.json()) as { errcode: string }).errcode, 'M_NOT_FOUND');
    }
    assert.equal((await fetch(`${h.base}/_matrix/app/v1/ping`, { method: 'POST', body: '{}' })).status, 403);
    assert.equal((await fetch(`${h.base}/_matrix/app/v1/ping`, { method: 'POST', body: '{}', headers: { authorization: `Bearer ${HS_TOKEN}` } })).status, 200);
  });
});

describe('appservice transactions: storing and deduplicating', () => {
  it('answers a good transaction with 200 {} and stores its events in order', async () => {
    const res = await put('1', { events: [message('$a', 'one'), message('$b', 'two')] });
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, {});
    assert.deepEqual(stored(), [
      { kind: 'pdu', event: message('$a', 'one') },
      { kind: 'pdu', event: message('$b', 'two') },
    ]);
    assert.equal(h.taken, 1);
  });

  it('accepts the legacy unprefixed path', async () => {
    const res = await put('1', { events: [message('$a')] }, { prefix: '' });
    assert.equal(res.status, 200);
    assert.equal(count('inbox'), 1);
  });

  it('takes the same txnId and body only once', async () => {
    const body = { events: [message('$a')], ephemeral: [receipt()] };
    assert.equal((await put('7', body)).status, 200);
    const again = await put('7', body);
    assert.equal(again.status, 200);
    assert.deepEqual(again.json, {});
    assert.equal(count('inbox'), 2, 'one pdu and one receipt, not twice each');
    assert.equal(count('as_transactions'), 1);
    assert.equal(h.taken, 1, 'a repeated transaction wakes nobody');
  });

  it('stores a reused txnId with a different body (Synapse restarted and counts from 1 again)', async () => {
    assert.equal((await put('1', { events: [message('$a')] })).status, 200);
    assert.equal((await put('1', { events: [message('$b')] })).status, 200);
    assert.deepEqual(stored().map((s) => s.event.event_id), ['$a', '$b']);
    assert.equal(count('as_transactions'), 2);
    assert.equal(h.taken, 2);
  });

  it('stores an event that arrives in two different transactions once', async () => {
    assert.equal((await put('1', { events: [message('$a')] })).status, 200);
    assert.equal((await put('2', { events: [message('$a'), message('$b')] })).status, 200);
    assert.deepEqual(stored().map((s) => s.event.event_id), ['$a', '$b']);
  });

  it('does not store events the wants filter rejects, and does not wake anyone for them', async () => {
    const unwanted: MatrixEvent = { ...message('$u'), content: { body: 'x', unwanted: true } };
    const typing: MatrixEvent = { type: 'm.typing', room_id: '!admin:hs', content: { user_ids: [] } };
    const presence: MatrixEvent = { type: 'm.presence', sender: '@alice:hs', content: { presence: 'online' } };
    const res = await put('1', { events: [unwanted], ephemeral: [typing, presence] });
    assert.equal(res.status, 200);
    assert.equal(count('inbox'), 0);
    assert.equal(h.taken, 0);
    assert.equal((await put('2', { events: [unwanted, message('$w')], ephemeral: [typing, receipt()] })).status, 200);
    assert.deepEqual(stored().map((s) => [s.kind, s.event.type]), [['pdu', 'm.room.message'], ['ephemeral', 'm.receipt']]);
    assert.equal(h.taken, 1);
  });

  it('skips entries that are not events', async () => {
    const res = await put('1', { events: [null, 42, 'x', { type: 'm.room.message' }, { type: 5, content: {} }, message('$ok')] });
    assert.equal(res.status, 200);
    assert.deepEqual(stored().map((s) => s.event.event_id), ['$ok']);
  });

  it('reads ephemeral events from the stable key', async () => {
    assert.equal((await put('1', { events: [], ephemeral: [receipt()] })).status, 200);
    assert.deepEqual(stored(), [{ kind: 'ephemeral', event: receipt() }]);
    assert.equal(h.taken, 1);
  });

  it('reads ephemeral events from the legacy MSC2409 key', async () => {
    assert.equal((await put('1', { events: [], 'de.sorunome.msc2409.ephemeral': [receipt('!x:hs')] })).status, 200);
    assert.deepEqual(stored(), [{ kind: 'ephemeral', event: receipt('!x:hs') }]);
  });

  it('stores ephemeral events once when both keys carry the same content', async () => {
    const ephemeral = [receipt('!one:hs'), receipt('!two:hs')];
    assert.equal((await put('1', { events: [], ephemeral, 'de.sorunome.msc2409.ephemeral': ephemeral })).status, 200);
    assert.deepEqual(stored().map((s) => s.event.room_id), ['!one:hs', '!two:hs']);
  });

  it('answers a transaction with no events and stores nothing, waking nobody', async () => {
    const res = await put('1', { events: [] });
    assert.equal(res.status, 200);
    assert.equal(count('inbox'), 0);
    assert.equal(h.taken, 0);
  });

  it('calls onTaken only when something new was stored', async () => {
    assert.equal((await put('1', { events: [message('$a')] })).status, 200);
    assert.equal(h.taken, 1);
    assert.equal((await put('2', { events: [message('$a')] })).status, 200);
    assert.equal(count('inbox'), 1);
    assert.equal(h.taken, 1, 'nothing new was stored, yet onTaken was called');
  });
});

describe('appservice transactions: malformed requests and other paths', () => {
  it('answers a body that is not JSON with 400 and stores nothing', async () => {
    const res = await put('1', '{"events": [');
    assert.equal(res.status, 400);
    assert.equal((res.json as { errcode: string }).errcode, 'M_NOT_JSON');
    assert.equal(count('as_transactions'), 0);
  });

  it('answers JSON without an events list with 400', async () => {
    for (const body of ['[]', 'null', '{"ephemeral": []}', '{"events": {}}']) {
      const res = await put('1', body);
      assert.equal(res.status, 400, body);
      assert.equal((res.json as { errcode: string }).errcode, 'M_BAD_JSON', body);
    }
    assert.equal(count('as_transactions'), 0);
  });

  it('answers /health without a token', async () => {
    const res = await fetch(`${h.base}/health`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 'ok', version: 'test' });
  });

  it('answers an unknown path with 404 M_UNRECOGNIZED', async () => {
    for (const [method, path] of [['GET', '/_matrix/app/v1/thirdparty/protocol/x'], ['POST', '/_matrix/app/v1/transactions/1'], ['GET', '/']]) {
      const res = await fetch(`${h.base}${path}`, { method: method!, headers: { authorization: `Bearer ${HS_TOKEN}` } });
      assert.equal(res.status, 404, `${method} ${path}`);
      assert.equal(((await res.json()) as { errcode: string }).errcode, 'M_UNRECOGNIZED');
    }
  });

  it('answers 500 and stores nothing when the inbox cannot store, so the homeserver sends it again', async () => {
    // The transaction key is written first; the event insert then fails inside the same SQL transaction.
    h.db.exec("CREATE TRIGGER full_disk BEFORE INSERT ON inbox BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END");
    const res = await put('1', { events: [message('$a')] });
    assert.equal(res.status, 500);
    assert.equal((res.json as { errcode: string }).errcode, 'M_UNKNOWN');
    assert.equal(count('as_transactions'), 0, 'the transaction key rolled back with the failed insert');
    assert.equal(h.taken, 0);
  });
});
