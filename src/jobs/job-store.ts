import type { Db } from '../store/database.ts';
import type { Failure } from '../util/result.ts';

export type JobState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled' | 'interrupted';
export type JobOrigin = 'room' | 'terminal';

export interface JobRecord {
  readonly id: number;
  readonly type: string;
  readonly args: Record<string, unknown>;
  readonly state: JobState;
  readonly origin: JobOrigin;
  readonly requestedBy: string | null;
  readonly roomId: string | null;
  readonly commandEventId: string | null;
  readonly statusEventId: string | null;
  readonly done: number;
  readonly total: number | null;
  readonly failed: number;
  readonly checkpoint: StoredCheckpoint | null;
  readonly result: JobResult | null;
  readonly error: string | null;
  readonly cancelRequested: boolean;
  readonly resumedCount: number;
  readonly createdTs: number;
  readonly startedTs: number | null;
  readonly finishedTs: number | null;
}

/** What an executor saved, with the counters as they stood at that moment, so a resume restores both. */
export interface StoredCheckpoint {
  readonly data: unknown;
  readonly done: number;
  readonly failed: number;
  readonly ts: number;
  /** The newest job_errors rowid at the checkpoint: errors after it are for items that will be retried. */
  readonly errorsUpTo?: number;
}

export interface JobResult {
  readonly summary: string;
  readonly details?: Record<string, unknown>;
}

export interface JobItemError {
  readonly item: string;
  readonly code: string;
  readonly message: string;
  readonly ts: number;
}

interface JobRow {
  id: number; type: string; args: string; state: JobState; origin: JobOrigin; requested_by: string | null;
  room_id: string | null; command_event_id: string | null; status_event_id: string | null; done: number;
  total: number | null; failed: number; checkpoint: string | null; result: string | null; error: string | null;
  cancel_requested: number; resumed_count: number; created_ts: number; started_ts: number | null; finished_ts: number | null;
}

function toRecord(row: JobRow): JobRecord {
  return {
    id: row.id, type: row.type, args: JSON.parse(row.args) as Record<string, unknown>, state: row.state, origin: row.origin,
    requestedBy: row.requested_by, roomId: row.room_id, commandEventId: row.command_event_id, statusEventId: row.status_event_id,
    done: row.done, total: row.total, failed: row.failed,
    checkpoint: row.checkpoint ? (JSON.parse(row.checkpoint) as StoredCheckpoint) : null,
    result: row.result ? (JSON.parse(row.result) as JobResult) : null,
    error: row.error, cancelRequested: row.cancel_requested === 1, resumedCount: row.resumed_count,
    createdTs: row.created_ts, startedTs: row.started_ts, finishedTs: row.finished_ts,
  };
}

export interface NewJob {
  readonly type: string;
  readonly args: Record<string, unknown>;
  readonly origin: JobOrigin;
  readonly requestedBy?: string;
  readonly roomId?: string;
  readonly commandEventId?: string;
}

/** Jobs as rows: the only state a restart needs to pick work up again. */
export class JobStore {
  private readonly db: Db;
  constructor(db: Db) {
    this.db = db;
  }

  /** Idempotent per command event: handling the same command twice yields the same job. */
  create(job: NewJob, now = Date.now()): { job: JobRecord; created: boolean } {
    const info = this.db.prepare(
      `INSERT OR IGNORE INTO jobs (type, args, state, origin, requested_by, room_id, command_event_id, created_ts, updated_ts)
       VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?)`,
    ).run(job.type, JSON.stringify(job.args), job.origin, job.requestedBy ?? null, job.roomId ?? null, job.commandEventId ?? null, now, now);
    if (info.changes === 1) return { job: this.get(Number(info.lastInsertRowid))!, created: true };
    const existing = this.db.prepare('SELECT * FROM jobs WHERE command_event_id = ?').get(job.commandEventId ?? null) as JobRow;
    return { job: toRecord(existing), created: false };
  }

  get(id: number): JobRecord | undefined {
    const row = this.db.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as JobRow | undefined;
    return row ? toRecord(row) : undefined;
  }

  list(limit: number, states?: readonly JobState[]): JobRecord[] {
    const rows = states
      ? (this.db.prepare(`SELECT * FROM jobs WHERE state IN (${states.map(() => '?').join(',')}) ORDER BY id DESC LIMIT ?`).all(...states, limit) as JobRow[])
      : (this.db.prepare('SELECT * FROM jobs ORDER BY id DESC LIMIT ?').all(limit) as JobRow[]);
    return rows.map(toRecord);
  }

  countByState(): Record<string, number> {
    const rows = this.db.prepare('SELECT state, COUNT(*) AS n FROM jobs GROUP BY state').all() as { state: string; n: number }[];
    return Object.fromEntries(rows.map((r) => [r.state, r.n]));
  }

  /** Items done and failed over every stored job, by job type (metrics). */
  itemTotalsByType(): { type: string; done: number; failed: number }[] {
    return this.db.prepare('SELECT type, SUM(done) AS done, SUM(failed) AS failed FROM jobs GROUP BY type ORDER BY type').all() as { type: string; done: number; failed: number }[];
  }

  /** The newest unfinished terminal job with the same type and arguments: a re-run resumes it. */
  findUnfinished(type: string, args: Record<string, unknown>, origin: JobOrigin): JobRecord | undefined {
    const row = this.db.prepare(
      "SELECT * FROM jobs WHERE type = ? AND args = ? AND origin = ? AND state IN ('running', 'interrupted', 'queued') ORDER BY id DESC LIMIT 1",
    ).get(type, JSON.stringify(args), origin) as JobRow | undefined;
    return row ? toRecord(row) : undefined;
  }

  /** At start-up nothing is running yet, so every 'running' job of this origin was cut off. */
  markInterrupted(origin: JobOrigin, now = Date.now()): number {
    return this.db.prepare("UPDATE jobs SET state = 'interrupted', updated_ts = ? WHERE state = 'running' AND origin = ?").run(now, origin).changes;
  }

  pending(origin: JobOrigin): JobRecord[] {
    return (this.db.prepare("SELECT * FROM jobs WHERE origin = ? AND state IN ('queued', 'interrupted') ORDER BY id").all(origin) as JobRow[]).map(toRecord);
  }

  /**
   * Marks a job running. A resumed job gets its counters back as they were at its checkpoint,
   * and errors recorded after that checkpoint are dropped: those items will be tried again.
   */
  start(id: number, now = Date.now()): JobRecord {
    this.db.transaction(() => {
      const job = this.get(id)!;
      const resumed = job.state === 'interrupted' || job.startedTs !== null;
      const cp = job.checkpoint;
      this.db.prepare(
        `UPDATE jobs SET state = 'running', started_ts = COALESCE(started_ts, ?), done = ?, failed = ?,
         resumed_count = resumed_count + ?, updated_ts = ? WHERE id = ?`,
      ).run(now, cp?.done ?? 0, cp?.failed ?? 0, resumed ? 1 : 0, now, id);
      this.db.prepare('DELETE FROM job_errors WHERE job_id = ? AND rowid > ?').run(id, cp?.errorsUpTo ?? 0);
    })();
    return this.get(id)!;
  }

  progress(id: number, done: number, total: number | null, failed: number, now = Date.now()): void {
    this.db.prepare('UPDATE jobs SET done = ?, total = ?, failed = ?, updated_ts = ? WHERE id = ?').run(done, total, failed, now, id);
  }

  checkpoint(id: number, data: unknown, done: number, total: number | null, failed: number, now = Date.now()): void {
    const { seq } = this.db.prepare('SELECT COALESCE(MAX(rowid), 0) AS seq FROM job_errors WHERE job_id = ?').get(id) as { seq: number };
    const cp: StoredCheckpoint = { data, done, failed, ts: now, errorsUpTo: seq };
    this.db.prepare('UPDATE jobs SET checkpoint = ?, done = ?, total = ?, failed = ?, updated_ts = ? WHERE id = ?').run(JSON.stringify(cp), done, total, failed, now, id);
  }

  finish(id: number, state: 'done' | 'failed' | 'cancelled', result: JobResult | null, error: string | null, now = Date.now()): JobRecord {
    this.db.prepare('UPDATE jobs SET state = ?, result = ?, error = ?, finished_ts = ?, updated_ts = ? WHERE id = ?')
      .run(state, result ? JSON.stringify(result) : null, error, now, now, id);
    return this.get(id)!;
  }

  requestCancel(id: number): void {
    this.db.prepare('UPDATE jobs SET cancel_requested = 1 WHERE id = ?').run(id);
  }

  setStatusEvent(id: number, eventId: string): void {
    this.db.prepare('UPDATE jobs SET status_event_id = ? WHERE id = ?').run(eventId, id);
  }

  addError(id: number, item: string, failure: Failure, now = Date.now()): void {
    this.db.prepare('INSERT OR REPLACE INTO job_errors (job_id, item, code, message, ts) VALUES (?, ?, ?, ?, ?)').run(id, item, failure.code, failure.human, now);
  }

  errors(id: number, limit = 1_000_000): JobItemError[] {
    return this.db.prepare('SELECT item, code, message, ts FROM job_errors WHERE job_id = ? ORDER BY ts, item LIMIT ?').all(id, limit) as JobItemError[];
  }
}
