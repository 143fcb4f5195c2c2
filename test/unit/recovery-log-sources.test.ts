import assert from 'node:assert/strict';
import { appendFile, mkdtemp, rename, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CommandSource, FileFollower, LineSplitter, StdinSource, type SourceState } from '../../src/recovery/log-sources.ts';
import { PassThrough } from 'node:stream';

async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function recorder() {
  const lines: string[] = [];
  const states: [SourceState, string | null][] = [];
  return { lines, states, cb: { onLines: (l: string[]) => lines.push(...l), onState: (s: SourceState, d: string | null) => states.push([s, d]) } };
}

describe('LineSplitter', () => {
  it('keeps unfinished lines and characters split across chunks', () => {
    const s = new LineSplitter();
    const euro = Buffer.from('€');
    assert.deepEqual(s.push(Buffer.concat([Buffer.from('one\ntw'), euro.subarray(0, 1)])), ['one']);
    assert.deepEqual(s.push(Buffer.concat([euro.subarray(1), Buffer.from('o\nthree')]) ), ['tw€o']);
    assert.deepEqual(s.end(), ['three']);
  });
});

describe('FileFollower', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'steward-follow-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('starts at the end, then follows appends, rename rotation and copytruncate', async () => {
    const file = path.join(dir, 'homeserver.log');
    await writeFile(file, 'old line before start\n');
    const r = recorder();
    let saved: { fileId: string; offset: number } | undefined;
    const f = new FileFollower({ name: 'f', path: file, startAt: 'end', pollMs: 20, saved: undefined, savePosition: (fileId, offset) => { saved = { fileId, offset }; } }, r.cb);
    f.start();
    await until(() => r.states.some(([s]) => s === 'following'), 'following');
    await appendFile(file, 'first\nsecond half');
    await until(() => r.lines.includes('first'), 'first');
    await appendFile(file, ' done\n');
    await until(() => r.lines.includes('second half done'), 'a line written in two parts');

    // logrotate's default: rename, then the writer opens a new file.
    await appendFile(file, 'last of the old file\n');
    await rename(file, `${file}.1`);
    await appendFile(`${file}.1`, 'written after the rename\n');
    await writeFile(file, 'first of the new file\n');
    await until(() => r.lines.includes('first of the new file'), 'the new file');
    assert.ok(r.lines.indexOf('written after the rename') < r.lines.indexOf('first of the new file'), 'the old file is read to its end first');

    // copytruncate: same file, cut to nothing, written again.
    await truncate(file, 0);
    await sleep(100);
    await appendFile(file, 'after truncate\n');
    await until(() => r.lines.includes('after truncate'), 'lines after a truncate');
    await f.stop();
    assert.deepEqual(r.lines, ['first', 'second half done', 'last of the old file', 'written after the rename', 'first of the new file', 'after truncate']);
    assert.ok(saved && saved.offset === 'after truncate\n'.length, 'the position is saved');
  });

  it('resumes from a saved position in the same file, and reads a file that appears later from its start', async () => {
    const file = path.join(dir, 'resume.log');
    await writeFile(file, 'seen before\nnot seen yet\n');
    const first = recorder();
    let saved: { fileId: string; offset: number } | undefined;
    const a = new FileFollower({ name: 'a', path: file, startAt: 'start', pollMs: 20, saved: undefined, savePosition: (fileId, offset) => { saved = { fileId, offset }; } }, first.cb);
    a.start();
    await until(() => first.lines.length === 2, 'both lines from the start');
    await a.stop();
    await appendFile(file, 'written while stopped\n');
    const second = recorder();
    const b = new FileFollower({ name: 'b', path: file, startAt: 'end', pollMs: 20, saved, savePosition: () => undefined }, second.cb);
    b.start();
    await until(() => second.lines.length === 1, 'the line written while stopped');
    await b.stop();
    assert.deepEqual(second.lines, ['written while stopped']);

    const later = path.join(dir, 'later.log');
    const third = recorder();
    const c = new FileFollower({ name: 'c', path: later, startAt: 'end', pollMs: 20, saved: undefined, savePosition: () => undefined, maxBackoffMs: 50 }, third.cb);
    c.start();
    await until(() => third.states.some(([s]) => s === 'failing'), 'a failure');
    assert.match(third.states.find(([s]) => s === 'failing')![1]!, /later\.log: it does not exist/);
    await writeFile(later, 'hello\n');
    await until(() => third.lines.includes('hello'), 'the file once it exists');
    await c.stop();
  });
});

describe('CommandSource', () => {
  it('reads stdout and stderr, and starts the command again after it exits', async () => {
    const r = recorder();
    const script = 'console.log("out line"); console.error("err line"); setTimeout(() => process.exit(3), 20)';
    const c = new CommandSource({ name: 'cmd', argv: [process.execPath, '-e', script], maxBackoffMs: 1000 }, r.cb);
    c.start();
    await until(() => r.lines.filter((l) => l === 'out line').length >= 2, 'a second run');
    await c.stop();
    assert.ok(r.lines.includes('err line'));
    const failing = r.states.filter(([s]) => s === 'failing');
    assert.match(failing[0]![1]!, /exited \(code 3\); starting it again in 1s/);
  });

  it('reports a program that does not exist, without crashing', async () => {
    const r = recorder();
    const c = new CommandSource({ name: 'cmd', argv: ['/nonexistent/journalctl', '-f'] }, r.cb);
    c.start();
    await until(() => r.states.some(([s]) => s === 'failing'), 'a failure');
    await c.stop();
    assert.match(r.states.find(([s]) => s === 'failing')![1]!, /could not be started: \/nonexistent\/journalctl was not found/);
  });
});

describe('StdinSource', () => {
  it('reads lines until its input ends, then says so', async () => {
    const input = new PassThrough();
    const r = recorder();
    const s = new StdinSource(r.cb, input);
    s.start();
    input.write('a\nb');
    input.end('c\n');
    await until(() => r.states.some(([st]) => st === 'ended'), 'the end');
    await s.stop();
    assert.deepEqual(r.lines, ['a', 'bc']);
  });
});
