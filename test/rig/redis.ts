// Redis for rig Synapses with workers (127.0.0.1:6379 on these machines; override with
// STEWARD_RIG_REDIS_HOST/PORT). Replication channels are named after the server name, which is
// unique per rig server, but Synapse's external cache keys are not (e.g. "get_joined_hosts:<state
// group>"): each server gets a Redis database of its own, claimed with SET NX in database 0 so
// concurrent test processes never share one, flushed before use, released at cleanup.
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);
const HOST = process.env['STEWARD_RIG_REDIS_HOST'] ?? '127.0.0.1';
const PORT = Number(process.env['STEWARD_RIG_REDIS_PORT'] ?? 6379);
const CLAIM_SECONDS = 6 * 3600;

export const REDIS = { host: HOST, port: PORT };

async function cli(db: number, ...args: string[]): Promise<string> {
  try {
    const { stdout } = await run('redis-cli', ['-h', HOST, '-p', String(PORT), '-n', String(db), ...args]);
    return stdout.trim();
  } catch (err) {
    const e = err as { code?: string; stderr?: string; message: string };
    if (e.code === 'ENOENT') throw new Error('redis-cli not found: the rig needs it to run Synapse with workers');
    throw new Error(`redis-cli ${args[0]}: ${e.stderr?.trim() || e.message}`);
  }
}

const claimKey = (db: number): string => `steward-rig:db:${db}`;

/** Claims a free Redis database (1 … databases-1) for `owner`, flushed. */
export async function claimRedisDb(owner: string): Promise<number> {
  const databases = Number((await cli(0, 'CONFIG', 'GET', 'databases')).split('\n')[1] ?? 16) || 16;
  for (let db = 1; db < databases; db++) {
    if ((await cli(0, 'SET', claimKey(db), owner, 'NX', 'EX', String(CLAIM_SECONDS))) === 'OK') {
      await cli(db, 'FLUSHDB');
      return db;
    }
  }
  throw new Error(`all ${databases - 1} Redis databases on ${HOST}:${PORT} are claimed by rig servers (keys steward-rig:db:* in db 0)`);
}

export async function releaseRedisDb(db: number): Promise<void> {
  await cli(db, 'FLUSHDB');
  await cli(0, 'DEL', claimKey(db));
}

/** For the reaper, at process exit. */
export function releaseRedisDbSync(db: number): void {
  for (const args of [['-n', String(db), 'FLUSHDB'], ['-n', '0', 'DEL', claimKey(db)]]) {
    spawnSync('redis-cli', ['-h', HOST, '-p', String(PORT), ...args], { stdio: 'ignore', timeout: 5000 });
  }
}
