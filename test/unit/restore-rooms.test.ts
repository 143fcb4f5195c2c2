import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { lineKind, parseArchiveLine } from '../../src/restore/room-archive.ts';
import { parseRoomDocument, validateRoomDump, type RoomDocument } from '../../src/restore/room-dump-reader.ts';
import { mapRelations } from '../../src/restore/room-history.ts';
import { planRoom, powerLevelsFor } from '../../src/restore/room-plan.ts';

const HS = 'hs.example';
const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

function member(user: string, membership: string) {
  return { type: 'm.room.member', state_key: user, sender: user, content: { membership } };
}

function doc(state: RoomDocument['state'], extra: Partial<RoomDocument> = {}): RoomDocument {
  return {
    roomId: '!old:hs.example', roomVersion: '10', details: { public: true }, aliases: ['#a:hs.example', '#b:other.example'],
    state: [{ type: 'm.room.create', state_key: '', sender: '@alice:hs.example', content: { room_version: '10', 'm.federate': true } }, ...state],
    ...extra,
  };
}

describe('room plans', () => {
  it('rejoins a room other servers have joined members in, through them', () => {
    const plan = planRoom(doc([member('@alice:hs.example', 'join'), member('@carol:b.example:8448', 'join'), member('@dan:c.example', 'leave')]), HS);
    assert.equal(plan.kind, 'rejoin');
    assert.ok(plan.kind === 'rejoin');
    assert.deepEqual(plan.via, ['b.example:8448']);
    assert.deepEqual(plan.localMembers, ['@alice:hs.example']);
    assert.deepEqual(plan.aliases, ['#a:hs.example'], 'only our own aliases');
  });

  it('recreates a room only our server was in, the creator first, then by power', () => {
    const plan = planRoom(doc([
      member('@alice:hs.example', 'join'), member('@bob:hs.example', 'join'), member('@zed:hs.example', 'join'), member('@eve:b.example', 'ban'),
      { type: 'm.room.power_levels', state_key: '', content: { users: { '@zed:hs.example': 100, '@bob:hs.example': 50 } } },
      { type: 'm.room.name', state_key: '', content: { name: 'N' } },
      { type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } },
      { type: 'm.room.canonical_alias', state_key: '', content: { alias: '#c:hs.example', alt_aliases: ['#d:hs.example', '#e:x.example'] } },
    ]), HS);
    assert.ok(plan.kind === 'recreate');
    assert.deepEqual(plan.creatorCandidates, ['@alice:hs.example', '@zed:hs.example', '@bob:hs.example']);
    assert.deepEqual(plan.initialState.map((e) => e.type), ['m.room.name'], 'create, members, levels, aliases and encryption are set apart');
    assert.deepEqual(plan.encryption, { algorithm: 'm.megolm.v1.aes-sha2' });
    assert.deepEqual(plan.aliases, ['#a:hs.example', '#c:hs.example', '#d:hs.example']);
    assert.deepEqual(plan.banned, ['@eve:b.example']);
    assert.deepEqual(plan.createContent, { 'm.federate': true });
  });

  it('skips a room nobody was joined in', () => {
    assert.equal(planRoom(doc([member('@alice:hs.example', 'leave')]), HS).kind, 'skip');
    assert.equal(planRoom(doc([member('@carol:b.example', 'join')]), HS).kind, 'skip');
  });

  it('works under open levels and ends with the dumped ones; v12 creators are never in the users map', () => {
    const dumped = { users: { '@alice:hs.example': 100, '@bob:hs.example': 50 }, events_default: 50, events: { 'm.room.message': 75 } };
    const work = powerLevelsFor(dumped, { final: false, version: '10', creators: ['@alice:hs.example'], acting: '@bob:hs.example', bot: '@steward:hs.example' });
    assert.deepEqual(work.users, { '@alice:hs.example': 100, '@bob:hs.example': 100, '@steward:hs.example': 99 });
    assert.equal(work.events_default, 0);
    assert.deepEqual(work.events, {});
    assert.deepEqual(powerLevelsFor(dumped, { final: true, version: '10', creators: ['@bob:hs.example'], acting: '@bob:hs.example' }), dumped);
    const v12 = powerLevelsFor(dumped, { final: true, version: '12', creators: ['@alice:hs.example'], acting: '@alice:hs.example' });
    assert.deepEqual(v12.users, { '@bob:hs.example': 50 });
  });
});

describe('history relations', () => {
  it('points replies, reactions and edits at the new events and counts what it cannot map', () => {
    const map = (id: string) => (id === '$old' ? '$new' : undefined);
    assert.deepEqual(mapRelations({ body: 'x', 'm.relates_to': { 'm.in_reply_to': { event_id: '$old' } } }, map).content['m.relates_to'], { 'm.in_reply_to': { event_id: '$new' } });
    const edit = mapRelations({ 'm.relates_to': { rel_type: 'm.replace', event_id: '$old' } }, map);
    assert.deepEqual(edit.content['m.relates_to'], { rel_type: 'm.replace', event_id: '$new' });
    const unknown = mapRelations({ 'm.relates_to': { rel_type: 'm.annotation', event_id: '$gone', key: 'k' } }, map);
    assert.equal(unknown.unmapped, 1);
    assert.deepEqual(mapRelations({ body: 'plain' }, map), { content: { body: 'plain' }, unmapped: 0 });
  });
});

describe('archive lines', () => {
  const line = (event: Record<string, unknown>, steward?: Record<string, unknown>) => JSON.stringify({ event_id: '$e', room_id: '!r:hs', origin_server_ts: 5, event: { sender: '@a:hs', ...event }, ...(steward ? { steward } : {}) });
  it('sorts what restore does with each line', () => {
    const kind = (text: string) => {
      const p = parseArchiveLine(text, '!r:hs', 'l');
      assert.ok(p.ok);
      return lineKind(p.value);
    };
    assert.equal(kind(line({ type: 'm.room.message', content: {} })), 'message');
    assert.equal(kind(line({ type: 'm.room.topic', state_key: '', content: {} })), 'state');
    assert.equal(kind(line({ type: 'm.room.encrypted', content: {} })), 'encrypted');
    assert.equal(kind(line({ type: 'm.room.redaction', content: { redacts: '$x' } })), 'redaction');
    assert.equal(kind(line({ type: 'm.room.message', content: {} }, { soft_failed: true })), 'soft-failed');
  });
  it('refuses broken lines and lines of another room', () => {
    assert.equal(parseArchiveLine('{"event_id": "$cut', '!r:hs', 'f line 3').ok, false);
    const other = parseArchiveLine(line({ type: 'm.room.message' }), '!other:hs', 'f line 1');
    assert.ok(!other.ok && /belongs to !r:hs/.test(other.error.human));
  });
});

describe('dump validation', () => {
  const room = { format: 'steward.room-dump/1', room_id: '!r:hs.example', room_version: '10', details: {}, current_state: [{ type: 'm.room.create', state_key: '', sender: '@a:hs.example', content: {} }] };
  async function dumpDir(manifest: Record<string, unknown>, files: Record<string, string>, withChecksums = true): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'steward-restore-'));
    dirs.push(dir);
    await mkdir(join(dir, 'rooms'));
    const sums: Record<string, string> = {};
    for (const [name, text] of Object.entries(files)) {
      await writeFile(join(dir, 'rooms', name), text);
      sums[`rooms/${name}`] = createHash('sha256').update(text).digest('hex');
    }
    await writeFile(join(dir, 'manifest.json'), JSON.stringify({ format: 'steward.dump-manifest/1', kind: 'rooms', state: 'complete', server_name: HS, ...(withChecksums ? { checksums: { algorithm: 'sha256', files: sums } } : {}), ...manifest }));
    return dir;
  }
  const name = `${encodeURIComponent('!r:hs.example')}.json`;

  it('accepts a whole dump', async () => {
    const v = await validateRoomDump(await dumpDir({}, { [name]: JSON.stringify(room) }), HS);
    assert.ok(v.ok);
    assert.deepEqual(v.value.rooms.map((r) => r.roomId), ['!r:hs.example']);
  });
  it('names what is wrong: server, version, kind, unfinished, renamed file, parse error', async () => {
    const cases: [Promise<string>, RegExp][] = [
      [dumpDir({ server_name: 'other.example' }, {}), /dump is of the server "other\.example"/],
      [dumpDir({ format: 'steward.dump-manifest/9' }, {}), /steward\.dump-manifest\/9, a version this Steward does not know/],
      [dumpDir({ kind: 'users' }, {}), /not of rooms/],
      [dumpDir({ state: 'in-progress' }, {}), /did not finish/],
      [dumpDir({}, { 'other.json': JSON.stringify(room) }), /file would be named/],
      [dumpDir({}, { [name]: JSON.stringify(room).slice(0, 20) }, false), /not valid JSON/],
    ];
    for (const [dir, pattern] of cases) {
      const v = await validateRoomDump(await dir, HS);
      assert.ok(!v.ok, String(pattern));
      assert.match(v.error.human, pattern);
    }
  });
  it('refuses a room file without state', () => {
    const p = parseRoomDocument(JSON.stringify({ ...room, current_state: null }), name);
    assert.ok(!p.ok && /nothing to restore the room from/.test(p.error.human));
  });
});
