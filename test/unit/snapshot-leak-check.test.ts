import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { anonymiseSync } from '../../src/snapshot/anonymiser.ts';
import { blueprintName, buildBlueprint, type SnapshotDocument } from '../../src/snapshot/blueprint.ts';
import { describeLeaks, findLeaks, heuristicHits, mask, SensitiveCollector, words } from '../../src/snapshot/leak-check.ts';
import { ALICE, AVATAR, BOB, fixtureSync, SERVER, TEA, type FixtureOptions } from './snapshot-fixture.ts';

function pipeline(opts: FixtureOptions = {}) {
  const sync = fixtureSync(opts);
  const { snapshot, anonymiser } = anonymiseSync(sync, { subject: ALICE, serverName: SERVER });
  const doc = buildBlueprint(snapshot, { name: blueprintName(0), createdTs: 0, timelineLimit: 50 });
  const collector = new SensitiveCollector({ serverName: SERVER, labels: anonymiser });
  collector.profile(ALICE, { displayname: 'Alice Liddell', avatar_url: AVATAR });
  collector.sync(sync);
  const sensitive = collector.list();
  const check = (d: SnapshotDocument = doc) => findLeaks(d, JSON.stringify(d, null, 2), sensitive);
  return { doc, sensitive, check };
}

function tamper(doc: SnapshotDocument, change: (doc: SnapshotDocument) => void): SnapshotDocument {
  const copy = structuredClone(doc);
  change(copy);
  return copy;
}

function firstMessage(doc: SnapshotDocument) {
  return doc.blueprint.Homeservers[0]!.Rooms[1]!.Events.find((e) => e.type === 'm.room.message')!;
}

describe('snapshot leak check: what it collects', () => {
  it('collects ids, server names, display names, words and mxc URIs of the source', () => {
    const { sensitive } = pipeline();
    const has = (value: string, kind?: RegExp) => sensitive.some((s) => s.value === value && (!kind || kind.test(s.kind)));
    assert.ok(has(ALICE.toLowerCase(), /^user id of user #1$/));
    assert.ok(has('bob', /^localpart of user #2$/));
    assert.ok(has(TEA.toLowerCase(), /^room id of room #2$/));
    assert.ok(has('$m1abcdefghijklm', /event id/));
    assert.ok(has('liddell', /^display name of user #1$/));
    assert.ok(has('whiterabbit', /^display name of user #2$/));
    assert.ok(has('rabbithole'));
    assert.ok(has('teaparty'));
    assert.ok(has('curiouser', /reaction key in room #2/));
    assert.ok(has('jabberwocky', /dropped event in room #2/), 'words of dropped event types are checked too');
    assert.ok(has(AVATAR.toLowerCase(), /mxc/));
    assert.ok(has('wonderland', /our server/));
    assert.ok(has('#teaparty:wonderland.example', /alias/));
    assert.ok(has('hatter', /alias/));
  });

  it('splits words on anything but letters and digits, case-insensitively', () => {
    assert.deepEqual(words("Alice's Café, №5"), ['alice', 's', 'café', 'no5']);
  });

  it('masks what it reports', () => {
    assert.equal(mask('Alice Liddell'), 'A…(13)');
    assert.equal(mask('👍x'), '👍…(2)');
  });
});

describe('snapshot leak check: verdicts', () => {
  it('passes the anonymised fixture, format words in messages ("join the public room") included', () => {
    const { check, sensitive } = pipeline();
    const report = check();
    assert.deepEqual(report.leaks, []);
    assert.ok(report.checked > 50, `checked ${report.checked} of ${sensitive.length}`);
    assert.ok(report.unchecked >= 2, 'join and public are format words, counted as unchecked');
  });

  it('catches a display name smuggled into a whitelisted key, and names it without echoing it', () => {
    const { doc, check } = pipeline();
    const report = check(tamper(doc, (d) => { firstMessage(d).content.msgtype = 'Alice Liddell'; }));
    assert.ok(report.leaks.length >= 1);
    const leak = report.leaks.find((l) => l.kind === 'display name of user #1');
    assert.ok(leak, JSON.stringify(report.leaks));
    assert.equal(leak.masked, 'l…(7)');
    assert.match(leak.where, /Rooms\[1\]\.Events\[\d+\]\.content\.msgtype$/);
    const text = describeLeaks(report);
    assert.doesNotMatch(text, /liddell|alice/i);
  });

  it('catches a word glued into another one, a room id, an mxc URI, a server name, a dropped type\'s word', () => {
    const { doc, check } = pipeline();
    const cases: [string, (d: SnapshotDocument) => void, RegExp][] = [
      ['glued word', (d) => { firstMessage(d).content.body = 'xxxrabbitholexxx'; }, /topic of room #2|a word of a message in room #2/],
      ['room id', (d) => { d.blueprint.Homeservers[0]!.Rooms[1]!.Ref = TEA; }, /room id of room #2/],
      ['mxc', (d) => { firstMessage(d).content.url = AVATAR; }, /mxc URI|media id/],
      ['server', (d) => { d.base_image_uri = `registry.${SERVER}/synapse`; }, /our server name/],
      ['dropped type', (d) => { firstMessage(d).content.body = 'jabberwocky'; }, /dropped event in room #2/],
      ['user id as a key', (d) => { d.blueprint.Homeservers[0]!.Rooms[1]!.Events[0]!.content = { [BOB]: 1 }; }, /user id of user #2|localpart of user #2/],
      ['reaction key', (d) => {
        const r = d.blueprint.Homeservers[0]!.Rooms[1]!.Events.find((e) => e.type === 'm.reaction' && (e.content['m.relates_to'] as { key: string }).key !== '👍')!;
        (r.content['m.relates_to'] as { key: string }).key = 'curiouser';
      }, /reaction key in room #2/],
    ];
    for (const [name, change, kind] of cases) {
      const report = check(tamper(doc, change));
      assert.ok(report.leaks.some((l) => kind.test(l.kind)), `${name}: ${JSON.stringify(report.leaks)}`);
    }
  });

  it('hides keys that are not format names in the reported location', () => {
    const { doc, check } = pipeline();
    const report = check(tamper(doc, (d) => { d.blueprint.Homeservers[0]!.Rooms[1]!.Events[0]!.content = { [BOB]: 1 }; }));
    for (const l of report.leaks) assert.doesNotMatch(l.where, /bob|wonderland/i);
  });

  it('catches a leak through a passthrough key of the source (room_version)', () => {
    const { doc, check } = pipeline({ roomVersion: 'liddell' });
    assert.equal(doc.blueprint.Homeservers[0]!.Rooms[1]!.CreateRoom.room_version, 'liddell');
    const report = check();
    assert.ok(report.leaks.some((l) => l.kind === 'display name of user #1' && /CreateRoom\.room_version$/.test(l.where)), JSON.stringify(report.leaks));
  });

  it("counts Complement's the|matrix|and|mxc heuristic as unique matching lines", () => {
    assert.equal(heuristicHits('{\n  "a": "The",\n  "b": "mxc://x"\n  "c": "The",\n  "d": "none"\n}'), 3);
    const { check } = pipeline();
    const report = check();
    assert.ok(report.heuristicHits >= 1, 'org.matrix.custom.html is a format name that matches');
  });
});
