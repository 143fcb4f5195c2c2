import type { StewardConfig } from '../config/config.ts';
import type { FederationProvider } from '../federation/federation-access.ts';
import type { JobStore } from '../jobs/job-store.ts';
import type { JobRunner } from '../jobs/runner.ts';
import type { LinkedAccounts } from '../linked/linked-accounts.ts';
import type { RecoveryCore } from '../recovery/wiring.ts';
import type { ArchiveCore } from '../archive/wiring.ts';
import type { Command, FrontEnd } from './types.ts';
import type { Doctor } from '../doctor/doctor.ts';

export interface ServiceStatus {
  readonly version: string;
  readonly homeserver: string;
  readonly serverName: string;
  readonly botUserId: string;
  readonly startedTs: number;
  readonly synapseVersion: string | null;
}

/** What a command may use: who asked, from where, and the service's shared parts. */
export interface CommandContext {
  readonly frontEnd: FrontEnd;
  /** The admin who typed the command (room front end only). */
  readonly sender: string | undefined;
  readonly roomId: string | undefined;
  readonly commandEventId: string | undefined;
  readonly config: StewardConfig;
  readonly jobs: JobStore;
  readonly runner: JobRunner;
  readonly commands: readonly Command[];
  readonly status: () => ServiceStatus;
  /** Signed federation requests and verified server keys (needs federation.signing_key_path). */
  readonly federation: FederationProvider;
  /** Linked accounts (links, directory, mirror activity); absent where a context is built without it. */
  readonly linked?: LinkedAccounts;
  /** Lost rooms and log sources (src/recovery). */
  readonly recovery: Pick<RecoveryCore, 'rooms' | 'sources'>;
  /** The history archive's bookkeeping and schedule (src/archive); absent where a context is built without it. */
  readonly archive?: Pick<ArchiveCore, 'store' | 'config' | 'nextRun' | 'activeJobs'>;
  /** Deployment checks (src/doctor); the running service's one also round-trips events. */
  readonly doctor?: Doctor;
}
