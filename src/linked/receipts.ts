import type { EventHandler } from '../appservice/event-router.ts';
import type { ClientApi } from '../homeserver/client-api.ts';
import type { Logger } from '../log.ts';
import type { MatrixEvent } from '../store/inbox.ts';
import type { GroupResolver } from './groups.ts';
import type { MembershipCache } from './membership-cache.ts';
import { isMxid, serverOf } from './mxid.ts';
import type { LinkedStore } from './store.ts';

/** The receipt types mirrored. m.read.private only ever reaches the appservice for local users. */
export const MIRRORED_RECEIPT_TYPES = ['m.read', 'm.read.private'] as const;
export type MirroredReceiptType = (typeof MIRRORED_RECEIPT_TYPES)[number];

export interface ReceiptEntry {
  readonly roomId: string;
  readonly eventId: string;
  readonly type: MirroredReceiptType;
  readonly userId: string;
  readonly ts: number;
  /** The thread, when the receipt says; undefined for an unthreaded receipt or an unknown thread. */
  readonly threadId: string | undefined;
}

/** Thread key of the position tables: '' unthreaded, '?' not known (local receipts, see below). */
export const UNKNOWN_THREAD = '?';

/** Event ids remembered as stored here. */
const RECENT_EVENTS = 20_000;

/** Waits for the event of a federated receipt that arrived before it (about 25 s in all). */
const EVENT_WAIT_MS = [100, 200, 400, 800, 1600, 3200, 6400, 12800];

/** The receipts of one m.receipt EDU ({eventId: {type: {userId: {ts, thread_id?}}}}), validated. */
export function parseReceiptEdu(event: MatrixEvent): ReceiptEntry[] {
  const roomId = event.room_id;
  if (event.type !== 'm.receipt' || typeof roomId !== 'string') return [];
  const out: ReceiptEntry[] = [];
  for (const [eventId, byType] of Object.entries(event.content)) {
    if (!eventId.startsWith('$') || typeof byType !== 'object' || byType === null) continue;
    for (const type of MIRRORED_RECEIPT_TYPES) {
      const users = (byType as Record<string, unknown>)[type];
      if (typeof users !== 'object' || users === null) continue;
      for (const [userId, data] of Object.entries(users as Record<string, unknown>)) {
        if (!isMxid(userId)) continue;
        const d = (typeof data === 'object' && data !== null ? data : {}) as { ts?: unknown; thread_id?: unknown };
        const threadId = typeof d.thread_id === 'string' && d.thread_id.length > 0 ? d.thread_id : undefined;
        out.push({ roomId, eventId, type, userId, ts: typeof d.ts === 'number' && Number.isFinite(d.ts) ? d.ts : 0, threadId });
      }
    }
  }
  return out;
}

/**
 * One EDU can carry several receipts of one user (Synapse batches per room): keep the newest per
 * user, type and thread. An older one would be refused by the homeserver anyway.
 */
export function newestPerThread(entries: readonly ReceiptEntry[]): ReceiptEntry[] {
  const best = new Map<string, ReceiptEntry>();
  for (const e of entries) {
    const key = `${e.userId}\n${e.type}\n${e.threadId ?? ''}`;
    const seen = best.get(key);
    if (!seen || e.ts > seen.ts) best.set(key, e);
  }
  return [...best.values()];
}

export interface ReceiptMirrorDeps {
  readonly serverName: string;
  readonly botUserId: string;
  readonly store: LinkedStore;
  readonly resolver: GroupResolver;
  readonly client: ClientApi;
  readonly membership: MembershipCache;
  readonly log: Logger;
}

/**
 * Mirrors read receipts onto the other accounts of the same person that live on this server.
 *
 * Loop-free by construction:
 * - a receipt Steward sent comes back as an echo; it is recognised (linked_sent_receipts) and
 *   never mirrored again;
 * - a receipt is never sent to an account known to have (had) one at that event, so when the
 *   other server's Steward mirrors our user's receipt onto its user, the federated copy finds our
 *   user already there and stops;
 * - and the homeserver itself ignores a receipt that does not move forward (no new receipt, no
 *   echo), so even a forgotten position cannot start a ping-pong.
 *
 * Synapse (checked on 1.163) gives local users' receipts to appservices without their thread_id
 * (the thread lives in its own column, the appservice path sends only the data column), while
 * federated receipts carry it. When a local receipt is to be mirrored onto another local account,
 * its thread is read back through /sync as the reader, which shows it.
 */
export class ReceiptMirror implements EventHandler {
  readonly name = 'linked-receipts';
  private readonly deps: ReceiptMirrorDeps;
  private readonly log: Logger;
  private readonly waiting = new Set<Promise<void>>();
  /** Ids of events recently seen in transactions (insertion-ordered, bounded). */
  private readonly eventsHere = new Set<string>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(deps: ReceiptMirrorDeps) {
    this.deps = deps;
    this.log = deps.log.child({ module: 'linked-receipts' });
  }

  wants = (event: MatrixEvent, kind: 'pdu' | 'ephemeral'): boolean => {
    if (kind === 'pdu') {
      // Never kept, only noted: an event seen in a transaction is stored on this server.
      if (typeof event.event_id === 'string') this.noteEventHere(event.event_id);
      return false;
    }
    if (event.type !== 'm.receipt' || typeof event.room_id !== 'string') return false;
    for (const byType of Object.values(event.content)) {
      if (typeof byType !== 'object' || byType === null) continue;
      for (const type of MIRRORED_RECEIPT_TYPES) {
        const users = (byType as Record<string, unknown>)[type];
        if (typeof users !== 'object' || users === null) continue;
        for (const userId of Object.keys(users)) if (userId !== this.deps.botUserId && this.deps.resolver.mayBeLinked(userId)) return true;
      }
    }
    return false;
  };

  async handle(event: MatrixEvent): Promise<void> {
    const entries = parseReceiptEdu(event).filter((e) => e.userId !== this.deps.botUserId);
    const newest = new Set(newestPerThread(entries));
    // Older receipts of a batch are only remembered (the homeserver has moved past them);
    // the newest per user, type and thread is mirrored.
    for (const entry of entries) await this.take(entry, newest.has(entry));
  }

  private async take(e: ReceiptEntry, mirror: boolean): Promise<void> {
    const { store, serverName } = this.deps;
    const local = serverOf(e.userId) === serverName;
    // Local receipts come without their thread; remote ones say it (absent: unthreaded).
    const threadKnown = !local || e.threadId !== undefined;
    const threadKey = threadKnown ? e.threadId ?? '' : UNKNOWN_THREAD;

    if (store.wasSentBySteward(e.roomId, e.userId, e.type, e.eventId, threadKnown ? threadKey : undefined)) {
      store.bump('receipts.echoes_ignored');
      this.log.debug({ roomId: e.roomId, userId: e.userId, eventId: e.eventId, type: e.type }, 'read receipt is the echo of one Steward sent; not mirrored');
      return;
    }
    const group = await this.deps.resolver.group(e.userId);
    if (!group.ok) {
      store.bump('receipts.not_mirrored_directory_failed');
      return;
    }
    if (group.value.others.length === 0) return;
    store.noteReceipt(e.roomId, e.userId, e.type, threadKey, e.eventId, e.ts);
    store.bump('receipts.seen');
    if (!mirror) return;

    const targets = group.value.others.map((o) => o.userId).filter((u) => serverOf(u) === serverName && u !== this.deps.botUserId);
    if (targets.length === 0) return;
    const pending: string[] = [];
    for (const t of targets) {
      if (store.hasReceiptAt(e.roomId, t, e.type, e.eventId)) {
        store.bump('receipts.skipped_already_there');
        this.log.debug({ roomId: e.roomId, from: e.userId, to: t, eventId: e.eventId, type: e.type }, 'linked account already has this read receipt; not mirrored');
      } else if (!(await this.deps.membership.isJoined(e.roomId, t))) {
        // Synapse would answer 200 and drop it: the account cannot see the room.
        store.bump('receipts.skipped_not_in_room');
      } else {
        pending.push(t);
      }
    }
    if (pending.length === 0) return;

    let threadId = e.threadId;
    if (!threadKnown) {
      const found = await this.threadOfLocalReceipt(e);
      if (found === null) return;
      threadId = found;
    }
    for (const target of pending) {
      // A federated receipt can arrive before the event it points at is stored here (Synapse
      // takes a transaction's EDUs at once and its PDUs in the background), and a receipt for an
      // event the server does not have yet is dropped with a 200. Local readers saw the event.
      if (!local && !(await this.eventVisible(e, target))) {
        this.waitForEvent(e, target, threadId, threadKey);
        continue;
      }
      await this.send(e, target, threadId);
    }
  }

  private noteEventHere(eventId: string): void {
    this.eventsHere.add(eventId);
    if (this.eventsHere.size > RECENT_EVENTS) {
      const oldest = this.eventsHere.values().next();
      if (!oldest.done) this.eventsHere.delete(oldest.value);
    }
  }

  /** Whether the event is stored here: seen in a recent transaction, or else asked as the target. */
  private async eventVisible(e: ReceiptEntry, target: string): Promise<boolean> {
    if (this.eventsHere.has(e.eventId)) return true;
    const found = await this.deps.client.roomEvent(e.roomId, e.eventId, target);
    if (found.ok) this.noteEventHere(e.eventId);
    return found.ok;
  }

  /** Sends the receipt once its event has arrived, unless the reader has moved on meanwhile. */
  private waitForEvent(e: ReceiptEntry, target: string, threadId: string | undefined, threadKey: string): void {
    const { store } = this.deps;
    store.bump('receipts.waited_for_event');
    this.log.debug({ roomId: e.roomId, to: target, eventId: e.eventId }, 'read receipt for an event not here yet; waiting for it');
    const job = (async () => {
      for (const delay of EVENT_WAIT_MS) {
        await this.sleep(delay);
        if (this.stopped) return;
        if (store.hasNewerReceipt(e.roomId, e.userId, e.type, threadKey, e.ts) || store.hasReceiptAt(e.roomId, target, e.type, e.eventId)) return;
        if (await this.eventVisible(e, target)) {
          await this.send(e, target, threadId);
          return;
        }
      }
      store.bump('receipts.event_never_arrived');
      store.record({ action: 'receipt', outcome: 'failed', roomId: e.roomId, target, source: e.userId, detail: `event ${e.eventId} never became visible to ${target}` });
      this.log.warn({ roomId: e.roomId, from: e.userId, to: target, eventId: e.eventId }, 'read receipt not mirrored: its event never became visible to the linked account');
    })().catch((err: unknown) => this.log.error({ err }, 'waiting to mirror a read receipt failed'));
    this.waiting.add(job);
    void job.finally(() => this.waiting.delete(job));
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        resolve();
      }, ms);
      this.timers.add(t);
    });
  }

  /** Stops waiting receipts (at shutdown). */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await Promise.allSettled([...this.waiting]);
  }

  private async send(e: ReceiptEntry, target: string, threadId: string | undefined): Promise<void> {
    const { store, client } = this.deps;
    const sent = await client.sendReceipt(e.roomId, e.type, e.eventId, threadId, target);
    const fields = { roomId: e.roomId, from: e.userId, to: target, eventId: e.eventId, type: e.type, threadId };
    if (sent.ok) {
      store.noteSentReceipt(e.roomId, target, e.type, e.eventId, threadId ?? '');
      store.bump('receipts.mirrored');
      store.record({ action: 'receipt', outcome: 'ok', roomId: e.roomId, target, source: e.userId, detail: `${e.type} at ${e.eventId}${threadId ? ` in thread ${threadId}` : ''}` });
      this.log.info(fields, 'mirrored a read receipt');
      return;
    }
    // Not in the room (403) or the event unknown there (404): nothing to mirror onto, not an error.
    // (Synapse mostly answers 200 to those and drops them; membership is checked before sending.)
    const expected = sent.error.status === 403 || sent.error.status === 404;
    store.bump(expected ? 'receipts.skipped_not_in_room' : 'receipts.failed');
    store.record({ action: 'receipt', outcome: expected ? 'skipped' : 'failed', roomId: e.roomId, target, source: e.userId, detail: sent.error.human });
    if (expected) this.log.debug({ ...fields, detail: sent.error.log }, 'linked account cannot take this read receipt (not in the room?)');
    else this.log.warn({ ...fields, detail: sent.error.log }, 'could not mirror a read receipt');
  }

  /**
   * The thread of a local user's receipt, read through /sync as that user (receipts there carry
   * thread_id). undefined: unthreaded. null: the receipt is no longer there (a newer one replaced
   * it and will be mirrored in its turn) or /sync failed.
   */
  private async threadOfLocalReceipt(e: ReceiptEntry): Promise<string | undefined | null> {
    const filter = {
      room: { rooms: [e.roomId], timeline: { limit: 1 }, state: { types: [] }, ephemeral: { types: ['m.receipt'] }, account_data: { types: [] }, include_leave: false },
      presence: { types: [] },
      account_data: { types: [] },
    };
    const sync = await this.deps.client.sync(e.userId, filter);
    if (!sync.ok) {
      this.log.warn({ roomId: e.roomId, userId: e.userId, detail: sync.error.log }, 'cannot read the thread of a read receipt; not mirrored');
      return null;
    }
    for (const receipt of receiptsInSync(sync.value, e.roomId)) {
      if (receipt.userId === e.userId && receipt.type === e.type && receipt.eventId === e.eventId) return receipt.threadId;
    }
    this.log.debug({ roomId: e.roomId, userId: e.userId, eventId: e.eventId }, 'read receipt already replaced by a newer one; not mirrored');
    return null;
  }
}

/** The m.receipt EDUs of one joined room in a /sync answer, as entries. */
export function receiptsInSync(sync: Record<string, unknown>, roomId: string): ReceiptEntry[] {
  const room = ((sync.rooms as { join?: Record<string, unknown> } | undefined)?.join?.[roomId]) as { ephemeral?: { events?: unknown[] } } | undefined;
  const out: ReceiptEntry[] = [];
  for (const ev of room?.ephemeral?.events ?? []) {
    const e = ev as { type?: unknown; content?: unknown };
    if (e.type !== 'm.receipt' || typeof e.content !== 'object' || e.content === null) continue;
    out.push(...parseReceiptEdu({ type: 'm.receipt', room_id: roomId, content: e.content as Record<string, unknown> }));
  }
  return out;
}
