// Benchmark of Steward's federation path (issue 3 §4), against a real Synapse (the test rig's):
//
//   node bench/federation/run.ts [--part a|b|both] [--events 2000] [--passes 1]
//                                [--rooms 300] [--small 100] [--concurrency 4] [--repeat 2]
//                                [--seed-concurrency 8]
//   scripts/dev bench federation [same flags]
//
// (a) Sign and verify throughput of Ed25519 with tweetnacl against Node's built-in (node:crypto,
//     what Steward uses: src/federation/ed25519.ts), same seed, same realistic events: the
//     primitive alone and the whole path (canonical JSON, hashes, redaction), ops/s and ratio.
// (b) `steward dump rooms` (the real CLI process) over --rooms rooms against a plain script making
//     the same admin and federation calls (X-Matrix signed by Steward's code, every event verified
//     with the same verifyEvent; a process of its own, like the CLI) with the same concurrency and
//     writing the same files: time ratio (target <= 1.3), peak RSS (VmHWM of each process), and
//     Steward's RSS at --small rooms against --rooms rooms (flat); then one diagnostic Steward run
//     at each size with V8's young generation pinned and --trace-gc, for the RSS apart from V8's
//     new-space sizing and the heap left after full GCs. Every run's files are checked room by room,
//     and Steward's and the plain script's are compared event id for event id.
// Then it puts (a) and (b) together: what the dump's signature work costs with either library,
// against the whole dump's CPU, i.e. whether tweetnacl would be the bottleneck.
// Prints a result block on stdout (progress on stderr); writes nothing into the repository.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadSigningKey, roomVersion, signingKeyFromSeed } from '../../src/federation/index.ts';
import type { SigningKey } from '../../src/federation/index.ts';
import { trackChild, trackDir, untrackDir } from '../../test/rig/reaper.ts';
import { attachSteward, MAIN, type StewardSetup } from '../../test/rig/steward.ts';
import { prepareSynapse } from '../../test/rig/synapse.ts';
import { callOk } from '../lib/http.ts';
import { forEachLimit } from '../lib/pool.ts';
import { cliStartupSeconds, cpuSeconds, findPid, ProcSampler } from '../lib/proc.ts';
import { runCryptoBench, type CryptoResults, type Rate } from './crypto.ts';

const PLAIN = fileURLToPath(new URL('./plain-dump.ts', import.meta.url));

const { values: flags } = parseArgs({
  options: {
    part: { type: 'string', default: 'both' },
    events: { type: 'string', default: '2000' },
    passes: { type: 'string', default: '1' },
    rooms: { type: 'string', default: '300' },
    small: { type: 'string', default: '100' },
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
const PART = flags.part!;
if (!['a', 'b', 'both'].includes(PART)) throw new Error(`--part must be a, b or both, got ${PART}`);
const EVENTS = positiveInt('events', flags.events);
const PASSES = positiveInt('passes', flags.passes);
const N = positiveInt('rooms', flags.rooms);
const SMALL = Math.min(positiveInt('small', flags.small), N);
const C = positiveInt('concurrency', flags.concurrency);
const REPEAT = positiveInt('repeat', flags.repeat);
const SEED_C = positiveInt('seed-concurrency', flags['seed-concurrency']);
const SEED_VERSIONS = ['10', '11', '12', '6', '1'];
/**
 * V8 grows its young generation (up to 2 x max semi-space) under a high allocation rate (tweetnacl,
 * when Steward used it, allocated ~1-2 MB of short-lived arrays per signature check): a longer dump
 * can reach a bigger new space, whatever Steward retains. A diagnostic run with the semi-space
 * capped and --trace-gc shows Steward's own RSS and the heap it holds apart from that.
 */
const CAPPED = ['--max-semi-space-size=16', '--trace-gc'];

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
const enc = encodeURIComponent;

interface RunResult {
  readonly label: string;
  readonly rooms: number;
  readonly seconds: number;
  readonly jobSeconds?: number;
  readonly peakRssKb?: number;
  /** Heap after full GCs (MB), from --trace-gc in the diagnostic runs. */
  readonly liveHeapMb?: { max: number; last: number; count: number };
  readonly clientCpu: number;
  readonly mainCpu: number;
  readonly synapseCpu: number;
  readonly check: DumpCheck;
}

interface DumpCheck {
  /** Per room: what a second dump of the same rooms must reproduce. */
  readonly fingerprint: Map<string, string>;
  readonly eventsVerified: number;
  /** Signature checks actually made: one per distinct event per room. */
  readonly distinctEvents: number;
  readonly bytes: number;
}

interface Ctx {
  readonly setup: StewardSetup;
  readonly asToken: string;
  readonly signingKey: SigningKey;
  readonly ca: string;
  readonly synapsePid: number;
  readonly outRoot: string;
}

/** Rooms a full dump must contain: the admin API's list. */
async function expectedRooms(ctx: Ctx): Promise<Set<string>> {
  const rooms = new Set<string>();
  let from = 0;
  for (;;) {
    const page = await callOk<{ rooms: { room_id: string }[]; next_batch?: number }>('GET', `${ctx.setup.hs.clientUrl}/_synapse/admin/v1/rooms?from=${from}&limit=500`, { token: ctx.asToken });
    for (const r of page.rooms) rooms.add(r.room_id);
    if (page.next_batch === undefined || page.next_batch === null) return rooms;
    from = page.next_batch;
  }
}

/** One whole, private file per expected room, every event verified, the auth chain closed, the state matching. */
async function verifyDump(label: string, roomsDir: string, expected: Set<string>): Promise<DumpCheck> {
  const names = await readdir(roomsDir);
  const temps = names.filter((n) => n.endsWith('.tmp'));
  if (temps.length > 0) throw new Error(`${label}: ${temps.length} temp files left in ${roomsDir}`);
  const found = new Set(names.filter((n) => n.endsWith('.json')).map((n) => decodeURIComponent(n.slice(0, -'.json'.length))));
  const missing = [...expected].filter((r) => !found.has(r));
  const extra = [...found].filter((r) => !expected.has(r));
  if (missing.length > 0 || extra.length > 0) throw new Error(`${label}: dumped ${found.size} rooms, expected ${expected.size}; missing ${missing.slice(0, 3).join(', ')} extra ${extra.slice(0, 3).join(', ')}`);
  const fingerprint = new Map<string, string>();
  let eventsVerified = 0;
  let distinctEvents = 0;
  let bytes = 0;
  for (const roomId of found) {
    const file = path.join(roomsDir, `${enc(roomId)}.json`);
    const [text, st] = await Promise.all([readFile(file, 'utf8'), stat(file)]);
    bytes += text.length;
    const bad = (what: string): never => {
      throw new Error(`${label}: ${file}: ${what}`);
    };
    if ((st.mode & 0o777) !== 0o600) bad(`mode ${(st.mode & 0o777).toString(8)}, expected 600`);
    const doc = JSON.parse(text) as Record<string, any>;
    if (doc.room_id !== roomId) bad(`room_id ${doc.room_id}`);
    const fed = doc.federation;
    if (!fed) bad(`no federation part: ${JSON.stringify(doc.errors)}`);
    if (fed.counts.failed !== 0) bad(`${fed.counts.failed} events failed: ${JSON.stringify(fed.rejected.slice(0, 2))}`);
    if (fed.auth_chain_closed !== true) bad(`auth chain open: ${fed.missing_auth_events}`);
    if (fed.matches_current_state !== true) bad(`state differs from the current state: ${JSON.stringify(fed.current_state_differences)}`);
    eventsVerified += fed.counts.verified;
    distinctEvents += fed.counts.distinct_events;
    const ids = [fed.at_event.event_id, ...fed.state.map((e: any) => e.event_id).sort(), '|', ...fed.auth_chain.map((e: any) => e.event_id).sort()];
    fingerprint.set(roomId, `${doc.room_version} ${fed.counts.verified} ${ids.join(',')}`);
  }
  return { fingerprint, eventsVerified, distinctEvents, bytes };
}

function sameDumps(label: string, a: DumpCheck, b: DumpCheck): void {
  for (const [room, fp] of a.fingerprint) {
    if (b.fingerprint.get(room) !== fp) throw new Error(`${label}: ${room} differs between Steward and the plain script:\n  ${fp}\n  ${b.fingerprint.get(room)}`);
  }
}

/** CPU seconds of a process's main thread (its JavaScript), or null once it is gone. */
function mainThreadCpu(pid: number): number | null {
  try {
    const text = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8');
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / CLOCK_TICKS;
  } catch {
    return null;
  }
}
const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

interface ProcessRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** From spawning the process to its exit. */
  readonly seconds: number;
  readonly peakRssKb: number;
  readonly cpu: number;
  /** Of `cpu`, the main thread's: the JavaScript, without V8's helper threads. */
  readonly mainCpu: number;
  readonly synapseCpu: number;
}

/** Runs `node <args>` to its end, sampling its peak RSS (VmHWM) and CPU, and Synapse's CPU meanwhile. */
async function runProcess(ctx: Ctx, args: string[]): Promise<ProcessRun> {
  const synapseBefore = cpuSeconds(ctx.synapsePid) ?? 0;
  const started = performance.now();
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  trackChild(child);
  child.ref();
  const sampler = new ProcSampler(child.pid!, 25);
  let mainCpu = 0;
  const mainSampler = setInterval(() => { mainCpu = mainThreadCpu(child.pid!) ?? mainCpu; }, 25);
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
  clearInterval(mainSampler);
  return { code, stdout, stderr, seconds, peakRssKb: sampler.peakRssKb, cpu: sampler.cpuSeconds, mainCpu, synapseCpu: (cpuSeconds(ctx.synapsePid) ?? 0) - synapseBefore };
}

async function runSteward(ctx: Ctx, label: string, expected: Set<string>, nodeFlags: string[] = []): Promise<RunResult> {
  const out = await mkdtemp(path.join(ctx.outRoot, 'steward-'));
  const { steward } = ctx.setup;
  const p = await runProcess(ctx, [...nodeFlags, MAIN, 'dump', 'rooms', '--out', out, '--concurrency', String(C), '--json', '-c', steward.configPath, '-r', steward.registrationPath]);
  if (p.code !== 0) throw new Error(`${label}: steward exited ${p.code}\nstdout: ${p.stdout.slice(-2000)}\nstderr: ${p.stderr.slice(-2000)}`);
  // With --trace-gc, V8's lines share stdout with the answer (the last JSON line).
  const lines = p.stdout.split('\n');
  const answer = JSON.parse(lines.filter((l) => l.startsWith('{')).pop()!) as { ok: boolean; job: { state: string; failed: number } };
  // The heap left after each full GC: what the process really holds, apart from V8's sizing.
  const live = lines.map((l) => /Mark-Compact [\d.]+ \([\d.]+\) -> ([\d.]+) \(/.exec(l)?.[1]).filter((x): x is string => x !== undefined).map(Number);
  if (!answer.ok || answer.job.state !== 'done' || answer.job.failed !== 0) throw new Error(`${label}: job ended ${answer.job.state} with ${answer.job.failed} failures: ${p.stdout.slice(-2000)}`);
  const dumps = await readdir(out);
  if (dumps.length !== 1) throw new Error(`${label}: expected one dump folder in ${out}, found ${dumps.join(', ')}`);
  const root = path.join(out, dumps[0]!);
  const manifest = JSON.parse(await readFile(path.join(root, 'manifest.json'), 'utf8')) as { state: string; started_ts: number; finished_ts: number; counts: { rooms_dumped: number; rooms_failed: number } };
  if (manifest.state !== 'complete' || manifest.counts.rooms_dumped !== expected.size || manifest.counts.rooms_failed !== 0) {
    throw new Error(`${label}: manifest says ${JSON.stringify({ state: manifest.state, counts: manifest.counts })}, expected ${expected.size} dumped`);
  }
  const check = await verifyDump(label, path.join(root, 'rooms'), expected);
  await rm(out, { recursive: true, force: true });
  const result: RunResult = {
    label, rooms: expected.size, seconds: p.seconds, synapseCpu: p.synapseCpu, check,
    jobSeconds: (manifest.finished_ts - manifest.started_ts) / 1000,
    peakRssKb: p.peakRssKb,
    clientCpu: p.cpu,
    mainCpu: p.mainCpu,
    ...(live.length > 0 ? { liveHeapMb: { max: Math.max(...live), last: live.at(-1)!, count: live.length } } : {}),
  };
  say(`${label}: ${expected.size} rooms in ${p.seconds.toFixed(2)} s (${(expected.size / p.seconds).toFixed(1)} rooms/s; job ${result.jobSeconds!.toFixed(2)} s), peak RSS ${mib(p.peakRssKb)}, CPU steward ${p.cpu.toFixed(1)} s / synapse ${p.synapseCpu.toFixed(1)} s`);
  return result;
}

async function runPlain(ctx: Ctx, label: string, expected: Set<string>): Promise<RunResult> {
  const out = await mkdtemp(path.join(ctx.outRoot, 'plain-'));
  const { hs } = ctx.setup;
  const options = { baseUrl: hs.clientUrl, asToken: ctx.asToken, serverName: hs.serverName, signingKeyPath: hs.signingKeyPath, caFile: path.join(hs.dir, 'tls.crt'), out, concurrency: C };
  const p = await runProcess(ctx, [PLAIN, JSON.stringify(options)]);
  if (p.code !== 0) throw new Error(`${label}: plain script exited ${p.code}\nstderr: ${p.stderr.slice(-2000)}`);
  const r = JSON.parse(p.stdout.trim().split('\n').pop()!) as { roomsDir: string; written: number; failed: unknown[]; seconds: number };
  if (r.failed.length > 0) throw new Error(`${label}: ${r.failed.length} rooms failed, first: ${JSON.stringify(r.failed[0])}`);
  const check = await verifyDump(label, r.roomsDir, expected);
  await rm(out, { recursive: true, force: true });
  const result: RunResult = { label, rooms: r.written, seconds: p.seconds, jobSeconds: r.seconds, peakRssKb: p.peakRssKb, clientCpu: p.cpu, mainCpu: p.mainCpu, synapseCpu: p.synapseCpu, check };
  say(`${label}: ${r.written} rooms in ${p.seconds.toFixed(2)} s (${(r.written / p.seconds).toFixed(1)} rooms/s; dump alone ${r.seconds.toFixed(2)} s), peak RSS ${mib(p.peakRssKb)}, CPU client ${p.cpu.toFixed(1)} s / synapse ${p.synapseCpu.toFixed(1)} s`);
  return result;
}

/** Rooms `from`..`to` (numbered), created by the admin with some state: name, topic, two custom state events, a topic change, a message. */
async function seedRooms(ctx: Ctx, adminToken: string, from: number, to: number): Promise<number> {
  const started = performance.now();
  const url = (p: string): string => `${ctx.setup.hs.clientUrl}/_matrix/client/v3${p}`;
  let done = 0;
  let lastReport = performance.now();
  const numbers = Array.from({ length: to - from + 1 }, (_, i) => from + i);
  await forEachLimit(numbers, SEED_C, async (n) => {
    const created = await callOk<{ room_id: string }>('POST', url('/createRoom'), {
      token: adminToken,
      body: {
        room_version: SEED_VERSIONS[n % SEED_VERSIONS.length],
        name: `bench room ${n}`,
        topic: `first topic of room ${n}`,
        preset: 'private_chat',
        initial_state: [
          { type: 'org.example.bench', state_key: 'a', content: { n, note: 'seeded by bench/federation' } },
          { type: 'org.example.bench', state_key: 'b', content: { n, list: [1, 2, 3] } },
        ],
      },
    });
    const room = enc(created.room_id);
    await callOk('PUT', url(`/rooms/${room}/state/m.room.topic/`), { token: adminToken, body: { topic: `second topic of room ${n}` } });
    await callOk('PUT', url(`/rooms/${room}/send/m.room.message/bench-${n}`), { token: adminToken, body: { msgtype: 'm.text', body: `hello from room ${n}` } });
    done += 1;
    if (performance.now() - lastReport > 10_000) {
      lastReport = performance.now();
      say(`  seeded ${from - 1 + done}/${to}`);
    }
  });
  return (performance.now() - started) / 1000;
}

function rateLine(pair: [Rate, Rate]): string {
  const [nacl, node] = pair;
  return `${nacl.opsPerSecond.toFixed(0).padStart(7)} ops/s (${fmtMicros(nacl.microsPerOp)}) | ${node.opsPerSecond.toFixed(0).padStart(7)} ops/s (${fmtMicros(node.microsPerOp)}) | node/tweetnacl ${(node.opsPerSecond / nacl.opsPerSecond).toFixed(1)}x`;
}
const fmtMicros = (us: number): string => (us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(0)} µs`);

async function partA(serverName: string): Promise<CryptoResults> {
  const key = signingKeyFromSeed('a_bench', new Uint8Array(32).map((_, i) => (i * 7 + 3) % 256));
  const v = roomVersion('10');
  if (!key.ok || !v.ok) throw new Error('bench key or room version');
  say(`(a) sign + verify: ${EVENTS} events, tweetnacl vs node:crypto`);
  return runCryptoBench({ events: EVENTS, passes: PASSES, key: key.value, version: v.value, serverName, roomId: `!bench:${serverName}`, say });
}

interface PartB {
  /** Steward with V8's young generation capped: what its RSS does apart from V8's new-space sizing. */
  readonly cappedSmall: RunResult;
  readonly cappedBig: RunResult;
  readonly synapseVersion: string;
  readonly startup: number;
  readonly seedSeconds: number;
  readonly expectedSmall: number;
  readonly expected: number;
  readonly small: RunResult[];
  readonly a: RunResult[];
  readonly b: RunResult[];
}

async function partB(outRoot: string): Promise<PartB> {
  let setup: StewardSetup | undefined;
  const hs = await prepareSynapse({ name: 'bench-fed', federation: true });
  try {
    say('(b) starting Synapse (with its federation listener) and Steward (test rig)');
    setup = await attachSteward(hs, {
      config: {
        // `info` is the shipped default; the rig's `debug` would not be what an admin runs.
        logging: { level: 'info' },
        federation: { signing_key_path: hs.signingKeyPath, address_allowlist: ['127.0.0.0/8', '::1/128'], ca_file: path.join(hs.dir, 'tls.crt') },
      },
    });
    // Only the CLI is measured; the service would share the job database and Synapse's CPU.
    await setup.steward.stop();
    const { steward, admin } = setup;
    const registration = await readFile(steward.registrationPath, 'utf8');
    const asToken = /as_token:\s*["']?([^\s"']+)/.exec(registration)?.[1];
    if (!asToken) throw new Error(`no as_token in ${steward.registrationPath}`);
    const synapsePid = findPid(hs.configPath);
    if (synapsePid === null) throw new Error('cannot find the Synapse process');
    const loaded = await loadSigningKey(hs.signingKeyPath);
    if (!loaded.ok) throw new Error(loaded.error.log);
    const ctx: Ctx = { setup, asToken, signingKey: loaded.value.key, ca: await readFile(path.join(hs.dir, 'tls.crt'), 'utf8'), synapsePid, outRoot };
    const version = await callOk<{ server_version: string }>('GET', `${hs.clientUrl}/_synapse/admin/v1/server_version`, { token: admin.accessToken });
    const startup = await cliStartupSeconds(MAIN);
    say(`Synapse ${version.server_version} (pid ${synapsePid}); steward CLI start-up ${startup.toFixed(2)} s`);

    say(`seeding rooms 1..${SMALL} (versions ${SEED_VERSIONS.join(', ')} in turn)`);
    const seedSmall = await seedRooms(ctx, admin.accessToken, 1, SMALL);
    const expectedSmall = await expectedRooms(ctx);
    say(`seeded ${SMALL} rooms in ${seedSmall.toFixed(1)} s; the server lists ${expectedSmall.size} rooms`);
    await runPlain(ctx, `warm-up (plain, ${expectedSmall.size} rooms)`, expectedSmall);
    const small: RunResult[] = [];
    for (let i = 0; i < REPEAT; i++) small.push(await runSteward(ctx, `steward @${expectedSmall.size} #${i + 1}`, expectedSmall));
    const cappedSmall = await runSteward(ctx, `steward @${expectedSmall.size}, ${CAPPED.join(' ')} (diagnostic)`, expectedSmall, CAPPED);

    let seedBig = 0;
    if (N > SMALL) {
      say(`seeding rooms ${SMALL + 1}..${N}`);
      seedBig = await seedRooms(ctx, admin.accessToken, SMALL + 1, N);
    }
    const expected = await expectedRooms(ctx);
    say(`seeded ${N} rooms in ${(seedSmall + seedBig).toFixed(1)} s in all; the server lists ${expected.size} rooms`);
    await runPlain(ctx, `warm-up (plain, ${expected.size} rooms)`, expected);
    const a: RunResult[] = [];
    const b: RunResult[] = [];
    for (let i = 0; i < REPEAT; i++) {
      // Alternate the order so neither side always runs second.
      const runA = async (): Promise<void> => { a.push(await runSteward(ctx, `(a) steward #${i + 1}`, expected)); };
      const runB = async (): Promise<void> => { b.push(await runPlain(ctx, `(b) plain c=${C} #${i + 1}`, expected)); };
      if (i % 2 === 0) {
        await runA();
        await runB();
      } else {
        await runB();
        await runA();
      }
      sameDumps(`run #${i + 1}`, a[i]!.check, b[i]!.check);
    }
    const cappedBig = await runSteward(ctx, `steward @${expected.size}, ${CAPPED.join(' ')} (diagnostic)`, expected, CAPPED);
    return { cappedSmall, cappedBig, synapseVersion: version.server_version, startup, seedSeconds: seedSmall + seedBig, expectedSmall: expectedSmall.size, expected: expected.size, small, a, b };
  } finally {
    await setup?.steward.stop().catch(() => undefined);
    await hs.cleanup().catch((err: unknown) => say(`cleanup failed: ${String(err)}`));
  }
}

async function main(): Promise<void> {
  say(`part ${PART}; events ${EVENTS}, passes ${PASSES}; rooms ${N}, small ${SMALL}, concurrency ${C}, repeat ${REPEAT}, seed concurrency ${SEED_C}`);
  const outRoot = await mkdtemp(path.join(os.tmpdir(), 'steward-bench-federation-'));
  trackDir(outRoot);
  try {
    const crypto = PART === 'b' ? null : await partA('bench.example.org');
    const dump = PART === 'a' ? null : await partB(outRoot);
    const verdict = (okay: boolean): string => (okay ? 'PASS' : 'FAIL');
    const lines = ['', '=== bench/federation: results ===', `machine        ${os.availableParallelism()} cores (${os.cpus()[0]?.model ?? '?'}), ${mib(os.totalmem() / 1024)} RAM, load average ${os.loadavg()[0]!.toFixed(1)}; Node ${process.version}`];
    if (crypto) {
      lines.push(
        `(a) Ed25519, ${crypto.events} realistic events (room v10; messages, members, reactions, state, power levels), median of ${PASSES} pass(es), per CPU second; signatures byte-identical: ${crypto.identical ? 'yes' : 'NO'}`,
        '                              tweetnacl                      | node:crypto (Steward; KeyObject, same seed)',
        `  sign, primitive            ${rateLine(crypto.signPrimitive)}`,
        `  verify, primitive          ${rateLine(crypto.verifyPrimitive)}`,
        `  sign path (hashAndSignEvent: content hash, redact, canonical JSON, sign)`,
        `                             ${rateLine(crypto.signPath)}`,
        `  verify path (verifyEvent: event id, redact, canonical JSON, verify, content hash)`,
        `                             ${rateLine(crypto.verifyPath)}`,
        `  the rest of the path alone ${crypto.canonicalOnly.opsPerSecond.toFixed(0).padStart(7)} ops/s (${fmtMicros(crypto.canonicalOnly.microsPerOp)}): hashes, redaction, canonical JSON without any signature`,
        `  Steward's path             the signature is ${pct(crypto.signPrimitive[1].microsPerOp / crypto.signPath[1].microsPerOp)} of signing an event and ${pct(crypto.verifyPrimitive[1].microsPerOp / crypto.verifyPath[1].microsPerOp)} of verifying one with node:crypto; with tweetnacl it would be nearly all of both`,
      );
    }
    if (dump) {
      const secs = (rs: RunResult[]): number => median(rs.map((r) => r.seconds));
      const runs = (rs: RunResult[]): string => rs.map((r) => r.seconds.toFixed(2)).join(', ');
      const ab = secs(dump.a) / secs(dump.b);
      const abJob = median(dump.a.map((r) => r.jobSeconds!)) / median(dump.b.map((r) => r.jobSeconds!));
      const rssBig = Math.max(...dump.a.map((r) => r.peakRssKb!));
      const rssSmall = Math.max(...dump.small.map((r) => r.peakRssKb!));
      const check = dump.a[0]!.check;
      const stewardCpu = median(dump.a.map((r) => r.clientCpu));
      const stewardMainCpu = median(dump.a.map((r) => r.mainCpu));
      lines.push(
        `(b) dump rooms on Synapse ${dump.synapseVersion} (SQLite, one process): ${dump.expected} rooms (${N} seeded in ${dump.seedSeconds.toFixed(0)} s, versions ${SEED_VERSIONS.join('/')}; + admin and status rooms)`,
        `    per room 4 admin calls + 2 federation calls to our own server (/state at the latest event, /event), signed; concurrency ${C}; median of ${REPEAT} run(s)`,
        `    ${check.eventsVerified} events in the files (${(check.eventsVerified / dump.expected).toFixed(1)} per room), ${check.distinctEvents} signature checks (distinct events per room), ${mib(check.bytes / 1024)} of JSON; identical between (a) and (b)`,
        `  (a) steward    ${(dump.expected / secs(dump.a)).toFixed(1).padStart(6)} rooms/s  ${secs(dump.a).toFixed(2)} s  [runs ${runs(dump.a)}]  (CLI process wall time; job alone ${median(dump.a.map((r) => r.jobSeconds!)).toFixed(2)} s; start-up ${dump.startup.toFixed(2)} s)`,
        `  (b) plain c=${C}  ${(dump.expected / secs(dump.b)).toFixed(1).padStart(6)} rooms/s  ${secs(dump.b).toFixed(2)} s  [runs ${runs(dump.b)}]  (a process of its own too; dump alone ${median(dump.b.map((r) => r.jobSeconds!)).toFixed(2)} s; verifies every event with the same verifyEvent)`,
        `  (a)/(b)        ${ab.toFixed(2)}  (time ratio, target <= 1.3: ${verdict(ab <= 1.3)}; job alone ${abJob.toFixed(2)})`,
        `  CPU of run     steward ${stewardCpu.toFixed(1)} s (main thread ${stewardMainCpu.toFixed(1)} s) / plain ${median(dump.b.map((r) => r.clientCpu)).toFixed(1)} s (main thread ${median(dump.b.map((r) => r.mainCpu)).toFixed(1)} s): ratio ${(stewardCpu / median(dump.b.map((r) => r.clientCpu))).toFixed(2)}, steadier than wall time on a busy machine; synapse ${median(dump.a.map((r) => r.synapseCpu)).toFixed(1)} s / ${median(dump.b.map((r) => r.synapseCpu)).toFixed(1)} s`,
        `  peak RSS       steward ${mib(rssBig)} / plain script ${mib(Math.max(...dump.b.map((r) => r.peakRssKb!)))} dumping ${dump.expected} rooms`,
        `  RSS vs rooms   ${mib(rssSmall)} @ ${dump.expectedSmall} rooms -> ${mib(rssBig)} @ ${dump.expected} rooms: ratio ${(rssBig / rssSmall).toFixed(2)} (flat, target <= 1.2: ${verdict(rssBig / rssSmall <= 1.2)})`,
        `  diagnostic     with ${CAPPED.join(' ')} (V8's young generation pinned): RSS ${mib(dump.cappedSmall.peakRssKb!)} @ ${dump.expectedSmall} rooms -> ${mib(dump.cappedBig.peakRssKb!)} @ ${dump.expected} rooms, ratio ${(dump.cappedBig.peakRssKb! / dump.cappedSmall.peakRssKb!).toFixed(2)};`,
        `                 heap left after full GCs, max ${liveMb(dump.cappedSmall)} @ ${dump.expectedSmall} rooms -> ${liveMb(dump.cappedBig)} @ ${dump.expected} rooms (what Steward holds; ${dump.cappedBig.seconds.toFixed(1)} s for ${dump.expected} rooms)`,
      );
      if (crypto) {
        const signs = 2 * dump.expected;
        const naclCpu = (check.distinctEvents * crypto.verifyPrimitive[0].microsPerOp + signs * crypto.signPrimitive[0].microsPerOp) / 1e6;
        const nodeCpu = (check.distinctEvents * crypto.verifyPrimitive[1].microsPerOp + signs * crypto.signPrimitive[1].microsPerOp) / 1e6;
        lines.push(
          `Ed25519 in the dump: ${check.distinctEvents} verifications + ${signs} request signatures ≈ ${nodeCpu.toFixed(1)} s of CPU with node:crypto (Steward now),`,
          `  ≈ ${naclCpu.toFixed(1)} s with tweetnacl, at the rates of (a): ${pct(naclCpu / stewardMainCpu)} of the ${stewardMainCpu.toFixed(1)} s the whole dump now takes on Steward's main thread.`,
          `  => ${naclCpu / stewardMainCpu > 0.3 ? 'tweetnacl would be the bottleneck of dump rooms (and of anything that verifies many events); with node:crypto the signatures are' : 'tweetnacl would not be the bottleneck; with node:crypto the signatures are'} ${pct(nodeCpu / stewardMainCpu)} of the dump's main-thread CPU.`,
        );
      }
    }
    lines.push(`bench time     ${((performance.now() - benchStart) / 1000).toFixed(0)} s in all`, '');
    process.stdout.write(lines.join('\n'));
  } finally {
    await rm(outRoot, { recursive: true, force: true });
    untrackDir(outRoot);
  }
}

function liveMb(r: RunResult): string {
  return r.liveHeapMb ? `${r.liveHeapMb.max.toFixed(1)} MB (${r.liveHeapMb.count} GCs, last ${r.liveHeapMb.last.toFixed(1)} MB)` : 'n/a (no full GC)';
}

function pct(x: number): string {
  return `${Math.round(x * 100)}%`;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
