// Password hashes in Synapse's database, SQLite and Postgres: read for the dump (in keyset pages on
// Postgres), written by restore, and a database that is not Synapse's refused. Postgres runs against
// the PostgreSQL on 127.0.0.1:5432 in a scratch database of its own (skipped when none answers).
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import { describeSynapseDb, openSynapseDb, type SynapseDb } from '../../src/homeserver/synapse-db.ts';
import { parseConfig } from '../../src/config/config.ts';

async function collect(db: SynapseDb): Promise<Map<string, string | null>> {
  const out = new Map<string, string | null>();
  for await (const row of db.passwordHashes()) out.set(row.userId, row.hash);
  return out;
}

describe('Synapse database: password hashes', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'steward-synapse-db-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('SQLite: reads every hash, reads and writes one, and never writes through a read-only handle', async () => {
    const file = path.join(dir, 'homeserver.db');
    const raw = new Database(file);
    raw.exec("CREATE TABLE users (name TEXT PRIMARY KEY, password_hash TEXT, admin SMALLINT); INSERT INTO users VALUES ('@a:x', '$2b$04$aaa', 0), ('@sso:x', NULL, 0);");
    raw.close();

    const ro = await openSynapseDb(file, { readonly: true });
    assert.ok(ro.ok, ro.ok ? '' : ro.error.human);
    assert.deepEqual([...(await collect(ro.value))], [['@a:x', '$2b$04$aaa'], ['@sso:x', null]]);
    await assert.rejects(ro.value.setPasswordHash('@a:x', 'nope'), /readonly/);
    await ro.value.close();

    const rw = await openSynapseDb(file, { readonly: false });
    assert.ok(rw.ok);
    assert.equal(await rw.value.setPasswordHash('@sso:x', '$2b$04$new'), true);
    assert.equal(await rw.value.setPasswordHash('@nobody:x', '$2b$04$new'), false);
    assert.equal(await rw.value.passwordHash('@sso:x'), '$2b$04$new');
    assert.equal(await rw.value.passwordHash('@nobody:x'), undefined);
    await rw.value.close();
  });

  it('SQLite: a missing file or a database that is not Synapse\'s is refused with a clear message', async () => {
    const missing = await openSynapseDb(path.join(dir, 'nope.db'), { readonly: true });
    assert.ok(!missing.ok && /Cannot open Synapse's database .*nope\.db/.test(missing.error.human));
    const other = path.join(dir, 'other.db');
    new Database(other).exec('CREATE TABLE t (x INTEGER)');
    const r = await openSynapseDb(other, { readonly: true });
    assert.ok(!r.ok && /does not look like Synapse's database \(no users table with password_hash\)/.test(r.error.human));
  });

  it('synapse.database: a relative SQLite path is relative to the config file, a DSN is kept, other keys are refused', () => {
    const base = { homeserver: { url: 'http://127.0.0.1:8008', server_name: 'example.org' }, admin_room: { admins: ['@a:example.org'] } };
    const parse = (synapse: unknown) => parseConfig({ ...base, synapse }, '/etc/steward');
    const a = parse({ database: 'synapse/homeserver.db' });
    assert.ok(a.ok && a.value.synapse.database === '/etc/steward/synapse/homeserver.db');
    const b = parse({ database: 'postgresql://synapse:pw@db/synapse' });
    assert.ok(b.ok && b.value.synapse.database === 'postgresql://synapse:pw@db/synapse');
    const c = parseConfig(base, '/etc/steward');
    assert.ok(c.ok && c.value.synapse.database === undefined);
    const d = parse({ databse: 'x' });
    assert.ok(!d.ok && /synapse\.databse: unknown key/.test(d.error.human));
  });

  it('never shows a DSN\'s password', () => {
    assert.equal(describeSynapseDb('postgres://synapse:s3cret@db.example.org:5432/synapse'), 'postgres://synapse:***@db.example.org:5432/synapse');
    assert.equal(describeSynapseDb('/var/lib/synapse/homeserver.db'), '/var/lib/synapse/homeserver.db');
  });

  describe('Postgres', () => {
    const name = `steward_synapse_db_test_${process.pid}`;
    const admin = new pg.Client({ connectionString: 'postgres://postgres@127.0.0.1:5432/postgres' });
    let available = true;
    before(async () => {
      try {
        await admin.connect();
        await admin.query(`DROP DATABASE IF EXISTS ${name}`);
        await admin.query(`CREATE DATABASE ${name}`);
      } catch (err) {
        available = false;
        process.stderr.write(`no PostgreSQL on 127.0.0.1:5432 (${(err as Error).message}); Postgres tests skipped\n`);
      }
    });
    after(async () => {
      if (available) await admin.query(`DROP DATABASE IF EXISTS ${name}`).catch(() => undefined);
      await admin.end().catch(() => undefined);
    });

    it('reads every hash in pages, reads and writes one; a wrong database is refused', async (t) => {
      if (!available) return t.skip('no PostgreSQL');
      const dsn = `postgres://postgres@127.0.0.1:5432/${name}`;
      const seed = new pg.Client({ connectionString: dsn });
      await seed.connect();
      try {
        const refused = await openSynapseDb(dsn, { readonly: true });
        assert.ok(!refused.ok && /does not look like Synapse's database/.test(refused.error.human));
        // More rows than one page (1000), so the keyset paging is exercised.
        await seed.query('CREATE TABLE users (name TEXT PRIMARY KEY, password_hash TEXT)');
        await seed.query("INSERT INTO users SELECT '@u' || lpad(i::text, 5, '0') || ':x', CASE WHEN i % 10 = 0 THEN NULL ELSE '$2b$04$h' || i END FROM generate_series(1, 2345) AS i");
      } finally {
        await seed.end();
      }
      const db = await openSynapseDb(dsn, { readonly: false });
      assert.ok(db.ok, db.ok ? '' : db.error.human);
      try {
        const all = await collect(db.value);
        assert.equal(all.size, 2345);
        assert.equal(all.get('@u00010:x'), null);
        assert.equal(all.get('@u02345:x'), '$2b$04$h2345');
        assert.equal(await db.value.setPasswordHash('@u00010:x', '$2b$04$restored'), true);
        assert.equal(await db.value.setPasswordHash('@nobody:x', '$2b$04$restored'), false);
        assert.equal(await db.value.passwordHash('@u00010:x'), '$2b$04$restored');
        assert.equal(await db.value.passwordHash('@nobody:x'), undefined);
      } finally {
        await db.value.close();
      }
      const wrong = await openSynapseDb('postgres://postgres@127.0.0.1:5432/steward_no_such_database', { readonly: true });
      assert.ok(!wrong.ok && /Cannot open Synapse's database postgres:\/\/postgres@127\.0\.0\.1:5432\/steward_no_such_database/.test(wrong.error.human));
    });
  });
});
