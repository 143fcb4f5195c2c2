// Benchmark of `steward restore users` against a real Synapse (the test rig's), issue 9 §5.
//
//   node bench/restore/run.ts [--users 2000] [--small 500] [--concurrency 4]
//   scripts/dev bench restore [same flags]
//
// Generates two user dumps the way dump users writes them (manifest with checksums, password
// hashes): `--small` and `--users` users, each with a profile, global and room account data, the
// server's default push rules with one changed and one rule of their own, two devices, an HTTP
// pusher, a key backup with two sessions and a cross-signing master key. Then, each time into an
// empty Synapse (its database deleted; same server name and signing key, as after a total loss):
// (a) the real `steward restore users` CLI process with --synapse-db, at `--small` and at `--users`
// users (its peak RSS at both), (b) a plain script making the same calls with the same concurrency
// (bench/restore/plain-restore.ts). Every run is checked: all users restored, none failed, a sample
// read back. Prints a result block on stdout (progress on stderr); writes nothing into the repository.
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { CHECKSUM_ALGORITHM, fileSha256, sectionChecksums } from '../../src/dump/dump-checksums.ts';
import { fileNameFor, writeJson } from '../../src/dump/dump-files.ts';
import { trackChild, trackDir, untrackDir } from '../../test/rig/reaper.ts';
import { MAIN, startStewardWithSynapse, type StewardSetup } from '../../test/rig/steward.ts';
import { call, callOk } from '../lib/http.ts';
import { cpuSeconds, findPid, machineBusySeconds, ProcSampler } from '../lib/proc.ts';
import { plainRestoreUsers } from './plain-restore.ts';

const { values: flags } = parseArgs({
  options: { users: { type: 'string', default: '2000' }, small: { type: 'string', default: '500' }, concurrency: { type: 'string', default: '4' } },
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

const benchStart = performance.now();
const say = (msg: string): void => {
  process.stderr.write(`[bench ${((performance.now() - benchStart) / 1000).toFixed(1).padStart(6)}s] ${msg}\n`);
};
const mib = (kb: number): string => `${(kb / 1024).toFixed(1)} MiB`;
const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString('base64').replace(/=+$/, '');

interface Ctx {
  readonly setup: StewardSetup;
  adminToken: string;
  readonly outRoot: string;
}

/** Total loss: the database is deleted and Synapse starts empty; an admin and Steward's bot (admin) are made again. */
async function emptyServer(ctx: Ctx): Promise<void> {
  const { hs, steward } = ctx.setup;
  await hs.stop();
  for (const suffix of ['', '-wal', '-shm', '-journal']) await rm(hs.dbPath + suffix, { force: true });
  await hs.start();
  const admin = await hs.registerUser('admin', { admin: true, password: 'admin-password' });
  ctx.adminToken = admin.accessToken;
  const localpart = steward.botUserId.slice(1, steward.botUserId.indexOf(':'));
  const reg = await call('POST', `${hs.clientUrl}/_matrix/client/v3/register`, { token: steward.asToken, body: { type: 'm.login.application_service', username: localpart, inhibit_login: true } });
  if (reg.status !== 200) throw new Error(`registering the bot: ${reg.status} ${reg.text}`);
  await callOk('PUT', `${hs.clientUrl}/_synapse/admin/v2/users/${encodeURIComponent(steward.botUserId)}`, { token: admin.accessToken, body: { admin: true } });
}

/** A dump of `count` users as dump users writes it, from the server's own default push rules and a real bcrypt hash. */
async function generateDump(ctx: Ctx, count: number): Promise<string> {
  const { hs } = ctx.setup;
  const root = await mkdtemp(path.join(ctx.outRoot, `dump-${count}-`));
  const defaults = (await callOk('GET', `${hs.clientUrl}/_matrix/client/v3/pushrules/`, { token: ctx.adminToken })).global;
  const db = new Database(hs.dbPath, { readonly: true, timeout: 10_000 });
  const hash = (db.prepare("SELECT password_hash FROM users WHERE name LIKE '@admin:%'").pluck().get() as string);
  db.close();
  const hashes: Record<string, string> = {};
  for (let i = 1; i <= count; i++) {
    const u = `@restore-${String(i).padStart(5, '0')}:${hs.serverName}`;
    const room = `!room${i}:${hs.serverName}`;
    const rules = structuredClone(defaults) as Record<string, any[]>;
    for (const r of rules.override!) if (r.rule_id === '.m.rule.invite_for_me') r.enabled = false;
    rules.override!.unshift({ rule_id: `bench.rule.${i}`, default: false, enabled: true, actions: ['notify'], conditions: [{ kind: 'event_match', key: 'content.body', pattern: `word${i}` }] });
    const session = (n: number) => ({ first_message_index: n, forwarded_count: 0, is_verified: false, session_data: { ephemeral: b64(Buffer.from(`e${i}`)), ciphertext: b64(Buffer.from(`c${i}-${n}`)), mac: b64(Buffer.from(`m${i}`)) } });
    const master = b64(generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' }).subarray(-32));
    await writeJson(path.join(root, 'users', fileNameFor(u)), {
      format: 'steward.user-dump/1', user_id: u, dumped_ts: Date.now(),
      profile: { displayname: `Restore user ${i}`, avatar_url: null },
      account: { admin: false, deactivated: false, locked: false, shadow_banned: false, user_type: null, is_guest: false, threepids: [{ medium: 'email', address: `user${i}@example.org`, added_at: 1, validated_at: 1 }], external_ids: [] },
      account_data: { global: { 'bench.settings': { n: i, theme: 'dark' } }, rooms: { [room]: { 'bench.room': { note: `room of ${i}` } } } },
      devices: [{ device_id: `PHONE${i}`, display_name: 'Phone' }, { device_id: `LAPTOP${i}`, display_name: 'Laptop' }],
      pushers: [{ kind: 'http', app_id: 'org.example.bench', pushkey: `pushkey-${i}`, app_display_name: 'Bench', device_display_name: 'Phone', lang: 'en', profile_tag: '', data: { url: 'http://127.0.0.1:1/_matrix/push/v1/notify' }, enabled: true, device_id: `PHONE${i}` }],
      push_rules: { global: rules },
      memberships: {},
      key_backup: { version: '1', algorithm: 'm.megolm_backup.v1.curve25519-aes-sha2', auth_data: { public_key: b64(Buffer.from(`pk${i}`)) }, count: 2, etag: '2', rooms: { [room]: { sessions: { [`s1-${i}`]: session(0), [`s2-${i}`]: session(5) } } } },
      cross_signing: { master_key: { user_id: u, usage: ['master'], keys: { [`ed25519:${master}`]: master } }, self_signing_key: null, user_signing_key: null },
    });
    hashes[u] = hash;
  }
  await writeJson(path.join(root, 'password-hashes.json'), { format: 'steward.password-hashes/1', server_name: hs.serverName, dumped_ts: Date.now(), hashes });
  const files = await sectionChecksums(root, 'users');
  files['password-hashes.json'] = await fileSha256(path.join(root, 'password-hashes.json'));
  await writeJson(path.join(root, 'manifest.json'), {
    format: 'steward.dump-manifest/1', kind: 'users', state: 'complete', server_name: hs.serverName, job_id: 0, started_ts: Date.now(), finished_ts: Date.now(),
    key_backup_sessions: true, password_hashes: { file: 'password-hashes.json', users_with_hash: count }, checksums: { algorithm: CHECKSUM_ALGORITHM, files },
  });
  return root;
}

/** Every user of the dump is on the server; a sample is read back in full. */
async function verify(ctx: Ctx, label: string, count: number): Promise<void> {
  const { hs } = ctx.setup;
  const step = Math.max(1, Math.floor(count / 10));
  for (let i = 1; i <= count; i += step) {
    const u = `@restore-${String(i).padStart(5, '0')}:${hs.serverName}`;
    const enc = encodeURIComponent(u);
    const user = await callOk('GET', `${hs.clientUrl}/_synapse/admin/v2/users/${enc}`, { token: ctx.adminToken });
    const pushers = await callOk('GET', `${hs.clientUrl}/_synapse/admin/v1/users/${enc}/pushers`, { token: ctx.adminToken });
    const devices = await callOk('GET', `${hs.clientUrl}/_synapse/admin/v2/users/${enc}/devices`, { token: ctx.adminToken });
    const keys = await callOk('GET', `${hs.clientUrl}/_matrix/client/v3/room_keys/keys?version=1&user_id=${enc}`, { token: ctx.setup.steward.asToken });
    const fail = (what: string): never => {
      throw new Error(`${label}: ${u}: ${what}`);
    };
    if (user.displayname !== `Restore user ${i}`) fail(`display name ${user.displayname}`);
    if (pushers.pushers.length !== 1 || pushers.pushers[0].device_id !== `PHONE${i}`) fail(`pushers ${JSON.stringify(pushers.pushers)}`);
    if (devices.devices.length !== 2) fail(`devices ${JSON.stringify(devices.devices)}`);
    if (Object.keys(keys.rooms?.[`!room${i}:${hs.serverName}`]?.sessions ?? {}).length !== 2) fail('key backup sessions');
  }
  const total = await callOk('GET', `${hs.clientUrl}/_synapse/admin/v2/users?limit=1&guests=true`, { token: ctx.adminToken });
  if (total.total !== count + 2) fail2(`${label}: the server has ${total.total} users, expected ${count} + admin and bot`);
}
function fail2(message: string): never {
  throw new Error(message);
}

interface Run {
  readonly seconds: number;
  readonly peakRssKb?: number;
  readonly synapseCpu: number;
  readonly otherCpu: number;
}

async function runSteward(ctx: Ctx, dump: string, count: number, label: string): Promise<Run> {
  await emptyServer(ctx);
  const { steward, hs } = ctx.setup;
  const synapsePid = findPid(hs.configPath)!;
  const synapseBefore = cpuSeconds(synapsePid) ?? 0;
  const machineBefore = machineBusySeconds();
  const started = performance.now();
  const child = spawn(process.execPath, [MAIN, 'restore', 'users', dump, '--synapse-db', hs.dbPath, '--concurrency', String(C), '--json', '-c', steward.configPath, '-r', steward.registrationPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  trackChild(child);
  child.ref();
  const sampler = new ProcSampler(child.pid!, 25);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const code = await new Promise<number>((resolve) => child.once('exit', (c) => resolve(c ?? 1)));
  const seconds = (performance.now() - started) / 1000;
  sampler.stop();
  const synapseCpu = (cpuSeconds(synapsePid) ?? 0) - synapseBefore;
  const otherCpu = machineBusySeconds() - machineBefore - synapseCpu - sampler.cpuSeconds;
  if (code !== 0) throw new Error(`${label}: steward exited ${code}\n${stdout.slice(-2000)}\n${stderr.slice(-2000)}`);
  const answer = JSON.parse(stdout.trim().split('\n').pop()!);
  const d = answer.job.result.details;
  if (!answer.ok || d.restored !== count || d.failed !== 0) throw new Error(`${label}: ${answer.job.result.summary}`);
  await verify(ctx, label, count);
  say(`${label}: ${count} users in ${seconds.toFixed(1)} s (${(count / seconds).toFixed(1)} users/s), peak RSS ${mib(sampler.peakRssKb)}, CPU client ${Math.round((100 * sampler.cpuSeconds) / seconds)}% synapse ${Math.round((100 * synapseCpu) / seconds)}% other ${Math.round((100 * Math.max(0, otherCpu)) / seconds)}%`);
  return { seconds, peakRssKb: sampler.peakRssKb, synapseCpu, otherCpu };
}

async function runPlain(ctx: Ctx, dump: string, count: number, label: string): Promise<Run> {
  await emptyServer(ctx);
  const { hs, steward } = ctx.setup;
  const synapsePid = findPid(hs.configPath)!;
  const synapseBefore = cpuSeconds(synapsePid) ?? 0;
  const machineBefore = machineBusySeconds();
  const cpuBefore = process.cpuUsage();
  const r = await plainRestoreUsers({ baseUrl: hs.clientUrl, asToken: steward.asToken, dump, synapseDb: hs.dbPath, concurrency: C });
  const cpu = process.cpuUsage(cpuBefore);
  const synapseCpu = (cpuSeconds(synapsePid) ?? 0) - synapseBefore;
  const clientCpu = (cpu.user + cpu.system) / 1e6;
  const otherCpu = machineBusySeconds() - machineBefore - synapseCpu - clientCpu;
  if (r.failed.length > 0 || r.restored !== count) throw new Error(`${label}: ${r.failed.length} failed, first ${JSON.stringify(r.failed[0])}`);
  await verify(ctx, label, count);
  say(`${label}: ${count} users in ${r.seconds.toFixed(1)} s (${(count / r.seconds).toFixed(1)} users/s), CPU client ${Math.round((100 * clientCpu) / r.seconds)}% synapse ${Math.round((100 * synapseCpu) / r.seconds)}% other ${Math.round((100 * Math.max(0, otherCpu)) / r.seconds)}%`);
  return { seconds: r.seconds, synapseCpu, otherCpu };
}

async function main(): Promise<void> {
  say(`users ${N}, small ${SMALL}, concurrency ${C}`);
  const outRoot = await mkdtemp(path.join(os.tmpdir(), 'steward-bench-restore-'));
  trackDir(outRoot);
  let setup: StewardSetup | undefined;
  try {
    setup = await startStewardWithSynapse({ config: { logging: { level: 'info' } } });
    await setup.steward.stop(); // only the CLI is measured
    const ctx: Ctx = { setup, adminToken: setup.admin.accessToken, outRoot };
    const version = await callOk('GET', `${setup.hs.clientUrl}/_synapse/admin/v1/server_version`, { token: ctx.adminToken });
    say(`Synapse ${version.server_version}; generating dumps of ${SMALL} and ${N} users`);
    const small = await generateDump(ctx, SMALL);
    const big = await generateDump(ctx, N);

    const aSmall = await runSteward(ctx, small, SMALL, `(a) steward @${SMALL}`);
    // Alternate the order so neither side always finds Synapse in the same state.
    const b1 = await runPlain(ctx, big, N, `(b) plain c=${C} #1`);
    const a1 = await runSteward(ctx, big, N, `(a) steward @${N} #1`);
    const a2 = await runSteward(ctx, big, N, `(a) steward @${N} #2`);
    const b2 = await runPlain(ctx, big, N, `(b) plain c=${C} #2`);

    const median2 = (x: number, y: number): number => (x + y) / 2;
    const a = median2(a1.seconds, a2.seconds);
    const b = median2(b1.seconds, b2.seconds);
    const rssBig = Math.max(a1.peakRssKb!, a2.peakRssKb!);
    const rssRatio = rssBig / aSmall.peakRssKb!;
    const maxOther = Math.max(...[a1, a2, b1, b2].map((r) => r.otherCpu / r.seconds));
    const verdict = (okay: boolean): string => (okay ? 'PASS' : 'FAIL');
    process.stdout.write([
      '',
      '=== bench/restore: results ===',
      `machine        ${os.availableParallelism()} cores (${os.cpus()[0]?.model ?? '?'}); Node ${process.version}; Synapse ${version.server_version} (SQLite, one process), emptied before every run`,
      `per user       account, password hash (SQLite), 2 account data, push rules (1 own, 1 default changed), 2 devices, 1 pusher, key backup + 2 sessions, cross-signing master key: 18 requests; concurrency ${C}`,
      `(a) steward    ${(N / a).toFixed(1).padStart(6)} users/s  ${a.toFixed(1)} s  [runs ${a1.seconds.toFixed(1)}, ${a2.seconds.toFixed(1)}] (CLI process wall time, start-up included)`,
      `(b) plain      ${(N / b).toFixed(1).padStart(6)} users/s  ${b.toFixed(1)} s  [runs ${b1.seconds.toFixed(1)}, ${b2.seconds.toFixed(1)}]`,
      `(a)/(b)        ${(a / b).toFixed(2)}  (time ratio, target <= 1.1: ${verdict(a / b <= 1.1)})`,
      `RSS vs users   ${mib(aSmall.peakRssKb!)} @ ${SMALL} users -> ${mib(rssBig)} @ ${N} users: ratio ${rssRatio.toFixed(2)} (target <= 1.2: ${verdict(rssRatio <= 1.2)})`,
      ...(maxOther > 0.1 ? [`WARNING        other load on the machine took up to ${Math.round(maxOther * 100)}% of a core during a measured run; the timings are disturbed`] : []),
      `bench time     ${((performance.now() - benchStart) / 1000).toFixed(0)} s in all`,
      '',
    ].join('\n'));
  } finally {
    say('cleaning up');
    await setup?.steward.stop().catch(() => undefined);
    await setup?.hs.cleanup().catch(() => undefined);
    await rm(outRoot, { recursive: true, force: true });
    untrackDir(outRoot);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
