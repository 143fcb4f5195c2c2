import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { anonymiseReactionKey, anonymiseSync, isSingleEmoji, redactText, type AnonEvent, type AnonRoom } from '../../src/snapshot/anonymiser.ts';
import { ALICE, BOB, CAROL, DM, fixtureSync, SERVER, TEA } from './snapshot-fixture.ts';

function run(sync = fixtureSync()) {
  return anonymiseSync(sync, { subject: ALICE, serverName: SERVER });
}

function roomById(rooms: readonly AnonRoom[], id: string): AnonRoom {
  const room = rooms.find((r) => r.id === id);
  assert.ok(room, `room ${id} in the snapshot`);
  return room;
}

function all(room: AnonRoom): AnonEvent[] {
  return [...room.state, ...room.timeline];
}

describe('snapshot anonymiser: ids', () => {
  it('numbers users by first sighting, the account itself first, and rooms in sorted order', () => {
    const { snapshot, anonymiser } = run();
    assert.equal(snapshot.subject, '@anon-1:hs1');
    assert.equal(anonymiser.user(ALICE), '@anon-1:hs1');
    // The DM room sorts first; bob is first seen there (invited by alice), carol only in the tea room.
    assert.equal(anonymiser.user(BOB), '@anon-2:hs1');
    assert.equal(anonymiser.user(CAROL), '@anon-3:hs1');
    assert.deepEqual(snapshot.rooms.map((r) => r.id), ['!1:hs1', '!2:hs1']);
    assert.equal(anonymiser.roomLabel(DM), 'room #1');
    assert.equal(anonymiser.roomLabel(TEA), 'room #2');
    assert.equal(anonymiser.userLabel(CAROL), 'user #3');
  });

  it('gives the same output for the same input (counters, not randomness or hashes)', () => {
    assert.deepEqual(run().snapshot, run().snapshot);
  });

  it('gives every kept event a $<n>:hs1 id, unique within the snapshot', () => {
    const { snapshot } = run();
    const ids = snapshot.rooms.flatMap((r) => all(r).map((e) => e.event_id));
    for (const id of ids) assert.match(id, /^\$\d+:hs1$/);
    assert.equal(new Set(ids).size, ids.length);
  });

  it('maps every user id (sender, state key, power levels, mentions, creator) into @anon-<n>:hs1', () => {
    const { snapshot } = run();
    const text = JSON.stringify(snapshot);
    assert.doesNotMatch(text, /wonderland|elsewhere|alice|bob|carol/i);
    for (const m of text.matchAll(/@[^"]+/g)) assert.match(m[0], /^@anon-\d+:hs1$/);
    const tea = roomById(snapshot.rooms, '!2:hs1');
    const pl = tea.state.find((e) => e.type === 'm.room.power_levels')!;
    assert.deepEqual(pl.content.users, { '@anon-1:hs1': 100, '@anon-2:hs1': 50 });
    const reply = tea.timeline.find((e) => (e.content['m.mentions'] as { user_ids?: string[] } | undefined)?.user_ids)!;
    assert.deepEqual((reply.content['m.mentions'] as { user_ids: string[] }).user_ids, ['@anon-1:hs1']);
    assert.equal(tea.creator, '@anon-1:hs1');
  });
});

describe('snapshot anonymiser: whitelist', () => {
  it('drops event types outside the whitelist', () => {
    const { snapshot } = run();
    const types = new Set(snapshot.rooms.flatMap((r) => all(r).map((e) => e.type)));
    assert.ok(!types.has('com.wonderland.private'));
    assert.ok(!types.has('com.example.croquet'));
    assert.ok(types.has('m.room.message'));
    assert.equal(snapshot.stats.events_not_whitelisted, 2);
  });

  it('keeps only whitelisted keys, and only known values of enumerated ones', () => {
    const { snapshot } = run();
    const tea = roomById(snapshot.rooms, '!2:hs1');
    const create = tea.state.find((e) => e.type === 'm.room.create')!;
    assert.deepEqual(create.content, { creator: '@anon-1:hs1', room_version: '10', 'm.federate': true });
    const pl = tea.state.find((e) => e.type === 'm.room.power_levels')!;
    assert.deepEqual(Object.keys(pl.content).sort(), ['events', 'notifications', 'state_default', 'users', 'users_default']);
    assert.deepEqual(pl.content.events, { 'm.room.name': 50 }, 'custom event types are dropped from the power levels');
    const alias = tea.state.find((e) => e.type === 'm.room.canonical_alias')!;
    assert.deepEqual(alias.content, { alias: '#alias-1:hs1' }, 'alt_aliases dropped, alias anonymised');
    const avatar = tea.state.find((e) => e.type === 'm.room.avatar')!;
    assert.deepEqual(avatar.content, { url: 'yes', info: { h: 64, w: 64, size: 1234, mimetype: 'image/png' } });
  });

  it('turns text into x per non-space character and keeps the shape', () => {
    assert.equal(redactText('Mad Tea  Party\nnow'), 'xxx xxx  xxxxx\nxxx');
    assert.equal(redactText('日本語 ok'), 'xxx xx');
    assert.equal(redactText('👍🏻!'), 'xxx', 'one x per code point');
    const { snapshot } = run();
    const tea = roomById(snapshot.rooms, '!2:hs1');
    assert.deepEqual(tea.state.find((e) => e.type === 'm.room.name')!.content, { name: 'xxx xxx xxxxx' });
    assert.deepEqual(tea.state.find((e) => e.type === 'm.room.topic')!.content, { topic: 'xxxxxxxxxx xxxxxxxxxxx\nxxxxx xxxxxxx' });
    const first = tea.timeline[0]!;
    assert.deepEqual(first.content, { msgtype: 'm.text', body: 'xxxx xxx xxxxxxxxxx xx xx' });
    const html = tea.timeline[1]!;
    assert.equal(html.content.format, 'org.matrix.custom.html');
    assert.equal(html.content.formatted_body, 'xxxxxxxxxxxxxxx xx xxx');
  });

  it('replaces display names with the anonymised localpart and avatar URLs with "yes"', () => {
    const { snapshot } = run();
    const tea = roomById(snapshot.rooms, '!2:hs1');
    const alice = tea.state.find((e) => e.type === 'm.room.member' && e.state_key === '@anon-1:hs1')!;
    assert.deepEqual(alice.content, { membership: 'join', displayname: 'anon-1', avatar_url: 'yes' });
  });

  it('replaces server names in ACLs by placeholders, keeping wildcards', () => {
    const { snapshot } = run();
    const acl = roomById(snapshot.rooms, '!2:hs1').state.find((e) => e.type === 'm.room.server_acl')!;
    assert.deepEqual(acl.content, { allow: ['*'], deny: ['server-1', '*.server-2'], allow_ip_literals: false });
  });
});

describe('snapshot anonymiser: reactions, redactions, relations', () => {
  it('keeps reactions to events of the snapshot, pointing at their anonymised ids, and drops the others', () => {
    const { snapshot } = run();
    const tea = roomById(snapshot.rooms, '!2:hs1');
    const byId = new Map(all(tea).map((e) => [e.event_id, e]));
    const reactions = tea.timeline.filter((e) => e.type === 'm.reaction');
    assert.equal(reactions.length, 2);
    const [thumbs, word] = reactions.map((r) => r.content['m.relates_to'] as { rel_type: string; event_id: string; key: string });
    assert.equal(thumbs!.key, '👍', 'a single emoji is kept');
    assert.equal(word!.key, 'xxxxxxxxx', 'a word is user text');
    assert.equal(byId.get(thumbs!.event_id)?.content.body, 'xxxx xxx xxxxxxxxxx xx xx');
    assert.equal(byId.get(word!.event_id)?.type, 'm.room.message');
    assert.equal(snapshot.stats.reactions_kept, 2);
    assert.equal(snapshot.stats.reactions_dropped, 1);
  });

  it('retargets redactions (top-level redacts and v11 content.redacts) and drops those pointing outside', () => {
    const { snapshot } = run();
    const tea = roomById(snapshot.rooms, '!2:hs1');
    const redactions = tea.timeline.filter((e) => e.type === 'm.room.redaction');
    assert.equal(redactions.length, 1, 'the redaction of a missing event and of a dropped reaction are dropped');
    const target = all(tea).find((e) => e.event_id === redactions[0]!.redacts);
    assert.equal(target?.content.body, 'xxx xxx xxxx xxxx xxx xxxxxx xxxx');
    assert.deepEqual(redactions[0]!.content, { redacts: redactions[0]!.redacts, reason: 'xxxx xxxxxxxx' });
    const dm = roomById(snapshot.rooms, '!1:hs1');
    const v11 = dm.timeline.find((e) => e.type === 'm.room.redaction')!;
    assert.equal(dm.timeline.find((e) => e.event_id === v11.content.redacts)?.type, 'm.room.message');
    assert.equal(snapshot.stats.redactions_kept, 2);
    assert.equal(snapshot.stats.redactions_dropped, 2);
  });

  it('keeps replies to events of the snapshot and removes links to events outside it', () => {
    const { snapshot } = run();
    const tea = roomById(snapshot.rooms, '!2:hs1');
    const messages = tea.timeline.filter((e) => e.type === 'm.room.message');
    const reply = messages.find((m) => m.content['m.relates_to'])!;
    const target = (reply.content['m.relates_to'] as { 'm.in_reply_to': { event_id: string } })['m.in_reply_to'].event_id;
    assert.equal(tea.timeline.find((e) => e.event_id === target)?.content.body, 'xxxx xxx xxxxxxxxxx xx xx');
    assert.equal(messages.filter((m) => m.content['m.relates_to']).length, 1);
    assert.equal(snapshot.stats.relations_removed, 1);
  });

  it('tells single emoji from text', () => {
    for (const key of ['👍', '👍🏽', '🇫🇷', '1️⃣', '❤️', '👩‍👩‍👧', '✅']) assert.ok(isSingleEmoji(key), key);
    for (const key of ['+1', 'ok', '👍👍', 'a👍', 'yes!', '', ':)', '1']) assert.ok(!isSingleEmoji(key), key);
    assert.equal(anonymiseReactionKey('lol 😂'), 'xxx x');
  });
});

describe('snapshot anonymiser: m.direct and failures', () => {
  it('remaps m.direct to anonymised users and rooms of the snapshot, dropping rooms outside it', () => {
    const { snapshot } = run();
    assert.deepEqual(snapshot.direct, { '@anon-2:hs1': ['!1:hs1'] });
  });

  it('fails a room without a create event as a value, naming it by its anonymised id only', () => {
    const sync = fixtureSync();
    const rooms = (sync.rooms as { join: Record<string, { state: { events: unknown[] } }> }).join;
    rooms[TEA]!.state.events = rooms[TEA]!.state.events.filter((e) => (e as { type: string }).type !== 'm.room.create');
    const { snapshot, failed } = run(sync);
    assert.deepEqual(snapshot.rooms.map((r) => r.id), ['!1:hs1']);
    assert.equal(failed.length, 1);
    assert.equal(failed[0]!.room, 'room #2');
    assert.doesNotMatch(failed[0]!.error, /wonderland|teaRoom/);
  });
});
