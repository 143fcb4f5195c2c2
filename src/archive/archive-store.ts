import type Database from 'better-sqlite3';
import type { Db } from '../store/database.ts';

type Statement = Database.Statement<unknown[]>;

export interface ArchiveRoomRow {
  readonly id: number;
  readonly outDir: string;
  readonly roomId: string;
  readonly roomVersion: string | null;
  readonly dirName: string;
  readonly streamToken: string | null;
  readonly passToken: string | null;
  readonly pageToken: string | null;
  readonly passStarted: boolean;
  readonly events: number;
  readonly bytes: number;
  readonly firstEventTs: number | null;
  readonly lastEventTs: number | null;
  readonly lastPassTs: number | null;
  readonly lastPassJob: number | null;
}

export interface ArchiveFileRow {
  readonly day: string;
  readonly length: number;
  readonly lines: number;
}

/** What one page adds to a room, committed in one transaction after the files are on disk. */
export interface PageCommit {
  readonly eventIds: readonly string[];
  readonly files: readonly ArchiveFileRow[];
  readonly bytes: number;
  readonly minTs: number | null;
  readonly maxTs: number | null;
  /** The page to read next if the pass is cut off; null when the pass has read its last page. */
  readonly nextPage: string | null;
}

interface RoomRow {
  id: number; out_dir: string; room_id: string; room_version: string | null; dir_name: string; stream_token: string | null;
  pass_token: string | null; page_token: string | null; pass_started: number; events: number; bytes: number;
  first_event_ts: number | null; last_event_ts: number | null; last_pass_ts: number | null; last_pass_job: number | null;
}

function toRoom(r: RoomRow): ArchiveRoomRow {
  return {
    id: r.id, outDir: r.out_dir, roomId: r.room_id, roomVersion: r.room_version, dirName: r.dir_name, streamToken: r.stream_token,
    passToken: r.pass_token, pageToken: r.page_token, passStarted: r.pass_started === 1, events: r.events, bytes: r.bytes,
    firstEventTs: r.first_event_ts, lastEventTs: r.last_event_ts, lastPassTs: r.last_pass_ts, lastPassJob: r.last_pass_job,
  };
}

/** What tells one archive folder from another: its archive.json's server and creation time. */
export interface FolderIdentity {
  readonly serverName: string;
  readonly createdTs: number;
}

/** The archive's own bookkeeping: rooms, the ids each holds, committed file lengths, folders, the schedule. */
export class ArchiveStore {
  private readonly db: Db;
  private readonly known: Statement;
  private readonly insertId: Statement;
  private readonly upsertFile: Statement;

  constructor(db: Db) {
    this.db = db;
    this.known = db.prepare('SELECT event_id FROM archive_events WHERE room = ? AND event_id IN (SELECT value FROM json_each(?))').pluck();
    this.insertId = db.prepare('INSERT OR IGNORE INTO archive_events (room, event_id) VALUES (?, ?)');
    this.upsertFile = db.prepare(
      'INSERT INTO archive_files (room, day, length, lines) VALUES (?, ?, ?, ?) ON CONFLICT (room, day) DO UPDATE SET length = excluded.length, lines = excluded.lines',
    );
  }

  room(outDir: string, roomId: string): ArchiveRoomRow | undefined {
    const row = this.db.prepare('SELECT * FROM archive_rooms WHERE out_dir = ? AND room_id = ?').get(outDir, roomId) as RoomRow | undefined;
    return row ? toRoom(row) : undefined;
  }

  /** The room's row, created on its first archive; the room version is refreshed from the server. */
  ensureRoom(outDir: string, roomId: string, roomVersion: string, dirName: string): ArchiveRoomRow {
    this.db.prepare(
      `INSERT INTO archive_rooms (out_dir, room_id, room_version, dir_name) VALUES (?, ?, ?, ?)
       ON CONFLICT (out_dir, room_id) DO UPDATE SET room_version = excluded.room_version`,
    ).run(outDir, roomId, roomVersion, dirName);
    return this.room(outDir, roomId)!;
  }

  rooms(outDir: string): ArchiveRoomRow[] {
    return (this.db.prepare('SELECT * FROM archive_rooms WHERE out_dir = ? ORDER BY room_id').all(outDir) as RoomRow[]).map(toRoom);
  }

  hasRooms(outDir: string): boolean {
    return this.db.prepare('SELECT 1 FROM archive_rooms WHERE out_dir = ? LIMIT 1').pluck().get(outDir) !== undefined;
  }

  /** Every archive folder Steward has written to, newest activity first. */
  outDirs(): string[] {
    return this.db.prepare('SELECT out_dir FROM archive_rooms GROUP BY out_dir ORDER BY MAX(COALESCE(last_pass_ts, 0)) DESC').pluck().all() as string[];
  }

  /** Which of these event ids the room's archive already holds. */
  knownAmong(room: number, eventIds: readonly string[]): Set<string> {
    if (eventIds.length === 0) return new Set();
    return new Set(this.known.all(room, JSON.stringify(eventIds)) as string[]);
  }

  files(room: number): ArchiveFileRow[] {
    return this.db.prepare('SELECT day, length, lines FROM archive_files WHERE room = ? ORDER BY day').all(room) as ArchiveFileRow[];
  }

  /** A pass begins (or a cut-off one carries on when `passToken` is the one it began from). */
  startPass(room: number, passToken: string | null): void {
    this.db.prepare('UPDATE archive_rooms SET pass_started = 1, pass_token = ?, page_token = NULL WHERE id = ?').run(passToken, room);
  }

  commitPage(room: number, page: PageCommit): void {
    this.db.transaction(() => {
      for (const id of page.eventIds) this.insertId.run(room, id);
      for (const f of page.files) this.upsertFile.run(room, f.day, f.length, f.lines);
      this.db.prepare(
        `UPDATE archive_rooms SET events = events + ?, bytes = bytes + ?, page_token = ?,
         first_event_ts = CASE WHEN ? IS NULL THEN first_event_ts ELSE MIN(COALESCE(first_event_ts, ?), ?) END,
         last_event_ts = CASE WHEN ? IS NULL THEN last_event_ts ELSE MAX(COALESCE(last_event_ts, ?), ?) END
         WHERE id = ?`,
      ).run(page.eventIds.length, page.bytes, page.nextPage, page.minTs, page.minTs, page.minTs, page.maxTs, page.maxTs, page.maxTs, room);
    })();
  }

  /** The pass read the room to its end: the next one starts from the token this one began from. */
  finishPass(room: number, jobId: number, now = Date.now()): void {
    this.db.prepare(
      `UPDATE archive_rooms SET stream_token = COALESCE(pass_token, stream_token), pass_token = NULL, page_token = NULL,
       pass_started = 0, last_pass_ts = ?, last_pass_job = ? WHERE id = ?`,
    ).run(now, jobId, room);
  }

  /** The archive.json identity last seen at this path. */
  folder(outDir: string): FolderIdentity | undefined {
    const row = this.db.prepare('SELECT server_name, created_ts FROM archive_folders WHERE out_dir = ?').get(outDir) as { server_name: string; created_ts: number } | undefined;
    return row ? { serverName: row.server_name, createdTs: row.created_ts } : undefined;
  }

  recordFolder(outDir: string, id: FolderIdentity): void {
    this.db.prepare('INSERT INTO archive_folders (out_dir, server_name, created_ts) VALUES (?, ?, ?) ON CONFLICT (out_dir) DO UPDATE SET server_name = excluded.server_name, created_ts = excluded.created_ts')
      .run(outDir, id.serverName, id.createdTs);
  }

  /** Other paths the same archive.json was seen at. */
  foldersWith(id: FolderIdentity, except: string): string[] {
    return this.db.prepare('SELECT out_dir FROM archive_folders WHERE server_name = ? AND created_ts = ? AND out_dir != ? ORDER BY out_dir').pluck()
      .all(id.serverName, id.createdTs, except) as string[];
  }

  /** The folder was moved: what Steward knows of it (rooms, ids, file lengths) follows it to its new path. */
  moveFolder(from: string, to: string): number {
    return this.db.transaction(() => {
      const moved = this.db.prepare('UPDATE archive_rooms SET out_dir = ? WHERE out_dir = ?').run(to, from).changes;
      this.db.prepare('DELETE FROM archive_folders WHERE out_dir = ?').run(from);
      return moved;
    })();
  }

  /** Forgets an archive folder (or one room of it) whose files are gone: archived again from the first event. */
  forget(outDir: string, roomId?: string): number {
    const res = roomId === undefined
      ? this.db.prepare('DELETE FROM archive_rooms WHERE out_dir = ?').run(outDir)
      : this.db.prepare('DELETE FROM archive_rooms WHERE out_dir = ? AND room_id = ?').run(outDir, roomId);
    return res.changes;
  }

  /** Forgets a pass's position so the next one reads the room from its start (dedupe keeps it exact). */
  resetStream(room: number): void {
    this.db.prepare('UPDATE archive_rooms SET stream_token = NULL, pass_token = NULL, page_token = NULL, pass_started = 0 WHERE id = ?').run(room);
  }

  lastScheduledSlot(): number | undefined {
    const v = this.db.prepare('SELECT last_slot_ts FROM archive_schedule WHERE id = 1').pluck().get() as number | undefined;
    return v ?? undefined;
  }

  recordScheduledSlot(slotTs: number, jobId: number | null): void {
    this.db.prepare(
      'INSERT INTO archive_schedule (id, last_slot_ts, last_job_id) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET last_slot_ts = excluded.last_slot_ts, last_job_id = excluded.last_job_id',
    ).run(slotTs, jobId);
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }
}
