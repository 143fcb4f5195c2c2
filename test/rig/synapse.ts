import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { closeSync, openSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomSecret, writeSelfSignedCert, writeSigningKey } from './keys.ts';
import { canListenOn, freePort, freePortOn } from './ports.ts';
import * as postgres from './postgres.ts';
import { claimRedisDb, REDIS, releaseRedisDb, releaseRedisDbSync } from './redis.ts';
import { trackChild, trackDatabase, trackDir, untrackDatabase, untrackDir } from './reaper.ts';
import { homeserverConfig, logConfig } from './synapse-config.ts';
import { synapsePython } from './venv.ts';

export interface SynapseOptions {
  /** Label for the temp dir and error messages, e.g. "hs1". */
  name: string;
  /** Absolute paths for app_service_config_files; they need exist only by start(). */
  appserviceRegistrations?: string[];
  /** Add a TLS listener (client + federation) on the server-name port. Default true. */
  federation?: boolean;
  /** Shallow-merged over the generated homeserver.yaml. */
  extraConfig?: Record<string, unknown>;
  /** SQLite (default, or STEWARD_RIG_DB) or a fresh PostgreSQL database on 127.0.0.1:5432. */
  database?: postgres.RigDatabase;
  /**
   * Main process plus one generic worker that sends appservice transactions
   * (notify_appservices_from_worker) and federation (federation_sender_instances), replicating
   * over Redis. Implies PostgreSQL (Synapse refuses workers on SQLite). Default: STEWARD_RIG_WORKERS=1.
   */
  workers?: boolean;
}

export interface SynapseWorker {
  readonly name: string;
  /** The worker's own HTTP listener (client, federation, metrics, health). */
  readonly url: string;
  readonly logPath: string;
  readonly outputPath: string;
  readonly metricsUrl: string;
}

export interface RegisteredUser {
  userId: string;
  accessToken: string;
  deviceId: string;
  password: string;
}

export interface SynapseInstance {
  readonly name: string;
  /** "localhost:<tlsPort>": the explicit port makes it its own federation address. */
  readonly serverName: string;
  /** Plain-HTTP client listener: what the bot and tests talk to. */
  readonly clientUrl: string;
  readonly federationUrl: string;
  readonly dir: string;
  readonly configPath: string;
  /** Synapse's own log, in the default format (access log included). */
  readonly logPath: string;
  /** Synapse's stdout and stderr (tracebacks from before logging is set up land here). */
  readonly outputPath: string;
  readonly dbPath: string;
  /** Which database Synapse runs on; for PostgreSQL, the database's name. */
  readonly database: postgres.RigDatabase;
  readonly postgresDatabase: string | undefined;
  /** The generic worker, in worker mode. */
  readonly worker: SynapseWorker | undefined;
  /** The main process's Prometheus metrics, in worker mode. */
  readonly metricsUrl: string | undefined;
  readonly signingKeyPath: string;
  readonly registrationSharedSecret: string;
  readonly running: boolean;
  start(): Promise<void>;
  stop(): Promise<void>;
  kill(): Promise<void>;
  restart(): Promise<void>;
  /** Worker mode: stop (or kill) the worker alone, and start it again. */
  stopWorker(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  startWorker(): Promise<void>;
  /** Shallow-merges `patch` into homeserver.yaml; takes effect at the next start. */
  updateConfig(patch: Record<string, unknown>): Promise<void>;
  /** The homeserver.yaml as it stands (a copy). */
  readonly config: Record<string, unknown>;
  registerUser(
    localpart: string,
    opts?: { password?: string; admin?: boolean; displayname?: string },
  ): Promise<RegisteredUser>;
  backupDatabase(): Promise<string>;
  restoreDatabase(backup: string): Promise<void>;
  cleanup(): Promise<void>;
}

const START_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 10_000;
// SQLite keeps recent writes in these side files; a copy without them is torn.
const DB_SIDE_FILES = ['', '-wal', '-shm', '-journal'];

/** Loopback addresses that "localhost" resolves to here and that we can bind. */
async function localhostBindAddresses(): Promise<string[]> {
  const resolved = await lookup('localhost', { all: true }).catch(() => []);
  const addresses = new Set<string>(['127.0.0.1']);
  for (const { address } of resolved) {
    if ((address === '::1' || address.startsWith('127.')) && (await canListenOn(address))) {
      addresses.add(address);
    }
  }
  return [...addresses];
}

async function tail(file: string, lines = 40): Promise<string> {
  try {
    const text = await readFile(file, 'utf8');
    return text.split('\n').slice(-lines).join('\n');
  } catch {
    return '(no file)';
  }
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

class Synapse implements SynapseInstance {
  readonly name: string;
  readonly serverName: string;
  readonly clientUrl: string;
  readonly federationUrl: string;
  readonly dir: string;
  readonly configPath: string;
  readonly logPath: string;
  readonly outputPath: string;
  readonly dbPath: string;
  readonly database: postgres.RigDatabase;
  readonly postgresDatabase: string | undefined;
  readonly worker: (SynapseWorker & { readonly configPath: string }) | undefined;
  readonly metricsUrl: string | undefined;
  readonly redisDb: number | undefined;
  readonly signingKeyPath: string;
  readonly registrationSharedSecret: string;
  readonly #python: string;
  #config: Record<string, unknown>;
  #child: ChildProcess | undefined;
  #workerChild: ChildProcess | undefined;
  #backups = 0;

  constructor(init: {
    name: string;
    dir: string;
    python: string;
    httpPort: number;
    serverPort: number;
    registrationSharedSecret: string;
    config: Record<string, unknown>;
    postgresDatabase?: string;
    worker?: SynapseWorker & { readonly configPath: string };
    metricsUrl?: string;
    redisDb?: number;
  }) {
    this.name = init.name;
    this.dir = init.dir;
    this.#python = init.python;
    this.serverName = `localhost:${init.serverPort}`;
    this.clientUrl = `http://127.0.0.1:${init.httpPort}`;
    this.federationUrl = `https://localhost:${init.serverPort}`;
    this.configPath = path.join(init.dir, 'homeserver.yaml');
    this.logPath = path.join(init.dir, 'homeserver.log');
    this.outputPath = path.join(init.dir, 'synapse.out');
    this.dbPath = path.join(init.dir, 'homeserver.db');
    this.postgresDatabase = init.postgresDatabase;
    this.database = init.postgresDatabase === undefined ? 'sqlite' : 'postgres';
    this.worker = init.worker;
    this.metricsUrl = init.metricsUrl;
    this.redisDb = init.redisDb;
    this.signingKeyPath = path.join(init.dir, 'signing.key');
    this.registrationSharedSecret = init.registrationSharedSecret;
    this.#config = init.config;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  async #writeConfig(): Promise<void> {
    await writeFile(this.configPath, JSON.stringify(this.#config, null, 2) + '\n');
  }

  get config(): Record<string, unknown> {
    return structuredClone(this.#config);
  }

  async updateConfig(patch: Record<string, unknown>): Promise<void> {
    this.#config = { ...this.#config, ...patch };
    await this.#writeConfig();
  }

  async start(): Promise<void> {
    if (this.#child) throw new Error(`${this.name} is already running`);
    const out = openSync(this.outputPath, 'a');
    let child: ChildProcess;
    try {
      child = spawn(this.#python, ['-m', 'synapse.app.homeserver', '-c', this.configPath], {
        cwd: this.dir,
        env: { ...process.env, PYTHONUNBUFFERED: '1' },
        stdio: ['ignore', out, out],
      });
    } finally {
      closeSync(out);
    }
    trackChild(child);
    this.#child = child;
    child.once('exit', () => {
      if (this.#child === child) this.#child = undefined;
    });

    let spawnError: Error | undefined;
    child.on('error', (err) => {
      spawnError = err;
      if (this.#child === child) this.#child = undefined;
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (spawnError) throw await this.#startFailure(`could not be spawned: ${spawnError.message}`);
      if (child.exitCode !== null || child.signalCode !== null) {
        throw await this.#startFailure(`exited during start-up (${child.exitCode ?? child.signalCode})`);
      }
      if (await this.#healthy()) {
        if (this.worker) await this.#startWorker(this.worker);
        return;
      }
      await sleep(100);
    }
    await this.kill();
    throw await this.#startFailure(`did not answer /health within ${START_TIMEOUT_MS / 1000}s`);
  }

  async #startWorker(worker: SynapseWorker & { readonly configPath: string }): Promise<void> {
    const out = openSync(worker.outputPath, 'a');
    let child: ChildProcess;
    try {
      child = spawn(this.#python, ['-m', 'synapse.app.generic_worker', '-c', this.configPath, '-c', worker.configPath], {
        cwd: this.dir,
        env: { ...process.env, PYTHONUNBUFFERED: '1' },
        stdio: ['ignore', out, out],
      });
    } finally {
      closeSync(out);
    }
    trackChild(child);
    this.#workerChild = child;
    child.once('exit', () => {
      if (this.#workerChild === child) this.#workerChild = undefined;
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) {
        await this.kill();
        throw new Error(`Synapse ${this.name}: worker ${worker.name} exited during start-up (${child.exitCode ?? child.signalCode}).\n` +
          `--- ${worker.outputPath} (tail) ---\n${await tail(worker.outputPath)}\n--- ${worker.logPath} (tail) ---\n${await tail(worker.logPath)}`);
      }
      if (await this.#healthy(worker.url)) return;
      await sleep(100);
    }
    await this.kill();
    throw new Error(`Synapse ${this.name}: worker ${worker.name} did not answer /health within ${START_TIMEOUT_MS / 1000}s\n${await tail(worker.logPath)}`);
  }

  /** Stops (or kills) the worker alone; the main process keeps running. */
  async stopWorker(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const child = this.#workerChild;
    if (!child) return;
    child.kill(signal);
    if (!(await waitForExit(child, STOP_GRACE_MS))) {
      child.kill('SIGKILL');
      await waitForExit(child, STOP_GRACE_MS);
    }
    this.#workerChild = undefined;
  }

  async startWorker(): Promise<void> {
    if (!this.worker) throw new Error(`${this.name} has no worker`);
    if (this.#workerChild) throw new Error(`${this.name}'s worker is already running`);
    await this.#startWorker(this.worker);
  }

  async #healthy(base = this.clientUrl): Promise<boolean> {
    try {
      const res = await fetch(`${base}/health`, { signal: AbortSignal.timeout(2000) });
      await res.body?.cancel();
      return res.ok;
    } catch {
      return false;
    }
  }

  async #startFailure(what: string): Promise<Error> {
    return new Error(
      `Synapse ${this.name} (${this.serverName}) ${what}.\n` +
        `--- ${this.outputPath} (tail) ---\n${await tail(this.outputPath)}\n` +
        `--- ${this.logPath} (tail) ---\n${await tail(this.logPath)}`,
    );
  }

  async stop(): Promise<void> {
    await this.stopWorker();
    const child = this.#child;
    if (!child) return;
    child.kill('SIGTERM');
    if (!(await waitForExit(child, STOP_GRACE_MS))) {
      child.kill('SIGKILL');
      await waitForExit(child, STOP_GRACE_MS);
    }
    this.#child = undefined;
  }

  async kill(): Promise<void> {
    await this.stopWorker('SIGKILL');
    const child = this.#child;
    if (!child) return;
    child.kill('SIGKILL');
    await waitForExit(child, STOP_GRACE_MS);
    this.#child = undefined;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async registerUser(
    localpart: string,
    opts: { password?: string; admin?: boolean; displayname?: string } = {},
  ): Promise<RegisteredUser> {
    const url = `${this.clientUrl}/_synapse/admin/v1/register`;
    const nonceRes = await fetch(url);
    if (!nonceRes.ok) throw new Error(`GET ${url}: ${nonceRes.status} ${await nonceRes.text()}`);
    const { nonce } = (await nonceRes.json()) as { nonce: string };

    const password = opts.password ?? `pw-${localpart}-${randomSecret(6)}`;
    const admin = opts.admin ?? false;
    const mac = createHmac('sha1', this.registrationSharedSecret)
      .update([nonce, localpart, password, admin ? 'admin' : 'notadmin'].join('\0'))
      .digest('hex');
    const body: Record<string, unknown> = { nonce, username: localpart, password, admin, mac };
    if (opts.displayname !== undefined) body['displayname'] = opts.displayname;

    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`registering ${localpart} on ${this.name}: ${res.status} ${text}`);
    const json = JSON.parse(text) as { user_id: string; access_token: string; device_id: string };
    return { userId: json.user_id, accessToken: json.access_token, deviceId: json.device_id, password };
  }

  #requireStopped(what: string): void {
    // Copying a live SQLite database races Synapse's writes and yields a torn copy.
    if (this.#child) throw new Error(`${what} needs ${this.name} stopped; call stop() first`);
  }

  async backupDatabase(): Promise<string> {
    this.#requireStopped('backupDatabase');
    const backupDir = path.join(this.dir, 'backups');
    await mkdir(backupDir, { recursive: true });
    if (this.postgresDatabase !== undefined) {
      const dump = path.join(backupDir, `homeserver-${++this.#backups}.pgdump`);
      await postgres.dumpDatabase(this.postgresDatabase, dump);
      return dump;
    }
    const backup = path.join(backupDir, `homeserver-${++this.#backups}.db`);
    for (const suffix of DB_SIDE_FILES) {
      if (await exists(this.dbPath + suffix)) await copyFile(this.dbPath + suffix, backup + suffix);
    }
    if (!(await exists(backup))) throw new Error(`${this.name} has no database at ${this.dbPath} yet`);
    return backup;
  }

  async restoreDatabase(backup: string): Promise<void> {
    this.#requireStopped('restoreDatabase');
    if (!(await exists(backup))) throw new Error(`no database backup at ${backup}`);
    if (this.postgresDatabase !== undefined) {
      await postgres.restoreDatabase(this.postgresDatabase, backup);
      return;
    }
    // Side files of the current database would be replayed over the restored one.
    for (const suffix of DB_SIDE_FILES) await rm(this.dbPath + suffix, { force: true });
    for (const suffix of DB_SIDE_FILES) {
      if (await exists(backup + suffix)) await copyFile(backup + suffix, this.dbPath + suffix);
    }
  }

  async cleanup(): Promise<void> {
    await this.stop();
    if (process.env['STEWARD_KEEP_RIG'] === '1') {
      process.stderr.write(`[rig] keeping ${this.name} in ${this.dir}\n`);
      return;
    }
    await rm(this.dir, { recursive: true, force: true });
    untrackDir(this.dir);
    if (this.postgresDatabase !== undefined) {
      await postgres.dropDatabase(this.postgresDatabase);
      untrackDatabase(this.postgresDatabase);
    }
    if (this.redisDb !== undefined) {
      await releaseRedisDb(this.redisDb);
      untrackDatabase(`redis:${this.redisDb}`);
    }
  }
}

export async function prepareSynapse(opts: SynapseOptions): Promise<SynapseInstance> {
  const python = synapsePython();
  const federation = opts.federation ?? true;
  const dir = await mkdtemp(path.join(os.tmpdir(), `steward-rig-${opts.name}-`));
  trackDir(dir);

  const httpPort = await freePort();
  const bindAddresses = federation ? await localhostBindAddresses() : [];
  // Without federation the server name still needs a port that nobody else claims,
  // so two non-federating servers never share a name.
  const serverPort = federation ? await freePortOn(bindAddresses) : await freePort();
  const registrationSharedSecret = randomSecret();

  const certPath = path.join(dir, 'tls.crt');
  const keyPath = path.join(dir, 'tls.key');
  const logConfigPath = path.join(dir, 'log.config');
  const workers = opts.workers ?? process.env['STEWARD_RIG_WORKERS'] === '1';
  if (workers && opts.database === 'sqlite') throw new Error(`${opts.name}: Synapse workers need PostgreSQL, not SQLite`);
  let postgresDatabase: string | undefined;
  if (workers || (opts.database ?? postgres.defaultRigDatabase()) === 'postgres') {
    postgresDatabase = postgres.databaseName(opts.name);
    await postgres.createDatabase(postgresDatabase);
    trackDatabase(postgresDatabase, postgres.dropDatabaseSync);
  }
  let workerSetup: Awaited<ReturnType<typeof prepareWorker>> | undefined;
  if (workers) workerSetup = await prepareWorker(dir, opts.name);
  const instance = new Synapse({
    postgresDatabase,
    ...(workerSetup ? { worker: workerSetup.worker, metricsUrl: workerSetup.metricsUrl, redisDb: workerSetup.redisDb } : {}),
    name: opts.name,
    dir,
    python,
    httpPort,
    serverPort,
    registrationSharedSecret,
    config: {},
  });

  await Promise.all([
    writeSigningKey(instance.signingKeyPath),
    federation ? writeSelfSignedCert(certPath, keyPath) : Promise.resolve(),
    writeFile(logConfigPath, JSON.stringify(logConfig(instance.logPath), null, 2) + '\n'),
  ]);
  await instance.updateConfig(
    homeserverConfig({
      serverName: instance.serverName,
      dir,
      httpPort,
      ...(federation ? { tls: { port: serverPort, bindAddresses, certPath, keyPath } } : {}),
      dbPath: instance.dbPath,
      ...(postgresDatabase !== undefined ? { database: postgres.synapseDatabaseConfig(postgresDatabase) } : {}),
      signingKeyPath: instance.signingKeyPath,
      logConfigPath,
      registrationSharedSecret,
      macaroonSecretKey: randomSecret(),
      formSecret: randomSecret(),
      appserviceRegistrations: opts.appserviceRegistrations ?? [],
      extraConfig: opts.extraConfig ?? {},
    }),
  );
  if (workerSetup) {
    // Added after the generated config so the main listener list keeps its own entries.
    const config = instance.config;
    await instance.updateConfig({ ...workerSetup.mainConfig, listeners: [...(config['listeners'] as unknown[]), ...workerSetup.mainListeners], ...opts.extraConfig });
  }
  return instance;
}

const WORKER_NAME = 'worker1';

/**
 * The worker's config file and what the main process's config needs for it: a replication
 * listener in the instance map, Redis (a database of its own), the worker named for appservice
 * and federation sending, and metrics on both processes so tests can see who sent what.
 */
async function prepareWorker(dir: string, label: string) {
  const [replicationPort, mainMetricsPort, workerPort] = [await freePort(), await freePort(), await freePort()];
  const redisDb = await claimRedisDb(`${label}:${process.pid}:${dir}`);
  trackDatabase(`redis:${redisDb}`, () => releaseRedisDbSync(redisDb));
  const logPath = path.join(dir, `${WORKER_NAME}.log`);
  const logConfigPath = path.join(dir, `${WORKER_NAME}.log.config`);
  const configPath = path.join(dir, `${WORKER_NAME}.yaml`);
  await writeFile(logConfigPath, JSON.stringify(logConfig(logPath), null, 2) + '\n');
  await writeFile(configPath, JSON.stringify({
    worker_app: 'synapse.app.generic_worker',
    worker_name: WORKER_NAME,
    worker_listeners: [{
      type: 'http', port: workerPort, bind_addresses: ['127.0.0.1'], tls: false, x_forwarded: false,
      resources: [{ names: ['client', 'federation', 'metrics'], compress: false }],
    }],
    worker_log_config: logConfigPath,
  }, null, 2) + '\n');
  const worker = {
    name: WORKER_NAME,
    configPath,
    url: `http://127.0.0.1:${workerPort}`,
    logPath,
    outputPath: path.join(dir, `${WORKER_NAME}.out`),
    metricsUrl: `http://127.0.0.1:${workerPort}/_synapse/metrics`,
  };
  return {
    worker,
    redisDb,
    metricsUrl: `http://127.0.0.1:${mainMetricsPort}/_synapse/metrics`,
    mainListeners: [
      { type: 'http', port: replicationPort, bind_addresses: ['127.0.0.1'], tls: false, x_forwarded: false, resources: [{ names: ['replication'], compress: false }] },
      { type: 'metrics', port: mainMetricsPort, bind_addresses: ['127.0.0.1'] },
    ],
    mainConfig: {
      enable_metrics: true,
      redis: { enabled: true, host: REDIS.host, port: REDIS.port, dbid: redisDb },
      instance_map: { main: { host: '127.0.0.1', port: replicationPort } },
      notify_appservices_from_worker: WORKER_NAME,
      federation_sender_instances: [WORKER_NAME],
    },
  };
}

export async function startSynapse(opts: SynapseOptions): Promise<SynapseInstance> {
  const instance = await prepareSynapse(opts);
  try {
    await instance.start();
  } catch (err) {
    await instance.cleanup();
    throw err;
  }
  return instance;
}

/** Two servers that federate with each other over loopback TLS, started in parallel. */
export async function startFederatingPair(
  a: Partial<SynapseOptions> = {},
  b: Partial<SynapseOptions> = {},
): Promise<[SynapseInstance, SynapseInstance]> {
  const [hs1, hs2] = await Promise.all([
    prepareSynapse({ ...a, name: a.name ?? 'hs1', federation: true }),
    prepareSynapse({ ...b, name: b.name ?? 'hs2', federation: true }),
  ]);
  const started = await Promise.allSettled([hs1.start(), hs2.start()]);
  const failure = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) {
    await Promise.all([hs1.cleanup(), hs2.cleanup()]);
    throw failure.reason;
  }
  return [hs1, hs2];
}

/**
 * A Synapse the rig prepared earlier and left on disk (a benchmark's seeded server), brought
 * back from its own homeserver.yaml: same server name, ports, database and keys. Not started,
 * and not tracked: the caller decides when the directory goes. Workers are not supported.
 */
export async function reopenSynapse(dir: string): Promise<SynapseInstance> {
  const config = JSON.parse(await readFile(path.join(dir, 'homeserver.yaml'), 'utf8')) as Record<string, unknown>;
  if (config['instance_map'] !== undefined) throw new Error(`${dir}: a Synapse with workers cannot be reopened`);
  const serverPort = Number(/^localhost:(\d+)$/.exec(String(config['server_name']))?.[1]);
  const httpPort = Number((config['listeners'] as { port?: unknown }[] | undefined)?.[0]?.port);
  const secret = config['registration_shared_secret'];
  if (!Number.isInteger(serverPort) || !Number.isInteger(httpPort) || typeof secret !== 'string') throw new Error(`${dir}/homeserver.yaml is not one the rig wrote`);
  const database = config['database'] as { name?: string; args?: { dbname?: string; database?: string } } | undefined;
  const postgresDatabase = database?.name === 'psycopg2' ? (database.args?.dbname ?? database.args?.database) : undefined;
  return new Synapse({ name: path.basename(dir), dir, python: synapsePython(), httpPort, serverPort, registrationSharedSecret: secret, config, ...(postgresDatabase !== undefined ? { postgresDatabase } : {}) });
}
