import { randomUUID } from 'node:crypto';
import type { HomeserverHttp, HttpFailure, RequestOptions } from './http.ts';
import { path } from './http.ts';
import type { Result } from '../util/result.ts';

/** Content key on everything Steward sends, so its own messages are never taken as commands. */
export const STEWARD_MARKER = 'org.steward.sent';

/**
 * The client-server API, as the bot or (with `asUser`) as any local user through identity
 * assertion. Never logs in as a user: that is disabled on servers that delegate auth to MAS.
 */
export class ClientApi {
  private readonly http: HomeserverHttp;
  constructor(http: HomeserverHttp) {
    this.http = http;
  }

  whoami(asUser?: string): Promise<Result<{ user_id: string }, HttpFailure>> {
    return this.http.request('GET', '/_matrix/client/v3/account/whoami', { asUser });
  }

  /** Registers a user in the appservice namespace (the bot itself); M_USER_IN_USE means it exists. */
  registerAppserviceUser(localpart: string): Promise<Result<{ user_id: string }, HttpFailure>> {
    return this.http.request('POST', '/_matrix/client/v3/register', {
      body: { type: 'm.login.application_service', username: localpart, inhibit_login: true },
    });
  }

  ping(appserviceId: string): Promise<Result<{ duration_ms: number }, HttpFailure>> {
    return this.http.request('POST', path`/_matrix/client/v1/appservice/${appserviceId}/ping`, { body: {}, idempotent: true });
  }

  capabilities(): Promise<Result<{ capabilities: Record<string, unknown> }, HttpFailure>> {
    return this.http.request('GET', '/_matrix/client/v3/capabilities');
  }

  createRoom(body: Record<string, unknown>, asUser?: string): Promise<Result<{ room_id: string }, HttpFailure>> {
    return this.http.request('POST', '/_matrix/client/v3/createRoom', { body, asUser });
  }

  join(roomIdOrAlias: string, via: readonly string[] = [], asUser?: string): Promise<Result<{ room_id: string }, HttpFailure>> {
    const query = new URLSearchParams();
    for (const server of via) query.append('via', server);
    // Joining is idempotent, so a lost answer may be retried.
    const qs = query.toString();
    return this.http.request('POST', `${path`/_matrix/client/v3/join/${roomIdOrAlias}`}${qs ? `?${qs}` : ''}`, { body: {}, asUser, idempotent: true });
  }

  invite(roomId: string, userId: string, asUser?: string): Promise<Result<unknown, HttpFailure>> {
    return this.http.request('POST', path`/_matrix/client/v3/rooms/${roomId}/invite`, { body: { user_id: userId }, asUser, idempotent: true });
  }

  resolveAlias(alias: string): Promise<Result<{ room_id: string; servers: string[] }, HttpFailure>> {
    return this.http.request('GET', path`/_matrix/client/v3/directory/room/${alias}`);
  }

  /** PUT with a fresh transaction id: the homeserver deduplicates a retried send. */
  sendEvent(roomId: string, type: string, content: Record<string, unknown>, asUser?: string): Promise<Result<{ event_id: string }, HttpFailure>> {
    return this.http.request('PUT', path`/_matrix/client/v3/rooms/${roomId}/send/${type}/${`steward-${randomUUID()}`}`, {
      body: { ...content, [STEWARD_MARKER]: true },
      asUser,
    });
  }

  stateEvent<T = Record<string, unknown>>(roomId: string, type: string, stateKey = '', opts: RequestOptions = {}): Promise<Result<T, HttpFailure>> {
    return this.http.request('GET', path`/_matrix/client/v3/rooms/${roomId}/state/${type}/${stateKey}`, opts);
  }

  roomState(roomId: string, opts: RequestOptions = {}): Promise<Result<Record<string, unknown>[], HttpFailure>> {
    return this.http.request('GET', path`/_matrix/client/v3/rooms/${roomId}/state`, opts);
  }

  joinedRooms(asUser?: string): Promise<Result<{ joined_rooms: string[] }, HttpFailure>> {
    return this.http.request('GET', '/_matrix/client/v3/joined_rooms', { asUser });
  }

  pushRules(asUser: string, opts: RequestOptions = {}): Promise<Result<Record<string, unknown>, HttpFailure>> {
    return this.http.request('GET', '/_matrix/client/v3/pushrules/', { ...opts, asUser });
  }

  keyBackupVersion(asUser: string, opts: RequestOptions = {}): Promise<Result<Record<string, unknown>, HttpFailure>> {
    return this.http.request('GET', '/_matrix/client/v3/room_keys/version', { ...opts, asUser });
  }

  /** Cross-signing public keys and device keys of `userId`, as that user sees them. */
  keysQuery(asUser: string, userId: string, opts: RequestOptions = {}): Promise<Result<Record<string, unknown>, HttpFailure>> {
    return this.http.request('POST', '/_matrix/client/v3/keys/query', { ...opts, asUser, body: { device_keys: { [userId]: [] } }, idempotent: true });
  }

  /**
   * One `/sync` as `asUser` (identity assertion, never the user's token) with an inline filter.
   * Without `since` it is an initial sync. Presence defaults to offline so reading an account does
   * not make its owner look online. A GET: a timed-out initial sync is retried, and Synapse answers
   * the retry from the computation already under way.
   */
  sync(asUser: string, filter: Record<string, unknown>, opts: RequestOptions & { since?: string; timeoutMs?: number; setPresence?: 'offline' | 'online' | 'unavailable' } = {}): Promise<Result<Record<string, unknown>, HttpFailure>> {
    const { since, timeoutMs, setPresence, ...rest } = opts;
    return this.http.request('GET', '/_matrix/client/v3/sync', {
      ...rest,
      asUser,
      query: { ...rest.query, filter: JSON.stringify(filter), since, timeout: timeoutMs ?? 0, set_presence: setPresence ?? 'offline' },
    });
  }

  /**
   * A read receipt as `asUser` (m.read or m.read.private), optionally in a thread. Receipts are
   * idempotent (the homeserver ignores one that does not move forward), so a lost answer is retried.
   */
  sendReceipt(roomId: string, receiptType: string, eventId: string, threadId: string | undefined, asUser?: string): Promise<Result<unknown, HttpFailure>> {
    return this.http.request('POST', path`/_matrix/client/v3/rooms/${roomId}/receipt/${receiptType}/${eventId}`, {
      body: threadId !== undefined ? { thread_id: threadId } : {},
      asUser,
      idempotent: true,
    });
  }

  /**
   * Sets a membership through the state endpoint, which (unlike /invite) keeps extra content keys:
   * how Steward marks the invites it mirrors. Synapse runs the same membership checks as /invite.
   */
  setMembership(roomId: string, userId: string, content: Record<string, unknown>, asUser?: string): Promise<Result<{ event_id: string }, HttpFailure>> {
    return this.http.request('PUT', path`/_matrix/client/v3/rooms/${roomId}/state/m.room.member/${userId}`, { body: content, asUser });
  }

  leave(roomId: string, asUser?: string, reason?: string): Promise<Result<unknown, HttpFailure>> {
    return this.http.request('POST', path`/_matrix/client/v3/rooms/${roomId}/leave`, { body: reason ? { reason } : {}, asUser, idempotent: true });
  }

  /** One event as `asUser` sees it: 404 when it is unknown here or hidden from that user. */
  roomEvent(roomId: string, eventId: string, asUser?: string): Promise<Result<Record<string, unknown>, HttpFailure>> {
    return this.http.request('GET', path`/_matrix/client/v3/rooms/${roomId}/event/${eventId}`, { asUser });
  }
}
