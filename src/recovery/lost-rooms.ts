import type { Db } from '../store/database.ts';

export type LostRoomState = 'lost' | 'recovered' | 'forgotten';

export interface LostRoomServer {
  readonly server: string;
  readonly firstSeenTs: number;
  readonly lastSeenTs: number;
  readonly sightings: number;
  /** Named by an admin (!lost add), not seen in a log. */
  readonly manual: boolean;
}

export interface LostRoom {
  readonly roomId: string;
  readonly state: LostRoomState;
  readonly firstSeenTs: number;
  readonly lastSeenTs: number;
  readonly sightings: number;
  readonly addedBy: string | null;
  readonly announcedTs: number | null;
  readonly recoveredTs: number | null;
  readonly recoveredByJob: number | null;
  /** Best first: named by an admin, then most recently seen, then most often. */
  readonly servers: readonly LostRoomServer[];
}

/** What the store needs of a sighting: which room, from whom, when. */
export interface SightingInput {
  readonly roomId: string;
  readonly server: string | undefined;
  readonly ts: number;
}

interface RoomRow {
  room_id: string; state: LostRoomState; first_seen_ts: number; last_seen_ts: number; sightings: number; added_by: string | null;
  announced_ts: number | null; recovered_ts: number | null; recovered_by_job: number | null;
}
interface ServerRow { room_id: string; server_name: string; first_seen_ts: number; last_seen_ts: number; sightings: number; manual: number }

const SERVER_ORDER = 'ORDER BY manual DESC, last_seen_ts DESC, sightings DESC, server_name';

/** Lost rooms as rows: each recorded once, with the servers seen sending for it. */
export class LostRoomStore {
  private readonly db: Db;
  constructor(db: Db) {
    this.db = db;
  }

  /**
   * Records sightings in one transaction. Answers the rooms seen for the first time, and the
   * recovered rooms that are sending again after their recovery (lost again).
   */
  record(sightings: readonly SightingInput[], ownServer: string, now = Date.now()): { newRooms: string[]; lostAgain: string[] } {
    const newRooms: string[] = [];
    const lostAgain: string[] = [];
    if (sightings.length === 0) return { newRooms, lostAgain };
    const get = this.db.prepare('SELECT state, recovered_ts FROM lost_rooms WHERE room_id = ?');
    const insert = this.db.prepare(
      "INSERT INTO lost_rooms (room_id, state, first_seen_ts, last_seen_ts, sightings, state_changed_ts) VALUES (?, 'lost', ?, ?, 1, ?)",
    );
    const bump = this.db.prepare(
      'UPDATE lost_rooms SET first_seen_ts = MIN(first_seen_ts, ?), last_seen_ts = MAX(last_seen_ts, ?), sightings = sightings + 1 WHERE room_id = ?',
    );
    const relose = this.db.prepare("UPDATE lost_rooms SET state = 'lost', announced_ts = NULL, state_changed_ts = ? WHERE room_id = ?");
    const server = this.db.prepare(
      `INSERT INTO lost_room_servers (room_id, server_name, first_seen_ts, last_seen_ts, sightings) VALUES (?, ?, ?, ?, 1)
       ON CONFLICT (room_id, server_name) DO UPDATE SET first_seen_ts = MIN(first_seen_ts, excluded.first_seen_ts),
         last_seen_ts = MAX(last_seen_ts, excluded.last_seen_ts), sightings = sightings + 1`,
    );
    this.db.transaction(() => {
      for (const s of sightings) {
        const row = get.get(s.roomId) as { state: LostRoomState; recovered_ts: number | null } | undefined;
        if (!row) {
          insert.run(s.roomId, s.ts, s.ts, now);
          if (!newRooms.includes(s.roomId)) newRooms.push(s.roomId);
        } else {
          bump.run(s.ts, s.ts, s.roomId);
          if (row.state === 'recovered' && row.recovered_ts !== null && s.ts > row.recovered_ts) {
            relose.run(now, s.roomId);
            if (!lostAgain.includes(s.roomId)) lostAgain.push(s.roomId);
          }
        }
        if (s.server !== undefined && s.server !== ownServer) server.run(s.roomId, s.server, s.ts, s.ts);
      }
    })();
    return { newRooms, lostAgain };
  }

  /** `!lost add`: records (or reinstates) a room by hand, with a server to ask. */
  add(roomId: string, server: string | undefined, by: string, now = Date.now()): 'added' | 'reinstated' | 'updated' {
    return this.db.transaction(() => {
      const row = this.db.prepare('SELECT state FROM lost_rooms WHERE room_id = ?').get(roomId) as { state: LostRoomState } | undefined;
      let outcome: 'added' | 'reinstated' | 'updated';
      if (!row) {
        this.db.prepare(
          "INSERT INTO lost_rooms (room_id, state, first_seen_ts, last_seen_ts, sightings, added_by, announced_ts, state_changed_ts) VALUES (?, 'lost', ?, ?, 0, ?, ?, ?)",
        ).run(roomId, now, now, by, now, now);
        outcome = 'added';
      } else if (row.state !== 'lost') {
        this.db.prepare("UPDATE lost_rooms SET state = 'lost', announced_ts = ?, state_changed_ts = ? WHERE room_id = ?").run(now, now, roomId);
        outcome = 'reinstated';
      } else {
        outcome = 'updated';
      }
      if (server !== undefined) {
        this.db.prepare(
          `INSERT INTO lost_room_servers (room_id, server_name, first_seen_ts, last_seen_ts, sightings, manual) VALUES (?, ?, ?, ?, 0, 1)
           ON CONFLICT (room_id, server_name) DO UPDATE SET manual = 1`,
        ).run(roomId, server, now, now);
      }
      return outcome;
    })();
  }

  /** `!lost forget`: kept (so the log does not bring it back) but no longer listed, announced or rejoined. */
  forget(roomId: string, now = Date.now()): boolean {
    return this.db.prepare("UPDATE lost_rooms SET state = 'forgotten', state_changed_ts = ? WHERE room_id = ?").run(now, roomId).changes === 1;
  }

  /** A rejoin succeeded; a room recovered before keeps the time and job of its first recovery. */
  markRecovered(roomId: string, jobId: number | null, now = Date.now()): void {
    this.db.prepare("UPDATE lost_rooms SET state = 'recovered', recovered_ts = ?, recovered_by_job = ?, state_changed_ts = ? WHERE room_id = ? AND state = 'lost'")
      .run(now, jobId, now, roomId);
  }

  markAnnounced(roomIds: readonly string[], now = Date.now()): void {
    const stmt = this.db.prepare('UPDATE lost_rooms SET announced_ts = ? WHERE room_id = ?');
    this.db.transaction(() => {
      for (const id of roomIds) stmt.run(now, id);
    })();
  }

  get(roomId: string): LostRoom | undefined {
    const row = this.db.prepare('SELECT * FROM lost_rooms WHERE room_id = ?').get(roomId) as RoomRow | undefined;
    return row ? this.toRoom(row) : undefined;
  }

  /** Rooms in the given states, most recently seen first. */
  list(states: readonly LostRoomState[] = ['lost'], limit = 1_000_000): LostRoom[] {
    const rows = this.db.prepare(`SELECT * FROM lost_rooms WHERE state IN (${states.map(() => '?').join(',')}) ORDER BY last_seen_ts DESC, room_id LIMIT ?`)
      .all(...states, limit) as RoomRow[];
    return rows.map((r) => this.toRoom(r));
  }

  /** Lost rooms the status room has not been told about yet, oldest first. */
  unannounced(limit: number): LostRoom[] {
    const rows = this.db.prepare("SELECT * FROM lost_rooms WHERE state = 'lost' AND announced_ts IS NULL ORDER BY first_seen_ts, room_id LIMIT ?").all(limit) as RoomRow[];
    return rows.map((r) => this.toRoom(r));
  }

  countUnannounced(): number {
    return (this.db.prepare("SELECT COUNT(*) AS n FROM lost_rooms WHERE state = 'lost' AND announced_ts IS NULL").get() as { n: number }).n;
  }

  countByState(): Record<LostRoomState, number> {
    const counts: Record<LostRoomState, number> = { lost: 0, recovered: 0, forgotten: 0 };
    for (const r of this.db.prepare('SELECT state, COUNT(*) AS n FROM lost_rooms GROUP BY state').all() as { state: LostRoomState; n: number }[]) counts[r.state] = r.n;
    return counts;
  }

  private toRoom(row: RoomRow): LostRoom {
    const servers = (this.db.prepare(`SELECT * FROM lost_room_servers WHERE room_id = ? ${SERVER_ORDER}`).all(row.room_id) as ServerRow[]).map((s) => ({
      server: s.server_name, firstSeenTs: s.first_seen_ts, lastSeenTs: s.last_seen_ts, sightings: s.sightings, manual: s.manual === 1,
    }));
    return {
      roomId: row.room_id, state: row.state, firstSeenTs: row.first_seen_ts, lastSeenTs: row.last_seen_ts, sightings: row.sightings,
      addedBy: row.added_by, announcedTs: row.announced_ts, recoveredTs: row.recovered_ts, recoveredByJob: row.recovered_by_job, servers,
    };
  }
}

export interface LogSourceStatus {
  readonly source: string;
  readonly status: string;
  readonly detail: string | null;
  readonly lines: number;
  readonly unparsed: number;
  readonly sightings: number;
  readonly updatedTs: number;
}

/** Where each log file was left and how each source is doing, so a restart resumes and any front end can show it. */
export class LogSourceStore {
  private readonly db: Db;
  constructor(db: Db) {
    this.db = db;
  }

  position(source: string): { fileId: string; offset: number } | undefined {
    const row = this.db.prepare('SELECT file_id, offset FROM log_sources WHERE source = ?').get(source) as { file_id: string | null; offset: number | null } | undefined;
    return row && row.file_id !== null && row.offset !== null ? { fileId: row.file_id, offset: row.offset } : undefined;
  }

  savePosition(source: string, fileId: string, offset: number, now = Date.now()): void {
    this.db.prepare(
      `INSERT INTO log_sources (source, file_id, offset, updated_ts) VALUES (?, ?, ?, ?)
       ON CONFLICT (source) DO UPDATE SET file_id = excluded.file_id, offset = excluded.offset, updated_ts = excluded.updated_ts`,
    ).run(source, fileId, offset, now);
  }

  saveStatus(source: string, status: string, detail: string | null, counters: { lines: number; unparsed: number; sightings: number }, now = Date.now()): void {
    this.db.prepare(
      `INSERT INTO log_sources (source, status, detail, lines, unparsed, sightings, updated_ts) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (source) DO UPDATE SET status = excluded.status, detail = excluded.detail, lines = excluded.lines,
         unparsed = excluded.unparsed, sightings = excluded.sightings, updated_ts = excluded.updated_ts`,
    ).run(source, status, detail, counters.lines, counters.unparsed, counters.sightings, now);
  }

  statuses(): LogSourceStatus[] {
    return (this.db.prepare('SELECT * FROM log_sources ORDER BY source').all() as { source: string; status: string; detail: string | null; lines: number; unparsed: number; sightings: number; updated_ts: number }[])
      .map((r) => ({ source: r.source, status: r.status, detail: r.detail, lines: r.lines, unparsed: r.unparsed, sightings: r.sightings, updatedTs: r.updated_ts }));
  }
}
