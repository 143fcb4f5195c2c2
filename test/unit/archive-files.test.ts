import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { DayFileAppender, dayFile, foldersToFlush } from '../../src/archive/archive-files.ts';

const page = (day: string, text: string) => new Map([[day, { text, lines: text.split('\n').length - 1 }]]);

describe('archive day files', () => {
  const root = mkdtempSync(join(tmpdir(), 'steward-archive-files-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  it('flushes the new file\'s folder and the parent of every folder made on the way', () => {
    assert.deepEqual(foldersToFlush('/a/rooms/r/2026/12', undefined), ['/a/rooms/r/2026/12']);
    assert.deepEqual(foldersToFlush('/a/rooms/r/2026/12', '/a/rooms/r/2026/12'), ['/a/rooms/r/2026/12', '/a/rooms/r/2026']);
    assert.deepEqual(foldersToFlush('/a/rooms/r/2026/12', '/a/rooms/r'), ['/a/rooms/r/2026/12', '/a/rooms/r/2026', '/a/rooms/r', '/a/rooms']);
  });

  it('makes day files 0600 in 0700 folders and reports where each append began', async () => {
    const roomDir = join(root, 'rooms', 'r1');
    const appender = new DayFileAppender(roomDir, [], { firstPass: true });
    const first = await appender.append(page('2026-12-01', 'a\nb\n'));
    assert.ok(first.ok);
    assert.deepEqual(first.value, [{ day: '2026-12-01', length: 4, lines: 2, from: 0 }]);
    const second = await appender.append(page('2026-12-01', 'c\n'));
    assert.ok(second.ok);
    assert.deepEqual(second.value, [{ day: '2026-12-01', length: 6, lines: 3, from: 4 }]);
    const file = dayFile(roomDir, '2026-12-01');
    assert.equal(readFileSync(file, 'utf8'), 'a\nb\nc\n');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    for (const dir of [roomDir, join(roomDir, '2026'), join(roomDir, '2026', '12')]) assert.equal(statSync(dir).mode & 0o777, 0o700, dir);
  });

  it('cuts what a run that never committed left past the committed length, torn line included', async () => {
    const roomDir = join(root, 'rooms', 'r2');
    const first = await new DayFileAppender(roomDir, []).append(page('2026-12-02', 'a\n'));
    assert.ok(first.ok);
    appendFileSync(dayFile(roomDir, '2026-12-02'), 'b\n{"torn');
    const resumed = await new DayFileAppender(roomDir, [{ day: '2026-12-02', length: 2, lines: 1 }]).append(page('2026-12-02', 'b\n'));
    assert.ok(resumed.ok);
    assert.equal(readFileSync(dayFile(roomDir, '2026-12-02'), 'utf8'), 'a\nb\n');
  });

  it('refuses bytes it has no record of in a room new to its database, and a file shorter than archived', async () => {
    const roomDir = join(root, 'rooms', 'r3');
    assert.ok((await new DayFileAppender(roomDir, []).append(page('2026-12-03', 'a\n'))).ok);
    const unknown = await new DayFileAppender(roomDir, [], { firstPass: true }).append(page('2026-12-03', 'b\n'));
    assert.equal(unknown.ok, false);
    if (!unknown.ok) assert.equal(unknown.error.code, 'E_ARCHIVE_UNKNOWN_FILES');
    const shorter = await new DayFileAppender(roomDir, [{ day: '2026-12-03', length: 10, lines: 3 }]).append(page('2026-12-03', 'b\n'));
    assert.equal(shorter.ok, false);
    if (!shorter.ok) assert.equal(shorter.error.code, 'E_ARCHIVE_DAMAGED');
    assert.equal(readFileSync(dayFile(roomDir, '2026-12-03'), 'utf8'), 'a\n');
  });
});
