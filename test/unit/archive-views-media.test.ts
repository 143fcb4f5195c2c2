import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { createArchiveViews, type ArchiveViewSet } from '../../src/archive/views/archive-views.ts';
import { fileNameFrom } from '../../src/archive/views/media-store.ts';
import { HomeserverHttp } from '../../src/homeserver/http.ts';
import { createLogger } from '../../src/log.ts';
import { DAY1, MINUTE, RoomFixture } from './archive-views-fixture.ts';

const log = createLogger({ level: 'silent', stream: new Writable({ write: (_c, _e, cb) => cb() }) });
const signal = new AbortController().signal;
const A = '@alice:hs.test';
const CAT = Buffer.from('pretend this is a PNG');
const ENC = Buffer.from('ciphertext bytes');
const BIG = Buffer.alloc(3 * 1024 * 1024, 7);
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('archive views: media', () => {
  let out: string;
  let server: Server;
  let http: HomeserverHttp;
  let views: ArchiveViewSet;
  let r1: RoomFixture;
  let r2: RoomFixture;
  const downloads: string[] = [];
  const auth = new Set<string>();
  let lateAvailable = false;

  before(async () => {
    server = createServer((req, res) => {
      auth.add(String(req.headers.authorization));
      const url = new URL(req.url!, 'http://x');
      const info = /^\/_synapse\/admin\/v1\/media\/hs.test\/(\w+)$/.exec(url.pathname);
      if (info) {
        const id = info[1]!;
        if (id === 'cat') return json(res, 200, { media_info: { media_type: 'image/png', upload_name: 'cat.png', media_length: CAT.length, sha256: sha(CAT) } });
        if (id === 'lying') return json(res, 200, { media_info: { sha256: sha(Buffer.from('other')) } });
        return json(res, 404, { errcode: 'M_NOT_FOUND', error: 'Unknown media' });
      }
      const dl = /^\/_matrix\/client\/v1\/media\/download\/hs.test\/(\w+)$/.exec(url.pathname);
      const id = dl?.[1];
      if (id) downloads.push(id);
      const body = id === 'cat' || id === 'cat2' || id === 'lying' ? CAT : id === 'enc' ? ENC : id === 'big' ? BIG : id === 'late' && lateAvailable ? CAT : null;
      if (id === 'late' && !lateAvailable) return json(res, 502, { errcode: 'M_UNKNOWN', error: 'remote unreachable' });
      if (!body) return json(res, 404, { errcode: 'M_NOT_FOUND', error: 'Not found' });
      res.writeHead(200, { 'content-type': id === 'enc' ? 'application/octet-stream' : 'image/png', 'content-disposition': `inline; filename="${id}.bin"`, 'content-length': body.length });
      res.end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    http = new HomeserverHttp({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 'as-token', timeoutMs: 5000, maxRetries: 0, log });
    out = mkdtempSync(join(tmpdir(), 'archive-views-media-'));
    r1 = new RoomFixture(out, '!m1:hs.test');
    r2 = new RoomFixture(out, '!m2:hs.test');
    r1.append(
      r1.event('m.room.member', A, { membership: 'join', displayname: 'Alice', avatar_url: 'mxc://hs.test/cat' }, DAY1, { stateKey: A }),
      r1.event('m.room.message', A, { msgtype: 'm.image', body: 'cat.png', url: 'mxc://hs.test/cat', info: { thumbnail_url: 'mxc://hs.test/cat2' } }, DAY1 + MINUTE),
      r1.event('m.room.message', A, { msgtype: 'm.file', body: 'secret.pdf', file: { url: 'mxc://hs.test/enc', key: { k: 'x' }, iv: 'y', hashes: { sha256: 'z' }, v: 'v2' } }, DAY1 + 2 * MINUTE),
      r1.event('m.room.message', A, { msgtype: 'm.video', body: 'huge.mp4', url: 'mxc://hs.test/big' }, DAY1 + 3 * MINUTE),
      r1.event('m.room.message', A, { msgtype: 'm.image', body: 'gone.png', url: 'mxc://hs.test/late' }, DAY1 + 4 * MINUTE),
      r1.event('m.room.message', A, { msgtype: 'm.image', body: 'lie.png', url: 'mxc://hs.test/lying' }, DAY1 + 5 * MINUTE),
      r1.event('m.room.message', A, { msgtype: 'm.image', body: 'deleted.png', url: 'mxc://hs.test/deleted' }, DAY1 + 6 * MINUTE),
    );
    r2.append(r2.event('m.room.message', A, { msgtype: 'm.image', body: 'same cat', url: 'mxc://hs.test/cat' }, DAY1));
    const v = createArchiveViews({ out, media: true, http, log, mediaMaxBytes: 1024 * 1024 });
    assert.ok(v.ok);
    views = v.value;
  });

  after(async () => {
    views.close();
    rmSync(out, { recursive: true, force: true });
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('downloads every referenced mxc once, content-addressed, and reports failures per item', async () => {
    const s1 = await views.roomAppended(r1.room, [], signal);
    assert.ok(s1.ok);
    await views.runFinished();
    const failed = new Map(s1.value.itemFailures.map((f) => [f.item, f.failure.code]));
    assert.deepEqual(failed, new Map([['mxc://hs.test/big', 'E_MEDIA_TOO_LARGE'], ['mxc://hs.test/deleted', 'M_NOT_FOUND'], ['mxc://hs.test/late', 'M_UNKNOWN'], ['mxc://hs.test/lying', 'E_MEDIA_HASH']]));
    const s2 = await views.roomAppended(r2.room, [], signal);
    assert.ok(s2.ok);
    await views.runFinished();
    assert.deepEqual(s2.value.itemFailures, []);
    // cat in both rooms, once; cat2 has the same bytes: one file.
    assert.equal(downloads.filter((d) => d === 'cat').length, 1);
    const blob = join(out, 'media', sha(CAT).slice(0, 2), sha(CAT));
    assert.deepEqual(readFileSync(blob), CAT);
    assert.equal(statSync(blob).mode & 0o777, 0o600);
    assert.equal(statSync(join(out, 'media', sha(CAT).slice(0, 2))).mode & 0o777, 0o700);
    assert.deepEqual(readFileSync(join(out, 'media', sha(ENC).slice(0, 2), sha(ENC))), ENC);
    assert.deepEqual(readdirSync(join(out, 'media', '.tmp')), []);
    assert.deepEqual([...auth], ['Bearer as-token']);
  });

  it('records type, name and the encrypted flag, and links the files from the markdown', () => {
    const records = readFileSync(join(out, 'media', 'index.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const byMxc = new Map(records.map((r) => [r.mxc, r]));
    assert.deepEqual(byMxc.get('mxc://hs.test/cat'), { mxc: 'mxc://hs.test/cat', sha256: sha(CAT), size: CAT.length, media_type: 'image/png', upload_name: 'cat.png', encrypted: false });
    assert.deepEqual(byMxc.get('mxc://hs.test/enc'), { mxc: 'mxc://hs.test/enc', sha256: sha(ENC), size: ENC.length, media_type: 'application/octet-stream', upload_name: 'enc.bin', encrypted: true });
    const md = readFileSync(r1.mdPath('2026-11-28'), 'utf8');
    assert.ok(md.includes(`[image: cat.png](../../../../media/${sha(CAT).slice(0, 2)}/${sha(CAT)})`), md);
    assert.ok(md.includes(`[file: secret.pdf](../../../../media/${sha(ENC).slice(0, 2)}/${sha(ENC)}) *(encrypted, stored as ciphertext)*`), md);
    assert.ok(md.includes('video: huge.mp4 (`mxc://hs.test/big`, not downloaded)'), md);
  });

  it('retries what failed on the next run (not what the server does not have) and re-renders the day that shows it', async () => {
    lateAvailable = true;
    // The job opens the views afresh for each run.
    views.close();
    const reopened = createArchiveViews({ out, media: true, http, log, mediaMaxBytes: 1024 * 1024 });
    assert.ok(reopened.ok);
    views = reopened.value;
    const before = downloads.length;
    const s = await views.roomAppended(r1.room, [], signal);
    assert.ok(s.ok);
    await views.runFinished();
    assert.deepEqual(s.value.itemFailures.map((f) => f.item).sort(), ['mxc://hs.test/big', 'mxc://hs.test/lying']);
    assert.deepEqual(downloads.slice(before).sort(), ['big', 'late', 'lying']);
    const md = readFileSync(r1.mdPath('2026-11-28'), 'utf8');
    assert.ok(md.includes(`[image: gone.png](../../../../media/${sha(CAT).slice(0, 2)}/${sha(CAT)})`), md);
  });

  it('keeps the media it has when archive.sqlite is rebuilt', async () => {
    views.close();
    rmSync(join(out, 'archive.sqlite'));
    const v = createArchiveViews({ out, media: true, http, log, mediaMaxBytes: 1024 * 1024 });
    assert.ok(v.ok);
    views = v.value;
    const before = downloads.length;
    await views.roomAppended(r1.room, [], signal);
    // What the server did not have is asked for once more: that memory lives only in the index.
    assert.deepEqual(downloads.slice(before).sort(), ['big', 'deleted', 'lying']);
    assert.ok(existsSync(r1.mdPath('2026-11-28')));
  });

  it('reads file names from Content-Disposition', () => {
    assert.equal(fileNameFrom('inline; filename="a b.png"'), 'a b.png');
    assert.equal(fileNameFrom("attachment; filename*=utf-8''caf%C3%A9.png"), 'café.png');
    assert.equal(fileNameFrom('attachment; filename=x.txt'), 'x.txt');
    assert.equal(fileNameFrom(null), null);
  });
});

function json(res: import('node:http').ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

describe('HomeserverHttp.stream (media downloads)', () => {
  let server: Server;
  let base: string;
  let answers: ((res: import('node:http').ServerResponse) => void)[];

  before(async () => {
    server = createServer((_req, res) => (answers.length > 1 ? answers.shift()! : answers[0]!)(res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  async function drain(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const c of body) parts.push(Buffer.from(c));
    return Buffer.concat(parts);
  }

  it('retries a 503 before the body and then streams it', async () => {
    answers = [(res) => json(res, 503, { errcode: 'M_UNKNOWN' }), (res) => { res.writeHead(200); res.end('bytes'); }];
    const http = new HomeserverHttp({ baseUrl: base, token: 't', timeoutMs: 2000, maxRetries: 2, log });
    const got = await http.stream('/x');
    assert.ok(got.ok);
    assert.equal((await drain(got.value.body)).toString(), 'bytes');
  });

  it('gives up on a transfer that stops sending, with a clear message', async () => {
    answers = [(res) => { res.writeHead(200); res.write('part'); }];
    const http = new HomeserverHttp({ baseUrl: base, token: 't', timeoutMs: 300, maxRetries: 0, log });
    const got = await http.stream('/x');
    assert.ok(got.ok);
    await assert.rejects(drain(got.value.body), /GET \/x: no data within/);
  });

  it('answers a 404 as a value with the errcode', async () => {
    answers = [(res) => json(res, 404, { errcode: 'M_NOT_FOUND', error: 'nope' })];
    const http = new HomeserverHttp({ baseUrl: base, token: 't', timeoutMs: 2000, maxRetries: 0, log });
    const got = await http.stream('/x');
    assert.equal(got.ok, false);
    if (!got.ok) assert.deepEqual([got.error.status, got.error.errcode], [404, 'M_NOT_FOUND']);
  });
});
