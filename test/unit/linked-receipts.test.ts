// Read-receipt mirroring against simulated homeservers that follow Synapse's rules (checked on
// 1.163): a receipt that does not move forward is ignored and never echoed; a new one reaches the
// server's own appservice (local users' thread ids left out) and is federated to the others
// (thread ids kept; private receipts never). Each server runs its own ReceiptMirror, as in
// production; the tests count every receipt request and check that traffic stops.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ClientApi } from '../../src/homeserver/client-api.ts';
import { createLogger } from '../../src/log.ts';
import { catchUpReceipts } from '../../src/linked/catch-up.ts';
import { GroupResolver } from '../../src/linked/groups.ts';
import { MembershipCache } from '../../src/linked/membership-cache.ts';
import { parseLinkedAccountsConfig } from '../../src/linked/linked-config.ts';
import { ConfigReader } from '../../src/config/reader.ts';
import { newestPerThread, parseReceiptEdu, ReceiptMirror } from '../../src/linked/receipts.ts';
import { LinkedStore } from '../../src/linked/store.ts';
import { openDatabase } from '../../src/store/database.ts';
import type { MatrixEvent } from '../../src/store/inbox.ts';

const log = createLogger({ level: 'silent' });
const ROOM = '!room:a.test';

describe('parseReceiptEdu and newestPerThread', () => {
  it('reads m.read and m.read.private with thread ids and ignores the rest', () => {
    const entries = parseReceiptEdu({
      type: 'm.receipt',
      room_id: ROOM,
      content: {
        $e1: { 'm.read': { '@a:x': { ts: 1 }, 'not-a-user': { ts: 1 } }, 'm.read.private': { '@a:x': { ts: 2 } }, 'm.fully_read': { '@a:x': { ts: 3 } } },
        $e2: { 'm.read': { '@b:y': { ts: 5, thread_id: '$root' }, '@c:y': { ts: 6, thread_id: '' } } },
        bogus: { 'm.read': { '@a:x': { ts: 9 } } },
      },
    });
    assert.deepEqual(entries.map((e) => [e.eventId, e.type, e.userId, e.ts, e.threadId]), [
      ['$e1', 'm.read', '@a:x', 1, undefined],
      ['$e1', 'm.read.private', '@a:x', 2, undefined],
      ['$e2', 'm.read', '@b:y', 5, '$root'],
      ['$e2', 'm.read', '@c:y', 6, undefined],
    ]);
    assert.deepEqual(parseReceiptEdu({ type: 'm.typing', room_id: ROOM, content: {} }), []);
  });

  it('keeps the newest receipt per user, type and thread of a batched EDU', () => {
    const entries = parseReceiptEdu({
      type: 'm.receipt',
      room_id: ROOM,
      content: {
        $old: { 'm.read': { '@a:x': { ts: 10 } } },
        $new: { 'm.read': { '@a:x': { ts: 20 } } },
        $t: { 'm.read': { '@a:x': { ts: 5, thread_id: '$root' } } },
      },
    });
    assert.deepEqual(newestPerThread(entries).map((e) => e.eventId).sort(), ['$new', '$t']);
  });
});

// ---- a small model of federating homeservers ----

interface Receipt { eventId: string; threadId: string | undefined; ts: number }

class FakeServer {
  readonly name: string;
  readonly net: Network;
  /** room\nuser\ntype\nthread → receipt */
  readonly receipts = new Map<string, Receipt>();
  /** Transactions waiting for this server's appservice. */
  readonly asQueue: MatrixEvent[] = [];
  /** Receipt requests made through identity assertion (Steward's). */
  readonly assertedPosts: { user: string; eventId: string; type: string; threadId: string | undefined }[] = [];
  mirror!: ReceiptMirror;
  store!: LinkedStore;
  /** Events this server does not have yet (all others it has). */
  readonly missing = new Set<string>();
  /** Users not in the room. */
  readonly outside = new Set<string>();

  constructor(name: string, net: Network) {
    this.name = name;
    this.net = net;
  }

  isLocal(user: string): boolean {
    return user.endsWith(`:${this.name}`);
  }

  /** Synapse's rule: store only if it moves forward; then tell the appservice and federate. */
  apply(room: string, user: string, type: string, eventId: string, threadId: string | undefined, ts: number): boolean {
    const key = `${room}\n${user}\n${type}\n${threadId ?? ''}`;
    const current = this.receipts.get(key);
    if (current && this.net.order(current.eventId) >= this.net.order(eventId)) return false;
    this.receipts.set(key, { eventId, threadId, ts });
    const local = this.isLocal(user);
    const data: Record<string, unknown> = { ts };
    if (threadId !== undefined && !local) data.thread_id = threadId; // local ones lose it on the AS path
    this.asQueue.push({ type: 'm.receipt', room_id: room, content: { [eventId]: { [type]: { [user]: data } } } });
    if (local && type !== 'm.read.private') {
      for (const peer of this.net.servers) if (peer !== this) this.net.federation.push(() => peer.apply(room, user, type, eventId, threadId, ts));
    }
    return true;
  }

  client(): ClientApi {
    const fake = {
      sendReceipt: async (roomId: string, type: string, eventId: string, threadId: string | undefined, asUser: string) => {
        assert.ok(this.isLocal(asUser), `${this.name}'s Steward acts only for its own users, not ${asUser}`);
        this.assertedPosts.push({ user: asUser, eventId, type, threadId });
        // Like Synapse: 200 either way, but dropped when the user cannot see the event.
        if (!this.missing.has(eventId) && !this.outside.has(asUser)) this.apply(roomId, asUser, type, eventId, threadId, this.net.tick());
        return { ok: true, value: {} };
      },
      stateEvent: async (_roomId: string, _type: string, userId: string) => (this.outside.has(userId)
        ? { ok: false, error: { status: 403, code: 'M_FORBIDDEN', errcode: 'M_FORBIDDEN', human: 'not in room', log: 'not in room', body: {} } }
        : { ok: true, value: { membership: 'join' } }),
      roomEvent: async (_roomId: string, eventId: string, asUser: string) => (this.missing.has(eventId) || this.outside.has(asUser)
        ? { ok: false, error: { status: 404, code: 'M_NOT_FOUND', errcode: 'M_NOT_FOUND', human: 'Event not found.', log: '404', body: {} } }
        : { ok: true, value: { event_id: eventId } }),
      joinedRooms: async () => ({ ok: true, value: { joined_rooms: [ROOM] } }),
      sync: async (asUser: string, filter: { room?: { rooms?: string[] } }) => {
        const join: Record<string, unknown> = {};
        for (const roomId of filter.room?.rooms ?? []) {
          const content: Record<string, Record<string, Record<string, unknown>>> = {};
          for (const [key, r] of this.receipts) {
            const [room, user, type] = key.split('\n') as [string, string, string];
            if (room !== roomId || (type === 'm.read.private' && user !== asUser)) continue;
            ((content[r.eventId] ??= {})[type] ??= {})[user] = { ts: r.ts, ...(r.threadId ? { thread_id: r.threadId } : {}) };
          }
          join[roomId] = { ephemeral: { events: [{ type: 'm.receipt', content }] } };
        }
        return { ok: true, value: { rooms: { join } } };
      },
    };
    return fake as unknown as ClientApi;
  }
}

class Network {
  readonly servers: FakeServer[] = [];
  readonly federation: (() => void)[] = [];
  private clock = 1000;
  private readonly orders = new Map<string, number>();

  constructor(names: string[], links: string[][]) {
    for (const name of names) {
      const server = new FakeServer(name, this);
      const store = new LinkedStore(openDatabase(':memory:'));
      for (const group of links) store.addLinks(group.slice(1).map((u) => [group[0]!, u] as const), null);
      server.store = store;
      const client = server.client();
      server.mirror = new ReceiptMirror({ serverName: name, botUserId: `@steward:${name}`, store, resolver: new GroupResolver(store, undefined), client, membership: new MembershipCache(client), log });
      this.servers.push(server);
    }
  }

  server(name: string): FakeServer {
    return this.servers.find((s) => s.name === name)!;
  }

  tick(): number {
    return ++this.clock;
  }

  /** Events get their stream order when "sent". */
  event(id: string): string {
    this.orders.set(id, this.orders.size + 1);
    return id;
  }

  order(id: string): number {
    return this.orders.get(id) ?? 0;
  }

  /** Delivers federation and appservice transactions until nothing moves; answers how many steps. */
  async settle(maxSteps = 10_000): Promise<number> {
    let steps = 0;
    for (;;) {
      let moved = false;
      while (this.federation.length) {
        this.federation.shift()!();
        moved = true;
        steps++;
      }
      for (const s of this.servers) {
        while (s.asQueue.length) {
          const edu = s.asQueue.shift()!;
          if (s.mirror.wants(edu, 'ephemeral')) await s.mirror.handle(edu);
          moved = true;
          steps++;
        }
      }
      if (!moved) return steps;
      if (steps > maxSteps) throw new Error('receipts never stopped moving: a loop');
    }
  }

  /** A user reading on their own client. */
  read(user: string, eventId: string, type = 'm.read', threadId?: string): void {
    const home = this.servers.find((s) => s.isLocal(user))!;
    home.apply(ROOM, user, type, eventId, threadId, this.tick());
  }

  receiptOf(user: string, type = 'm.read', threadId?: string): string | undefined {
    const home = this.servers.find((s) => s.isLocal(user))!;
    return home.receipts.get(`${ROOM}\n${user}\n${type}\n${threadId ?? ''}`)?.eventId;
  }
}

describe('ReceiptMirror across simulated servers', () => {
  it('mirrors 100 receipts of alice@a onto alice@b exactly once each, never back, and then stops', async () => {
    const net = new Network(['a.test', 'b.test'], [['@alice:a.test', '@alice:b.test']]);
    const a = net.server('a.test');
    const b = net.server('b.test');
    for (let i = 0; i < 100; i++) {
      const e = net.event(`$m${i}`);
      net.read('@alice:a.test', e);
      await net.settle();
      assert.equal(net.receiptOf('@alice:b.test'), e);
    }
    assert.equal(b.assertedPosts.length, 100);
    assert.deepEqual(new Set(b.assertedPosts.map((p) => p.eventId)).size, 100);
    assert.equal(a.assertedPosts.length, 0, 'Steward A sends nothing back');
    assert.equal(await net.settle(), 0, 'quiet afterwards');
    assert.equal(b.store.counters()['receipts.echoes_ignored'], 100);
    assert.equal(a.store.counters()['receipts.skipped_already_there'], 100);
  });

  it('converges without loops when both accounts read, in any order, on three servers', async () => {
    const trio = ['@alice:a.test', '@alice:b.test', '@alice:c.test'];
    const net = new Network(['a.test', 'b.test', 'c.test'], [trio]);
    const events = Array.from({ length: 30 }, (_, i) => net.event(`$e${i}`));
    for (let i = 0; i < events.length; i++) {
      net.read(trio[i % 3]!, events[i]!);
      if (i % 4 === 0) net.read(trio[(i + 1) % 3]!, events[Math.max(0, i - 2)]!); // someone re-reads an older one
      await net.settle();
      for (const u of trio) assert.equal(net.receiptOf(u), events[i], `${u} at ${events[i]}`);
    }
    const posts = net.servers.reduce((n, s) => n + s.assertedPosts.length, 0);
    assert.ok(posts <= 2 * events.length, `at most one mirror per other account per read (${posts})`);
    assert.equal(await net.settle(), 0);
  });

  it('keeps the thread id across servers and on the same server (read back through /sync)', async () => {
    const net = new Network(['a.test', 'b.test'], [['@alice:a.test', '@alice:b.test', '@alice2:a.test']]);
    const root = net.event('$root');
    const reply = net.event('$reply');
    net.read('@alice:a.test', reply, 'm.read', root);
    await net.settle();
    assert.equal(net.receiptOf('@alice:b.test', 'm.read', root), reply, 'remote copy in the thread');
    assert.equal(net.receiptOf('@alice2:a.test', 'm.read', root), reply, 'local copy in the thread');
    assert.equal(net.receiptOf('@alice2:a.test'), undefined, 'no unthreaded receipt was made up');
    assert.equal(await net.settle(), 0);
  });

  it('mirrors m.read.private only onto accounts of the same server', async () => {
    const net = new Network(['a.test', 'b.test'], [['@alice:a.test', '@alice:b.test', '@alice2:a.test']]);
    const e = net.event('$p');
    net.read('@alice:a.test', e, 'm.read.private');
    await net.settle();
    assert.equal(net.receiptOf('@alice2:a.test', 'm.read.private'), e);
    assert.equal(net.receiptOf('@alice:b.test', 'm.read.private'), undefined);
    assert.equal(net.receiptOf('@alice:b.test'), undefined);
  });

  it('remembers the older receipts of a batched EDU and mirrors only the newest', async () => {
    const net = new Network(['a.test', 'b.test'], [['@alice:a.test', '@alice:b.test']]);
    const b = net.server('b.test');
    const e1 = net.event('$1');
    const e2 = net.event('$2');
    b.asQueue.push({ type: 'm.receipt', room_id: ROOM, content: { [e1]: { 'm.read': { '@alice:a.test': { ts: 1 } } }, [e2]: { 'm.read': { '@alice:a.test': { ts: 2 } } } } });
    await net.settle();
    assert.deepEqual(b.assertedPosts.map((p) => p.eventId), [e2]);
    assert.ok(b.store.hasReceiptAt(ROOM, '@alice:a.test', 'm.read', e1));
  });

  it('ignores users without links, and the bot itself', async () => {
    const net = new Network(['a.test', 'b.test'], [['@alice:a.test', '@alice:b.test']]);
    const b = net.server('b.test');
    assert.equal(b.mirror.wants({ type: 'm.receipt', room_id: ROOM, content: { $x: { 'm.read': { '@bob:a.test': { ts: 1 } } } } }, 'ephemeral'), false);
    assert.equal(b.mirror.wants({ type: 'm.receipt', room_id: ROOM, content: { $x: { 'm.read': { '@steward:b.test': { ts: 1 } } } } }, 'ephemeral'), false);
    assert.equal(b.mirror.wants({ type: 'm.receipt', room_id: ROOM, content: { $x: { 'm.read': { '@alice:a.test': { ts: 1 } } } } }, 'ephemeral'), true);
    assert.equal(b.mirror.wants({ type: 'm.receipt', room_id: ROOM, content: { $x: { 'm.read': { '@alice:a.test': { ts: 1 } } } } }, 'pdu'), false);
  });

  it('catches up at start-up what a down Steward missed, and the catch-up makes no echo traffic', async () => {
    const net = new Network(['a.test', 'b.test'], [['@alice:a.test', '@alice:b.test']]);
    const b = net.server('b.test');
    const root = net.event('$root');
    const e1 = net.event('$1');
    const t1 = net.event('$t1');
    net.read('@alice:a.test', e1);
    net.read('@alice:a.test', t1, 'm.read', root);
    // Steward B is down: Synapse drops the ephemeral events meant for it.
    while (net.federation.length) net.federation.shift()!();
    b.asQueue.length = 0;
    assert.equal(net.receiptOf('@alice:b.test'), undefined);

    const config = parseLinkedAccountsConfig(new ConfigReader(), { enabled: true });
    const summary = await catchUpReceipts({ serverName: 'b.test', botUserId: '@steward:b.test', config, store: b.store, resolver: new GroupResolver(b.store, undefined), client: b.client(), log });
    assert.deepEqual({ users: summary.users, sent: summary.sent, failed: summary.failed }, { users: 1, sent: 2, failed: 0 });
    assert.equal(net.receiptOf('@alice:b.test'), e1);
    assert.equal(net.receiptOf('@alice:b.test', 'm.read', root), t1);
    await net.settle();
    assert.equal(b.assertedPosts.length, 2, 'no more receipts after the catch-up');
    assert.equal(net.server('a.test').assertedPosts.length, 0);

    // A second start finds everything up to date.
    const again = await catchUpReceipts({ serverName: 'b.test', botUserId: '@steward:b.test', config, store: b.store, resolver: new GroupResolver(b.store, undefined), client: b.client(), log });
    assert.equal(again.sent, 0);
  });

  it('waits for the event of a receipt that arrived before it, and sends nothing to accounts outside the room', async () => {
    const net = new Network(['a.test', 'b.test'], [['@alice:a.test', '@alice:b.test', '@alice2:b.test']]);
    const b = net.server('b.test');
    b.outside.add('@alice2:b.test');
    const e = net.event('$late');
    b.missing.add(e);
    net.read('@alice:a.test', e);
    await net.settle();
    assert.equal(b.assertedPosts.length, 0, 'nothing sent while the event is not there');
    b.missing.delete(e);
    for (let i = 0; i < 50 && net.receiptOf('@alice:b.test') !== e; i++) await sleep(20);
    assert.equal(net.receiptOf('@alice:b.test'), e, 'sent once the event arrived');
    await net.settle();
    assert.deepEqual(b.assertedPosts.map((p) => p.user), ['@alice:b.test'], 'alice2 is not in the room: nothing sent as her');
    assert.equal(b.store.counters()['receipts.skipped_not_in_room'], 1);

    // A receipt waiting for its event is dropped when the reader moves on meanwhile.
    const e1 = net.event('$slow');
    const e2 = net.event('$fast');
    b.missing.add(e1);
    net.read('@alice:a.test', e1);
    await net.settle();
    net.read('@alice:a.test', e2);
    await net.settle();
    b.missing.delete(e1);
    await sleep(400);
    await b.mirror.stop();
    assert.equal(net.receiptOf('@alice:b.test'), e2);
    assert.ok(!b.assertedPosts.some((p) => p.eventId === e1), 'the superseded receipt was never sent');
  });
});
