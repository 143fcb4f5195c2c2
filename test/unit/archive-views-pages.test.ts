import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import type { ArchiveLine } from '../../src/archive/archive-line.ts';
import { createArchiveViews, rebuildArchiveIndex, type ArchiveViewSet } from '../../src/archive/views/archive-views.ts';
import { createLogger } from '../../src/log.ts';
import { DAY1, DAY2, DAY3, MINUTE, RoomFixture } from './archive-views-fixture.ts';

const log = createLogger({ level: 'silent', stream: new Writable({ write: (_c, _e, cb) => cb() }) });
const signal = new AbortController().signal;
const A = '@alice:hs.test';
const B = '@bob:hs.test';

function open(out: string): ArchiveViewSet {
  const v = createArchiveViews({ out, media: false, log });
  assert.ok(v.ok);
  return v.value;
}

/** What the index holds, in an order that does not depend on how it was filled. */
function indexed(out: string): unknown {
  const db = new Database(join(out, 'archive.sqlite'), { readonly: true });
  try {
    return {
      events: db.prepare('SELECT event_id, room_id, sender, ts, depth, day, type, state_key, relation, relates_to, reply_to, thread_root, redacts, body, content, original, redacted, original_missing FROM events ORDER BY event_id').all(),
      members: db.prepare('SELECT * FROM members ORDER BY event_id').all(),
      words: db.prepare("SELECT e.event_id FROM events_fts JOIN events e ON e.rowid = events_fts.rowid WHERE events_fts MATCH 'budget' ORDER BY e.event_id").pluck().all(),
      files: db.prepare('SELECT * FROM files ORDER BY path').all(),
      dirty: db.prepare('SELECT count(*) FROM dirty_days').pluck().get(),
    };
  } finally {
    db.close();
  }
}

function markdown(out: string): Map<string, string> {
  const files = new Map<string, string>();
  const dir = join(out, 'rooms');
  for (const f of readdirSync(dir, { recursive: true, encoding: 'utf8' })) if (f.endsWith('.md')) files.set(f, readFileSync(join(dir, f), 'utf8'));
  return files;
}

describe('archive views: pages handed over by the job', () => {
  const out = mkdtempSync(join(tmpdir(), 'archive-views-pages-'));
  after(() => rmSync(out, { recursive: true, force: true }));
  const room = new RoomFixture(out, '!pages:hs.test');
  const t = (base: number, m: number): number => base + m * MINUTE;
  let first: ArchiveLine | undefined;

  /** Pages of a conversation over three days: relations across pages and days, a late event, a name change. */
  function pages(): { lines: ArchiveLine[]; files: { day: string; from: number; to: number }[] }[] {
    const p1 = room.appendPage(
      room.event('m.room.create', A, { room_version: '10' }, t(DAY1, 0), { stateKey: '' }),
      room.member(A, 'join', 'Alice', t(DAY1, 1)),
      room.member(B, 'join', 'Bob', t(DAY1, 2)),
      room.text(A, 'the budget for the venue', t(DAY1, 3)),
    );
    first = p1.lines[3];
    const p2 = room.appendPage(
      room.reply(first!, B, 'budget approved', t(DAY1, 4)),
      room.react(first!, B, '👍', t(DAY2, 0)),
      room.edit(first!, A, 'the final budget for the venue', t(DAY2, 1)),
      room.member(B, 'join', 'Robert', t(DAY2, 2)),
      room.threadReply(first!, B, 'in a thread', t(DAY2, 3)),
    );
    const p3 = room.appendPage(
      room.text(B, 'a late budget line for day one', t(DAY1, 30)),
      room.redact(p2.lines[0]!, B, t(DAY3, 0), { original: { content: { msgtype: 'm.text', body: 'budget approved' } } }),
      room.text(A, 'day three', t(DAY3, 1)),
    );
    return [p1, p2, p3];
  }

  it('indexes the lines as given and ends with what a rebuild from the files gives', async () => {
    const views = open(out);
    for (const page of pages()) {
      const s = await views.roomAppended(room.room, page.lines, signal, page.files);
      assert.ok(s.ok);
    }
    await views.roomFinished(room.room);
    await views.runFinished();
    views.close();
    const given = { index: indexed(out), md: markdown(out) };
    assert.equal((given.index as { events: unknown[] }).events.length, 12);
    assert.match(given.md.get(join(encodeURIComponent('!pages:hs.test'), '2026', '11', '2026-11-28.md'))!, /the final budget for the venue \*\(edited\)\*/);

    const copy = mkdtempSync(join(tmpdir(), 'archive-views-pages-rebuilt-'));
    try {
      cpSync(out, copy, { recursive: true });
      const rebuilt = await rebuildArchiveIndex(copy, log);
      assert.ok(rebuilt.ok);
      assert.deepEqual({ index: indexed(copy), md: markdown(copy) }, given);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });

  it('reads the files instead when the index is behind where a page begins', async () => {
    // A crash after the day files were committed and before the views: the index misses that page.
    rmSync(join(out, 'archive.sqlite'));
    const views = open(out);
    const page = room.appendPage(room.text(A, 'one more budget line', t(DAY3, 2)));
    const s = await views.roomAppended(room.room, page.lines, signal, page.files);
    assert.ok(s.ok);
    await views.roomFinished(room.room);
    await views.runFinished();
    views.close();
    const index = indexed(out) as { events: { event_id: string }[]; words: string[] };
    assert.equal(index.events.length, 13);
    assert.equal(index.words.length, 5);
    assert.match(markdown(out).get(join(encodeURIComponent('!pages:hs.test'), '2026', '11', '2026-11-30.md'))!, /one more budget line/);
  });
});
