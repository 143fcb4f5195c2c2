import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { searchReply } from '../../src/archive/archive-search-command.ts';
import { createArchiveViews } from '../../src/archive/views/archive-views.ts';
import { ftsQuery, matrixToLink, parseDay, searchArchive } from '../../src/archive/views/archive-search.ts';
import { createLogger } from '../../src/log.ts';
import { DAY1, DAY2, DAY3, MINUTE, RoomFixture } from './archive-views-fixture.ts';

const log = createLogger({ level: 'silent', stream: new Writable({ write: (_c, _e, cb) => cb() }) });
const A = '@alice:hs.test';
const B = '@bob:hs.test';

describe('archive search: query words', () => {
  it('quotes every word, keeps a trailing * as prefix search', () => {
    assert.deepEqual(ftsQuery('  deploy  wor* '), { ok: true, value: '"deploy" "wor"*' });
    assert.deepEqual(ftsQuery('a"b OR (x'), { ok: true, value: '"ab" "OR" "(x"' });
  });

  it('refuses input with no word in it', () => {
    for (const bad of ['', '   ', '"', '*', '()', '"" **']) {
      const q = ftsQuery(bad);
      assert.equal(q.ok, false, bad);
      if (!q.ok) assert.equal(q.error.code, 'E_USAGE');
    }
  });

  it('takes days as YYYY-MM-DD that exist', () => {
    assert.deepEqual(parseDay('2026-11-30', 'from'), { ok: true, value: Date.UTC(2026, 10, 30) });
    for (const bad of ['2026-13-01', '2026-02-30', 'yesterday', '2026-1-1', '20261130']) {
      const d = parseDay(bad, 'from');
      assert.equal(d.ok, false, bad);
      if (!d.ok) assert.match(d.error.human, /--from takes a day as YYYY-MM-DD/);
    }
  });

  it('links events through matrix.to, URL-encoded', () => {
    assert.equal(matrixToLink('!a:hs.test', '$b/c+d'), 'https://matrix.to/#/!a%3Ahs.test/%24b%2Fc%2Bd');
  });
});

describe('archive search: answers from archive.sqlite', () => {
  let out: string;
  let r1: RoomFixture;
  let r2: RoomFixture;
  let original: string;

  before(async () => {
    out = mkdtempSync(join(tmpdir(), 'archive-views-search-'));
    r1 = new RoomFixture(out, '!one:hs.test');
    r2 = new RoomFixture(out, '!two:hs.test');
    const [, m] = r1.append(r1.member(A, 'join', 'Alice', DAY1), r1.text(A, 'We deploy on Monday', DAY1 + MINUTE));
    original = m!.event_id;
    r1.append(r1.text(B, 'The deployment went fine', DAY2), r1.edit(m!, A, 'We deploy on Tuesday', DAY2 + MINUTE), r1.text(B, 'lunch?', DAY3));
    r2.append(r2.text(B, 'deploy the café release', DAY3 + MINUTE));
    const views = createArchiveViews({ out, media: false, log });
    assert.ok(views.ok);
    await views.value.syncAll(new AbortController().signal);
    views.value.close();
  });

  after(() => rmSync(out, { recursive: true, force: true }));

  function search(words: string, more: Partial<Parameters<typeof searchArchive>[1]> = {}) {
    const r = searchArchive(out, { words, limit: 20, ...more });
    assert.ok(r.ok, r.ok ? '' : r.error.human);
    return r.value;
  }

  it('finds a word, newest first, with sender names and links', () => {
    const a = search('deploy');
    assert.equal(a.total, 3);
    assert.deepEqual(a.hits.map((h) => h.roomId), ['!two:hs.test', '!one:hs.test', '!one:hs.test']);
    assert.equal(a.hits[2]!.senderName, 'Alice');
    assert.match(a.hits[0]!.snippet, /«deploy» the café release/);
    // The edit is found by its new text and links to the message it edits.
    assert.equal(a.hits[1]!.edit, true);
    assert.equal(a.hits[1]!.link, matrixToLink('!one:hs.test', original));
  });

  it('finds by prefix and without accents', () => {
    assert.equal(search('deploy*').total, 4);
    assert.equal(search('cafe').total, 1);
  });

  it('narrows by room, by day and by sender', () => {
    assert.equal(search('deploy', { roomId: '!one:hs.test' }).total, 2);
    assert.deepEqual(search('deploy*', { from: '2026-11-29', to: '2026-11-29' }).hits.map((h) => h.ts), [DAY2 + MINUTE, DAY2]);
    assert.equal(search('deploy*', { to: '2026-11-28' }).total, 1);
    assert.equal(search('deploy*', { sender: B }).total, 2);
    assert.equal(search('deploy', { limit: 1 }).hits.length, 1);
  });

  it('never turns odd input into an SQL error', () => {
    for (const words of ['NOT x', 'x AND', 'col:deploy', "'; DROP TABLE events; --", 'NEAR(a b)', '^deploy', 'deploy"', '{a b}']) {
      const r = searchArchive(out, { words, limit: 5 });
      assert.ok(r.ok || r.error.code === 'E_USAGE', `${words}: ${r.ok ? '' : r.error.log}`);
    }
    assert.equal(search('^deploy').total, 3);
  });

  it('says clearly when there is no index or the dates are wrong', () => {
    const none = searchArchive(join(out, 'nowhere'), { words: 'x', limit: 5 });
    assert.equal(none.ok, false);
    if (!none.ok) assert.equal(none.error.code, 'E_ARCHIVE_MISSING');
    const backwards = searchArchive(out, { words: 'x', from: '2026-11-30', to: '2026-11-01', limit: 5 });
    assert.equal(backwards.ok, false);
  });

  it('answers with time, room, sender, snippet and link, in text and HTML', () => {
    const q = { words: 'deploy', limit: 2 };
    const r = searchReply(q, search('deploy', { limit: 2 }));
    assert.ok(r.ok && r.value.kind === 'reply');
    if (!r.ok || r.value.kind !== 'reply') return;
    assert.match(r.value.text, /^3 hit\(s\) for "deploy", newest 2 shown \(--limit\):/);
    assert.match(r.value.text, /2026-11-30 09:01 UTC · !two:hs.test · @bob:hs.test\n  «deploy» the café release\n  https:\/\/matrix.to\/#\/!two%3Ahs.test\//);
    assert.match(r.value.text, /Alice \(@alice:hs.test\) \(edit\)/);
    assert.match(r.value.html, /<b>deploy<\/b> the café release/);
  });
});
