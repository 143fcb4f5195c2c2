import { resolve } from 'node:path';
import { reply } from '../commands/reply.ts';
import { startJob } from '../commands/start-job.ts';
import type { CommandContext } from '../commands/context.ts';
import type { Command } from '../commands/types.ts';
import { escapeHtml } from '../util/html.ts';
import { fail } from '../util/result.ts';
import { bytesText, type ArchiveArgs } from './archive-job.ts';
import { describeSchedule } from './schedule.ts';

/** The archive folder a command works on: --out, else archive.out from the config; always normalised (`/srv/archive/` is `/srv/archive`). */
export function outOf(ctx: CommandContext, given: string | undefined): string {
  const out = given ?? ctx.config.archive.out;
  // A relative --out is relative to where the admin is: the shell's folder, or the archive folder for the room.
  return ctx.frontEnd === 'terminal' ? resolve(out) : resolve(ctx.config.archive.out, out);
}

export const archiveCommand: Command = {
  name: 'archive',
  summary: 'append every room\'s new events to the history archive: JSONL per room per day, federation format',
  description:
    'Reads each room (or the ones named) through Synapse\'s admin API and appends the events not yet archived to ' +
    'DIR/rooms/<room>/YYYY/MM/YYYY-MM-DD.jsonl (UTC day), hashes and signatures kept; redacted events keep their original while Synapse still has it. ' +
    'The archive is the server\'s whole view, whatever the rooms\' history visibility; encrypted rooms are archived as ciphertext. ' +
    'Runs as a durable job: live progress, an interrupted run resumes from the page it reached, and a room that fails is recorded without stopping the others. ' +
    'A re-run writes only what is new; archive.schedule runs it daily.',
  params: [],
  flags: [
    { name: 'room', type: 'room', description: 'archive only this room (a room id)', repeatable: true },
    { name: 'out', type: 'path', description: 'the archive folder (default: archive.out from the config)' },
    { name: 'media', type: 'boolean', description: 'also download the media the events refer to (default: archive.media)' },
    { name: 'concurrency', type: 'int', description: 'rooms read at once (default: archive.concurrency)', min: 1, max: 64 },
    { name: 'full', type: 'boolean', description: 'read every room from its first event again (finds events Synapse backfilled long after); still writes only what is new' },
  ],
  frontEnds: ['room', 'terminal'],
  examples: ['archive', 'archive --room !abc:example.org --media', 'archive --out /srv/archive --concurrency 8'],
  async execute(ctx, input) {
    const aliases = input.list('room').filter((r) => !r.startsWith('!'));
    if (aliases.length > 0) return fail('E_USAGE', `--room takes room ids (!…), not aliases: ${aliases.join(', ')}.`);
    const args: ArchiveArgs = {
      out: outOf(ctx, input.string('out')),
      rooms: [...new Set(input.list('room'))].sort(),
      media: input.bool('media') || ctx.config.archive.media,
      concurrency: input.int('concurrency') ?? ctx.config.archive.concurrency,
      full: input.bool('full'),
      scheduled: false,
    };
    return startJob(ctx, 'archive', { ...args });
  },
};

function utc(ts: number | null): string {
  return ts === null ? '—' : new Date(ts).toISOString().replace('T', ' ').replace(/:\d\d\.\d+Z$/, ' UTC');
}

function local(ts: number): string {
  const d = new Date(ts);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}

export const archiveStatusCommand: Command = {
  name: 'archive status',
  summary: 'what the history archive holds: per room the last archived event, events and bytes; the next scheduled run; totals',
  params: [],
  flags: [
    { name: 'out', type: 'path', description: 'the archive folder (default: archive.out from the config)' },
    { name: 'limit', type: 'int', description: 'rooms to list (default 50 in the room, all in the terminal)', min: 1, max: 100_000 },
  ],
  frontEnds: ['room', 'terminal'],
  examples: ['archive status', 'archive status --out /srv/archive'],
  async execute(ctx, input) {
    const archive = ctx.archive;
    if (!archive) return fail('E_UNAVAILABLE', 'The archive is not available here.');
    const out = outOf(ctx, input.string('out'));
    const rooms = archive.store.rooms(out);
    const limit = input.int('limit') ?? (ctx.frontEnd === 'room' ? 50 : rooms.length);
    const events = rooms.reduce((n, r) => n + r.events, 0);
    const bytes = rooms.reduce((n, r) => n + r.bytes, 0);
    const lastPass = rooms.reduce<number | null>((m, r) => (r.lastPassTs !== null && (m === null || r.lastPassTs > m) ? r.lastPassTs : m), null);
    const pending = rooms.filter((r) => r.passStarted).length;
    const next = archive.nextRun();
    const active = archive.activeJobs();
    const head = [
      `Archive ${out}: ${rooms.length} room${rooms.length === 1 ? '' : 's'}, ${events} events, ${bytesText(bytes)}${lastPass !== null ? ` · last pass ${utc(lastPass)}` : ''}${pending ? ` · ${pending} room(s) mid-pass` : ''}`,
      archive.config.schedule && next !== undefined
        ? `Schedule: ${describeSchedule(archive.config.schedule)} · next run ${local(next)} (server-local)`
        : 'Schedule: none (set archive.schedule, e.g. "daily 03:00", for steward run to archive by itself)',
      ...(active.length ? [`Running: ${active.map((j) => `#${j.id} (${j.state}, ${j.done + j.failed}/${j.total ?? '?'} rooms)`).join(', ')}`] : []),
    ];
    const shown = [...rooms].sort((a, b) => (b.lastEventTs ?? 0) - (a.lastEventTs ?? 0)).slice(0, limit);
    const width = Math.max(4, ...shown.map((r) => r.roomId.length));
    const table = shown.length
      ? [`${'room'.padEnd(width)}  ${'last event'.padEnd(20)}  ${'events'.padStart(8)}  ${'bytes'.padStart(10)}`,
        ...shown.map((r) => `${r.roomId.padEnd(width)}  ${utc(r.lastEventTs).padEnd(20)}  ${String(r.events).padStart(8)}  ${bytesText(r.bytes).padStart(10)}`)]
      : ['Nothing archived here yet: run !archive.'];
    const more = rooms.length > shown.length ? [`… and ${rooms.length - shown.length} more (--limit ${rooms.length}).`] : [];
    const text = [...head, '', ...table, ...more].join('\n');
    const html = `${head.map((l) => `<p>${escapeHtml(l)}</p>`).join('')}<pre>${escapeHtml([...table, ...more].join('\n'))}</pre>`;
    return reply(text, html);
  },
};

export const ARCHIVE_COMMANDS: readonly Command[] = [archiveCommand, archiveStatusCommand];
