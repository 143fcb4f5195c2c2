import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { migrate, openDatabase } from '../../src/store/database.ts';
import { MIGRATIONS } from '../../src/store/migrations.ts';
import { KeyValueStore } from '../../src/store/kv.ts';

function userVersion(db: Database.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}

function tables(db: Database.Database): string[] {
  return (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
}

describe('database migrations', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'steward-db-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('brings a new in-memory database to user_version = MIGRATIONS.length', () => {
    const db = openDatabase(':memory:');
    try {
      assert.ok(MIGRATIONS.length >= 1);
      assert.equal(userVersion(db), MIGRATIONS.length);
      const created = tables(db);
      for (const table of ['as_transactions', 'inbox', 'job_errors', 'jobs', 'kv']) assert.ok(created.includes(table), `${table} in ${created.join(', ')}`);
      assert.equal(db.pragma('foreign_keys', { simple: true }), 1);
    } finally {
      db.close();
    }
  });

  it('creates the file 0600 in a 0700 folder and keeps data across a reopen, which migrates nothing', async () => {
    const file = join(dir, 'nested', 'state', 'steward.db');
    const first = openDatabase(file);
    new KeyValueStore(first).set('admin_room', '!a:hs');
    first.close();
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await stat(join(dir, 'nested', 'state'))).mode & 0o777, 0o700);

    const second = openDatabase(file);
    try {
      assert.equal(userVersion(second), MIGRATIONS.length);
      assert.equal(new KeyValueStore(second).get('admin_room'), '!a:hs', 'a re-run migration would have failed or wiped the table');
      migrate(second);
      assert.equal(userVersion(second), MIGRATIONS.length);
      assert.equal(new KeyValueStore(second).get('admin_room'), '!a:hs');
    } finally {
      second.close();
    }
  });

  it('refuses a database written by a newer Steward, with a clear error, and leaves it alone', () => {
    const file = join(dir, 'newer.db');
    const raw = new Database(file);
    raw.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    raw.close();
    assert.throws(() => openDatabase(file), {
      message: `database schema version ${MIGRATIONS.length + 1} is newer than this Steward knows (${MIGRATIONS.length}); refusing to run an older Steward on it`,
    });
    const check = new Database(file);
    try {
      assert.equal(userVersion(check), MIGRATIONS.length + 1);
      assert.deepEqual(tables(check), []);
    } finally {
      check.close();
    }
  });

  it('runs each migration together with its user_version bump in one transaction', () => {
    const db = new Database(':memory:');
    try {
      // A table the first migration creates last already exists: the migration fails part-way.
      db.exec('CREATE TABLE job_errors (x INTEGER)');
      assert.throws(() => migrate(db), /table job_errors already exists/);
      assert.equal(userVersion(db), 0, 'a failed migration does not bump user_version');
      assert.deepEqual(tables(db), ['job_errors'], 'the tables created before the failure were rolled back');
      db.exec('DROP TABLE job_errors');
      migrate(db);
      assert.equal(userVersion(db), MIGRATIONS.length);
    } finally {
      db.close();
    }
  });
});
