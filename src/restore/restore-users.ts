import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileNameFor, newDumpId } from '../dump/dump-files.ts';
import { openSynapseDb, type SynapseDb } from '../homeserver/synapse-db.ts';
import type { JobContext, JobDefinition } from '../jobs/runner.ts';
import type { Db } from '../store/database.ts';
import { ensurePrivateDir } from '../util/atomic-write.ts';
import { forEachConcurrent } from '../util/pool.ts';
import { errorMessage, failure, ok, type Result } from '../util/result.ts';
import { openUserDump, readPasswordHashes, readUserFile } from './user-dump-reader.ts';
import { RestoredRoomStore } from './room-store.ts';
import { restoreUser, type UserOutcome, type UserRestoreDeps } from './user-restore-sections.ts';

export const RESTORE_USERS_JOB = 'restore-users';
const PAGE = 100;
/** How many users the reply in the room lists one by one; the report file has them all. */
const LISTED_IN_REPLY = 20;

/** What cannot be moved for anyone: said once in every reply. */
export const NOT_MOVABLE =
  'access tokens (everyone signs in again) and device keys, one-time keys and Olm sessions (everyone re-verifies their devices; ' +
  'encrypted history comes back through the key backup)';

export interface RestoreUsersArgs {
  /** The dump folder (…/users-<time>-job<n>), absolute. */
  readonly dump: string;
  readonly users: readonly string[];
  readonly dryRun: boolean;
  readonly concurrency: number;
  /** Synapse's database for password hashes, when given on the command line (else synapse.database). */
  readonly synapseDb?: string;
  /** Use synapse.database from the config for password hashes. */
  readonly useConfigSynapseDb?: boolean;
  /** An archive folder to re-upload lost avatar media from. */
  readonly archive?: string;
}

export function parseRestoreUsersArgs(raw: Record<string, unknown>): RestoreUsersArgs {
  return {
    dump: String(raw.dump),
    users: Array.isArray(raw.users) ? raw.users.map(String) : [],
    dryRun: raw.dryRun === true,
    concurrency: typeof raw.concurrency === 'number' ? raw.concurrency : 4,
    ...(typeof raw.synapseDb === 'string' ? { synapseDb: raw.synapseDb } : {}),
    ...(raw.useConfigSynapseDb === true ? { useConfigSynapseDb: true } : {}),
    ...(typeof raw.archive === 'string' ? { archive: raw.archive } : {}),
  };
}

export interface RestoreUsersDeps extends UserRestoreDeps {
  readonly db: Db;
  readonly serverName: string;
  /** synapse.database from the config. */
  readonly synapseDatabase: string | undefined;
  /** Where the per-user report goes (<storage.dumps>/restore-reports). */
  readonly reportsDir: string;
}

interface Checkpoint {
  readonly index: number;
  readonly startedTs: number;
}

/**
 * `restore users`: every user of a dump (or the ones named) put back on this server, as a durable
 * job. The dump is checked before anything is written: the manifest (format, this server, finished)
 * when the job starts, each user's file in full before that user's first write. Users are restored
 * in file-name order, a page at a time; the checkpoint is the index of the next page, and a re-done
 * page writes nothing twice because every section compares before it writes.
 */
export function restoreUsersJob(deps: RestoreUsersDeps): JobDefinition {
  const record = deps.db.prepare(`
    INSERT INTO restore_user_results (job_id, user_id, seq, outcome, needs_password_reset, result) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (job_id, user_id) DO UPDATE SET
      -- a page re-done after a restart finds its users already restored: keep what the first pass did
      outcome = CASE WHEN excluded.outcome = 'unchanged' AND outcome = 'restored' THEN outcome ELSE excluded.outcome END,
      needs_password_reset = excluded.needs_password_reset,
      result = CASE WHEN excluded.outcome = 'unchanged' AND outcome = 'restored' THEN result ELSE excluded.result END`);
  const rooms = new RestoredRoomStore(deps.db);

  return {
    type: RESTORE_USERS_JOB,
    title: (raw) => {
      const args = parseRestoreUsersArgs(raw);
      return `restore users${args.dryRun ? ' (dry run)' : ''}${args.users.length ? ` (${args.users.length} listed)` : ''}`;
    },
    async run(ctx: JobContext) {
      const args = parseRestoreUsersArgs(ctx.job.args);
      const resume = ctx.resumeFrom as Checkpoint | undefined;
      const cp: Checkpoint = resume ?? { index: 0, startedTs: Date.now() };
      if (!resume) ctx.checkpoint(cp);

      const index = await openUserDump(args.dump, deps.serverName);
      if (!index.ok) return index;
      const hashes = await readPasswordHashes(index.value);
      if (!hashes.ok) return hashes;
      const dbTarget = args.synapseDb ?? (args.useConfigSynapseDb ? deps.synapseDatabase : undefined);
      let synapseDb: SynapseDb | undefined;
      if (dbTarget) {
        const opened = await openSynapseDb(dbTarget, { readonly: args.dryRun });
        if (!opened.ok) return opened;
        synapseDb = opened.value;
      }
      try {
        let files = index.value.files;
        if (args.users.length > 0) {
          const present = new Set(files);
          files = args.users.map(fileNameFor).filter((f) => present.has(f));
          for (const u of args.users) if (!present.has(fileNameFor(u))) ctx.itemFailed(u, failure('E_NOT_IN_DUMP', `${u} is not in this dump`));
        }
        // Named users that are not in the dump count as failed items of the total.
        ctx.setTotal(args.users.length > 0 ? args.users.length : files.length);

        const one = async (item: { name: string; seq: number }): Promise<void> => {
          const doc = await readUserFile(index.value, item.name);
          if (ctx.signal.aborted) return;
          if (!doc.ok) {
            const who = decodeName(item.name);
            save(ctx.job.id, who, item.seq, { outcome: 'failed', changes: [], notes: [], errors: [{ section: 'file', message: doc.error.human }], needsPasswordReset: false, readMarkers: [] });
            ctx.itemFailed(who, doc.error);
            return;
          }
          const userId = doc.value.userId;
          const outcome = await restoreUser(deps, {
            doc: doc.value,
            apply: !args.dryRun,
            signal: ctx.signal,
            archiveDir: args.archive,
            synapseDb,
            passwordHash: hashes.value ? (hashes.value.has(userId) ? hashes.value.get(userId)! : undefined) : undefined,
          });
          if (ctx.signal.aborted) return; // cut off: the page is done again on resume, and nothing is written twice
          if (!args.dryRun) deps.db.transaction(() => {
            for (const m of outcome.readMarkers) rooms.recordMarker(userId, m.roomId, m.eventId);
          })();
          save(ctx.job.id, userId, item.seq, outcome);
          if (outcome.outcome === 'failed') {
            ctx.itemFailed(userId, failure(`E_RESTORE_${outcome.errors[0]!.section.toUpperCase()}`, outcome.errors.map((e) => `${e.section}: ${e.message}`).join('; ')));
          } else {
            ctx.advance();
          }
        };

        for (let i = cp.index; i < files.length && !ctx.signal.aborted; i += PAGE) {
          const page = files.slice(i, i + PAGE).map((name, k) => ({ name, seq: i + k }));
          await forEachConcurrent(page, args.concurrency, one, ctx.signal);
          if (!ctx.signal.aborted) ctx.checkpoint({ ...cp, index: i + PAGE });
        }
        if (ctx.signal.aborted) return { ok: false, error: failure('E_CANCELLED', 'stopped') };
      } finally {
        await synapseDb?.close().catch(() => undefined);
      }
      return finish(ctx, args, index.value.passwordHashes, dbTarget !== undefined);
    },
  };

  function save(jobId: number, userId: string, seq: number, o: UserOutcome): void {
    record.run(jobId, userId, seq, o.outcome, o.needsPasswordReset ? 1 : 0, JSON.stringify({ changes: o.changes, notes: o.notes, errors: o.errors }));
  }

  async function finish(ctx: JobContext, args: RestoreUsersArgs, dumpHasHashes: boolean, hashesWritten: boolean): Promise<Result<{ summary: string; details: Record<string, unknown> }>> {
    const jobId = ctx.job.id;
    const counts = { restored: 0, unchanged: 0, failed: 0 };
    for (const row of deps.db.prepare('SELECT outcome, count(*) AS n FROM restore_user_results WHERE job_id = ? GROUP BY outcome').all(jobId) as { outcome: keyof typeof counts; n: number }[]) counts[row.outcome] = row.n;
    // Users named with --user that are not in the dump never reach the table.
    counts.failed = Math.max(counts.failed, ctx.counters().failed);
    const resets = deps.db.prepare('SELECT user_id FROM restore_user_results WHERE job_id = ? AND needs_password_reset = 1 ORDER BY seq').pluck().all(jobId) as string[];

    let report: string | null = null;
    try {
      report = await writeReport(ctx, args, counts);
    } catch (err) {
      ctx.log.warn({ err: errorMessage(err) }, 'the restore report could not be written');
    }
    const would = args.dryRun;
    const lines = [
      would
        ? `Dry run of restore users from ${args.dump}: ${counts.restored} would change, ${counts.unchanged} unchanged, ${counts.failed} failed. Nothing was written.`
        : `Restored users from ${args.dump}: ${counts.restored} restored, ${counts.unchanged} unchanged, ${counts.failed} failed.`,
    ];
    if (resets.length > 0) {
      const why = !dumpHasHashes ? 'the dump has no password hashes (dump users --with-password-hashes)' : !hashesWritten ? 'no --synapse-db was given to write the hashes into' : 'their hash could not be written';
      lines.push(`Need a password reset (${resets.length}; ${why}): ${resets.slice(0, LISTED_IN_REPLY).join(', ')}${resets.length > LISTED_IN_REPLY ? ', …' : ''}`);
    }
    lines.push(`Cannot be moved for anyone: ${NOT_MOVABLE}.`);
    const listed = deps.db.prepare(`SELECT user_id, outcome, result FROM restore_user_results WHERE job_id = ? AND (outcome != 'unchanged' OR result NOT LIKE '%"notes":[]%') ORDER BY seq LIMIT ?`).all(jobId, LISTED_IN_REPLY + 1) as { user_id: string; outcome: string; result: string }[];
    for (const row of listed.slice(0, LISTED_IN_REPLY)) lines.push(`• ${userLine(row.user_id, row.outcome, JSON.parse(row.result) as Pick<UserOutcome, 'changes' | 'notes' | 'errors'>, would)}`);
    if (listed.length > LISTED_IN_REPLY || report) lines.push(`${listed.length > LISTED_IN_REPLY ? 'More users in' : 'Every user in'} the report: ${report ?? '(not written)'}`);
    return ok({ summary: lines.join('\n'), details: { dump: args.dump, dry_run: would, ...counts, password_reset_needed: resets.length, report } });
  }

  /** Every user's outcome as JSON lines (0600), streamed from the table: memory flat in the number of users. */
  async function writeReport(ctx: JobContext, args: RestoreUsersArgs, counts: Record<string, number>): Promise<string> {
    await ensurePrivateDir(deps.reportsDir);
    const file = join(deps.reportsDir, `${newDumpId(args.dryRun ? 'restore-users-dry-run' : 'restore-users', ctx.job.id)}.jsonl`);
    const out = createWriteStream(file, { mode: 0o600, flags: 'wx' });
    const write = async (line: unknown): Promise<void> => {
      if (!out.write(`${JSON.stringify(line)}\n`)) await once(out, 'drain');
    };
    await write({ format: 'steward.restore-users-report/1', dump: args.dump, dry_run: args.dryRun, job_id: ctx.job.id, ...counts, not_movable: NOT_MOVABLE });
    for (const row of deps.db.prepare('SELECT user_id, outcome, needs_password_reset, result FROM restore_user_results WHERE job_id = ? ORDER BY seq').iterate(ctx.job.id) as Iterable<{ user_id: string; outcome: string; needs_password_reset: number; result: string }>) {
      await write({ user_id: row.user_id, outcome: row.outcome, needs_password_reset: row.needs_password_reset === 1, ...(JSON.parse(row.result) as object) });
    }
    out.end();
    await once(out, 'close');
    return file;
  }
}

function userLine(userId: string, outcome: string, r: Pick<UserOutcome, 'changes' | 'notes' | 'errors'>, dryRun: boolean): string {
  const parts: string[] = [];
  if (r.changes.length) parts.push(`${dryRun ? 'would change' : outcome === 'failed' ? 'changed before failing' : 'restored'}: ${r.changes.join(', ')}`);
  if (r.errors.length) parts.push(`failed: ${r.errors.map((e) => `${e.section} (${e.message})`).join('; ')}`);
  if (r.notes.length) parts.push(`not moved: ${r.notes.join('; ')}`);
  return `${userId} — ${parts.join(' · ') || outcome}`;
}

function decodeName(name: string): string {
  try {
    return decodeURIComponent(name.replace(/(~[0-9a-f]{32})?\.json$/, ''));
  } catch {
    return name;
  }
}
