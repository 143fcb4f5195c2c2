import { hostname } from 'node:os';
import { join } from 'node:path';
import { open, readFile, rm } from 'node:fs/promises';
import { errorMessage, fail, ok, type Result } from '../util/result.ts';

/**
 * One writer per archive folder. Two runs over the same folder (a room command during the nightly
 * run, the terminal beside the service) would each cut the other's appended lines back to the
 * lengths they knew, and the lines lost would be recorded as archived. The lock is a file in the
 * folder itself, so it holds whichever Steward database or path the folder is reached by; a lock
 * left by a process that died on this host is taken over.
 */
export const LOCK_FILE = '.steward-archive.lock';
/** Locks this process holds: a lock naming this pid but not here is from an earlier process that had the same pid (a container restarted). */
const held = new Set<string>();

interface LockOwner {
  readonly pid: number;
  readonly host: string;
  readonly job: number;
  readonly since: number;
}

export interface ArchiveLock {
  release(): Promise<void>;
}

export async function lockArchive(out: string, job: number, now = Date.now()): Promise<Result<ArchiveLock>> {
  const file = join(out, LOCK_FILE);
  const me: LockOwner = { pid: process.pid, host: hostname(), job, since: now };
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(file, 'wx', 0o600);
      try {
        await handle.writeFile(`${JSON.stringify(me)}\n`);
      } finally {
        await handle.close();
      }
      held.add(file);
      return ok({
        release: async () => {
          held.delete(file);
          await rm(file, { force: true });
        },
      });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return fail('E_ARCHIVE_LOCK', `Cannot lock the archive folder ${out}: ${errorMessage(err)}`);
    }
    const owner = await readOwner(file);
    const stale = owner !== null && owner.host === me.host && (owner.pid === me.pid ? !held.has(file) : !alive(owner.pid));
    if (owner !== null && !stale) {
      return fail('E_ARCHIVE_BUSY', `The archive folder ${out} is being written by job #${owner.job} (process ${owner.pid} on ${owner.host}, since ${new Date(owner.since).toISOString()}). Wait for it to finish; if that process is gone, delete ${file}.`);
    }
    // Unreadable (a crash while it was written) or left by a process that is gone: taken over.
    await rm(file, { force: true });
  }
  return fail('E_ARCHIVE_BUSY', `The archive folder ${out} was locked again while Steward took over a stale lock: another run is starting there.`);
}

async function readOwner(file: string): Promise<LockOwner | null> {
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<LockOwner>;
    if (typeof parsed.pid !== 'number' || typeof parsed.host !== 'string' || typeof parsed.job !== 'number' || typeof parsed.since !== 'number') return null;
    return parsed as LockOwner;
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, under another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
