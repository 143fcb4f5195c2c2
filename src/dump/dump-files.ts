import { createHash } from 'node:crypto';
import { access, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ensurePrivateDir, writeFileAtomic } from '../util/atomic-write.ts';

// Most filesystems cap a name at 255 bytes; Matrix ids may be 255 bytes before encoding.
const MAX_NAME_BYTES = 240;

/**
 * One file per Matrix ID; encodeURIComponent keeps `:` and `/` out of names on every platform, and
 * decodes back to the id. An id too long for that gets a shortened name ending in a hash of it
 * (the id is always inside the file too).
 */
export function fileNameFor(id: string): string {
  const encoded = encodeURIComponent(id);
  if (Buffer.byteLength(encoded) + 5 <= MAX_NAME_BYTES) return `${encoded}.json`;
  const digest = createHash('sha256').update(id).digest('hex').slice(0, 32);
  return `${encoded.slice(0, MAX_NAME_BYTES - 5 - 34).replace(/%[0-9A-F]?$/, '')}~${digest}.json`;
}

export async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

/** A new dump's folder name: sortable by time, unique per job. */
export function newDumpId(kind: string, jobId: number, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${kind}-${stamp}-job${jobId}`;
}

export async function prepareDumpDir(root: string, dumpId: string, section: string): Promise<string> {
  const dir = join(root, dumpId, section);
  await ensurePrivateDir(dir);
  return dir;
}

export async function writeJson(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`, 0o600);
}

/** Temp files a killed process left behind (see writeFileAtomic); never a finished file. */
export async function removeOrphanTemps(dir: string): Promise<number> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const orphans = names.filter((n) => n.startsWith('.') && n.endsWith('.tmp'));
  await Promise.all(orphans.map((n) => rm(join(dir, n), { force: true })));
  return orphans.length;
}
