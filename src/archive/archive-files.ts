import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileNameFor } from '../dump/dump-files.ts';
import { writeFileAtomic } from '../util/atomic-write.ts';
import { errorMessage, fail, ok, type Result } from '../util/result.ts';
import { ARCHIVE_FORMAT, ARCHIVE_ROOM_FORMAT } from './archive-line.ts';
import type { ArchiveFileRow, FolderIdentity } from './archive-store.ts';

/** The room's folder name: the encoded id, shortened like dump files when too long (room.json has the real id). */
export function roomDirName(roomId: string): string {
  return fileNameFor(roomId).slice(0, -'.json'.length);
}

/** `<roomDir>/YYYY/MM/YYYY-MM-DD.jsonl` for a UTC day. */
export function dayFile(roomDir: string, day: string): string {
  return join(roomDir, day.slice(0, 4), day.slice(5, 7), `${day}.jsonl`);
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * The folders whose entries change when a new file goes into `dir`, given the first folder mkdir
 * made on the way there (none if `dir` existed): `dir` itself, and the parent of every folder made.
 */
export function foldersToFlush(dir: string, firstMade: string | undefined): string[] {
  const dirs = [dir];
  if (firstMade === undefined) return dirs;
  for (let d = dir; d.length >= firstMade.length && d !== dirname(d); d = dirname(d)) {
    dirs.push(dirname(d));
    if (d === firstMade) break;
  }
  return dirs;
}

/** Writes a small JSON document atomically, and only when its content would change: a re-run touches nothing. */
export async function writeJsonIfChanged(file: string, value: unknown): Promise<boolean> {
  const text = `${JSON.stringify(value, null, 2)}\n`;
  const current = await readFile(file, 'utf8').catch(() => null);
  if (current === text) return false;
  await writeFileAtomic(file, text, 0o600);
  return true;
}

/** The identity in a manifest, when it has one (an archive.json written by hand or long ago may not). */
function identityOf(manifest: unknown): FolderIdentity | undefined {
  const m = manifest as { server_name?: unknown; created_ts?: unknown };
  return typeof m?.server_name === 'string' && Number.isSafeInteger(m.created_ts) ? { serverName: m.server_name, createdTs: m.created_ts as number } : undefined;
}

/** The identity of the archive.json in `out`, or undefined when there is none that can be read. */
export async function manifestIdentity(out: string): Promise<FolderIdentity | undefined> {
  try {
    const parsed: unknown = JSON.parse(await readFile(join(out, 'archive.json'), 'utf8'));
    return (parsed as { format?: unknown })?.format === ARCHIVE_FORMAT ? identityOf(parsed) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `archive.json`, written once: it carries the creation time, so it is never rewritten.
 * `created`: there was none, so whatever Steward remembers of this folder is of files now gone.
 */
export async function ensureArchiveManifest(out: string, serverName: string, now = Date.now()): Promise<Result<{ created: boolean; identity: FolderIdentity | undefined }>> {
  try {
    await mkdir(out, { recursive: true, mode: 0o700 });
    const file = join(out, 'archive.json');
    // Only a manifest that is not there makes a new archive: one that cannot be read is an error.
    const current = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null;
      throw err;
    });
    if (current !== null) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(current);
      } catch {
        return fail('E_ARCHIVE_FOREIGN', `${file} is not an archive manifest (not JSON); refusing to write into ${out}.`);
      }
      if ((parsed as { format?: unknown })?.format !== ARCHIVE_FORMAT) return fail('E_ARCHIVE_FOREIGN', `${file} is not a ${ARCHIVE_FORMAT} manifest; refusing to write into ${out}.`);
      return ok({ created: false, identity: identityOf(parsed) });
    }
    await writeFileAtomic(file, `${JSON.stringify({ format: ARCHIVE_FORMAT, server_name: serverName, created_ts: now }, null, 2)}\n`, 0o600);
    return ok({ created: true, identity: { serverName, createdTs: now } });
  } catch (err) {
    return fail('E_ARCHIVE_DIR', `Cannot prepare the archive folder ${out}: ${errorMessage(err)}`);
  }
}

export function roomDocument(roomId: string, roomVersion: string, details: Record<string, unknown>): Record<string, unknown> {
  return {
    format: ARCHIVE_ROOM_FORMAT,
    room_id: roomId,
    room_version: roomVersion,
    // Facts that do not change as the room lives on; the name and topic are in the events.
    creator: typeof details.creator === 'string' ? details.creator : null,
    encrypted: typeof details.encryption === 'string' ? details.encryption : null,
  };
}

/**
 * The room's committed day files that are gone or shorter than archived (changed outside Steward).
 * Checked before every pass, so the loss is reported even when the room has nothing new.
 */
export async function damagedDayFiles(roomDir: string, committed: readonly ArchiveFileRow[]): Promise<string[]> {
  const damaged: string[] = [];
  for (const f of committed) {
    if (f.length === 0) continue;
    const size = await stat(dayFile(roomDir, f.day)).then((st) => st.size, () => -1);
    if (size < f.length) damaged.push(size < 0 ? `${f.day} missing` : `${f.day} ${size} of ${f.length} bytes`);
  }
  return damaged;
}

/**
 * Appends lines to a room's day files. Before the first append to a file in a pass its length
 * is checked against the committed length: bytes past it are from a run that never committed
 * (a crash, possibly mid-line) and are cut off; a file shorter than committed was damaged
 * outside Steward and is refused rather than silently extended.
 */
export class DayFileAppender {
  private readonly roomDir: string;
  private readonly committed = new Map<string, ArchiveFileRow>();
  private readonly checked = new Set<string>();
  /** The room is new to Steward's database: any bytes already in its files are not Steward's to cut. */
  private readonly firstPass: boolean;

  constructor(roomDir: string, committed: readonly ArchiveFileRow[], opts: { firstPass?: boolean } = {}) {
    this.roomDir = roomDir;
    for (const f of committed) this.committed.set(f.day, f);
    this.firstPass = opts.firstPass ?? false;
  }

  /** Appends each day's text and flushes it to disk; returns the new lengths to commit, and where each append began. */
  async append(byDay: ReadonlyMap<string, { text: string; lines: number }>): Promise<Result<(ArchiveFileRow & { readonly from: number })[]>> {
    // The files of one page are written and flushed side by side: their fsyncs overlap.
    const written = await Promise.all([...byDay].map(([day, entry]) => this.appendOne(day, entry.text, entry.lines)));
    const rows: (ArchiveFileRow & { readonly from: number })[] = [];
    const newDirs = new Set<string>();
    for (const w of written) {
      if (!w.ok) return w;
      rows.push(w.value.row);
      for (const dir of w.value.dirsToSync) newDirs.add(dir);
    }
    try {
      // A new file's folder entry must be on disk too, or a crash could lose a committed file.
      await Promise.all([...newDirs].map(syncDir));
    } catch (err) {
      return fail('E_ARCHIVE_WRITE', `Cannot flush the archive folders: ${errorMessage(err)}`);
    }
    for (const row of rows) this.committed.set(row.day, { day: row.day, length: row.length, lines: row.lines });
    return ok(rows);
  }

  private async appendOne(day: string, text: string, lines: number): Promise<Result<{ row: ArchiveFileRow & { readonly from: number }; dirsToSync: string[] }>> {
    const file = dayFile(this.roomDir, day);
    const dir = dirname(file);
    const before = this.committed.get(day) ?? { day, length: 0, lines: 0 };
    const bytes = Buffer.from(text, 'utf8');
    let created = false;
    // A folder made here is an entry in its parent: that parent is flushed too, up to the first that existed.
    let firstMade: string | undefined;
    try {
      if (!this.checked.has(day)) firstMade = await mkdir(dir, { recursive: true, mode: 0o700 });
      const handle = await open(file, 'a', 0o600);
      try {
        if (!this.checked.has(day)) {
          // Bytes past the committed length are from a run that never committed (a crash, maybe mid-line).
          const size = (await handle.stat()).size;
          if (size < before.length) {
            return fail('E_ARCHIVE_DAMAGED', `${file} is shorter (${size} bytes) than the ${before.length} bytes archived into it: it was changed outside Steward; restore it from a backup, or remove the room from the archive to start it again.`);
          }
          if (size > before.length && this.firstPass) {
            return fail('E_ARCHIVE_UNKNOWN_FILES', `${file} already holds ${size} bytes that Steward's database has no record of (written with another Steward database or an old backup of it, or the folder was reached under another path); refusing to cut them. Archive into a new folder, or move this room's folder away to archive the room anew.`);
          }
          if (size > before.length) await handle.truncate(before.length);
          created = size === 0 && before.length === 0;
          this.checked.add(day);
        }
        await handle.write(bytes);
        await handle.sync();
      } finally {
        await handle.close();
      }
    } catch (err) {
      return fail('E_ARCHIVE_WRITE', `Cannot append to ${file}: ${errorMessage(err)}`);
    }
    const dirsToSync = created ? foldersToFlush(dir, firstMade) : [];
    return ok({ row: { day, length: before.length + bytes.length, lines: before.lines + lines, from: before.length }, dirsToSync });
  }
}
