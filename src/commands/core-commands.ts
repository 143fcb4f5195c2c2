import { commandHelp, overview } from './help.ts';
import { reply } from './reply.ts';
import { findCommand, suggest } from './parse.ts';
import type { Command, CommandOutput } from './types.ts';
import { formatDuration, jobLine, progressLine } from '../jobs/format.ts';
import type { JobRecord } from '../jobs/job-store.ts';
import { escapeHtml } from '../util/html.ts';
import { fail, ok, type Result } from '../util/result.ts';


export const helpCommand: Command = {
  name: 'help',
  summary: 'list commands, or show how to use one',
  params: [{ name: 'command', type: 'string', description: 'a command name, e.g. "dump users"', optional: true, rest: true }],
  flags: [],
  frontEnds: ['room', 'terminal'],
  examples: ['help', 'help dump users'],
  async execute(ctx, input) {
    return helpFor((input.param('command') ?? '').split(' ').filter(Boolean), ctx.commands, ctx.frontEnd);
  },
};

function helpFor(words: readonly string[], commands: readonly Command[], frontEnd: 'room' | 'terminal'): Result<CommandOutput> {
  if (words.length === 0) return ok({ kind: 'reply', ...overview(commands, frontEnd) });
  const found = findCommand(words, commands.filter((c) => c.frontEnds.includes(frontEnd)));
  if (!found) {
    const near = suggest(words, commands);
    return fail('E_UNKNOWN_COMMAND', `No command "${words.join(' ')}".${near ? ` Did you mean "${near}"?` : ''}`);
  }
  return ok({ kind: 'reply', ...commandHelp(found.command, frontEnd) });
}

export const statusCommand: Command = {
  name: 'status',
  summary: 'version, homeserver, uptime and jobs',
  params: [],
  flags: [],
  frontEnds: ['room', 'terminal'],
  async execute(ctx) {
    const s = ctx.status();
    const counts = ctx.jobs.countByState();
    const jobs = Object.entries(counts).map(([state, n]) => `${n} ${state}`).join(', ') || 'none yet';
    const lines = [
      `Steward ${s.version}`,
      `Homeserver: ${s.serverName} at ${s.homeserver}${s.synapseVersion ? ` (Synapse ${s.synapseVersion})` : ''}`,
      `Bot user: ${s.botUserId}`,
      `Up for: ${formatDuration(Date.now() - s.startedTs)}`,
      `Jobs: ${jobs}; ${ctx.runner.activeCount()} running now`,
    ];
    return reply(lines.join('\n'), `<p>${lines.map(escapeHtml).join('<br>')}</p>`);
  },
};

export const jobsCommand: Command = {
  name: 'jobs',
  summary: 'recent jobs and their state',
  params: [],
  flags: [
    { name: 'limit', type: 'int', description: 'how many (default 10)', min: 1, max: 100 },
    { name: 'active', type: 'boolean', description: 'only queued, running or interrupted jobs' },
  ],
  frontEnds: ['room', 'terminal'],
  async execute(ctx, input) {
    const list = ctx.jobs.list(input.int('limit') ?? 10, input.bool('active') ? ['queued', 'running', 'interrupted'] : undefined);
    if (list.length === 0) return reply('No jobs yet.', '<p>No jobs yet.</p>');
    const lines = list.map((j) => jobLine(j, ctx.runner.title(j)));
    return reply(lines.map((l) => l.text).join('\n'), `<ul>${lines.map((l) => `<li>${l.html}</li>`).join('')}</ul>`);
  },
};

export function describeJob(job: JobRecord, title: string, errors: { item: string; code: string; message: string }[]): string {
  const lines = [
    `Job #${job.id}: ${title} — ${job.state}`,
    `Arguments: ${JSON.stringify(job.args)}`,
    `Requested by: ${job.requestedBy ?? 'terminal'} (${job.origin})`,
    `Progress: ${progressLine(job, null)}`,
  ];
  if (job.startedTs) lines.push(`Started: ${new Date(job.startedTs).toISOString()}${job.resumedCount ? ` (resumed ${job.resumedCount}×)` : ''}`);
  if (job.finishedTs) lines.push(`Finished: ${new Date(job.finishedTs).toISOString()} after ${formatDuration(job.finishedTs - (job.startedTs ?? job.createdTs))}`);
  if (job.result) lines.push(`Result: ${job.result.summary}`);
  if (job.error) lines.push(`Error: ${job.error}`);
  if (errors.length) {
    lines.push(`Item errors (${job.failed}${errors.length < job.failed ? `, first ${errors.length}` : ''}):`);
    for (const e of errors) lines.push(`  ${e.item}: ${e.message} [${e.code}]`);
  }
  return lines.join('\n');
}

export const jobCommand: Command = {
  name: 'job',
  summary: 'details of one job, with its item errors',
  params: [{ name: 'id', type: 'int', description: 'job number, as !jobs shows it' }],
  flags: [{ name: 'errors', type: 'int', description: 'how many item errors to list (default 10)', min: 0, max: 1000 }],
  frontEnds: ['room', 'terminal'],
  async execute(ctx, input) {
    const id = Number(input.param('id'));
    const job = ctx.jobs.get(id);
    if (!job) return fail('E_NO_JOB', `There is no job #${id}.`);
    return reply(describeJob(job, ctx.runner.title(job), ctx.jobs.errors(id, input.int('errors') ?? 10)));
  },
};

export const cancelCommand: Command = {
  name: 'cancel',
  summary: 'stop a job at its next checkpoint',
  params: [{ name: 'id', type: 'int', description: 'job number' }],
  flags: [],
  frontEnds: ['room', 'terminal'],
  async execute(ctx, input) {
    const id = Number(input.param('id'));
    const outcome = ctx.runner.cancel(id);
    if (!outcome.ok) return outcome;
    const msg = outcome.value.state === 'cancelled' ? `Job #${id} cancelled.` : `Job #${id} will stop at its next checkpoint.`;
    return reply(msg, `<p>${escapeHtml(msg)}</p>`);
  },
};
