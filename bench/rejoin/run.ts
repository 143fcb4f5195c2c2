// Benchmark of `steward rejoin all` on the two-server rig (issue 4 §4).
//
//   node bench/rejoin/run.ts [--rooms 100] [--users-per-room 3] [--concurrency 4] [--repeat 1]
//
// Server B holds `--rooms` public rooms; on server A (Steward attached, rate limits raised as
// the rig does, registration with rate_limited: false) `--users-per-room` local users join each
// (from a pool of ten times as many users), after A's database was backed up. A is then restored
// from the backup, so it has lost every room. Each run restores it again and times:
//   (a) the real `steward rejoin all` CLI process (rooms recorded as lost in its store), and
//   (b) a plain script making the same timestamp_to_event, /state and join requests with the
//       same concurrency (bench/rejoin/plain-rejoin.ts), in this process.
// Every run's outcome is checked: every user must be back in every room. Prints a result block
// on stdout (progress on stderr); writes nothing into the repository.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { FederationClient } from '../../src/federation/federation-client.ts';
import { loadSigningKey } from '../../src/federation/index.ts';
import { createLogger } from '../../src/log.ts';
import { LostRoomStore } from '../../src/recovery/lost-rooms.ts';
import { openDatabase } from '../../src/store/database.ts';
import { trackChild } from '../../test/rig/reaper.ts';
import { MAIN, attachSteward } from '../../test/rig/steward.ts';
import { prepareSynapse } from '../../test/rig/synapse.ts';
import { callOk } from '../lib/http.ts';
import { forEachLimit } from '../lib/pool.ts';
import { ProcSampler } from '../lib/proc.ts';
import { plainRejoin } from './plain-rejoin.ts';

const { values: flags } = parseArgs({
  options: {
    rooms: { type: 'string', default: '100' },
    'users-per-room': { type: 'string', default: '3' },
    concurrency: { type: 'string', default: '4' },
    repeat: { type: 'string', default: '1' },
  },
  strict: true,
});
const positiveInt = (name: string, v: string | undefined): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${v}`);
  return n;
};
const ROOMS = positiveInt('rooms', flags.rooms);
const PER_ROOM = positiveInt('users-per-room', flags['users-per-room']);
const C = positiveInt('concurrency', flags.concurrency);
const REPEAT = positiveInt('repeat', flags.repeat);
const POOL = PER_ROOM * 10;
const LOOPBACK = ['127.0.0.0/8', '::1/128'];

const benchStart = performance.now();
const say = (msg: string): void => {
  process.stderr.write(`[bench ${((performance.now() - benchStart) / 1000).toFixed(1).padStart(6)}s] ${msg}\n`);
};
const mib = (kb: number): string => `${(kb / 1024).toFixed(1)} MiB`;

interface Run {
  readonly label: string;
  readonly seconds: number;
  readonly jobSeconds?: number;
  readonly peakRssKb?: number;
  readonly cpuSeconds?: number;
}

async function main(): Promise<void> {
  const [hsA, hsB] = await Promise.all([prepareSynapse({ name: 'bench-a', federation: true }), prepareSynapse({ name: 'bench-b', federation: true })]);
  try {
    const [s] = await Promise.all([
      attachSteward(hsA, {
        config: {
          federation: { signing_key_path: hsA.signingKeyPath, address_allowlist: LOOPBACK, insecure_skip_tls_verify: true },
          recovery: { room_concurrency: C, join_concurrency: C },
        },
      }),
      hsB.start(),
    ]);
    await s.steward.stop(); // only the CLI runs during the bench
    const asToken = s.steward.asToken;
    say(`servers up: A ${hsA.serverName} (Steward), B ${hsB.serverName}`);

    const users: string[] = [];
    await forEachLimit(Array.from({ length: POOL }, (_, i) => i), 8, async (i) => {
      users[i] = (await hsA.registerUser(`user${i}`)).userId;
    });
    const b1 = await hsB.registerUser('b1');
    await hsA.stop();
    const backup = await hsA.backupDatabase();
    await hsA.start();

    const rooms: string[] = [];
    await forEachLimit(Array.from({ length: ROOMS }, (_, i) => i), 8, async (i) => {
      rooms[i] = (await callOk<{ room_id: string }>('POST', `${hsB.clientUrl}/_matrix/client/v3/createRoom`, { token: b1.accessToken, body: { preset: 'public_chat', name: `bench ${i}` } })).room_id;
    });
    const membersOf = (i: number): string[] => Array.from({ length: PER_ROOM }, (_, k) => users[(i * PER_ROOM + k) % POOL]!);
    const joins = rooms.flatMap((roomId, i) => membersOf(i).map((user) => ({ roomId, user })));
    const joinAs = (roomId: string, user: string): Promise<unknown> =>
      callOk('POST', `${hsA.clientUrl}/_matrix/client/v3/join/${encodeURIComponent(roomId)}?via=${encodeURIComponent(hsB.serverName)}&user_id=${encodeURIComponent(user)}`, { token: asToken, body: {} });
    // Per room: one remote join, wait for the room's full state, then the others join locally.
    await forEachLimit(rooms.map((roomId, i) => ({ roomId, members: membersOf(i) })), 8, async ({ roomId, members }) => {
      const [first, ...rest] = members;
      await joinAs(roomId, first!);
      await callOk('GET', `${hsA.clientUrl}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/members?user_id=${encodeURIComponent(first!)}`, { token: asToken });
      for (const user of rest) await joinAs(roomId, user);
    });
    // B must see every membership: it is what B will answer when asked for the state.
    for (const [i, roomId] of rooms.entries()) {
      for (let attempt = 0; ; attempt++) {
        const seen = await callOk<{ joined: Record<string, unknown> }>('GET', `${hsB.clientUrl}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/joined_members`, { token: b1.accessToken });
        if (membersOf(i).every((u) => u in seen.joined)) break;
        if (attempt > 100) throw new Error(`B does not see every member of ${roomId}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    say(`${ROOMS} rooms on B, ${joins.length} memberships of ${POOL} users of A`);

    const store = new LostRoomStore(openDatabase(s.steward.dbPath));
    for (const roomId of rooms) store.add(roomId, hsB.serverName, 'bench');

    const loseRooms = async (): Promise<void> => {
      await hsA.stop();
      await hsA.restoreDatabase(backup);
      await hsA.start();
      const joined = await callOk<{ joined_rooms: string[] }>('GET', `${hsA.clientUrl}/_matrix/client/v3/joined_rooms?user_id=${encodeURIComponent(users[0]!)}`, { token: asToken });
      if (joined.joined_rooms.some((r) => rooms.includes(r))) throw new Error('the restore did not lose the rooms');
    };
    const check = async (label: string): Promise<void> => {
      let missing = 0;
      await forEachLimit(users, 8, async (user) => {
        const joined = new Set((await callOk<{ joined_rooms: string[] }>('GET', `${hsA.clientUrl}/_matrix/client/v3/joined_rooms?user_id=${encodeURIComponent(user)}`, { token: asToken })).joined_rooms);
        rooms.forEach((roomId, i) => {
          if (membersOf(i).includes(user) && !joined.has(roomId)) missing += 1;
        });
      });
      if (missing > 0) throw new Error(`${label}: ${missing} of ${joins.length} memberships were not restored`);
    };

    const key = await loadSigningKey(hsA.signingKeyPath);
    if (!key.ok) throw new Error(key.error.log);
    const fed = await FederationClient.create(
      { serverName: hsA.serverName, signingKey: key.value.key, allowlist: LOOPBACK, insecureSkipTlsVerify: true, timeoutMs: 30_000, maxRetries: 2 },
      { log: createLogger({ level: 'silent' }) },
    );
    if (!fed.ok) throw new Error(fed.error.log);

    const stewardRun = async (): Promise<Run> => {
      await loseRooms();
      const started = performance.now();
      const child = spawn(process.execPath, [MAIN, 'rejoin', 'all', '-c', s.steward.configPath, '-r', s.steward.registrationPath], { stdio: ['ignore', 'pipe', 'pipe'] });
      trackChild(child);
      child.ref();
      const sampler = new ProcSampler(child.pid!, 25);
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
      child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
      const code = await new Promise<number>((resolve) => child.once('exit', (c) => resolve(c ?? 1)));
      const seconds = (performance.now() - started) / 1000;
      sampler.stop();
      if (code !== 0) throw new Error(`steward rejoin all exited ${code}: ${stderr}\n${stdout}`);
      const reportPath = /Report: (\S+)/.exec(stdout)?.[1];
      if (!reportPath) throw new Error(`no report in: ${stdout}`);
      const report = JSON.parse(await readFile(reportPath, 'utf8'));
      if (report.totals.rejoined !== joins.length) throw new Error(`steward rejoined ${report.totals.rejoined} of ${joins.length}:\n${stdout}`);
      await check('steward');
      const jobSeconds = (report.finished_ts - report.started_ts) / 1000;
      say(`steward: ${seconds.toFixed(2)} s wall, job ${jobSeconds.toFixed(2)} s, peak RSS ${mib(sampler.peakRssKb)}, CPU ${sampler.cpuSeconds.toFixed(1)} s`);
      return { label: 'steward', seconds, jobSeconds, peakRssKb: sampler.peakRssKb, cpuSeconds: sampler.cpuSeconds };
    };
    const plainRun = async (): Promise<Run> => {
      await loseRooms();
      const started = performance.now();
      const { joined } = await plainRejoin({ fed: fed.value, clientUrl: hsA.clientUrl, asToken, ownServer: hsA.serverName, rooms: rooms.map((roomId) => ({ roomId, server: hsB.serverName })), roomConcurrency: C, joinConcurrency: C });
      const seconds = (performance.now() - started) / 1000;
      if (joined !== joins.length) throw new Error(`plain script joined ${joined} of ${joins.length}`);
      await check('plain');
      say(`plain script: ${seconds.toFixed(2)} s`);
      return { label: 'plain', seconds };
    };

    const runs: Run[] = [];
    for (let r = 0; r < REPEAT; r++) {
      if (r % 2 === 0) runs.push(await stewardRun(), await plainRun());
      else runs.push(await plainRun(), await stewardRun());
    }
    fed.value.close();
    const best = (label: string, pick: (r: Run) => number): number => Math.min(...runs.filter((r) => r.label === label).map(pick));
    const stewardJob = best('steward', (r) => r.jobSeconds!);
    const stewardWall = best('steward', (r) => r.seconds);
    const plain = best('plain', (r) => r.seconds);
    const peak = Math.max(...runs.filter((r) => r.label === 'steward').map((r) => r.peakRssKb!));
    const cpu = Math.min(...runs.filter((r) => r.label === 'steward').map((r) => r.cpuSeconds!));
    const lines = [
      `rejoin benchmark: ${ROOMS} lost rooms × ${PER_ROOM} local users (${joins.length} joins), concurrency ${C}, best of ${REPEAT}`,
      `  steward rejoin all (job):    ${stewardJob.toFixed(2)} s  (${((ROOMS / stewardJob) * 60).toFixed(0)} rooms/min)`,
      `  steward rejoin all (process): ${stewardWall.toFixed(2)} s  (${((ROOMS / stewardWall) * 60).toFixed(0)} rooms/min, incl. start-up)`,
      `  plain script:                ${plain.toFixed(2)} s  (${((ROOMS / plain) * 60).toFixed(0)} rooms/min)`,
      `  ratio steward/plain: job ${(stewardJob / plain).toFixed(2)}, process ${(stewardWall / plain).toFixed(2)} (target ≤ 1.3)`,
      `  steward peak RSS: ${mib(peak)}; CPU ${cpu.toFixed(1)} s (process, incl. start-up)`,
      `  every run, in order: ${runs.map((r) => `${r.label} ${(r.jobSeconds ?? r.seconds).toFixed(1)} s`).join(', ')}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await Promise.all([hsA.cleanup(), hsB.cleanup()]);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  },
);
