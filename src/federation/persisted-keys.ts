import type { Db } from "../store/database.ts";
import { decodeBase64, encodeBase64 } from "./base64.ts";
import type { VerifiedServerKey } from "./server-keys.ts";

/** Where verified server keys outlive the process; the memory cache of ServerKeyStore sits in front. */
export interface PersistedServerKeys {
  load(serverName: string, keyId: string): VerifiedServerKey | undefined;
  save(keys: readonly VerifiedServerKey[], fetchedAt: number): void;
}

/**
 * SQLite table `federation_server_keys` (src/production/schema.ts). Keys are stored only after
 * ServerKeyStore verified them; as in memory, the statement with the longest validity wins.
 */
export class SqlitePersistedServerKeys implements PersistedServerKeys {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  load(serverName: string, keyId: string): VerifiedServerKey | undefined {
    const row = this.#db.prepare("SELECT public_key, valid_until_ts, old FROM federation_server_keys WHERE server_name = ? AND key_id = ?").get(serverName, keyId) as
      | { public_key: string; valid_until_ts: number; old: number }
      | undefined;
    if (row === undefined) return undefined;
    const publicKey = decodeBase64(row.public_key);
    // A row that does not decode to an ed25519 key is ignored, never trusted.
    if (!publicKey.ok || publicKey.value.length !== 32) return undefined;
    return { serverName, keyId, publicKey: publicKey.value, validUntilTs: row.valid_until_ts, old: row.old === 1 };
  }

  save(keys: readonly VerifiedServerKey[], fetchedAt: number): void {
    const upsert = this.#db.prepare(
      `INSERT INTO federation_server_keys (server_name, key_id, public_key, valid_until_ts, old, fetched_ts) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (server_name, key_id) DO UPDATE SET public_key = excluded.public_key, valid_until_ts = excluded.valid_until_ts, old = excluded.old, fetched_ts = excluded.fetched_ts
       WHERE excluded.valid_until_ts >= federation_server_keys.valid_until_ts`,
    );
    this.#db.transaction(() => {
      for (const k of keys) upsert.run(k.serverName, k.keyId, encodeBase64(k.publicKey), k.validUntilTs, k.old ? 1 : 0, fetchedAt);
    })();
  }
}
