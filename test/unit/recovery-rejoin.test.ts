import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Rich } from '../../src/admin-room/messenger.ts';
import type { FederationFailure } from '../../src/federation/federation-client.ts';
import { computeEventId, hashAndSignEvent, roomVersion, signingKeyFromSeed, type JsonObject, type KeyLookup, type SigningKey } from '../../src/federation/index.ts';
import type { ClientApi } from '../../src/homeserver/client-api.ts';
import type { HomeserverHttp, HttpFailure } from '../../src/homeserver/http.ts';
import { JobStore, type JobRecord } from '../../src/jobs/job-store.ts';
import type { JobContext } from '../../src/jobs/runner.ts';
import { createLogger } from '../../src/log.ts';
import { JoinPacer } from '../../src/recovery/join-pacer.ts';
import { LostRoomStore } from '../../src/recovery/lost-rooms.ts';
import type { RecoveryConfig } from '../../src/recovery/recovery-config.ts';
import { candidateServers, RejoinResults, rejoinJob, type RejoinDeps } from '../../src/recovery/rejoin.ts';
import { fetchRemoteRoomState, type FederationRequester } from '../../src/recovery/remote-state.ts';
import { verifyEvent } from '../../src/federation/index.ts';
import { openDatabase } from '../../src/store/database.ts';
import { fail, ok, type Result } from '../../src/util/result.ts';

const OWN = 'our.example';
const REMOTE = 'remote.example';
const log = createLogger({ level: 'silent' });
const v10 = (() => {
  const v = roomVersion('10');
  assert.ok(v.ok);
  return v.value;
})();

function key(): SigningKey {
  const k = signingKeyFromSeed('t', randomBytes(32));
  assert.ok(k.ok);
  return k.value;
}
const keys: Record<string, SigningKey> = { [OWN]: key(), [REMOTE]: key(), 'liar.example': key(), 'other.example': key() };
const lookup: KeyLookup = async (server, keyId) => {
  const k = keys[server];
  return k && k.keyId === keyId ? ok(k.publicKey) : fail('E_UNKNOWN_KEY', `no key ${keyId} of ${server}`);
};

function serverOf(user: string): string {
  return user.slice(user.indexOf(':') + 1);
}

interface Built {
  latest: string;
  latestPdu: JsonObject;
  pdus: JsonObject[];
  authChain: JsonObject[];
}

/** A small room of version 10 created on REMOTE, each event signed by its sender's server. */
function buildRoom(roomId: string, members: [user: string, membership: string][], opts: { signAs?: Record<string, string> } = {}): Built {
  const sign = (ev: JsonObject): JsonObject => {
    const server = opts.signAs?.[String(ev.sender)] ?? serverOf(String(ev.sender));
    return hashAndSignEvent(ev, v10, server, keys[server]!);
  };
  const creator = `@creator:${REMOTE}`;
  const base = { room_id: roomId, origin_server_ts: 1_700_000_000_000, prev_events: [], auth_events: [] };
  const create = sign({ ...base, depth: 1, type: 'm.room.create', state_key: '', sender: creator, content: { creator, room_version: '10' } });
  const pdus = [create, sign({ ...base, depth: 2, type: 'm.room.member', state_key: creator, sender: creator, content: { membership: 'join' } })];
  members.forEach(([user, membership], i) => pdus.push(sign({ ...base, depth: 3 + i, type: 'm.room.member', state_key: user, sender: user, content: { membership } })));
  // /state answers the state before the latest event; the latest event itself comes from /event.
  const latestPdu = pdus.pop()!;
  const last = computeEventId(latestPdu, v10);
  assert.ok(last.ok);
  return { latest: last.value, latestPdu, pdus, authChain: [create] };
}

function fedFailure(status: number, message: string, destination: string): FederationFailure {
  return { status, code: `HTTP_${status}`, human: message, log: message, errcode: undefined, body: undefined, destination };
}

/** Answers timestamp_to_event and /state from per-server room tables. */
function fakeFederation(servers: Record<string, Record<string, Built>>): FederationRequester & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    async request<T>(destination: string, _method: string, p: string): Promise<Result<T, FederationFailure>> {
      asked.push(`${destination} ${p.split('?')[0]}`);
      const ev = /^\/_matrix\/federation\/v1\/event\/([^?]+)/.exec(p);
      if (ev) {
        const found = Object.values(servers[destination] ?? {}).find((r) => r.latest === decodeURIComponent(ev[1]!));
        return found ? ok({ origin: destination, origin_server_ts: 1, pdus: [found.latestPdu] } as T) : { ok: false, error: fedFailure(404, `${destination}: 404 M_NOT_FOUND`, destination) };
      }
      const m = /^\/_matrix\/federation\/v1\/(timestamp_to_event|state)\/([^?]+)/.exec(p);
      const room = m ? servers[destination]?.[decodeURIComponent(m[2]!)] : undefined;
      if (!m || !room) return { ok: false, error: fedFailure(404, `${destination}: 404 M_NOT_FOUND`, destination) };
      if (m[1] === 'timestamp_to_event') return ok({ event_id: room.latest, origin_server_ts: 1 } as T);
      return ok({ pdus: room.pdus, auth_chain: room.authChain } as T);
    },
  };
}

describe('fetchRemoteRoomState', () => {
  const room = `!room:${REMOTE}`;
  const a = `@a:${OWN}`;
  const b = `@b:${OWN}`;

  it('verifies every event and answers the local users joined, and the other servers in the room', async () => {
    const fed = fakeFederation({ [REMOTE]: { [room]: buildRoom(room, [[a, 'join'], [b, 'leave'], [`@x:other.example`, 'join']]) } });
    const got = await fetchRemoteRoomState(fed, lookup, room, REMOTE, OWN);
    assert.ok(got.ok, !got.ok ? got.error.log : '');
    assert.deepEqual(got.value.localJoined, [a]);
    assert.deepEqual(got.value.otherServers, ['other.example'], 'the latest event (a join) is applied over the state before it');
    assert.equal(got.value.roomVersion, '10');
    const lastJoin = await fetchRemoteRoomState(fakeFederation({ [REMOTE]: { [room]: buildRoom(room, [[a, 'join'], [b, 'join']]) } }), lookup, room, REMOTE, OWN);
    assert.ok(lastJoin.ok);
    assert.deepEqual(lastJoin.value.localJoined, [a, b]);
  });

  it('refuses an answer with a forged join, a tampered event, another room\'s create event, or a join sent by someone else', async () => {
    const cases: [string, Built, RegExp][] = [];
    // A join "of" our user signed by the liar, not by us.
    cases.push(['forged join', buildRoom(room, [[a, 'join']], { signAs: { [a]: 'liar.example' } }), /not signed by our\.example/]);
    const real = buildRoom(room, [[a, 'leave'], [`@x:other.example`, 'join']]);
    cases.push(['re-labelled event', { ...real, pdus: real.pdus.map((p) => (p.state_key === a ? { ...p, content: { membership: 'join' }, state_key: b, sender: b } : p)) }, /bad signature|not signed/]);
    cases.push(['create of another room', buildRoom(`!other:${REMOTE}`, [[a, 'join']]), /create event of !other:remote\.example, not of !room:remote\.example/]);
    const odd = buildRoom(room, []);
    odd.pdus.push(hashAndSignEvent({ room_id: room, origin_server_ts: 1, prev_events: [], auth_events: [], depth: 9, type: 'm.room.member', state_key: a, sender: `@creator:${REMOTE}`, content: { membership: 'join' } }, v10, REMOTE, keys[REMOTE]!));
    cases.push(['join sent by another', odd, /the join of @a:our\.example in the state was sent by @creator:remote\.example/]);
    for (const [label, built, why] of cases) {
      const got = await fetchRemoteRoomState(fakeFederation({ [REMOTE]: { [room]: built } }), lookup, room, REMOTE, OWN);
      assert.ok(!got.ok, label);
      assert.equal(got.error.code, 'E_FORGED_STATE', label);
      assert.match(got.error.human, why, label);
    }
  });

  it('says which request failed when the server does not answer', async () => {
    const got = await fetchRemoteRoomState(fakeFederation({}), lookup, room, REMOTE, OWN);
    assert.ok(!got.ok);
    assert.match(got.error.human, /remote\.example: 404 .*knows no event of !room:remote\.example/);
  });
});

describe('candidateServers', () => {
  it('puts --via first, then servers seen, then the room id\'s server, never our own, no repeats', () => {
    assert.deepEqual(candidateServers('!r:c.org', ['v.org', 'a.org'], ['a.org', OWN, 'b.org'], OWN), ['v.org', 'a.org', 'b.org', 'c.org']);
    assert.deepEqual(candidateServers('!6F-r7r4sdjpbt9iRwqdN', [], ['b.org'], OWN), ['b.org']);
  });
});

describe('JoinPacer', () => {
  it('keeps to its concurrency, and on a 429 waits as asked and tells', async () => {
    const waits: number[] = [];
    const slept: number[] = [];
    const pacer = new JoinPacer({ concurrency: 2, intervalMs: 0, onRateLimited: (ms) => waits.push(ms), sleep: async (ms) => { slept.push(ms); } });
    let active = 0;
    let peak = 0;
    let calls = 0;
    const limited: HttpFailure = { status: 429, code: 'M_LIMIT_EXCEEDED', human: 'limited', log: 'limited', errcode: 'M_LIMIT_EXCEEDED', body: { retry_after_ms: 1 } };
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => pacer.run(async () => {
      active += 1;
      peak = Math.max(peak, active);
      await new Promise((r) => setTimeout(r, 5));
      active -= 1;
      calls += 1;
      return i === 0 && calls === 1 ? { ok: false as const, error: limited } : ok(i);
    })));
    assert.deepEqual(results.map((r) => r.ok && r.value), [0, 1, 2, 3, 4, 5]);
    assert.equal(peak, 2);
    assert.deepEqual(waits, [1]);
    assert.equal(pacer.rateLimited, 1);
  });

  it('retries a 5xx a few times, then gives the failure back', async () => {
    const pacer = new JoinPacer({ concurrency: 1, intervalMs: 0, serverErrorRetries: 2, sleep: async () => undefined });
    let calls = 0;
    const outcome = await pacer.run(async () => {
      calls += 1;
      return { ok: false as const, error: { status: 502, code: 'HTTP_502', human: 'bad gateway', log: 'bad gateway', errcode: undefined, body: undefined } };
    });
    assert.equal(outcome.ok, false);
    assert.equal(calls, 3);
  });
});

describe('rejoin job', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'steward-rejoin-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const r1 = `!one:${REMOTE}`;
  const r2 = `!two:liar.example`;
  const alice = `@alice:${OWN}`;
  const bob = `@bob:${OWN}`;
  const gone = `@gone:${OWN}`;
  const deact = `@deact:${OWN}`;

  function setup(opts: { limitFirstJoin?: boolean; wrapFederation?: (inner: FederationRequester) => FederationRequester } = {}) {
    const db = openDatabase(':memory:');
    const jobs = new JobStore(db);
    const rooms = new LostRoomStore(db);
    rooms.record([{ roomId: r1, server: REMOTE, ts: 1 }, { roomId: r2, server: 'liar.example', ts: 1 }], OWN, 1);
    const fed = fakeFederation({
      [REMOTE]: { [r1]: buildRoom(r1, [[alice, 'join'], [bob, 'join'], [gone, 'join'], [deact, 'join']]) },
      'liar.example': { [r2]: buildRoom(r2, [[alice, 'join']], { signAs: { [alice]: 'liar.example' } }) },
    });
    const joinedHere = new Map<string, Set<string>>(); // room -> users
    const joins: string[] = [];
    const notices: Rich[] = [];
    let limited = opts.limitFirstJoin ?? false;
    const notFound = (what: string): Result<never, HttpFailure> => ({ ok: false, error: { status: 404, code: 'M_NOT_FOUND', human: `${what}: 404`, log: `${what}: 404`, errcode: 'M_NOT_FOUND', body: {} } });
    const http = {
      async request(method: string, p: string) {
        const user = /^\/_synapse\/admin\/v2\/users\/(.+)$/.exec(p);
        if (user) {
          const id = decodeURIComponent(user[1]!);
          if (id === gone) return notFound('user');
          return ok({ name: id, deactivated: id === deact });
        }
        const members = /^\/_synapse\/admin\/v1\/rooms\/(.+)\/members$/.exec(p);
        if (members) {
          const set = joinedHere.get(decodeURIComponent(members[1]!));
          return set ? ok({ members: [...set], total: set.size }) : notFound('room');
        }
        if (/^\/_matrix\/client\/v3\/rooms\/.+\/members$/.test(p)) return ok({ chunk: [] });
        throw new Error(`unexpected ${method} ${p}`);
      },
    } as unknown as HomeserverHttp;
    const joinClient = {
      async join(roomId: string, via: readonly string[], asUser: string) {
        if (limited) {
          limited = false;
          return { ok: false, error: { status: 429, code: 'M_LIMIT_EXCEEDED', human: 'too many', log: 'too many', errcode: 'M_LIMIT_EXCEEDED', body: { retry_after_ms: 5 } } };
        }
        joins.push(`${asUser} ${roomId} via ${via.join(',')}`);
        if (!joinedHere.has(roomId)) joinedHere.set(roomId, new Set());
        joinedHere.get(roomId)!.add(asUser);
        return ok({ room_id: roomId });
      },
      async joinedRooms(asUser: string) {
        return ok({ joined_rooms: [...joinedHere].filter(([, users]) => users.has(asUser)).map(([r]) => r) });
      },
    } as unknown as ClientApi;
    const config: RecoveryConfig = { logSources: [], logFormat: 'auto', announceIntervalSeconds: 60, pollIntervalMs: 1000, roomConcurrency: 2, joinConcurrency: 2, joinIntervalMs: 0, reports: dir };
    const deps: RejoinDeps = {
      db, rooms, serverName: OWN, config, http, joinClient, log,
      federation: async () => ok({ client: opts.wrapFederation ? opts.wrapFederation(fed) : fed, keys: lookup, signingKey: keys[OWN] }),
      releaseFederation: () => undefined,
      notify: async (_job, m) => {
        notices.push(m);
      },
    };
    const definition = rejoinJob(deps);
    const run = async (args: Record<string, unknown>, resume?: { resumeFrom: unknown; before: (jobId: number) => void }) => {
      const { job } = jobs.create({ type: 'rejoin', args, origin: 'terminal' });
      resume?.before(job.id);
      const failed: string[] = [];
      let checkpoint: unknown;
      const ctx: JobContext = {
        job, resumeFrom: resume?.resumeFrom, signal: new AbortController().signal, log,
        setTotal: () => undefined, advance: () => undefined, counters: () => ({ done: 0, failed: failed.length, total: null }),
        itemFailed: (item) => failed.push(item),
        checkpoint: (data) => {
          checkpoint = data;
        },
      };
      const outcome = await definition.run(ctx);
      assert.ok(outcome.ok, !outcome.ok ? outcome.error.log : '');
      return { summary: outcome.value.summary, failed, checkpoint, job: job as JobRecord };
    };
    return { run, joins, notices, rooms, fed, db };
  }

  it('plans in a dry run: users to rejoin, users skipped and why, servers that lied; joins nobody', async () => {
    const t = setup();
    const { summary, failed } = await t.run({ rooms: [], all: true, via: [], dryRun: true });
    assert.deepEqual(t.joins, []);
    const line1 = summary.split('\n').find((l) => l.includes(`${r1} — `))!;
    assert.match(line1, /📋 .* — plan · state from remote\.example · would rejoin @alice:our\.example, @bob:our\.example · skipped @deact:our\.example \(deactivated\), @gone:our\.example \(no longer exists on this server\)/);
    const line2 = summary.split('\n').find((l) => l.includes(`${r2} — `))!;
    assert.match(line2, /❌ .* — failed · not used: liar\.example \(1 event\(s\) in its answer do not verify \(event: .*not signed by our\.example.*\) · no server answered with room state that verifies; nobody was joined/);
    assert.deepEqual(failed, [r2]);
    assert.equal(t.rooms.get(r1)!.state, 'lost', 'a dry run recovers nothing');
  });

  it('joins the first user (bringing the server back), then the rest; writes a private report; a re-run joins nobody twice', async () => {
    const t = setup({ limitFirstJoin: true });
    const first = await t.run({ rooms: [r1], all: false, via: ['liar.example'], dryRun: false });
    assert.deepEqual(t.joins, [
      `${alice} ${r1} via remote.example,liar.example`,
      `${bob} ${r1} via remote.example,liar.example`,
    ]);
    const line = first.summary.split('\n').find((l) => l.includes(`${r1} — `))!;
    assert.match(line, /✅ .* — rejoined · state from remote\.example · not used: liar\.example \(.*404.*\) · rejoined @alice:our\.example, @bob:our\.example · skipped /);
    assert.equal(t.rooms.get(r1)!.state, 'recovered');
    assert.equal(t.notices.length, 1, 'the admin is told once about the rate limit');
    assert.match(t.notices[0]!.text, /rate-limiting the joins Steward makes/);
    assert.match(t.notices[0]!.text, /rate_limited: false/);
    assert.match(t.notices[0]!.text, /rc_joins:\n {4}local: \{per_second: 10, burst_count: 100\}/);
    const report = /Report: (\S+)/.exec(first.summary)![1]!;
    assert.equal((await stat(report)).mode & 0o777, 0o600);
    const doc = JSON.parse(await readFile(report, 'utf8'));
    assert.deepEqual(doc.rooms[0].rejoined, [alice, bob]);
    assert.deepEqual(doc.rooms[0].skipped.map((s: { user: string }) => s.user), [deact, gone]);

    const again = await t.run({ rooms: [], all: true, via: [], dryRun: false });
    assert.equal(t.joins.length, 2, 'nobody joined twice');
    assert.match(again.summary.split('\n').find((l) => l.includes(`${r1} — `))!, /☑️ .* — already recovered · .* already joined @alice:our\.example, @bob:our\.example/);
  });

  it('a resumed job goes on from its checkpoint: rooms already done are not asked or joined again', async () => {
    const t = setup();
    const doneBefore = { roomId: r1, outcome: 'rejoined' as const, stateFrom: REMOTE, servers: [{ server: REMOTE, ok: true }], via: [REMOTE], rejoined: [alice, bob], alreadyJoined: [], planned: [], skipped: [], failed: [], ts: 1 };
    const { summary } = await t.run({ rooms: [r1, r2], all: false, via: [], dryRun: false }, {
      resumeFrom: { rooms: [r1, r2], startedTs: 1 },
      before: (jobId) => new RejoinResults(t.db).save(jobId, 0, doneBefore),
    });
    assert.ok(!t.fed.asked.some((a) => a.includes(encodeURIComponent(r1))), 'the finished room was not asked again');
    assert.deepEqual(t.joins, []);
    assert.match(summary, /2 room\(s\): 1 rejoined, 0 already recovered, 0 partly, 1 failed/);
  });

  /** make_leave / send_leave of REMOTE: templates for the asked user (or for `templateFor`), signed leaves checked and kept. */
  function leaveServer(templateFor?: (user: string) => string) {
    const sent: { eventId: string; event: JsonObject }[] = [];
    const wrap = (inner: FederationRequester): FederationRequester => ({
      async request<T>(destination: string, method: string, p: string, o?: { body?: unknown }): Promise<Result<T, FederationFailure>> {
        const make = /^\/_matrix\/federation\/v1\/make_leave\/([^/]+)\/([^/?]+)$/.exec(p);
        if (make && method === 'GET') {
          const user = decodeURIComponent(make[2]!);
          const who = templateFor ? templateFor(user) : user;
          return ok({ room_version: '10', event: { type: 'm.room.member', state_key: who, sender: who, room_id: decodeURIComponent(make[1]!), content: { membership: 'leave' }, depth: 9, prev_events: ['$prev'], auth_events: ['$auth'], origin: destination, origin_server_ts: 5 } } as T);
        }
        const send = /^\/_matrix\/federation\/v2\/send_leave\/([^/]+)\/([^/?]+)$/.exec(p);
        if (send && method === 'PUT') {
          sent.push({ eventId: decodeURIComponent(send[2]!), event: o?.body as JsonObject });
          return ok({} as T);
        }
        return inner.request<T>(destination, method, p, o as never);
      },
    });
    return { sent, wrap };
  }

  it('reports skipped users the remote still counts as joined, and --leave-skipped makes them leave over federation, signed as our server', async () => {
    const plan = setup();
    const dry = await plan.run({ rooms: [r1], all: false, via: [], dryRun: true });
    assert.match(dry.summary, /Stale memberships: 2 skipped user\(s\) \(deactivated or gone\) are still joined as remote servers see it\. Run the same !rejoin with --leave-skipped/);
    assert.match(dry.summary.split('\n').find((l) => l.includes(`${r1} — `))!, /stale: @deact:our\.example, @gone:our\.example still joined as remote\.example sees it \(--leave-skipped makes them leave\)/);

    const remote = leaveServer();
    const t = setup({ wrapFederation: remote.wrap });
    const done = await t.run({ rooms: [r1], all: false, via: [], dryRun: false, leaveSkipped: true });
    assert.deepEqual(remote.sent.map((s) => s.event.state_key).sort(), [deact, gone]);
    for (const { eventId, event } of remote.sent) {
      // What REMOTE will check: our server's signature, the content hash, the event id in the path.
      const verified = await verifyEvent(event, '10', lookup, eventId);
      assert.ok(verified.ok, !verified.ok ? verified.error.log : '');
      assert.equal(event.origin, OWN);
      assert.deepEqual(event.content, { membership: 'leave' });
      assert.deepEqual(event.prev_events, ['$prev']);
    }
    const line = done.summary.split('\n').find((l) => l.includes(`${r1} — `))!;
    assert.match(line, /✅ .* — rejoined · .* rejoined @alice:our\.example, @bob:our\.example · skipped .* · left over federation @deact:our\.example, @gone:our\.example/);
    assert.match(done.summary, /Stale memberships: 2 skipped user\(s\) were still joined as remote servers see it; 2 made to leave over federation\./);
    const doc = JSON.parse(await readFile(/Report: (\S+)/.exec(done.summary)![1]!, 'utf8'));
    assert.deepEqual([...doc.rooms[0].left].sort(), [deact, gone]);
    assert.equal(doc.totals.left, 2);
  });

  it('signs nothing when make_leave answers a template for someone else; the room is only partly done', async () => {
    const remote = leaveServer(() => `@someone-else:${OWN}`);
    const t = setup({ wrapFederation: remote.wrap });
    const done = await t.run({ rooms: [r1], all: false, via: [], dryRun: false, leaveSkipped: true });
    assert.deepEqual(remote.sent, []);
    const line = done.summary.split('\n').find((l) => l.includes(`${r1} — `))!;
    assert.match(line, /⚠️ .* — partly rejoined · .* could not leave @deact:our\.example \(remote\.example answered make_leave with a template that is not @deact:our\.example's leave/);
    assert.deepEqual(done.failed, [r1]);
  });
});
