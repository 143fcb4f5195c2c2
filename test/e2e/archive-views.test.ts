// The archive's views end to end against a real Synapse: rooms seeded over three days through
// the appservice (`?ts=`) with display-name changes, an edit, a reply, a thread, reactions, an
// image, a redaction whose original Synapse keeps (retention null) and one whose original it has
// purged. Then `archive --media`: the day markdown shows all of it, the image is downloaded
// (authenticated media, as the bot) and stored by sha256, `archive search` (terminal and room)
// finds words by room and by date with matrix.to links, a re-run changes no byte, and a later
// reaction re-renders the earlier day it belongs to.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { startStewardWithSynapse, type StewardSetup } from '../rig/steward.ts';
import { archivedLineCount, AsUser, DAY_MS, filesOf, purgeOriginal } from './archive-views-helpers.ts';
import { command } from './room-helpers.ts';

const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082', 'hex');
const SHA = createHash('sha256').update(PNG).digest('hex');
const enc = encodeURIComponent;

describe('archive views', () => {
  let s: StewardSetup;
  let send: AsUser;
  let admin: string;
  let bob: string;
  let room: string; // v10, three days
  let other: string; // v11
  let out: string;
  const ids: Record<string, string> = {};
  const day = (n: number): number => Math.floor(Date.now() / DAY_MS) * DAY_MS - (3 - n) * DAY_MS + 10 * 3600_000;
  const dayName = (n: number): string => new Date(day(n)).toISOString().slice(0, 10);
  const hms = (ts: number): string => new Date(ts).toISOString().slice(11, 19);
  const md = (roomId: string, d: string): Promise<string> => readFile(path.join(out, 'rooms', enc(roomId), d.slice(0, 4), d.slice(5, 7), `${d}.md`), 'utf8');
  const link = (roomId: string, eventId: string): string => `https://matrix.to/#/${enc(roomId)}/${enc(eventId)}`;
  const cli = (args: string[]) => s.steward.cli([...args, '--json']);

  const id = (name: string): string => {
    const v = ids[name];
    assert.ok(v, name);
    return v;
  };

  before(async () => {
    s = await startStewardWithSynapse({ synapse: { extraConfig: { redaction_retention_period: null } } });
    admin = s.admin.userId;
    bob = (await s.hs.registerUser('bob')).userId;
    out = path.join(s.steward.dir, 'archive');
    send = new AsUser(s.hs.clientUrl, s.steward.asToken);
    room = await s.adminClient.createRoom({ room_version: '10', name: 'Views', preset: 'public_chat' });
    other = await s.adminClient.createRoom({ room_version: '11', name: 'Other', preset: 'public_chat' });

    const t0 = day(0);
    await send.member(room, admin, t0, 'Ada');
    await send.member(room, bob, t0 + 1000, 'Bob');
    ids.m0 = await send.text(room, admin, t0 + 60_000, 'quarterly budget draft');
    ids.m1 = await send.text(room, bob, t0 + 120_000, 'looks good to me');
    ids.root = await send.text(room, admin, t0 + 180_000, 'thread about the venue');

    const t1 = day(1);
    ids.edit = await send.send(room, admin, t1, 'm.room.message', { msgtype: 'm.text', body: '* quarterly budget final', 'm.new_content': { msgtype: 'm.text', body: 'quarterly budget final' }, 'm.relates_to': { rel_type: 'm.replace', event_id: id('m0') } });
    ids.reply = await send.send(room, bob, t1 + 1000, 'm.room.message', { msgtype: 'm.text', body: '> <@bob> looks good to me\n\nreplying here', 'm.relates_to': { 'm.in_reply_to': { event_id: id('m1') } } });
    ids.thread = await send.send(room, bob, t1 + 2000, 'm.room.message', { msgtype: 'm.text', body: 'the venue is booked', 'm.relates_to': { rel_type: 'm.thread', event_id: id('root'), is_falling_back: true, 'm.in_reply_to': { event_id: id('root') } } });
    await send.send(room, admin, t1 + 3000, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: id('m0'), key: '👍' } });
    await send.send(room, bob, t1 + 4000, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: id('m0'), key: '👍' } });
    await send.member(room, bob, t1 + 5000, 'Robert');
    ids.renamed = await send.text(room, bob, t1 + 6000, 'new name, same person');

    const t2 = day(2);
    const mxc = await send.upload(admin, PNG, 'image/png', 'pixel.png');
    ids.image = await send.send(room, admin, t2, 'm.room.message', { msgtype: 'm.image', body: 'pixel.png', url: mxc, info: { mimetype: 'image/png', size: PNG.length, w: 1, h: 1 } });
    ids.kept = await send.text(room, admin, t2 + 1000, 'secret kept');
    await send.redact(room, admin, t2 + 2000, id('kept'));
    ids.purged = await send.text(room, bob, t2 + 3000, 'secret purged');
    await send.redact(room, admin, t2 + 4000, id('purged'));
    ids.elsewhere = await send.text(other, admin, day(1) + 500, 'the budget in another room');
    // Synapse's censoring once redaction_retention_period has passed, done by hand while it is stopped.
    await s.hs.stop();
    purgeOriginal(s.hs, id('purged'), '10');
    await s.hs.start();

    const run = await cli(['archive', '--media']);
    assert.equal(run.code, 0, run.stderr + run.stdout);
    const job = JSON.parse(run.stdout).job;
    assert.equal(job.state, 'done');
    assert.equal(job.failed, 0, JSON.stringify(job.errors));
  });

  after(async () => {
    await s?.steward.stop();
    await s?.hs.cleanup();
  });

  it('shows edits as the final text, thread replies under their root and reactions counted', async () => {
    const d0 = await md(room, dayName(0));
    assert.match(d0, new RegExp(`^- ${hms(day(0) + 60_000)} \\*\\*Ada\\*\\*: quarterly budget final \\*\\(edited\\)\\*\\n  - reactions: 👍 2 \\(Ada, Bob\\)$`, 'm'));
    assert.match(d0, new RegExp(`^- ${hms(day(0) + 180_000)} \\*\\*Ada\\*\\*: thread about the venue\\n  - \\(thread\\) ${dayName(1)} ${hms(day(1) + 2000)} \\*\\*Bob\\*\\*: the venue is booked$`, 'm'));
    assert.doesNotMatch(d0, /draft/);
    const d1 = await md(room, dayName(1));
    assert.match(d1, new RegExp(`^- ${hms(day(1))} \\*Ada edited a message of ${dayName(0)}\\*$`, 'm'));
    assert.match(d1, new RegExp(`^- ${hms(day(1) + 2000)} \\*\\*Bob\\*\\* replied in a thread started on ${dayName(0)} \\(shown there\\)$`, 'm'));
  });

  it('quotes replies and names senders as they were then', async () => {
    const d1 = await md(room, dayName(1));
    assert.match(d1, new RegExp(`^- ${hms(day(1) + 1000)} \\*\\*Bob\\*\\*:\\n  > \\*\\*Bob\\*\\*: looks good to me\\n\\n  replying here$`, 'm'));
    assert.match(d1, /^- \d\d:\d\d:\d\d \*Bob is now known as Robert\*$/m);
    assert.match(d1, new RegExp(`^- ${hms(day(1) + 6000)} \\*\\*Robert\\*\\*: new name, same person$`, 'm'));
  });

  it('downloads the image once by sha256 and links it; deletions show the kept original or say it was purged', async () => {
    const blob = path.join(out, 'media', SHA.slice(0, 2), SHA);
    assert.deepEqual(await readFile(blob), PNG);
    assert.equal((await stat(blob)).mode & 0o777, 0o600);
    const record = JSON.parse((await readFile(path.join(out, 'media', 'index.jsonl'), 'utf8')).trim().split('\n')[0]!);
    assert.deepEqual({ sha256: record.sha256, type: record.media_type, name: record.upload_name, encrypted: record.encrypted }, { sha256: SHA, type: 'image/png', name: 'pixel.png', encrypted: false });
    const d2 = await md(room, dayName(2));
    assert.ok(d2.includes(`- ${hms(day(2))} **Ada**: [image: pixel.png](../../../../media/${SHA.slice(0, 2)}/${SHA})`), d2);
    assert.match(d2, new RegExp(`^- ${hms(day(2) + 1000)} \\*\\*Ada\\*\\*: \\*\\(deleted; original kept:\\)\\*\\n  secret kept$`, 'm'));
    assert.match(d2, new RegExp(`^- ${hms(day(2) + 3000)} \\*\\*Robert\\*\\*: \\*\\(deleted by Ada; the server had already purged the original\\)\\*$`, 'm'));
    assert.doesNotMatch(d2, /secret purged/);
  });

  it('indexes every archived event in archive.sqlite, members over time included', async () => {
    const lines = await archivedLineCount(out);
    const db = new Database(path.join(out, 'archive.sqlite'), { readonly: true });
    try {
      assert.equal((db.prepare('SELECT COUNT(*) AS n FROM events').get() as { n: number }).n, lines);
      const names = db.prepare('SELECT displayname FROM members WHERE room_id = ? AND user_id = ? ORDER BY depth').all(room, bob).map((r: any) => r.displayname);
      assert.deepEqual(names, ['Bob', 'Robert']);
      assert.deepEqual(db.prepare('SELECT mxc, sha256 FROM media').all().map((r: any) => r.sha256), [SHA]);
    } finally {
      db.close();
    }
  });

  it('finds words with `archive search`, newest first, by room and by date, with matrix.to links', async () => {
    const all = await cli(['archive', 'search', 'budget']);
    assert.equal(all.code, 0, all.stderr);
    const text: string = JSON.parse(all.stdout).text;
    assert.match(text, /^3 hit\(s\) for "budget", newest first:/);
    assert.ok(text.indexOf(link(other, id('elsewhere'))) < text.indexOf(link(room, id('m0'))), 'newest first');
    assert.ok(text.includes(`${link(room, id('m0'))}`), text);
    assert.ok(text.includes(`Ada (${admin}) (edit)`), text);

    const inRoom = JSON.parse((await cli(['archive', 'search', 'budget', '--room', room])).stdout).text as string;
    assert.match(inRoom, /^2 hit\(s\)/);
    assert.ok(!inRoom.includes(other));

    const onDay1 = JSON.parse((await cli(['archive', 'search', 'budget', '--room', room, '--from', dayName(1), '--to', dayName(1)])).stdout).text as string;
    assert.match(onDay1, /^1 hit\(s\)/);
    assert.match(onDay1, /«budget» final/);
    const none = JSON.parse((await cli(['archive', 'search', 'budget', '--from', dayName(2)])).stdout).text as string;
    assert.match(none, /^No archived message matches/);
    const bySender = JSON.parse((await cli(['archive', 'search', 'venue', '--sender', bob])).stdout).text as string;
    assert.match(bySender, /^1 hit\(s\)/);
    assert.ok(bySender.includes(link(room, id('thread'))));

    const bad = await cli(['archive', 'search', 'budget', '--from', '2026-02-30']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stdout + bad.stderr, /--from takes a day as YYYY-MM-DD/);
  });

  it('answers !archive search in the admin room', async () => {
    const { reply } = await command(s.adminClient, s.steward.adminRoomId, s.steward.botUserId, `!archive search venue --room ${room}`);
    const body: string = reply.content.body;
    assert.match(body, /^2 hit\(s\) for "venue", newest first:/);
    assert.ok(body.includes(link(room, id('thread'))) && body.includes(link(room, id('root'))), body);
    assert.match(String(reply.content.formatted_body), /<b>venue<\/b>/);
  });

  it('changes no byte on a re-run, and re-renders the earlier day a late reaction belongs to', async () => {
    // Takes in what the room commands above added to the admin room.
    const settle = await cli(['archive', '--media']);
    assert.equal(settle.code, 0, settle.stderr);
    const before = await filesOf(out);
    const again = await cli(['archive', '--media']);
    assert.equal(again.code, 0, again.stderr);
    const rerun = await filesOf(out);
    const differ = [...new Set([...before.keys(), ...rerun.keys()])].filter((rel) => JSON.stringify(before.get(rel)) !== JSON.stringify(rerun.get(rel)));
    assert.deepEqual(differ, [], 'no byte and no mtime changed');

    await s.adminClient.sendEvent(room, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: id('m1'), key: '🎉' } });
    const late = await cli(['archive', '--media']);
    assert.equal(late.code, 0, late.stderr);
    const afterRun = await filesOf(out);
    const roomDir = path.join('rooms', enc(room));
    const changed = [...afterRun].filter(([rel, f]) => before.get(rel)?.bytes !== f.bytes).map(([rel]) => rel).filter((rel) => rel.endsWith('.md') && rel.startsWith(roomDir));
    const today = new Date().toISOString().slice(0, 10);
    const mdRel = (d: string): string => path.join(roomDir, d.slice(0, 4), d.slice(5, 7), `${d}.md`);
    assert.deepEqual(changed.sort(), [mdRel(dayName(0)), mdRel(today)].sort());
    assert.match(await md(room, dayName(0)), new RegExp(`^- ${hms(day(0) + 120_000)} \\*\\*Bob\\*\\*: looks good to me\\n  - reactions: 🎉 1 \\(Ada\\)$`, 'm'));
    assert.match(await md(room, today), new RegExp(`^- \\d\\d:\\d\\d:\\d\\d \\*Ada reacted 🎉 to a message of ${dayName(0)}\\*$`, 'm'));
  });
});
