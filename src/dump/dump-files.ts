import { access, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ensurePrivateDir, writeFileAtomic } from '../util/atomic-write.ts';

/** One file per Matrix ID; encodeURIComponent keeps `:` and `/` out of names on every platform. */
export function fileNameFor(id: string): string {
  return `${encodeURIComponent(id)}.json`;
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
