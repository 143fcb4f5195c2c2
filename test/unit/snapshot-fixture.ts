// A crafted /sync answer (federation event format) for the snapshot unit tests: two joined rooms,
// a remote member, reactions and redactions with targets in and out of the timeline, events of
// types outside the whitelist, and m.direct naming a room the account has left.

export const SERVER = 'wonderland.example';
export const ALICE = `@alice:${SERVER}`;
export const BOB = `@bob:${SERVER}`;
export const CAROL = '@carol:elsewhere.test';
export const TEA = `!teaRoomAbcdef:${SERVER}`;
export const DM = `!dmRoomAbcdefg:${SERVER}`;
export const LEFT = `!leftRoomAbcde:${SERVER}`;
export const AVATAR = `mxc://${SERVER}/AvatarMediaIdQwerty`;

let ts = 1_700_000_000_000;

function ev(type: string, sender: string, content: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  ts += 1000;
  return {
    type,
    sender,
    content,
    origin_server_ts: ts,
    origin: SERVER,
    depth: 1,
    prev_events: ['$prevEventAbcdef123'],
    auth_events: ['$authEventAbcdef123'],
    hashes: { sha256: 'c29tZWhhc2hvZnRoZWV2ZW50Y29udGVudA' },
    signatures: { [SERVER]: { 'ed25519:a_abcd': 'c2lnbmF0dXJlYnl3b25kZXJsYW5k' } },
    unsigned: { age: 1234 },
    ...extra,
  };
}

function state(type: string, sender: string, stateKey: string, content: Record<string, unknown>, eventId: string): Record<string, unknown> {
  return ev(type, sender, content, { state_key: stateKey, event_id: eventId });
}

function msg(sender: string, body: string, eventId: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return ev('m.room.message', sender, { msgtype: 'm.text', body, ...extra }, { event_id: eventId });
}

export interface FixtureOptions {
  /** Planted into m.room.create's room_version (a passthrough key), to test the leak check end to end. */
  readonly roomVersion?: string;
}

export function fixtureSync(opts: FixtureOptions = {}): Record<string, unknown> {
  ts = 1_700_000_000_000;
  const tea = {
    state: {
      events: [
        state('m.room.create', ALICE, '', { creator: ALICE, room_version: opts.roomVersion ?? '10', 'm.federate': true, secret_key: 'vorpal' }, '$teaCreateAbcdef'),
        state('m.room.member', ALICE, ALICE, { membership: 'join', displayname: 'Alice Liddell', avatar_url: AVATAR }, '$teaAliceJoinAbc'),
        state('m.room.member', BOB, BOB, { membership: 'join', displayname: 'Bob Whiterabbit' }, '$teaBobJoinAbcde'),
        state('m.room.member', CAROL, CAROL, { membership: 'join', displayname: 'Carol Caterpillar' }, '$teaCarolJoinAbc'),
        state('m.room.power_levels', ALICE, '', {
          users: { [ALICE]: 100, [BOB]: 50 },
          users_default: 0,
          events: { 'm.room.name': 50, 'com.wonderland.secretgarden': 10 },
          state_default: 50,
          notifications: { room: 50 },
          mystery: 'croquet',
        }, '$teaPowerAbcdefg'),
        state('m.room.join_rules', ALICE, '', { join_rule: 'invite' }, '$teaJoinRulesAbc'),
        state('m.room.history_visibility', ALICE, '', { history_visibility: 'shared' }, '$teaHistoryAbcde'),
        state('m.room.name', ALICE, '', { name: 'Mad Tea Party' }, '$teaNameAbcdefgh'),
        state('m.room.topic', ALICE, '', { topic: 'rabbithole discussions\nevery Tuesday' }, '$teaTopicAbcdefg'),
        state('m.room.avatar', ALICE, '', { url: `mxc://${SERVER}/RoomAvatarMediaXyz`, info: { w: 64, h: 64, mimetype: 'image/png', size: 1234, thumbnail_url: `mxc://${SERVER}/ThumbMediaIdXyz` } }, '$teaAvatarAbcdef'),
        state('m.room.canonical_alias', ALICE, '', { alias: `#teaparty:${SERVER}`, alt_aliases: [`#hatter:${SERVER}`] }, '$teaAliasAbcdefg'),
        state('m.room.server_acl', ALICE, '', { allow: ['*'], deny: ['evil.example', '*.bad.example'], allow_ip_literals: false }, '$teaAclAbcdefghi'),
        state('com.wonderland.private', ALICE, '', { secret: 'jabberwocky' }, '$teaCustomAbcdef'),
      ],
    },
    timeline: {
      events: [
        msg(ALICE, 'Down the rabbithole we go', '$m1AbcdefghijklM'),
        msg(BOB, 'teaparty at six', '$m2AbcdefghijklM', { format: 'org.matrix.custom.html', formatted_body: '<b>teaparty</b> at six' }),
        msg(CAROL, 'Who are you? join the public room', '$m3AbcdefghijklM'),
        ev('m.reaction', BOB, { 'm.relates_to': { rel_type: 'm.annotation', event_id: '$m1AbcdefghijklM', key: '👍' } }, { event_id: '$r1AbcdefghijklR' }),
        ev('m.reaction', ALICE, { 'm.relates_to': { rel_type: 'm.annotation', event_id: '$m2AbcdefghijklM', key: 'curiouser' } }, { event_id: '$r2AbcdefghijklR' }),
        ev('m.reaction', ALICE, { 'm.relates_to': { rel_type: 'm.annotation', event_id: '$goneAbcdefghijk', key: '🎩' } }, { event_id: '$r3AbcdefghijklR' }),
        // v1–10 redaction: the target at the top level.
        ev('m.room.redaction', ALICE, { reason: 'oops cheshire' }, { event_id: '$x1AbcdefghijklX', redacts: '$m3AbcdefghijklM' }),
        ev('m.room.redaction', ALICE, {}, { event_id: '$x2AbcdefghijklX', redacts: '$missingAbcdefgh' }),
        // Redacts a reaction that is itself dropped (its target is outside the snapshot).
        ev('m.room.redaction', ALICE, {}, { event_id: '$x3AbcdefghijklX', redacts: '$r3AbcdefghijklR' }),
        msg(BOB, 'quite so', '$m4AbcdefghijklM', { 'm.relates_to': { 'm.in_reply_to': { event_id: '$m1AbcdefghijklM' } }, 'm.mentions': { user_ids: [ALICE] } }),
        msg(BOB, 'long ago', '$m5AbcdefghijklM', { 'm.relates_to': { 'm.in_reply_to': { event_id: '$outsideAbcdefgh' } } }),
        ev('com.example.croquet', CAROL, { mallet: 'flamingo' }, { event_id: '$gameAbcdefghijk' }),
        state('m.room.member', CAROL, CAROL, { membership: 'leave' }, '$carolLeaveAbcde'),
      ],
      limited: true,
      prev_batch: 't1-2-3',
    },
    ephemeral: { events: [{ type: 'm.receipt', content: { '$m2AbcdefghijklM': { 'm.read': { [ALICE]: { ts: 1 } } } } }] },
    account_data: { events: [{ type: 'm.fully_read', content: { event_id: '$m2AbcdefghijklM' } }] },
    summary: { 'm.heroes': [BOB, CAROL], 'm.joined_member_count': 2 },
    unread_notifications: { highlight_count: 0, notification_count: 1 },
  };
  const dm = {
    state: { events: [] },
    timeline: {
      events: [
        // v11: no creator key, redaction target in content.
        state('m.room.create', ALICE, '', { room_version: '11' }, '$dmCreateAbcdefg'),
        state('m.room.member', ALICE, ALICE, { membership: 'join', displayname: 'Alice Liddell' }, '$dmAliceJoinAbcd'),
        state('m.room.power_levels', ALICE, '', { users: { [ALICE]: 100 } }, '$dmPowerAbcdefgh'),
        state('m.room.join_rules', ALICE, '', { join_rule: 'invite' }, '$dmJoinRulesAbcd'),
        state('m.room.member', ALICE, BOB, { membership: 'invite', is_direct: true, displayname: 'Bob Whiterabbit' }, '$dmBobInviteAbcd'),
        state('m.room.member', BOB, BOB, { membership: 'join', displayname: 'Bob Whiterabbit' }, '$dmBobJoinAbcdef'),
        msg(BOB, 'slithy toves', '$d1AbcdefghijklD'),
        ev('m.room.redaction', ALICE, { redacts: '$d1AbcdefghijklD' }, { event_id: '$d2AbcdefghijklD' }),
      ],
    },
  };
  return {
    next_batch: 's1_2_3',
    account_data: {
      events: [
        { type: 'm.direct', content: { [BOB]: [DM, LEFT] } },
        { type: 'im.vector.setting.breadcrumbs', content: { recent_rooms: [TEA, LEFT] } },
      ],
    },
    presence: { events: [{ type: 'm.presence', sender: BOB, content: { presence: 'online' } }] },
    rooms: { join: { [TEA]: tea, [DM]: dm }, leave: { [LEFT]: { timeline: { events: [] } } } },
  };
}
