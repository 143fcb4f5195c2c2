// The Postgres part of the end-to-end suite: Synapse on a fresh PostgreSQL database per test
// server (test/rig/postgres.ts), running a representative subset of the suite unchanged: the
// admin room, !dump users (with its SIGKILL resume) and !dump rooms (two federating servers).
// The recovery drill with pg_dump/pg_restore is test/e2e/recovery-postgres.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { query } from '../rig/postgres.ts';
import { startSynapse } from '../rig/synapse.ts';

process.env['STEWARD_RIG_DB'] = 'postgres';

describe('rig on PostgreSQL', () => {
  it('runs Synapse on its own PostgreSQL database and drops it at cleanup', async () => {
    const hs = await startSynapse({ name: 'pg-check', federation: false });
    const name = hs.postgresDatabase;
    try {
      assert.equal(hs.database, 'postgres');
      assert.ok(name);
      assert.equal((hs.config['database'] as { name: string }).name, 'psycopg2');
      const user = await hs.registerUser('pgcheck');
      assert.equal((await query(name, `SELECT name FROM users WHERE name = '${user.userId}'`)).trim(), user.userId);
      assert.equal((await query(name, "SELECT datcollate || ' ' || datctype FROM pg_database WHERE datname = current_database()")).trim(), 'C C');
    } finally {
      await hs.cleanup();
    }
    assert.equal((await query('postgres', `SELECT count(*) FROM pg_database WHERE datname = '${name}'`)).trim(), '0');
  });
});

await import('./admin-room.test.ts');
await import('./dump-users.test.ts');
await import('./dump-rooms.test.ts');
