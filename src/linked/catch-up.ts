import type { ClientApi } from '../homeserver/client-api.ts';
import type { Logger } from '../log.ts';
import type { GroupResolver } from './groups.ts';
import type { LinkedAccountsConfig } from './linked-config.ts';
import { serverOf } from './mxid.ts';
import { receiptsInSync, type ReceiptEntry } from './receipts.ts';
import type { LinkedStore } from './store.ts';

export interface CatchUpDeps {
  readonly serverName: string;
  readonly botUserId: string;
  readonly config: LinkedAccountsConfig;
  readonly store: LinkedStore;
  readonly resolver: GroupResolver;
  readonly client: ClientApi;
  readonly log: Logger;
  readonly signal?: AbortSignal;
}

export interface CatchUpSummary {
  readonly users: number;
  readonly rooms: number;
  readonly sent: number;
  readonly failed: number;
  readonly truncated: boolean;
  readonly ms: number;
}

/**
 * Synapse drops ephemeral events (receipts) for an appservice that is down, so at start-up the
 * public read receipts of linked local accounts are brought up to date, room by room.
 *
 * Who: local users named in a local link or in a remembered directory answer (at most
 * catch_up.max_users). Where: the rooms each has joined (at most catch_up.max_rooms_per_user).
 * How: one filtered /sync as the user (identity assertion) shows every member's receipts in
 * those rooms, with thread ids, the linked accounts' included (remote ones too). For each thread
 * where a linked account has a receipt at an event the user has none at, the same receipt is
 * sent as the user, oldest first; the homeserver keeps it only if it moves the user forward, so no
 * ordering of events is needed here. m.read.private is not caught up: a user's /sync shows only
 * their own private receipt, never their other accounts'.
 */
export async function catchUpReceipts(deps: CatchUpDeps): Promise<CatchUpSummary> {
  const started = Date.now();
  const log = deps.log.child({ module: 'linked-catch-up' });
  const { store, config, serverName } = deps;
  const isLocal = (u: string): boolean => serverOf(u) === serverName && u !== deps.botUserId;
  const all = [...new Set([...store.locallyLinkedUsers().filter(isLocal), ...store.directoryUsersOn(serverName, config.catchUp.maxUsers + 1).filter(isLocal)])].sort();
  const candidates = all.slice(0, config.catchUp.maxUsers);
  let rooms = 0;
  let sent = 0;
  let failed = 0;
  let truncated = all.length > candidates.length;
  let users = 0;
  for (const userId of candidates) {
    if (deps.signal?.aborted) break;
    const group = await deps.resolver.group(userId);
    if (!group.ok || group.value.others.length === 0) continue;
    const others = new Set(group.value.others.map((o) => o.userId));
    const joined = await deps.client.joinedRooms(userId);
    if (!joined.ok) {
      log.warn({ userId, detail: joined.error.log }, 'catch-up: cannot list the rooms of a linked account');
      continue;
    }
    users += 1;
    let roomIds = joined.value.joined_rooms;
    if (roomIds.length > config.catchUp.maxRoomsPerUser) {
      truncated = true;
      roomIds = roomIds.slice(0, config.catchUp.maxRoomsPerUser);
    }
    if (roomIds.length === 0) continue;
    const filter = {
      room: { rooms: roomIds, timeline: { limit: 1 }, state: { types: [] }, ephemeral: { types: ['m.receipt'] }, account_data: { types: [] }, include_leave: false },
      presence: { types: [] },
      account_data: { types: [] },
    };
    const sync = await deps.client.sync(userId, filter);
    if (!sync.ok) {
      log.warn({ userId, detail: sync.error.log }, 'catch-up: cannot read the receipts of a linked account');
      continue;
    }
    for (const roomId of roomIds) {
      if (deps.signal?.aborted) break;
      const receipts = receiptsInSync(sync.value, roomId).filter((r) => r.type === 'm.read');
      if (receipts.length === 0) continue;
      rooms += 1;
      const mine = new Set(receipts.filter((r) => r.userId === userId).map((r) => r.eventId));
      for (const r of receipts) if (others.has(r.userId) || r.userId === userId) store.noteReceipt(roomId, r.userId, r.type, r.threadId ?? '', r.eventId, r.ts);
      const theirs = receipts.filter((r) => others.has(r.userId) && !mine.has(r.eventId));
      // One per event and thread, oldest first.
      const todo = new Map<string, ReceiptEntry>();
      for (const r of theirs.sort((a, b) => a.ts - b.ts)) todo.set(`${r.eventId}\n${r.threadId ?? ''}`, r);
      for (const r of todo.values()) {
        const answer = await deps.client.sendReceipt(roomId, r.type, r.eventId, r.threadId, userId);
        if (answer.ok) {
          sent += 1;
          store.noteSentReceipt(roomId, userId, r.type, r.eventId, r.threadId ?? '');
          store.bump('catch_up.receipts_sent');
          store.record({ action: 'catch-up receipt', outcome: 'ok', roomId, target: userId, source: r.userId, detail: `${r.type} at ${r.eventId}${r.threadId ? ` in thread ${r.threadId}` : ''}` });
          log.info({ roomId, from: r.userId, to: userId, eventId: r.eventId, threadId: r.threadId }, 'catch-up: mirrored a read receipt');
        } else {
          failed += 1;
          store.record({ action: 'catch-up receipt', outcome: 'failed', roomId, target: userId, source: r.userId, detail: answer.error.human });
          log.warn({ roomId, to: userId, eventId: r.eventId, detail: answer.error.log }, 'catch-up: could not send a read receipt');
        }
      }
    }
  }
  const summary = { users, rooms, sent, failed, truncated, ms: Date.now() - started };
  log.info({ ...summary, candidates: all.length }, `linked accounts catch-up done: ${users} account(s), ${rooms} room(s) with receipts, ${sent} receipt(s) sent${truncated ? ' (bounded: some accounts or rooms were left out, see linked_accounts.catch_up)' : ''}`);
  return summary;
}
