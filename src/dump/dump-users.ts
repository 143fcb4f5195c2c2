import { join } from 'node:path';
import type { AccountApi } from '../homeserver/account-api.ts';
import type { ClientApi } from '../homeserver/client-api.ts';
import type { HttpFailure } from '../homeserver/http.ts';
import type { SynapseAdmin } from '../homeserver/synapse-admin.ts';
import type { JobContext, JobDefinition } from '../jobs/runner.ts';
import type { JobStore } from '../jobs/job-store.ts';
import { forEachConcurrent } from '../util/pool.ts';
import { errorMessage, failure, ok, type Result } from '../util/result.ts';
import { CHECKSUM_ALGORITHM, fileSha256, sectionChecksums } from './dump-checksums.ts';
import { exists, fileNameFor, newDumpId, prepareDumpDir, removeOrphanTemps, writeJson } from './dump-files.ts';
import { openSynapseDb } from '../homeserver/synapse-db.ts';

export const USER_DUMP_FORMAT = 'steward.user-dump/1';
export const DUMP_MANIFEST_FORMAT = 'steward.dump-manifest/1';
export const PASSWORD_HASHES_FORMAT = 'steward.password-hashes/1';
export const PASSWORD_HASHES_FILE = 'password-hashes.json';
export const PASSWORD_HASHES_WARNING =
  'This dump holds password hashes: anyone with the file can try to crack them offline. Keep it private (it is 0600) and delete it once restored.';
const PAGE_SIZE = 100;

export interface DumpUsersArgs {
  readonly out: string;
  readonly users: readonly string[];
  readonly includeDeactivated: boolean;
  readonly concurrency: number;
  /** Also record password hashes, read from Synapse's database (`synapseDb`). */
  readonly withPasswordHashes?: boolean;
  /** SQLite path or Postgres DSN of Synapse's database (with withPasswordHashes). */
  readonly synapseDb?: string;
}

interface DumpUsersCheckpoint {
  readonly dumpId: string;
  readonly startedTs: number;
  /** Admin API pagination token of the next page to do; undefined before the first page. */
  readonly from?: string;
  /** Index into an explicit --user list. */
  readonly index?: number;
}

export interface DumpUsersDeps {
  readonly admin: SynapseAdmin;
  readonly client: ClientApi;
  readonly account: AccountApi;
  readonly jobs: JobStore;
  readonly serverName: string;
  readonly stewardVersion: string;
  /** synapse.database from the config: used when the command named no --synapse-db. */
  readonly synapseDatabase?: string | undefined;
}

export function parseDumpUsersArgs(args: Record<string, unknown>): DumpUsersArgs {
  return {
    out: String(args.out),
    users: Array.isArray(args.users) ? args.users.map(String) : [],
    includeDeactivated: args.includeDeactivated === true,
    concurrency: typeof args.concurrency === 'number' ? args.concurrency : 4,
    withPasswordHashes: args.withPasswordHashes === true,
    ...(typeof args.synapseDb === 'string' ? { synapseDb: args.synapseDb } : {}),
  };
}

/** Everything the admin and client APIs can say about one user, as one portable document. */
export async function collectUser(userId: string, deps: Pick<DumpUsersDeps, 'admin' | 'client' | 'account'>, signal?: AbortSignal): Promise<Result<{ document: Record<string, unknown>; partial: string[] }>> {
  const opts = signal ? { signal } : {};
  const details = await deps.admin.user(userId, opts);
  if (!details.ok) return { ok: false, error: details.error };
  const errors: Record<string, string> = {};
  const section = <T>(name: string, r: Result<T, HttpFailure>, fallback: T | null = null): T | null => {
    if (r.ok) return r.value;
    errors[name] = r.error.human;
    return fallback;
  };
  const { name: _name, displayname, avatar_url, ...account } = details.value;
  const deactivated = account.deactivated === true || account.deactivated === 1;

  const devices = section('devices', await deps.admin.devices(userId, opts));
  const pushers = section('pushers', await deps.admin.pushers(userId, opts));
  const accountData = section('account_data', await deps.admin.accountData(userId, opts));
  const memberships = section('memberships', await deps.admin.memberships(userId, opts));

  // The rest is not in the admin API: read it as the user, through the appservice namespace.
  let pushRules: unknown = null;
  let keyBackup: unknown = null;
  let crossSigning: unknown = null;
  if (!deactivated) {
    pushRules = section('push_rules', await deps.client.pushRules(userId, opts));
    const backup = await deps.client.keyBackupVersion(userId, opts);
    keyBackup = backup.ok ? backup.value : backup.error.errcode === 'M_NOT_FOUND' ? null : section('key_backup', backup);
    // The backed-up sessions themselves (opaque ciphertext): without them a restored backup is empty.
    const version = (keyBackup as { version?: unknown } | null)?.version;
    if (typeof version === 'string') {
      const keys = await deps.account.keyBackupKeys(userId, version, opts);
      if (keys.ok) (keyBackup as Record<string, unknown>).rooms = keys.value.rooms ?? {};
      else errors.key_backup = `the sessions of backup version ${version} could not be read: ${keys.error.human}`;
    }
    const keys = section('cross_signing', await deps.client.keysQuery(userId, userId, opts));
    if (keys) {
      const pick = (field: string): unknown => (keys[field] as Record<string, unknown> | undefined)?.[userId] ?? null;
      crossSigning = { master_key: pick('master_keys'), self_signing_key: pick('self_signing_keys'), user_signing_key: pick('user_signing_keys') };
    }
  }

  const document: Record<string, unknown> = {
    format: USER_DUMP_FORMAT,
    user_id: userId,
    dumped_ts: Date.now(),
    profile: { displayname: displayname ?? null, avatar_url: avatar_url ?? null, ...(await avatarMedia(avatar_url, deps, opts, errors)) },
    account,
    account_data: accountData?.account_data ?? null,
    devices: devices?.devices ?? null,
    pushers: pushers?.pushers ?? null,
    push_rules: pushRules,
    memberships: memberships?.memberships ?? null,
    key_backup: keyBackup,
    cross_signing: crossSigning,
  };
  if (deactivated) document.not_collected = { reason: 'deactivated users cannot be acted as', sections: ['push_rules', 'key_backup', 'cross_signing'] };
  if (Object.keys(errors).length > 0) document.errors = errors;
  return ok({ document, partial: Object.keys(errors) });
}

/**
 * What restore needs to find the avatar again when the media repository is lost too: its sha256
 * (the key of content-addressed archive media), type and name. Only for this server's media.
 */
async function avatarMedia(avatarUrl: unknown, deps: Pick<DumpUsersDeps, 'account'>, opts: { signal?: AbortSignal }, errors: Record<string, string>): Promise<{ avatar_media?: Record<string, unknown> }> {
  const m = typeof avatarUrl === 'string' ? /^mxc:\/\/([^/]+)\/([^/?#]+)$/.exec(avatarUrl) : null;
  if (!m) return {};
  const info = await deps.account.mediaInfo(m[1]!, m[2]!, opts);
  if (!info.ok) {
    if (info.error.status !== 404) errors.avatar_media = info.error.human;
    return {};
  }
  const { sha256, media_type, upload_name, media_length } = info.value.media_info ?? {};
  return { avatar_media: { sha256: sha256 ?? null, media_type: media_type ?? null, upload_name: upload_name ?? null, media_length: media_length ?? null } };
}

/** Pages through the admin API's user list from `from`, yielding one page at a time. */
async function* userPages(admin: SynapseAdmin, from: string | undefined, includeDeactivated: boolean, signal: AbortSignal): AsyncGenerator<Result<{ users: string[]; total: number; next?: string }>> {
  let token = from;
  for (;;) {
    const page = await admin.listUsers(token, PAGE_SIZE, includeDeactivated, { signal });
    if (!page.ok) {
      yield { ok: false, error: page.error };
      return;
    }
    const users = Array.isArray(page.value.users) ? page.value.users.filter((u) => typeof u?.name === 'string').map((u) => u.name) : [];
    const next = page.value.next_token === undefined || page.value.next_token === null ? undefined : String(page.value.next_token);
    yield ok({ users, total: typeof page.value.total === 'number' ? page.value.total : users.length, next });
    if (!next || signal.aborted) return;
    token = next;
  }
}

export function dumpUsersJob(deps: DumpUsersDeps): JobDefinition {
  return {
    type: 'dump-users',
    title: (raw) => {
      const args = parseDumpUsersArgs(raw);
      return args.users.length > 0 ? `dump users (${args.users.length} listed)` : 'dump users';
    },
    async run(ctx: JobContext) {
      const args = parseDumpUsersArgs(ctx.job.args);
      const resume = ctx.resumeFrom as DumpUsersCheckpoint | undefined;
      const cp: DumpUsersCheckpoint = resume ?? { dumpId: newDumpId('users', ctx.job.id), startedTs: Date.now() };
      let dir: string;
      try {
        dir = await prepareDumpDir(args.out, cp.dumpId, 'users');
      } catch (err) {
        return { ok: false, error: failure('E_DUMP_DIR', `Cannot create the dump folder under ${args.out}: ${errorMessage(err)}`) };
      }
      const root = join(args.out, cp.dumpId);
      if (resume) {
        const orphans = await removeOrphanTemps(dir);
        if (orphans > 0) ctx.log.info({ orphans }, 'removed temp files left by the interrupted run');
      } else {
        ctx.checkpoint(cp);
      }
      const version = await deps.admin.serverVersion({ signal: ctx.signal });
      const synapseVersion = version.ok ? version.value.server_version : null;
      let written = 0;
      let skipped = 0;
      let partial = 0;

      const dumpOne = async (userId: string): Promise<void> => {
        const file = join(dir, fileNameFor(userId));
        if (await exists(file)) {
          skipped += 1; // written before an interruption: files are atomic, so it is whole
          ctx.advance();
          return;
        }
        const collected = await collectUser(userId, deps, ctx.signal);
        if (ctx.signal.aborted) return;
        if (!collected.ok) {
          ctx.itemFailed(userId, collected.error);
          return;
        }
        try {
          await writeJson(file, collected.value.document);
        } catch (err) {
          ctx.itemFailed(userId, failure('E_WRITE', `cannot write ${file}: ${errorMessage(err)}`));
          return;
        }
        written += 1;
        if (collected.value.partial.length > 0) {
          partial += 1;
          ctx.log.warn({ user: userId, sections: collected.value.partial }, 'user dumped without some sections');
        }
        ctx.advance();
      };

      await writeJson(join(root, 'manifest.json'), manifest(deps, args, cp, 'in-progress', ctx, synapseVersion, { written, skipped, partial }));
      if (args.users.length > 0) {
        ctx.setTotal(args.users.length);
        const start = cp.index ?? 0;
        for (let i = start; i < args.users.length && !ctx.signal.aborted; i += PAGE_SIZE) {
          await forEachConcurrent(args.users.slice(i, i + PAGE_SIZE), args.concurrency, dumpOne, ctx.signal);
          if (!ctx.signal.aborted) ctx.checkpoint({ ...cp, index: i + PAGE_SIZE });
        }
      } else {
        for await (const page of userPages(deps.admin, cp.from, args.includeDeactivated, ctx.signal)) {
          if (!page.ok) {
            if (ctx.signal.aborted) break;
            return { ok: false, error: failure(page.error.code, `Listing users failed: ${page.error.human}`, page.error.log) };
          }
          ctx.setTotal(page.value.total);
          await forEachConcurrent(page.value.users, args.concurrency, dumpOne, ctx.signal);
          if (ctx.signal.aborted) break;
          ctx.checkpoint({ ...cp, from: page.value.next });
        }
      }
      if (ctx.signal.aborted) return { ok: false, error: failure('E_CANCELLED', 'stopped') };

      const final = manifest(deps, args, cp, 'complete', ctx, synapseVersion, { written, skipped, partial });
      let hashes = 0;
      if (args.withPasswordHashes) {
        const recorded = await writePasswordHashes(root, dir, args.synapseDb ?? deps.synapseDatabase, deps.serverName);
        if (!recorded.ok) return recorded;
        hashes = recorded.value;
        final.password_hashes = { file: PASSWORD_HASHES_FILE, users_with_hash: hashes, warning: PASSWORD_HASHES_WARNING };
      }
      // Whole-file checksums let restore tell a truncated or edited user file from a good one.
      const files = await sectionChecksums(root, 'users');
      if (args.withPasswordHashes) files[PASSWORD_HASHES_FILE] = await fileSha256(join(root, PASSWORD_HASHES_FILE));
      final.checksums = { algorithm: CHECKSUM_ALGORITHM, files };
      await writeJson(join(root, 'manifest.json'), final);
      const counts = final.counts as Record<string, number>;
      return ok({
        summary: `${counts.users_dumped} users dumped to ${root}${counts.users_failed ? `, ${counts.users_failed} failed` : ''}${partial ? `, ${partial} without some sections` : ''}` +
          (args.withPasswordHashes ? `\n⚠️ ${hashes} password hashes recorded in ${PASSWORD_HASHES_FILE}. ${PASSWORD_HASHES_WARNING}` : ''),
        details: { directory: root, ...counts, ...(args.withPasswordHashes ? { password_hashes: hashes } : {}) },
      });
    },
  };

  function manifest(d: DumpUsersDeps, args: DumpUsersArgs, cp: DumpUsersCheckpoint, state: string, ctx: JobContext, synapseVersion: string | null, run: { written: number; skipped: number; partial: number }): Record<string, unknown> {
    const counters = ctx.counters();
    const errors = d.jobs.errors(ctx.job.id).map((e) => ({ user: e.item, code: e.code, message: e.message }));
    return {
      format: DUMP_MANIFEST_FORMAT,
      kind: 'users',
      state,
      server_name: d.serverName,
      steward_version: d.stewardVersion,
      synapse_version: synapseVersion,
      job_id: ctx.job.id,
      started_ts: cp.startedTs,
      finished_ts: state === 'complete' ? Date.now() : null,
      options: { users: args.users, include_deactivated: args.includeDeactivated, with_password_hashes: args.withPasswordHashes === true },
      // Said so that a reader knows an empty key_backup.rooms means no sessions, not "not dumped".
      key_backup_sessions: true,
      counts: {
        users_total: counters.total,
        users_dumped: counters.done,
        users_failed: errors.length,
        users_written_this_run: run.written,
        users_already_present: run.skipped,
        users_partial_this_run: run.partial,
        resumed_runs: ctx.job.resumedCount,
      },
      errors,
    };
  }
}

/**
 * Password hashes of the dumped users, read from Synapse's database (no API gives them), in a file
 * of their own so the user files can be handled without them. Returns how many users have one.
 */
async function writePasswordHashes(root: string, usersDir: string, synapseDb: string | undefined, serverName: string): Promise<Result<number>> {
  if (!synapseDb) return { ok: false, error: failure('E_USAGE', '--with-password-hashes needs Synapse\'s database: --synapse-db <SQLite path | Postgres DSN> or synapse.database in the config.') };
  const db = await openSynapseDb(synapseDb, { readonly: true });
  if (!db.ok) return db;
  const hashes: Record<string, string | null> = {};
  let count = 0;
  try {
    for await (const row of db.value.passwordHashes()) {
      if (!(await exists(join(usersDir, fileNameFor(row.userId))))) continue;
      hashes[row.userId] = row.hash;
      if (row.hash) count += 1;
    }
  } catch (err) {
    return { ok: false, error: failure('E_SYNAPSE_DB', `Reading password hashes from Synapse's database failed: ${errorMessage(err)}`) };
  } finally {
    await db.value.close().catch(() => undefined);
  }
  await writeJson(join(root, PASSWORD_HASHES_FILE), { format: PASSWORD_HASHES_FORMAT, server_name: serverName, dumped_ts: Date.now(), warning: PASSWORD_HASHES_WARNING, hashes });
  return ok(count);
}
