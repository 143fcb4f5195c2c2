import type { Server } from 'node:http';
import { join } from 'node:path';
import { adminRoomCommands } from './admin-room/command-handler.ts';
import { ensureRooms } from './admin-room/admin-room.ts';
import { Messenger } from './admin-room/messenger.ts';
import { attachRoomProgress } from './admin-room/progress-renderer.ts';
import { EventRouter } from './appservice/event-router.ts';
import type { Registration } from './appservice/registration.ts';
import { createAppserviceApp, listen } from './appservice/server.ts';
import { portTaken } from './appservice/port-probe.ts';
import { ALL_COMMANDS } from './commands/all-commands.ts';
import type { CommandContext, ServiceStatus } from './commands/context.ts';
import type { StewardConfig } from './config/config.ts';
import { dumpRoomsJob } from './dump/dump-rooms.ts';
import { dumpUsersJob } from './dump/dump-users.ts';
import { ClientApi } from './homeserver/client-api.ts';
import { AccountApi } from './homeserver/account-api.ts';
import { HomeserverHttp, path } from './homeserver/http.ts';
import { SynapseAdmin } from './homeserver/synapse-admin.ts';
import { adminTokenNeeded, adminTokenRefused, detectAuthDelegation, issueTokenSteps, plainAdminTokenRefused, readAdminToken } from './production/delegated-auth.ts';
import { waitForHomeserver } from './homeserver/wait-for-homeserver.ts';
import { assembleRecovery, type RecoveryCore } from './recovery/wiring.ts';
import { assembleArchive, type ArchiveCore } from './archive/wiring.ts';
import { createArchiveViews } from './archive/views/archive-views.ts';
import { snapshotJob } from './snapshot/snapshot-job.ts';
import { restoreUsersJob } from './restore/restore-users.ts';
import { restoreRoomsJob } from './restore/restore-rooms.ts';
import { federationProvider, type FederationProvider } from './federation/federation-access.ts';
import { SqlitePersistedServerKeys } from './federation/persisted-keys.ts';
import { JobStore } from './jobs/job-store.ts';
import { JobRunner } from './jobs/runner.ts';
import { LinkedAccounts } from './linked/linked-accounts.ts';
import { Metrics } from './metrics/metrics.ts';
import type { DoctorDeps } from './doctor/checks.ts';
import { createDoctor } from './doctor/doctor.ts';
import { TransactionSelfTest } from './doctor/self-test.ts';
import { createPrometheusExporter } from './metrics/prometheus.ts';
import type { Logger } from './log.ts';
import { openDatabase, type Db } from './store/database.ts';
import { Inbox } from './store/inbox.ts';
import { KeyValueStore } from './store/kv.ts';
import { escapeHtml } from './util/html.ts';
import { fail, ok, type Result } from './util/result.ts';
import { STEWARD_VERSION } from './version.ts';

/** The parts both front ends share: storage, homeserver clients, jobs and commands. */
export interface Core {
  readonly config: StewardConfig;
  readonly registration: Registration;
  readonly log: Logger;
  readonly db: Db;
  readonly kv: KeyValueStore;
  readonly jobs: JobStore;
  readonly http: HomeserverHttp;
  readonly admin: SynapseAdmin;
  readonly client: ClientApi;
  readonly runner: JobRunner;
  readonly botUserId: string;
  readonly startedTs: number;
  /** Signed federation requests and verified server keys, created on first use. */
  readonly federation: FederationProvider;
  /** Lost-room detection and rejoin (src/recovery). */
  readonly recovery: RecoveryCore;
  /** Linked accounts: links, directory, invite and receipt mirroring (src/linked). */
  readonly linked: LinkedAccounts;
  /** Room history archive: its store, job and schedule (src/archive). */
  readonly archive: ArchiveCore;
  /** Counters at the counting points; only `steward run` attaches an exporter (src/metrics). */
  readonly metrics: Metrics;
  synapseVersion: string | null;
}

export function assembleCore(config: StewardConfig, registration: Registration, log: Logger): Core {
  const db = openDatabase(config.storage.database);
  const jobs = new JobStore(db);
  const http = new HomeserverHttp({
    baseUrl: config.homeserver.url,
    token: registration.asToken,
    timeoutMs: config.requests.timeoutSeconds * 1000,
    maxRetries: config.requests.maxRetries,
    log,
    userAgent: `Steward/${STEWARD_VERSION}`,
  });
  const admin = new SynapseAdmin(http);
  const client = new ClientApi(http);
  const botUserId = `@${registration.senderLocalpart}:${config.homeserver.serverName}`;
  const metrics = new Metrics();
  const federation = federationProvider(config, log, `Steward/${STEWARD_VERSION}`, {
    onOutcome: (outcome) => metrics.inc('federation_requests_total', { outcome }),
    persisted: new SqlitePersistedServerKeys(db),
  });
  const recovery = assembleRecovery({ config, registration, db, http, federation, log, userAgent: `Steward/${STEWARD_VERSION}` });
  const linked = new LinkedAccounts(db, config, log);
  const kv = new KeyValueStore(db);
  const archive = assembleArchive({ config, db, http, admin, kv, jobs, log, views: (opts) => createArchiveViews({ ...opts, http, log, mediaMaxBytes: config.archive.mediaMaxMb * 1024 * 1024 }) });
  const runner = new JobRunner({
    store: jobs,
    definitions: [
      dumpUsersJob({ admin, client, account: new AccountApi(http), jobs, serverName: config.homeserver.serverName, stewardVersion: STEWARD_VERSION, synapseDatabase: config.synapse.database }),
      dumpRoomsJob({ admin, jobs, federation, serverName: config.homeserver.serverName, stewardVersion: STEWARD_VERSION }),
      snapshotJob({ admin, client, serverName: config.homeserver.serverName, dumpsDir: config.storage.dumps }),
      ...recovery.jobs,
      ...archive.jobs,
      restoreUsersJob({ admin, client, account: new AccountApi(http), db, botUserId, serverName: config.homeserver.serverName, synapseDatabase: config.synapse.database, reportsDir: join(config.storage.dumps, 'restore-reports') }),
      restoreRoomsJob({ db, http, client, federation, serverName: config.homeserver.serverName, botUserId, reportsDir: join(config.storage.dumps, 'restore-reports') }),
    ],
    concurrency: config.jobs.concurrency,
    log,
  });
  return { config, registration, log, db, kv, jobs, http, admin, client, runner, botUserId, federation, startedTs: Date.now(), recovery, linked, archive, metrics, synapseVersion: null };
}

export type BaseContext = Omit<CommandContext, 'frontEnd' | 'sender' | 'roomId' | 'commandEventId'>;

export function commandContext(core: Core): BaseContext {
  const status = (): ServiceStatus => ({
    version: STEWARD_VERSION,
    homeserver: core.config.homeserver.url,
    serverName: core.config.homeserver.serverName,
    botUserId: core.botUserId,
    startedTs: core.startedTs,
    synapseVersion: core.synapseVersion,
  });
  return { config: core.config, jobs: core.jobs, runner: core.runner, commands: ALL_COMMANDS, status, federation: core.federation, recovery: core.recovery, linked: core.linked, archive: core.archive, doctor: createDoctor(doctorDeps(core)) };
}

function doctorDeps(core: Core): DoctorDeps {
  return { config: core.config, registration: core.registration, http: core.http, admin: core.admin, client: core.client, federation: core.federation, logSources: core.recovery.sources, botUserId: core.botUserId, log: core.log };
}

/**
 * The bot must exist and the admin API must accept Steward before anything else can work. Admin
 * calls use the appservice token (the bot must then be a Synapse admin) or, when
 * `homeserver.admin_token_file` is set, that token; under MAS only the latter can work.
 */
export async function ensureBotUser(core: Core): Promise<Result<void>> {
  const tokenFile = core.config.homeserver.adminTokenFile;
  if (tokenFile !== undefined) {
    const token = await readAdminToken(tokenFile, core.log);
    if (!token.ok) return token;
    core.http.setAdminToken(token.value);
  }
  const delegation = await detectAuthDelegation(core.http);
  core.admin.delegatedAuth = delegation.delegated === true;
  core.log.info({ delegated: delegation.delegated, detail: delegation.detail, adminToken: tokenFile !== undefined }, 'homeserver authentication');
  // Under MAS `/register` takes only this form (m.login.application_service with inhibit_login).
  const registered = await core.client.registerAppserviceUser(core.registration.senderLocalpart);
  if (!registered.ok && registered.error.errcode !== 'M_USER_IN_USE') {
    return fail('E_BOT_USER', `Cannot register the bot user ${core.botUserId}: ${registered.error.human}. Is the registration file loaded by Synapse (app_service_config_files) and Synapse restarted since?`, registered.error.log);
  }
  if (delegation.delegated === true && tokenFile === undefined) return adminTokenNeeded(delegation, core.registration.senderLocalpart);
  const self = await core.admin.user(core.botUserId);
  if (!self.ok) {
    if (self.error.status === 403 || self.error.status === 401) {
      if (tokenFile !== undefined && delegation.delegated !== false) return adminTokenRefused(self.error, tokenFile, core.registration.senderLocalpart);
      if (tokenFile !== undefined) return plainAdminTokenRefused(self.error, tokenFile);
      const url = `${core.config.homeserver.url}${path`/_synapse/admin/v2/users/${core.botUserId}`}`;
      return fail('E_NOT_ADMIN', [
        `${core.botUserId} is not a Synapse admin, so it cannot use the admin API. Make it one, then start Steward again:`,
        `  curl -X PUT -H "Authorization: Bearer <an admin's access token>" -d '{"admin": true}' '${url}'`,
        `or in Synapse's database: UPDATE users SET admin = 1 WHERE name = '${core.botUserId}';`,
        ...(delegation.delegated === undefined ? [`If Synapse delegates authentication to MAS, the appservice token can never use the admin API; give Steward an admin-scoped token instead:`, issueTokenSteps(core.registration.senderLocalpart, undefined)] : []),
      ].join('\n'), self.error.log);
    }
    const masHint = delegation.delegated === true ? ' (under MAS: Synapse must reach MAS to check the admin token, and the token\'s user must exist on Synapse)' : '';
    return fail('E_HOMESERVER', `Cannot reach the Synapse admin API at ${core.config.homeserver.url}: ${self.error.human}${masHint}`, self.error.log);
  }
  const version = await core.admin.serverVersion();
  core.synapseVersion = version.ok ? version.value.server_version : null;
  return ok(undefined);
}

export interface RunningService {
  readonly core: Core;
  readonly server: Server;
  readonly adminRoomId: string;
  readonly statusRoomId: string;
  stop(): Promise<void>;
}

const INBOX_RETENTION_MS = 7 * 24 * 3600 * 1000;

/** `steward run`: the appservice with its admin room, resuming any jobs a restart cut off. */
export async function startService(config: StewardConfig, registration: Registration, log: Logger): Promise<Result<RunningService>> {
  // A taken port fails at once, not after waiting for the homeserver.
  if (await portTaken(config.appservice.bindAddress, config.appservice.port)) {
    return fail('E_LISTEN', listenFailure(Object.assign(new Error('address in use'), { code: 'EADDRINUSE' }), config.appservice.bindAddress, config.appservice.port));
  }
  const core = assembleCore(config, registration, log);
  // Synapse may still be starting: wait for it (bounded, logged) before blaming the registration.
  const reachable = await waitForHomeserver(core.http, { waitMs: config.homeserver.startupWaitSeconds * 1000, log });
  if (!reachable.ok) {
    core.db.close();
    return reachable;
  }
  const bot = await ensureBotUser(core);
  if (!bot.ok) {
    core.db.close();
    return bot;
  }
  const rooms = await ensureRooms(config, core.client, core.kv, core.botUserId, log);
  if (!rooms.ok) {
    core.db.close();
    return rooms;
  }
  const { adminRoomId, statusRoomId } = rooms.value;
  const messenger = new Messenger(core.client, log);
  const inbox = new Inbox(core.db);
  const exporter = config.appservice.metrics
    ? await createPrometheusExporter({ jobs: core.jobs, lostRooms: core.recovery.rooms, logSources: core.recovery.sources, linked: config.linkedAccounts.enabled ? core.linked : undefined, version: STEWARD_VERSION, log })
    : undefined;
  if (exporter) core.metrics.attach(exporter);
  core.runner.on('finished', (job) => core.metrics.inc('jobs_finished_total', { type: job.type, state: job.state }));
  const router = new EventRouter(inbox, log, core.metrics);
  // The room's doctor also round-trips a test event and receipt through this very endpoint.
  const selfTest = new TransactionSelfTest(core.client, adminRoomId, core.botUserId);
  router.add(selfTest);
  router.add(adminRoomCommands({ adminRoomId, botUserId: core.botUserId, admins: config.adminRoom.admins, messenger, log, baseContext: { ...commandContext(core), doctor: createDoctor({ ...doctorDeps(core), selfTest }) } }));
  router.add(encryptionGuard(adminRoomId, messenger, log));
  if (config.linkedAccounts.enabled) {
    for (const handler of core.linked.handlers({ client: core.client, botUserId: core.botUserId, excludedRooms: [adminRoomId, statusRoomId] })) router.add(handler);
  }

  const app = createAppserviceApp({
    hsToken: registration.hsToken,
    inbox,
    log,
    wants: router.wants,
    onTaken: router.kick,
    health: () => ({ version: STEWARD_VERSION, jobs_running: core.runner.activeCount() }),
    allowQueryToken: config.appservice.allowQueryToken,
    metrics: core.metrics,
    ...(exporter ? { scrape: () => exporter.scrape() } : {}),
  });
  let server: Server;
  try {
    server = await listen(app, config.appservice.port, config.appservice.bindAddress);
  } catch (err) {
    core.db.close();
    return fail('E_LISTEN', listenFailure(err, config.appservice.bindAddress, config.appservice.port));
  }
  log.info({ address: config.appservice.bindAddress, port: config.appservice.port }, 'appservice listening');

  const ping = await core.client.ping(registration.id);
  const pingNote = ping.ok
    ? `homeserver reaches us in ${ping.value.duration_ms} ms`
    : `⚠️ the homeserver could not reach Steward at ${registration.url} (${ping.error.errcode ?? ping.error.code}); commands will not arrive until it can`;
  if (!ping.ok) log.warn({ detail: ping.error.log, url: registration.url }, 'appservice ping failed');

  attachRoomProgress({ runner: core.runner, jobs: core.jobs, messenger, statusRoomId, intervalMs: config.jobs.progressIntervalSeconds * 1000 });
  // Rejoin jobs warn live (rate limits) in the room the command came from.
  core.recovery.setJobNotifier(async (job, message) => {
    await messenger.notice(job.roomId ?? statusRoomId, message, job.commandEventId ?? undefined);
  });
  // Lost rooms are announced in the status room; a notice that cannot be sent is tried again later.
  const lostRooms = core.recovery.startDetection(async (message) => {
    if (!(await messenger.notice(statusRoomId, message))) throw new Error('the status room notice was not sent');
  });
  const resumed = core.runner.resumePending('room');
  // archive.schedule: a scheduled archive reports in the status room like any room job.
  const archiveSchedule = core.archive.startSchedule((args) => core.runner.submit({ type: 'archive', args: { ...args }, origin: 'room', roomId: statusRoomId }).job);
  router.kick();
  inbox.prune(INBOX_RETENTION_MS);
  const pruneTimer = setInterval(() => inbox.prune(INBOX_RETENTION_MS), 3600_000).unref();

  const jobNote = resumed.length
    ? `resuming ${resumed.length} job(s): ${resumed.map((j) => `#${j.id} ${core.runner.title(j)}`).join(', ')}`
    : 'no unfinished jobs';
  const notice = `Steward ${STEWARD_VERSION} started on ${config.homeserver.serverName}${core.synapseVersion ? ` (Synapse ${core.synapseVersion}${core.admin.delegatedAuth ? ', auth delegated to MAS' : ''})` : ''} · ${pingNote} · ${jobNote}. Type !help for commands.`;
  await messenger.notice(statusRoomId, { text: notice, html: escapeHtml(notice) });
  log.info({ adminRoomId, statusRoomId, resumed: resumed.length }, 'Steward is running');
  // Receipts sent while Steward was down never reach it: bring linked accounts up to date, in the background.
  const catchUpAbort = new AbortController();
  const linkedCatchUp = config.linkedAccounts.enabled
    ? core.linked.catchUp({ client: core.client, botUserId: core.botUserId, signal: catchUpAbort.signal }).then(() => undefined, (err: unknown) => {
      log.error({ err }, 'linked accounts catch-up failed');
    })
    : Promise.resolve();

  return ok({
    core,
    server,
    adminRoomId,
    statusRoomId,
    async stop() {
      clearInterval(pruneTimer);
      archiveSchedule.stop();
      catchUpAbort.abort();
      await linkedCatchUp;
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await router.stop();
      await core.linked.stop();
      await lostRooms.stop();
      await core.runner.stop();
      core.db.close();
    },
  });
}

/** EADDRINUSE is the common case (another appservice on 9993): name the key that fixes it. */
export function listenFailure(err: unknown, address: string, port: number): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EADDRINUSE') return `Cannot listen on ${address}:${port}: port ${port} is taken (another appservice?) — set appservice.port to a free port, then run generate-registration again (or change url in the registration) and restart Synapse.`;
  if (code === 'EACCES') return `Cannot listen on ${address}:${port}: permission denied (ports below 1024 need privileges) — set appservice.port.`;
  if (code === 'EADDRNOTAVAIL') return `Cannot listen on ${address}:${port}: ${address} is not an address of this machine — check appservice.bind_address.`;
  return `Cannot listen on ${address}:${port}: ${(err as Error).message}`;
}

/** Someone turning on encryption in the admin room would silently cut Steward off; say so. */
function encryptionGuard(adminRoomId: string, messenger: Messenger, log: Logger) {
  return {
    name: 'admin-room-encryption-guard',
    wants: (event: { room_id?: string; type: string }, kind: 'pdu' | 'ephemeral') => kind === 'pdu' && event.room_id === adminRoomId && event.type === 'm.room.encryption',
    async handle() {
      log.error({ roomId: adminRoomId }, 'encryption was turned on in the admin room; Steward cannot read commands there');
      const text = 'Encryption was turned on in this room. Steward does not do end-to-end encryption and can no longer read commands here: create a new unencrypted admin room and set admin_room.room, or remove it to let Steward create one.';
      await messenger.notice(adminRoomId, { text, html: escapeHtml(text) });
    },
  };
}
