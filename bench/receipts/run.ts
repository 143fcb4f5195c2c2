// Benchmark of read-receipt mirroring across two federating Synapses, each with its own Steward
// (issue 5 §5).
//
//   node bench/receipts/run.ts [--receipts 500] [--warmup 20]
//   scripts/dev bench receipts [same flags]
//
// alice@A and alice@B are linked (test directory on 127.0.0.1). bob@A's room holds alice@A,
// alice@B and carol@B, a plain client on B. alice@A sends N read receipts, one message at a time.
// For each, from the moment her receipt request returns:
//   mirror — until alice@B's own receipt at that message shows in alice@B's /sync (Steward B);
//   floor  — until alice@A's receipt shows in carol@B's /sync: Synapse delivering the same receipt
//            from A to a plain client on B, which the mirror path cannot beat.
// Both are watched by long-polling /sync clients running side by side. CPU per mirrored receipt is
// the Steward processes' user+system time (/proc/<pid>/stat) over the measured phase, divided by N.
// Checks that every receipt was mirrored exactly once. Prints a result block on stdout.
import { parseArgs } from 'node:util';
import { MatrixTestClient } from '../../test/rig/client.ts';
import { startStewardPair, type StewardSetup } from '../../test/rig/steward.ts';
import { eventually, ReceiptWatcher, startTestDirectory } from '../../test/e2e/linked-helpers.ts';
import { cpuSeconds, findPid } from '../lib/proc.ts';

const { values: flags } = parseArgs({
  options: {
    receipts: { type: 'string', default: '500' },
    warmup: { type: 'string', default: '20' },
  },
  strict: true,
});
const N = Number(flags.receipts);
const WARMUP = Number(flags.warmup);
if (!Number.isInteger(N) || N < 1 || !Number.isInteger(WARMUP) || WARMUP < 0) throw new Error('--receipts must be ≥ 1 and --warmup ≥ 0');

const benchStart = performance.now();
const say = (msg: string): void => {
  process.stderr.write(`[bench ${((performance.now() - benchStart) / 1000).toFixed(1).padStart(6)}s] ${msg}\n`);
};
const percentile = (xs: readonly number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};
const ms = (x: number): string => `${x.toFixed(1)} ms`;

async function user(s: StewardSetup, localpart: string): Promise<MatrixTestClient> {
  const u = await s.hs.registerUser(localpart, { password: `${localpart}-password` });
  return new MatrixTestClient(s.hs.clientUrl, u.userId, u.accessToken);
}

async function main(): Promise<void> {
  const directory = await startTestDirectory();
  const linked = {
    enabled: true,
    directory: { url: directory.urlTemplate, timeout_ms: 2000, cache_seconds: 3600, negative_cache_seconds: 60, address_allowlist: ['127.0.0.1/32'] },
  };
  say('starting two Synapses, each with its Steward');
  const pair = await startStewardPair({
    both: true,
    a: { config: { linked_accounts: linked, logging: { level: 'info' } } },
    b: { config: { linked_accounts: linked, logging: { level: 'info' } } },
  });
  const a = pair.a;
  const b = pair.b as StewardSetup;
  const watchers: ReceiptWatcher[] = [];
  try {
    const [aliceA, bob, aliceB, carol] = await Promise.all([user(a, 'alice'), user(a, 'bob'), user(b, 'alice'), user(b, 'carol')]);
    directory.link(aliceA.userId, aliceB.userId);

    const room = await bob.createRoom({ preset: 'private_chat', name: 'receipts bench' });
    await bob.invite(room, aliceA.userId);
    await aliceA.join(room);
    await eventually('alice@B auto-joined', async () => (await aliceB.joinedRooms()).includes(room), 60_000);
    await bob.invite(room, carol.userId);
    await carol.join(room, [a.hs.serverName]);

    say(`sending ${WARMUP + N} messages`);
    const events: string[] = [];
    for (let i = 0; i < WARMUP + N; i++) events.push(await bob.sendText(room, `message ${i}`));
    await eventually('all messages reached B', async () => (await carol.request('GET', `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/event/${encodeURIComponent(events.at(-1)!)}`)).event_id);

    const mirrorWatch = new ReceiptWatcher(aliceB, room);
    const floorWatch = new ReceiptWatcher(carol, room);
    watchers.push(mirrorWatch, floorWatch);
    await Promise.all(watchers.map((w) => w.start()));

    const pids = {
      stewardA: findPid(a.steward.configPath),
      stewardB: findPid(b.steward.configPath),
      synapseA: findPid(a.hs.configPath),
      synapseB: findPid(b.hs.configPath),
    };
    if (!pids.stewardA || !pids.stewardB) throw new Error(`cannot find the Steward processes: ${JSON.stringify(pids)}`);

    const one = async (eventId: string): Promise<{ mirror: number; floor: number }> => {
      await aliceA.sendReceipt(room, eventId);
      const t0 = performance.now();
      const [floor, mirror] = await Promise.all([floorWatch.waitFor(aliceA.userId, eventId, { timeoutMs: 30_000 }), mirrorWatch.waitFor(aliceB.userId, eventId, { timeoutMs: 30_000 })]);
      return { mirror: Math.max(0, mirror.seenAt - t0), floor: Math.max(0, floor.seenAt - t0) };
    };

    say(`warm-up: ${WARMUP} receipts`);
    for (const e of events.slice(0, WARMUP)) await one(e);

    const cpu0 = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, pid ? cpuSeconds(pid) ?? 0 : 0]));
    say(`measuring: ${N} receipts, one at a time`);
    const mirror: number[] = [];
    const floor: number[] = [];
    const started = performance.now();
    for (const [i, e] of events.slice(WARMUP).entries()) {
      const r = await one(e);
      mirror.push(r.mirror);
      floor.push(r.floor);
      if ((i + 1) % 100 === 0) say(`${i + 1}/${N}`);
    }
    const wall = (performance.now() - started) / 1000;
    const cpu1 = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, pid ? cpuSeconds(pid) ?? 0 : 0]));
    const cpu = (k: string): number => (cpu1[k]! - cpu0[k]!);

    // Exactly once: Steward B mirrored each message once, Steward A none back.
    const measured = new Set(events);
    const mirroredB = (await b.steward.logLines()).filter((l) => l.msg === 'mirrored a read receipt' && measured.has(String(l.eventId)));
    const mirroredA = (await a.steward.logLines()).filter((l) => l.msg === 'mirrored a read receipt' && measured.has(String(l.eventId)));
    const distinct = new Set(mirroredB.map((l) => l.eventId)).size;
    if (mirroredB.length !== WARMUP + N || distinct !== WARMUP + N || mirroredA.length !== 0) {
      throw new Error(`not exactly once: Steward B mirrored ${mirroredB.length} (${distinct} distinct) of ${WARMUP + N}; Steward A bounced ${mirroredA.length}`);
    }

    const row = (label: string, xs: number[]): string => `${label.padEnd(8)} p50 ${ms(percentile(xs, 50)).padStart(9)}  p95 ${ms(percentile(xs, 95)).padStart(9)}  p99 ${ms(percentile(xs, 99)).padStart(9)}  max ${ms(Math.max(...xs)).padStart(9)}`;
    const ratio = percentile(mirror, 99) / percentile(floor, 99);
    const extra = mirror.map((m, i) => m - floor[i]!);
    const lines = [
      '',
      `receipts bench: ${N} receipts by alice@A (after ${WARMUP} warm-up), one at a time, ${wall.toFixed(1)} s`,
      `latency from alice@A's receipt request returning to the receipt visible in /sync on B:`,
      row('floor', floor) + '   (alice@A\'s receipt, seen by carol@B: Synapse federation alone)',
      row('mirror', mirror) + '   (alice@B\'s mirrored receipt, seen by alice@B)',
      row('mirror−floor', extra).replace('mirror−floor', 'added  '),
      `p99 mirror / p99 floor: ${ratio.toFixed(2)}× (target ≤ 2×)`,
      `CPU per mirrored receipt: Steward B ${((cpu('stewardB') / N) * 1000).toFixed(2)} ms, Steward A ${((cpu('stewardA') / N) * 1000).toFixed(2)} ms (sees the echo), both ${(((cpu('stewardA') + cpu('stewardB')) / N) * 1000).toFixed(2)} ms`,
      `CPU per receipt, for scale: Synapse A ${((cpu('synapseA') / N) * 1000).toFixed(2)} ms, Synapse B ${((cpu('synapseB') / N) * 1000).toFixed(2)} ms`,
      `exactly once: Steward B mirrored ${mirroredB.length} of ${WARMUP + N} (all distinct), Steward A bounced 0`,
      '',
    ];
    process.stdout.write(lines.join('\n'));
  } finally {
    await Promise.all(watchers.map((w) => w.stop()));
    await Promise.all([a.steward.stop(), b.steward.stop()]);
    await Promise.all([a.hs.cleanup(), b.hs.cleanup()]);
    await directory.close();
  }
}

main().then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
