import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { createArchiveViews, rebuildArchiveIndex, type ArchiveViewSet } from '../../src/archive/views/archive-views.ts';
import { createLogger } from '../../src/log.ts';
import { DAY1, DAY2, DAY3, MINUTE, RoomFixture } from './archive-views-fixture.ts';

const log = createLogger({ level: 'silent', stream: new Writable({ write: (_c, _e, cb) => cb() }) });
const signal = new AbortController().signal;
const A = '@alice:hs.test';
const B = '@bob:hs.test';
const C = '@carol:hs.test';

function open(out: string): ArchiveViewSet {
  const v = createArchiveViews({ out, media: false, log });
  assert.ok(v.ok);
  return v.value;
}

describe('archive views: markdown per day', () => {
  let out: string;
  let room: RoomFixture;
  let views: ArchiveViewSet;
  const ids: Record<string, string> = {};

  before(async () => {
    out = mkdtempSync(join(tmpdir(), 'archive-views-md-'));
    room = new RoomFixture(out, '!r1:hs.test');
    const t = (base: number, m: number): number => base + m * MINUTE;
    const [, , , m1] = room.append(
      room.event('m.room.create', A, { room_version: '10' }, t(DAY1, 0), { stateKey: '' }),
      room.member(A, 'join', 'Alice', t(DAY1, 0)),
      room.member(B, 'join', 'Bob', t(DAY1, 1)),
      room.text(A, 'Hello world', t(DAY1, 2)),
    );
    ids.m1 = m1!.event_id;
    const [, root, t1, , , img, secret, , purged, enc] = room.append(
      room.reply(m1!, B, 'Hi Alice', t(DAY1, 3)),
      room.text(A, 'Thread root', t(DAY1, 4)),
      room.event('m.room.message', B, { msgtype: 'm.text', body: 'first in thread', 'm.relates_to': { rel_type: 'm.thread', event_id: '' } }, t(DAY1, 5)),
      room.react(m1!, B, '👍', t(DAY1, 6)),
      room.react(m1!, A, '👍', t(DAY1, 7)),
      room.event('m.room.message', A, { msgtype: 'm.image', body: 'cat.png', url: 'mxc://hs.test/cat', info: { mimetype: 'image/png', thumbnail_url: 'mxc://hs.test/catthumb' } }, t(DAY1, 8)),
      room.text(B, 'secret text', t(DAY1, 9)),
      room.react(m1!, C, '🎉', t(DAY1, 10)),
      room.event('m.room.message', B, {}, t(DAY1, 11), { steward: { redacted: true, original_missing: 'purged' } }),
      room.event('m.room.encrypted', A, { algorithm: 'm.megolm.v1.aes-sha2', ciphertext: 'AAAA', sender_key: 'k', session_id: 's' }, t(DAY1, 12)),
    );
    void t1;
    void enc;
    ids.root = root!.event_id;
    ids.img = img!.event_id;
    // The thread reply above has no root on purpose (an empty event id): it renders as a plain message.
    room.append(
      room.threadReply(root!, B, 'first in thread', t(DAY1, 13)),
      room.redact(purged!, B, t(DAY1, 14), { original_missing: 'purged' }),
    );
    room.append(
      room.member(A, 'join', 'Alice Cooper', t(DAY2, 0)),
      room.text(A, 'Second day', t(DAY2, 1)),
      room.edit(m1!, A, 'Hello world, edited', t(DAY2, 2)),
      room.threadReply(root!, C, 'late in thread', t(DAY2, 3)),
      room.redact(secret!, B, t(DAY2, 4), { original: { type: 'm.room.message', content: { msgtype: 'm.text', body: 'secret text' } } }),
      room.edit(m1!, B, 'edit by someone else', t(DAY2, 5)),
    );
    ids.secret = secret!.event_id;
    room.append(room.text(B, 'Bot notice <b>x</b>', t(DAY3, 0), { msgtype: 'm.notice' }));
    views = open(out);
    const s = await views.syncAll(signal);
    assert.equal(s.itemFailures.length, 0);
    assert.equal(s.daysWritten, 3);
  });

  after(() => {
    views.close();
    if (!process.env.KEEP_OUT) rmSync(out, { recursive: true, force: true });
    else console.log(out);
  });

  it('shows the final text of an edit, marked (edited), and ignores edits by others', () => {
    const md = readFileSync(room.mdPath('2026-11-28'), 'utf8');
    assert.match(md, /^- 09:02:00 \*\*Alice\*\*: Hello world, edited \*\(edited\)\*$/m);
    assert.doesNotMatch(md, /someone else/);
    const day2 = readFileSync(room.mdPath('2026-11-29'), 'utf8');
    assert.match(day2, /^- 09:02:00 \*Alice Cooper edited a message of 2026-11-28\*$/m);
  });

  it('shows the display name as it was then, and the change itself', () => {
    const day2 = readFileSync(room.mdPath('2026-11-29'), 'utf8');
    assert.match(day2, /^- 09:00:00 \*Alice is now known as Alice Cooper\*$/m);
    assert.match(day2, /^- 09:01:00 \*\*Alice Cooper\*\*: Second day$/m);
  });

  it('quotes the replied-to message, without the reply fallback', () => {
    const md = readFileSync(room.mdPath('2026-11-28'), 'utf8');
    assert.match(md, /^- 09:03:00 \*\*Bob\*\*:\n  > \*\*Alice\*\*: Hello world, edited\n\n  Hi Alice$/m);
    assert.doesNotMatch(md, /quoted/);
  });

  it('puts thread replies under their root, also those of a later day', () => {
    const md = readFileSync(room.mdPath('2026-11-28'), 'utf8');
    assert.match(md, /^- 09:04:00 \*\*Alice\*\*: Thread root\n  - \(thread\) 09:13:00 \*\*Bob\*\*: first in thread\n  - \(thread\) 2026-11-29 09:03:00 \*\*@carol:hs.test\*\*: late in thread$/m);
    const day2 = readFileSync(room.mdPath('2026-11-29'), 'utf8');
    assert.match(day2, /^- 09:03:00 \*\*@carol:hs.test\*\* replied in a thread started on 2026-11-28 \(shown there\)$/m);
  });

  it('aggregates reactions per key, one count per person', () => {
    const md = readFileSync(room.mdPath('2026-11-28'), 'utf8');
    assert.match(md, /^  - reactions: 👍 2 \(Bob, Alice\) · 🎉 1 \(@carol:hs.test\)$/m);
  });

  it('marks deletions, with the original where the archive kept one', () => {
    const md = readFileSync(room.mdPath('2026-11-28'), 'utf8');
    assert.match(md, /^- 09:09:00 \*\*Bob\*\*: \*\(deleted; original kept:\)\*\n  secret text$/m);
    assert.match(md, /^- 09:11:00 \*\*Bob\*\*: \*\(deleted; the server had already purged the original\)\*$/m);
    const day2 = readFileSync(room.mdPath('2026-11-29'), 'utf8');
    assert.match(day2, /^- 09:04:00 \*Bob deleted a message of 2026-11-28\*$/m);
  });

  it('names media, encrypted events and notices; HTML in bodies cannot render', () => {
    const md = readFileSync(room.mdPath('2026-11-28'), 'utf8');
    assert.match(md, /^- 09:08:00 \*\*Alice\*\*: image: cat.png \(`mxc:\/\/hs.test\/cat`, not downloaded\)$/m);
    assert.match(md, /^- 09:12:00 \*\*Alice\*\*: \*\(encrypted\)\*$/m);
    const day3 = readFileSync(room.mdPath('2026-11-30'), 'utf8');
    assert.match(day3, /^- 09:00:00 \*\*Bob\*\*: \*\(notice\)\* Bot notice \\<b>x\\<\/b>$/m);
    assert.match(day3, /^# 2026-11-30\n\nRoom `!r1:hs.test` · times in UTC\n/);
  });

  it('writes 0600 files and nothing at all on a run with nothing new', async () => {
    const file = room.mdPath('2026-11-28');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(statSync(join(out, 'archive.sqlite')).mode & 0o777, 0o600);
    const index = join(out, 'archive.sqlite');
    const before = [statSync(file).mtimeMs, statSync(index).mtimeMs, readFileSync(index)] as const;
    const again = await views.syncAll(signal);
    await views.runFinished();
    assert.deepEqual({ lines: again.lines, days: again.daysWritten }, { lines: 0, days: 0 });
    assert.deepEqual([statSync(file).mtimeMs, statSync(index).mtimeMs, readFileSync(index)], before);
  });

  it('re-renders an earlier day when a later line targets it, and only the days touched', async () => {
    const days = ['2026-11-28', '2026-11-29', '2026-11-30'];
    const mtimes = days.map((d) => statSync(room.mdPath(d)).mtimeMs);
    const day3 = room.append(room.react({ event_id: ids.root!, room_id: room.room.roomId, origin_server_ts: DAY1, event: { sender: A } }, B, '👀', DAY3 + 5 * MINUTE));
    const s = await views.roomAppended(room.room, day3, signal);
    assert.ok(s.ok);
    await views.runFinished();
    assert.match(readFileSync(room.mdPath('2026-11-28'), 'utf8'), /^- 09:04:00 \*\*Alice\*\*: Thread root\n  - reactions: 👀 1 \(Bob\)$/m);
    assert.match(readFileSync(room.mdPath('2026-11-30'), 'utf8'), /^- 09:05:00 \*Bob reacted 👀 to a message of 2026-11-28\*$/m);
    assert.equal(statSync(room.mdPath('2026-11-29')).mtimeMs, mtimes[1]);
  });

  it('rebuilds archive.sqlite from the day files to the same markdown bytes', async () => {
    const days = ['2026-11-28', '2026-11-29', '2026-11-30'];
    const bytes = days.map((d) => readFileSync(room.mdPath(d), 'utf8'));
    views.close();
    for (const d of days) rmSync(room.mdPath(d));
    const rebuilt = await rebuildArchiveIndex(out, log);
    assert.ok(rebuilt.ok);
    assert.deepEqual(days.map((d) => readFileSync(room.mdPath(d), 'utf8')), bytes);
    views = open(out);
  });

  it('sets a damaged archive.sqlite aside and rebuilds it from the day files', async () => {
    const bytes = readFileSync(room.mdPath('2026-11-28'), 'utf8');
    views.close();
    writeFileSync(join(out, 'archive.sqlite'), 'this is not a database, it is long enough to have a header of sorts……………………………………');
    views = open(out);
    const s = await views.syncAll(signal);
    assert.equal(s.daysWritten, 0);
    assert.ok(s.lines > 20);
    assert.equal(readFileSync(room.mdPath('2026-11-28'), 'utf8'), bytes);
    assert.match(readFileSync(join(out, 'archive.sqlite.damaged'), 'utf8'), /not a database/);
  });

  it('leaves a bad line out with an item failure and indexes the rest; a torn last line waits', async () => {
    const file = join(room.room.dir, '2026', '11', '2026-11-30.jsonl');
    writeFileSync(file, 'not json\n', { flag: 'a' });
    const [ok1] = room.append(room.text(B, 'after the bad line', DAY3 + 6 * MINUTE));
    writeFileSync(file, '{"event_id":"$torn', { flag: 'a' });
    const s = await views.roomAppended(room.room, [ok1!], signal);
    assert.ok(s.ok);
    await views.runFinished();
    assert.equal(s.value.itemFailures.length, 1);
    assert.match(s.value.itemFailures[0]!.item, /2026-11-30\.jsonl@\d+$/);
    assert.match(readFileSync(room.mdPath('2026-11-30'), 'utf8'), /after the bad line/);
  });
});
