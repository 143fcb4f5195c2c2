import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { isJsonObject, type JsonObject } from '../federation/json-object.ts';
import { roomVersion, type RoomVersion } from '../federation/room-versions.ts';
import type { SynapseAdmin } from '../homeserver/synapse-admin.ts';
import { roomKey, type SynapseArchiveApi } from '../homeserver/synapse-archive.ts';
import type { JobResult } from '../jobs/job-store.ts';
import type { JobContext, JobDefinition } from '../jobs/runner.ts';
import type { KeyValueStore } from '../store/kv.ts';
import { forEachConcurrent } from '../util/pool.ts';
import { errorMessage, failure, ok, type Failure, type Result } from '../util/result.ts';
import { lockArchive } from './archive-lock.ts';
import { folderNote, recogniseFolder, type FolderHistory } from './archive-folder.ts';
import { damagedDayFiles, DayFileAppender, ensureArchiveManifest, roomDirName, roomDocument, writeJsonIfChanged } from './archive-files.ts';
import type { ArchiveAnnotations, ArchiveLine, ArchivedRoom } from './archive-line.ts';
import { dayOf, eventIdOf, filedTime, flagsOf, isRedacted, lineOf, normaliseEvent, originalAnnotations, redactionTarget, serializeLine, validTimestamp, type OriginalLookup } from './archive-event.ts';
import type { ArchiveStore } from './archive-store.ts';
import type { ArchiveViews, ArchiveViewsOptions } from './views-hook.ts';
import { retentionNote, type Retention } from './retention.ts';

export const ARCHIVE_JOB = 'archive';
const LIST_PAGE = 500;
const RETENTION_NOTE_KEY = 'archive.retention_note';

export interface ArchiveArgs {
  readonly out: string;
  readonly rooms: readonly string[];
  readonly media: boolean;
  readonly concurrency: number;
  /** Read every room from its first event again (new events are still the only ones written). */
  readonly full: boolean;
  /** Started by archive.schedule rather than a command. */
  readonly scheduled: boolean;
}

export function parseArchiveArgs(args: Record<string, unknown>): ArchiveArgs {
  return {
    out: String(args.out),
    rooms: Array.isArray(args.rooms) ? args.rooms.map(String) : [],
    media: args.media === true,
    concurrency: typeof args.concurrency === 'number' ? args.concurrency : 4,
    full: args.full === true,
    scheduled: args.scheduled === true,
  };
}

/** Created per run, so the views open (and close) their own resources with the job. */
export type ArchiveViewsFactory = (opts: ArchiveViewsOptions) => Result<ArchiveViews>;

export interface ArchiveJobDeps {
  readonly admin: SynapseAdmin;
  readonly api: SynapseArchiveApi;
  readonly store: ArchiveStore;
  readonly kv: KeyValueStore;
  readonly serverName: string;
  readonly pageSize: number;
  readonly views: ArchiveViewsFactory;
  readonly retention: () => Promise<Retention>;
}

/** Sums of a run, in the checkpoint so a resumed run reports them all; `events` also drives the live rate. */
export interface ArchiveCheckpoint {
  readonly startedTs: number;
  readonly events: number;
  readonly bytes: number;
  readonly redacted: number;
  readonly originalsKept: number;
  readonly originalsMissing: number;
  readonly flagged: number;
}

type Totals = { -readonly [K in keyof ArchiveCheckpoint]: ArchiveCheckpoint[K] };

/** Live note beside the rooms bar: events archived by this job and their pace. */
export function archiveProgressNote(data: unknown, runStart: { ts: number; events: number } | undefined, now = Date.now()): string | undefined {
  if (!isJsonObject(data) || typeof data.events !== 'number') return undefined;
  const parts = [`${data.events} new events`];
  if (typeof data.bytes === 'number') parts.push(bytesText(data.bytes));
  if (runStart && now - runStart.ts > 1000) {
    const rate = (data.events - runStart.events) / ((now - runStart.ts) / 1000);
    if (rate > 0) parts.push(`${rate >= 10 ? Math.round(rate) : rate.toFixed(1)} events/s`);
  }
  return parts.join(' · ');
}

export function bytesText(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

async function allRooms(admin: SynapseAdmin, signal: AbortSignal): Promise<Result<string[]>> {
  const rooms: string[] = [];
  let from: number | undefined;
  for (;;) {
    // A column that never changes keeps offsets stable while rooms are renamed during the listing.
    const page = await admin.listRooms(from, LIST_PAGE, 'creator', { signal });
    if (!page.ok) return { ok: false, error: failure(page.error.code, `Listing rooms failed: ${page.error.human}`, page.error.log) };
    for (const r of Array.isArray(page.value.rooms) ? page.value.rooms : []) if (typeof r?.room_id === 'string') rooms.push(r.room_id);
    const next = page.value.next_batch === undefined || page.value.next_batch === null ? NaN : Number(page.value.next_batch);
    if (!Number.isFinite(next) || signal.aborted) break;
    from = next;
  }
  return ok([...new Set(rooms)].sort());
}

export function archiveJob(deps: ArchiveJobDeps): JobDefinition {
  return {
    type: ARCHIVE_JOB,
    title: (raw) => {
      const args = parseArchiveArgs(raw);
      const what = args.rooms.length > 0 ? `archive (${args.rooms.length} room${args.rooms.length === 1 ? '' : 's'})` : 'archive';
      return `${args.scheduled ? 'scheduled ' : ''}${what}${args.full ? ' --full' : ''}`;
    },
    async run(ctx: JobContext) {
      const args = parseArchiveArgs(ctx.job.args);
      const prepared = await ensureArchiveManifest(args.out, deps.serverName);
      if (!prepared.ok) return prepared;
      const lock = await lockArchive(args.out, ctx.job.id);
      if (!lock.ok) return lock;
      try {
        return await runLocked(ctx, args, await recogniseFolder(deps.store, args.out, prepared.value));
      } finally {
        await lock.value.release();
      }
    },
  };

  async function runLocked(ctx: JobContext, args: ArchiveArgs, folder: FolderHistory): Promise<Result<JobResult>> {
    const resumed = ctx.resumeFrom as Partial<ArchiveCheckpoint> | undefined;
    const totals: Totals = { startedTs: Date.now(), events: 0, bytes: 0, redacted: 0, originalsKept: 0, originalsMissing: 0, flagged: 0, ...resumed };
    // A deleted or emptied folder forgotten (remembering its rooms would skip every event they held,
    // and the new archive would silently lack them), a moved one followed, a copy left alone.
    const folderSaid = folderNote(args.out, folder);
    if (folderSaid !== undefined) ctx.log.warn({ out: args.out, folder }, 'archive folder is not as Steward last saw it');
    const views = deps.views({ out: args.out, media: args.media });
    if (!views.ok) return { ok: false, error: failure(views.error.code, `The archive views cannot start: ${views.error.human}`, views.error.log) };
    try {
      const listed = args.rooms.length > 0 ? ok([...args.rooms]) : await allRooms(deps.admin, ctx.signal);
      if (!listed.ok) return listed;
      ctx.setTotal(listed.value.length);
      ctx.checkpoint(totals);

      const archiveOne = async (roomId: string): Promise<void> => {
        const row = deps.store.room(args.out, roomId);
        // Finished earlier in this same job, before it was interrupted.
        if (row && row.lastPassJob === ctx.job.id && !row.passStarted) return;
        const outcome = await archiveRoom(roomId, args, views.value, totals, ctx).catch((err: unknown): Result<void> => {
          // A database or disk failure inside one room (SQLITE_FULL, EIO) is that room's failure: the others go on.
          ctx.log.error({ err, roomId }, 'archiving a room failed');
          return { ok: false, error: failure('E_ARCHIVE_ROOM', `archiving the room failed: ${errorMessage(err)}`) };
        });
        if (ctx.signal.aborted) return;
        if (outcome.ok) ctx.advance();
        else ctx.itemFailed(roomId, outcome.error);
        ctx.checkpoint(totals);
      };
      await forEachConcurrent(listed.value, args.concurrency, archiveOne, ctx.signal);
      if (ctx.signal.aborted) return { ok: false, error: failure('E_CANCELLED', 'stopped') };
      await views.value.runFinished();
    } finally {
      views.value.close();
    }

    const counters = ctx.counters();
    const retention = await deps.retention();
    const note = retentionNote(retention);
    // Said once (and again only if what there is to say changes).
    const sayNote = note !== undefined && deps.kv.get(RETENTION_NOTE_KEY) !== note;
    if (note !== undefined) deps.kv.set(RETENTION_NOTE_KEY, note);
    const notes = [
      totals.redacted ? `${totals.redacted} redacted (${totals.originalsKept} originals kept, ${totals.originalsMissing} missing)` : '',
      totals.flagged ? `${totals.flagged} soft-failed or policy-flagged` : '',
      counters.failed ? `${counters.failed} failed` : '',
    ].filter(Boolean);
    const summary = `${counters.done} room${counters.done === 1 ? '' : 's'} archived to ${args.out}: ${totals.events} new events, ${bytesText(totals.bytes)}${notes.length ? `; ${notes.join(', ')}` : ''}${folderSaid ? `\n${folderSaid}` : ''}${sayNote ? `\n${note}` : ''}`;
    return ok({ summary, details: { directory: args.out, rooms: counters.done, rooms_failed: counters.failed, ...totals } });
  }

  /** One pass over one room: pages from where the last pass began, known events skipped, new ones appended. */
  async function archiveRoom(roomId: string, args: ArchiveArgs, views: ArchiveViews, totals: Totals, ctx: JobContext): Promise<Result<void>> {
    const opts = { signal: ctx.signal };
    let known = deps.store.room(args.out, roomId);
    if (known) {
      const roomDir = join(args.out, 'rooms', known.dirName);
      if (!existsSync(join(roomDir, 'room.json'))) {
        // Its folder was removed: the events Steward remembers are no longer on disk.
        ctx.log.warn({ roomId, dir: known.dirName }, 'archived room folder is gone; archiving the room anew');
        deps.store.forget(args.out, roomId);
        known = undefined;
      } else {
        const damaged = await damagedDayFiles(roomDir, deps.store.files(known.id));
        if (damaged.length > 0) {
          return { ok: false, error: failure('E_ARCHIVE_DAMAGED', `${damaged.length} day file${damaged.length === 1 ? ' is' : 's are'} missing or shorter than archived (${damaged.slice(0, 3).join(', ')}${damaged.length > 3 ? ', …' : ''}): restore ${damaged.length === 1 ? 'it' : 'them'} from a backup, or move the room's folder away to archive the room anew.`) };
        }
      }
    }
    // Taken before the room is read: whatever is persisted after it is read again next time.
    const current = known?.passStarted ? null : await deps.api.roomToken(roomId, opts);
    if (current && !current.ok) {
      return { ok: false, error: failure(current.error.code, current.error.status === 404 || current.error.status === 403 ? `the server does not know this room (${current.error.human})` : `cannot read the room's position: ${current.error.human}`, current.error.log) };
    }
    const liveToken = current?.ok ? current.value : null;
    if (known && !known.passStarted && !args.full && known.streamToken && liveToken && roomKey(known.streamToken) === roomKey(liveToken)) {
      // Nothing was persisted in the room since the last pass began: nothing to read.
      deps.store.finishPass(known.id, ctx.job.id);
      return ok(undefined);
    }
    // The version never changes: asked once, when the room is first archived.
    let versionId = known?.roomVersion ?? undefined;
    if (versionId === undefined) {
      const details = await deps.admin.room(roomId, opts);
      if (!details.ok) return { ok: false, error: failure(details.error.code, details.error.status === 404 ? 'the server does not know this room' : `cannot read the room's details: ${details.error.human}`, details.error.log) };
      versionId = typeof details.value.version === 'string' ? details.value.version : undefined;
      if (versionId === undefined) return { ok: false, error: failure('E_NO_ROOM_VERSION', 'the admin API does not name the room version') };
      const dir = join(args.out, 'rooms', roomDirName(roomId));
      try {
        await writeJsonIfChanged(join(dir, 'room.json'), roomDocument(roomId, versionId, details.value));
      } catch (err) {
        return { ok: false, error: failure('E_ARCHIVE_WRITE', `cannot write room.json: ${errorMessage(err)}`) };
      }
    }
    const version = roomVersion(versionId);
    if (!version.ok) return version;
    const row = known ?? deps.store.ensureRoom(args.out, roomId, versionId, roomDirName(roomId));
    const dir = join(args.out, 'rooms', row.dirName);

    let from: string | undefined;
    if (row.passStarted) {
      // A pass that was cut off carries on from the page it had committed.
      from = row.pageToken ?? (args.full ? undefined : row.streamToken ?? undefined);
    } else {
      deps.store.startPass(row.id, liveToken);
      from = args.full ? undefined : row.streamToken ?? undefined;
    }
    const room: ArchivedRoom = { roomId, roomVersion: versionId, dir };
    const appender = new DayFileAppender(dir, deps.store.files(row.id), { firstPass: known === undefined });

    // One page is always being read ahead: the homeserver serves the next page while this one is
    // written, so a big room costs the longer of the two rather than their sum.
    let reading = deps.api.messages(roomId, from, deps.pageSize, opts);
    for (;;) {
      const page = await reading;
      if (ctx.signal.aborted) return ok(undefined);
      if (!page.ok) return { ok: false, error: failure(page.error.code, `reading the room's messages failed: ${page.error.human}`, page.error.log) };
      const chunk = Array.isArray(page.value.chunk) ? page.value.chunk : [];
      const next = typeof page.value.end === 'string' && page.value.end.length > 0 ? page.value.end : null;
      const more = next !== null && next !== from;
      if (more) reading = deps.api.messages(roomId, next, deps.pageSize, opts);

      const lines = await newLines(roomId, row.id, version.value, chunk, totals, ctx);
      if (!lines.ok) return lines;
      // Stopped while looking up originals: the page is not complete, so it is not committed.
      if (ctx.signal.aborted) return ok(undefined);
      const byDay = new Map<string, { text: string; lines: number }>();
      let bytes = 0;
      let minTs: number | null = null;
      let maxTs: number | null = null;
      for (const line of lines.value) {
        const text = serializeLine(line);
        const day = dayOf(filedTime(line.origin_server_ts));
        const entry = byDay.get(day) ?? { text: '', lines: 0 };
        entry.text += text;
        entry.lines += 1;
        byDay.set(day, entry);
        bytes += Buffer.byteLength(text);
        const ts = filedTime(line.origin_server_ts);
        minTs = minTs === null ? ts : Math.min(minTs, ts);
        maxTs = maxTs === null ? ts : Math.max(maxTs, ts);
      }
      const files = await appender.append(byDay);
      if (!files.ok) return files;
      deps.store.commitPage(row.id, { eventIds: lines.value.map((l) => l.event_id), files: files.value, bytes, minTs, maxTs, nextPage: next });
      totals.events += lines.value.length;
      totals.bytes += bytes;

      if (lines.value.length > 0) {
        const viewed = await views.roomAppended(room, lines.value, ctx.signal, files.value.map((f) => ({ day: f.day, from: f.from, to: f.length })));
        if (!viewed.ok) ctx.itemFailed(`${roomId} (views)`, viewed.error);
        else for (const f of viewed.value.itemFailures) ctx.itemFailed(`${roomId} ${f.item}`, f.failure);
        ctx.checkpoint(totals);
      }
      if (!more || ctx.signal.aborted) break;
      from = next;
    }
    if (ctx.signal.aborted) return ok(undefined);
    deps.store.finishPass(row.id, ctx.job.id);
    await views.roomFinished(room);
    return ok(undefined);
  }

  /** The page's events not yet in the archive, as lines: ids computed where needed, redactions and flags annotated. */
  async function newLines(roomId: string, room: number, version: RoomVersion, chunk: readonly unknown[], totals: Totals, ctx: JobContext): Promise<Result<ArchiveLine[]>> {
    const lines: ArchiveLine[] = [];
    const identified: { raw: JsonObject; id: string }[] = [];
    for (const raw of chunk) {
      if (!isJsonObject(raw)) continue;
      const id = eventIdOf(raw, version);
      if (!id.ok) {
        ctx.itemFailed(`${roomId} event at depth ${String(raw.depth)}`, id.error);
        continue;
      }
      identified.push({ raw, id: id.value });
    }
    // Asked once for the page: the overlap a run re-reads, and any repeat within the page, are skipped.
    const seen = deps.store.knownAmong(room, identified.map((e) => e.id));
    for (const { raw, id } of identified) {
      if (seen.has(id)) continue;
      seen.add(id);
      const ts = raw.origin_server_ts;
      if (!validTimestamp(ts)) {
        ctx.itemFailed(`${roomId} ${id}`, failure('E_MALFORMED_EVENT', `the event has no integer origin_server_ts (${JSON.stringify(ts)}); not archived`));
        continue;
      }
      if (filedTime(ts) !== ts) ctx.log.warn({ roomId, eventId: id, ts }, 'event time is before 1970 or after 9999; filed under the nearest day of that range');
      const event = normaliseEvent(raw);
      let annotations: ArchiveAnnotations = flagsOf(raw);
      if (annotations.soft_failed || annotations.policy_spammy) totals.flagged += 1;
      const target = isRedacted(raw) ? id : redactionTarget(raw);
      if (target !== undefined) {
        const lookup = await lookupOriginal(roomId, target, ctx.signal);
        if (ctx.signal.aborted) return ok([]);
        if (!lookup.ok) return lookup;
        const original = originalAnnotations(lookup.value, version);
        if (isRedacted(raw)) {
          annotations = { redacted: true, ...annotations };
          totals.redacted += 1;
          if (original.original) totals.originalsKept += 1;
          else totals.originalsMissing += 1;
        }
        annotations = { ...annotations, ...original };
      }
      lines.push(lineOf(id, roomId, ts, event, annotations));
    }
    return ok(lines);
  }

  /**
   * What the archive records about an original is written once, so a lookup the homeserver could not
   * answer now (no connection, 5xx, still rate limited after the retries) is not recorded: it fails
   * the room for this run, before the page is written, and the next run reads that page again.
   */
  async function lookupOriginal(roomId: string, eventId: string, signal: AbortSignal): Promise<Result<OriginalLookup>> {
    const fetched = await deps.api.fetchEvent(eventId, { signal });
    if (!fetched.ok) {
      const { status } = fetched.error;
      if (status === 0 || status === 429 || status >= 500) {
        return { ok: false, error: failure(fetched.error.code, `looking up the original of ${eventId} failed (${fetched.error.human}); nothing of that page was written, the next run reads it again`, fetched.error.log) };
      }
      return ok(status === 404
        ? { kind: 'not-found', error: 'Synapse does not hold the event' }
        : { kind: 'error', error: fetched.error.human });
    }
    const event = fetched.value.event;
    if (!isJsonObject(event)) return ok({ kind: 'error', error: 'fetch_event answered without an event' });
    // A redaction can name an event of another room (the server refuses to apply it); that event is not this room's to keep.
    if (event.room_id !== roomId) return ok({ kind: 'not-found', error: `the redacted event belongs to another room (${String(event.room_id)})` });
    return ok({ kind: 'found', event: event as JsonObject });
  }
}

export type { Failure };
