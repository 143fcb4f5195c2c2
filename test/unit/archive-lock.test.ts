import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { LOCK_FILE, lockArchive } from '../../src/archive/archive-lock.ts';

describe('archive folder lock', () => {
  const dir = mkdtempSync(join(tmpdir(), 'steward-archive-lock-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const lockFile = join(dir, LOCK_FILE);
  const owner = (pid: number, host = hostname()) => writeFileSync(lockFile, JSON.stringify({ pid, host, job: 41, since: 0 }));

  it('lets one run at a time write a folder, and frees it on release', async () => {
    const first = await lockArchive(dir, 1);
    assert.ok(first.ok);
    assert.equal(JSON.parse(readFileSync(lockFile, 'utf8')).job, 1);
    const second = await lockArchive(dir, 2);
    assert.equal(second.ok, false);
    if (!second.ok) {
      assert.equal(second.error.code, 'E_ARCHIVE_BUSY');
      assert.match(second.error.human, /job #1 \(process \d+ on /);
    }
    await first.value.release();
    assert.equal(existsSync(lockFile), false);
    const third = await lockArchive(dir, 3);
    assert.ok(third.ok);
    await third.value.release();
  });

  it('takes over a lock left by a process that is gone, by an earlier process with this pid, or half written', async () => {
    for (const leave of [() => owner(2 ** 22 + 12345), () => owner(process.pid), () => writeFileSync(lockFile, '{"pid": 1')]) {
      leave();
      const lock = await lockArchive(dir, 7);
      assert.ok(lock.ok, lock.ok ? '' : lock.error.human);
      assert.equal(JSON.parse(readFileSync(lockFile, 'utf8')).job, 7);
      await lock.value.release();
    }
  });

  it('leaves a lock of a live process, or of another host, in place', async () => {
    for (const leave of [() => owner(process.ppid), () => owner(2 ** 22 + 12345, 'elsewhere.example')]) {
      leave();
      const before = readFileSync(lockFile, 'utf8');
      const lock = await lockArchive(dir, 8);
      assert.equal(lock.ok, false);
      if (!lock.ok) assert.match(lock.error.human, new RegExp(`if that process is gone, delete ${lockFile.replace(/[.]/g, '\\.')}`));
      assert.equal(readFileSync(lockFile, 'utf8'), before);
      rmSync(lockFile);
    }
  });
});
