import type { HomeserverHttp, HttpFailure, RequestOptions } from './http.ts';
import { path } from './http.ts';
import type { Result } from '../util/result.ts';

type R<T = Record<string, unknown>> = Promise<Result<T, HttpFailure>>;

/**
 * A user's account-level state, read and written as the user through the appservice namespace
 * (identity assertion, never their token), plus the admin calls that create and change accounts
 * and look up media. What `dump users` reads beyond the basics and what `restore users` writes.
 */
export class AccountApi {
  private readonly http: HomeserverHttp;
  constructor(http: HomeserverHttp) {
    this.http = http;
  }

  // --- admin API ---

  /** Creates (201) or changes (200) an account; only the keys present are changed. */
  upsertUser(userId: string, body: Record<string, unknown>, opts: RequestOptions = {}): R {
    return this.http.request('PUT', path`/_synapse/admin/v2/users/${userId}`, { ...opts, body });
  }

  mediaInfo(server: string, mediaId: string, opts: RequestOptions = {}): R<{ media_info: Record<string, unknown> }> {
    return this.http.request('GET', path`/_synapse/admin/v1/media/${server}/${mediaId}`, opts);
  }

  /** Lets the user's cross-signing master key be replaced without interactive auth for 10 minutes. */
  allowCrossSigningReplacement(userId: string, opts: RequestOptions = {}): R {
    return this.http.request('POST', path`/_synapse/admin/v1/users/${userId}/_allow_cross_signing_replacement_without_uia`, { ...opts, body: {}, idempotent: true });
  }

  // --- as the user ---

  setGlobalAccountData(asUser: string, type: string, content: unknown, opts: RequestOptions = {}): R {
    return this.http.request('PUT', path`/_matrix/client/v3/user/${asUser}/account_data/${type}`, { ...opts, asUser, body: content });
  }

  setRoomAccountData(asUser: string, roomId: string, type: string, content: unknown, opts: RequestOptions = {}): R {
    return this.http.request('PUT', path`/_matrix/client/v3/user/${asUser}/rooms/${roomId}/account_data/${type}`, { ...opts, asUser, body: content });
  }

  /** A user-defined rule; `before`/`after` place it relative to another rule of the same kind. */
  putPushRule(asUser: string, kind: string, ruleId: string, rule: Record<string, unknown>, place: { before?: string; after?: string }, opts: RequestOptions = {}): R {
    return this.http.request('PUT', path`/_matrix/client/v3/pushrules/global/${kind}/${ruleId}`, { ...opts, asUser, body: rule, query: { ...opts.query, before: place.before, after: place.after } });
  }

  setPushRuleEnabled(asUser: string, kind: string, ruleId: string, enabled: boolean, opts: RequestOptions = {}): R {
    return this.http.request('PUT', path`/_matrix/client/v3/pushrules/global/${kind}/${ruleId}/enabled`, { ...opts, asUser, body: { enabled } });
  }

  setPushRuleActions(asUser: string, kind: string, ruleId: string, actions: unknown[], opts: RequestOptions = {}): R {
    return this.http.request('PUT', path`/_matrix/client/v3/pushrules/global/${kind}/${ruleId}/actions`, { ...opts, asUser, body: { actions } });
  }

  /** Setting a pusher twice is harmless (it is upserted by app id and pushkey), so a lost answer is retried. */
  setPusher(asUser: string, pusher: Record<string, unknown>, deviceId: string | undefined, opts: RequestOptions = {}): R {
    return this.http.request('POST', '/_matrix/client/v3/pushers/set', { ...opts, asUser, body: pusher, idempotent: true, query: { ...opts.query, device_id: deviceId } });
  }

  /**
   * The user's pushers as the client API shows them: with MSC3881 on for the user (Synapse's
   * `experimental_features: msc3881_enabled`, or per user through the admin API) each carries
   * `org.matrix.msc3881.enabled`, so this tells whether the server takes a pusher's enabled flag.
   */
  clientPushers(asUser: string, opts: RequestOptions = {}): R<{ pushers: Record<string, unknown>[] }> {
    return this.http.request('GET', '/_matrix/client/v3/pushers', { ...opts, asUser });
  }

  /** Creates the device if it does not exist (MSC4190, for appservices) or renames it. */
  putDevice(asUser: string, deviceId: string, displayName: string | null, opts: RequestOptions = {}): R {
    return this.http.request('PUT', path`/_matrix/client/v3/devices/${deviceId}`, { ...opts, asUser, body: displayName === null ? {} : { display_name: displayName } });
  }

  keyBackupVersion(asUser: string, opts: RequestOptions = {}): R {
    return this.http.request('GET', '/_matrix/client/v3/room_keys/version', { ...opts, asUser });
  }

  /** Not idempotent: every call creates a version. */
  createKeyBackupVersion(asUser: string, body: { algorithm: unknown; auth_data: unknown }, opts: RequestOptions = {}): R<{ version: string }> {
    return this.http.request('POST', '/_matrix/client/v3/room_keys/version', { ...opts, asUser, body, idempotent: false });
  }

  /** Every backed-up session of a version: opaque ciphertext, `{rooms: {room: {sessions: {id: …}}}}`. */
  keyBackupKeys(asUser: string, version: string, opts: RequestOptions = {}): R<{ rooms: Record<string, { sessions: Record<string, unknown> }> }> {
    return this.http.request('GET', '/_matrix/client/v3/room_keys/keys', { ...opts, asUser, query: { ...opts.query, version } });
  }

  putKeyBackupKeys(asUser: string, version: string, rooms: Record<string, { sessions: Record<string, unknown> }>, opts: RequestOptions = {}): R {
    return this.http.request('PUT', '/_matrix/client/v3/room_keys/keys', { ...opts, asUser, body: { rooms }, query: { ...opts.query, version } });
  }

  /** Appservices are exempt from interactive auth here (Synapse ≥ 1.119, MSC4190). */
  uploadCrossSigningKeys(asUser: string, keys: Record<string, unknown>, opts: RequestOptions = {}): R {
    return this.http.request('POST', '/_matrix/client/v3/keys/device_signing/upload', { ...opts, asUser, body: keys, idempotent: true });
  }

  uploadMedia(asUser: string, data: Uint8Array, contentType: string, fileName: string | undefined, opts: RequestOptions = {}): R<{ content_uri: string }> {
    return this.http.request('POST', '/_matrix/media/v3/upload', { ...opts, asUser, rawBody: { data, contentType }, query: { ...opts.query, filename: fileName }, idempotent: false });
  }
}
