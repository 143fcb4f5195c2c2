// A room whose origin server is down can still be verified: keys verified earlier are kept in
// Steward's database, and without a configured notary our own homeserver is asked for them.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { MatrixTestClient } from '../rig/client.ts';
import { freePort } from '../rig/ports.ts';
import { runCli, startStewardPair, type StewardSetup } from '../rig/steward.ts';
import type { SynapseInstance } from '../rig/synapse.ts';

describe('server keys when the origin is down', () => {
  let a: StewardSetup;
  let hsB: SynapseInstance;
  let room: string;
  let deadNotaryConfig: string;

  const fedState = (config: string) => runCli(['fed', 'state', room, '--server', a.hs.serverName, '-c', config, '-r', a.steward.registrationPath]);
  const counts = (stdout: string): string[] => {
    const m = /Verified (\d+) of (\d+) state events and (\d+) of (\d+) auth chain events\./.exec(stdout);
    assert.ok(m, stdout);
    return m.slice(1);
  };
  const forgetStoredKeys = (): void => {
    const db = new Database(a.steward.dbPath);
    try {
      db.prepare('DELETE FROM federation_server_keys').run();
    } finally {
      db.close();
    }
  };

  before(async () => {
    const pair = await startStewardPair({ a: { federation: true } });
    a = pair.a;
    hsB = pair.b.hs;
    const [alice, bob] = await Promise.all([a.hs.registerUser('alice'), hsB.registerUser('bob')]);
    const bobClient = new MatrixTestClient(hsB.clientUrl, bob.userId, bob.accessToken);
    room = await bobClient.createRoom({ preset: 'public_chat', room_version: '10', name: 'Origin goes down' });
    await bobClient.sendText(room, 'hello');
    const aliceClient = new MatrixTestClient(a.hs.clientUrl, alice.userId, alice.accessToken);
    await aliceClient.join(room, [hsB.serverName]);
    // A notary that is never there: only the stored keys can help then.
    const config = JSON.parse(await readFile(a.steward.configPath, 'utf8')) as Record<string, Record<string, unknown>>;
    deadNotaryConfig = path.join(a.steward.dir, 'dead-notary.yaml');
    await writeFile(deadNotaryConfig, JSON.stringify({ ...config, federation: { ...config.federation, notary: `localhost:${await freePort()}` } }));
  });

  after(async () => {
    await a?.steward.stop();
    await a?.hs.cleanup();
    await hsB?.cleanup();
  });

  it('verifies B\'s events with B up, and stores B\'s key', async () => {
    const run = await fedState(a.steward.configPath);
    assert.equal(run.code, 0, run.stderr);
    const [vs, ts, va, ta] = counts(run.stdout);
    assert.equal(vs, ts);
    assert.equal(va, ta);
    const db = new Database(a.steward.dbPath, { readonly: true });
    try {
      const rows = db.prepare('SELECT server_name FROM federation_server_keys').all() as { server_name: string }[];
      assert.ok(rows.some((r) => r.server_name === hsB.serverName), JSON.stringify(rows));
    } finally {
      db.close();
    }
  });

  it('with B down and the notary unreachable, a new process verifies with the stored key', async () => {
    await hsB.stop();
    const run = await fedState(deadNotaryConfig);
    assert.equal(run.code, 0, run.stderr);
    const [vs, ts, va, ta] = counts(run.stdout);
    assert.equal(vs, ts);
    assert.equal(va, ta);
    assert.doesNotMatch(run.stdout, /rejected/);
  });

  it('control: without the stored key and without a notary that answers, B\'s events cannot be verified', async () => {
    forgetStoredKeys();
    const run = await fedState(deadNotaryConfig);
    assert.equal(run.code, 1);
    assert.ok(run.stderr.includes(`does not verify (E_NETWORK: Cannot fetch the keys of ${hsB.serverName}`), run.stderr.slice(-2000));
  });

  it('without a configured notary, our own homeserver is asked and has B\'s key', async () => {
    forgetStoredKeys();
    const run = await fedState(a.steward.configPath);
    assert.equal(run.code, 0, run.stderr);
    const [vs, ts, va, ta] = counts(run.stdout);
    assert.equal(vs, ts);
    assert.equal(va, ta);
  });
});
