import type { Db } from '../store/database.ts';

export type RestoreKind = 'rejoin' | 'recreate';

/**
 * How far a recreated room has got; each phase is done once and recorded before the next starts:
 * creating (createRoom asked) → created → aliases → members → history → finished.
 * A rejoined room goes rejoining → finished.
 */
export type RoomPhase = 'creating' | 'created' | 'aliases' | 'members' | 'history' | 'rejoining' | 'finished';

export interface RestoredRoom {
  readonly oldRoomId: string;
  readonly kind: RestoreKind;
  readonly newRoomId: string | null;
  readonly phase: RoomPhase;
  readonly actingUser: string | null;
}

export interface HistoryProgress {
  readonly file: string;
  readonly line: number;
  readonly imported: number;
  readonly skipped: number;
}

/** A step of a recreated room that can fail without stopping it, and is retried by a re-run. */
export type RoomStep = 'aliases' | 'directory' | 'members';

export interface StepOutcome {
  readonly step: RoomStep;
  readonly outcome: 'done' | 'failed';
  /** What went wrong, one message each (empty when done). */
  readonly problems: readonly string[];
}

export type MarkerState = 'pending' | 'set' | 'failed' | 'lost';

export interface ReadMarker {
  readonly userId: string;
  readonly oldRoomId: string;
  readonly eventId: string;
  readonly state: MarkerState;
  readonly detail: string | null;
}

/** Steward's memory of what restore rooms did: the old → new room map, the event map, the import positions. */
export class RestoredRoomStore {
  private readonly db: Db;
  constructor(db: Db) {
    this.db = db;
  }

  get(oldRoomId: string): RestoredRoom | undefined {
    const row = this.db.prepare('SELECT old_room_id, kind, new_room_id, phase, acting_user FROM restored_rooms WHERE old_room_id = ?').get(oldRoomId) as
      | { old_room_id: string; kind: RestoreKind; new_room_id: string | null; phase: RoomPhase; acting_user: string | null }
      | undefined;
    return row && { oldRoomId: row.old_room_id, kind: row.kind, newRoomId: row.new_room_id, phase: row.phase, actingUser: row.acting_user };
  }

  /** The room that stands for `oldRoomId` now, if restore has made or found one. */
  newRoomFor(oldRoomId: string): string | undefined {
    return this.get(oldRoomId)?.newRoomId ?? undefined;
  }

  set(room: RestoredRoom, detail?: unknown): void {
    this.db.prepare(`INSERT INTO restored_rooms (old_room_id, kind, new_room_id, phase, acting_user, detail, updated_ts) VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (old_room_id) DO UPDATE SET kind = excluded.kind, new_room_id = excluded.new_room_id, phase = excluded.phase,
        acting_user = excluded.acting_user, detail = coalesce(excluded.detail, restored_rooms.detail), updated_ts = excluded.updated_ts`)
      .run(room.oldRoomId, room.kind, room.newRoomId, room.phase, room.actingUser, detail === undefined ? null : JSON.stringify(detail), Date.now());
  }

  setStep(oldRoomId: string, step: RoomStep, problems: readonly string[]): void {
    this.db.prepare(`INSERT INTO restored_room_steps (old_room_id, step, outcome, detail, updated_ts) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (old_room_id, step) DO UPDATE SET outcome = excluded.outcome, detail = excluded.detail, updated_ts = excluded.updated_ts`)
      .run(oldRoomId, step, problems.length > 0 ? 'failed' : 'done', JSON.stringify(problems), Date.now());
  }

  /** The steps of a room that failed when last tried, in the order they run. */
  failedSteps(oldRoomId: string): StepOutcome[] {
    const order: readonly RoomStep[] = ['aliases', 'directory', 'members'];
    return (this.db.prepare("SELECT step, detail FROM restored_room_steps WHERE old_room_id = ? AND outcome = 'failed'").all(oldRoomId) as { step: RoomStep; detail: string }[])
      .map((r) => ({ step: r.step, outcome: 'failed' as const, problems: JSON.parse(r.detail) as string[] }))
      .sort((a, b) => order.indexOf(a.step) - order.indexOf(b.step));
  }

  /**
   * The read markers of a user dump, recorded by restore users for restore rooms. A marker already
   * there for the same event keeps its state (a re-run of restore users changes nothing); one for
   * another event is to be set again.
   */
  recordMarker(userId: string, oldRoomId: string, eventId: string, opts: { keepExisting?: boolean } = {}): void {
    const onConflict = opts.keepExisting
      ? 'DO NOTHING'
      : `DO UPDATE SET event_id = excluded.event_id, state = 'pending', detail = NULL, updated_ts = excluded.updated_ts WHERE restore_read_markers.event_id != excluded.event_id`;
    this.db.prepare(`INSERT INTO restore_read_markers (user_id, old_room_id, event_id, state, detail, updated_ts) VALUES (?, ?, ?, 'pending', NULL, ?)
      ON CONFLICT (old_room_id, user_id) ${onConflict}`).run(userId, oldRoomId, eventId, Date.now());
  }

  /** Markers of a room still to set: pending, or failed when last tried. */
  markersToSet(oldRoomId: string): ReadMarker[] {
    return (this.db.prepare("SELECT user_id, old_room_id, event_id, state, detail FROM restore_read_markers WHERE old_room_id = ? AND state IN ('pending', 'failed') ORDER BY user_id").all(oldRoomId) as MarkerRow[]).map(markerOf);
  }

  setMarker(marker: Pick<ReadMarker, 'userId' | 'oldRoomId'>, state: MarkerState, detail: string | null): void {
    this.db.prepare('UPDATE restore_read_markers SET state = ?, detail = ?, updated_ts = ? WHERE old_room_id = ? AND user_id = ?').run(state, detail, Date.now(), marker.oldRoomId, marker.userId);
  }

  /** Markers of these rooms that are not set (failed or lost), for the report. */
  markersNotSet(oldRoomIds: readonly string[]): ReadMarker[] {
    const wanted = new Set(oldRoomIds);
    return (this.db.prepare("SELECT user_id, old_room_id, event_id, state, detail FROM restore_read_markers WHERE state IN ('failed', 'lost', 'pending') ORDER BY old_room_id, user_id").all() as MarkerRow[])
      .filter((r) => wanted.has(r.old_room_id)).map(markerOf);
  }

  newEventFor(oldRoomId: string, oldEventId: string): string | undefined {
    const row = this.db.prepare('SELECT new_event_id FROM restored_events WHERE old_room_id = ? AND old_event_id = ?').get(oldRoomId, oldEventId) as { new_event_id: string } | undefined;
    return row?.new_event_id;
  }

  importedCount(oldRoomId: string): number {
    return (this.db.prepare('SELECT count(*) AS n FROM restored_events WHERE old_room_id = ?').get(oldRoomId) as { n: number }).n;
  }

  history(oldRoomId: string): HistoryProgress | undefined {
    const row = this.db.prepare('SELECT file, line, imported, skipped FROM restored_history WHERE old_room_id = ?').get(oldRoomId) as HistoryProgress | undefined;
    return row ? { file: row.file, line: row.line, imported: row.imported, skipped: row.skipped } : undefined;
  }

  /** One imported (or skipped) line: the event map and the position move together. */
  recordLine(oldRoomId: string, position: HistoryProgress, mapped?: { oldEventId: string; newEventId: string }): void {
    this.db.transaction(() => {
      if (mapped) {
        this.db.prepare('INSERT OR REPLACE INTO restored_events (old_room_id, old_event_id, new_event_id) VALUES (?, ?, ?)').run(oldRoomId, mapped.oldEventId, mapped.newEventId);
      }
      this.db.prepare(`INSERT INTO restored_history (old_room_id, file, line, imported, skipped, updated_ts) VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (old_room_id) DO UPDATE SET file = excluded.file, line = excluded.line, imported = excluded.imported, skipped = excluded.skipped, updated_ts = excluded.updated_ts`)
        .run(oldRoomId, position.file, position.line, position.imported, position.skipped, Date.now());
    })();
  }

  saveResult(jobId: number, seq: number, oldRoomId: string, outcome: string, result: unknown): void {
    this.db.prepare('INSERT OR REPLACE INTO restore_room_results (job_id, old_room_id, seq, outcome, result) VALUES (?, ?, ?, ?, ?)')
      .run(jobId, oldRoomId, seq, outcome, JSON.stringify(result));
  }

  results<T>(jobId: number): T[] {
    return (this.db.prepare('SELECT result FROM restore_room_results WHERE job_id = ? ORDER BY seq').all(jobId) as { result: string }[]).map((r) => JSON.parse(r.result) as T);
  }

  doneInJob(jobId: number): Set<string> {
    return new Set((this.db.prepare('SELECT old_room_id FROM restore_room_results WHERE job_id = ?').all(jobId) as { old_room_id: string }[]).map((r) => r.old_room_id));
  }
}

interface MarkerRow {
  user_id: string;
  old_room_id: string;
  event_id: string;
  state: MarkerState;
  detail: string | null;
}

const markerOf = (r: MarkerRow): ReadMarker => ({ userId: r.user_id, oldRoomId: r.old_room_id, eventId: r.event_id, state: r.state, detail: r.detail });
