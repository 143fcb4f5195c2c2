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

  it('migrates a version 1 index in place: relation indexes only over events that point somewhere, no sender-time index', () => {
    const file = join(dir, 'v1.sqlite');
    const db = openIndex(file);
    db.exec(`
      DROP INDEX events_relates_to; DROP INDEX events_redacts; DROP INDEX events_reply_to; DROP INDEX events_thread_root;
      CREATE INDEX events_relates_to ON events (relates_to);
      CREATE INDEX events_redacts ON events (redacts);
      CREATE INDEX events_reply_to ON events (reply_to);
      CREATE INDEX events_thread_root ON events (thread_root);
      CREATE INDEX events_sender ON events (room_id, sender, ts);
    `);
    new ArchiveIndex(db).addAll(ROOM, [facts('$kept', '2026-01-01')], new Set());
    db.pragma('user_version = 1');
    db.close();

    const reopened = openIndex(file);
    try {
      assert.equal(reopened.pragma('user_version', { simple: true }), 2);
      const indexes = new Map((reopened.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").all() as { name: string; sql: string }[]).map((r) => [r.name, r.sql]));
      assert.equal(indexes.has('events_sender'), false);
      for (const column of ['relates_to', 'redacts', 'reply_to', 'thread_root']) assert.match(indexes.get(`events_${column}`) ?? '', new RegExp(`WHERE ${column} IS NOT NULL`));
      assert.equal(reopened.prepare('SELECT count(*) FROM events').pluck().get(), 1);
    } finally {
      reopened.close();
    }
  });
});
