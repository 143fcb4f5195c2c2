import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FederationAccess, FederationProvider } from '../federation/federation-access.ts';
import type { FederationFailure, FederationRequestOptions } from '../federation/federation-client.ts';
import type { KeyLookup } from '../federation/event-verify.ts';
import { isJsonObject } from '../federation/json-object.ts';
import { roomVersion } from '../federation/room-versions.ts';
import type { HttpFailure } from '../homeserver/http.ts';
import type { AdminForwardExtremity, SynapseAdmin } from '../homeserver/synapse-admin.ts';
import type { JobContext, JobDefinition } from '../jobs/runner.ts';
import type { JobStore } from '../jobs/job-store.ts';
import { forEachConcurrent } from '../util/pool.ts';
import { errorMessage, fail, failure, ok, type Failure, type Result } from '../util/result.ts';
import { CHECKSUM_ALGORITHM, sectionChecksums } from './dump-checksums.ts';
import { exists, fileNameFor, newDumpId, prepareDumpDir, removeOrphanTemps, writeJson } from './dump-files.ts';
import { DUMP_MANIFEST_FORMAT } from './dump-users.ts';
import { checkAuthChainClosure, compareWithCurrentState, stateAfter, verifyRoomState } from './room-auth-chain.ts';
import type { DumpedEvent, FederationCounts } from './room-auth-chain.ts';

export const ROOM_DUMP_FORMAT = 'steward.room-dump/1';
const PAGE_SIZE = 100;
/** A column that never changes, so offsets stay put while rooms are renamed during the listing. */
const LIST_ORDER = 'creator';

export interface DumpRoomsArgs {
  readonly out: string;
  readonly rooms: readonly string[];
  readonly concurrency: number;
}

/** Sums over the rooms of a dump, kept in the checkpoint so a resumed dump reports them all. */
export interface RoomDumpTotals {
  state_events: number;
  auth_chain_events: number;
  events_verified: number;
  events_failed: number;
  redacted_copies_used: number;
  rooms_auth_chain_open: number;
  rooms_not_matching_current_state: number;
}

interface DumpRoomsCheckpoint {
  readonly dumpId: string;
  readonly startedTs: number;
  /** Admin API offset of the next page to do; undefined before the first page. */
  readonly from?: number;
  /** Index into an explicit --room list. */
  readonly index?: number;
  /** Totals of the rooms finished before this checkpoint. */
  readonly totals?: RoomDumpTotals;
}

/** The part of FederationClient used here; tests pass a fake remote. */
export interface RoomFederationClient {
  request<T>(destination: string, method: string, pathWithQuery: string, opts?: FederationRequestOptions): Promise<Result<T, FederationFailure>>;
}

export interface DumpRoomsDeps {
  readonly admin: SynapseAdmin;
  readonly jobs: JobStore;
  readonly federation: FederationProvider;
  readonly serverName: string;
  readonly stewardVersion: string;
}

export function parseDumpRoomsArgs(args: Record<string, unknown>): DumpRoomsArgs {
  return {
    out: String(args.out),
    rooms: Array.isArray(args.rooms) ? args.rooms.map(String) : [],
    concurrency: typeof args.concurrency === 'number' ? args.concurrency : 4,
  };
}

const zeroTotals = (): RoomDumpTotals => ({
  state_events: 0,
  auth_chain_events: 0,
  events_verified: 0,
  events_failed: 0,
  redacted_copies_used: 0,
  rooms_auth_chain_open: 0,
  rooms_not_matching_current_state: 0,
});

/** What one room adds to the totals, read from its document (also from a file an earlier run wrote). */
export function roomTotals(document: Record<string, unknown>): RoomDumpTotals {
  const t = zeroTotals();
  const fed = document.federation;
  if (!isJsonObject(fed) || !isJsonObject(fed.counts)) return t;
  const c = fed.counts as unknown as FederationCounts;
  t.state_events = c.state_events;
  t.auth_chain_events = c.auth_chain_events;
  t.events_verified = c.verified;
  t.events_failed = c.failed;
  t.redacted_copies_used = c.redacted_copies_used;
  t.rooms_auth_chain_open = fed.auth_chain_closed === true ? 0 : 1;
  t.rooms_not_matching_current_state = fed.matches_current_state === true ? 0 : 1;
  return t;
}

function addTotals(into: RoomDumpTotals, more: RoomDumpTotals): void {
  for (const k of Object.keys(into) as (keyof RoomDumpTotals)[]) into[k] += more[k];
}

interface StateAnswer {
  pdus?: unknown;
  auth_chain?: unknown;
}

/** The latest event: the deepest forward extremity (the most recently received among equals). */
export function latestExtremity(extremities: readonly AdminForwardExtremity[]): AdminForwardExtremity | undefined {
  return [...extremities]
    .filter((e) => typeof e?.event_id === 'string')
    .sort((a, b) => (b.depth ?? 0) - (a.depth ?? 0) || (b.received_ts ?? 0) - (a.received_ts ?? 0) || (a.event_id < b.event_id ? -1 : 1))[0];
}

/**
 * The room as our own server shows it over federation, at its latest event: `/state` with
 * `event_id` (the state before that event and its full auth chain) and `/event` (the event
 * itself), every event verified, the auth chain checked for closure, and the state after the
 * event compared with `currentState` (the admin API's). Our server answers only while it is in
 * the room (has a joined member).
 */
export async function collectRoomFederation(
  roomId: string,
  versionId: string,
  currentState: readonly unknown[] | null,
  deps: { readonly admin: SynapseAdmin; readonly client: RoomFederationClient; readonly keys: KeyLookup; readonly serverName: string },
  signal?: AbortSignal,
): Promise<Result<Record<string, unknown>>> {
  const version = roomVersion(versionId);
  if (!version.ok) return version;
  const opts = signal ? { signal } : {};
  const extremities = await deps.admin.forwardExtremities(roomId, opts);
  if (!extremities.ok) return fail(extremities.error.code, `Cannot read the room's forward extremities: ${extremities.error.human}`, extremities.error.log);
  const results = Array.isArray(extremities.value.results) ? extremities.value.results : [];
  const latest = latestExtremity(results);
  if (latest === undefined) return fail('E_NO_EVENTS', 'The room has no forward extremity: our server holds no event to ask its state at.');
  const atEventId = latest.event_id;
  const room = encodeURIComponent(roomId);
  const [state, event] = await Promise.all([
    deps.client.request<StateAnswer>(deps.serverName, 'GET', `/_matrix/federation/v1/state/${room}?event_id=${encodeURIComponent(atEventId)}`, opts),
    deps.client.request<{ pdus?: unknown }>(deps.serverName, 'GET', `/_matrix/federation/v1/event/${encodeURIComponent(atEventId)}`, opts),
  ]);
  const fedFailure = (what: string, f: FederationFailure): Result<never> =>
    fail(f.errcode ?? f.code, `${what} from our own server failed: ${f.human}${f.status === 403 ? ' (our server answers only for rooms it is still in)' : ''}`, f.log);
  if (!state.ok) return fedFailure('/state', state.error);
  if (!event.ok) return fedFailure('/event', event.error);
  const { pdus, auth_chain: authChain } = state.value;
  if (!Array.isArray(pdus) || !Array.isArray(authChain)) return fail('E_BAD_ANSWER', '/state answered without pdus and auth_chain lists.');
  const eventPdus = event.value.pdus;
  const atEvent = Array.isArray(eventPdus) && eventPdus.length === 1 ? eventPdus[0] : undefined;

  const verified = await verifyRoomState({ atEventId, atEvent, pdus, authChain }, roomId, versionId, deps.keys, signal);
  if (!verified.ok) return verified;
  const { state: kept, authChain: chain, atEvent: at, counts, rejected } = verified.value;
  const closure = checkAuthChainClosure(eventsOf(at, kept, chain), roomId, version.value);
  const comparison = currentState === null ? null : compareWithCurrentState(stateAfter(kept, at), currentState);
  return ok({
    server: deps.serverName,
    at_event_id: atEventId,
    forward_extremities: results.map((e) => ({ event_id: e.event_id, depth: e.depth })),
    counts,
    auth_chain_closed: closure.closed,
    missing_auth_events: closure.missing,
    missing_auth_events_count: closure.missingCount,
    matches_current_state: comparison?.matches ?? null,
    current_state_differences: comparison && !comparison.matches ? { only_in_current_state: comparison.onlyInCurrentState, only_in_federation: comparison.onlyInFederation } : null,
    rejected,
    at_event: at,
    state: kept,
    auth_chain: chain,
  });
}

function* eventsOf(at: DumpedEvent | null, state: readonly DumpedEvent[], chain: readonly DumpedEvent[]): Generator<DumpedEvent> {
  if (at) yield at;
  yield* state;
  yield* chain;
}

/**
 * One room as one portable document: admin details, current state (admin API), and the room as
 * federation sees it (see collectRoomFederation). Fails only when the room's details cannot be
 * read; a section that fails is recorded in `errors` and returned in `failed`.
 */
export async function collectRoom(
  roomId: string,
  deps: { readonly admin: SynapseAdmin; readonly serverName: string },
  access: Pick<FederationAccess, 'keys'> & { readonly client: RoomFederationClient },
  signal?: AbortSignal,
): Promise<Result<{ document: Record<string, unknown>; failed: Failure[] }>> {
  const opts = signal ? { signal } : {};
  const details = await deps.admin.room(roomId, opts);
  if (!details.ok) return { ok: false, error: details.error };
  const errors: Record<string, { code: string; message: string }> = {};
  const failed: Failure[] = [];
  const record = (section: string, f: Failure): void => {
    errors[section] = { code: f.code, message: f.human };
    failed.push(failure(f.code, `${section}: ${f.human}`, `${section}: ${f.log}`));
  };
  const state = await deps.admin.roomState(roomId, opts);
  const currentState = state.ok && Array.isArray(state.value.state) ? state.value.state : null;
  if (!state.ok) record('current_state', state.error as HttpFailure);
  const versionId = typeof details.value.version === 'string' ? details.value.version : undefined;
  // Local aliases live in the room directory, not in the room: restore moves them to the restored room.
  const aliases = await deps.admin.roomAliases(roomId, opts);
  if (!aliases.ok) record('aliases', aliases.error);
  let federation: Record<string, unknown> | null = null;
  if (versionId === undefined) {
    record('federation', failure('E_NO_ROOM_VERSION', 'The admin API does not name the room version.'));
  } else {
    const fed = await collectRoomFederation(roomId, versionId, currentState, { admin: deps.admin, client: access.client, keys: access.keys, serverName: deps.serverName }, signal);
    if (fed.ok) federation = fed.value;
    else record('federation', fed.error);
  }
  const document: Record<string, unknown> = {
    format: ROOM_DUMP_FORMAT,
    room_id: roomId,
    dumped_ts: Date.now(),
    room_version: versionId ?? null,
    details: details.value,
    current_state: currentState,
    aliases: aliases.ok && Array.isArray(aliases.value.aliases) ? aliases.value.aliases.filter((a) => typeof a === 'string') : null,
  };
  if (failed.length > 0) document.errors = errors;
  document.federation = federation; // last: the big part
  return ok({ document, failed });
}

/** Pages through the admin API's room list from offset `from`, one page at a time. */
async function* roomPages(admin: SynapseAdmin, from: number | undefined, signal: AbortSignal): AsyncGenerator<Result<{ rooms: string[]; total: number; next?: number }, HttpFailure>> {
  let offset = from;
  for (;;) {
    const page = await admin.listRooms(offset, PAGE_SIZE, LIST_ORDER, { signal });
    if (!page.ok) {
      yield page;
      return;
    }
    const rooms = Array.isArray(page.value.rooms) ? page.value.rooms.filter((r) => typeof r?.room_id === 'string').map((r) => r.room_id) : [];
    const nextRaw = page.value.next_batch;
    const next = nextRaw === undefined || nextRaw === null ? undefined : Number(nextRaw);
    yield ok({ rooms, total: typeof page.value.total_rooms === 'number' ? page.value.total_rooms : rooms.length, ...(next !== undefined && Number.isFinite(next) ? { next } : {}) });
    if (next === undefined || !Number.isFinite(next) || signal.aborted) return;
    offset = next;
  }
}

export function dumpRoomsJob(deps: DumpRoomsDeps): JobDefinition {
  return {
    type: 'dump-rooms',
    title: (raw) => {
      const args = parseDumpRoomsArgs(raw);
      return args.rooms.length > 0 ? `dump rooms (${args.rooms.length} listed)` : 'dump rooms';
    },
    async run(ctx: JobContext) {
      const args = parseDumpRoomsArgs(ctx.job.args);
      const resume = ctx.resumeFrom as DumpRoomsCheckpoint | undefined;
      const cp: DumpRoomsCheckpoint = resume ?? { dumpId: newDumpId('rooms', ctx.job.id), startedTs: Date.now() };
      const access = await deps.federation.get();
      if (!access.ok) return { ok: false, error: failure(access.error.code, `dump rooms reads each room over federation from our own server: ${access.error.human}`, access.error.log) };
      let dir: string;
      try {
        dir = await prepareDumpDir(args.out, cp.dumpId, 'rooms');
      } catch (err) {
        return { ok: false, error: failure('E_DUMP_DIR', `Cannot create the dump folder under ${args.out}: ${errorMessage(err)}`) };
      }
      const root = join(args.out, cp.dumpId);
      // Rooms that failed in an earlier run of this job are recorded already; their files (partial) are not counted again.
      const failedBefore = new Set<string>();
      if (resume) {
        const orphans = await removeOrphanTemps(dir);
        if (orphans > 0) ctx.log.info({ orphans }, 'removed temp files left by the interrupted run');
        for (const e of deps.jobs.errors(ctx.job.id)) failedBefore.add(e.item);
      } else {
        ctx.checkpoint(cp);
      }
      const version = await deps.admin.serverVersion({ signal: ctx.signal });
      const synapseVersion = version.ok ? version.value.server_version : null;
      const totals = { ...zeroTotals(), ...cp.totals };
      const run = { written: 0, skipped: 0, partial: 0 };

      const dumpOne = async (roomId: string): Promise<void> => {
        const file = join(dir, fileNameFor(roomId));
        if (await exists(file)) {
          // Written before an interruption: files are atomic, so it is whole.
          run.skipped += 1;
          let previous: Record<string, unknown> | null = null;
          try {
            previous = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
          } catch (err) {
            ctx.log.warn({ room: roomId, err: errorMessage(err) }, 'cannot read a room file of the interrupted run');
          }
          if (previous) addTotals(totals, roomTotals(previous));
          const errors = previous && isJsonObject(previous.errors) ? previous.errors : null;
          if (errors && !failedBefore.has(roomId)) {
            ctx.itemFailed(roomId, failure('E_PARTIAL', `sections failed: ${Object.keys(errors).join(', ')}`));
          } else if (!errors) {
            ctx.advance();
          }
          return;
        }
        const collected = await collectRoom(roomId, deps, access.value, ctx.signal);
        if (ctx.signal.aborted) return;
        if (!collected.ok) {
          ctx.itemFailed(roomId, collected.error);
          return;
        }
        try {
          await writeJson(file, collected.value.document);
        } catch (err) {
          ctx.itemFailed(roomId, failure('E_WRITE', `cannot write ${file}: ${errorMessage(err)}`));
          return;
        }
        run.written += 1;
        addTotals(totals, roomTotals(collected.value.document));
        const [first, ...more] = collected.value.failed;
        if (first) {
          run.partial += 1;
          // A room whose federation part failed is a per-room error; its file keeps what the admin API gave.
          ctx.itemFailed(roomId, more.length === 0 ? first : failure(first.code, [first, ...more].map((f) => f.human).join('; '), [first, ...more].map((f) => f.log).join('; ')));
        } else {
          ctx.advance();
        }
      };

      await writeJson(join(root, 'manifest.json'), manifest(args, cp, 'in-progress', ctx, synapseVersion, totals, run));
      if (args.rooms.length > 0) {
        ctx.setTotal(args.rooms.length);
        const start = cp.index ?? 0;
        for (let i = start; i < args.rooms.length && !ctx.signal.aborted; i += PAGE_SIZE) {
          await forEachConcurrent(args.rooms.slice(i, i + PAGE_SIZE), args.concurrency, dumpOne, ctx.signal);
          if (!ctx.signal.aborted) ctx.checkpoint({ ...cp, index: i + PAGE_SIZE, totals });
        }
      } else {
        for await (const page of roomPages(deps.admin, cp.from, ctx.signal)) {
          if (!page.ok) {
            if (ctx.signal.aborted) break;
            return { ok: false, error: failure(page.error.code, `Listing rooms failed: ${page.error.human}`, page.error.log) };
          }
          ctx.setTotal(page.value.total);
          await forEachConcurrent(page.value.rooms, args.concurrency, dumpOne, ctx.signal);
          if (ctx.signal.aborted) break;
          ctx.checkpoint({ ...cp, from: page.value.next, totals });
        }
      }
      if (ctx.signal.aborted) return { ok: false, error: failure('E_CANCELLED', 'stopped') };

      const final = manifest(args, cp, 'complete', ctx, synapseVersion, totals, run);
      // Whole-file checksums let restore tell a truncated or edited room file from a good one.
      final.checksums = { algorithm: CHECKSUM_ALGORITHM, files: await sectionChecksums(root, 'rooms') };
      await writeJson(join(root, 'manifest.json'), final);
      const counts = final.counts as Record<string, number>;
      const notes = [
        counts.rooms_failed ? `${counts.rooms_failed} failed` : '',
        totals.events_failed ? `${totals.events_failed} events rejected` : '',
        totals.rooms_auth_chain_open ? `${totals.rooms_auth_chain_open} with an incomplete auth chain` : '',
      ].filter(Boolean);
      return ok({
        summary: `${counts.rooms_dumped} rooms dumped to ${root} (${totals.events_verified} events verified)${notes.length ? `, ${notes.join(', ')}` : ''}`,
        details: { directory: root, ...counts },
      });
    },
  };

  function manifest(args: DumpRoomsArgs, cp: DumpRoomsCheckpoint, state: string, ctx: JobContext, synapseVersion: string | null, totals: RoomDumpTotals, run: { written: number; skipped: number; partial: number }): Record<string, unknown> {
    const counters = ctx.counters();
    const errors = deps.jobs.errors(ctx.job.id).map((e) => ({ room: e.item, code: e.code, message: e.message }));
    return {
      format: DUMP_MANIFEST_FORMAT,
      kind: 'rooms',
      state,
      server_name: deps.serverName,
      steward_version: deps.stewardVersion,
      synapse_version: synapseVersion,
      job_id: ctx.job.id,
      started_ts: cp.startedTs,
      finished_ts: state === 'complete' ? Date.now() : null,
      options: { rooms: args.rooms },
      counts: {
        rooms_total: counters.total,
        rooms_dumped: counters.done,
        rooms_failed: errors.length,
        rooms_written_this_run: run.written,
        rooms_already_present: run.skipped,
        rooms_partial_this_run: run.partial,
        resumed_runs: ctx.job.resumedCount,
        ...totals,
      },
      errors,
    };
  }
}
