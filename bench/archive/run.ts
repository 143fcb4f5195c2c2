// Benchmark of `steward archive` against a real Synapse (the test rig's), issue 8 §5.
//
//   node bench/archive/run.ts [--big 100000] [--mid 10000] [--rooms 100] [--events 1000]
//                             [--concurrency 4] [--seed-concurrency 8] [--repeat 2] [--seed-dir DIR]
//
// Seeds one room of --big events, one of --mid, and --rooms rooms of --events each, through the
// appservice with massaged timestamps (`?ts=`, spread over days), timing the seeding. Then, on
// the same server: (a) the real `steward archive` CLI over every room, (b) a plain script paging
// the same admin API with the same concurrency and writing the same JSONL (plain-archive.ts),
// alternated --repeat times; the outputs must be byte-identical. Then a no-op re-run of (a), and
// Steward's peak RSS archiving the --mid room alone and the --big room alone.
// Prints a result block on stdout (progress on stderr); writes nothing into the repository.
// Seeding the full set takes the better part of an hour (Synapse persists one room's events one
// by one, and each room has one sender); --seed-dir keeps the seeded server there after the run,
// and a later run with the same sizes and that --seed-dir measures on it again, quoting the
// original seeding time.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { trackChild, trackDir, untrackDatabase, untrackDir } from '../../test/rig/reaper.ts';
import { MAIN, startStewardWithSynapse } from '../../test/rig/steward.ts';
import { reopenSynapse } from '../../test/rig/synapse.ts';
import { callOk } from '../lib/http.ts';
import { forEachLimit } from '../lib/pool.ts';
import { cliStartupSeconds, cpuSeconds, findPid, machineBusySeconds, ProcSampler } from '../lib/proc.ts';

const { values: flags } = parseArgs({
  options: {
    big: { type: 'string', default: '100000' },
    mid: { type: 'string', default: '10000' },
    rooms: { type: 'string', default: '100' },
    events: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '4' },
    'seed-concurrency': { type: 'string', default: '8' },
    repeat: { type: 'string', default: '2' },
    'seed-dir': { type: 'string' },
  },
  strict: true,
});
const int = (name: string, v: string | undefined): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${v}`);
  return n;
};
const BIG = int('big', flags.big);
const MID = int('mid', flags.mid);
const ROOMS = int('rooms', flags.rooms);
const EVENTS = int('events', flags.events);
const C = int('concurrency', flags.concurrency);
const SEED_C = int('seed-concurrency', flags['seed-concurrency']);
const REPEAT = int('repeat', flags.repeat);

const t0 = performance.now();
const say = (msg: string): void => {
  process.stderr.write(`[bench ${((performance.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${msg}\n`);
};
const mib = (kb: number): string => `${(kb / 1024).toFixed(1)} MiB`;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;

async function spawnSampled(args: string[]): Promise<{ code: number; stdout: string; stderr: string; seconds: number; peakRssKb: number; cpu: number }> {
  const started = performance.now();
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  trackChild(child);
  child.ref();
  const sampler = new ProcSampler(child.pid!, 25);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const code = await new Promise<number>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (c, signal) => resolve(c ?? (signal ? 128 : 1)));
  });
  sampler.stop();
  return { code, stdout, stderr, seconds: (performance.now() - started) / 1000, peakRssKb: sampler.peakRssKb, cpu: sampler.cpuSeconds };
}

/** Every room's JSONL, concatenated in file-name order: what both ways must agree on. */
async function contents(out: string): Promise<Map<string, string>> {
  const rooms = new Map<string, string>();
  for (const name of await readdir(path.join(out, 'rooms'))) {
    const dir = path.join(out, 'rooms', name);
    const files = (await readdir(dir, { recursive: true })).filter((f) => f.endsWith('.jsonl')).sort();
    let text = '';
    for (const f of files) text += `${f}\n${await readFile(path.join(dir, f), 'utf8')}`;
    rooms.set(name, text);
  }
  return rooms;
}

/** Seeds the rooms on a fresh server; what it made, for this run and for --seed-dir. */
async function seedServer({ hs, steward, admin }: Awaited<ReturnType<typeof startStewardWithSynapse>>): Promise<KeptSeed> {
  // The archive runs from the terminal; the service would only take every seeded event as an appservice transaction.
  await steward.stop();
  // Seeding: rooms created by the admin, messages sent as the admin through the appservice with ?ts=.
  const seedStart = performance.now();
  const createRoom = async (name: string): Promise<string> => (await callOk<{ room_id: string }>('POST', `${hs.clientUrl}/_matrix/client/v3/createRoom`, { token: admin.accessToken, body: { name, preset: 'private_chat' } })).room_id;
  const big = await createRoom('bench big');
  const mid = await createRoom('bench mid');
  const small: string[] = [];
  await forEachLimit(Array.from({ length: ROOMS }, (_, i) => i), SEED_C, async (i) => { small.push(await createRoom(`bench small ${i}`)); });
  const now = Date.now();
  let sent = 0;
  const send = async (room: string, i: number, n: number, spanMs: number): Promise<void> => {
    const ts = now - spanMs + Math.floor((spanMs * i) / n);
    const url = `${hs.clientUrl}/_matrix/client/v3/rooms/${encodeURIComponent(room)}/send/m.room.message/b${i}-${room.slice(1, 9)}?user_id=${encodeURIComponent(admin.userId)}&ts=${ts}`;
    await callOk('PUT', url, { token: steward.asToken, body: { msgtype: 'm.text', body: `bench message ${i} in a room seeded for the archive benchmark` } });
    if (++sent % 5000 === 0) say(`seeded ${sent} events`);
  };
  // One message in flight per room, as in a real conversation: every event then has one
  // prev_event. Parallel senders into one room leave Synapse many forward extremities, and the
  // room it makes is slow to page (a 100,000-event room seeded that way cost 47 s per page).
  // The big room starts first and the others share the remaining senders.
  const rooms = [{ room: big, n: BIG, span: 60 * 86_400_000 }, { room: mid, n: MID, span: 20 * 86_400_000 }, ...small.map((room) => ({ room, n: EVENTS, span: 3 * 86_400_000 }))];
  await forEachLimit(rooms, SEED_C, async (l) => {
    for (let i = 0; i < l.n; i++) await send(l.room, i, l.n, l.span);
  });
  return {
    sizes, rigDir: hs.dir, configPath: steward.configPath, registrationPath: steward.registrationPath, asToken: steward.asToken, adminToken: admin.accessToken,
    big, mid, small, seedSeconds: (performance.now() - seedStart) / 1000, seedConcurrency: SEED_C,
  };
}

/** What a kept seeded server needs to be measured again: written to <seed-dir>/seed.json. */
interface KeptSeed {
  sizes: { big: number; mid: number; rooms: number; events: number };
  rigDir: string;
  configPath: string;
  registrationPath: string;
  asToken: string;
  adminToken: string;
  big: string;
  mid: string;
  small: string[];
  seedSeconds: number;
  seedConcurrency: number;
}
const sizes = { big: BIG, mid: MID, rooms: ROOMS, events: EVENTS };
const seedFile = flags['seed-dir'] === undefined ? undefined : path.join(path.resolve(flags['seed-dir']), 'seed.json');
const kept = seedFile !== undefined && existsSync(seedFile) ? (JSON.parse(await readFile(seedFile, 'utf8')) as KeptSeed) : undefined;
if (kept && JSON.stringify(kept.sizes) !== JSON.stringify(sizes)) {
  throw new Error(`${seedFile} holds a server seeded with ${JSON.stringify(kept.sizes)}, not ${JSON.stringify(sizes)}: remove it or pass those sizes`);
}

const setup = kept
  ? await (async () => {
    const hs = await reopenSynapse(kept.rigDir);
    await hs.start();
    return { hs, steward: { asToken: kept.asToken, configPath: kept.configPath, registrationPath: kept.registrationPath, stop: async () => {} }, admin: { accessToken: kept.adminToken } };
  })()
  : await startStewardWithSynapse({ config: { archive: { page_size: 1000, concurrency: C } } });
const work = await mkdtemp(path.join(os.tmpdir(), 'steward-bench-archive-'));
trackDir(work);
try {
  const { hs, steward, admin } = setup;
  const synapsePid = findPid(hs.configPath);
  if (synapsePid === null) throw new Error('cannot find the Synapse process');
  const version = await callOk<{ server_version: string }>('GET', `${hs.clientUrl}/_synapse/admin/v1/server_version`, { token: admin.accessToken });
  const startup = await cliStartupSeconds(MAIN);
  say(`Synapse ${version.server_version} (pid ${synapsePid}); steward CLI start-up ${startup.toFixed(2)} s`);

  const seed = kept ?? (await seedServer(setup as Awaited<ReturnType<typeof startStewardWithSynapse>>));
  const { big, mid, seedSeconds } = seed;
  const total = BIG + MID + ROOMS * EVENTS;
  if (kept) say(`measuring on the server seeded earlier in ${kept.rigDir}`);
  else say(`seeded ${total} events in ${ROOMS + 2} rooms in ${seedSeconds.toFixed(0)} s (${Math.round(total / seedSeconds)} events/s, seed concurrency ${SEED_C})`);
  if (seedFile !== undefined && !kept) {
    untrackDir(hs.dir);
    if (hs.postgresDatabase !== undefined) untrackDatabase(hs.postgresDatabase);
    await mkdir(path.dirname(seedFile), { recursive: true });
    await writeFile(seedFile, JSON.stringify(seed, null, 2));
    say(`seeded server kept in ${hs.dir}; ${seedFile} brings it back`);
  }

  const cliArgs = (out: string, extra: string[] = []) => [MAIN, 'archive', '--out', out, '--concurrency', String(C), ...extra, '--json', '-c', steward.configPath, '-r', steward.registrationPath];
  const runs: { steward: number[]; plain: number[]; stewardSyn: number[]; plainSyn: number[]; stewardCpu: number[]; plainCpu: number[]; events: number; stewardRss: number } = { steward: [], plain: [], stewardSyn: [], plainSyn: [], stewardCpu: [], plainCpu: [], events: 0, stewardRss: 0 };
  let lastSteward = '';
  let lastPlain = '';
  for (let r = 0; r < REPEAT; r++) {
    const plainOut = await mkdtemp(path.join(work, 'plain-'));
    const synBefore = cpuSeconds(synapsePid) ?? 0;
    const plain = await spawnSampled([path.join(path.dirname(new URL(import.meta.url).pathname), 'plain-archive.ts'), hs.clientUrl, steward.asToken, plainOut, String(C)]);
    if (plain.code !== 0) throw new Error(`plain script failed: ${plain.stderr.slice(-2000)}`);
    runs.plain.push(plain.seconds);
    runs.plainCpu.push(plain.cpu);
    runs.plainSyn.push((cpuSeconds(synapsePid) ?? 0) - synBefore);
    runs.events = JSON.parse(plain.stdout).events;
    say(`plain: ${runs.events} events in ${plain.seconds.toFixed(1)} s`);

    const stewardOut = await mkdtemp(path.join(work, 'steward-'));
    const synBefore2 = cpuSeconds(synapsePid) ?? 0;
    const machineBefore = machineBusySeconds();
    const run = await spawnSampled(cliArgs(stewardOut));
    if (run.code !== 0) throw new Error(`steward archive failed: ${run.stdout.slice(-2000)} ${run.stderr.slice(-2000)}`);
    const job = JSON.parse(run.stdout.trim().split('\n').pop()!).job;
    if (job.state !== 'done' || job.failed !== 0) throw new Error(`steward archive ended ${job.state}: ${run.stdout.slice(-2000)}`);
    runs.steward.push(run.seconds);
    runs.stewardCpu.push(run.cpu);
    runs.stewardSyn.push((cpuSeconds(synapsePid) ?? 0) - synBefore2);
    runs.stewardRss = Math.max(runs.stewardRss, run.peakRssKb);
    say(`steward: ${job.result.details.events} events in ${run.seconds.toFixed(1)} s (machine busy ${(machineBusySeconds() - machineBefore).toFixed(0)} CPU s)`);

    const [a, b] = await Promise.all([contents(stewardOut), contents(plainOut)]);
    if (a.size !== b.size) throw new Error(`steward wrote ${a.size} rooms, plain ${b.size}`);
    for (const [room, text] of a) if (b.get(room) !== text) throw new Error(`${room}: steward's JSONL differs from the plain script's`);
    if (lastPlain) await rm(lastPlain, { recursive: true, force: true });
    if (lastSteward && r < REPEAT - 1) await rm(lastSteward, { recursive: true, force: true });
    lastPlain = plainOut;
    lastSteward = stewardOut;
  }
  say('outputs byte-identical');

  const noop = await spawnSampled(cliArgs(lastSteward));
  const noopJob = JSON.parse(noop.stdout.trim().split('\n').pop()!).job;
  if (noopJob.result.details.events !== 0) throw new Error(`the no-op re-run archived ${noopJob.result.details.events} events`);
  const noopJobSeconds = (noopJob.finishedTs - noopJob.startedTs) / 1000;
  say(`no-op re-run: ${noop.seconds.toFixed(2)} s wall (job ${noopJobSeconds.toFixed(2)} s)`);

  const rss = async (room: string): Promise<number> => {
    const out = await mkdtemp(path.join(work, 'rss-'));
    const run = await spawnSampled(cliArgs(out, ['--room', room]));
    if (run.code !== 0) throw new Error(`steward archive --room failed: ${run.stderr.slice(-1000)}`);
    await rm(out, { recursive: true, force: true });
    return run.peakRssKb;
  };
  const rssMid = await rss(mid);
  const rssBig = await rss(big);

  const s = median(runs.steward);
  const p = median(runs.plain);
  const lines = [
    `Synapse ${version.server_version}, ${hs.database === 'postgres' ? 'PostgreSQL' : 'SQLite'}, ${os.cpus().length} cores (shared with other work: see machine load), concurrency ${C}, page 1000`,
    `seeding: ${total} events (${BIG} + ${MID} + ${ROOMS}×${EVENTS}) in ${ROOMS + 2} rooms through the appservice with ?ts=, ${seedSeconds.toFixed(0)} s (${Math.round(total / seedSeconds)} events/s, seed concurrency ${seed.seedConcurrency}${kept ? ', seeded in an earlier run' : ''})`,
    `archive of every room (${runs.events} events), median of ${REPEAT}:`,
    `  steward archive   ${s.toFixed(1)} s  ${Math.round(runs.events / s)} events/s  peak RSS ${mib(runs.stewardRss)}  Synapse CPU ${Math.round((100 * median(runs.stewardSyn)) / s)}%, client ${Math.round((100 * median(runs.stewardCpu)) / s)}% of one core`,
    `  plain script      ${p.toFixed(1)} s  ${Math.round(runs.events / p)} events/s  Synapse CPU ${Math.round((100 * median(runs.plainSyn)) / p)}%, client ${Math.round((100 * median(runs.plainCpu)) / p)}% of one core`,
    `  ratio steward/plain ${(s / p).toFixed(2)} (target ≤ 1.1); outputs byte-identical; CLI start-up ${startup.toFixed(2)} s included`,
    `no-op re-run over ${ROOMS + 2}+ rooms: ${noop.seconds.toFixed(2)} s wall, job ${noopJobSeconds.toFixed(2)} s (target ≤ 2 s)`,
    `peak RSS archiving one room: ${MID} events ${mib(rssMid)}, ${BIG} events ${mib(rssBig)}, ratio ${(rssBig / rssMid).toFixed(2)} (target ≤ 1.2)`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  await setup.steward.stop();
  if (kept || seedFile !== undefined) await setup.hs.stop();
  else await setup.hs.cleanup();
  await rm(work, { recursive: true, force: true });
  untrackDir(work);
}
