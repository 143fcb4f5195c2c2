import { EventEmitter } from 'node:events';
import type { Logger } from '../log.ts';
import { errorMessage, type Failure, type Result } from '../util/result.ts';
import type { JobOrigin, JobRecord, JobResult, JobStore, NewJob } from './job-store.ts';

/** What an executor sees: its arguments, where it left off, and ways to report. Nothing else. */
export interface JobContext {
  readonly job: JobRecord;
  /** The executor's own checkpoint data from the last run, when resuming. */
  readonly resumeFrom: unknown;
  /** Aborted when the job is cancelled; pass it to requests so they stop promptly. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  setTotal(total: number): void;
  /** Items finished (written, skipped as already done); failures go through itemFailed. */
  advance(count?: number): void;
  itemFailed(item: string, failure: Failure): void;
  /** Persists resumable state together with the counters; call where a restart may pick up. */
  checkpoint(data: unknown): void;
  /** The live counters (the store is written at most every flush interval). */
  counters(): { done: number; failed: number; total: number | null };
}

export interface JobDefinition {
  readonly type: string;
  /** Short human title, e.g. "dump users". */
  title(args: Record<string, unknown>): string;
  run(ctx: JobContext): Promise<Result<JobResult>>;
}

export interface JobEvents {
  started: [job: JobRecord, resumed: boolean];
  progress: [job: JobRecord];
  finished: [job: JobRecord];
}

/**
 * Runs jobs from the store with bounded concurrency. Counters are kept in memory and written at
 * most every `flushMs`, and at every checkpoint, so a job over many items does not write per item.
 */
export class JobRunner extends EventEmitter<JobEvents> {
  private readonly store: JobStore;
  private readonly definitions: Map<string, JobDefinition>;
  private readonly concurrency: number;
  private readonly log: Logger;
  private readonly flushMs: number;
  private readonly running = new Map<number, { abort: AbortController; done: Promise<void> }>();
  private readonly queue: number[] = [];
  private stopping = false;

  constructor(opts: { store: JobStore; definitions: readonly JobDefinition[]; concurrency: number; log: Logger; flushMs?: number }) {
    super();
    this.store = opts.store;
    this.definitions = new Map(opts.definitions.map((d) => [d.type, d]));
    this.concurrency = opts.concurrency;
    this.log = opts.log.child({ module: 'jobs' });
    this.flushMs = opts.flushMs ?? 1000;
  }

  definition(type: string): JobDefinition | undefined {
    return this.definitions.get(type);
  }

  title(job: JobRecord): string {
    return this.definitions.get(job.type)?.title(job.args) ?? job.type;
  }

  /** Creates (or finds, for a repeated command event) a job and schedules it. */
  submit(job: NewJob): { job: JobRecord; created: boolean } {
    const outcome = this.store.create(job);
    if (outcome.created) {
      this.queue.push(outcome.job.id);
      this.pump();
    }
    return outcome;
  }

  /** After a restart: jobs cut off mid-run are marked interrupted and queued again with what was pending. */
  resumePending(origin: JobOrigin): JobRecord[] {
    const interrupted = this.store.markInterrupted(origin);
    if (interrupted > 0) this.log.info({ interrupted }, 'jobs were interrupted by a restart and will resume');
    const pending = this.store.pending(origin);
    for (const job of pending) if (!this.queue.includes(job.id)) this.queue.push(job.id);
    this.pump();
    return pending;
  }

  /** Runs one job to its end in this process (the terminal front end); stop() halts it like any other. */
  async runToEnd(id: number): Promise<JobRecord> {
    const abort = new AbortController();
    const done = this.execute(id, abort).finally(() => this.running.delete(id));
    this.running.set(id, { abort, done });
    await done;
    return this.store.get(id)!;
  }

  cancel(id: number): Result<JobRecord> {
    const job = this.store.get(id);
    if (!job) return { ok: false, error: { code: 'E_NO_JOB', human: `There is no job #${id}.`, log: `cancel: no job ${id}` } };
    if (job.state === 'done' || job.state === 'failed' || job.state === 'cancelled') {
      return { ok: false, error: { code: 'E_JOB_FINISHED', human: `Job #${id} has already ${job.state === 'done' ? 'finished' : job.state === 'failed' ? 'failed' : 'been cancelled'}.`, log: `cancel: job ${id} is ${job.state}` } };
    }
    this.store.requestCancel(id);
    const running = this.running.get(id);
    if (running) {
      running.abort.abort();
    } else if (job.state === 'running') {
      // Running in another process (the terminal, or the service): it sees the flag at its next flush.
    } else {
      const i = this.queue.indexOf(id);
      if (i >= 0) this.queue.splice(i, 1);
      const finished = this.store.finish(id, 'cancelled', { summary: 'cancelled before it started' }, null);
      this.emit('finished', finished);
    }
    return { ok: true, value: this.store.get(id)! };
  }

  activeCount(): number {
    return this.running.size;
  }

  /** Stops taking new jobs and halts running ones at their next check; they stay resumable. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const r of this.running.values()) r.abort.abort();
    await Promise.all([...this.running.values()].map((r) => r.done));
  }

  private pump(): void {
    while (!this.stopping && this.running.size < this.concurrency && this.queue.length > 0) {
      const id = this.queue.shift()!;
      const abort = new AbortController();
      const done = this.execute(id, abort).finally(() => {
        this.running.delete(id);
        this.pump();
      });
      this.running.set(id, { abort, done });
    }
  }

  private async execute(id: number, abort = new AbortController()): Promise<void> {
    const before = this.store.get(id);
    if (!before) return;
    const definition = this.definitions.get(before.type);
    if (!definition) {
      this.emit('finished', this.store.finish(id, 'failed', null, `unknown job type ${before.type}`));
      return;
    }
    if (before.cancelRequested) {
      this.emit('finished', this.store.finish(id, 'cancelled', { summary: 'cancelled' }, null));
      return;
    }
    const resumed = before.state === 'interrupted' || before.startedTs !== null;
    const job = this.store.start(id);
    const log = this.log.child({ job: id, type: job.type });
    log.info({ resumed, args: job.args }, resumed ? 'resuming job' : 'starting job');
    this.emit('started', job, resumed);

    let done = job.done;
    let failed = job.failed;
    let total = job.total;
    let lastFlush = Date.now();
    const flush = (force: boolean): void => {
      const now = Date.now();
      if (!force && now - lastFlush < this.flushMs) return;
      lastFlush = now;
      this.store.progress(id, done, total, failed, now);
      const current = this.store.get(id)!;
      // A cancel may come from another process (the room for a terminal job, or the reverse).
      if (current.cancelRequested && !abort.signal.aborted) abort.abort();
      this.emit('progress', current);
    };
    const ctx: JobContext = {
      job,
      resumeFrom: job.checkpoint?.data,
      signal: abort.signal,
      log,
      setTotal: (n) => { total = n; flush(true); },
      advance: (n = 1) => { done += n; flush(false); },
      itemFailed: (item, failure) => {
        failed += 1;
        this.store.addError(id, item, failure);
        log.warn({ item, code: failure.code, detail: failure.log }, 'item failed');
        flush(false);
      },
      counters: () => ({ done, failed, total }),
      checkpoint: (data) => {
        this.store.checkpoint(id, data, done, total, failed);
        this.emit('progress', this.store.get(id)!);
      },
    };

    let outcome: Result<JobResult>;
    try {
      outcome = await definition.run(ctx);
    } catch (err) {
      // A thrown error is a bug in the executor; the job fails with it, the service carries on.
      log.error({ err }, 'job crashed');
      outcome = { ok: false, error: { code: 'E_BUG', human: `internal error: ${errorMessage(err)}`, log: errorMessage(err) } };
    }
    this.store.progress(id, done, total, failed);
    if (this.stopping && abort.signal.aborted && !this.store.get(id)!.cancelRequested) {
      return; // shutting down: leave it 'running' so the next start marks it interrupted and resumes it
    }
    const cancelled = this.store.get(id)!.cancelRequested && abort.signal.aborted;
    const finished = cancelled
      ? this.store.finish(id, 'cancelled', { summary: `cancelled after ${done}${total !== null ? `/${total}` : ''}` }, null)
      : outcome.ok
        ? this.store.finish(id, 'done', outcome.value, null)
        : this.store.finish(id, 'failed', null, outcome.error.human);
    if (!outcome.ok && !cancelled) log.warn({ code: outcome.error.code, detail: outcome.error.log }, 'job failed');
    log.info({ state: finished.state, done, failed, total }, 'job finished');
    this.emit('finished', finished);
  }
}
