// `scripts/dev image`: builds the Dockerfile's image here (no Docker engine: buildah with chroot
// isolation, over a locally assembled stand-in for node:24-bookworm-slim, see
// /work/shared/IMAGE-CHECK.md), then runs it beside a rig Synapse and checks it answers !help.
// Not part of `.ci/run`: it needs root, buildah and debootstrap, and takes a few minutes.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, closeSync, copyFileSync, cpSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { MatrixTestClient } from '../test/rig/client.ts';
import { startStewardWithSynapse } from '../test/rig/steward.ts';
import { command } from '../test/e2e/room-helpers.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const CACHE = process.env.STEWARD_CACHE ?? path.join(homedir(), '.cache', 'steward');
const BASE_IMAGE = 'docker.io/library/node:24-bookworm-slim';
const IMAGE = process.env.STEWARD_IMAGE ?? 'localhost/steward:dev';
const UID = 10001;

function say(text: string): void {
  process.stderr.write(`[image] ${text}\n`);
}

function run(argv: string[], opts: { quiet?: boolean } = {}): string {
  say(argv.join(' '));
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', opts.quiet ? 'pipe' : 'inherit'], maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`${argv[0]} failed (${r.status ?? r.signal}): ${r.stderr ?? ''}`);
  return r.stdout.trim();
}

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function imageExists(name: string): boolean {
  return spawnSync('buildah', ['inspect', '--type', 'image', name], { stdio: 'ignore' }).status === 0;
}

/** The Debian mirror apt uses here (deb822 or one-line sources). */
function debianMirror(): string {
  for (const file of ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list']) {
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    const uri = /^URIs:\s*(\S+)/m.exec(text)?.[1] ?? /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\b/m.exec(text)?.[1];
    if (uri) return uri;
  }
  return 'http://deb.debian.org/debian';
}

/** npm's own folder (the one whose bin/npm-cli.js the npm on PATH runs). */
function npmFolder(): string {
  const cli = run(['sh', '-c', 'readlink -f "$(command -v npm)"'], { quiet: true });
  return path.resolve(path.dirname(cli), '..');
}

/**
 * A stand-in for node:24-bookworm-slim: Debian bookworm (minbase), this machine's Node 24 and npm,
 * and its CA bundle (the registry may be reached through a proxy with its own CA). Built once,
 * kept as an image.
 */
function ensureBaseImage(): void {
  if (imageExists(BASE_IMAGE)) return;
  const dir = path.join(CACHE, 'image-base');
  const rootfs = path.join(dir, 'rootfs');
  if (!existsSync(path.join(rootfs, 'etc', 'debian_version'))) {
    rmSync(rootfs, { recursive: true, force: true });
    mkdirSync(rootfs, { recursive: true });
    run(['debootstrap', '--variant=minbase', 'bookworm', rootfs, debianMirror()]);
  }
  const major = Number(process.versions.node.split('.')[0]);
  if (major !== 24) throw new Error(`the base image gets this process's Node, which is ${process.versions.node}; run through scripts/dev (Node 24)`);
  mkdirSync(path.join(rootfs, 'usr/local/bin'), { recursive: true });
  copyFileSync(process.execPath, path.join(rootfs, 'usr/local/bin/node'));
  chmodSync(path.join(rootfs, 'usr/local/bin/node'), 0o755);
  const npmDest = path.join(rootfs, 'usr/local/lib/node_modules/npm');
  rmSync(npmDest, { recursive: true, force: true });
  cpSync(npmFolder(), npmDest, { recursive: true });
  for (const [name, target] of [['npm', '../lib/node_modules/npm/bin/npm-cli.js'], ['npx', '../lib/node_modules/npm/bin/npx-cli.js']] as const) {
    rmSync(path.join(rootfs, 'usr/local/bin', name), { force: true });
    symlinkSync(target, path.join(rootfs, 'usr/local/bin', name));
  }
  const ca = '/etc/ssl/certs/ca-certificates.crt';
  mkdirSync(path.join(rootfs, path.dirname(ca)), { recursive: true });
  copyFileSync(ca, path.join(rootfs, ca));
  const tar = path.join(dir, 'base.tar');
  run(['tar', '-C', rootfs, '-cf', tar, '.']);
  const c = run(['buildah', 'from', 'scratch'], { quiet: true });
  try {
    run(['buildah', 'add', c, tar, '/']);
    run(['buildah', 'config', '--env', `NODE_EXTRA_CA_CERTS=${ca}`, '--env', 'PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin', '--cmd', 'node', c]);
    run(['buildah', 'commit', c, BASE_IMAGE]);
  } finally {
    spawnSync('buildah', ['rm', c], { stdio: 'ignore' });
    rmSync(tar, { force: true });
  }
}

function chownTree(dir: string, uid: number): void {
  chownSync(dir, uid, uid);
  for (const entry of readdirSync(dir)) {
    const p = path.join(dir, entry);
    if (statSync(p).isDirectory()) chownTree(p, uid);
    else chownSync(p, uid, uid);
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('buildah with chroot isolation needs root here');
  for (const tool of ['buildah', 'debootstrap']) {
    if (!have(tool)) throw new Error(`${tool} is missing: apt-get install -y buildah debootstrap`);
  }
  ensureBaseImage();
  const started = Date.now();
  // Docker format keeps the HEALTHCHECK (OCI has no such field).
  run(['buildah', 'bud', '--isolation', 'chroot', '--pull=never', '--layers', '--format', 'docker', '-t', IMAGE, ROOT]);
  say(`built ${IMAGE} in ${Math.round((Date.now() - started) / 1000)} s`);

  // A rig Synapse with Steward registered and set up (bot admin, admin room) by a host Steward;
  // that one is stopped and the image runs with the very same config, paths and database.
  const setup = await startStewardWithSynapse({ synapse: { name: 'image' } });
  const { hs, steward } = setup;
  let child: ChildProcess | null = null;
  let container = '';
  try {
    await steward.stop();
    chownTree(steward.dir, UID); // the image runs as uid 10001; Synapse (root here) still reads the registration
    container = run(['buildah', 'from', '--pull=never', IMAGE], { quiet: true });
    const logPath = path.join(steward.dir, 'container.log');
    const out = openSync(logPath, 'a');
    child = spawn('buildah', ['run', '--isolation', 'chroot', '--user', `${UID}:${UID}`, '-v', `${steward.dir}:${steward.dir}`, container, '--',
      'node', 'dist/main.js', 'run', '-c', steward.configPath, '-r', steward.registrationPath], { stdio: ['ignore', out, out] });
    closeSync(out);
    const deadline = Date.now() + 120_000;
    for (;;) {
      const text = existsSync(logPath) ? readFileSync(logPath, 'utf8') : '';
      const ready = text.split('\n').find((l) => l.includes('"msg":"Steward is running"'));
      if (ready) break;
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the image did not start:\n${text.slice(-4000)}`);
      await sleep(200);
    }
    say('the image is running against the rig Synapse; sending !help');
    const admin = new MatrixTestClient(hs.clientUrl, setup.admin.userId, setup.admin.accessToken);
    const { reply } = await command(admin, steward.adminRoomId, steward.botUserId, '!help', 60_000);
    const body = String(reply.content.body);
    if (!body.includes('!doctor') || !body.includes('!dump users')) throw new Error(`unexpected !help answer: ${body.slice(0, 500)}`);
    const health = await fetch(`http://127.0.0.1:${steward.port}/health`).then((r) => r.json() as Promise<Record<string, unknown>>);
    process.stdout.write(`OK: ${IMAGE} answered !help in the admin room (${body.split('\n').length} lines) and /health (${JSON.stringify(health)}).\n`);
  } finally {
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(15_000)]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    if (container) spawnSync('buildah', ['rm', container], { stdio: 'ignore' });
    await hs.cleanup();
  }
}

main().then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(`[image] ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
