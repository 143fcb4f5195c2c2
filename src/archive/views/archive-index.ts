import { chmodSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { EventFacts } from './event-facts.ts';

export type IndexDb = Database.Database;

/**
 * `<out>/archive.sqlite`: derived from the JSONL (and media/index.jsonl), so it can be deleted and
 * rebuilt at any time. Not Steward's database. The rollback journal (not WAL) keeps it one file
 * that can be copied along with the archive.
 */
const SCHEMA_VERSION = 3;
// Most events point at nothing: indexing only those that do keeps four b-trees out of every
// insert of a plain message (a lookup `column = ?` implies `IS NOT NULL`, so SQLite uses them).
const RELATION_INDEXES = `
  CREATE INDEX events_relates_to ON events (relates_to) WHERE relates_to IS NOT NULL;
  CREATE INDEX events_redacts ON events (redacts) WHERE redacts IS NOT NULL;
  CREATE INDEX events_reply_to ON events (reply_to) WHERE reply_to IS NOT NULL;
  CREATE INDEX events_thread_root ON events (thread_root) WHERE thread_root IS NOT NULL;
`;
/** Version 1 indexed every event in the relation columns, and by sender and time (search filters the words' hits instead). */
const MIGRATE_1_TO_2 = `
  DROP INDEX events_relates_to;
  DROP INDEX events_redacts;
  DROP INDEX events_reply_to;
  DROP INDEX events_thread_root;
  DROP INDEX events_sender;
  ${RELATION_INDEXES}
`;
/**
 * Version 2 kept two more b-trees on every event: (room, day, ts), which the room's time index
 * answers as well (a day is a range of timestamps), and (room, type, ts), which only state events
 * are looked up by. A dirty day's mark now carries when it was set, so a day marked again while it
 * is being written keeps its mark.
 */
const MIGRATE_2_TO_3 = `
  DROP INDEX events_room_day;
  DROP INDEX events_room_type;
  CREATE INDEX events_room_state ON events (room_id, type, ts) WHERE state_key IS NOT NULL;
  ALTER TABLE dirty_days ADD COLUMN mark INTEGER NOT NULL DEFAULT 0;
`;
const SCHEMA = `
  CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY,
    room_version TEXT NOT NULL,
    dir TEXT NOT NULL
  );
  CREATE TABLE events (
    rowid INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    ts INTEGER NOT NULL,
    depth INTEGER NOT NULL,
    day TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT,
    relation TEXT,
    relates_to TEXT,
    reply_to TEXT,
    thread_root TEXT,
    redacts TEXT,
    body TEXT,
    content TEXT NOT NULL,
    original TEXT,
    redacted INTEGER NOT NULL,
    original_missing TEXT
  );
  CREATE INDEX events_room_ts ON events (room_id, ts);
  CREATE INDEX events_room_state ON events (room_id, type, ts) WHERE state_key IS NOT NULL;
  CREATE INDEX events_sender_depth ON events (room_id, sender, depth);
  CREATE TABLE members (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    depth INTEGER NOT NULL,
    membership TEXT,
    displayname TEXT,
    avatar_url TEXT
  );
  CREATE INDEX members_over_time ON members (room_id, user_id, depth, ts, event_id);
  CREATE TABLE event_media (
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    mxc TEXT NOT NULL,
    encrypted INTEGER NOT NULL,
    PRIMARY KEY (event_id, mxc)
  );
  CREATE INDEX event_media_mxc ON event_media (mxc);
  CREATE INDEX event_media_room ON event_media (room_id);
  CREATE TABLE media (
    mxc TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    media_type TEXT,
    upload_name TEXT,
    encrypted INTEGER NOT NULL
  );
  -- Media the server says it does not have (M_NOT_FOUND): reported once, not asked for again.
  CREATE TABLE media_missing (
    mxc TEXT PRIMARY KEY,
    error TEXT NOT NULL
  );
  -- Days whose markdown is out of date; written in the same transaction as what made them so.
  CREATE TABLE dirty_days (
    room_id TEXT NOT NULL,
    day TEXT NOT NULL,
    -- Which marking this is: a day marked again while it is written keeps its (new) mark.
    mark INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, day)
  ) WITHOUT ROWID;
  CREATE TABLE files (
    path TEXT PRIMARY KEY,
    offset INTEGER NOT NULL
  );
  CREATE VIRTUAL TABLE events_fts USING fts5 (body, content = 'events', content_rowid = 'rowid', tokenize = 'unicode61 remove_diacritics 2');
  ${RELATION_INDEXES}
`;

export function openIndex(path: string): IndexDb {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const db = new Database(path);
  try {
    chmodSync(path, 0o600);
    db.pragma('journal_mode = DELETE');
    // Derived data: no syncs at commit. A crash of Steward loses nothing; a power cut may lose the
    // last commits (caught up from the day files) or damage the file: one that no longer opens is
    // set aside and rebuilt, and deleting it rebuilds it too (the README says so).
    db.pragma('synchronous = OFF');
    db.pragma('busy_timeout = 5000');
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version === 0) {
      db.transaction(() => {
        db.exec(SCHEMA);
        db.pragma(`user_version = ${SCHEMA_VERSION}`);
      })();
    } else if (version === 1 || version === 2) {
      db.transaction(() => {
        if (version === 1) db.exec(MIGRATE_1_TO_2);
        db.exec(MIGRATE_2_TO_3);
        db.pragma(`user_version = ${SCHEMA_VERSION}`);
      })();
    } else if (version !== SCHEMA_VERSION) {
      throw new Error(`${path} has index schema ${version}, this Steward knows ${SCHEMA_VERSION}`);
    }
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

export interface DirtyDay {
  readonly room_id: string;
  readonly day: string;
  readonly mark: number;
  readonly dir: string;
}

/** Prepared statements over the index, shared by ingest, rendering and search. */
export class ArchiveIndex {
  readonly db: IndexDb;
  private readonly insertEvent;
  private readonly insertFts;
  private readonly insertMember;
  private readonly insertEventMedia;
  private readonly eventDay;
  private readonly pointingAt;
  private readonly nextMember;
  private readonly senderDays;
  private readonly roomRow;
  private readonly writeRoom;
  private readonly offsetOf;
  private readonly writeOffset;
  private readonly insertDirty;
  private readonly dirtyDays;
  private readonly clearDirty;
  /** Marks only grow, across runs too: a mark read before a day is written never equals a later one. */
  private lastMark: number;

  constructor(db: IndexDb) {
    this.db = db;
    this.insertEvent = db.prepare(`INSERT OR IGNORE INTO events (event_id, room_id, sender, ts, depth, day, type, state_key, relation, relates_to, reply_to, thread_root, redacts, body, content, original, redacted, original_missing)
      VALUES (@eventId, @roomId, @sender, @ts, @depth, @day, @type, @stateKey, @relation, @relatesTo, @replyTo, @threadRoot, @redacts, @body, @content, @original, @redacted, @originalMissing)`);
    this.insertFts = db.prepare('INSERT INTO events_fts (rowid, body) VALUES (?, ?)');
    this.insertMember = db.prepare('INSERT OR IGNORE INTO members (event_id, room_id, user_id, ts, depth, membership, displayname, avatar_url) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
    this.insertEventMedia = db.prepare('INSERT OR IGNORE INTO event_media (event_id, room_id, mxc, encrypted) VALUES (?, ?, ?, ?)');
    // Per column, so each probes its own index (an OR over three columns would scan the room);
    // `+room_id` keeps the planner from preferring the room's index, which would scan the whole room.
    this.pointingAt = db.prepare<{ room: string; ids: string }, string>(
      ['relates_to', 'redacts', 'reply_to'].map((column) => `SELECT day FROM events WHERE +room_id = @room AND ${column} IN (SELECT value FROM json_each(@ids))`).join(' UNION ALL '),
    ).pluck();
    this.nextMember = db.prepare<[string, string, number, string], { depth: number }>(
      'SELECT depth FROM members WHERE room_id = ? AND user_id = ? AND depth >= ? AND event_id != ? ORDER BY depth, ts LIMIT 1',
    );
    this.senderDays = db.prepare<[string, string, number, number], string>('SELECT DISTINCT day FROM events WHERE room_id = ? AND sender = ? AND depth >= ? AND depth <= ?').pluck();
    this.eventDay = db.prepare<[string, string], { day: string; thread_root: string | null }>('SELECT day, thread_root FROM events WHERE +room_id = ? AND event_id = ?');
    this.roomRow = db.prepare<[string], { room_version: string; dir: string }>('SELECT room_version, dir FROM rooms WHERE room_id = ?');
    this.writeRoom = db.prepare('INSERT INTO rooms (room_id, room_version, dir) VALUES (?, ?, ?) ON CONFLICT (room_id) DO UPDATE SET room_version = excluded.room_version, dir = excluded.dir');
    this.offsetOf = db.prepare<[string], number>('SELECT offset FROM files WHERE path = ?').pluck();
    this.writeOffset = db.prepare('INSERT INTO files (path, offset) VALUES (?, ?) ON CONFLICT (path) DO UPDATE SET offset = excluded.offset');
    this.insertDirty = db.prepare('INSERT INTO dirty_days (room_id, day, mark) VALUES (?, ?, ?) ON CONFLICT (room_id, day) DO UPDATE SET mark = excluded.mark');
    this.dirtyDays = db.prepare<[{ room: string | null; before: string | null }], DirtyDay>(
      'SELECT d.room_id, d.day, d.mark, r.dir FROM dirty_days d JOIN rooms r ON r.room_id = d.room_id WHERE (@room IS NULL OR d.room_id = @room) AND (@before IS NULL OR d.day < @before) ORDER BY d.room_id, d.day',
    );
    this.clearDirty = db.prepare('DELETE FROM dirty_days WHERE room_id = ? AND day = ? AND mark = ?');
    this.lastMark = (db.prepare('SELECT MAX(mark) FROM dirty_days').pluck().get() as number | null) ?? 0;
  }

  /** Writes only when something differs: a run with nothing new leaves archive.sqlite untouched. */
  upsertRoom(roomId: string, roomVersion: string, dir: string): void {
    const row = this.roomRow.get(roomId);
    if (row && row.room_version === roomVersion && row.dir === dir) return;
    this.writeRoom.run(roomId, roomVersion, dir);
  }

  fileOffset(relPath: string): number {
    return this.offsetOf.get(relPath) ?? 0;
  }

  setFileOffset(relPath: string, offset: number): void {
    this.writeOffset.run(relPath, offset);
  }

  /**
   * Adds events (each once: an event id already indexed is ignored) and collects the days whose
   * markdown they change: their own, the day of the event each edits, reacts to, redacts or
   * answers in a thread, the days of events that point at one of them and were indexed first (a
   * rebuild in day order, a late event); for a member event, the days of the member's later
   * events up to their next member event in room order (their name "as it was then" may have changed).
   */
  addAll(roomId: string, facts: Iterable<EventFacts>, touched: Set<string>): void {
    const added: string[] = [];
    for (const f of facts) if (this.add(f, touched)) added.push(f.eventId);
    // Asked once for the whole batch: a probe per event cost more than the insert itself.
    if (added.length > 0) for (const day of this.pointingAt.all({ room: roomId, ids: JSON.stringify(added) })) touched.add(day);
  }

  private add(f: EventFacts, touched: Set<string>): boolean {
    const info = this.insertEvent.run({
      ...f,
      content: JSON.stringify(f.content),
      original: f.original ? JSON.stringify(f.original) : null,
      redacted: f.redacted ? 1 : 0,
    });
    if (info.changes === 0) return false;
    if (f.body !== null) this.insertFts.run(info.lastInsertRowid, f.body);
    touched.add(f.day);
    for (const target of [f.relatesTo, f.redacts, f.threadRoot, f.replyTo]) {
      if (target === null) continue;
      const row = this.eventDay.get(f.roomId, target);
      if (!row) continue;
      touched.add(row.day);
      // A thread reply is shown under its root: what changes the reply changes the root's day.
      if (row.thread_root !== null) {
        const root = this.eventDay.get(f.roomId, row.thread_root);
        if (root) touched.add(root.day);
      }
    }
    for (const m of f.media) this.insertEventMedia.run(f.eventId, f.roomId, m.mxc, m.encrypted ? 1 : 0);
    if (f.type === 'm.room.member' && f.stateKey !== null) {
      const c = f.content;
      this.insertMember.run(f.eventId, f.roomId, f.stateKey, f.ts, f.depth,
        typeof c.membership === 'string' ? c.membership : null,
        typeof c.displayname === 'string' ? c.displayname : null,
        typeof c.avatar_url === 'string' ? c.avatar_url : null);
      const next = this.nextMember.get(f.roomId, f.stateKey, f.depth, f.eventId);
      for (const day of this.senderDays.all(f.roomId, f.stateKey, f.depth, next?.depth ?? Number.MAX_SAFE_INTEGER)) touched.add(day);
    }
    return true;
  }

  markDirty(roomId: string, days: Iterable<string>): void {
    for (const day of days) this.insertDirty.run(roomId, day, ++this.lastMark);
  }

  /** Days whose markdown is out of date (of one room, before one day), with the mark each was read with. */
  dirty(roomId?: string, before?: string): DirtyDay[] {
    return this.dirtyDays.all({ room: roomId ?? null, before: before ?? null });
  }

  /** Unmarks written days in one commit; a day marked again since it was read stays marked. */
  clean(days: readonly DirtyDay[]): void {
    if (days.length === 0) return;
    this.db.transaction(() => {
      for (const d of days) this.clearDirty.run(d.room_id, d.day, d.mark);
    })();
  }

  /** Forgets a room's events (its day files changed under the index: re-read them from the start). */
  dropRoom(roomId: string): void {
    this.db.prepare("INSERT INTO events_fts (events_fts, rowid, body) SELECT 'delete', rowid, body FROM events WHERE room_id = ? AND body IS NOT NULL").run(roomId);
    this.db.prepare('DELETE FROM events WHERE room_id = ?').run(roomId);
    this.db.prepare('DELETE FROM members WHERE room_id = ?').run(roomId);
    this.db.prepare('DELETE FROM event_media WHERE room_id = ?').run(roomId);
  }
}
