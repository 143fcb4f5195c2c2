import { isAbsolute, resolve } from 'node:path';
import { startJob } from '../commands/start-job.ts';
import type { Command } from '../commands/types.ts';
import { fail } from '../util/result.ts';
import type { RestoreRoomsArgs } from './restore-rooms.ts';

export const restoreRoomsCommand: Command = {
  name: 'restore rooms',
  summary: 'bring back the rooms of a room dump: rejoin those other servers are in, recreate those only this server was in',
  description:
    'Restores the rooms of DUMP (a folder written by dump rooms) after the server lost them. A room other servers are still in is rejoined: ' +
    'its current state is learnt from those servers, every event verified, and our users joined in it are joined again as themselves. ' +
    'A room only this server was in is recreated from the dumped state (name, topic, avatar, join rules, history visibility, guest access, ' +
    'power levels, encryption, aliases, canonical alias, directory listing) and its members brought back; with --archive its history is ' +
    're-posted from the archive by the original senders at their original times, marked org.steward.imported. ' +
    'Read markers that restore users recorded from the user dump are set once each room is back; those that cannot be are listed with the reason. ' +
    'The dump is checked whole before anything is written. Steward remembers old → new rooms: a re-run creates nothing twice, ' +
    'and retries in the room already made the steps that failed (an alias taken, the directory listing, a missing member). ' +
    'Restore users first (restore users), so the members exist.',
  params: [{ name: 'dump', type: 'path', description: 'the room dump folder (…/rooms-<time>-job<n>, holding manifest.json)' }],
  flags: [
    { name: 'archive', type: 'path', description: 'an archive folder (written by archive): re-post the history of recreated rooms' },
    { name: 'room', type: 'room', description: 'restore only this room of the dump (its old room id)', repeatable: true },
    { name: 'dry-run', type: 'boolean', description: 'list per room what would be done; change nothing' },
  ],
  frontEnds: ['room', 'terminal'],
  examples: ['restore rooms /srv/dumps/rooms-20261202T0900Z-job4 --dry-run', 'restore rooms /srv/dumps/rooms-20261202T0900Z-job4 --archive /srv/archive'],
  async execute(ctx, input) {
    const base = (p: string): string => (isAbsolute(p) ? p : ctx.frontEnd === 'terminal' ? resolve(p) : resolve(ctx.config.storage.dumps, p));
    const dump = input.param('dump');
    if (!dump) return fail('E_USAGE', 'restore rooms needs the dump folder.');
    const aliases = input.list('room').filter((r) => !r.startsWith('!'));
    if (aliases.length > 0) return fail('E_USAGE', `--room takes room ids (!…), not aliases: ${aliases.join(', ')}.`);
    const archive = input.string('archive');
    const args: RestoreRoomsArgs = { dump: base(dump), archive: archive ? base(archive) : null, dryRun: input.bool('dry-run'), rooms: [...new Set(input.list('room'))] };
    return startJob(ctx, 'restore-rooms', { ...args });
  },
};
