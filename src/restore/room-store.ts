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
