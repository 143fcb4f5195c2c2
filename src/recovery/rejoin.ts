import { join } from 'node:path';
import type { Rich } from '../admin-room/messenger.ts';
import type { KeyLookup, SigningKey } from '../federation/index.ts';
import { leaveOverFederation } from './federated-leave.ts';
import type { ClientApi } from '../homeserver/client-api.ts';
import { path, type HomeserverHttp } from '../homeserver/http.ts';
import { formatDuration } from '../jobs/format.ts';
import type { JobRecord, JobResult } from '../jobs/job-store.ts';
import type { JobContext, JobDefinition } from '../jobs/runner.ts';
import type { Logger } from '../log.ts';
import type { Db } from '../store/database.ts';
import { writeFileAtomic } from '../util/atomic-write.ts';
import { escapeHtml } from '../util/html.ts';
import { forEachConcurrent } from '../util/pool.ts';
import { errorMessage, failure, ok, type Result } from '../util/result.ts';
import { JoinPacer, limiter } from './join-pacer.ts';
import type { LostRoomStore } from './lost-rooms.ts';
import type { RecoveryConfig } from './recovery-config.ts';
import { fetchRemoteRoomState, type FederationRequester, type RemoteRoomState } from './remote-state.ts';
import { forecastText, LIFT_LIMITS_ADVICE, reportDocument, summaryText, totals, type RoomOutcome, type RoomResult, type ServerAttempt, type UserNote } from './rejoin-report.ts';

export interface RejoinArgs {
  /** Room ids, or empty with `all` for every room recorded as lost when the job starts. */
  readonly rooms: readonly string[];
  readonly all: boolean;
  readonly via: readonly string[];
  readonly dryRun: boolean;
  /** Make skipped users still joined in the remote's view (deactivated, gone) leave, over federation. */
  readonly leaveSkipped?: boolean;
}

export function parseRejoinArgs(raw: Record<string, unknown>): RejoinArgs {
  const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
  return { rooms: strings(raw.rooms), all: raw.all === true, via: strings(raw.via), dryRun: raw.dryRun === true, leaveSkipped: raw.leaveSkipped === true };
}

interface RejoinCheckpoint {
  readonly rooms: readonly string[];
  readonly startedTs: number;
}

export interface FederationAccess {
  readonly client: FederationRequester;
  readonly keys: KeyLookup;
  /** Needed for --leave-skipped only: the leave events are signed as our server. */
  readonly signingKey?: SigningKey;
}

/** Skipped for these reasons, a user cannot come back but still counts as joined elsewhere. */
const STALE_REASONS = new Set(['deactivated', 'no longer exists on this server']);

export interface RejoinDeps {
  readonly db: Db;
  readonly rooms: LostRoomStore;
  readonly serverName: string;
  readonly config: RecoveryConfig;
  /** Admin API calls (retries and 429 handled inside). */
  readonly http: HomeserverHttp;
  /** Joins only: a client whose requests do not retry 429s themselves, so the pacer sees them. */
  readonly joinClient: ClientApi;
  /** Built on first use: it needs Synapse's signing key, which only federation commands require. */
  federation(): Promise<Result<FederationAccess>>;
  /** Lets go of idle federation connections when a job ends (a terminal process can then exit). */
  releaseFederation(): void;
  /** A live notice about a job (rate-limit warnings): in its room, or on the terminal. */
  notify(job: JobRecord, message: Rich): Promise<void>;
  readonly log: Logger;
}

/** Per-room results of rejoin jobs, one row per room, so a resumed job skips finished rooms. */
export class RejoinResults {
  private readonly db: Db;
  constructor(db: Db) {
    this.db = db;
  }

  save(jobId: number, seq: number, result: RoomResult): void {
    this.db.prepare('INSERT OR REPLACE INTO rejoin_results (job_id, room_id, seq, outcome, result, ts) VALUES (?, ?, ?, ?, ?, ?)')
      .run(jobId, result.roomId, seq, result.outcome, JSON.stringify(result), result.ts);
  }

  forJob(jobId: number): RoomResult[] {
    return (this.db.prepare('SELECT result FROM rejoin_results WHERE job_id = ? ORDER BY seq').all(jobId) as { result: string }[]).map((r) => JSON.parse(r.result) as RoomResult);
  }

  done(jobId: number): Set<string> {
    return new Set((this.db.prepare('SELECT room_id FROM rejoin_results WHERE job_id = ?').all(jobId) as { room_id: string }[]).map((r) => r.room_id));
  }
}

const USER_LOOKUP_CONCURRENCY = 8;

type UserStatus = { ok: true } | { ok: false; reason: string } | { ok: 'error'; reason: string };

/** The server part of a room id (room versions up to 11); v12 ids have none. */
export function roomIdServer(roomId: string): string | undefined {
  const colon = roomId.indexOf(':');
  return colon > 0 ? roomId.slice(colon + 1) : undefined;
}

/** Servers to ask, best first: those the admin named, those seen sending, the room id's own. */
export function candidateServers(roomId: string, via: readonly string[], seen: readonly string[], ownServer: string): string[] {
  const out: string[] = [];
  for (const s of [...via, ...seen, roomIdServer(roomId)]) {
    if (s && s !== ownServer && !out.includes(s)) out.push(s);
  }
  return out;
}

export function rejoinJob(deps: RejoinDeps): JobDefinition {
  const results = new RejoinResults(deps.db);
  return {
    type: 'rejoin',
    title: (raw) => {
      const a = parseRejoinArgs(raw);
      const what = a.all ? 'all lost rooms' : a.rooms.length === 1 ? a.rooms[0]! : `${a.rooms.length} rooms`;
      return `rejoin ${what}${a.dryRun ? ' (dry run)' : ''}${a.leaveSkipped ? ' (leaving skipped users)' : ''}`;
    },
    async run(ctx: JobContext) {
      const args = parseRejoinArgs(ctx.job.args);
      const resume = ctx.resumeFrom as RejoinCheckpoint | undefined;
      const cp: RejoinCheckpoint = resume ?? {
        rooms: args.all ? deps.rooms.list(['lost', 'recovered']).map((r) => r.roomId) : [...new Set(args.rooms)],
        startedTs: Date.now(),
      };
      if (!resume) ctx.checkpoint(cp);
      ctx.setTotal(cp.rooms.length);
      if (cp.rooms.length === 0) {
        return ok({ summary: args.all ? 'No room is recorded as lost: nothing to rejoin. (!lost list shows what was seen; !lost add records one by hand.)' : 'No room given.', details: { rooms: 0 } });
      }
      const fed = await deps.federation();
      if (!fed.ok) return fed;
      try {
        return await rejoinRooms(ctx, args, cp, fed.value);
      } finally {
        deps.releaseFederation();
      }
    },
  };

  async function rejoinRooms(ctx: JobContext, args: RejoinArgs, cp: RejoinCheckpoint, fedAccess: FederationAccess): Promise<Result<JobResult>> {
    const fed = { value: fedAccess };

    const log = ctx.log;
    const userStatus = new Map<string, Promise<UserStatus>>();
    let remaining = cp.rooms.length - results.done(ctx.job.id).size;
    let warnedAt = 0;
    const pacer = new JoinPacer({
      concurrency: deps.config.joinConcurrency,
      intervalMs: deps.config.joinIntervalMs,
      onRateLimited: (waitMs) => {
        // Once per job, and again only if it has gone on for a long while.
        if (warnedAt && Date.now() - warnedAt < 30 * 60_000) return;
        warnedAt = Date.now();
        const text = [
          `⏳ Synapse is rate-limiting the joins Steward makes (M_LIMIT_EXCEEDED, asked to wait ${formatDuration(waitMs)}). At this pace the ${remaining} room(s) still to do take about ${formatDuration(remaining * waitMs)}. Steward waits as asked and carries on.`,
          LIFT_LIMITS_ADVICE,
        ].join('\n');
        log.warn({ waitMs, remaining }, 'joins are rate-limited by the homeserver');
        void deps.notify(ctx.job, { text, html: `<p>${escapeHtml(text.split('\n')[0]!)}</p><pre>${escapeHtml(text.split('\n').slice(1).join('\n'))}</pre>` });
      },
    });

    const statusOf = (userId: string): Promise<UserStatus> => {
      let p = userStatus.get(userId);
      if (!p) {
        p = (async (): Promise<UserStatus> => {
          const r = await deps.http.request<Record<string, unknown>>('GET', path`/_synapse/admin/v2/users/${userId}`, { signal: ctx.signal });
          if (!r.ok) return r.error.status === 404 ? { ok: false, reason: 'no longer exists on this server' } : { ok: 'error', reason: `cannot look the user up: ${r.error.human}` };
          if (r.value.deactivated === true || r.value.deactivated === 1) return { ok: false, reason: 'deactivated' };
          if (r.value.locked === true || r.value.locked === 1) return { ok: false, reason: 'locked' };
          return { ok: true };
        })();
        userStatus.set(userId, p);
      }
      return p;
    };

    type Plan = { final: RoomResult } | { found: RoomResult & { rejoined: string[]; failed: UserNote[] }; toJoin: string[]; via: string[] };
    // Asking remote servers and checking users: `roomConcurrency` rooms at a time. Joins have their own
    // bound (the pacer), so a room waiting for a join slot does not hold up the next room's planning.
    const planSlot = limiter(deps.config.roomConcurrency);
    const planRoom = async (roomId: string): Promise<Plan> => {
      const lost = deps.rooms.get(roomId);
      const candidates = candidateServers(roomId, args.via, lost?.servers.map((s) => s.server) ?? [], deps.serverName);
      const base = { roomId, servers: [] as ServerAttempt[], via: [] as string[], rejoined: [] as string[], alreadyJoined: [] as string[], planned: [] as string[], skipped: [] as UserNote[], failed: [] as UserNote[], ts: Date.now() };
      if (candidates.length === 0) {
        return { final: { ...base, outcome: 'failed', reason: 'no server to ask for the room\'s state: name one with --via' } };
      }
      let state: RemoteRoomState | undefined;
      for (const server of candidates) {
        if (ctx.signal.aborted) break;
        const got = await fetchRemoteRoomState(fed.value.client, fed.value.keys, roomId, server, deps.serverName, { signal: ctx.signal });
        if (got.ok) {
          base.servers.push({ server, ok: true });
          state = got.value;
          break;
        }
        log.warn({ roomId, server, code: got.error.code, detail: got.error.log }, 'server did not give verifiable room state');
        base.servers.push({ server, ok: false, reason: got.error.human });
      }
      if (!state) return { final: { ...base, outcome: 'failed', reason: 'no server answered with room state that verifies; nobody was joined' } };
      const via = [state.server, ...candidates.filter((s) => s !== state.server), ...state.otherServers].filter((s, i, all) => all.indexOf(s) === i).slice(0, 5);
      const found = { ...base, stateFrom: state.server, eventId: state.eventId, roomVersion: state.roomVersion, via };
      if (state.localJoined.length === 0) {
        return { final: { ...found, outcome: 'nothing-to-do', reason: 'no user of this server is joined in the room\'s current state' } };
      }

      // Who is joined here already: a re-run must join nobody twice.
      const members = await deps.http.request<{ members?: unknown }>('GET', path`/_synapse/admin/v1/rooms/${roomId}/members`, { signal: ctx.signal });
      let known = new Set<string>();
      let roomKnown = false;
      if (members.ok) {
        roomKnown = true;
        known = new Set(Array.isArray(members.value.members) ? members.value.members.filter((m): m is string => typeof m === 'string') : []);
      } else if (members.error.status !== 404) {
        return { final: { ...found, outcome: 'failed', reason: `cannot read the room's local members: ${members.error.human}` } };
      }
      // Each user not joined here yet: do they still exist, may they act? Looked up a few at a time.
      const verdicts = new Map<string, 'join' | 'already' | UserNote & { failed?: boolean }>();
      await forEachConcurrent(state.localJoined.filter((u) => !known.has(u)), USER_LOOKUP_CONCURRENCY, async (userId) => {
        const status = await statusOf(userId);
        if (status.ok !== true) {
          verdicts.set(userId, { user: userId, reason: status.reason, ...(status.ok === 'error' ? { failed: true } : {}) });
          return;
        }
        if (roomKnown) {
          // The member list can be partial while Synapse finishes a fast join: ask the user's own view too.
          const joined = await deps.joinClient.joinedRooms(userId);
          if (joined.ok && joined.value.joined_rooms.includes(roomId)) {
            verdicts.set(userId, 'already');
            return;
          }
        }
        verdicts.set(userId, 'join');
      }, ctx.signal);
      const toJoin: string[] = [];
      for (const userId of state.localJoined) {
        const verdict = known.has(userId) ? 'already' : verdicts.get(userId);
        if (verdict === undefined) continue; // cancelled before it was looked up
        if (verdict === 'already') found.alreadyJoined.push(userId);
        else if (verdict === 'join') toJoin.push(userId);
        else if (verdict.failed) found.failed.push({ user: verdict.user, reason: verdict.reason });
        else found.skipped.push({ user: verdict.user, reason: verdict.reason });
      }
      // Skipped users the remote still counts as joined: stale memberships, reported (and left with --leave-skipped).
      const stale = found.skipped.filter((n) => STALE_REASONS.has(n.reason)).map((n) => n.user);
      if (stale.length) (found as { stale?: string[] }).stale = stale;
      if (args.dryRun) {
        found.planned.push(...toJoin);
        const outcome: RoomOutcome = toJoin.length > 0 ? 'planned' : found.failed.length ? 'failed' : 'already-recovered';
        return { final: { ...found, outcome } };
      }
      return { found: { ...found, outcome: 'failed' }, toJoin, via };
    };

    const recoverRoom = async (roomId: string): Promise<RoomResult> => {
      const plan = await planSlot(() => planRoom(roomId));
      if ('final' in plan) return plan.final;
      const { found, toJoin, via } = plan;

      // Leaves first: a server coming back into the room then takes in state that already has them.
      if (args.leaveSkipped && found.stale?.length && found.stateFrom) {
        const left: string[] = [];
        const leaveFailed: UserNote[] = [];
        for (const userId of found.stale) {
          if (ctx.signal.aborted) break;
          if (!fed.value.signingKey) {
            leaveFailed.push({ user: userId, reason: 'no signing key to sign the leave with' });
            continue;
          }
          const leave = await leaveOverFederation(fed.value.client, fed.value.signingKey, deps.serverName, found.stateFrom, roomId, userId, { signal: ctx.signal });
          if (leave.ok) {
            left.push(userId);
            log.info({ roomId, userId, server: found.stateFrom, eventId: leave.value.eventId }, 'left a stale membership over federation');
          } else {
            leaveFailed.push({ user: userId, reason: leave.error.human });
            log.warn({ roomId, userId, server: found.stateFrom, code: leave.error.code, detail: leave.error.log }, 'could not leave a stale membership over federation');
          }
        }
        Object.assign(found, { left, leaveFailed });
      }

      // The first join brings the server back into the room (a remote join); the others follow once it has.
      const joinOne = async (userId: string): Promise<boolean> => {
        const joined = await pacer.run(() => deps.joinClient.join(roomId, via, userId), ctx.signal);
        if (joined.ok) {
          found.rejoined.push(userId);
          return true;
        }
        found.failed.push({ user: userId, reason: joined.error.human });
        return false;
      };
      let rest = toJoin;
      while (rest.length > 0 && !ctx.signal.aborted) {
        const [first, ...others] = rest;
        rest = others;
        if (await joinOne(first!)) break;
      }
      await forEachConcurrent(rest, deps.config.joinConcurrency, async (u) => {
        await joinOne(u);
      }, ctx.signal);
      found.rejoined.sort();
      const outcome: RoomOutcome = found.failed.length === 0 && !found.leaveFailed?.length
        ? (found.rejoined.length > 0 ? 'rejoined' : 'already-recovered')
        : found.rejoined.length > 0 || found.alreadyJoined.length > 0 ? 'partial' : 'failed';
      return { ...found, outcome };
    };

    const done = results.done(ctx.job.id);
    let seq = done.size;
    const order = cp.rooms.filter((r) => !done.has(r));
    await forEachConcurrent(order, deps.config.roomConcurrency + deps.config.joinConcurrency * 2, async (roomId) => {
      let result: RoomResult;
      try {
        result = await recoverRoom(roomId);
      } catch (err) {
        // A bug in one room must not sink the others; it is recorded as that room's failure.
        log.error({ err, roomId }, 'rejoin of a room crashed');
        result = { roomId, outcome: 'failed', servers: [], via: [], rejoined: [], alreadyJoined: [], planned: [], skipped: [], failed: [], reason: `internal error: ${errorMessage(err)}`, ts: Date.now() };
      }
      if (ctx.signal.aborted) return; // left undone: a resume does it again
      results.save(ctx.job.id, seq++, result);
      remaining -= 1;
      if (!args.dryRun && (result.outcome === 'rejoined' || result.outcome === 'already-recovered' || result.outcome === 'nothing-to-do')) {
        deps.rooms.markRecovered(roomId, ctx.job.id);
      }
      if (result.outcome === 'failed' || result.outcome === 'partial') {
        const why = result.reason ?? [...result.failed, ...(result.leaveFailed ?? [])].map((f) => `${f.user}: ${f.reason}`).join('; ');
        ctx.itemFailed(roomId, failure(result.outcome === 'failed' ? 'E_ROOM_FAILED' : 'E_ROOM_PARTIAL', why));
      } else {
        ctx.advance();
      }
      ctx.checkpoint(cp);
    }, ctx.signal);
    if (ctx.signal.aborted) return { ok: false, error: failure('E_CANCELLED', 'stopped') };

    const all = results.forJob(ctx.job.id);
    const t = totals(all);
    const forecast = args.dryRun ? forecastText(all.filter((r) => r.planned.length > 0 && r.alreadyJoined.length === 0).length, t.planned) : undefined;
    const reportPath = join(deps.config.reports, `rejoin-${ctx.job.id}${args.dryRun ? '-plan' : ''}.json`);
    let written: string | null = reportPath;
    try {
      const doc = reportDocument(all, {
        job_id: ctx.job.id, dry_run: args.dryRun, server_name: deps.serverName, started_ts: cp.startedTs, finished_ts: Date.now(),
        options: { rooms: args.all ? 'all' : args.rooms, via: args.via },
      });
      await writeFileAtomic(reportPath, `${JSON.stringify(doc, null, 2)}\n`, 0o600);
    } catch (err) {
      log.warn({ err, reportPath }, 'could not write the rejoin report');
      written = null;
    }
    const summary = summaryText(all, { dryRun: args.dryRun, reportPath: written, ...(forecast ? { forecast } : {}) });
    return ok({ summary, details: { report: written, ...t, rateLimited: pacer.rateLimited } });
  }
}
