import type { HomeserverHttp, HttpFailure, RequestOptions } from './http.ts';
import { path } from './http.ts';
import type { Result } from '../util/result.ts';

export interface AdminUserListEntry {
  readonly name: string;
  readonly deactivated?: boolean | number;
  readonly is_guest?: boolean | number;
  readonly admin?: boolean | number;
  readonly user_type?: string | null;
}

export interface AdminUserList {
  readonly users: AdminUserListEntry[];
  readonly total: number;
  readonly next_token?: string;
}

export interface AdminRoomListEntry {
  readonly room_id: string;
  readonly name?: string | null;
  readonly version?: string;
  readonly [key: string]: unknown;
}

export interface AdminRoomList {
  readonly rooms: AdminRoomListEntry[];
  readonly total_rooms: number;
  readonly offset?: number;
  /** Offset of the next page; absent on the last page. */
  readonly next_batch?: number | string;
}

export interface AdminForwardExtremity {
  readonly event_id: string;
  readonly depth: number;
  readonly received_ts?: number;
  readonly state_group?: number;
}

/** Thin, typed calls to Synapse's admin API; the bot user must be a server admin. */
export class SynapseAdmin {
  private readonly http: HomeserverHttp;
  /** Set at start-up when Synapse delegates auth to MAS; changes the queries Synapse accepts. */
  delegatedAuth = false;
  constructor(http: HomeserverHttp) {
    this.http = http;
  }

  serverVersion(opts: RequestOptions = {}): Promise<Result<{ server_version: string }, HttpFailure>> {
    return this.http.request('GET', '/_synapse/admin/v1/server_version', opts);
  }

  listUsers(from: string | undefined, limit: number, includeDeactivated: boolean, opts: RequestOptions = {}): Promise<Result<AdminUserList, HttpFailure>> {
    return this.http.request('GET', '/_synapse/admin/v2/users', {
      ...opts,
      // Under MAS there are no guests and Synapse answers 400 to `guests=true` (its default).
      query: { from, limit, guests: !this.delegatedAuth, deactivated: includeDeactivated, order_by: 'name' },
    });
  }

  user(userId: string, opts: RequestOptions = {}): Promise<Result<Record<string, unknown>, HttpFailure>> {
    return this.http.request('GET', path`/_synapse/admin/v2/users/${userId}`, opts);
  }

  setAdmin(userId: string, admin: boolean): Promise<Result<unknown, HttpFailure>> {
    return this.http.request('PUT', path`/_synapse/admin/v2/users/${userId}`, { body: { admin } });
  }

  devices(userId: string, opts: RequestOptions = {}): Promise<Result<{ devices: Record<string, unknown>[]; total: number }, HttpFailure>> {
    return this.http.request('GET', path`/_synapse/admin/v2/users/${userId}/devices`, opts);
  }

  pushers(userId: string, opts: RequestOptions = {}): Promise<Result<{ pushers: Record<string, unknown>[]; total: number }, HttpFailure>> {
    return this.http.request('GET', path`/_synapse/admin/v1/users/${userId}/pushers`, opts);
  }

  accountData(userId: string, opts: RequestOptions = {}): Promise<Result<{ account_data: { global: Record<string, unknown>; rooms: Record<string, Record<string, unknown>> } }, HttpFailure>> {
    return this.http.request('GET', path`/_synapse/admin/v1/users/${userId}/accountdata`, opts);
  }

  memberships(userId: string, opts: RequestOptions = {}): Promise<Result<{ memberships: Record<string, string> }, HttpFailure>> {
    return this.http.request('GET', path`/_synapse/admin/v1/users/${userId}/memberships`, opts);
  }

  /**
   * One page of the server's rooms. `order_by` defaults to Synapse's (room name); a column that
   * never changes (e.g. `creator`) keeps offsets stable while rooms are renamed during a long listing.
   */
  listRooms(from: number | undefined, limit: number, orderBy?: string, opts: RequestOptions = {}): Promise<Result<AdminRoomList, HttpFailure>> {
    return this.http.request('GET', '/_synapse/admin/v1/rooms', { ...opts, query: { from, limit, order_by: orderBy } });
  }

  room(roomId: string, opts: RequestOptions = {}): Promise<Result<Record<string, unknown>, HttpFailure>> {
    return this.http.request('GET', path`/_synapse/admin/v1/rooms/${roomId}`, opts);
  }

  /** The room's current state (client format, with event ids). */
  roomState(roomId: string, opts: RequestOptions = {}): Promise<Result<{ state: Record<string, unknown>[] }, HttpFailure>> {
    return this.http.request('GET', path`/_synapse/admin/v1/rooms/${roomId}/state`, opts);
  }

  /** The room's forward extremities: the latest events, whose resolved state is the current state. */
  forwardExtremities(roomId: string, opts: RequestOptions = {}): Promise<Result<{ count: number; results: AdminForwardExtremity[] }, HttpFailure>> {
    return this.http.request('GET', path`/_synapse/admin/v1/rooms/${roomId}/forward_extremities`, opts);
  }

  /** The aliases on this server that point to the room (client API; a server admin may ask for any room). */
  roomAliases(roomId: string, opts: RequestOptions = {}): Promise<Result<{ aliases: string[] }, HttpFailure>> {
    return this.http.request('GET', path`/_matrix/client/v3/rooms/${roomId}/aliases`, { ...opts, asServerAdmin: true });
  }
}
