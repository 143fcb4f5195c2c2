import { createReadStream, existsSync, renameSync, rmSync } from 'node:fs';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { basename, join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import type { HomeserverHttp } from '../../homeserver/http.ts';
import type { Logger } from '../../log.ts';
import { writeFileAtomic } from '../../util/atomic-write.ts';
import { errorMessage, fail, failure, ok, type Failure, type Result } from '../../util/result.ts';
import { dayOf, filedTime } from '../archive-event.ts';
import { dayFile } from '../archive-files.ts';
import type { ArchiveLine, ArchivedRoom } from '../archive-line.ts';
import type { AppendedFile, ArchiveViews, ArchiveViewsOptions } from '../views-hook.ts';
import { ArchiveIndex, openIndex, type DirtyDay } from './archive-index.ts';
import { DayRenderer } from './day-markdown.ts';
import { eventFacts } from './event-facts.ts';
import { DEFAULT_MEDIA_MAX_BYTES, MediaStore, type MediaRecord } from './media-store.ts';

export interface ArchiveViewsDeps {
  /** Needed with `media`: downloads as the bot (authenticated media) and reads media metadata from the admin API. */
  readonly http?: HomeserverHttp;
  readonly log: Logger;
  /** Media larger than this are recorded as failures, not downloaded (archive.media_max_mb). */
  readonly mediaMaxBytes?: number;
}

export interface ItemFailure {
  readonly item: string;
  readonly failure: Failure;
}

export interface SyncSummary {
  readonly lines: number;
  readonly daysWritten: number;
  readonly mediaStored: number;
  readonly itemFailures: readonly ItemFailure[];
}

const BATCH = 5000;

/** A page of lines and the files they were appended to. */
interface AppendedPage {
  readonly lines: readonly ArchiveLine[];
  readonly files: readonly AppendedFile[];
}

export function indexPath(out: string): string {
  return join(out, 'archive.sqlite');
}

/**
 * The views of an archive: the index, the day markdown and the media, all derived from the day
 * files. Each room is brought up to date by reading its JSONL from where the index stopped (the
 * `files` table holds, per day file, how many bytes are indexed), so a crash anywhere, a deleted
 * archive.sqlite or a room the job skipped is repaired on the next call.
 */
export class ArchiveViewSet implements ArchiveViews {
  private readonly out: string;
  private readonly index: ArchiveIndex;
  private readonly renderer: DayRenderer;
  private readonly media: MediaStore | null;
  private readonly log: Logger;
  private readonly locks = new Map<string, Promise<unknown>>();
  /** Media that failed in this run: tried again on the next run, not again at its end. */
  private readonly failedThisRun = new Set<string>();

  constructor(out: string, index: ArchiveIndex, media: MediaStore | null, log: Logger) {
    this.out = out;
    this.index = index;
    this.renderer = new DayRenderer(index.db, join(out, 'media'));
    this.media = media;
    this.log = log;
  }

  async roomAppended(room: ArchivedRoom, lines: readonly ArchiveLine[], signal: AbortSignal, appended?: readonly AppendedFile[]): Promise<Result<{ itemFailures: readonly ItemFailure[] }>> {
    try {
      const summary = await this.syncRoom(room, signal, appended && { lines, files: appended });
      // Days behind the pass's newest day rarely take more events in this pass: rendered now, while
      // the next page is being read, instead of all at the end. A day touched again is simply
      // marked out of date again.
      let frontier: string | undefined;
      for (const l of lines) {
        const day = dayOf(filedTime(l.origin_server_ts));
        if (frontier === undefined || day > frontier) frontier = day;
      }
      if (frontier !== undefined && !signal.aborted) await this.renderDirty(room.roomId, frontier);
      return ok({ itemFailures: summary.itemFailures });
    } catch (err) {
      this.log.error({ err, roomId: room.roomId }, 'archive views failed');
      return fail('E_ARCHIVE_VIEWS', `The archive's views (markdown, index, media) of ${room.roomId} could not be updated: ${errorMessage(err)}`);
    }
  }

  async roomFinished(room: ArchivedRoom): Promise<void> {
    await this.renderDirty(room.roomId).catch((err: unknown) => {
      // Still marked out of date: written at the end of the run, or by the next one.
      this.log.error({ err, roomId: room.roomId }, 'archive views: writing the markdown of a room failed');
    });
  }

  async runFinished(): Promise<void> {
    const summary = await this.syncAll(new AbortController().signal).catch((err: unknown) => {
      this.log.error({ err }, 'archive views: catching up every room failed');
      return null;
    });
    if (summary && summary.itemFailures.length > 0) this.log.warn({ failures: summary.itemFailures.length }, 'archive views: items failed while catching up');
  }

  close(): void {
    this.index.db.close();
  }

  /** Every room folder of the archive (found by its room.json), then every day whose markdown is out of date. */
  async syncAll(signal: AbortSignal): Promise<SyncSummary> {
    const total = { lines: 0, daysWritten: 0, mediaStored: 0, itemFailures: [] as ItemFailure[] };
    for (const room of await listRooms(this.out)) {
      if (signal.aborted) break;
      const s = await this.syncRoom(room, signal);
      total.lines += s.lines;
      total.mediaStored += s.mediaStored;
      total.itemFailures.push(...s.itemFailures);
    }
    if (!signal.aborted) total.daysWritten = await this.renderDirty();
    return total;
  }

  /** One room at a time per room: the job may call for several rooms at once. */
  async syncRoom(room: ArchivedRoom, signal: AbortSignal, page?: AppendedPage): Promise<SyncSummary> {
    const previous = this.locks.get(room.roomId) ?? Promise.resolve();
    const run = previous.catch(() => undefined).then(() => this.syncRoomNow(room, signal, page));
    this.locks.set(room.roomId, run);
    try {
      return await run;
    } finally {
      if (this.locks.get(room.roomId) === run) this.locks.delete(room.roomId);
    }
  }

  /**
   * Index and media of one room. The markdown is written by `renderDirty`, for the days the pass
   * has moved past (`roomAppended`), the rest of the room (`roomFinished`) and leftovers at the end
   * of the run: a busy day spanning several pages is not rendered once per page.
   */
  private async syncRoomNow(room: ArchivedRoom, signal: AbortSignal, page?: AppendedPage): Promise<SyncSummary> {
    this.index.upsertRoom(room.roomId, room.roomVersion, room.dir);
    const itemFailures: ItemFailure[] = [];
    const lines = (page && this.ingestPage(room, page)) ?? (await this.ingestRoom(room, itemFailures));
    let mediaStored = 0;
    if (this.media && !signal.aborted) mediaStored = await this.fetchMedia(room.roomId, itemFailures, signal);
    return { lines, daysWritten: 0, mediaStored, itemFailures };
  }

  /** Writes the markdown of the days marked out of date (of one room, before one day); a day is unmarked once written. */
  async renderDirty(roomId?: string, before?: string): Promise<number> {
    const written: DirtyDay[] = [];
    let changed = 0;
    try {
      for (const d of this.index.dirty(roomId, before)) {
        if (await this.writeDay(d.room_id, d.dir, d.day)) changed++;
        written.push(d);
      }
    } finally {
      // One commit for them all. A mark that outlives a crash only has its day rendered again, unchanged.
      this.index.clean(written);
    }
    return changed;
  }

  /**
   * Indexes a page's lines as the job hands them over, when every file they went to is indexed up
   * to where they begin; the number of lines, or null when the index is behind (the room is then
   * read from its files). Other files of the room that lag are caught up at the end of the run.
   */
  private ingestPage(room: ArchivedRoom, page: AppendedPage): number | null {
    const files = page.files.map((f) => ({ rel: relative(this.out, dayFile(room.dir, f.day)), ...f }));
    if (files.some((f) => this.index.fileOffset(f.rel) !== f.from)) return null;
    const touched = new Set<string>();
    this.index.db.transaction(() => {
      this.index.addAll(room.roomId, page.lines.map(eventFacts), touched);
      for (const f of files) this.index.setFileOffset(f.rel, f.to);
      this.index.markDirty(room.roomId, touched);
    })();
    return page.lines.length;
  }

  /** Reads the room's day files past what is indexed; a file shorter than indexed means they were rewritten: re-read the room. */
  private async ingestRoom(room: ArchivedRoom, failures: ItemFailure[]): Promise<number> {
    const files = await listDayFiles(room.dir);
    const sizes = new Map<string, number>();
    for (const f of files) sizes.set(f, (await stat(f)).size);
    const shrunk = files.some((f) => sizes.get(f)! < this.index.fileOffset(relative(this.out, f)));
    if (shrunk) {
      this.log.warn({ roomId: room.roomId }, 'archive views: a day file is shorter than indexed; re-indexing the room');
      this.index.db.transaction(() => {
        this.index.dropRoom(room.roomId);
        for (const f of files) this.index.setFileOffset(relative(this.out, f), 0);
        // Every day of the room is rendered again from what is read back.
        this.index.markDirty(room.roomId, files.map((f) => basename(f, '.jsonl')));
      })();
    }
    // Lines of several files go into one transaction: each commit costs the disk a few syncs.
    const batch = new Batch(this.index, room.roomId);
    for (const file of files) {
      const rel = relative(this.out, file);
      const from = this.index.fileOffset(rel);
      const size = sizes.get(file)!;
      if (size <= from) continue;
      await this.ingestFile(file, rel, from, size, batch, failures);
    }
    batch.flush();
    return batch.count;
  }

  private async ingestFile(file: string, rel: string, from: number, size: number, batch: Batch, failures: ItemFailure[]): Promise<void> {
    // Only whole lines: bytes after the last newline are a line still being written.
    const end = await lastNewline(file, from, size);
    if (end <= from) return;
    const input = createReadStream(file, { start: from, end: end - 1, encoding: 'utf8' });
    const reader = createInterface({ input, crlfDelay: Infinity });
    let offset = from;
    for await (const text of reader) {
      const at = offset;
      offset += Buffer.byteLength(text, 'utf8') + 1;
      if (text.trim() === '') continue;
      const line = parseLine(text);
      if (!line) {
        failures.push({ item: `${rel}@${at}`, failure: failure('E_ARCHIVE_BAD_LINE', `${rel}: the line at byte ${at} is not an archive event line; it is left out of the views`) });
        continue;
      }
      batch.push(line, rel, offset);
    }
    batch.reached(rel, end);
  }

  private async fetchMedia(roomId: string, failures: ItemFailure[], signal: AbortSignal): Promise<number> {
    const pending = this.index.db.prepare<[string], { mxc: string; encrypted: number }>(
      `SELECT em.mxc, MAX(em.encrypted) AS encrypted FROM event_media em LEFT JOIN media m ON m.mxc = em.mxc
        WHERE em.room_id = ? AND m.mxc IS NULL AND em.mxc NOT IN (SELECT mxc FROM media_missing) GROUP BY em.mxc ORDER BY em.mxc`,
    ).all(roomId);
    let stored = 0;
    for (const p of pending) {
      if (signal.aborted) break;
      if (this.failedThisRun.has(p.mxc)) continue;
      const got = await this.media!.download(p.mxc, p.encrypted === 1, signal);
      if (!got.ok) {
        failures.push({ item: p.mxc, failure: got.error });
        this.failedThisRun.add(p.mxc);
        // Gone for good (deleted, or never there): other failures are tried again on the next run.
        if (got.error.code === 'M_NOT_FOUND') this.index.db.prepare('INSERT OR IGNORE INTO media_missing (mxc, error) VALUES (?, ?)').run(p.mxc, got.error.human);
        continue;
      }
      stored++;
      // Every day, in any room, that shows this mxc now links the file (a thread reply is shown under its root).
      const days = this.index.db.prepare<[string], { room_id: string; day: string; root_day: string | null }>(
        'SELECT DISTINCT e.room_id, e.day, root.day AS root_day FROM event_media em JOIN events e ON e.event_id = em.event_id LEFT JOIN events root ON root.event_id = e.thread_root WHERE em.mxc = ?',
      );
      this.index.db.transaction(() => {
        this.recordMedia(got.value);
        for (const row of days.all(p.mxc)) this.index.markDirty(row.room_id, row.root_day ? [row.day, row.root_day] : [row.day]);
      })();
    }
    return stored;
  }

  recordMedia(r: MediaRecord): void {
    this.index.db.prepare('INSERT OR REPLACE INTO media (mxc, sha256, size, media_type, upload_name, encrypted) VALUES (?, ?, ?, ?, ?, ?)').run(r.mxc, r.sha256, r.size, r.media_type, r.upload_name, r.encrypted ? 1 : 0);
  }

  /** Writes the day's markdown when it differs from what is on disk; true when written. */
  private async writeDay(roomId: string, dir: string, day: string): Promise<boolean> {
    const mdDir = join(dir, day.slice(0, 4), day.slice(5, 7));
    const text = this.renderer.render(roomId, day, mdDir);
    if (text === null) return false;
    const file = join(mdDir, `${day}.md`);
    const current = await readFile(file, 'utf8').catch(() => null);
    if (current === text) return false;
    await writeFileAtomic(file, text, 0o600);
    return true;
  }
}

/**
 * Opens the views of the archive at `opts.out`. A missing archive.sqlite is created and filled
 * from the day files on the first call for each room (and for all of them at `runFinished`).
 */
export function createArchiveViews(opts: ArchiveViewsOptions & ArchiveViewsDeps): Result<ArchiveViewSet> {
  if (opts.media && !opts.http) return fail('E_ARCHIVE_VIEWS', 'Archiving media needs the homeserver client.');
  const media = new MediaStore({ http: opts.http as HomeserverHttp, root: join(opts.out, 'media'), maxBytes: opts.mediaMaxBytes ?? DEFAULT_MEDIA_MAX_BYTES, log: opts.log });
  let index: ArchiveIndex;
  const file = indexPath(opts.out);
  try {
    index = new ArchiveIndex(openIndex(file));
  } catch (err) {
    // Derived data: a damaged or foreign-schema index is set aside and built again from the files.
    opts.log.warn({ err, file }, 'archive views: cannot open the index; setting it aside and rebuilding it');
    try {
      if (existsSync(file)) renameSync(file, `${file}.damaged`);
      rmSync(`${file}-journal`, { force: true });
      index = new ArchiveIndex(openIndex(file));
    } catch (again) {
      return fail('E_ARCHIVE_INDEX', `Cannot open the archive index ${file}: ${errorMessage(err)}; nor create a new one: ${errorMessage(again)}`);
    }
  }
  const views = new ArchiveViewSet(opts.out, index, opts.media ? media : null, opts.log.child({ module: 'archive-views' }));
  // Media downloaded before the index was (re)built: media/index.jsonl remembers them.
  const known = index.db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM media').get()!.n;
  if (known === 0) {
    try {
      const records = media.records();
      index.db.transaction(() => records.forEach((r) => views.recordMedia(r)))();
    } catch (err) {
      opts.log.warn({ err }, 'archive views: cannot read media/index.jsonl');
    }
  }
  return ok(views);
}

/** Rebuilds archive.sqlite and every day's markdown from the files (no network: media already downloaded stay linked). */
export async function rebuildArchiveIndex(out: string, log: Logger, signal = new AbortController().signal): Promise<Result<SyncSummary>> {
  if (!existsSync(join(out, 'rooms'))) return fail('E_ARCHIVE_MISSING', `${out} holds no archive (no rooms/ folder).`);
  const { rm } = await import('node:fs/promises');
  await rm(indexPath(out), { force: true });
  await rm(`${indexPath(out)}-journal`, { force: true });
  const views = createArchiveViews({ out, media: false, log });
  if (!views.ok) return views;
  try {
    return ok(await views.value.syncAll(signal));
  } catch (err) {
    return fail('E_ARCHIVE_VIEWS', `Rebuilding the archive index failed: ${errorMessage(err)}`);
  } finally {
    views.value.close();
  }
}

/** Lines waiting for one transaction, with how far each file is read once they are in. */
class Batch {
  count = 0;
  private lines: ArchiveLine[] = [];
  private readonly offsets = new Map<string, number>();
  private readonly index: ArchiveIndex;
  private readonly roomId: string;
  private readonly touched = new Set<string>();

  constructor(index: ArchiveIndex, roomId: string) {
    this.index = index;
    this.roomId = roomId;
  }

  push(line: ArchiveLine, rel: string, offset: number): void {
    this.lines.push(line);
    this.offsets.set(rel, offset);
    this.count++;
    if (this.lines.length >= BATCH) this.flush();
  }

  reached(rel: string, offset: number): void {
    this.offsets.set(rel, offset);
  }

  flush(): void {
    if (this.lines.length === 0 && this.offsets.size === 0) return;
    const lines = this.lines;
    const offsets = [...this.offsets];
    this.lines = [];
    this.offsets.clear();
    this.index.db.transaction(() => {
      this.index.addAll(this.roomId, lines.map(eventFacts), this.touched);
      for (const [rel, offset] of offsets) this.index.setFileOffset(rel, offset);
      this.index.markDirty(this.roomId, this.touched);
    })();
    this.touched.clear();
  }
}

function parseLine(text: string): ArchiveLine | null {
  try {
    const v = JSON.parse(text) as Partial<ArchiveLine>;
    if (typeof v !== 'object' || v === null || typeof v.event_id !== 'string' || typeof v.room_id !== 'string' || typeof v.event !== 'object' || v.event === null) return null;
    return v as ArchiveLine;
  } catch {
    return null;
  }
}

/** Offset just past the last newline in [from, size), or `from` when there is none. */
async function lastNewline(file: string, from: number, size: number): Promise<number> {
  const handle = await open(file, 'r');
  try {
    const chunk = Buffer.alloc(64 * 1024);
    let pos = size;
    while (pos > from) {
      const len = Math.min(chunk.length, pos - from);
      const { bytesRead } = await handle.read(chunk, 0, len, pos - len);
      const i = chunk.subarray(0, bytesRead).lastIndexOf(0x0a);
      if (i >= 0) return pos - len + i + 1;
      pos -= len;
    }
    return from;
  } finally {
    await handle.close();
  }
}

/** `<room>/YYYY/MM/YYYY-MM-DD.jsonl`, in day order. */
async function listDayFiles(roomDir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (e.isDirectory() && depth < 2 && /^\d+$/.test(e.name)) await walk(join(dir, e.name), depth + 1);
      else if (e.isFile() && depth === 2 && /^\d{4}-\d{2}-\d{2}\.jsonl$/.test(e.name)) out.push(join(dir, e.name));
    }
  };
  await walk(roomDir, 0);
  return out.sort();
}

async function listRooms(out: string): Promise<ArchivedRoom[]> {
  const roomsDir = join(out, 'rooms');
  const rooms: ArchivedRoom[] = [];
  const entries = await readdir(roomsDir, { withFileTypes: true }).catch(() => []);
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (!e.isDirectory()) continue;
    const dir = join(roomsDir, e.name);
    try {
      const doc = JSON.parse(await readFile(join(dir, 'room.json'), 'utf8')) as { room_id?: unknown; room_version?: unknown };
      if (typeof doc.room_id === 'string') rooms.push({ roomId: doc.room_id, roomVersion: typeof doc.room_version === 'string' ? doc.room_version : '', dir });
    } catch {
      // Not a room folder (or one whose room.json is still to be written): nothing to index.
    }
  }
  return rooms;
}
