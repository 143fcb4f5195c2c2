import type Database from 'better-sqlite3';
import type { Db } from '../store/database.ts';

type Statement = Database.Statement<unknown[]>;

export interface LocalLink {
  readonly userA: string;
  readonly userB: string;
  readonly createdBy: string | null;
  readonly createdTs: number;
}

export interface ActivityRecord {
  readonly id: number;
  readonly ts: number;
  readonly action: string;
  readonly outcome: 'ok' | 'failed' | 'skipped';
  readonly roomId: string | null;
  readonly target: string | null;
  readonly source: string | null;
  readonly detail: string | null;
}

export type ActivityInput = Omit<ActivityRecord, 'id' | 'ts' | 'roomId' | 'target' | 'source' | 'detail'> & {
  readonly roomId?: string | undefined;
  readonly target?: string | undefined;
  readonly source?: string | undefined;
  readonly detail?: string | undefined;
};

const COUNTER_FLUSH_MS = 1000;
/** Activity rows kept; older ones are deleted as new ones come. */
const ACTIVITY_KEEP = 5000;
/** How long receipts are remembered (to recognise echoes and accounts already there). */
const RECEIPT_KEEP_MS = 7 * 24 * 3600 * 1000;

/** Every table of the linked-accounts capability; synchronous (better-sqlite3). */
export class LinkedStore {
  private readonly db: Db;
  private readonly now: () => number;
  private insertsSincePrune = 0;
  private readonly statements = new Map<string, Statement>();
  private readonly pendingCounts = new Map<string, number>();
  private lastCountFlush = 0;

  constructor(db: Db, now: () => number = Date.now) {
    this.db = db;
    this.now = now;
  }

  /** Statements are prepared once: preparing costs more than running them. */
  private q(sql: string): Statement {
    let stmt = this.statements.get(sql);
    if (!stmt) {
      stmt = this.db.prepare<unknown[]>(sql);
      this.statements.set(sql, stmt);
    }
    return stmt;
  }

  // ---- local links ----

  /** Adds the pairs not there yet; answers how many were new. */
  addLinks(pairs: readonly (readonly [string, string])[], createdBy: string | null): number {
    const insert = this.q('INSERT OR IGNORE INTO linked_local_links (user_a, user_b, created_by, created_ts) VALUES (?, ?, ?, ?)');
    const ts = this.now();
    return this.db.transaction(() => {
      let added = 0;
      for (const [x, y] of pairs) {
        if (x === y) continue;
        const [a, b] = x < y ? [x, y] : [y, x];
        added += insert.run(a, b, createdBy, ts).changes;
      }
      return added;
    })();
  }

  removeLink(x: string, y: string): boolean {
    const [a, b] = x < y ? [x, y] : [y, x];
    return this.q('DELETE FROM linked_local_links WHERE user_a = ? AND user_b = ?').run(a, b).changes > 0;
  }

  /** Direct links of one user. */
  linksOf(userId: string): LocalLink[] {
    const rows = this.q('SELECT user_a, user_b, created_by, created_ts FROM linked_local_links WHERE user_a = ? OR user_b = ?').all(userId, userId) as { user_a: string; user_b: string; created_by: string | null; created_ts: number }[];
    return rows.map((r) => ({ userA: r.user_a, userB: r.user_b, createdBy: r.created_by, createdTs: r.created_ts }));
  }

  /** Everyone connected to `userId` through local links (without `userId`), and the links used. */
  localComponent(userId: string, limit = 1000): { members: string[]; links: LocalLink[] } {
    const seen = new Set<string>([userId]);
    const links = new Map<string, LocalLink>();
    const queue = [userId];
    while (queue.length > 0 && seen.size <= limit) {
      const current = queue.shift()!;
      for (const link of this.linksOf(current)) {
        links.set(`${link.userA}\n${link.userB}`, link);
        for (const other of [link.userA, link.userB]) {
          if (!seen.has(other)) {
            seen.add(other);
            queue.push(other);
          }
        }
      }
    }
    seen.delete(userId);
    return { members: [...seen], links: [...links.values()] };
  }

  hasAnyLocalLink(userId: string): boolean {
    return this.q('SELECT 1 FROM linked_local_links WHERE user_a = ? OR user_b = ? LIMIT 1').get(userId, userId) !== undefined;
  }

  /** Every user named in a local link, for the start-up catch-up. */
  locallyLinkedUsers(): string[] {
    const rows = this.q('SELECT user_a AS u FROM linked_local_links UNION SELECT user_b FROM linked_local_links').all() as { u: string }[];
    return rows.map((r) => r.u);
  }

  // ---- directory answers ----

  saveDirectoryAnswer(userId: string, members: readonly string[]): void {
    if (members.length === 0) {
      this.q('DELETE FROM linked_directory_answers WHERE user_id = ?').run(userId);
      return;
    }
    this.q('INSERT INTO linked_directory_answers (user_id, members, fetched_ts) VALUES (?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET members = excluded.members, fetched_ts = excluded.fetched_ts')
      .run(userId, JSON.stringify(members), this.now());
  }

  directoryAnswer(userId: string): { members: string[]; fetchedTs: number } | undefined {
    const row = this.q('SELECT members, fetched_ts FROM linked_directory_answers WHERE user_id = ?').get(userId) as { members: string; fetched_ts: number } | undefined;
    return row ? { members: JSON.parse(row.members) as string[], fetchedTs: row.fetched_ts } : undefined;
  }

  /** Users of `serverName` named in a remembered directory answer, either as the subject or a member. */
  directoryUsersOn(serverName: string, limit: number): string[] {
    const rows = this.q('SELECT user_id, members FROM linked_directory_answers ORDER BY fetched_ts DESC').iterate() as IterableIterator<{ user_id: string; members: string }>;
    const found = new Set<string>();
    const suffix = `:${serverName}`;
    for (const row of rows) {
      for (const u of [row.user_id, ...(JSON.parse(row.members) as string[])]) {
        if (u.endsWith(suffix)) found.add(u);
      }
      if (found.size >= limit) break;
    }
    return [...found].slice(0, limit);
  }

  // ---- receipts ----

  /** Records that a user has (had) a receipt at this event. */
  noteReceipt(roomId: string, userId: string, type: string, threadKey: string, eventId: string, ts: number): void {
    this.q(`INSERT INTO linked_receipts (room_id, user_id, receipt_type, event_id, thread_key, ts, noted_ts) VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (room_id, user_id, receipt_type, event_id, thread_key) DO NOTHING`).run(roomId, userId, type, eventId, threadKey, ts, this.now());
  }

  /** Whether the user is known to have (had) a receipt of this type at this event, in any thread. */
  hasReceiptAt(roomId: string, userId: string, type: string, eventId: string): boolean {
    return this.q('SELECT 1 FROM linked_receipts WHERE room_id = ? AND user_id = ? AND receipt_type = ? AND event_id = ? LIMIT 1').get(roomId, userId, type, eventId) !== undefined;
  }

  /** Whether the user has a later receipt (by timestamp) of this type in this thread. */
  hasNewerReceipt(roomId: string, userId: string, type: string, threadKey: string, ts: number): boolean {
    return this.q('SELECT 1 FROM linked_receipts WHERE room_id = ? AND user_id = ? AND receipt_type = ? AND thread_key = ? AND ts > ? LIMIT 1').get(roomId, userId, type, threadKey, ts) !== undefined;
  }

  noteSentReceipt(roomId: string, userId: string, type: string, eventId: string, threadKey: string): void {
    const now = this.now();
    this.q(`INSERT INTO linked_receipts (room_id, user_id, receipt_type, event_id, thread_key, ts, sent_by_steward, noted_ts) VALUES (?, ?, ?, ?, ?, ?, 1, ?)
      ON CONFLICT (room_id, user_id, receipt_type, event_id, thread_key) DO UPDATE SET sent_by_steward = 1`).run(roomId, userId, type, eventId, threadKey, now, now);
  }

  /**
   * Whether Steward itself sent this receipt (its echo). `threadKey` undefined matches any thread:
   * Synapse leaves the thread id out of local users' receipts in appservice transactions.
   */
  wasSentBySteward(roomId: string, userId: string, type: string, eventId: string, threadKey: string | undefined): boolean {
    const row = threadKey === undefined
      ? this.q('SELECT 1 FROM linked_receipts WHERE room_id = ? AND user_id = ? AND receipt_type = ? AND event_id = ? AND sent_by_steward = 1 LIMIT 1').get(roomId, userId, type, eventId)
      : this.q('SELECT 1 FROM linked_receipts WHERE room_id = ? AND user_id = ? AND receipt_type = ? AND event_id = ? AND thread_key = ? AND sent_by_steward = 1').get(roomId, userId, type, eventId, threadKey);
    return row !== undefined;
  }

  // ---- pending invites ----

  addPendingInvite(roomId: string, userId: string, reason: string): void {
    this.q('INSERT OR REPLACE INTO linked_pending_invites (room_id, user_id, reason, created_ts) VALUES (?, ?, ?, ?)').run(roomId, userId, reason, this.now());
  }

  takePendingInvite(roomId: string, userId: string): string | undefined {
    const row = this.q('DELETE FROM linked_pending_invites WHERE room_id = ? AND user_id = ? RETURNING reason').get(roomId, userId) as { reason: string } | undefined;
    return row?.reason;
  }

  // ---- activity and counters ----

  record(entry: ActivityInput): void {
    this.q('INSERT INTO linked_activity (ts, action, outcome, room_id, target, source, detail) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(this.now(), entry.action, entry.outcome, entry.roomId ?? null, entry.target ?? null, entry.source ?? null, entry.detail?.slice(0, 500) ?? null);
    if (++this.insertsSincePrune >= 200) this.prune();
  }

  activity(limit: number, userId?: string): ActivityRecord[] {
    const rows = (userId
      ? this.q('SELECT * FROM linked_activity WHERE target = ? OR source = ? ORDER BY id DESC LIMIT ?').all(userId, userId, limit)
      : this.q('SELECT * FROM linked_activity ORDER BY id DESC LIMIT ?').all(limit)) as { id: number; ts: number; action: string; outcome: ActivityRecord['outcome']; room_id: string | null; target: string | null; source: string | null; detail: string | null }[];
    return rows.map((r) => ({ id: r.id, ts: r.ts, action: r.action, outcome: r.outcome, roomId: r.room_id, target: r.target, source: r.source, detail: r.detail })).reverse();
  }

  /** Counted in memory and written at most once a second (and before counters are read). */
  bump(name: string, by = 1): void {
    this.pendingCounts.set(name, (this.pendingCounts.get(name) ?? 0) + by);
    if (this.now() - this.lastCountFlush >= COUNTER_FLUSH_MS) this.flushCounters();
  }

  flushCounters(): void {
    this.lastCountFlush = this.now();
    if (this.pendingCounts.size === 0) return;
    const upsert = this.q('INSERT INTO linked_counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + excluded.value');
    const pending = [...this.pendingCounts];
    this.pendingCounts.clear();
    this.db.transaction(() => {
      for (const [name, by] of pending) upsert.run(name, by);
    })();
  }

  counters(): Record<string, number> {
    this.flushCounters();
    const rows = this.q('SELECT name, value FROM linked_counters ORDER BY name').all() as { name: string; value: number }[];
    return Object.fromEntries(rows.map((r) => [r.name, r.value]));
  }

  prune(): void {
    this.insertsSincePrune = 0;
    this.q('DELETE FROM linked_activity WHERE id <= (SELECT MAX(id) FROM linked_activity) - ?').run(ACTIVITY_KEEP);
    this.q('DELETE FROM linked_receipts WHERE noted_ts < ?').run(this.now() - RECEIPT_KEEP_MS);
  }
}
