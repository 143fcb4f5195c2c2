import type { StewardConfig } from '../config/config.ts';
import type { HomeserverHttp } from '../homeserver/http.ts';
import type { SynapseAdmin } from '../homeserver/synapse-admin.ts';
import { SynapseArchiveApi } from '../homeserver/synapse-archive.ts';
import type { JobRecord, JobStore } from '../jobs/job-store.ts';
import type { JobDefinition } from '../jobs/runner.ts';
import type { Logger } from '../log.ts';
import type { Db } from '../store/database.ts';
import type { KeyValueStore } from '../store/kv.ts';
import { ARCHIVE_JOB, archiveJob, parseArchiveArgs, type ArchiveArgs, type ArchiveViewsFactory } from './archive-job.ts';
import { ArchiveStore } from './archive-store.ts';
import { readRetention } from './retention.ts';
import { dueSlot, nextSlot } from './schedule.ts';

export interface ArchiveCore {
  readonly store: ArchiveStore;
  readonly jobs: readonly JobDefinition[];
  readonly config: StewardConfig['archive'];
  /** The next scheduled run, or undefined without archive.schedule. */
  nextRun(now?: number): number | undefined;
  /** Unfinished archive jobs (any origin), newest first. */
  activeJobs(): JobRecord[];
  /**
   * The service: starts archive.schedule. A slot missed while Steward was down is run now; a slot
   * that comes while an archive is still going is skipped. Stop it before the database closes.
   */
  startSchedule(submit: (args: ArchiveArgs) => JobRecord): { stop(): void };
}

export interface ArchiveInputs {
  readonly config: StewardConfig;
  readonly db: Db;
  readonly http: HomeserverHttp;
  readonly admin: SynapseAdmin;
  readonly kv: KeyValueStore;
  readonly jobs: JobStore;
  readonly log: Logger;
  /** The views (markdown, index, media) built from the JSONL, created per run. */
  readonly views: ArchiveViewsFactory;
}

const MAX_TIMER_MS = 3_600_000;

export function assembleArchive(inputs: ArchiveInputs): ArchiveCore {
  const { config, log } = inputs;
  const store = new ArchiveStore(inputs.db);
  const settings = config.archive;
  const job = archiveJob({
    admin: inputs.admin,
    api: new SynapseArchiveApi(inputs.http),
    store,
    kv: inputs.kv,
    serverName: config.homeserver.serverName,
    pageSize: settings.pageSize,
    views: inputs.views,
    retention: () => readRetention(settings.synapseConfig),
  });
  const activeJobs = (): JobRecord[] => inputs.jobs.list(100, ['queued', 'running', 'interrupted']).filter((j) => j.type === ARCHIVE_JOB);
  return {
    store,
    jobs: [job],
    config: settings,
    activeJobs,
    nextRun: (now = Date.now()) => (settings.schedule ? nextSlot(settings.schedule, now) : undefined),
    startSchedule(submit) {
      const schedule = settings.schedule;
      if (!schedule) return { stop() {} };
      let timer: NodeJS.Timeout | null = null;
      let stopped = false;
      const tick = (): void => {
        if (stopped) return;
        const now = Date.now();
        const last = store.lastScheduledSlot();
        const { due, slot } = dueSlot(schedule, last, now);
        if (last === undefined) {
          store.recordScheduledSlot(slot, null);
          log.info({ next: new Date(nextSlot(schedule, now)).toString() }, 'archive schedule set; the first run is at the next slot');
        } else if (due) {
          const busy = activeJobs().find((j) => parseArchiveArgs(j.args).scheduled);
          if (busy) {
            store.recordScheduledSlot(slot, busy.id);
            log.warn({ job: busy.id }, 'scheduled archive skipped: the previous one is still running');
          } else {
            const started = submit({ out: settings.out, rooms: [], media: settings.media, concurrency: settings.concurrency, full: false, scheduled: true });
            store.recordScheduledSlot(slot, started.id);
            log.info({ job: started.id, slot: new Date(slot).toString(), late: now - slot > 60_000 }, 'scheduled archive started');
          }
        }
        timer = setTimeout(tick, Math.max(1000, Math.min(nextSlot(schedule, now) - now + 500, MAX_TIMER_MS)));
        timer.unref();
      };
      tick();
      return {
        stop() {
          stopped = true;
          if (timer) clearTimeout(timer);
        },
      };
    },
  };
}
