// The terminal front end with no homeserver at all: commands declared offline still run (a key
// export for a migration happens while Synapse is stopped); the others say why they cannot.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { writeSigningKey } from '../rig/keys.ts';
import { freePort } from '../rig/ports.ts';
import { runCli } from '../rig/steward.ts';

describe('terminal commands without a homeserver', () => {
  let dir: string;
  let configPath: string;
  let registrationPath: string;
  let keyPath: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'steward-offline-'));
    keyPath = path.join(dir, 'signing.key');
    await writeSigningKey(keyPath);
    const closedPort = await freePort(); // nothing listens here
    configPath = path.join(dir, 'config.yaml');
    registrationPath = path.join(dir, 'registration.yaml');
    await writeFile(configPath, JSON.stringify({
      homeserver: { url: `http://127.0.0.1:${closedPort}`, server_name: 'example.org' },
      admin_room: { admins: ['@admin:example.org'] },
      storage: { database: path.join(dir, 'steward.db'), dumps: path.join(dir, 'dumps') },
      federation: { signing_key_path: keyPath },
    }));
    const gen = await runCli(['generate-registration', '-c', configPath, '-f', registrationPath]);
    assert.equal(gen.code, 0, gen.stderr);
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('exports the signing key while the homeserver is down', async () => {
    const out = path.join(dir, 'exported.key');
    const run = await runCli(['export-key', '--out', out, '-c', configPath, '-r', registrationPath]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(await readFile(out, 'utf8'), await readFile(keyPath, 'utf8'));
    assert.equal((await stat(out)).mode & 0o777, 0o600);
  });

  it('says the homeserver cannot be reached for a command that needs it', async () => {
    const run = await runCli(['status', '-c', configPath, '-r', registrationPath]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /The homeserver at http:\/\/127\.0\.0\.1:\d+ is not reachable: cannot reach the homeserver \(ECONNREFUSED\)/);
    assert.doesNotMatch(run.stderr, /registration/);
  });

  it('`run` waits for the homeserver (bounded by homeserver.startup_wait_seconds), then says it is not reachable', async () => {
    const waitingConfig = path.join(dir, 'waiting.yaml');
    const base = JSON.parse(await readFile(configPath, 'utf8')) as Record<string, Record<string, unknown>>;
    await writeFile(waitingConfig, JSON.stringify({ ...base, homeserver: { ...base.homeserver, startup_wait_seconds: 3 }, appservice: { port: await freePort() } }));
    const run = await runCli(['run', '-c', waitingConfig, '-r', registrationPath]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /is not reachable: .*\(waited 3 s, homeserver\.startup_wait_seconds\)/);
    assert.doesNotMatch(run.stderr, /registration/);
    const retries = run.stdout.split('\n').filter((l) => l.includes('not reachable yet'));
    assert.ok(retries.length >= 2, run.stdout);
  });

  it('generate-registration says which port it chose and warns when it is taken; `run` fails clearly on it', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()));
    const port = (blocker.address() as AddressInfo).port;
    try {
      const takenConfig = path.join(dir, 'taken.yaml');
      const base = JSON.parse(await readFile(configPath, 'utf8')) as Record<string, unknown>;
      await writeFile(takenConfig, JSON.stringify({ ...base, appservice: { port } }));
      const reg = path.join(dir, 'taken-registration.yaml');
      const gen = await runCli(['generate-registration', '-c', takenConfig, '-f', reg]);
      assert.equal(gen.code, 0, gen.stderr);
      assert.match(gen.stdout, new RegExp(`listen on 127\\.0\\.0\\.1:${port} \\(appservice\\.port\\)`));
      assert.match(gen.stderr, new RegExp(`port ${port} is taken right now`));
      const run = await runCli(['run', '-c', takenConfig, '-r', reg]);
      assert.equal(run.code, 1);
      assert.match(run.stderr, new RegExp(`port ${port} is taken \\(another appservice\\?\\) — set appservice\\.port`));
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });
});
