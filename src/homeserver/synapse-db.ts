import Database from 'better-sqlite3';
import { errorMessage, fail, ok, type Result } from '../util/result.ts';

/**
 * Synapse's own database, for the one thing no API does: password hashes. `dump users
 * --with-password-hashes` reads them; `restore users --synapse-db` writes them the way Synapse's
 * docs set a hash (`UPDATE users SET password_hash = … WHERE name = …`). Nothing else is touched.
 * A SQLite file path or a Postgres DSN (postgres://…, postgresql://…).
 */
export interface SynapseDb {
  /** Every local user's hash (null when the user has none), one row at a time. */
  passwordHashes(): AsyncIterable<{ userId: string; hash: string | null }>;
  /** undefined: there is no such user. */
  passwordHash(userId: string): Promise<string | null | undefined>;
  /** false: there is no such user (nothing was written). */
  setPasswordHash(userId: string, hash: string): Promise<boolean>;
  close(): Promise<void>;
}

export function isPostgresDsn(target: string): boolean {
  return /^postgres(ql)?:\/\//i.test(target);
}

/** A DSN without its password, for messages. */
export function describeSynapseDb(target: string): string {
  if (!isPostgresDsn(target)) return target;
  try {
    const url = new URL(target);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return 'a Postgres DSN';
  }
}

export async function openSynapseDb(target: string, opts: { readonly: boolean }): Promise<Result<SynapseDb>> {
  const where = describeSynapseDb(target);
  const db = isPostgresDsn(target) ? await openPostgres(target) : openSqlite(target, opts.readonly);
  if (!db.ok) return fail('E_SYNAPSE_DB', `Cannot open Synapse's database ${where}: ${db.error.human}`, db.error.log);
  // A database that is not Synapse's (or an unknown schema) is refused before anything is read or written.
  try {
    await db.value.passwordHash('@steward-schema-check:invalid');
  } catch (err) {
    await db.value.close().catch(() => undefined);
    return fail('E_SYNAPSE_DB', `${where} does not look like Synapse's database (no users table with password_hash): ${errorMessage(err)}`);
  }
  return db;
}

function openSqlite(file: string, readonly: boolean): Result<SynapseDb> {
  let db: Database.Database;
  try {
    // Synapse keeps the file open and writes to it: wait for its locks rather than fail.
    db = new Database(file, { readonly, fileMustExist: true, timeout: 10_000 });
  } catch (err) {
    return fail('E_SYNAPSE_DB', errorMessage(err));
  }
  let get: Database.Statement | undefined;
  let set: Database.Statement | undefined;
  return ok({
    async *passwordHashes() {
      for (const row of db.prepare('SELECT name, password_hash FROM users ORDER BY name').iterate() as Iterable<{ name: string; password_hash: string | null }>) {
        yield { userId: row.name, hash: row.password_hash };
      }
    },
    async passwordHash(userId) {
      get ??= db.prepare('SELECT password_hash FROM users WHERE name = ?');
      const row = get.get(userId) as { password_hash: string | null } | undefined;
      return row === undefined ? undefined : row.password_hash;
    },
    async setPasswordHash(userId, hash) {
      set ??= db.prepare('UPDATE users SET password_hash = ? WHERE name = ?');
      return set.run(hash, userId).changes > 0;
    },
    async close() {
      db.close();
    },
  });
}

async function openPostgres(dsn: string): Promise<Result<SynapseDb>> {
  // Loaded only when a DSN is given: SQLite deployments never load the driver.
  let Client: typeof import('pg').Client;
  try {
    Client = (await import('pg')).default.Client;
  } catch (err) {
    return fail('E_SYNAPSE_DB', `the pg package cannot be loaded (${errorMessage(err)})`);
  }
  const client = new Client({ connectionString: dsn });
  // A dropped connection is reported by the next query; without a listener it would crash the process.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    return fail('E_SYNAPSE_DB', errorMessage(err));
  }
  const PAGE = 1000;
  return ok({
    async *passwordHashes() {
      // Keyset pages: memory stays flat however many users there are, without a server-side cursor.
      let after = '';
      for (;;) {
        const page = await client.query<{ name: string; password_hash: string | null }>('SELECT name, password_hash FROM users WHERE name > $1 ORDER BY name LIMIT $2', [after, PAGE]);
        for (const row of page.rows) yield { userId: String(row.name), hash: row.password_hash === null ? null : String(row.password_hash) };
        if (page.rows.length < PAGE) return;
        after = String(page.rows.at(-1)!.name);
      }
    },
    async passwordHash(userId) {
      const r = await client.query<{ password_hash: string | null }>('SELECT password_hash FROM users WHERE name = $1', [userId]);
      const row = r.rows[0];
      return row === undefined ? undefined : row.password_hash === null ? null : String(row.password_hash);
    },
    async setPasswordHash(userId, hash) {
      const r = await client.query('UPDATE users SET password_hash = $1 WHERE name = $2', [hash, userId]);
      return (r.rowCount ?? 0) > 0;
    },
    async close() {
      await client.end();
    },
  });
}
