import type { EventHandler } from '../appservice/event-router.ts';
import type { ClientApi } from '../homeserver/client-api.ts';
import type { Logger } from '../log.ts';
import type { MatrixEvent } from '../store/inbox.ts';
import type { LinkedAccountsConfig } from './linked-config.ts';
import type { GroupResolver } from './groups.ts';
import type { MembershipCache } from './membership-cache.ts';
import { isMxid, serverOf } from './mxid.ts';
import type { LinkedStore } from './store.ts';

/**
 * Content key on the invites Steward mirrors: `{account}` names the linked account whose invite
 * (or new room) this one follows. It is how the invitee's own Steward — on this server or another —
 * knows the invite came "this way" and may auto-join. It is a claim, so it is checked (see
 * InviteMirror.autoJoin).
 */
export const LINKED_INVITE_MARKER = 'org.steward.linked';

type StateEvent = { type?: unknown; state_key?: unknown; sender?: unknown; content?: unknown };

export function membershipIn(state: readonly StateEvent[], userId: string): string | undefined {
  const ev = state.find((e) => e.type === 'm.room.member' && e.state_key === userId);
  const m = (ev?.content as { membership?: unknown } | undefined)?.membership;
  return typeof m === 'string' ? m : undefined;
}

/** Waits between auto-join attempts refused as too early (about half a minute in all). */
const AUTO_JOIN_RETRY_MS = [500, 1000, 2000, 4000, 8000, 15000];

const PRIVILEGED_CREATOR_VERSIONS = new Set(['org.matrix.hydra.11']);

/** Whether `userId` may invite in this state: joined, and power level ≥ the invite level (room versions 1–12). */
export function canInvite(state: readonly StateEvent[], userId: string): boolean {
  if (membershipIn(state, userId) !== 'join') return false;
  const create = state.find((e) => e.type === 'm.room.create');
  const createContent = (create?.content ?? {}) as { room_version?: unknown; additional_creators?: unknown };
  const version = typeof createContent.room_version === 'string' ? createContent.room_version : '1';
  const privilegedCreators = PRIVILEGED_CREATOR_VERSIONS.has(version) || (/^\d+$/.test(version) && Number(version) >= 12);
  if (privilegedCreators) {
    const extra = Array.isArray(createContent.additional_creators) ? createContent.additional_creators : [];
    if (create?.sender === userId || extra.includes(userId)) return true;
  }
  const pl = state.find((e) => e.type === 'm.room.power_levels' && e.state_key === '');
  // No power levels yet: the invite level is 0 and every member may invite.
  if (!pl) return true;
  const content = (pl.content ?? {}) as { users?: Record<string, unknown>; users_default?: unknown; invite?: unknown };
  const level = toLevel(content.users?.[userId], toLevel(content.users_default, 0));
  return level >= toLevel(content.invite, 0);
}

function toLevel(value: unknown, fallback: number): number {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  if (typeof value === 'string' && /^-?\d+$/.test(value)) return Number(value);
  return fallback;
}

export interface InviteMirrorDeps {
  readonly serverName: string;
  readonly botUserId: string;
  readonly config: LinkedAccountsConfig;
  readonly store: LinkedStore;
  readonly resolver: GroupResolver;
  readonly client: ClientApi;
  /** Told about joins, so receipt mirroring does not go by a stale "not in the room". */
  readonly membership: MembershipCache;
  readonly log: Logger;
}

/**
 * Mirrors invites across one person's accounts, acting only for users of this server:
 * - a local user invited to a room: invite the linked accounts that have no membership there, as
 *   the inviter when the inviter is local and allowed to invite, otherwise as the user once their
 *   join arrives;
 * - a local user creating a room: the same, as the creator, once the creator's join arrives;
 * - a local user invited "this way" (by one of their own accounts, or with the marker naming one
 *   of them and sent from that account's server): joined at once when auto_join is on.
 * Linked accounts that left are invited again only with reinvite_left; banned ones never.
 */
export class InviteMirror implements EventHandler {
  readonly name = 'linked-invites';
  private readonly deps: InviteMirrorDeps;
  private readonly log: Logger;
  private readonly joins = new Set<Promise<void>>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(deps: InviteMirrorDeps) {
    this.deps = deps;
    this.log = deps.log.child({ module: 'linked-invites' });
  }

  private isLocal(userId: unknown): userId is string {
    return typeof userId === 'string' && userId !== this.deps.botUserId && serverOf(userId) === this.deps.serverName;
  }

  wants = (event: MatrixEvent, kind: 'pdu' | 'ephemeral'): boolean => {
    if (kind !== 'pdu' || typeof event.room_id !== 'string') return false;
    if (event.type === 'm.room.create') return event.state_key === '' && this.isLocal(event.sender) && this.deps.resolver.mayBeLinked(event.sender);
    if (event.type !== 'm.room.member' || !this.isLocal(event.state_key) || !this.deps.resolver.mayBeLinked(event.state_key)) return false;
    const membership = event.content.membership;
    if (membership === 'invite') return true;
    // Joins matter only when an invite waits for them; profile changes (join → join) never do.
    const prev = (event.unsigned?.prev_content as { membership?: unknown } | undefined)?.membership;
    return membership === 'join' && prev !== 'join';
  };

  async handle(event: MatrixEvent): Promise<void> {
    const roomId = event.room_id!;
    if (event.type === 'm.room.create') {
      // The creator's join follows; invites go out as the creator then.
      this.deps.store.addPendingInvite(roomId, event.sender!, 'created the room');
      return;
    }
    const userId = event.state_key!;
    if (event.content.membership === 'invite') {
      await this.onInvite(roomId, userId, event);
    } else {
      this.deps.membership.forget(roomId, userId);
      await this.onJoin(roomId, userId);
    }
  }

  private async onInvite(roomId: string, userId: string, event: MatrixEvent): Promise<void> {
    const inviter = event.sender ?? '';
    const group = await this.deps.resolver.group(userId);
    if (!group.ok) return; // logged and counted by the directory
    const others = group.value.others.map((o) => o.userId);
    if (others.length === 0) return;

    // Joined in the background; once in, invites go out as the user (see joinWithRetries).
    if (this.autoJoin(roomId, userId, inviter, event, others)) return;
    if (this.isLocal(inviter)) {
      const state = await this.deps.client.roomState(roomId, { asUser: inviter });
      if (state.ok && canInvite(state.value, inviter)) {
        await this.inviteMissing(roomId, inviter, userId, others, state.value);
        return;
      }
      if (!state.ok) this.log.debug({ roomId, inviter, detail: state.error.log }, 'cannot read the room as the inviter');
      this.deps.store.addPendingInvite(roomId, userId, `${inviter} may not invite`);
    } else {
      // The inviter is on another server: the user's join carries it on.
      this.deps.store.addPendingInvite(roomId, userId, `invited by ${inviter} from another server`);
    }
    this.log.debug({ roomId, userId, inviter }, 'linked invites wait for the invitee to join');
  }

  private async onJoin(roomId: string, userId: string): Promise<void> {
    const reason = this.deps.store.takePendingInvite(roomId, userId);
    if (reason === undefined) return;
    await this.mirrorAsMember(roomId, userId);
  }

  /** Invites the user's linked accounts that have no membership, as the (joined) user. */
  private async mirrorAsMember(roomId: string, userId: string): Promise<void> {
    const group = await this.deps.resolver.group(userId);
    if (!group.ok) return;
    const others = group.value.others.map((o) => o.userId);
    if (others.length === 0) return;
    const state = await this.deps.client.roomState(roomId, { asUser: userId });
    if (!state.ok) {
      this.log.warn({ roomId, userId, detail: state.error.log }, 'cannot read the room to mirror invites');
      this.deps.store.record({ action: 'invite', outcome: 'failed', roomId, source: userId, detail: `cannot read the room: ${state.error.human}` });
      return;
    }
    if (!canInvite(state.value, userId)) {
      const missing = others.filter((o) => membershipIn(state.value, o) === undefined);
      if (missing.length === 0) return;
      this.log.info({ roomId, userId, missing }, 'cannot mirror invites: the user may not invite in this room');
      for (const target of missing) {
        this.deps.store.record({ action: 'invite', outcome: 'failed', roomId, target, source: userId, detail: `${userId} may not invite here` });
      }
      this.deps.store.bump('invites.not_allowed');
      return;
    }
    await this.inviteMissing(roomId, userId, userId, others, state.value);
  }

  private async inviteMissing(roomId: string, asUser: string, forAccount: string, others: readonly string[], state: readonly StateEvent[]): Promise<void> {
    const { store, client, config } = this.deps;
    for (const target of others) {
      const membership = membershipIn(state, target);
      if (membership === 'join' || membership === 'invite' || membership === 'knock') continue;
      if (membership === 'ban' || (membership === 'leave' && !config.reinviteLeft)) {
        store.record({ action: 'invite', outcome: 'skipped', roomId, target, source: forAccount, detail: membership === 'ban' ? 'banned from the room' : 'left the room (reinvite_left is off)' });
        store.bump('invites.skipped_left_or_banned');
        continue;
      }
      const sent = await client.setMembership(roomId, target, { membership: 'invite', [LINKED_INVITE_MARKER]: { account: forAccount } }, asUser);
      if (sent.ok) {
        store.bump('invites.sent');
        store.record({ action: 'invite', outcome: 'ok', roomId, target, source: forAccount, detail: `invited by ${asUser}` });
        this.log.info({ roomId, target, for: forAccount, as: asUser }, 'mirrored an invite');
      } else {
        store.bump('invites.failed');
        store.record({ action: 'invite', outcome: 'failed', roomId, target, source: forAccount, detail: sent.error.human });
        this.log.warn({ roomId, target, for: forAccount, as: asUser, detail: sent.error.log }, 'could not mirror an invite');
      }
    }
  }

  /** Waits for auto-joins still retrying in the background (at shutdown). */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.retryTimers) clearTimeout(t);
    this.retryTimers.clear();
    await Promise.allSettled([...this.joins]);
  }

  /**
   * Joins a local user invited "this way", when auto_join is on. Trusted when the inviter is one of
   * the user's own linked accounts, or when the marker names a linked account on the inviter's own
   * server (that server vouches for its user; no other server can send in its users' names). In
   * the marker case the claim is checked once the room is visible: the named account must be
   * invited or joined there, or the user leaves again at once.
   *
   * The join runs in the background and is retried for a while: a remote invite reaches us while
   * the inviting server is still storing it, and a join that comes too early is refused with
   * "You are not invited to this room". Answers whether a join was started.
   */
  private autoJoin(roomId: string, userId: string, inviter: string, event: MatrixEvent, others: readonly string[]): boolean {
    if (!this.deps.config.autoJoin) return false;
    const marker = event.content[LINKED_INVITE_MARKER] as { account?: unknown } | undefined;
    const claimed = isMxid(marker?.account) ? marker.account : undefined;
    const byOwnAccount = others.includes(inviter);
    const byVouchedMarker = claimed !== undefined && claimed !== userId && others.includes(claimed) && serverOf(claimed) === serverOf(inviter);
    if (!byOwnAccount && !byVouchedMarker) return false;
    const job = this.joinWithRetries(roomId, userId, inviter, byOwnAccount ? undefined : claimed).catch((err: unknown) => {
      this.log.error({ err, roomId, userId }, 'auto-join failed unexpectedly');
    });
    this.joins.add(job);
    void job.finally(() => this.joins.delete(job));
    return true;
  }

  private async joinWithRetries(roomId: string, userId: string, inviter: string, claimToCheck: string | undefined): Promise<void> {
    const { store, client } = this.deps;
    const source = claimToCheck ?? inviter;
    const via = [...new Set([serverOf(inviter), ...(claimToCheck ? [serverOf(claimToCheck)] : [])])].filter(Boolean);
    let attempt = 0;
    for (;;) {
      if (this.stopped) return;
      const joined = await client.join(roomId, via, userId);
      if (joined.ok) break;
      const early = joined.error.status === 403 || joined.error.status === 404;
      if (!early || attempt >= AUTO_JOIN_RETRY_MS.length || this.stopped) {
        store.bump('auto_joins.failed');
        store.record({ action: 'auto-join', outcome: 'failed', roomId, target: userId, source, detail: joined.error.human });
        this.log.warn({ roomId, userId, inviter, attempts: attempt + 1, detail: joined.error.log }, 'could not auto-join a linked account');
        return;
      }
      this.log.debug({ roomId, userId, attempt, detail: joined.error.log }, 'auto-join refused for now; trying again shortly');
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          this.retryTimers.delete(t);
          resolve();
        }, AUTO_JOIN_RETRY_MS[attempt++]);
        this.retryTimers.add(t);
      });
    }
    if (claimToCheck) {
      const state = await client.roomState(roomId, { asUser: userId });
      const m = state.ok ? membershipIn(state.value, claimToCheck) : undefined;
      if (m !== 'join' && m !== 'invite') {
        await client.leave(roomId, userId, 'Steward: linked-account invite could not be verified');
        store.bump('auto_joins.undone');
        store.record({ action: 'auto-join', outcome: 'failed', roomId, target: userId, source, detail: `left again: ${claimToCheck} is not in the room (${state.ok ? m ?? 'no membership' : 'room unreadable'}); invite by ${inviter}` });
        this.log.warn({ roomId, userId, inviter, claimed: claimToCheck, membership: m }, 'auto-joined on a linked-account invite whose named account is not in the room; left again');
        return;
      }
    }
    this.deps.membership.forget(roomId, userId);
    store.bump('auto_joins');
    store.record({ action: 'auto-join', outcome: 'ok', roomId, target: userId, source, detail: `invited by ${inviter}` });
    this.log.info({ roomId, userId, inviter, for: source }, 'auto-joined a linked account');
    if (!this.stopped) await this.mirrorAsMember(roomId, userId);
  }
}
