// !snapshot against real Synapse: a seeded account (display name, avatar, a DM with m.direct, a
// named room with topic, alias and avatar, messages, reactions, a redaction) is read through the
// appservice namespace, anonymised, leak-checked and written as a Complement blueprint.
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MatrixTestClient } from '../rig/client.ts';
import { startStewardWithSynapse, type StewardSetup } from '../rig/steward.ts';
import type { RegisteredUser } from '../rig/synapse.ts';

interface Seeded {
  alice: RegisteredUser;
  bob: RegisteredUser;
  dmRoom: string;
  teaRoom: string;
  eventIds: string[];
  avatar: string;
  roomAvatar: string;
}

describe('!snapshot against real Synapse', () => {
  let setup: StewardSetup;
  let seeded: Seeded;

  before(async () => {
    setup = await startStewardWithSynapse();
    seeded = await seed(setup);
  });

  after(async () => {
    await setup?.steward.stop();
    await setup?.hs.cleanup();
  });

  /** Sends a command in the admin room; resolves with the bot's reply whose body matches `done`. */
  async function command(line: string, done: RegExp, timeoutMs = 60_000): Promise<string> {
    const { adminClient, steward } = setup;
    const commandId = await adminClient.sendText(steward.adminRoomId, line);
    const reply = await adminClient.waitForEvent(
      (ev) => ev.sender === steward.botUserId && ev.content?.msgtype === 'm.notice'
        && ev.content?.['m.relates_to']?.['m.in_reply_to']?.event_id === commandId && done.test(String(ev.content?.body)),
      { timeoutMs },
    );
    return String(reply.event.content.body);
  }

  function secrets(): string[] {
    const { hs } = setup;
    const { alice, bob, dmRoom, teaRoom, eventIds, avatar, roomAvatar } = seeded;
    return [
      alice.userId, bob.userId, dmRoom, teaRoom, ...eventIds, avatar, roomAvatar, 'AliceAvatarMedia', 'TeaRoomAvatarMedia',
      hs.serverName, 'localhost', 'Alice Liddell', 'alice', 'liddell', 'whiterabbit', 'bob', 'wonderland', 'rabbithole',
      'teaparty', 'curiouser', 'cheshire', 'secretword', 'slithy', 'toves', 'mxc://', `#wonderland:${hs.serverName}`,
    ];
  }

  function assertClean(text: string): void {
    const lower = text.toLowerCase();
    for (const s of secrets()) assert.ok(!lower.includes(s.toLowerCase()), `the snapshot contains a seeded string (${s.slice(0, 3)}…)`);
  }

  it('writes an anonymised, leak-checked Complement blueprint of the account from the admin room', async () => {
    const started = Date.now();
    const body = await command(`!snapshot ${seeded.alice.userId}`, /finished|failed/);
    assert.match(body, /finished/, body);
    assert.match(body, /Leak check passed/);
    // The head line repeats the command (job title); what the job found names no one.
    assert.doesNotMatch(body.split('\n').slice(1).join('\n'), /alice|liddell|bob|wonderland/i, 'the summary names no one');
    const file = /Snapshot written to (\S+):/.exec(body)?.[1];
    assert.ok(file, body);
    assert.equal(path.dirname(file), path.join(setup.steward.dumpsDir, 'snapshots'));
    assert.doesNotMatch(path.basename(file), /alice|%40|@/i, 'the file name does not carry the account');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await stat(path.dirname(file))).mode & 0o777, 0o700);

    const text = await readFile(file, 'utf8');
    assertClean(text);
    const doc = JSON.parse(text);
    assert.equal(doc.steward.leak_check.leaks, 0);
    assert.ok(doc.steward.leak_check.sensitive_strings > 20);
    assert.equal(typeof doc.base_image_uri, 'string');

    // Blueprint structure: one homeserver hs1, users by counter, the two joined rooms.
    const hs = doc.blueprint.Homeservers[0];
    assert.equal(doc.blueprint.Homeservers.length, 1);
    assert.equal(hs.Name, 'hs1');
    assert.deepEqual(hs.Users.map((u: { Localpart: string }) => u.Localpart), ['anon-1', 'anon-2']);
    assert.equal(hs.Rooms.length, 2);
    for (const room of hs.Rooms) {
      assert.match(room.Ref, /^!\d+:hs1$/);
      assert.equal(room.Creator, '@anon-1:hs1');
      assert.equal(typeof room.CreateRoom.room_version, 'string');
      for (const e of room.Events) {
        assert.equal(typeof e.type, 'string');
        assert.match(e.sender, /^@anon-[12]:hs1$/);
        assert.equal(typeof e.content, 'object');
      }
    }

    // m.direct survives, remapped to the anonymised DM partner and room.
    const dmRef = hs.Rooms.find((r: { Events: { type: string; content: { is_direct?: boolean } }[] }) => r.Events.some((e) => e.type === 'm.room.member' && e.content.is_direct === true))?.Ref;
    assert.ok(dmRef);
    assert.deepEqual(hs.Users[0].AccountData, [{ Type: 'm.direct', Value: { content: { '@anon-2:hs1': [dmRef] } } }]);

    // The tea room: name, topic, avatar, alias anonymised; messages, reactions, the redaction kept.
    const tea = hs.Rooms.find((r: { Ref: string }) => r.Ref !== dmRef);
    const of = (type: string) => tea.Events.filter((e: { type: string }) => e.type === type);
    assert.deepEqual(of('m.room.name')[0].content, { name: 'xxxxxxxxxx xxx xxxxx' });
    assert.equal(of('m.room.topic')[0].content.topic, 'xxxxxxxxxx xxxxxxxxxxx');
    assert.equal(of('m.room.avatar')[0].content.url, 'yes');
    assert.match(of('m.room.canonical_alias')[0].content.alias, /^#alias-\d+:hs1$/);
    const messages = of('m.room.message');
    assert.equal(messages.length, 3, 'two messages and the redacted one');
    assert.deepEqual(messages[0].content, { msgtype: 'm.text', body: 'xxxx xxx xxxxxxxxxx xx xx' });
    const ids = new Set(tea.Events.map((e: { event_id?: string }) => e.event_id).filter(Boolean));
    const reactions = of('m.reaction');
    assert.equal(reactions.length, 2);
    for (const r of reactions) assert.ok(ids.has(r.content['m.relates_to'].event_id), 'a reaction points at an event of the snapshot');
    assert.deepEqual(reactions.map((r: { content: { 'm.relates_to': { key: string } } }) => r.content['m.relates_to'].key).sort(), ['xxxxxxxxx', '👍'].sort());
    assert.equal(reactions.find((r: { content: { 'm.relates_to': { key: string } } }) => r.content['m.relates_to'].key === '👍').content['m.relates_to'].event_id, messages[0].event_id);
    const [redaction] = of('m.room.redaction');
    assert.ok(redaction && ids.has(redaction.content.redacts) && redaction.content.redacts === messages[2].event_id);
    assert.deepEqual(messages[2].content, {}, 'the redacted message has no content left');
    assert.equal(doc.steward.counts.reactions_kept, 2);
    assert.equal(doc.steward.counts.redactions_kept, 1);

    // Read through the namespace: a /sync with identity assertion, by the appservice, as alice.
    const synapseLog = await readFile(setup.hs.logPath, 'utf8');
    const syncs = synapseLog.split('\n').filter((l) => l.includes('/_matrix/client/v3/sync?') && l.includes(`user_id=${encodeURIComponent(seeded.alice.userId)}`));
    assert.ok(syncs.length >= 1, 'Synapse saw a /sync as alice by identity assertion');
    assert.ok(syncs.every((l) => l.includes('Steward/')), 'made by Steward, not by a client of alice');
    assert.ok(syncs.some((l) => l.includes('set_presence=offline')), 'without making alice look online');
    process.stderr.write(`[snapshot e2e] room command to file: ${Date.now() - started} ms, ${text.length} bytes\n`);
  });

  it('runs from the terminal too, with --out and --messages, and never overwrites', async () => {
    const out = path.join(setup.steward.dir, 'exports', 'wonder.json');
    const first = await setup.steward.cli(['snapshot', seeded.alice.userId, '--out', out, '--messages', '3']);
    assert.equal(first.code, 0, first.stderr + first.stdout);
    assert.match(first.stdout, /finished/);
    assert.match(first.stdout, /Leak check passed/);
    const text = await readFile(out, 'utf8');
    assertClean(text);
    assert.equal((await stat(out)).mode & 0o777, 0o600);
    const doc = JSON.parse(text);
    assert.equal(doc.steward.timeline_limit, 3);
    const again = await setup.steward.cli(['snapshot', seeded.alice.userId, '--out', out]);
    assert.notEqual(again.code, 0);
    assert.match(again.stdout + again.stderr, /already exists/);
  });

  it('answers with the reason when the account is not local or does not exist', async () => {
    const remote = await command('!snapshot @someone:elsewhere.example', /./);
    assert.match(remote, /only local accounts/);
    const missing = await command(`!snapshot @nobody-here:${setup.hs.serverName}`, /failed/);
    assert.match(missing, /does not exist/);
  });
});

async function seed(setup: StewardSetup): Promise<Seeded> {
  const { hs } = setup;
  const alice = await hs.registerUser('alice', { displayname: 'Alice Liddell' });
  const bob = await hs.registerUser('bob', { displayname: 'Bob Whiterabbit' });
  const a = new MatrixTestClient(hs.clientUrl, alice.userId, alice.accessToken);
  const b = new MatrixTestClient(hs.clientUrl, bob.userId, bob.accessToken);
  const avatar = `mxc://${hs.serverName}/AliceAvatarMedia`;
  const roomAvatar = `mxc://${hs.serverName}/TeaRoomAvatarMedia`;
  await a.request('PUT', `/_matrix/client/v3/profile/${encodeURIComponent(alice.userId)}/avatar_url`, { avatar_url: avatar });

  const dmRoom = await a.createRoom({ preset: 'trusted_private_chat', is_direct: true, invite: [bob.userId] });
  await b.join(dmRoom);
  await a.setAccountData('m.direct', { [bob.userId]: [dmRoom] });
  const dm1 = await b.sendText(dmRoom, 'slithy toves');

  const teaRoom = await a.createRoom({
    preset: 'public_chat',
    name: 'Wonderland Tea Party',
    topic: 'rabbithole discussions',
    room_alias_name: 'wonderland',
    initial_state: [{ type: 'm.room.avatar', state_key: '', content: { url: roomAvatar } }],
  });
  await b.join(teaRoom);
  const m1 = await a.sendText(teaRoom, 'Down the rabbithole we go');
  const m2 = await b.sendText(teaRoom, 'Mad teaparty at six');
  const r1 = await b.sendEvent(teaRoom, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: m1, key: '👍' } });
  const r2 = await a.sendEvent(teaRoom, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: m2, key: 'curiouser' } });
  const m3 = await a.sendText(teaRoom, 'cheshire secretword');
  const x1 = (await a.request<{ event_id: string }>('PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(teaRoom)}/redact/${encodeURIComponent(m3)}/seed-redact-1`, { reason: 'cheshire vanished' })).event_id;
  return { alice, bob, dmRoom, teaRoom, eventIds: [dm1, m1, m2, r1, r2, m3, x1], avatar, roomAvatar };
}
