/**
 * The `snapshot` job: read one local account through the appservice namespace (`/sync` as the
 * user by identity assertion, never with the user's token), anonymise it room by room (progress
 * counts rooms), turn it into a Complement blueprint, run the leak check, and only then write the
 * file, atomically, 0600 in a 0700 folder.
 *
 * A durable job rather than a plain command: an initial /sync of a large account takes minutes and
 * anonymising thousands of rooms is visible work, so it gets the live status message, !cancel and
 * !jobs like every long thing. It does not checkpoint per room, on purpose: the only state worth
 * resuming from is the raw /sync answer, which is exactly the personal data that must never touch
 * the disk. A run cut off by a restart therefore starts again from the /sync (same output file).
 */
import { access } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { ClientApi } from '../homeserver/client-api.ts';
import type { SynapseAdmin } from '../homeserver/synapse-admin.ts';
import type { JobContext, JobDefinition } from '../jobs/runner.ts';
import { ensurePrivateDir, writeFileAtomic } from '../util/atomic-write.ts';
import { errorMessage, failure, ok, type Result } from '../util/result.ts';
import type { JobResult } from '../jobs/job-store.ts';
import { Anonymiser, joinedRooms } from './anonymiser.ts';
import { blueprintName, buildBlueprint } from './blueprint.ts';
import { asObject, serverOf } from './json.ts';
import { describeLeaks, findLeaks, SensitiveCollector } from './leak-check.ts';

export const SNAPSHOT_JOB = 'snapshot';
export const DEFAULT_MESSAGES = 50;

export interface SnapshotArgs {
  readonly user: string;
  /** Absolute path of the file to write; null for the default under the dumps folder. */
  readonly out: string | null;
  readonly messages: number;
}

export interface SnapshotDeps {
  readonly client: ClientApi;
  readonly admin: SynapseAdmin;
  readonly serverName: string;
  /** storage.dumps; default files go to <dumps>/snapshots/. */
  readonly dumpsDir: string;
}

interface SnapshotCheckpoint {
  readonly createdTs: number;
  readonly file: string;
}

export function parseSnapshotArgs(args: Record<string, unknown>): SnapshotArgs {
  return {
    user: String(args.user),
    out: typeof args.out === 'string' ? args.out : null,
    messages: typeof args.messages === 'number' ? args.messages : DEFAULT_MESSAGES,
  };
}

/** The filter the snapshot reads with (Complement's): federation format, N timeline events per room. */
export function snapshotFilter(messages: number): Record<string, unknown> {
  return { event_format: 'federation', room: { timeline: { limit: messages } } };
}

/** A default file name that says when and which job, and nothing about whose account it is. */
export function defaultSnapshotFile(dumpsDir: string, jobId: number, createdTs: number): string {
  const stamp = new Date(createdTs).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return join(dumpsDir, 'snapshots', `snapshot-${stamp}-job${jobId}.json`);
}

export function snapshotJob(deps: SnapshotDeps): JobDefinition {
  return {
    type: SNAPSHOT_JOB,
    title: (raw) => `snapshot ${parseSnapshotArgs(raw).user}`,
    async run(ctx: JobContext): Promise<Result<JobResult>> {
      const args = parseSnapshotArgs(ctx.job.args);
      if (serverOf(args.user) !== deps.serverName) {
        return { ok: false, error: failure('E_NOT_LOCAL', `${args.user} is not a local account of ${deps.serverName}; Steward can only read local accounts, by acting as them.`) };
      }
      const details = await deps.admin.user(args.user, { signal: ctx.signal });
      if (!details.ok) {
        return { ok: false, error: failure(details.error.code, details.error.status === 404 ? `${args.user} does not exist.` : `Cannot look up ${args.user}: ${details.error.human}`, details.error.log) };
      }
      if (details.value.deactivated === true || details.value.deactivated === 1) {
        return { ok: false, error: failure('E_DEACTIVATED', `${args.user} is deactivated; a deactivated account cannot be acted as, so it cannot be snapshotted.`) };
      }

      const resume = ctx.resumeFrom as SnapshotCheckpoint | undefined;
      const createdTs = resume?.createdTs ?? Date.now();
      const file = resume?.file ?? args.out ?? defaultSnapshotFile(deps.dumpsDir, ctx.job.id, createdTs);
      if (!resume) {
        if (args.out && (await fileExists(args.out))) {
          return { ok: false, error: failure('E_EXISTS', `${args.out} already exists; choose another --out (a snapshot never overwrites a file).`) };
        }
        ctx.checkpoint({ createdTs, file } satisfies SnapshotCheckpoint);
      }

      const synced = await deps.client.sync(args.user, snapshotFilter(args.messages), { signal: ctx.signal });
      if (ctx.signal.aborted) return { ok: false, error: failure('E_CANCELLED', 'stopped') };
      if (!synced.ok) {
        return { ok: false, error: failure(synced.error.code, `Reading the account (/sync as the user) failed: ${synced.error.human}`, synced.error.log) };
      }
      const sync = synced.value;

      const anonymiser = new Anonymiser({ subject: args.user, serverName: deps.serverName });
      const rooms = joinedRooms(sync);
      anonymiser.reserveRooms(rooms.map(([id]) => id));
      ctx.setTotal(rooms.length);
      let failedRooms = 0;
      for (const [i, [roomId, room]] of rooms.entries()) {
        if (ctx.signal.aborted) return { ok: false, error: failure('E_CANCELLED', 'stopped') };
        const r = anonymiser.anonymiseRoom(roomId, room);
        if (r.ok) {
          ctx.advance();
        } else {
          failedRooms += 1;
          ctx.itemFailed(anonymiser.roomLabel(roomId)!, r.error);
        }
        if (i % 25 === 24) await yieldToLoop();
      }
      const snapshot = anonymiser.snapshot(asObject(sync.account_data)?.events);
      const doc = buildBlueprint(snapshot, {
        name: blueprintName(createdTs),
        createdTs,
        timelineLimit: args.messages,
        roomsFailed: failedRooms,
      });

      // The leak check: every sensitive string of the source against exactly the text to be written.
      const collector = new SensitiveCollector({ serverName: deps.serverName, labels: anonymiser });
      collector.profile(args.user, { displayname: details.value.displayname, avatar_url: details.value.avatar_url });
      collector.sync(sync);
      const sensitive = collector.list();
      const first = findLeaks(doc, serialise(doc), sensitive);
      doc.steward.leak_check = { sensitive_strings: first.checked, leaks: first.leaks.length, heuristic_hits: first.heuristicHits };
      const text = serialise(doc);
      const report = findLeaks(doc, text, sensitive);
      if (report.leaks.length > 0) {
        ctx.log.error({ leaks: report.leaks }, 'snapshot refused: the leak check found source strings in the output');
        return {
          ok: false,
          error: failure('E_LEAK', `Refused to write the snapshot: the leak check found ${report.leaks.length} source string(s) in the anonymised output. Nothing was written.\n${describeLeaks(report)}`),
        };
      }

      try {
        await ensurePrivateDir(dirname(file));
        await writeFileAtomic(file, text, 0o600);
      } catch (err) {
        return { ok: false, error: failure('E_WRITE', `Cannot write ${file}: ${errorMessage(err)}`) };
      }
      const counts = doc.steward.counts;
      const users = doc.blueprint.Homeservers[0]!.Users.length;
      const summary = [
        `Snapshot written to ${file}: ${counts.rooms} room(s), ${users} user(s), ${counts.blueprint_events} event(s)`
          + ` (${counts.reactions_kept} reaction(s), ${counts.redactions_kept} redaction(s) kept;`
          + ` ${(counts.reactions_dropped ?? 0) + (counts.redactions_dropped ?? 0)} dropped for pointing outside the snapshot)`
          + (failedRooms ? `, ${failedRooms} room(s) skipped` : '') + '.',
        `Leak check passed: ${report.checked} source strings searched, none found${report.unchecked ? `; ${report.unchecked} format words (such as "join") skipped` : ''}.`,
        `Heuristic the|matrix|and|mxc: ${report.heuristicHits} line(s) (warning only; format names such as org.matrix.* match it).`,
      ].join('\n');
      return ok({
        summary,
        details: {
          file,
          users,
          ...counts,
          leak_check: { passed: true, checked: report.checked, unchecked: report.unchecked, heuristic_hits: report.heuristicHits },
        },
      });
    },
  };
}

function serialise(doc: unknown): string {
  return `${JSON.stringify(doc, null, 2)}\n`;
}

async function fileExists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}
