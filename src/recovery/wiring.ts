import type { Rich } from '../admin-room/messenger.ts';
import type { Registration } from '../appservice/registration.ts';
import type { StewardConfig } from '../config/config.ts';
import type { FederationProvider } from '../federation/federation-access.ts';
import { ClientApi } from '../homeserver/client-api.ts';
import { HomeserverHttp } from '../homeserver/http.ts';
import type { JobRecord } from '../jobs/job-store.ts';
import type { JobDefinition } from '../jobs/runner.ts';
import type { Logger } from '../log.ts';
import type { Db } from '../store/database.ts';
import { LostRoomDetection } from './detection.ts';
import { LogSourceStore, LostRoomStore } from './lost-rooms.ts';
import { rejoinJob } from './rejoin.ts';
import { lostScanJob } from './scan.ts';

export interface RecoveryCore {
  readonly jobs: readonly JobDefinition[];
  readonly rooms: LostRoomStore;
  readonly sources: LogSourceStore;
  /** Where live notices of a rejoin job go (rate-limit warnings); the default logs them. */
  setJobNotifier(notify: (job: JobRecord, message: Rich) => Promise<void>): void;
  /** The service: follow the configured log sources; stop the result before closing the database. */
  startDetection(notify: (message: Rich) => Promise<void>): LostRoomDetection;
}

export interface RecoveryInputs {
  readonly config: StewardConfig;
  readonly registration: Registration;
  readonly db: Db;
  /** The shared homeserver client (admin API lookups retry as usual). */
  readonly http: HomeserverHttp;
  /** The process's shared federation client and key cache. */
  readonly federation: FederationProvider;
  readonly log: Logger;
  readonly userAgent: string;
}

/** The recovery capability's parts for both front ends: its jobs, its stores, its detection. */
export function assembleRecovery(inputs: RecoveryInputs): RecoveryCore {
  const { config, db, log } = inputs;
  const rooms = new LostRoomStore(db);
  const sources = new LogSourceStore(db);
  // Joins go through a client that hands every 429 back, so the pacer can slow all joins down and tell the admin.
  const joinClient = new ClientApi(new HomeserverHttp({
    baseUrl: config.homeserver.url,
    token: inputs.registration.asToken,
    timeoutMs: config.requests.timeoutSeconds * 1000,
    maxRetries: 0,
    log,
    userAgent: inputs.userAgent,
  }));
  let notifier = async (job: JobRecord, message: Rich): Promise<void> => {
    if (job.origin === 'terminal') process.stderr.write(`${message.text}\n`);
    else log.warn({ job: job.id, notice: message.text }, 'job notice');
  };
  const jobs: JobDefinition[] = [
    rejoinJob({
      db, rooms, serverName: config.homeserver.serverName, config: config.recovery, http: inputs.http, joinClient,
      federation: () => inputs.federation.get(),
      // Idle connections go, so a terminal process can exit; the client stays usable.
      releaseFederation: () => inputs.federation.close(),
      notify: (job, message) => notifier(job, message),
      log,
    }),
    lostScanJob({ rooms: () => rooms, serverName: config.homeserver.serverName }),
  ];

  return {
    jobs,
    rooms,
    sources,
    setJobNotifier(notify) {
      notifier = notify;
    },
    startDetection(notify) {
      const detection = new LostRoomDetection({ config: config.recovery, serverName: config.homeserver.serverName, rooms, sources, log: log.child({ module: 'recovery' }), notify });
      detection.start();
      return detection;
    },
  };
}
