import type { Logger } from "../log.ts";
import { fail, failure, ok } from "../util/result.ts";
import type { Failure, Result } from "../util/result.ts";
import { decodeBase64 } from "./base64.ts";
import type { KeyLookup } from "./event-verify.ts";
import type { FederationFailure, FederationRequestOptions } from "./federation-client.ts";
import type { FederationSettings } from "./federation-settings.ts";
import { isJsonObject } from "./json-object.ts";
import type { JsonObject } from "./json-object.ts";
import type { PersistedServerKeys } from "./persisted-keys.ts";
import { verifyJsonSignature } from "./signatures.ts";

/** A public key of a server, checked against the server's self-signed key response. */
export interface VerifiedServerKey {
  readonly serverName: string;
  /** `ed25519:<version>`. */
  readonly keyId: string;
  readonly publicKey: Uint8Array;
  /**
   * Events up to this time (ms) may carry its signature: `valid_until_ts` capped at
   * fetch time + 7 days for a current key, `expired_ts` for an old one.
   */
  readonly validUntilTs: number;
  /** Listed under `old_verify_keys`: no longer used, valid for events before expiry. */
  readonly old: boolean;
}

/** The part of FederationClient the key store uses; tests pass a fake. */
export interface KeyFetchClient {
  request<T>(
    destination: string,
    method: string,
    pathWithQuery: string,
    opts?: FederationRequestOptions,
  ): Promise<Result<T, FederationFailure>>;
}

export interface ServerKeyStoreOptions {
  readonly log?: Logger;
  /** Clock (ms since the epoch). */
  readonly now?: () => number;
  /** How long a failed fetch is answered from memory before trying again. */
  readonly negativeCacheMs?: number;
  /** After a successful fetch, a missing or expired key does not trigger another for this long. */
  readonly minRefetchIntervalMs?: number;
  readonly fetchTimeoutMs?: number;
  /**
   * Verified keys kept across restarts: written on every fetch, read only when the memory cache
   * misses and neither the origin nor the notary can be reached.
   */
  readonly persisted?: PersistedServerKeys;
}

/** Spec (keys definition, room v5 signing requirements): never trust valid_until_ts further than this. */
export const MAX_KEY_VALIDITY_MS = 7 * 24 * 3600_000;
const KEY_RESPONSE_MAX_BYTES = 1024 * 1024;
const NOTARY_RESPONSE_MAX_BYTES = 16 * 1024 * 1024;

/**
 * Checks a Server Keys object (the answer of `GET /_matrix/key/v2/server`, or one entry of
 * a notary's `server_keys`): it names `expectedServer`, lists well-formed ed25519 keys and
 * is signed by the server with at least one of the keys it lists, every such signature
 * verifying. Keys of other algorithms are ignored.
 */
export function verifyServerKeys(json: unknown, expectedServer: string, fetchedAtMs: number): Result<VerifiedServerKey[]> {
  const bad = (why: string) =>
    fail("E_KEY_RESPONSE_MALFORMED", `The key response of ${expectedServer} is malformed: ${why}.`);
  if (!isJsonObject(json)) return bad("it is not a JSON object");
  const serverName = json["server_name"];
  if (serverName !== expectedServer) {
    return fail(
      "E_KEY_RESPONSE_WRONG_SERVER",
      `Asked ${expectedServer} for its keys but the answer is for ${typeof serverName === "string" ? serverName : "no server"}.`,
    );
  }
  const validUntil = json["valid_until_ts"];
  if (typeof validUntil !== "number" || !Number.isSafeInteger(validUntil)) return bad("valid_until_ts is not an integer");
  const verifyKeys = json["verify_keys"];
  if (!isJsonObject(verifyKeys)) return bad("verify_keys is not an object");
  const keys: VerifiedServerKey[] = [];
  const current = new Map<string, Uint8Array>();
  const cappedUntil = Math.min(validUntil, fetchedAtMs + MAX_KEY_VALIDITY_MS);
  for (const [keyId, entry] of Object.entries(verifyKeys)) {
    if (!keyId.startsWith("ed25519:")) continue;
    const publicKey = publicKeyOf(entry);
    if (publicKey === undefined) return bad(`verify key ${keyId} is not an ed25519 public key`);
    current.set(keyId, publicKey);
    keys.push({ serverName: expectedServer, keyId, publicKey, validUntilTs: cappedUntil, old: false });
  }
  const oldKeys = json["old_verify_keys"];
  if (oldKeys !== undefined && !isJsonObject(oldKeys)) return bad("old_verify_keys is not an object");
  for (const [keyId, entry] of Object.entries(oldKeys ?? {})) {
    if (!keyId.startsWith("ed25519:") || current.has(keyId)) continue;
    const publicKey = publicKeyOf(entry);
    const expired = isJsonObject(entry) ? entry["expired_ts"] : undefined;
    if (publicKey === undefined || typeof expired !== "number" || !Number.isSafeInteger(expired)) {
      return bad(`old verify key ${keyId} is not an ed25519 public key with an expired_ts`);
    }
    keys.push({ serverName: expectedServer, keyId, publicKey, validUntilTs: expired, old: true });
  }
  const signatures = json["signatures"];
  const bySelf = isJsonObject(signatures) ? signatures[expectedServer] : undefined;
  let verified = 0;
  for (const keyId of isJsonObject(bySelf) ? Object.keys(bySelf) : []) {
    const publicKey = current.get(keyId);
    if (publicKey === undefined) continue;
    const checked = verifyJsonSignature(json, expectedServer, keyId, publicKey);
    if (!checked.ok) {
      return fail(
        "E_KEY_RESPONSE_BAD_SIGNATURE",
        `The key response of ${expectedServer} carries a bad self-signature (${keyId}).`,
        `key response of ${expectedServer}: ${checked.error.log}`,
      );
    }
    verified++;
  }
  if (verified === 0) {
    return fail("E_KEY_RESPONSE_UNSIGNED", `The key response of ${expectedServer} is not signed by ${expectedServer} with any key it lists.`);
  }
  return ok(keys);
}

function publicKeyOf(entry: unknown): Uint8Array | undefined {
  const text = isJsonObject(entry) ? entry["key"] : undefined;
  if (typeof text !== "string") return undefined;
  const decoded = decodeBase64(text);
  return decoded.ok && decoded.value.length === 32 ? decoded.value : undefined;
}

interface ServerEntry {
  readonly keys: Map<string, VerifiedServerKey>;
  /** Last successful fetch (direct or via the notary). */
  fetchedAt: number;
}

/**
 * Public keys of other servers, for `verifyEvent` (`lookup` is its KeyLookup). Keys are
 * fetched from the server itself (`GET /_matrix/key/v2/server`, unsigned), falling back
 * to the configured notary (`POST /_matrix/key/v2/query`, the notary's signature checked
 * with the notary's own self-signed keys, the origin's self-signature checked too).
 * A key serves a lookup when it is valid at the event's time (room versions ≥ 5; `atTs`
 * 0 means any time). Concurrent lookups of one server share one fetch; failures are
 * remembered for `negativeCacheMs`.
 */
export class ServerKeyStore {
  readonly #client: KeyFetchClient;
  readonly #ownServer: string;
  readonly #ownKeyId: string;
  readonly #ownPublicKey: Uint8Array;
  readonly #notary: string | undefined;
  readonly #log: Logger | undefined;
  readonly #now: () => number;
  readonly #negativeCacheMs: number;
  readonly #minRefetchMs: number;
  readonly #fetchTimeoutMs: number;
  readonly #persisted: PersistedServerKeys | undefined;
  readonly #cache = new Map<string, ServerEntry>();
  readonly #failures = new Map<string, { failure: Failure; until: number }>();
  readonly #inFlight = new Map<string, Promise<Result<void>>>();
  readonly #directInFlight = new Map<string, Promise<Result<VerifiedServerKey[]>>>();

  constructor(
    client: KeyFetchClient,
    settings: Pick<FederationSettings, "serverName" | "signingKey" | "notary">,
    opts: ServerKeyStoreOptions = {},
  ) {
    this.#client = client;
    this.#ownServer = settings.serverName;
    this.#ownKeyId = settings.signingKey.keyId;
    this.#ownPublicKey = settings.signingKey.publicKey;
    this.#notary = settings.notary;
    this.#log = opts.log?.child({ module: "server-keys" });
    this.#now = opts.now ?? Date.now;
    this.#negativeCacheMs = opts.negativeCacheMs ?? 60_000;
    this.#minRefetchMs = opts.minRefetchIntervalMs ?? 60_000;
    this.#fetchTimeoutMs = opts.fetchTimeoutMs ?? 10_000;
    this.#persisted = opts.persisted;
  }

  /** The KeyLookup contract of event-verify.ts. */
  readonly lookup: KeyLookup = async (serverName, keyId, atTs) => {
    if (serverName === this.#ownServer && keyId === this.#ownKeyId) return ok(this.#ownPublicKey);
    const hit = this.#usable(serverName, keyId, atTs);
    if (hit !== undefined) return ok(hit.publicKey);
    const entry = this.#cache.get(serverName);
    if (entry === undefined || this.#now() - entry.fetchedAt >= this.#minRefetchMs) {
      const refreshed = await this.#refresh(serverName, keyId, atTs);
      if (!refreshed.ok) {
        // Unreachable now: a key verified earlier (maybe by an earlier process) still counts, within its validity.
        const saved = this.#fromPersisted(serverName, keyId, atTs);
        return saved !== undefined ? ok(saved.publicKey) : refreshed;
      }
      const found = this.#usable(serverName, keyId, atTs);
      if (found !== undefined) return ok(found.publicKey);
    }
    return { ok: false, error: this.#unknown(serverName, keyId, atTs) };
  };

  /** Every key known for `serverName`, fetched first unless a current one is cached. */
  async keysOf(serverName: string): Promise<Result<VerifiedServerKey[]>> {
    const now = this.#now();
    const entry = this.#cache.get(serverName);
    const fresh = entry !== undefined && [...entry.keys.values()].some((k) => !k.old && k.validUntilTs >= now);
    if (!fresh) {
      const refreshed = await this.#refresh(serverName, undefined, now);
      if (!refreshed.ok) return refreshed;
    }
    return ok([...(this.#cache.get(serverName)?.keys.values() ?? [])]);
  }

  /** `GET /_matrix/key/v2/server` on `serverName`, verified and cached. */
  async fetchDirect(serverName: string): Promise<Result<VerifiedServerKey[]>> {
    const running = this.#directInFlight.get(serverName);
    if (running !== undefined) return running;
    const fetching = this.#fetchDirect(serverName).finally(() => this.#directInFlight.delete(serverName));
    this.#directInFlight.set(serverName, fetching);
    return fetching;
  }

  async #fetchDirect(serverName: string): Promise<Result<VerifiedServerKey[]>> {
    const fetchedAt = this.#now();
    const answer = await this.#client.request<unknown>(serverName, "GET", "/_matrix/key/v2/server", {
      authenticate: false,
      timeoutMs: this.#fetchTimeoutMs,
      maxResponseBytes: KEY_RESPONSE_MAX_BYTES,
    });
    if (!answer.ok) {
      return fail(answer.error.code, `Cannot fetch the keys of ${serverName}: ${answer.error.human}`, `key fetch from ${serverName}: ${answer.error.log}`);
    }
    const verified = verifyServerKeys(answer.value, serverName, fetchedAt);
    if (!verified.ok) return verified;
    this.#store(serverName, verified.value, fetchedAt);
    return verified;
  }

  /**
   * `POST /_matrix/key/v2/query` to the configured notary. Each returned entry must be
   * signed by the notary with one of its current keys (from its own self-signed
   * `/_matrix/key/v2/server`) and self-signed by `serverName`.
   */
  async fetchFromNotary(serverName: string, keyIds: readonly string[], minimumValidUntilTs: number): Promise<Result<VerifiedServerKey[]>> {
    const notary = this.#notary;
    if (notary === undefined) return fail("E_NO_NOTARY", "No notary server is configured (federation.notary).");
    const notaryKeys = await this.#currentKeysOf(notary);
    if (!notaryKeys.ok) {
      return fail(notaryKeys.error.code, `Cannot use the notary ${notary}: ${notaryKeys.error.human}`, notaryKeys.error.log);
    }
    const criteria = Object.fromEntries(keyIds.map((keyId) => [keyId, { minimum_valid_until_ts: minimumValidUntilTs }]));
    const fetchedAt = this.#now();
    const answer = await this.#client.request<unknown>(notary, "POST", "/_matrix/key/v2/query", {
      body: { server_keys: { [serverName]: criteria } },
      authenticate: false,
      timeoutMs: this.#fetchTimeoutMs,
      maxResponseBytes: NOTARY_RESPONSE_MAX_BYTES,
    });
    if (!answer.ok) {
      return fail(answer.error.code, `The notary ${notary} did not answer for ${serverName}: ${answer.error.human}`, answer.error.log);
    }
    const entries = isJsonObject(answer.value) ? answer.value["server_keys"] : undefined;
    if (!Array.isArray(entries)) {
      return fail("E_KEY_RESPONSE_MALFORMED", `The notary ${notary} answered without a server_keys list.`);
    }
    const accepted: VerifiedServerKey[] = [];
    let firstFailure: Failure | undefined;
    for (const entry of entries) {
      if (!isJsonObject(entry) || entry["server_name"] !== serverName) continue;
      const signedByNotary = verifyNotarySignature(entry, notary, notaryKeys.value);
      const verified = signedByNotary.ok ? verifyServerKeys(entry, serverName, fetchedAt) : signedByNotary;
      if (verified.ok) accepted.push(...verified.value);
      else firstFailure ??= verified.error;
    }
    if (accepted.length === 0) {
      return { ok: false, error: firstFailure ?? failure("E_NOTARY_NO_KEYS", `The notary ${notary} has no keys of ${serverName}.`) };
    }
    this.#store(serverName, accepted, fetchedAt);
    return ok(accepted);
  }

  /** One refresh per server at a time: directly, then via the notary if that did not produce the key. */
  #refresh(serverName: string, keyId: string | undefined, atTs: number): Promise<Result<void>> {
    const failed = this.#failures.get(serverName);
    if (failed !== undefined && failed.until > this.#now()) return Promise.resolve({ ok: false, error: failed.failure });
    const running = this.#inFlight.get(serverName);
    if (running !== undefined) return running;
    const refreshing = this.#refreshOnce(serverName, keyId, atTs).finally(() => this.#inFlight.delete(serverName));
    this.#inFlight.set(serverName, refreshing);
    return refreshing;
  }

  async #refreshOnce(serverName: string, keyId: string | undefined, atTs: number): Promise<Result<void>> {
    const direct = await this.fetchDirect(serverName);
    const satisfied = keyId === undefined ? direct.ok : this.#usable(serverName, keyId, atTs) !== undefined;
    if (satisfied) return ok(undefined);
    if (!direct.ok) this.#log?.info({ serverName, code: direct.error.code, reason: direct.error.log }, "direct key fetch failed");
    if (this.#notary !== undefined && this.#notary !== serverName) {
      const minimum = atTs > 0 ? atTs : this.#now();
      const viaNotary = await this.fetchFromNotary(serverName, keyId === undefined ? [] : [keyId], minimum);
      if (viaNotary.ok) return ok(undefined);
      this.#log?.info({ serverName, notary: this.#notary, code: viaNotary.error.code, reason: viaNotary.error.log }, "key fetch via notary failed");
      if (!direct.ok) {
        return this.#remember(serverName, failure(
          direct.error.code,
          `${direct.error.human} The notary ${this.#notary} could not help either: ${viaNotary.error.human}`,
          `${direct.error.log}; via notary ${this.#notary}: ${viaNotary.error.log}`,
        ));
      }
    }
    if (!direct.ok) return this.#remember(serverName, direct.error);
    return ok(undefined);
  }

  #remember(serverName: string, failed: Failure): Result<never> {
    if (this.#negativeCacheMs > 0) this.#failures.set(serverName, { failure: failed, until: this.#now() + this.#negativeCacheMs });
    return { ok: false, error: failed };
  }

  /** Current (not old) keys of a notary valid now, fetched directly if need be. */
  async #currentKeysOf(notary: string): Promise<Result<Map<string, Uint8Array>>> {
    const current = (): Map<string, Uint8Array> => {
      const now = this.#now();
      const keys = new Map<string, Uint8Array>();
      if (notary === this.#ownServer) keys.set(this.#ownKeyId, this.#ownPublicKey);
      for (const key of this.#cache.get(notary)?.keys.values() ?? []) {
        if (!key.old && key.validUntilTs >= now) keys.set(key.keyId, key.publicKey);
      }
      return keys;
    };
    const known = current();
    if (known.size > 0) return ok(known);
    const fetched = await this.fetchDirect(notary);
    if (!fetched.ok) return fetched;
    const keys = current();
    if (keys.size === 0) return fail("E_UNKNOWN_KEY", `The notary ${notary} publishes no key that is valid now.`);
    return ok(keys);
  }

  #usable(serverName: string, keyId: string, atTs: number): VerifiedServerKey | undefined {
    const key = this.#cache.get(serverName)?.keys.get(keyId);
    if (key === undefined) return undefined;
    return atTs === 0 || key.validUntilTs >= atTs ? key : undefined;
  }

  #fromPersisted(serverName: string, keyId: string, atTs: number): VerifiedServerKey | undefined {
    let key: VerifiedServerKey | undefined;
    try {
      key = this.#persisted?.load(serverName, keyId);
    } catch (err) {
      this.#log?.warn({ err, serverName }, "could not read stored server keys");
      return undefined;
    }
    // Exactly the memory cache's rule: valid_until_ts (capped) or expired_ts must reach the event.
    if (key === undefined || !(atTs === 0 || key.validUntilTs >= atTs)) return undefined;
    this.#log?.info({ serverName, keyId }, "origin unreachable; using its key verified earlier and stored");
    return key;
  }

  #unknown(serverName: string, keyId: string, atTs: number): Failure {
    const key = this.#cache.get(serverName)?.keys.get(keyId);
    if (key !== undefined) {
      return failure(
        "E_UNKNOWN_KEY",
        `The key ${keyId} of ${serverName} was valid only until ${new Date(key.validUntilTs).toISOString()}, before the event (${new Date(atTs).toISOString()}).`,
        `key ${keyId} of ${serverName} valid until ${key.validUntilTs}, needed at ${atTs}`,
      );
    }
    return failure("E_UNKNOWN_KEY", `${serverName} publishes no key ${keyId}.`);
  }

  #store(serverName: string, keys: readonly VerifiedServerKey[], fetchedAt: number): void {
    let entry = this.#cache.get(serverName);
    if (entry === undefined) {
      entry = { keys: new Map(), fetchedAt };
      this.#cache.set(serverName, entry);
    }
    entry.fetchedAt = Math.max(entry.fetchedAt, fetchedAt);
    for (const key of keys) {
      const known = entry.keys.get(key.keyId);
      // As Synapse does: the statement with the longest validity wins (a notary may hold an older copy).
      if (known === undefined || key.validUntilTs >= known.validUntilTs) entry.keys.set(key.keyId, key);
    }
    this.#failures.delete(serverName);
    try {
      this.#persisted?.save(keys, fetchedAt);
    } catch (err) {
      this.#log?.warn({ err, serverName }, "could not store server keys");
    }
    this.#log?.debug({ serverName, keys: keys.map((k) => k.keyId) }, "stored verified server keys");
  }
}

function verifyNotarySignature(entry: JsonObject, notary: string, notaryKeys: ReadonlyMap<string, Uint8Array>): Result<void> {
  const signatures = entry["signatures"];
  const byNotary = isJsonObject(signatures) ? signatures[notary] : undefined;
  let verified = 0;
  for (const keyId of isJsonObject(byNotary) ? Object.keys(byNotary) : []) {
    const publicKey = notaryKeys.get(keyId);
    if (publicKey === undefined) continue;
    const checked = verifyJsonSignature(entry, notary, keyId, publicKey);
    if (!checked.ok) {
      return fail("E_NOTARY_BAD_SIGNATURE", `The notary ${notary}'s signature (${keyId}) on the keys it relayed does not match.`, checked.error.log);
    }
    verified++;
  }
  if (verified === 0) return fail("E_NOTARY_UNSIGNED", `The keys relayed by the notary ${notary} are not signed with any current key of ${notary}.`);
  return ok(undefined);
}
