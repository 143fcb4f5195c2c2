import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { ClientApi } from '../../src/homeserver/client-api.ts';
import type { SynapseAdmin } from '../../src/homeserver/synapse-admin.ts';
import type { JobRecord } from '../../src/jobs/job-store.ts';
import type { JobContext } from '../../src/jobs/runner.ts';
import { createLogger } from '../../src/log.ts';
import { snapshotJob } from '../../src/snapshot/snapshot-job.ts';
import type { Failure } from '../../src/util/result.ts';
import { ALICE, AVATAR, fixtureSync, SERVER, type FixtureOptions } from './snapshot-fixture.ts';

const dirs: string[] = [];
after(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

const log = createLogger({ level: 'silent' });

function fakes(opts: FixtureOptions = {}) {
  const syncCalls: { asUser: string; filter: unknown }[] = [];
  const client = {
    async sync(asUser: string, filter: Record<string, unknown>) {
      syncCalls.push({ asUser, filter });
      return { ok: true as const, value: fixtureSync(opts) };
    },
  } as unknown as ClientApi;
  const admin = {
    async user() {
      return { ok: true as const, value: { name: ALICE, displayname: 'Alice Liddell', avatar_url: AVATAR, deactivated: false } };
    },
  } as unknown as SynapseAdmin;
  return { client, admin, syncCalls };
}

function context(args: Record<string, unknown>) {
  const failed: { item: string; failure: Failure }[] = [];
  let done = 0;
  let total: number | null = null;
  const ctx: JobContext = {
    job: { id: 7, type: 'snapshot', args } as unknown as JobRecord,
    resumeFrom: undefined,
    signal: new AbortController().signal,
    log,
    setTotal: (n) => { total = n; },
    advance: (n = 1) => { done += n; },
    itemFailed: (item, failure) => { failed.push({ item, failure }); },
    checkpoint: () => undefined,
    counters: () => ({ done, failed: failed.length, total }),
  };
  return { ctx, failed, progress: () => ({ done, total }) };
}

async function dumps(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'steward-snapshot-'));
  dirs.push(dir);
  return dir;
}

describe('snapshot job (fake homeserver)', () => {
  it('reads as the user with the snapshot filter, writes 0600 in 0700 under a name without the account', async () => {
    const dumpsDir = await dumps();
    const { client, admin, syncCalls } = fakes();
    const { ctx, progress } = context({ user: ALICE, out: null, messages: 50 });
    const result = await snapshotJob({ client, admin, serverName: SERVER, dumpsDir }).run(ctx);
    assert.ok(result.ok, JSON.stringify(result));
    assert.deepEqual(syncCalls, [{ asUser: ALICE, filter: { event_format: 'federation', room: { timeline: { limit: 50 } } } }]);
    assert.deepEqual(progress(), { done: 2, total: 2 }, 'progress counts rooms');
    const file = String(result.value.details!.file);
    assert.equal(dirname(file), join(dumpsDir, 'snapshots'));
    assert.match(basename(file), /^snapshot-\d{8}T\d{6}Z-job7\.json$/);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await stat(dirname(file))).mode & 0o777, 0o700);
    const text = await readFile(file, 'utf8');
    for (const secret of ['alice', 'liddell', 'wonderland', 'rabbithole', 'teaparty', 'mxc', 'teaRoom', 'jabberwocky']) {
      assert.ok(!text.toLowerCase().includes(secret.toLowerCase()), secret);
    }
    const doc = JSON.parse(text);
    assert.equal(doc.blueprint.Homeservers[0].Name, 'hs1');
    assert.deepEqual(doc.steward.leak_check.leaks, 0);
    assert.match(result.value.summary, /Leak check passed/);
    assert.match(result.value.summary, /2 room\(s\), 3 user\(s\)/);
    assert.doesNotMatch(result.value.summary, /alice/i);
  });

  it('refuses to write when the leak check finds a source string, saying what without saying it', async () => {
    const dumpsDir = await dumps();
    const { client, admin } = fakes({ roomVersion: 'liddell' });
    const { ctx } = context({ user: ALICE, out: null, messages: 50 });
    const result = await snapshotJob({ client, admin, serverName: SERVER, dumpsDir }).run(ctx);
    assert.ok(!result.ok);
    assert.equal(result.error.code, 'E_LEAK');
    assert.match(result.error.human, /display name of user #1 \(l…\(7\)\)/);
    assert.match(result.error.human, /Nothing was written/);
    assert.doesNotMatch(result.error.human, /liddell/i);
    assert.deepEqual(await readdir(join(dumpsDir, 'snapshots')).catch(() => []), []);
  });

  it('refuses an account of another server and an --out that exists', async () => {
    const dumpsDir = await dumps();
    const { client, admin, syncCalls } = fakes();
    const job = snapshotJob({ client, admin, serverName: SERVER, dumpsDir });
    const remote = await job.run(context({ user: '@carol:elsewhere.test', out: null, messages: 50 }).ctx);
    assert.ok(!remote.ok && remote.error.code === 'E_NOT_LOCAL');
    const existing = join(dumpsDir, 'taken.json');
    await writeFile(existing, 'keep me');
    const taken = await job.run(context({ user: ALICE, out: existing, messages: 50 }).ctx);
    assert.ok(!taken.ok && taken.error.code === 'E_EXISTS');
    assert.equal(await readFile(existing, 'utf8'), 'keep me');
    assert.equal(syncCalls.length, 0);
  });
});
