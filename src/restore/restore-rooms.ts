import type { FederationProvider } from '../federation/federation-access.ts';
import type { ClientApi } from '../homeserver/client-api.ts';
import { path, type HomeserverHttp } from '../homeserver/http.ts';
import type { JobResult } from '../jobs/job-store.ts';
import type { JobContext, JobDefinition } from '../jobs/runner.ts';
import type { Db } from '../store/database.ts';
import { CREATED_ROOM_KEY } from '../admin-room/admin-room.ts';
import { join } from 'node:path';
import { newDumpId } from '../dump/dump-files.ts';
import { KeyValueStore } from '../store/kv.ts';
import { ensurePrivateDir, writeFileAtomic } from '../util/atomic-write.ts';
import { errorMessage, failure, ok, type Result } from '../util/result.ts';
import { openArchive, roomArchiveDir, surveyRoomArchive, type ArchiveCounts } from './room-archive.ts';
import { readRoomDocument, validateRoomDump, type RoomDumpIndex } from './room-dump-reader.ts';
import { planRoom, type RoomPlan } from './room-plan.ts';
import { recreateRoom } from './room-recreate.ts';
import { restoreReadMarkers, type MarkerNotSet, type MarkerTarget } from './room-read-markers.ts';
import { rejoinRoom } from './room-rejoin.ts';
import { RestoredRoomStore, type ReadMarker } from './room-store.ts';

export interface RestoreRoomsArgs {
  readonly dump: string;
  readonly archive: string | null;
  readonly dryRun: boolean;
  /** Only these old room ids (empty: every room of the dump). */
  readonly rooms: readonly string[];
}

export function parseRestoreRoomsArgs(raw: Record<string, unknown>): RestoreRoomsArgs {
  return {
    dump: String(raw.dump),
    archive: typeof raw.archive === 'string' ? raw.archive : null,
    dryRun: raw.dryRun === true,
    rooms: Array.isArray(raw.rooms) ? raw.rooms.filter((r): r is string => typeof r === 'string') : [],
  };
}

export interface RestoreRoomsDeps {
  readonly db: Db;
  readonly http: HomeserverHttp;
  readonly client: ClientApi;
  readonly federation: FederationProvider;
  readonly serverName: string;
  readonly botUserId: string;
  /** Where the per-room report goes (<storage.dumps>/restore-reports). */
  readonly reportsDir: string;
}

/** completed: restored before, and the steps that had failed then are done now. */
export type RoomOutcome = 'rejoined' | 'recreated' | 'already-restored' | 'completed' | 'partial' | 'skipped' | 'failed' | 'planned';

export interface RoomRestoreResult {
  readonly roomId: string;
  readonly outcome: RoomOutcome;
  readonly newRoomId?: string;
  /** One line for the summary: what was (or would be) done. */
  readonly text: string;
  readonly notes: readonly string[];
  readonly historyImported?: number;
  /** Read markers from the user dump handled this time: how many were set, and which were not, why. */
  readonly readMarkers?: { readonly set: number; readonly notSet: readonly MarkerNotSet[] };
}

interface Survey {
  readonly plan: RoomPlan;
  readonly file: string;
  readonly archive: { readonly roomDir: string; readonly counts: ArchiveCounts } | null;
}

/**
 * Everything is read and checked before anything is written: the dump (manifest, checksums, every
 * room file) and, with --archive, every line of the archive of each room to recreate. Any problem
 * fails the job with nothing restored.
 */
async function survey(args: RestoreRoomsArgs, serverName: string, botUserId: string, stewardRooms: ReadonlySet<string>): Promise<Result<{ index: RoomDumpIndex; rooms: Survey[] }>> {
  const index = await validateRoomDump(args.dump, serverName);
  if (!index.ok) return index;
  const wanted = new Set(args.rooms);
  const missing = args.rooms.filter((r) => !index.value.rooms.some((x) => x.roomId === r));
  if (missing.length > 0) return { ok: false, error: failure('E_USAGE', `Not in the dump: ${missing.join(', ')}`) };
  const archive = args.archive ? await openArchive(args.archive, serverName) : null;
  if (archive && !archive.ok) return archive;
  const rooms: Survey[] = [];
  for (const entry of index.value.rooms) {
    if (wanted.size > 0 && !wanted.has(entry.roomId)) continue;
    const doc = await readRoomDocument(index.value, entry.file);
    if (!doc.ok) return doc;
    // Steward makes itself a new admin room when it starts; the old one (the only kind of room the bot creates) is not worth bringing back.
    const creator = doc.value.state.find((e) => e.type === 'm.room.create')?.sender;
    const plan: RoomPlan = stewardRooms.has(doc.value.roomId) || creator === botUserId
      ? { kind: 'skip', roomId: doc.value.roomId, reason: 'Steward\'s own admin room: Steward makes a new one when it starts' }
      : planRoom(doc.value, serverName);
    let roomArchive: Survey['archive'] = null;
    if (archive?.ok && plan.kind === 'recreate') {
      const dir = await roomArchiveDir(archive.value, plan.roomId);
      if (!dir.ok) return dir;
      if (dir.value) {
        const counts = await surveyRoomArchive(dir.value, plan.roomId);
        if (!counts.ok) return { ok: false, error: failure(counts.error.code, `The archive of ${plan.roomId}: ${counts.error.human}`, counts.error.log) };
        roomArchive = { roomDir: dir.value, counts: counts.value };
      }
    }
    rooms.push({ plan, file: entry.file, archive: roomArchive });
  }
  return ok({ index: index.value, rooms });
}

function describePlan(s: Survey, store: RestoredRoomStore): RoomRestoreResult {
  const r = describeRoom(s, store);
  const markers = s.plan.kind === 'skip' ? 0 : store.markersToSet(s.plan.roomId).length;
  return markers > 0 ? { ...r, text: `${r.text}; ${markers} read marker(s) to set` } : r;
}

function describeRoom(s: Survey, store: RestoredRoomStore): RoomRestoreResult {
  const { plan } = s;
  const done = store.get(plan.roomId);
  if (plan.kind === 'skip') return { roomId: plan.roomId, outcome: 'skipped', text: `skipped: ${plan.reason}`, notes: [] };
  const failed = plan.kind === 'recreate' && done?.phase === 'finished' && done.newRoomId ? store.failedSteps(plan.roomId) : [];
  if (failed.length > 0 && done?.newRoomId) {
    const problems = failed.flatMap((f) => f.problems);
    return { roomId: plan.roomId, outcome: 'planned', newRoomId: done.newRoomId, text: `would retry in ${done.newRoomId} what failed before: ${problems.join('; ')}`, notes: problems };
  }
  if (done?.phase === 'finished' && done.newRoomId) {
    const text = plan.kind === 'recreate' ? `already restored as ${done.newRoomId}` : 'already rejoined (a run asks again whether everyone is joined)';
    return { roomId: plan.roomId, outcome: 'already-restored', newRoomId: done.newRoomId, text, notes: [] };
  }
  if (plan.kind === 'rejoin') {
    return { roomId: plan.roomId, outcome: 'planned', text: `would rejoin via ${plan.via.join(', ')} (${plan.localMembers.length} of our users were joined: ${plan.localMembers.join(', ')})`, notes: [] };
  }
  if (done?.newRoomId && plan.kind === 'recreate') {
    return { roomId: plan.roomId, outcome: 'planned', newRoomId: done.newRoomId, text: `would carry on restoring into ${done.newRoomId} (an earlier run stopped after the ${done.phase} step)`, notes: [] };
  }
  const history = s.archive ? `, ${s.archive.counts.byKind.message + s.archive.counts.byKind.redaction} history event(s) to import${s.archive.counts.byKind.encrypted ? ` (${s.archive.counts.byKind.encrypted} encrypted not imported)` : ''}` : '';
  return {
    roomId: plan.roomId,
    outcome: 'planned',
    text: `would recreate as ${plan.creatorCandidates[0]} with ${plan.initialState.length + 1} state event(s), ${plan.joined.length} member(s), ${plan.aliases.length} alias(es)${history}`,
    notes: [],
  };
}

export function restoreRoomsJob(deps: RestoreRoomsDeps): JobDefinition {
  const store = new RestoredRoomStore(deps.db);
  return {
    type: 'restore-rooms',
    title: (raw) => {
      const a = parseRestoreRoomsArgs(raw);
      return `restore rooms${a.archive ? ' with history' : ''}${a.dryRun ? ' (dry run)' : ''}`;
    },
    async run(ctx: JobContext): Promise<Result<JobResult>> {
      const args = parseRestoreRoomsArgs(ctx.job.args);
      const ownRoom = new KeyValueStore(deps.db).get(CREATED_ROOM_KEY);
      const surveyed = await survey(args, deps.serverName, deps.botUserId, new Set(ownRoom ? [ownRoom] : []));
      if (!surveyed.ok) return { ok: false, error: failure(surveyed.error.code, `Nothing was restored: ${surveyed.error.human}`, surveyed.error.log) };
      const rooms = surveyed.value.rooms;
      ctx.setTotal(rooms.length);
      if (args.dryRun) {
        const planned = rooms.map((s) => describePlan(s, store));
        ctx.advance(planned.length);
        return ok(summarise(planned, true, surveyed.value.index.root, await writeReport(planned, true, []), []));
      }
      const usable = new Map<string, Promise<boolean>>();
      const userUsable = (userId: string): Promise<boolean> => {
        let p = usable.get(userId);
        if (!p) {
          p = deps.http.request<Record<string, unknown>>('GET', path`/_synapse/admin/v2/users/${userId}`, { signal: ctx.signal })
            .then((r) => r.ok && !r.value.deactivated && !r.value.locked);
          usable.set(userId, p);
        }
        return p;
      };
      const caps = await deps.client.capabilities();
      const versions = caps.ok ? (caps.value.capabilities['m.room_versions'] as { default?: unknown; available?: Record<string, unknown> } | undefined) : undefined;
      const roomVersions = {
        available: new Set(Object.keys(versions?.available ?? {})),
        default: typeof versions?.default === 'string' ? versions.default : null,
      };
      const federation = async () => {
        const f = await deps.federation.get();
        return f.ok ? ok({ client: f.value.client, keys: f.value.keys }) : f;
      };

      const done = store.doneInJob(ctx.job.id);
      let seq = done.size;
      for (const s of rooms) {
        if (ctx.signal.aborted) break;
        if (done.has(s.plan.roomId)) {
          ctx.advance();
          continue;
        }
        let result: RoomRestoreResult;
        try {
          result = await restoreOne(s);
        } catch (err) {
          ctx.log.error({ err, roomId: s.plan.roomId }, 'restoring a room crashed');
          result = { roomId: s.plan.roomId, outcome: 'failed', text: `failed: internal error: ${errorMessage(err)}`, notes: [] };
        }
        if (ctx.signal.aborted) break; // left undone: a resume does it again
        store.saveResult(ctx.job.id, seq++, s.plan.roomId, result.outcome, result);
        if (result.outcome === 'failed' || result.outcome === 'partial') ctx.itemFailed(s.plan.roomId, failure(result.outcome === 'failed' ? 'E_ROOM_FAILED' : 'E_ROOM_PARTIAL', result.text));
        else ctx.advance();
        ctx.checkpoint({ seq });
      }
      deps.federation.close();
      if (ctx.signal.aborted) return { ok: false, error: failure('E_CANCELLED', 'stopped') };
      const all = store.results<RoomRestoreResult>(ctx.job.id);
      const markers = markersNotSet(rooms);
      return ok(summarise(all, false, surveyed.value.index.root, await writeReport(all, false, markers), markers));

      /** Every read marker of the dump's rooms that is not set now, whichever run last tried it. */
      function markersNotSet(surveyed: readonly Survey[]): ReadMarker[] {
        return store.markersNotSet(surveyed.map((x) => x.plan.roomId));
      }

      /** Every room's line, also when the summary shows only some, and every read marker not restored: one JSON document, 0600. */
      async function writeReport(results: readonly RoomRestoreResult[], dryRun: boolean, markers: readonly ReadMarker[]): Promise<string | null> {
        const file = join(deps.reportsDir, `${newDumpId(dryRun ? 'restore-rooms-dry-run' : 'restore-rooms', ctx.job.id)}.json`);
        try {
          await ensurePrivateDir(deps.reportsDir);
          const doc = {
            format: 'steward.restore-rooms-report/1', job_id: ctx.job.id, dry_run: dryRun, server_name: deps.serverName, dump: args.dump, archive: args.archive, finished_ts: Date.now(), rooms: results,
            read_markers_not_restored: markers.map(markerEntry),
          };
          await writeFileAtomic(file, `${JSON.stringify(doc, null, 2)}\n`, 0o600);
          return file;
        } catch (err) {
          ctx.log.warn({ err: errorMessage(err), file }, 'could not write the restore rooms report');
          return null;
        }
      }

      /** The room, then the read markers the user dump had in it (set once the room is back, reported when they cannot be). */
      async function restoreOne(s: Survey): Promise<RoomRestoreResult> {
        const result = await restoreRoom(s);
        let target: MarkerTarget | null = null;
        if (s.plan.kind === 'skip') target = { kind: 'skip', reason: s.plan.reason };
        else if (result.newRoomId && result.outcome !== 'failed') target = { kind: s.plan.kind, roomId: result.newRoomId };
        if (!target || ctx.signal.aborted) return result;
        const markers = await restoreReadMarkers(s.plan.roomId, target, { http: deps.http, store }, ctx.signal);
        if (markers.set.length === 0 && markers.notSet.length === 0) return result;
        const said = `read markers: ${markers.set.length} set${markers.notSet.length ? `, ${markers.notSet.length} not (${markers.notSet.map((m) => m.userId).join(', ')}; see the list below)` : ''}`;
        return { ...result, text: `${result.text}; ${said}`, readMarkers: { set: markers.set.length, notSet: markers.notSet } };
      }

      async function restoreRoom(s: Survey): Promise<RoomRestoreResult> {
        const { plan } = s;
        if (plan.kind === 'skip') return { roomId: plan.roomId, outcome: 'skipped', text: `skipped: ${plan.reason}`, notes: [] };
        if (plan.kind === 'rejoin') {
          const r = await rejoinRoom(plan, { http: deps.http, client: deps.client, store, serverName: deps.serverName, federation, userUsable }, ctx.signal);
          if (!r.ok) return { roomId: plan.roomId, outcome: 'failed', text: `failed: ${r.error.human}`, notes: [] };
          const v = r.value;
          const outcome: RoomOutcome = v.rejoined.length > 0 ? (v.notes.length > 0 ? 'partial' : 'rejoined') : v.alreadyJoined.length > 0 ? (v.notes.length > 0 ? 'partial' : 'already-restored') : 'failed';
          const text = v.rejoined.length > 0 || v.alreadyJoined.length === 0
            ? `rejoined via ${v.stateFrom}: ${v.rejoined.join(', ') || 'nobody'}${v.alreadyJoined.length ? ` (already joined: ${v.alreadyJoined.join(', ')})` : ''}`
            : `already restored (state from ${v.stateFrom}; joined: ${v.alreadyJoined.join(', ')})`;
          return { roomId: plan.roomId, outcome, newRoomId: plan.roomId, text: v.notes.length ? `${text}; ${v.notes.join('; ')}` : text, notes: v.notes };
        }
        const archive = s.archive ? { roomDir: s.archive.roomDir, importable: s.archive.counts.byKind.message, encrypted: s.archive.counts.byKind.encrypted } : null;
        const r = await recreateRoom(plan, archive, { http: deps.http, client: deps.client, store, botUserId: deps.botUserId, roomVersions, userUsable }, ctx.signal);
        if (!r.ok) {
          const partly = store.get(plan.roomId)?.newRoomId;
          return { roomId: plan.roomId, outcome: 'failed', text: `failed${partly ? ` (new room ${partly} made; a re-run carries on)` : ''}: ${r.error.human}`, notes: [] };
        }
        const v = r.value;
        if (v.alreadyDone) return { roomId: plan.roomId, outcome: 'already-restored', newRoomId: v.newRoomId, text: `already restored as ${v.newRoomId}`, notes: [] };
        const failedSteps = v.steps.filter((x) => x.outcome === 'failed');
        if (v.retried) {
          const steps = v.steps.map((x) => x.step).join(', ');
          if (failedSteps.length === 0) {
            return { roomId: plan.roomId, outcome: 'completed', newRoomId: v.newRoomId, text: `restored before as ${v.newRoomId}; what had failed is done now (${steps}${v.joined.length ? `; joined ${v.joined.join(', ')}` : ''})`, notes: [] };
          }
          return { roomId: plan.roomId, outcome: 'partial', newRoomId: v.newRoomId, text: `restored before as ${v.newRoomId}; still failing (a re-run tries again): ${v.notes.join('; ')}`, notes: v.notes };
        }
        const h = v.history;
        const history = h ? `, ${h.imported} history event(s) imported${h.alreadyImported ? ` (${h.alreadyImported} before)` : ''}${h.postedByBot ? `, ${h.postedByBot} posted by the bot for senders who are not members` : ''}${h.skipped.encrypted ? `, ${h.skipped.encrypted} encrypted not imported` : ''}${h.failedEvents.length ? `, ${h.failedEvents.length} refused` : ''}` : '';
        const notes = [...v.notes, ...(h?.failedEvents ?? []).slice(0, 5).map((f) => `${f.eventId}: ${f.reason}`)];
        const text = `recreated as ${v.newRoomId} by ${v.actingUser}: ${v.stateEvents + 1} state event(s), joined ${v.joined.join(', ') || 'nobody else'}${history}`;
        const retry = failedSteps.length > 0 ? '; a re-run retries what failed' : '';
        return { roomId: plan.roomId, outcome: failedSteps.length > 0 ? 'partial' : 'recreated', newRoomId: v.newRoomId, text: `${notes.length ? `${text}; ${notes.join('; ')}` : text}${retry}`, notes, ...(h ? { historyImported: h.imported } : {}) };
      }
    },
  };
}

const SUMMARY_ROOMS = 40;

const markerEntry = (m: ReadMarker) => ({ user_id: m.userId, room_id: m.oldRoomId, event_id: m.eventId, state: m.state, reason: m.detail ?? 'not tried yet: the room has not been restored' });

function summarise(results: readonly RoomRestoreResult[], dryRun: boolean, root: string, report: string | null, markers: readonly ReadMarker[]): JobResult {
  const count = (o: RoomOutcome): number => results.filter((r) => r.outcome === o).length;
  const head = dryRun
    ? `Dry run, nothing was changed. ${results.length} room(s) in ${root}: ${count('planned')} to restore, ${count('already-restored')} already restored, ${count('skipped')} skipped.`
    : `${results.length} room(s) from ${root}: ${count('rejoined')} rejoined, ${count('recreated')} recreated, ${count('already-restored')} already restored, ${count('partial')} partly, ${count('skipped')} skipped, ${count('failed')} failed${count('completed') ? `, ${count('completed')} completed (what had failed is done now)` : ''}.`;
  // Problems first; a long list is cut here and kept whole in the report.
  const rank = (r: RoomRestoreResult): number => (r.outcome === 'failed' ? 0 : r.outcome === 'partial' ? 1 : 2);
  const shown = [...results].sort((a, b) => rank(a) - rank(b)).slice(0, SUMMARY_ROOMS);
  const lines = shown.map((r) => `${r.roomId} — ${r.text}`);
  if (results.length > shown.length) lines.push(`… and ${results.length - shown.length} more room(s)`);
  if (markers.length > 0) {
    lines.push(`Read markers not restored (${markers.length}):`);
    for (const m of markers.slice(0, SUMMARY_ROOMS)) lines.push(`• ${m.userId} in ${m.oldRoomId} (event ${m.eventId}): ${markerEntry(m).reason}`);
    if (markers.length > SUMMARY_ROOMS) lines.push(`… and ${markers.length - SUMMARY_ROOMS} more in the report`);
  }
  if (report) lines.push(`Report: ${report}`);
  return {
    summary: [head, ...lines].join('\n'),
    details: {
      rooms: results.length,
      ...Object.fromEntries((['rejoined', 'recreated', 'already-restored', 'completed', 'partial', 'skipped', 'failed', 'planned'] as const).map((o) => [o, count(o)])),
      read_markers_not_restored: markers.length,
      map: Object.fromEntries(results.filter((r) => r.newRoomId).map((r) => [r.roomId, r.newRoomId])),
      report,
    },
  };
}
