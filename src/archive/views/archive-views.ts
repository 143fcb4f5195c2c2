import { createReadStream, existsSync } from 'node:fs';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import type { HomeserverHttp } from '../../homeserver/http.ts';
import type { Logger } from '../../log.ts';
import { writeFileAtomic } from '../../util/atomic-write.ts';
import { errorMessage, fail, failure, ok, type Failure, type Result } from '../../util/result.ts';
import type { ArchiveLine, ArchivedRoom } from '../archive-line.ts';
import type { ArchiveViews, ArchiveViewsOptions } from '../views-hook.ts';
import { ArchiveIndex, openIndex } from './archive-index.ts';
import { DayRenderer } from './day-markdown.ts';
import { eventFacts } from './event-facts.ts';
import { DEFAULT_MEDIA_MAX_BYTES, MediaStore, type MediaRecord } from './media-store.ts';

export interface ArchiveViewsDeps {
  /** Needed with `media`: downloads as the bot (authenticated media) and reads media metadata from the admin API. */
  readonly http?: HomeserverHttp;
  readonly log: Logger;
  /** Media larger than this are recorded as failures, not downloaded (archive.media_max_bytes). */
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

const BATCH = 500;

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

  constructor(out: string, index: ArchiveIndex, media: MediaStore | null, log: Logger) {
    this.out = out;
    this.index = index;
    this.renderer = new DayRenderer(index.db, join(out, 'media'));
    this.media = media;
    this.log = log;
  }

  async roomAppended(room: ArchivedRoom, _lines: readonly ArchiveLine[], signal: AbortSignal): Promise<Result<{ itemFailures: readonly ItemFailure[] }>> {
    try {
      const summary = await this.syncRoom(room, signal);
      return ok({ itemFailures: summary.itemFailures });
    } catch (err) {
      this.log.error({ err, roomId: room.roomId }, 'archive views failed');
      return fail('E_ARCHIVE_VIEWS', `The archive's views (markdown, index, media) of ${room.roomId} could not be updated: ${errorMessage(err)}`);
    }
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

  /** Every room folder of the archive (found by its room.json). */
  async syncAll(signal: AbortSignal): Promise<SyncSummary> {
    const total = { lines: 0, daysWritten: 0, mediaStored: 0, itemFailures: [] as ItemFailure[] };
    for (const room of await listRooms(this.out)) {
      if (signal.aborted) break;
      const s = await this.syncRoom(room, signal);
      total.lines += s.lines;
      total.daysWritten += s.daysWritten;
      total.mediaStored += s.mediaStored;
      total.itemFailures.push(...s.itemFailures);
    }
    return total;
  }

  /** One room at a time per room: the job may call for several rooms at once. */
  async syncRoom(room: ArchivedRoom, signal: AbortSignal): Promise<SyncSummary> {
    const previous = this.locks.get(room.roomId) ?? Promise.resolve();
    const run = previous.catch(() => undefined).then(() => this.syncRoomNow(room, signal));
    this.locks.set(room.roomId, run);
    try {
      return await run;
    } finally {
      if (this.locks.get(room.roomId) === run) this.locks.delete(room.roomId);
    }
  }

  private async syncRoomNow(room: ArchivedRoom, signal: AbortSignal): Promise<SyncSummary> {
    this.index.upsertRoom(room.roomId, room.roomVersion, room.dir);
    const itemFailures: ItemFailure[] = [];
    const touched = new Map<string, Set<string>>([[room.roomId, new Set()]]);
    const lines = await this.ingestRoom(room, touched.get(room.roomId)!, itemFailures);
    let mediaStored = 0;
    if (this.media && !signal.aborted) mediaStored = await this.fetchMedia(room.roomId, touched, itemFailures, signal);
    let daysWritten = 0;
    for (const [roomId, days] of touched) {
      const dir = roomId === room.roomId ? room.dir : this.index.db.prepare<[string], { dir: string }>('SELECT dir FROM rooms WHERE room_id = ?').get(roomId)?.dir;
      if (!dir) continue;
      for (const day of [...days].sort()) {
        if (await this.writeDay(roomId, dir, day)) daysWritten++;
      }
    }
    return { lines, daysWritten, mediaStored, itemFailures };
  }

  /** Reads the room's day files past what is indexed; a file shorter than indexed means they were rewritten: re-read the room. */
  private async ingestRoom(room: ArchivedRoom, touched: Set<string>, failures: ItemFailure[]): Promise<number> {
    const files = await listDayFiles(room.dir);
    const sizes = new Map<string, number>();
    for (const f of files) sizes.set(f, (await stat(f)).size);
    const shrunk = files.some((f) => sizes.get(f)! < this.index.fileOffset(relative(this.out, f)));
    if (shrunk) {
      this.log.warn({ roomId: room.roomId }, 'archive views: a day file is shorter than indexed; re-indexing the room');
      this.index.db.transaction(() => {
        this.index.dropRoom(room.roomId);
        for (const f of files) this.index.setFileOffset(relative(this.out, f), 0);
      })();
    }
    let count = 0;
    for (const file of files) {
      const rel = relative(this.out, file);
      const from = this.index.fileOffset(rel);
      const size = sizes.get(file)!;
      if (size <= from) continue;
      count += await this.ingestFile(file, rel, from, size, touched, failures);
    }
    return count;
  }

  private async ingestFile(file: string, rel: string, from: number, size: number, touched: Set<string>, failures: ItemFailure[]): Promise<number> {
    // Only whole lines: bytes after the last newline are a line still being written.
    const end = await lastNewline(file, from, size);
    if (end <= from) return 0;
    const input = createReadStream(file, { start: from, end: end - 1, encoding: 'utf8' });
    const reader = createInterface({ input, crlfDelay: Infinity });
    let offset = from;
    let batch: ArchiveLine[] = [];
    let count = 0;
    const flush = (upTo: number): void => {
      const items = batch;
      batch = [];
      this.index.db.transaction(() => {
        for (const line of items) this.index.add(eventFacts(line), touched);
        this.index.setFileOffset(rel, upTo);
      })();
    };
    for await (const text of reader) {
      const at = offset;
      offset += Buffer.byteLength(text, 'utf8') + 1;
      if (text.trim() === '') continue;
      const line = parseLine(text);
      if (!line) {
        failures.push({ item: `${rel}@${at}`, failure: failure('E_ARCHIVE_BAD_LINE', `${rel}: the line at byte ${at} is not an archive event line; it is left out of the views`) });
        continue;
      }
      batch.push(line);
      count++;
      if (batch.length >= BATCH) flush(offset);
    }
    flush(end);
    return count;
  }

  private async fetchMedia(roomId: string, touched: Map<string, Set<string>>, failures: ItemFailure[], signal: AbortSignal): Promise<number> {
    const pending = this.index.db.prepare<[string], { mxc: string; encrypted: number }>(
      `SELECT em.mxc, MAX(em.encrypted) AS encrypted FROM event_media em LEFT JOIN media m ON m.mxc = em.mxc
        WHERE em.room_id = ? AND m.mxc IS NULL AND em.mxc NOT IN (SELECT mxc FROM media_missing) GROUP BY em.mxc ORDER BY em.mxc`,
    ).all(roomId);
    let stored = 0;
    for (const p of pending) {
      if (signal.aborted) break;
      const got = await this.media!.download(p.mxc, p.encrypted === 1, signal);
      if (!got.ok) {
        failures.push({ item: p.mxc, failure: got.error });
        // Gone for good (deleted, or never there): other failures are tried again on the next run.
        if (got.error.code === 'M_NOT_FOUND') this.index.db.prepare('INSERT OR IGNORE INTO media_missing (mxc, error) VALUES (?, ?)').run(p.mxc, got.error.human);
        continue;
      }
      this.recordMedia(got.value);
      stored++;
      // Every day, in any room, that shows this mxc now links the file.
      for (const row of this.index.db.prepare<[string], { room_id: string; day: string }>('SELECT DISTINCT e.room_id, e.day FROM event_media em JOIN events e ON e.event_id = em.event_id WHERE em.mxc = ?').all(p.mxc)) {
        const days = touched.get(row.room_id) ?? new Set<string>();
        days.add(row.day);
        touched.set(row.room_id, days);
        this.addThreadRootDays(row.room_id, row.day, days);
      }
    }
    return stored;
  }

  /** A thread reply with media on `day` is shown under its root, maybe on an earlier day. */
  private addThreadRootDays(roomId: string, day: string, days: Set<string>): void {
    for (const r of this.index.db.prepare<[string, string], { day: string }>(
      'SELECT DISTINCT root.day FROM events e JOIN events root ON root.event_id = e.thread_root WHERE e.room_id = ? AND e.day = ?',
    ).all(roomId, day)) days.add(r.day);
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
  try {
    index = new ArchiveIndex(openIndex(indexPath(opts.out)));
  } catch (err) {
    return fail('E_ARCHIVE_INDEX', `Cannot open the archive index ${indexPath(opts.out)}: ${errorMessage(err)}`);
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
