// Invite mirroring decisions with a fake client-server API: who invites, who waits for a join,
// who is skipped (left, banned), and when an invitee is auto-joined (and left again when the
// marker's claim does not hold).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ClientApi } from '../../src/homeserver/client-api.ts';
import { createLogger } from '../../src/log.ts';
import { GroupResolver } from '../../src/linked/groups.ts';
import { MembershipCache } from '../../src/linked/membership-cache.ts';
import { canInvite, InviteMirror, LINKED_INVITE_MARKER } from '../../src/linked/invites.ts';
import type { LinkedAccountsConfig } from '../../src/linked/linked-config.ts';
import { LinkedStore } from '../../src/linked/store.ts';
import { openDatabase } from '../../src/store/database.ts';
import type { MatrixEvent } from '../../src/store/inbox.ts';

const log = createLogger({ level: 'silent' });
const ROOM = '!r:a.test';

const member = (userId: string, membership: string, sender = userId) => ({ type: 'm.room.member', state_key: userId, sender, content: { membership } });
const create = (sender: string, version = '10') => ({ type: 'm.room.create', state_key: '', sender, content: { room_version: version } });
const pl = (users: Record<string, number>, invite = 0) => ({ type: 'm.room.power_levels', state_key: '', sender: '@x:a.test', content: { users, invite } });

describe('canInvite', () => {
  it('follows membership and power levels', () => {
    const state = [create('@c:a.test'), member('@c:a.test', 'join'), member('@m:a.test', 'join'), member('@i:a.test', 'invite'), pl({ '@c:a.test': 100 }, 50)];
    assert.equal(canInvite(state, '@c:a.test'), true);
    assert.equal(canInvite(state, '@m:a.test'), false, 'below the invite level');
    assert.equal(canInvite(state, '@i:a.test'), false, 'not joined');
    assert.equal(canInvite([create('@c:a.test'), member('@m:a.test', 'join'), pl({}, 0)], '@m:a.test'), true);
    assert.equal(canInvite([create('@c:a.test'), member('@m:a.test', 'join')], '@m:a.test'), true, 'no power levels yet');
  });

  it('knows room version 12 creators are above power levels', () => {
    const state = [create('@c:a.test', '12'), member('@c:a.test', 'join'), pl({}, 50)];
    assert.equal(canInvite(state, '@c:a.test'), true);
    assert.equal(canInvite([create('@c:a.test', '11'), member('@c:a.test', 'join'), pl({}, 50)], '@c:a.test'), false);
  });
});

interface Call { op: string; roomId: string; target?: string; asUser?: string; content?: Record<string, unknown> }

function setup(opts: { config?: Partial<LinkedAccountsConfig>; state?: Record<string, unknown>[]; joinFailures?: number; links?: string[][] } = {}) {
  const store = new LinkedStore(openDatabase(':memory:'));
  for (const group of opts.links ?? [['@alice:a.test', '@alice:b.test', '@alice2:a.test']]) store.addLinks(group.slice(1).map((u) => [group[0]!, u] as const), null);
  const calls: Call[] = [];
  let state = opts.state ?? [];
  let joinFailures = opts.joinFailures ?? 0;
  const client = {
    roomState: async (roomId: string, o: { asUser?: string } = {}) => {
      calls.push({ op: 'state', roomId, ...(o.asUser ? { asUser: o.asUser } : {}) });
      return { ok: true, value: state };
    },
    setMembership: async (roomId: string, target: string, content: Record<string, unknown>, asUser: string) => {
      calls.push({ op: 'invite', roomId, target, asUser, content });
      return { ok: true, value: { event_id: '$inv' } };
    },
    join: async (roomId: string, _via: string[], asUser: string) => {
      calls.push({ op: 'join', roomId, asUser });
      if (joinFailures-- > 0) return { ok: false, error: { status: 403, errcode: 'M_FORBIDDEN', code: 'M_FORBIDDEN', human: 'You are not invited to this room.', log: '403', body: {} } };
      return { ok: true, value: { room_id: roomId } };
    },
    leave: async (roomId: string, asUser: string) => {
      calls.push({ op: 'leave', roomId, asUser });
      return { ok: true, value: {} };
    },
  };
  const config: LinkedAccountsConfig = { enabled: true, directory: undefined, autoJoin: true, reinviteLeft: false, catchUp: { maxUsers: 10, maxRoomsPerUser: 10 }, ...opts.config };
  const api = client as unknown as ClientApi;
  const mirror = new InviteMirror({ serverName: 'a.test', botUserId: '@steward:a.test', config, store, resolver: new GroupResolver(store, undefined), client: api, membership: new MembershipCache(api), log });
  return { store, calls, mirror, setState: (s: Record<string, unknown>[]) => { state = s; } };
}

const inviteEvent = (userId: string, sender: string, extra: Record<string, unknown> = {}): MatrixEvent => ({
  type: 'm.room.member', room_id: ROOM, state_key: userId, sender, event_id: `$i-${userId}`, content: { membership: 'invite', ...extra },
});
const joinEvent = (userId: string): MatrixEvent => ({ type: 'm.room.member', room_id: ROOM, state_key: userId, sender: userId, event_id: `$j-${userId}`, content: { membership: 'join' }, unsigned: { prev_content: { membership: 'invite' } } });

async function deliver(mirror: InviteMirror, event: MatrixEvent): Promise<void> {
  if (mirror.wants(event, 'pdu')) await mirror.handle(event);
}

describe('InviteMirror', () => {
  it('invites the linked accounts as a local inviter allowed to invite, with the marker, skipping members', async () => {
    const state = [create('@bob:a.test'), member('@bob:a.test', 'join'), member('@alice:a.test', 'invite', '@bob:a.test'), member('@alice2:a.test', 'join'), pl({ '@bob:a.test': 100 })];
    const { calls, mirror, store } = setup({ state });
    await deliver(mirror, inviteEvent('@alice:a.test', '@bob:a.test'));
    const invites = calls.filter((c) => c.op === 'invite');
    assert.deepEqual(invites.map((c) => [c.target, c.asUser]), [['@alice:b.test', '@bob:a.test']]);
    assert.deepEqual(invites[0]!.content, { membership: 'invite', [LINKED_INVITE_MARKER]: { account: '@alice:a.test' } });
    assert.equal(store.activity(10)[0]!.action, 'invite');
  });

  it('waits for the join when the inviter is remote, then invites as the user', async () => {
    const { calls, mirror, setState } = setup();
    await deliver(mirror, inviteEvent('@alice:a.test', '@carol:c.test'));
    assert.equal(calls.length, 0, 'nothing yet');
    setState([create('@carol:c.test'), member('@carol:c.test', 'join'), member('@alice:a.test', 'join'), member('@alice:b.test', 'leave'), member('@alice2:a.test', 'ban'), pl({ '@carol:c.test': 100 })]);
    await deliver(mirror, joinEvent('@alice:a.test'));
    assert.deepEqual(calls.filter((c) => c.op === 'invite'), [], 'left and banned accounts are not invited again');
  });

  it('invites accounts that left again when reinvite_left is on (never banned ones)', async () => {
    const { calls, mirror, setState } = setup({ config: { reinviteLeft: true } });
    await deliver(mirror, inviteEvent('@alice:a.test', '@carol:c.test'));
    setState([create('@carol:c.test'), member('@carol:c.test', 'join'), member('@alice:a.test', 'join'), member('@alice:b.test', 'leave'), member('@alice2:a.test', 'ban')]);
    await deliver(mirror, joinEvent('@alice:a.test'));
    assert.deepEqual(calls.filter((c) => c.op === 'invite').map((c) => [c.target, c.asUser]), [['@alice:b.test', '@alice:a.test']]);
  });

  it('mirrors a new room once the creator has joined', async () => {
    const { calls, mirror, setState } = setup();
    await deliver(mirror, { type: 'm.room.create', room_id: ROOM, state_key: '', sender: '@alice:a.test', content: {} });
    setState([create('@alice:a.test'), member('@alice:a.test', 'join')]);
    await deliver(mirror, { ...joinEvent('@alice:a.test'), unsigned: {} });
    assert.deepEqual(calls.filter((c) => c.op === 'invite').map((c) => c.target).sort(), ['@alice2:a.test', '@alice:b.test']);
  });

  it('auto-joins an invite from one of the user\'s own accounts (retrying while the room is not ready), then mirrors as the user', async () => {
    const { calls, mirror, setState, store } = setup({ joinFailures: 1 });
    setState([create('@alice:b.test'), member('@alice:b.test', 'join'), member('@alice:a.test', 'join'), member('@alice2:a.test', 'invite')]);
    await deliver(mirror, inviteEvent('@alice:a.test', '@alice:b.test'));
    for (let i = 0; i < 40 && !store.activity(10).some((r) => r.action === 'auto-join'); i++) await sleep(50);
    assert.deepEqual(calls.filter((c) => c.op === 'join').map((c) => c.asUser), ['@alice:a.test', '@alice:a.test'], 'a refused join is tried again');
    assert.equal(store.activity(10).find((r) => r.action === 'auto-join')?.outcome, 'ok');
    await mirror.stop();
  });

  it('auto-joins on a marker naming a linked account of the inviter\'s server, and leaves if the claim is false', async () => {
    const { calls, mirror, setState, store } = setup();
    setState([create('@bob:b.test'), member('@bob:b.test', 'join'), member('@alice:b.test', 'invite'), member('@alice:a.test', 'join')]);
    await deliver(mirror, inviteEvent('@alice:a.test', '@bob:b.test', { [LINKED_INVITE_MARKER]: { account: '@alice:b.test' } }));
    await mirror.stop();
    assert.deepEqual(calls.filter((c) => c.op === 'join' || c.op === 'leave').map((c) => c.op), ['join']);

    const forged = setup();
    forged.setState([create('@mallory:b.test'), member('@mallory:b.test', 'join'), member('@alice:a.test', 'join')]);
    await deliver(forged.mirror, inviteEvent('@alice:a.test', '@mallory:b.test', { [LINKED_INVITE_MARKER]: { account: '@alice:b.test' } }));
    await forged.mirror.stop();
    assert.deepEqual(forged.calls.filter((c) => c.op === 'join' || c.op === 'leave').map((c) => c.op), ['join', 'leave']);
    assert.equal(forged.calls.filter((c) => c.op === 'invite').length, 0, 'no invites from a room it left');
    assert.match(forged.store.activity(10).at(-1)!.detail!, /left again/);
    assert.ok(store);
  });

  it('does not auto-join on a marker sent from another server than the named account\'s, or with auto_join off', async () => {
    const cross = setup();
    await deliver(cross.mirror, inviteEvent('@alice:a.test', '@mallory:evil.test', { [LINKED_INVITE_MARKER]: { account: '@alice:b.test' } }));
    await cross.mirror.stop();
    assert.equal(cross.calls.filter((c) => c.op === 'join').length, 0);

    const off = setup({ config: { autoJoin: false } });
    await deliver(off.mirror, inviteEvent('@alice:a.test', '@alice:b.test'));
    await off.mirror.stop();
    assert.equal(off.calls.filter((c) => c.op === 'join').length, 0);
  });

  it('keeps only what it needs: local invitees and creators with links, joins that are not profile changes', () => {
    const { mirror } = setup();
    assert.equal(mirror.wants(inviteEvent('@alice:a.test', '@bob:a.test'), 'pdu'), true);
    assert.equal(mirror.wants(inviteEvent('@alice:b.test', '@bob:a.test'), 'pdu'), false, 'remote invitee: its own Steward acts');
    assert.equal(mirror.wants(inviteEvent('@nolinks:a.test', '@bob:a.test'), 'pdu'), false);
    assert.equal(mirror.wants({ ...joinEvent('@alice:a.test'), unsigned: { prev_content: { membership: 'join' } } }, 'pdu'), false);
    assert.equal(mirror.wants({ type: 'm.room.message', room_id: ROOM, sender: '@alice:a.test', content: {} }, 'pdu'), false);
  });
});
