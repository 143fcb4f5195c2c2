// The admin token goes to Synapse's admin API and nowhere else; its file is read strictly.
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../src/config/config.ts';
import { HomeserverHttp } from '../../src/homeserver/http.ts';
import { createLogger } from '../../src/log.ts';
import { detectAuthDelegation, readAdminToken } from '../../src/production/delegated-auth.ts';

function capturingLogger(): { log: ReturnType<typeof createLogger>; text: () => string } {
  let out = '';
  const stream = new Writable({ write(chunk, _enc, done) { out += String(chunk); done(); } });
  return { log: createLogger({ level: 'debug', stream }), text: () => out };
}

describe('admin token', () => {
  let server: Server;
  let base: string;
  let dir: string;
  const seen: { path: string; auth: string | undefined }[] = [];
  let metadata: { status: number; body: unknown } = { status: 404, body: { errcode: 'M_UNRECOGNIZED' } };

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'steward-admin-token-'));
    server = createServer((req, res) => {
      seen.push({ path: req.url ?? '', auth: req.headers.authorization });
      const answer = req.url === '/_matrix/client/v1/auth_metadata' ? metadata : { status: 200, body: {} };
      res.writeHead(answer.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer.body));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  it('is sent on /_synapse/admin/ paths only; identity assertion keeps the appservice token', async () => {
    const http = new HomeserverHttp({ baseUrl: base, token: 'as-token', timeoutMs: 2000, maxRetries: 0, log: createLogger({ level: 'silent' }) });
    await http.request('GET', '/_synapse/admin/v2/users');
    http.setAdminToken('admin-token');
    seen.length = 0;
    await http.request('GET', '/_synapse/admin/v2/users/%40a%3Ax');
    await http.request('GET', '/_matrix/client/v3/joined_rooms', { asUser: '@a:x' });
    await http.request('GET', '/_synapse/adminish');
    await http.request('GET', '/_matrix/client/v3/rooms/!r%3Ax/aliases', { asServerAdmin: true });
    assert.deepEqual(seen.map((s) => s.auth), ['Bearer admin-token', 'Bearer as-token', 'Bearer as-token', 'Bearer admin-token']);
  });

  it('sends no token at all on an anonymous request (the reachability probe)', async () => {
    const http = new HomeserverHttp({ baseUrl: base, token: 'as-token', timeoutMs: 2000, maxRetries: 0, log: createLogger({ level: 'silent' }) });
    seen.length = 0;
    await http.request('GET', '/_matrix/client/versions', { anonymous: true });
    await http.request('GET', '/_matrix/client/versions');
    assert.deepEqual(seen.map((s) => s.auth), [undefined, 'Bearer as-token']);
  });

  it('detects delegated auth from auth_metadata', async () => {
    const http = new HomeserverHttp({ baseUrl: base, token: 'as-token', timeoutMs: 2000, maxRetries: 3, log: createLogger({ level: 'silent' }) });
    metadata = { status: 404, body: { errcode: 'M_UNRECOGNIZED' } };
    assert.equal((await detectAuthDelegation(http)).delegated, false);
    metadata = { status: 200, body: { issuer: 'https://auth.example.org/' } };
    const yes = await detectAuthDelegation(http);
    assert.equal(yes.delegated, true);
    assert.equal(yes.issuer, 'https://auth.example.org/');
    metadata = { status: 503, body: { errcode: 'M_UNKNOWN' } };
    assert.equal((await detectAuthDelegation(http)).delegated, true, 'served but failing: MAS is configured, its metadata unreachable');
    metadata = { status: 200, body: {} };
    assert.equal((await detectAuthDelegation(http)).delegated, undefined);
  });

  it('reads one token per file, warns about a group-readable file and never logs the token', async () => {
    const file = path.join(dir, 'token');
    await writeFile(file, 'mct_secret123\n', { mode: 0o600 });
    await chmod(file, 0o600);
    const quiet = capturingLogger();
    assert.deepEqual(await readAdminToken(file, quiet.log), { ok: true, value: 'mct_secret123' });
    assert.equal(quiet.text(), '');
    await chmod(file, 0o640);
    const loud = capturingLogger();
    assert.equal((await readAdminToken(file, loud.log)).ok, true);
    await new Promise((r) => setTimeout(r, 10));
    assert.match(loud.text(), /readable by group or others/);
    assert.equal(loud.text().includes('mct_secret123'), false);
    await writeFile(file, '\n');
    assert.match((await readAdminToken(file, quiet.log) as any).error.human, /is empty/);
    await writeFile(file, 'a b\n');
    assert.match((await readAdminToken(file, quiet.log) as any).error.human, /exactly one token/);
    assert.match((await readAdminToken(path.join(dir, 'none'), quiet.log) as any).error.human, /homeserver\.admin_token_file: cannot read .* it does not exist/);
  });

  it('homeserver.admin_token_file is resolved against the config folder', () => {
    const parsed = parseConfig({ homeserver: { url: 'http://127.0.0.1:8008', server_name: 'x.org', admin_token_file: 'secrets/admin' }, admin_room: { admins: ['@a:x.org'] } }, '/etc/steward');
    assert.ok(parsed.ok);
    assert.equal(parsed.value.homeserver.adminTokenFile, '/etc/steward/secrets/admin');
    const without = parseConfig({ homeserver: { url: 'http://127.0.0.1:8008', server_name: 'x.org' }, admin_room: { admins: ['@a:x.org'] } }, '/etc/steward');
    assert.ok(without.ok);
    assert.equal(without.value.homeserver.adminTokenFile, undefined);
  });
});
