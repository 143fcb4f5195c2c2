// Benchmark of `steward dump users` against a real Synapse (the test rig's), issue 2 §7.
//
//   node bench/dump-users/run.ts [--users 2000] [--small 500] [--concurrency 4] [--repeat 2]
//                                [--seed-concurrency 8]
//   scripts/dev bench dump-users [same flags]
//
// Seeds users (2 logged-in devices, an HTTP pusher, global account data each), then on the same
// server times (a) the real `steward dump users` CLI process, (b) a plain script making the same
// calls with the same concurrency and writing the same files, (c) that script one user at a time.
// Steward's peak RSS is measured with `--small` users on the server and again with `--users`.
// Every run's output is checked file by file; a run that dumps the wrong set fails the bench.
// Prints a result block on stdout (progress on stderr); writes nothing into the repository.
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { trackChild, trackDir, untrackDir } from '../../test/rig/reaper.ts';
import { MAIN, startStewardWithSynapse, type StewardSetup } from '../../test/rig/steward.ts';
import { callOk } from '../lib/http.ts';
import { cliStartupSeconds, cpuSeconds, findPid, machineBusySeconds, ProcSampler } from '../lib/proc.ts';
import { seededUserId, seededValues, seedUsers, type SeedTarget } from '../lib/seed.ts';
import { plainDumpUsers } from './plain-dump.ts';

const { values: flags } = parseArgs({
  options: {
    users: { type: 'string', default: '2000' },
    small: { type: 'string', default: '500' },
    concurrency: { type: 'string', default: '4' },
    repeat: { type: 'string', default: '2' },
    'seed-concurrency': { type: 'string', default: '8' },
  },
  strict: true,
});
const positiveInt = (name: string, v: string | undefined): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${v}`);
  return n;
};
const N = positiveInt('users', flags.users);
const SMALL = Math.min(positiveInt('small', flags.small), N);
const C = positiveInt('concurrency', flags.concurrency);
const REPEAT = positiveInt('repeat', flags.repeat);
const SEED_C = positiveInt('seed-concurrency', flags['seed-concurrency']);

const benchStart = performance.now();
const clock = (): string => `${((performance.now() - benchStart) / 1000).toFixed(1).padStart(6)}s`;
const say = (msg: string): void => {
  process.stderr.write(`[bench ${clock()}] ${msg}\n`);
};
const mib = (kb: number): string => `${(kb / 1024).toFixed(1)} MiB`;
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

interface RunResult {
  readonly label: string;
  readonly users: number;
  /** Wall time, for (a) from spawning the CLI process to its exit. */
  readonly seconds: number;
  /** (a) only: the job's own time, manifest started_ts → finished_ts (no process start-up). */
  readonly jobSeconds?: number;
  readonly peakRssKb?: number;
  readonly clientCpu: number;
  readonly synapseCpu: number;
  /** CPU seconds used meanwhile by everything else on the machine (other processes, this bench's sampling). */
  readonly otherCpu: number;
}

/** Measures the machine's CPU around `fn`, so a run disturbed by other load on the machine shows. */
async function accounted<T>(ctx: Ctx, fn: () => Promise<T>): Promise<{ value: T; synapseCpu: number; machineCpu: number; benchCpu: number }> {
  const synapseBefore = cpuSeconds(ctx.synapsePid) ?? 0;
  const machineBefore = machineBusySeconds();
  const benchBefore = process.cpuUsage();
  const value = await fn();
  const bench = process.cpuUsage(benchBefore);
  return {
    value,
    synapseCpu: (cpuSeconds(ctx.synapsePid) ?? 0) - synapseBefore,
    machineCpu: machineBusySeconds() - machineBefore,
    benchCpu: (bench.user + bench.system) / 1e6,
  };
}

interface Ctx {
  readonly setup: StewardSetup;
  readonly asToken: string;
  readonly adminToken: string;
  readonly synapsePid: number;
  readonly outRoot: string;
}

/** The users a full dump must contain, as the admin API lists them (same filters as Steward). */
async function expectedUsers(ctx: Ctx): Promise<Set<string>> {
  const users = new Set<string>();
  let from: string | undefined;
  for (;;) {
    const qs = new URLSearchParams({ limit: '500', guests: 'true', deactivated: 'false', order_by: 'name' });
    if (from !== undefined) qs.set('from', from);
    const page = await callOk<{ users: { name: string }[]; next_token?: string | number }>('GET', `${ctx.setup.hs.clientUrl}/_synapse/admin/v2/users?${qs}`, { token: ctx.adminToken });
    for (const u of page.users) users.add(u.name);
    if (page.next_token === undefined || page.next_token === null) return users;
    from = String(page.next_token);
  }
}

function cpuNote(r: RunResult): string {
  const pct = (x: number): string => `${Math.round((100 * x) / r.seconds)}%`;
  return `CPU (of one core) client ${pct(r.clientCpu)}, synapse ${pct(r.synapseCpu)}, other ${pct(Math.max(0, r.otherCpu))}`;
}

/** Every expected user has exactly one whole, private file holding what was seeded; nothing else is there. */
async function verifyDump(label: string, usersDir: string, expected: Set<string>, serverName: string): Promise<{ bytes: number }> {
  const names = await readdir(usersDir);
  const temps = names.filter((n) => n.endsWith('.tmp'));
  if (temps.length > 0) throw new Error(`${label}: ${temps.length} temp files left in ${usersDir}`);
  const found = new Set(names.filter((n) => n.endsWith('.json')).map((n) => decodeURIComponent(n.slice(0, -'.json'.length))));
  const missing = [...expected].filter((u) => !found.has(u));
  const extra = [...found].filter((u) => !expected.has(u));
  if (missing.length > 0 || extra.length > 0 || found.size !== expected.size) {
    throw new Error(`${label}: dumped ${found.size} users, expected ${expected.size}; missing ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? '…' : ''} extra ${extra.slice(0, 5).join(', ')}`);
  }
  const seeded = /^@bench-(\d+):/;
  let bytes = 0;
  for (const userId of found) {
    const file = path.join(usersDir, `${encodeURIComponent(userId)}.json`);
    const [text, st] = await Promise.all([readFile(file, 'utf8'), stat(file)]);
    bytes += text.length;
    const fail = (what: string): never => {
      throw new Error(`${label}: ${file}: ${what}`);
    };
    if ((st.mode & 0o777) !== 0o600) fail(`mode ${(st.mode & 0o777).toString(8)}, expected 600`);
    const doc = JSON.parse(text) as Record<string, any>;
    if (doc.user_id !== userId) fail(`user_id ${doc.user_id}`);
    if (doc.errors) fail(`sections failed: ${JSON.stringify(doc.errors)}`);
    if (doc.push_rules === null || doc.account === undefined) fail('push rules or account details missing');
    const m = seeded.exec(userId);
    if (!m) continue;
    const n = Number(m[1]);
    if (seededUserId(n, serverName) !== userId) continue;
    const want = seededValues(n);
    const deviceIds = (doc.devices ?? []).map((d: { device_id: string }) => d.device_id).sort();
    if (JSON.stringify(deviceIds) !== JSON.stringify(want.devices)) fail(`devices ${JSON.stringify(deviceIds)}`);
    if (doc.pushers?.length !== 1 || doc.pushers[0].pushkey !== want.pushkey) fail(`pushers ${JSON.stringify(doc.pushers)}`);
    if (JSON.stringify(doc.account_data?.global?.['bench.data']) !== JSON.stringify(want.accountData)) fail('account data missing');
  }
  return { bytes };
}

/** Runs a node script as a child process, sampling its peak RSS and CPU from /proc while it runs. */
async function spawnSampled(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string; seconds: number; peakRssKb: number; cpu: number }> {
  const started = performance.now();
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  trackChild(child);
  child.ref(); // the reaper unrefs children; this one we wait for
  const sampler = new ProcSampler(child.pid!, 25);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const code = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (c, signal) => resolve(c ?? (signal ? 128 : 1)));
  });
  const seconds = (performance.now() - started) / 1000;
  sampler.stop();
  return { code, stdout, stderr, seconds, peakRssKb: sampler.peakRssKb, cpu: sampler.cpuSeconds };
}

async function runSteward(ctx: Ctx, label: string, expected: Set<string>): Promise<RunResult> {
  const out = await mkdtemp(path.join(ctx.outRoot, 'steward-'));
  const { steward } = ctx.setup;
  const acc = await accounted(ctx, () => spawnSampled([MAIN, 'dump', 'users', '--out', out, '--concurrency', String(C), '--json', '-c', steward.configPath, '-r', steward.registrationPath]));
  const { value: run, synapseCpu } = acc;
  if (run.code !== 0) throw new Error(`${label}: steward exited ${run.code}\nstdout: ${run.stdout.slice(-2000)}\nstderr: ${run.stderr.slice(-2000)}`);
  const answer = JSON.parse(run.stdout.trim().split('\n').pop()!) as { ok: boolean; job: { state: string; failed: number } };
  if (!answer.ok || answer.job.state !== 'done' || answer.job.failed !== 0) throw new Error(`${label}: job ended ${answer.job.state} with ${answer.job.failed} failures: ${run.stdout.slice(-2000)}`);
  const dumps = await readdir(out);
  if (dumps.length !== 1) throw new Error(`${label}: expected one dump folder in ${out}, found ${dumps.join(', ')}`);
  const root = path.join(out, dumps[0]!);
  const manifest = JSON.parse(await readFile(path.join(root, 'manifest.json'), 'utf8')) as { state: string; started_ts: number; finished_ts: number; counts: { users_dumped: number; users_failed: number } };
  if (manifest.state !== 'complete' || manifest.counts.users_dumped !== expected.size || manifest.counts.users_failed !== 0) {
    throw new Error(`${label}: manifest says ${JSON.stringify({ state: manifest.state, counts: manifest.counts })}, expected ${expected.size} dumped`);
  }
  await verifyDump(label, path.join(root, 'users'), expected, ctx.setup.hs.serverName);
  await rm(out, { recursive: true, force: true });
  const result: RunResult = {
    label, users: expected.size, seconds: run.seconds, synapseCpu,
    jobSeconds: (manifest.finished_ts - manifest.started_ts) / 1000,
    peakRssKb: run.peakRssKb,
    clientCpu: run.cpu,
    otherCpu: acc.machineCpu - synapseCpu - run.cpu,
  };
  say(`${label}: ${expected.size} users in ${run.seconds.toFixed(2)} s (${(expected.size / run.seconds).toFixed(1)} users/s; job ${result.jobSeconds!.toFixed(2)} s), peak RSS ${mib(run.peakRssKb)}, ${cpuNote(result)}`);
  return result;
}

/** The plain script in a process of its own: what a plain Node client's peak RSS is, for comparison. */
async function runPlainProcess(ctx: Ctx, label: string, expected: Set<string>): Promise<RunResult> {
  const out = await mkdtemp(path.join(ctx.outRoot, 'plain-process-'));
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'plain-dump.ts');
  const acc = await accounted(ctx, () => spawnSampled(
    [script, '--url', ctx.setup.hs.clientUrl, '--server-name', ctx.setup.hs.serverName, '--out', out, '--concurrency', String(C)],
    { ...process.env, BENCH_AS_TOKEN: ctx.asToken },
  ));
  const { value: run, synapseCpu } = acc;
  if (run.code !== 0) throw new Error(`${label}: exited ${run.code}\n${run.stderr.slice(-2000)}`);
  const r = JSON.parse(run.stdout.trim().split('\n').pop()!) as { usersDir: string; written: number; failed: unknown[] };
  if (r.failed.length > 0) throw new Error(`${label}: ${r.failed.length} users failed, first: ${JSON.stringify(r.failed[0])}`);
  await verifyDump(label, r.usersDir, expected, ctx.setup.hs.serverName);
  await rm(out, { recursive: true, force: true });
  const result: RunResult = { label, users: r.written, seconds: run.seconds, peakRssKb: run.peakRssKb, clientCpu: run.cpu, synapseCpu, otherCpu: acc.machineCpu - synapseCpu - run.cpu };
  say(`${label}: ${r.written} users in ${run.seconds.toFixed(2)} s (${(r.written / run.seconds).toFixed(1)} users/s), peak RSS ${mib(run.peakRssKb)}, ${cpuNote(result)}`);
  return result;
}

async function runPlain(ctx: Ctx, label: string, concurrency: number, expected: Set<string> | null, limit?: number): Promise<RunResult> {
  const out = await mkdtemp(path.join(ctx.outRoot, 'plain-'));
  const acc = await accounted(ctx, () => plainDumpUsers({
    baseUrl: ctx.setup.hs.clientUrl,
    asToken: ctx.asToken,
    serverName: ctx.setup.hs.serverName,
    out,
    concurrency,
    ...(limit !== undefined ? { limit } : {}),
  }));
  const { value: r, synapseCpu } = acc;
  if (r.failed.length > 0) throw new Error(`${label}: ${r.failed.length} users failed, first: ${JSON.stringify(r.failed[0])}`);
  if (expected) await verifyDump(label, r.usersDir, expected, ctx.setup.hs.serverName);
  else if (limit !== undefined && r.written !== limit) throw new Error(`${label}: wrote ${r.written} users, expected ${limit}`);
  await rm(out, { recursive: true, force: true });
  const result: RunResult = { label, users: r.written, seconds: r.seconds, clientCpu: acc.benchCpu, synapseCpu, otherCpu: acc.machineCpu - synapseCpu - acc.benchCpu };
  say(`${label}: ${r.written} users in ${r.seconds.toFixed(2)} s (${(r.written / r.seconds).toFixed(1)} users/s), ${cpuNote(result)}`);
  return result;
}

async function main(): Promise<void> {
  say(`users ${N}, small ${SMALL}, concurrency ${C}, repeat ${REPEAT}, seed concurrency ${SEED_C}`);
  const outRoot = await mkdtemp(path.join(os.tmpdir(), 'steward-bench-dumps-'));
  trackDir(outRoot);
  let setup: StewardSetup | undefined;
  try {
    say('starting Synapse and Steward (test rig)');
    // `info` is the shipped default; the rig's `debug` would not be what an admin runs.
    setup = await startStewardWithSynapse({ config: { logging: { level: 'info' } } });
    // Only the CLI is measured; the service would share the job database and Synapse's CPU.
    await setup.steward.stop();
    const { hs, steward, admin } = setup;
    const registration = await readFile(steward.registrationPath, 'utf8');
    const asToken = /as_token:\s*["']?([^\s"']+)/.exec(registration)?.[1];
    if (!asToken) throw new Error(`no as_token in ${steward.registrationPath}`);
    const synapsePid = findPid(hs.configPath);
    if (synapsePid === null) throw new Error('cannot find the Synapse process');
    const ctx: Ctx = { setup, asToken, adminToken: admin.accessToken, synapsePid, outRoot };
    const version = await callOk<{ server_version: string }>('GET', `${hs.clientUrl}/_synapse/admin/v1/server_version`, { token: admin.accessToken });
    const startup = await cliStartupSeconds(MAIN);
    say(`Synapse ${version.server_version} (pid ${synapsePid}); steward CLI start-up ${startup.toFixed(2)} s`);

    const target: SeedTarget = { clientUrl: hs.clientUrl, serverName: hs.serverName, adminToken: admin.accessToken };
    let lastReport = 0;
    const progress = (base: number) => (done: number, total: number): void => {
      if (done === total || performance.now() - lastReport > 10_000) {
        lastReport = performance.now();
        say(`  seeded ${base + done}/${N}`);
      }
    };

    // Phase 1: SMALL users; Steward's peak RSS there.
    say(`seeding users 1..${SMALL}`);
    const seedSmall = await seedUsers(target, 1, SMALL, SEED_C, progress(0));
    const expectedSmall = await expectedUsers(ctx);
    say(`seeded ${SMALL} users in ${seedSmall.toFixed(1)} s; the server lists ${expectedSmall.size} users`);
    await runPlain(ctx, `warm-up (plain, ${expectedSmall.size} users)`, C, expectedSmall);
    const small: RunResult[] = [];
    for (let i = 0; i < REPEAT; i++) small.push(await runSteward(ctx, `(a) steward @${expectedSmall.size} #${i + 1}`, expectedSmall));
    const plainSmall = await runPlainProcess(ctx, `plain process @${expectedSmall.size}`, expectedSmall);

    // Phase 2: top up to N users; (a), (b), (c) on the same server.
    let seedBig = 0;
    if (N > SMALL) {
      say(`seeding users ${SMALL + 1}..${N}`);
      seedBig = await seedUsers(target, SMALL + 1, N, SEED_C, progress(SMALL));
    }
    const expected = await expectedUsers(ctx);
    if (expected.size < N) throw new Error(`the server lists ${expected.size} users after seeding ${N}`);
    const seedSeconds = seedSmall + seedBig;
    say(`seeded ${N} users in ${seedSeconds.toFixed(1)} s in all (${(N / seedSeconds).toFixed(1)} users/s); the server lists ${expected.size} users`);
    // A full untimed pass first, so every measured run finds Synapse's caches equally warm.
    await runPlain(ctx, `warm-up (plain, ${expected.size} users)`, C, expected);
    const a: RunResult[] = [];
    const b: RunResult[] = [];
    for (let i = 0; i < REPEAT; i++) {
      // Alternate the order so neither side always runs second.
      const runA = async (): Promise<void> => { a.push(await runSteward(ctx, `(a) steward #${i + 1}`, expected)); };
      const runB = async (): Promise<void> => { b.push(await runPlain(ctx, `(b) plain c=${C} #${i + 1}`, C, expected)); };
      if (i % 2 === 0) {
        await runA();
        await runB();
      } else {
        await runB();
        await runA();
      }
    }
    const c = [await runPlain(ctx, '(c) plain c=1', 1, expected)];
    const plainBig = await runPlainProcess(ctx, `plain process @${expected.size}`, expected);

    // Results.
    const secs = (rs: RunResult[]): number => median(rs.map((r) => r.seconds));
    const rate = (rs: RunResult[]): string => `${(expected.size / secs(rs)).toFixed(1).padStart(6)} users/s`;
    const runs = (rs: RunResult[]): string => rs.map((r) => r.seconds.toFixed(2)).join(', ');
    const cpuPct = (rs: RunResult[], key: 'clientCpu' | 'synapseCpu' | 'otherCpu'): string => `${Math.max(0, Math.round((100 * median(rs.map((r) => r[key]))) / secs(rs)))}%`;
    const ab = secs(a) / secs(b);
    const abJob = median(a.map((r) => r.jobSeconds!)) / secs(b);
    const ca = secs(c) / secs(a);
    const rssBig = Math.max(...a.map((r) => r.peakRssKb!));
    const rssSmall = Math.max(...small.map((r) => r.peakRssKb!));
    const rssRatio = rssBig / rssSmall;
    const plainRatio = plainBig.peakRssKb! / plainSmall.peakRssKb!;
    const maxOther = Math.max(...[...a, ...b, ...c].map((r) => r.otherCpu / r.seconds));
    const verdict = (okay: boolean): string => (okay ? 'PASS' : 'FAIL');
    const lines = [
      '',
      '=== bench/dump-users: results ===',
      `machine        ${os.availableParallelism()} cores (${os.cpus()[0]?.model ?? '?'}), ${mib(os.totalmem() / 1024)} RAM; Node ${process.version}; Synapse ${version.server_version} (SQLite, one process)`,
      `server         ${expected.size} users listed (${N} seeded with 2 devices, 1 pusher, account data each; + admin and bot)`,
      `seeding        ${N} users in ${seedSeconds.toFixed(1)} s (${(N / seedSeconds).toFixed(1)} users/s, ${SEED_C} in flight, 5 requests each)`,
      `per user       5 admin calls + 3 client calls as the user (8 requests); concurrency ${C}; median of ${REPEAT} run(s) for (a) and (b)`,
      `(a) steward    ${rate(a)}  ${secs(a).toFixed(2)} s  [runs ${runs(a)}]  (CLI process wall time; the job alone ${median(a.map((r) => r.jobSeconds!)).toFixed(2)} s; \`steward --version\` takes ${startup.toFixed(2)} s)`,
      `(b) plain c=${C}  ${rate(b)}  ${secs(b).toFixed(2)} s  [runs ${runs(b)}]`,
      `(c) plain c=1  ${rate(c)}  ${secs(c).toFixed(2)} s`,
      `(a)/(b)        ${ab.toFixed(2)}  (time ratio, target <= 1.3: ${verdict(ab <= 1.3)}; job alone ${abJob.toFixed(2)})`,
      `(c)/(a)        ${ca.toFixed(2)}  (what concurrency buys on this machine; not a target)`,
      `CPU of run     (a)/(b)/(c), % of one core: synapse ${cpuPct(a, 'synapseCpu')} / ${cpuPct(b, 'synapseCpu')} / ${cpuPct(c, 'synapseCpu')}; client ${cpuPct(a, 'clientCpu')} / ${cpuPct(b, 'clientCpu')} / ${cpuPct(c, 'clientCpu')}; other processes ${cpuPct(a, 'otherCpu')} / ${cpuPct(b, 'otherCpu')} / ${cpuPct(c, 'otherCpu')}`,
      ...(maxOther > 0.1 ? [`WARNING        other load on the machine took up to ${Math.round(maxOther * 100)}% of a core during a measured run; the timings are disturbed`] : []),
      `steward RSS    peak ${mib(rssBig)} dumping ${expected.size} users [runs ${a.map((r) => mib(r.peakRssKb!)).join(', ')}]`,
      `RSS vs users   ${mib(rssSmall)} @ ${expectedSmall.size} users -> ${mib(rssBig)} @ ${expected.size} users: ratio ${rssRatio.toFixed(2)} (target <= 1.2: ${verdict(rssRatio <= 1.2)}) [runs @${expectedSmall.size}: ${small.map((r) => mib(r.peakRssKb!)).join(', ')}]`,
      `  baseline     the plain script in its own process: ${mib(plainSmall.peakRssKb!)} @ ${expectedSmall.size} users (${plainSmall.seconds.toFixed(1)} s) -> ${mib(plainBig.peakRssKb!)} @ ${expected.size} users (${plainBig.seconds.toFixed(1)} s): ratio ${plainRatio.toFixed(2)}`,
      `(a) @${String(expectedSmall.size).padEnd(9)} ${(expectedSmall.size / median(small.map((r) => r.seconds))).toFixed(1).padStart(6)} users/s  [runs ${runs(small)}] (steward with ${expectedSmall.size} users on the server)`,
      `bench time     ${((performance.now() - benchStart) / 1000).toFixed(0)} s in all`,
      '',
    ];
    process.stdout.write(lines.join('\n'));
  } finally {
    say('cleaning up');
    await setup?.steward.stop().catch(() => undefined);
    await setup?.hs.cleanup().catch((err: unknown) => say(`cleanup failed: ${String(err)}`));
    await rm(outRoot, { recursive: true, force: true });
    untrackDir(outRoot);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
