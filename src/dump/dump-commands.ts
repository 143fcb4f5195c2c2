import { isAbsolute, resolve } from 'node:path';
import type { Command } from '../commands/types.ts';
import { startJob } from '../commands/start-job.ts';
import { fail, ok, type Result } from '../util/result.ts';
import type { CommandContext } from '../commands/context.ts';
import type { DumpRoomsArgs } from './dump-rooms.ts';
import type { DumpUsersArgs } from './dump-users.ts';

export const dumpUsersCommand: Command = {
  name: 'dump users',
  summary: 'one JSON file per user: profile, account data, devices, pushers, push rules, memberships, keys',
  description:
    'Dumps every local user (or the ones named) into DIR/<dump-id>/users/, one JSON file per user, with a manifest.json. ' +
    'Runs as a durable job: progress is shown live, an interrupted dump resumes where it stopped, and a user that fails is recorded without stopping the dump.',
  params: [],
  flags: [
    { name: 'out', type: 'path', description: 'folder for the dump (default: storage.dumps from the config)' },
    { name: 'user', type: 'user', description: 'dump only this user', repeatable: true },
    { name: 'include-deactivated', type: 'boolean', description: 'also dump deactivated users' },
    { name: 'concurrency', type: 'int', description: 'users fetched at once (default: requests.concurrency)', min: 1, max: 64 },
    { name: 'with-password-hashes', type: 'boolean', description: 'also record password hashes (read from Synapse\'s database; the dump can then be cracked offline: keep it private)' },
    { name: 'synapse-db', type: 'string', description: 'Synapse\'s database for --with-password-hashes: a SQLite path or a Postgres DSN (default: synapse.database)' },
  ],
  frontEnds: ['room', 'terminal'],
  examples: ['dump users', 'dump users --with-password-hashes --synapse-db /var/lib/matrix-synapse/homeserver.db', 'dump users --user @alice:example.org --user @bob:example.org', 'dump users --out /srv/dumps --concurrency 8'],
  async execute(ctx, input) {
    const out = input.string('out') ?? ctx.config.storage.dumps;
    const args: DumpUsersArgs = {
      // A relative --out is relative to where the admin is: the shell's folder, or the dumps folder for the room.
      out: isAbsolute(out) ? out : ctx.frontEnd === 'terminal' ? resolve(out) : resolve(ctx.config.storage.dumps, out),
      users: [...new Set(input.list('user'))],
      includeDeactivated: input.bool('include-deactivated'),
      concurrency: input.int('concurrency') ?? ctx.config.requests.concurrency,
    };
    if (input.bool('with-password-hashes')) {
      const db = synapseDbArgument(ctx, input.string('synapse-db'), '--with-password-hashes');
      if (!db.ok) return db;
      return startJob(ctx, 'dump-users', { ...args, withPasswordHashes: true, ...db.value });
    }
    return startJob(ctx, 'dump-users', { ...args });
  },
};

export const dumpRoomsCommand: Command = {
  name: 'dump rooms',
  summary: 'one JSON file per room: details, current state, and the state and full auth chain over federation, every event verified',
  description:
    'Dumps every room of the server (or the ones named) into DIR/<dump-id>/rooms/, one JSON file per room, with a manifest.json. ' +
    'Each file holds the admin API\'s room details and current state, and the state and full auth chain at the latest event as our own ' +
    'server serves them over federation (signed with its key, federation.signing_key_path), every event verified; events that fail a check are ' +
    'dropped and counted, and the file tells whether the auth chain closes. ' +
    'Runs as a durable job: progress is shown live, an interrupted dump resumes where it stopped, and a room that fails is recorded without stopping the dump.',
  params: [],
  flags: [
    { name: 'out', type: 'path', description: 'folder for the dump (default: storage.dumps from the config)' },
    { name: 'room', type: 'room', description: 'dump only this room (a room id)', repeatable: true },
    { name: 'concurrency', type: 'int', description: 'rooms fetched at once (default: requests.concurrency)', min: 1, max: 64 },
  ],
  frontEnds: ['room', 'terminal'],
  examples: ['dump rooms', 'dump rooms --room !abc:example.org --room !def:example.org', 'dump rooms --out /srv/dumps --concurrency 8'],
  async execute(ctx, input) {
    // Fail at once, before a job exists, when federation cannot work (e.g. no signing key configured).
    const aliases = input.list('room').filter((r) => !r.startsWith('!'));
    if (aliases.length > 0) return fail('E_USAGE', `--room takes room ids (!…), not aliases: ${aliases.join(', ')}.`);
    const federation = await ctx.federation.get();
    if (!federation.ok) return federation;
    const out = input.string('out') ?? ctx.config.storage.dumps;
    const args: DumpRoomsArgs = {
      out: isAbsolute(out) ? out : ctx.frontEnd === 'terminal' ? resolve(out) : resolve(ctx.config.storage.dumps, out),
      rooms: [...new Set(input.list('room'))],
      concurrency: input.int('concurrency') ?? ctx.config.requests.concurrency,
    };
    return startJob(ctx, 'dump-rooms', { ...args });
  },
};

/**
 * Where Synapse's database is, from --synapse-db or synapse.database. A DSN with a password is
 * refused on the command line: job arguments are stored and logged, and a room message is seen by
 * everyone in it. Such a DSN belongs in the config file.
 */
export function synapseDbArgument(ctx: CommandContext, given: string | undefined, needer: string): Result<{ synapseDb?: string }> {
  const target = given ?? ctx.config.synapse.database;
  if (!target) return fail('E_USAGE', `${needer} needs Synapse's database: --synapse-db <SQLite path | Postgres DSN>, or synapse.database in the config.`);
  if (given !== undefined && /^postgres(ql)?:\/\/[^/@]*:[^/@]*@/i.test(given)) {
    return fail('E_USAGE', 'A Postgres DSN with a password does not belong on the command line (job arguments are stored and logged): put it in synapse.database in the config, or use PGPASSWORD / ~/.pgpass.');
  }
  // From the config, the job reads it again when it runs: the DSN's password never enters the job store.
  if (given === undefined) return ok({});
  if (/^postgres(ql)?:\/\//i.test(given)) return ok({ synapseDb: given });
  if (!isAbsolute(given) && ctx.frontEnd !== 'terminal') return fail('E_USAGE', `--synapse-db needs an absolute path in the room (got ${given}).`);
  return ok({ synapseDb: resolve(given) });
}
