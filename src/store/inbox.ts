import type { Statement } from 'better-sqlite3';
import type { Db } from './database.ts';

export interface MatrixEvent {
  readonly type: string;
  readonly room_id?: string;
  readonly sender?: string;
  readonly event_id?: string;
  readonly state_key?: string;
  readonly origin_server_ts?: number;
  readonly content: Record<string, unknown>;
  readonly unsigned?: Record<string, unknown>;
}

export interface InboxItem {
  readonly seq: number;
  readonly kind: 'pdu' | 'ephemeral';
  readonly event: MatrixEvent;
}

/**
 * The durable queue between the transaction endpoint and the event handlers. The homeserver gets
 * its 200 once a transaction is here, so a slow or crashing handler never causes a re-delivery.
 */
export class Inbox {
  private readonly db: Db;
  // Prepared once: preparing a statement costs more than running it on this hot path.
  private readonly insertTxn: Statement;
  private readonly insertEvent: Statement;
  private readonly selectPending: Statement;
  private readonly updateDone: Statement;

  constructor(db: Db) {
    this.db = db;
    this.insertTxn = db.prepare('INSERT OR IGNORE INTO as_transactions (dedupe_key, txn_id, received_ts) VALUES (?, ?, ?)');
    // The same PDU can arrive in two transactions (e.g. a re-send after a Synapse restart): event_id is unique.
    this.insertEvent = db.prepare('INSERT OR IGNORE INTO inbox (kind, event_id, room_id, payload, received_ts) VALUES (?, ?, ?, ?, ?)');
    this.selectPending = db.prepare("SELECT seq, kind, payload FROM inbox WHERE state = 'pending' ORDER BY seq LIMIT ?");
    this.updateDone = db.prepare("UPDATE inbox SET state = 'done', payload = '{}' WHERE seq = ?");
  }

  /**
   * Stores a transaction's events at most once: 'duplicate' when this exact transaction was taken
   * before, else how many events were new (a re-sent PDU is stored only the first time).
   */
  take(dedupeKey: string, txnId: string, pdus: readonly MatrixEvent[], ephemeral: readonly MatrixEvent[], now = Date.now()): { outcome: 'taken' | 'duplicate'; stored: number } {
    const { insertTxn, insertEvent } = this;
    return this.db.transaction(() => {
      if (insertTxn.run(dedupeKey, txnId, now).changes === 0) return { outcome: 'duplicate' as const, stored: 0 };
      let stored = 0;
      for (const ev of pdus) stored += insertEvent.run('pdu', typeof ev.event_id === 'string' ? ev.event_id : null, ev.room_id ?? null, JSON.stringify(ev), now).changes;
      for (const ev of ephemeral) stored += insertEvent.run('ephemeral', null, ev.room_id ?? null, JSON.stringify(ev), now).changes;
      return { outcome: 'taken' as const, stored };
    })();
  }

  pending(limit: number): InboxItem[] {
    const rows = this.selectPending.all(limit) as { seq: number; kind: 'pdu' | 'ephemeral'; payload: string }[];
    return rows.map((r) => ({ seq: r.seq, kind: r.kind, event: JSON.parse(r.payload) as MatrixEvent }));
  }

  markDone(seq: number): void {
    this.updateDone.run(seq);
  }

  markFailed(seq: number, error: string): void {
    this.db.prepare("UPDATE inbox SET state = 'failed', error = ? WHERE seq = ?").run(error.slice(0, 2000), seq);
  }

  /** Forgets handled events and old transaction keys; failed events are kept for inspection. */
  prune(olderThanMs: number, now = Date.now()): void {
    const cutoff = now - olderThanMs;
    this.db.prepare("DELETE FROM inbox WHERE state = 'done' AND received_ts < ?").run(cutoff);
    this.db.prepare('DELETE FROM as_transactions WHERE received_ts < ?').run(cutoff);
  }
}
