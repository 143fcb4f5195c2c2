// PostgreSQL for rig Synapses: a fresh database per test server on the machine's PostgreSQL
// (127.0.0.1:5432, user postgres, trust auth; override with STEWARD_RIG_PG_HOST/PORT/USER),
// created the way Synapse requires (UTF8, LC_COLLATE and LC_CTYPE "C", from template0), dropped
// at cleanup. Backups are pg_dump custom-format archives, restored with pg_restore.
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type RigDatabase = 'sqlite' | 'postgres';

/** STEWARD_RIG_DB=postgres runs every rig Synapse without an explicit choice on PostgreSQL. */
export function defaultRigDatabase(): RigDatabase {
  const chosen = process.env['STEWARD_RIG_DB'];
  if (chosen === undefined || chosen === '' || chosen === 'sqlite') return 'sqlite';
  if (chosen === 'postgres') return 'postgres';
  throw new Error(`STEWARD_RIG_DB must be sqlite or postgres, not ${JSON.stringify(chosen)}`);
}

const PG = {
  host: process.env['STEWARD_RIG_PG_HOST'] ?? '127.0.0.1',
  port: Number(process.env['STEWARD_RIG_PG_PORT'] ?? 5432),
  user: process.env['STEWARD_RIG_PG_USER'] ?? 'postgres',
};

function connectionArgs(): string[] {
  return ['-h', PG.host, '-p', String(PG.port), '-U', PG.user, '-w'];
}

async function pg(tool: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(tool, [...connectionArgs(), ...args], { maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string; code?: string };
    if (e.code === 'ENOENT') throw new Error(`${tool} not found: install the PostgreSQL client tools to run Synapse on PostgreSQL in the rig`);
    throw new Error(`${tool} ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
  }
}

/** A database name nobody else uses: `steward_rig_<label>_<random>`. */
export function databaseName(label: string): string {
  return `steward_rig_${label.toLowerCase().replace(/[^a-z0-9]+/g, '_').slice(0, 30)}_${randomBytes(4).toString('hex')}`;
}

export async function createDatabase(name: string): Promise<void> {
  await pg('createdb', ['--encoding=UTF8', '--lc-collate=C', '--lc-ctype=C', '--template=template0', name]);
}

export async function dropDatabase(name: string): Promise<void> {
  await pg('dropdb', ['--if-exists', '--force', name]);
}

/** For the reaper, at process exit, when nothing asynchronous runs any more. */
export function dropDatabaseSync(name: string): void {
  spawnSync('dropdb', [...connectionArgs(), '--if-exists', '--force', name], { stdio: 'ignore', timeout: 10_000 });
}

/** pg_dump in the custom format, the one pg_restore reads. */
export async function dumpDatabase(name: string, file: string): Promise<void> {
  await pg('pg_dump', ['--format=custom', `--file=${file}`, name]);
}

/** Replaces database `name` with the contents of `file` (a pg_dump archive). */
export async function restoreDatabase(name: string, file: string): Promise<void> {
  await dropDatabase(name);
  await createDatabase(name);
  await pg('pg_restore', ['--exit-on-error', '--no-owner', `--dbname=${name}`, file]);
}

/** Synapse's `database` section for `name`. */
export function synapseDatabaseConfig(name: string): Record<string, unknown> {
  return {
    name: 'psycopg2',
    args: { user: PG.user, host: PG.host, port: PG.port, dbname: name, cp_min: 1, cp_max: 5 },
  };
}

/** Runs SQL in `name` (tests that look at Synapse's tables). */
export async function query(name: string, sql: string): Promise<string> {
  return pg('psql', ['-d', name, '-At', '-v', 'ON_ERROR_STOP=1', '-c', sql]);
}
