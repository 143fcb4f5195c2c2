import { isAbsolute, resolve } from 'node:path';
import { startJob } from '../commands/start-job.ts';
import type { Command } from '../commands/types.ts';
import { fail } from '../util/result.ts';
import { serverOf } from './json.ts';
import { DEFAULT_MESSAGES, SNAPSHOT_JOB, type SnapshotArgs } from './snapshot-job.ts';

export const snapshotCommand: Command = {
  name: 'snapshot',
  summary: 'anonymised snapshot of one local account, replayable as a Complement blueprint',
  description:
    'Reads the account through the appservice namespace (/sync as the user, never with its token), keeps only whitelisted event types and keys, ' +
    'turns text into x, ids into counters (@anon-<n>:hs1, !<n>:hs1, $<n>:hs1), keeps reactions, redactions and m.direct pointing at anonymised ids, ' +
    'and writes a Complement blueprint (homerunner request) 0600. Before writing, a leak check searches the output for every user id, room id, ' +
    'server name, display name, message word and mxc URI of the source and refuses to write if one survives. ' +
    'The file name never contains the account; default <storage.dumps>/snapshots/snapshot-<time>-job<id>.json.',
  params: [{ name: 'user', type: 'user', description: 'the local account to snapshot' }],
  flags: [
    { name: 'out', type: 'path', description: 'file to write (default: <storage.dumps>/snapshots/snapshot-<time>-job<id>.json); never overwritten' },
    { name: 'messages', type: 'int', description: `timeline events per room (default ${DEFAULT_MESSAGES})`, min: 1, max: 1000 },
  ],
  frontEnds: ['room', 'terminal'],
  examples: ['snapshot @alice:example.org', 'snapshot @alice:example.org --messages 200 --out /srv/snapshots/wonderland.json'],
  async execute(ctx, input) {
    const user = input.param('user')!;
    if (serverOf(user) !== ctx.config.homeserver.serverName) {
      return fail('E_USAGE', `${user} is not on ${ctx.config.homeserver.serverName}: only local accounts can be snapshotted (Steward reads them by acting as them).`);
    }
    const out = input.string('out');
    const args: SnapshotArgs = {
      user,
      // A relative --out is relative to where the admin is: the shell's folder, or the dumps folder for the room.
      out: out === undefined ? null : isAbsolute(out) ? out : ctx.frontEnd === 'terminal' ? resolve(out) : resolve(ctx.config.storage.dumps, out),
      messages: input.int('messages') ?? DEFAULT_MESSAGES,
    };
    return startJob(ctx, SNAPSHOT_JOB, { ...args });
  },
};
