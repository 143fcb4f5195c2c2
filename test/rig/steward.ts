// Runs the real Steward process (`node src/main.ts run`) beside a rig Synapse, the way an admin
// would deploy it: config file, generated registration loaded by Synapse, bot made admin.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { MatrixTestClient } from './client.ts';
import type { FakeMas } from './fake-mas.ts';
import { freePort } from './ports.ts';
import { trackChild } from './reaper.ts';
import { prepareSynapse, type RegisteredUser, type SynapseInstance, type SynapseOptions } from './synapse.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const MAIN = path.join(ROOT, 'src', 'main.ts');

export interface StewardInstance {
  readonly dir: string;
  readonly configPath: string;
  readonly registrationPath: string;
  readonly logPath: string;
  readonly port: number;
  readonly botUserId: string;
  /** The appservice token, for tests that call the homeserver as Steward would. */
  readonly asToken: string;
  readonly dumpsDir: string;
  readonly dbPath: string;
  readonly running: boolean;
  /** Admin room id, known once start() has returned. */
  adminRoomId: string;
  start(): Promise<void>;
  /** SIGTERM and wait; jobs stay resumable. */
  stop(): Promise<void>;
  /** SIGKILL: a crash, as far as Steward can tell. */
  kill(): Promise<void>;
  /** Lines of the bot's JSON log, parsed. */
  logLines(): Promise<Record<string, unknown>[]>;
  /** Runs `steward <args>` in the terminal front end against the same config. */
  cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
}

export interface StewardSetup {
  readonly hs: SynapseInstance;
  readonly steward: StewardInstance;
  readonly admin: RegisteredUser;
  readonly adminClient: MatrixTestClient;
}

export interface StewardOptions {
  readonly synapse?: Partial<SynapseOptions>;
  /** Merged into Steward's generated config, section by section. */
  readonly config?: Record<string, Record<string, unknown>>;
  readonly progressIntervalSeconds?: number;
  /**
   * Let Steward speak federation as its homeserver: fills the `federation` section with the
   * homeserver's signing key, a loopback allowlist (127.0.0.0/8, ::1/128) and a CA file holding
   * the rig certificates of its homeserver and of `peers` (the other server of a pair is added
   * by startStewardPair), so TLS verification stays on. `config.federation` still overrides.
   */
  readonly federation?: boolean;
  /**
   * Synapse delegates auth to this stand-in MAS: users are provisioned through it (no passwords,
   * no shared-secret registration), the bot is never made an admin in Synapse's database, and
   * Steward gets an admin-scoped token for the bot in `homeserver.admin_token_file`.
   */
  readonly mas?: FakeMas;
  /**
   * Without MAS: the bot is NOT made an admin; instead `homeserver.admin_token_file` holds the
   * access token of the rig's admin user (a real server admin), as a deployment that does not want
   * the bot itself to be an admin would configure it.
   */
  readonly adminTokenFile?: boolean;
}

/** Synapse (no federation) with Steward registered and running, an admin joined to the admin room. */
export async function startStewardWithSynapse(opts: StewardOptions = {}): Promise<StewardSetup> {
  const hs = await prepareSynapse({ name: 'steward-hs', federation: false, ...opts.synapse });
  return attachSteward(hs, opts);
}

/**
 * Two federating Synapses; Steward runs beside the first, and beside the second too when
 * `both` is set (linked accounts need one Steward per homeserver).
 */
export async function startStewardPair(opts: { a?: StewardOptions; b?: StewardOptions; both?: boolean } = {}): Promise<{ a: StewardSetup; b: StewardSetup | { hs: SynapseInstance; admin: RegisteredUser; adminClient: MatrixTestClient } }> {
  const [hsA, hsB] = await Promise.all([
    prepareSynapse({ name: 'hs-a', federation: true, ...opts.a?.synapse }),
    prepareSynapse({ name: 'hs-b', federation: true, ...opts.b?.synapse }),
  ]);
  const [a, b] = await Promise.all([
    attachSteward(hsA, opts.a ?? {}, [hsB]),
    opts.both ? attachSteward(hsB, opts.b ?? {}, [hsA]) : (async () => {
      await hsB.start();
      const admin = await hsB.registerUser('admin', { admin: true, password: 'admin-password' });
      return { hs: hsB, admin, adminClient: await MatrixTestClient.login(hsB.clientUrl, admin.userId, admin.password) };
    })(),
  ]);
  return { a, b };
}

/**
 * Registers Steward with a prepared (not yet started) Synapse, starts both, and joins the admin.
 * `peers`: servers whose rig certificates Steward trusts when `opts.federation` is set.
 */
export async function attachSteward(hs: SynapseInstance, opts: StewardOptions = {}, peers: readonly SynapseInstance[] = []): Promise<StewardSetup> {
  const dir = path.join(hs.dir, 'steward');
  await mkdir(dir, { recursive: true });
  const configPath = path.join(dir, 'steward.yaml');
  const registrationPath = path.join(dir, 'registration.yaml');
  const port = await freePort();
  const adminId = `@admin:${hs.serverName}`;
  const config: Record<string, Record<string, unknown>> = {
    homeserver: { url: hs.clientUrl, server_name: hs.serverName },
    appservice: { port, bind_address: '127.0.0.1' },
    admin_room: { admins: [adminId] },
    storage: { database: path.join(dir, 'steward.db'), dumps: path.join(dir, 'dumps') },
    jobs: { progress_interval_seconds: opts.progressIntervalSeconds ?? 1 },
    logging: { level: 'debug' },
  };
  if (opts.federation) {
    // The certificates exist from prepareSynapse on; servers prepared without federation have none.
    const certs = await Promise.all([hs, ...peers].map((s) => readFile(path.join(s.dir, 'tls.crt'), 'utf8').catch(() => '')));
    const pem = certs.filter(Boolean).join('\n');
    const caFile = path.join(dir, 'rig-ca.pem');
    if (pem) await writeFile(caFile, pem);
    config.federation = { signing_key_path: hs.signingKeyPath, address_allowlist: ['127.0.0.0/8', '::1/128'], ...(pem ? { ca_file: caFile } : {}) };
  }
  for (const [section, values] of Object.entries(opts.config ?? {})) config[section] = { ...config[section], ...values };
  await writeFile(configPath, JSON.stringify(config, null, 2));
  const gen = await runCli(['generate-registration', '-c', configPath, '-f', registrationPath]);
  if (gen.code !== 0) throw new Error(`generate-registration failed: ${gen.stderr}`);
  await hs.updateConfig({ app_service_config_files: [registrationPath], ...opts.mas?.synapseConfig() });
  await hs.start();

  const registration = await readFile(registrationPath, 'utf8');
  const asToken = /as_token:\s*(\S+)/.exec(registration)![1]!;
  const botLocalpart = /sender_localpart:\s*(\S+)/.exec(registration)![1]!;
  const botUserId = `@${botLocalpart}:${hs.serverName}`;
  let admin: RegisteredUser;
  if (opts.mas) {
    admin = await opts.mas.provisionUser(hs, 'admin');
    await writeFile(path.join(dir, 'admin-token'), `${opts.mas.mint(botLocalpart, { admin: true })}\n`, { mode: 0o600 });
    config.homeserver = { ...config.homeserver, admin_token_file: 'admin-token' };
    await writeFile(configPath, JSON.stringify(config, null, 2));
  } else if (opts.adminTokenFile) {
    admin = await hs.registerUser('admin', { admin: true, password: 'admin-password' });
    await writeFile(path.join(dir, 'admin-token'), `${admin.accessToken}\n`, { mode: 0o600 });
    config.homeserver = { ...config.homeserver, admin_token_file: 'admin-token' };
    await writeFile(configPath, JSON.stringify(config, null, 2));
  } else {
    admin = await hs.registerUser('admin', { admin: true, password: 'admin-password' });
    await makeBotAdmin(hs, asToken, botLocalpart, botUserId, admin.accessToken);
  }

  const logPath = path.join(dir, 'steward.log');
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();

  const steward: StewardInstance = {
    dir, configPath, registrationPath, logPath, port, botUserId, asToken,
    dumpsDir: path.join(dir, 'dumps'),
    dbPath: path.join(dir, 'steward.db'),
    adminRoomId: '',
    get running() {
      return child !== null;
    },
    async start() {
      const before = (await this.logLines()).length;
      const out = openSync(logPath, 'a');
      child = spawn(process.execPath, [MAIN, 'run', '-c', configPath, '-r', registrationPath], { stdio: ['ignore', out, out], cwd: dir });
      closeSync(out);
      trackChild(child);
      const me = child;
      exited = new Promise((resolve) => me.once('exit', () => {
        if (child === me) child = null;
        resolve();
      }));
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline) {
        const lines = (await this.logLines()).slice(before);
        const ready = lines.find((l) => l.msg === 'Steward is running');
        if (ready) {
          this.adminRoomId = String(ready.adminRoomId);
          return;
        }
        const fatal = lines.find((l) => (l.level as number) >= 60);
        if (fatal || child === null) throw new Error(`Steward did not start: ${JSON.stringify(fatal ?? lines.slice(-5))}\n${await readFile(logPath, 'utf8').catch(() => '')}`);
        await sleep(100);
      }
      throw new Error('Steward did not start within 30s');
    },
    async stop() {
      child?.kill('SIGTERM');
      await keepAliveUntil(exited);
    },
    async kill() {
      child?.kill('SIGKILL');
      await keepAliveUntil(exited);
    },
    async logLines() {
      const text = await readFile(logPath, 'utf8').catch(() => '');
      return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    cli: (args) => runCli([...args, '-c', configPath, '-r', registrationPath]),
  };
  await steward.start();

  const adminClient = opts.mas
    ? new MatrixTestClient(hs.clientUrl, admin.userId, admin.accessToken)
    : await MatrixTestClient.login(hs.clientUrl, admin.userId, admin.password);
  await adminClient.join(steward.adminRoomId);
  return { hs, steward, admin, adminClient };
}

/** The rig unrefs its children so a forgotten one cannot hang a test; hold the loop open while we wait on one. */
async function keepAliveUntil(p: Promise<void>): Promise<void> {
  const timer = setInterval(() => undefined, 1000);
  try {
    await p;
  } finally {
    clearInterval(timer);
  }
}

async function makeBotAdmin(hs: SynapseInstance, asToken: string, localpart: string, botUserId: string, adminToken: string): Promise<void> {
  const reg = await fetch(`${hs.clientUrl}/_matrix/client/v3/register`, {
    method: 'POST',
    headers: { authorization: `Bearer ${asToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'm.login.application_service', username: localpart, inhibit_login: true }),
  });
  if (!reg.ok && reg.status !== 400) throw new Error(`registering the bot failed: ${reg.status} ${await reg.text()}`);
  const promote = await fetch(`${hs.clientUrl}/_synapse/admin/v2/users/${encodeURIComponent(botUserId)}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ admin: true }),
  });
  if (!promote.ok) throw new Error(`making the bot admin failed: ${promote.status} ${await promote.text()}`);
}

export function runCli(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    trackChild(child);
    child.ref(); // the reaper unrefs children; this one we are waiting for
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
  });
}
