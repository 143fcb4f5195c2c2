import { isAbsolute, resolve } from 'node:path';
import type { Command } from '../commands/types.ts';
import { startJob } from '../commands/start-job.ts';
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
  ],
  frontEnds: ['room', 'terminal'],
  examples: ['dump users', 'dump users --user @alice:example.org --user @bob:example.org', 'dump users --out /srv/dumps --concurrency 8'],
  async execute(ctx, input) {
    const out = input.string('out') ?? ctx.config.storage.dumps;
    const args: DumpUsersArgs = {
      // A relative --out is relative to where the admin is: the shell's folder, or the dumps folder for the room.
      out: isAbsolute(out) ? out : ctx.frontEnd === 'terminal' ? resolve(out) : resolve(ctx.config.storage.dumps, out),
      users: [...new Set(input.list('user'))],
      includeDeactivated: input.bool('include-deactivated'),
      concurrency: input.int('concurrency') ?? ctx.config.requests.concurrency,
    };
    return startJob(ctx, 'dump-users', { ...args });
  },
};
