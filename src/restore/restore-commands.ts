import { isAbsolute, resolve } from 'node:path';
import type { CommandContext } from '../commands/context.ts';
import type { Command, CommandOutput } from '../commands/types.ts';
import { startJob } from '../commands/start-job.ts';
import { synapseDbArgument } from '../dump/dump-commands.ts';
import { fail, type Result } from '../util/result.ts';
import { RESTORE_USERS_JOB, type RestoreUsersArgs } from './restore-users.ts';
import { openUserDump } from './user-dump-reader.ts';

/** A path argument: relative to the shell's folder in the terminal, to the dumps folder in the room. */
function pathArgument(ctx: CommandContext, given: string): string {
  return isAbsolute(given) ? given : ctx.frontEnd === 'terminal' ? resolve(given) : resolve(ctx.config.storage.dumps, given);
}

// --- restore users ---
export const restoreUsersCommand: Command = {
  name: 'restore users',
  summary: 'put the users of a dump back on this server: accounts, profiles, account data, push rules, pushers, devices, key backups, cross-signing keys',
  description:
    'Restores every user of a dump users folder (or the ones named) onto this homeserver, acting as each user through the namespace. ' +
    'For each user, in order: the account (admin API: display name, threepids, external ids, admin, user type, locked), the password hash ' +
    '(with --synapse-db), the avatar (re-uploaded from --archive when its media is gone), global and per-room account data, push rules in their ' +
    'order, devices, pushers, the key backup with its sessions, cross-signing keys, and deactivation last. ' +
    'Idempotent: each section is compared with the server first and only differences are written, so a re-run reports everyone unchanged. ' +
    'The dump is checked first (this server\'s, finished, a format this Steward knows, every file whole): a bad dump restores nothing, a bad user file fails only that user. ' +
    'Runs as a durable job: live progress, resumes after a restart, one failing user never stops the others.',
  params: [{ name: 'dump', type: 'path', description: 'the dump folder that dump users wrote (…/users-<time>-job<n>)' }],
  flags: [
    { name: 'user', type: 'user', description: 'restore only this user', repeatable: true },
    { name: 'dry-run', type: 'boolean', description: 'only compare: print what would change per user, write nothing' },
    { name: 'synapse-db', type: 'string', description: 'Synapse\'s database (SQLite path or Postgres DSN) to write password hashes into (default: synapse.database)' },
    { name: 'archive', type: 'path', description: 'an archive folder whose media/ holds lost avatar media by sha256' },
    { name: 'concurrency', type: 'int', description: 'users restored at once (default: requests.concurrency)', min: 1, max: 64 },
  ],
  frontEnds: ['room', 'terminal'],
  examples: [
    'restore users /srv/dumps/users-20261201T000000Z-job4 --dry-run',
    'restore users /srv/dumps/users-20261201T000000Z-job4 --synapse-db /var/lib/matrix-synapse/homeserver.db',
    'restore users /srv/dumps/users-20261201T000000Z-job4 --user @alice:example.org',
  ],
  async execute(ctx, input): Promise<Result<CommandOutput>> {
    const dump = pathArgument(ctx, input.param('dump')!);
    // The whole dump is refused before a job exists when it is not this server's, unfinished or of an unknown format.
    const index = await openUserDump(dump, ctx.config.homeserver.serverName);
    if (!index.ok) return index;
    const given = input.string('synapse-db');
    let db: { synapseDb?: string; useConfigSynapseDb?: boolean } = {};
    if (given !== undefined || ctx.config.synapse.database) {
      const target = synapseDbArgument(ctx, given, '--synapse-db');
      if (!target.ok) return target;
      db = target.value.synapseDb ? target.value : { useConfigSynapseDb: true };
    }
    const users = [...new Set(input.list('user'))];
    const wrongServer = users.filter((u) => u.slice(u.indexOf(':') + 1) !== ctx.config.homeserver.serverName);
    if (wrongServer.length > 0) return fail('E_USAGE', `--user takes users of ${ctx.config.homeserver.serverName}: ${wrongServer.join(', ')}`);
    const archive = input.string('archive');
    const args: RestoreUsersArgs = {
      dump,
      users,
      dryRun: input.bool('dry-run'),
      concurrency: input.int('concurrency') ?? ctx.config.requests.concurrency,
      ...db,
      ...(archive !== undefined ? { archive: pathArgument(ctx, archive) } : {}),
    };
    return startJob(ctx, RESTORE_USERS_JOB, { ...args });
  },
};
// --- end of restore users ---

/** Every restore command; restore rooms appends below. */
export const RESTORE_COMMANDS: readonly Command[] = [
  restoreUsersCommand,
];
