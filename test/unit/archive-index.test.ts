import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ArchiveIndex, openIndex } from '../../src/archive/views/archive-index.ts';
import type { EventFacts } from '../../src/archive/views/event-facts.ts';

const ROOM = '!room:example.org';

function facts(eventId: string, day: string, extra: Partial<EventFacts> = {}): EventFacts {
  return {
    eventId, roomId: ROOM, sender: '@alice:example.org', ts: Date.parse(`${day}T12:00:00Z`), depth: 10, day,
    type: 'm.room.message', stateKey: null, relation: null, relatesTo: null, replyTo: null, threadRoot: null,
    redacts: null, body: 'hello', content: { msgtype: 'm.text', body: 'hello' }, original: null, redacted: false,
    originalMissing: null, media: [], ...extra,
  };
}

describe('archive index', () => {
  const dir = mkdtempSync(join(tmpdir(), 'steward-archive-index-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('marks the day of an event that pointed at a later-indexed one, in the same batch or an earlier one', () => {
    const index = new ArchiveIndex(openIndex(join(dir, 'pointing.sqlite')));
    try {
      // A reaction and a reply archived before their target (a late event with a lower depth).
      const early = new Set<string>();
      index.addAll(ROOM, [facts('$reaction', '2026-01-03', { relation: 'm.annotation', relatesTo: '$late', body: null })], early);
      assert.deepEqual([...early], ['2026-01-03']);
      const touched = new Set<string>();
      index.addAll(ROOM, [facts('$reply', '2026-01-04', { replyTo: '$late' }), facts('$late', '2026-01-01'), facts('$other', '2026-01-02')], touched);
      assert.deepEqual([...touched].sort(), ['2026-01-01', '2026-01-02', '2026-01-03', '2026-01-04']);
      // Indexed once: the same batch again adds nothing and changes no day.
      const again = new Set<string>();
      index.addAll(ROOM, [facts('$late', '2026-01-01'), facts('$other', '2026-01-02')], again);
      assert.equal(again.size, 0);
    } finally {
      index.db.close();
    }
  });

  /** A fresh index turned back into what version 2 created (and, with `v1`, version 1). */
  function oldIndex(file: string, version: 1 | 2): void {
    const db = openIndex(file);
    db.exec(`
      DROP INDEX events_room_state;
      CREATE INDEX events_room_day ON events (room_id, day, ts);
      CREATE INDEX events_room_type ON events (room_id, type, ts);
      ALTER TABLE dirty_days DROP COLUMN mark;
    `);
    if (version === 1) {
      db.exec(`
        DROP INDEX events_relates_to; DROP INDEX events_redacts; DROP INDEX events_reply_to; DROP INDEX events_thread_root;
        CREATE INDEX events_relates_to ON events (relates_to);
        CREATE INDEX events_redacts ON events (redacts);
        CREATE INDEX events_reply_to ON events (reply_to);
        CREATE INDEX events_thread_root ON events (thread_root);
        CREATE INDEX events_sender ON events (room_id, sender, ts);
      `);
    }
    db.prepare("INSERT INTO events (event_id, room_id, sender, ts, depth, day, type, content, redacted) VALUES ('$kept', ?, '@alice:example.org', 0, 1, '1970-01-01', 'm.room.message', '{}', 0)").run(ROOM);
    db.prepare("INSERT INTO dirty_days (room_id, day) VALUES (?, '1970-01-01')").run(ROOM);
    db.pragma(`user_version = ${version}`);
    db.close();
  }

  for (const version of [1, 2] as const) {
    it(`migrates a version ${version} index in place: no day or type index over every event, relation indexes only over events that point somewhere, marked days kept`, () => {
      const file = join(dir, `v${version}.sqlite`);
      oldIndex(file, version);
      const reopened = openIndex(file);
      try {
        assert.equal(reopened.pragma('user_version', { simple: true }), 3);
        const indexes = new Map((reopened.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").all() as { name: string; sql: string }[]).map((r) => [r.name, r.sql]));
        for (const gone of ['events_sender', 'events_room_day', 'events_room_type']) assert.equal(indexes.has(gone), false, gone);
        assert.match(indexes.get('events_room_state') ?? '', /WHERE state_key IS NOT NULL/);
        for (const column of ['relates_to', 'redacts', 'reply_to', 'thread_root']) assert.match(indexes.get(`events_${column}`) ?? '', new RegExp(`WHERE ${column} IS NOT NULL`));
        assert.equal(reopened.prepare('SELECT count(*) FROM events').pluck().get(), 1);
        assert.deepEqual(reopened.prepare('SELECT day, mark FROM dirty_days').all(), [{ day: '1970-01-01', mark: 0 }]);
      } finally {
        reopened.close();
      }
    });
  }

  it('keeps the mark of a day marked again while it was being written', () => {
    const index = new ArchiveIndex(openIndex(join(dir, 'marks.sqlite')));
    try {
      index.upsertRoom(ROOM, '10', '/archive/rooms/room');
      index.markDirty(ROOM, ['2026-01-01', '2026-01-02']);
      const read = index.dirty(ROOM);
      assert.deepEqual(read.map((d) => d.day), ['2026-01-01', '2026-01-02']);
      // Marked again between being read and being written: that mark is newer than what was written.
      index.markDirty(ROOM, ['2026-01-02']);
      index.clean(read);
      assert.deepEqual(index.dirty(ROOM).map((d) => d.day), ['2026-01-02']);
      assert.deepEqual(index.dirty(ROOM, '2026-01-02'), []);
    } finally {
      index.db.close();
    }
    // Marks go on growing in a later run, so a mark read then is never mistaken for one set now.
    const reopened = new ArchiveIndex(openIndex(join(dir, 'marks.sqlite')));
    try {
      const [old] = reopened.dirty(ROOM);
      reopened.markDirty(ROOM, ['2026-01-02']);
      reopened.clean([old!]);
      assert.deepEqual(reopened.dirty(ROOM).map((d) => d.day), ['2026-01-02']);
    } finally {
      reopened.db.close();
    }
  });
});
