import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { anonymiseSync, type AnonEvent, type AnonRoom } from '../../src/snapshot/anonymiser.ts';
import type { JsonObject } from '../../src/snapshot/json.ts';
import { blueprintName, buildBlueprint, buildRoom, type BlueprintEvent } from '../../src/snapshot/blueprint.ts';
import { ALICE, fixtureSync, SERVER } from './snapshot-fixture.ts';

function documentOf() {
  const { snapshot } = anonymiseSync(fixtureSync(), { subject: ALICE, serverName: SERVER });
  return buildBlueprint(snapshot, { name: blueprintName(Date.UTC(2025, 0, 2, 3, 4, 5)), createdTs: 0, timelineLimit: 50 });
}

describe('snapshot blueprint', () => {
  it('is a homerunner request with complement Go field names and lowercase events', () => {
    const doc = documentOf();
    assert.deepEqual(Object.keys(doc), ['blueprint', 'base_image_uri', 'steward']);
    assert.equal(doc.base_image_uri, 'complement-synapse:latest');
    assert.deepEqual(Object.keys(doc.blueprint), ['Name', 'Homeservers', 'KeepAccessTokensForUsers']);
    assert.equal(doc.blueprint.Name, 'snapshot_anon1_20250102t030405z');
    assert.match(doc.blueprint.Name, /^[a-z0-9_]+$/);
    assert.deepEqual(doc.blueprint.KeepAccessTokensForUsers, ['@anon-1:hs1']);
    const [hs] = doc.blueprint.Homeservers;
    assert.equal(doc.blueprint.Homeservers.length, 1);
    assert.deepEqual(Object.keys(hs!), ['Name', 'Users', 'Rooms']);
    assert.equal(hs!.Name, 'hs1');
    for (const room of hs!.Rooms) {
      assert.deepEqual(Object.keys(room), ['Ref', 'Creator', 'CreateRoom', 'Events']);
      for (const e of room.Events) {
        for (const key of Object.keys(e)) assert.ok(['type', 'sender', 'state_key', 'content', 'event_id', 'redacts'].includes(key), key);
        assert.equal(typeof e.type, 'string');
        assert.match(e.sender, /^@anon-\d+:hs1$/);
        assert.equal(typeof e.content, 'object');
      }
    }
  });

  it('lists the users who act, by counter, with localparts (no @) and anonymised display names', () => {
    const hs = documentOf().blueprint.Homeservers[0]!;
    assert.deepEqual(hs.Users.map((u) => [u.Localpart, u.DisplayName]), [['anon-1', 'anon-1'], ['anon-2', 'anon-2'], ['anon-3', 'anon-3']]);
  });

  it('puts m.direct on the account as account data, in the shape Complement writes', () => {
    const hs = documentOf().blueprint.Homeservers[0]!;
    assert.deepEqual(hs.Users[0]!.AccountData, [{ Type: 'm.direct', Value: { content: { '@anon-2:hs1': ['!1:hs1'] } } }]);
    assert.equal(hs.Users[1]!.AccountData, undefined);
  });

  it('replays a room: create body, open door, joins, other state, power levels last, then the timeline', () => {
    const room = documentOf().blueprint.Homeservers[0]!.Rooms.find((r) => r.Ref === '!2:hs1')!;
    assert.equal(room.Creator, '@anon-1:hs1');
    assert.deepEqual(room.CreateRoom, { room_version: '10', creation_content: { 'm.federate': true } });
    const summary = room.Events.map((e) => `${e.type}${e.state_key !== undefined ? `/${e.state_key}` : ''} by ${e.sender.slice(1, 7)}`);
    assert.deepEqual(summary.slice(0, 3), ['m.room.join_rules/ by anon-1', 'm.room.member/@anon-2:hs1 by anon-2', 'm.room.member/@anon-3:hs1 by anon-3']);
    const pl = summary.indexOf('m.room.power_levels/ by anon-1');
    const firstMessage = summary.findIndex((s) => s.startsWith('m.room.message'));
    assert.ok(pl > 3 && pl === firstMessage - 1, `power levels come last of the state: ${summary.join(', ')}`);
    assert.ok(!summary.some((s) => s.startsWith('m.room.create')));
    // Timeline order is kept, with the ids that reactions and redactions point at.
    const ids = new Set(room.Events.flatMap((e) => (e.event_id ? [e.event_id] : [])));
    for (const e of room.Events) {
      const rel = e.content['m.relates_to'] as { event_id?: string } | undefined;
      if (e.type === 'm.reaction') assert.ok(rel?.event_id && ids.has(rel.event_id));
      if (e.type === 'm.room.redaction') assert.ok(e.redacts && ids.has(e.redacts) && e.content.redacts === e.redacts);
    }
    assert.deepEqual(room.Events.at(-1), { type: 'm.room.member', sender: '@anon-3:hs1', state_key: '@anon-3:hs1', content: { membership: 'leave' }, event_id: room.Events.at(-1)!.event_id });
  });

  it('adds an invite before a timeline join the join rule would refuse, and skips refused transitions', () => {
    let n = 0;
    const ev = (type: string, sender: string, content: JsonObject, stateKey?: string): AnonEvent => ({ event_id: `$${++n}:hs1`, type, sender, content, ...(stateKey !== undefined ? { state_key: stateKey } : {}) });
    const a = '@anon-1:hs1';
    const b = '@anon-2:hs1';
    const c = '@anon-3:hs1';
    const room: AnonRoom = {
      id: '!1:hs1',
      creator: a,
      state: [
        ev('m.room.create', a, { room_version: '11' }, ''),
        ev('m.room.member', a, { membership: 'join' }, a),
        ev('m.room.join_rules', a, { join_rule: 'invite' }, ''),
      ],
      timeline: [
        ev('m.room.member', b, { membership: 'join' }, b),
        ev('m.room.member', c, { membership: 'leave' }, c),
        ev('m.room.member', c, { membership: 'knock' }, c),
        ev('m.room.member', a, { membership: 'leave' }, a),
      ],
    };
    const stats = { transitions_skipped: 0, invites_added: 0 };
    const events: BlueprintEvent[] = buildRoom(room, stats).Events;
    const summary = events.map((e) => `${e.sender.slice(6, 7)}:${e.type.slice(7)}:${e.content.membership ?? e.content.join_rule}${e.state_key ? `:${e.state_key.slice(6, 7)}` : ''}`);
    assert.deepEqual(summary, [
      '1:join_rules:public',
      '1:join_rules:invite',
      '1:member:invite:2',
      '2:member:join:2',
      '1:member:leave:1',
    ]);
    assert.deepEqual(stats, { transitions_skipped: 2, invites_added: 1 });
  });

  it('counts what it kept and dropped in the steward section, without any free text', () => {
    const doc = documentOf();
    assert.equal(doc.steward.format, 'steward.snapshot/1');
    assert.equal(doc.steward.counts.rooms, 2);
    assert.equal(doc.steward.counts.users, 3);
    assert.equal(doc.steward.counts.reactions_kept, 2);
    for (const v of Object.values(doc.steward.counts)) assert.equal(typeof v, 'number');
  });
});
