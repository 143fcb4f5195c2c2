import type { JobRecord, JobStore } from '../jobs/job-store.ts';
import type { JobRunner } from '../jobs/runner.ts';
import { formatDuration, progressLine, stateIcon } from '../jobs/format.ts';
import { escapeHtml } from '../util/html.ts';
import type { Messenger, Rich } from './messenger.ts';

interface Live {
  chain: Promise<unknown>;
  timer: NodeJS.Timeout | null;
  lastEditTs: number;
  /** Pace of this run only, so a resumed job's rate is not inflated by earlier runs. */
  runStartTs: number;
  runStartProcessed: number;
  latest: JobRecord;
}

export interface ProgressRendererOptions {
  readonly runner: JobRunner;
  readonly jobs: JobStore;
  readonly messenger: Messenger;
  readonly statusRoomId: string;
  readonly intervalMs: number;
}

/**
 * Shows each room job as one status message, edited in place at most every `intervalMs`, then a
 * final edit, a summary reply and a reaction on the command. Edits for one job are sent in order.
 */
export function attachRoomProgress(opts: ProgressRendererOptions): void {
  const live = new Map<number, Live>();

  const enqueue = (l: Live, step: () => Promise<unknown>): void => {
    l.chain = l.chain.then(step, step);
  };

  const statusText = (job: JobRecord, l: Live): Rich => {
    const processed = job.done + job.failed;
    const elapsed = (Date.now() - l.runStartTs) / 1000;
    const rate = elapsed > 1 ? (processed - l.runStartProcessed) / elapsed : null;
    const title = opts.runner.title(job);
    const line = job.state === 'running' || job.state === 'queued' ? progressLine(job, rate) : progressLine(job, null);
    const text = `${stateIcon(job)} Job #${job.id} ${title} — ${job.state}\n${line}`;
    return { text, html: `${stateIcon(job)} <b>Job #${job.id}</b> ${escapeHtml(title)} — ${job.state}<br><code>${escapeHtml(line)}</code>` };
  };

  const edit = (l: Live): void => {
    if (l.timer) {
      clearTimeout(l.timer);
      l.timer = null;
    }
    l.lastEditTs = Date.now();
    enqueue(l, async () => {
      const job = opts.jobs.get(l.latest.id) ?? l.latest;
      if (job.statusEventId && job.roomId) await opts.messenger.edit(job.roomId, job.statusEventId, statusText(job, l));
    });
  };

  opts.runner.on('started', (job, resumed) => {
    if (job.origin !== 'room' || !job.roomId) return;
    const l: Live = { chain: Promise.resolve(), timer: null, lastEditTs: 0, runStartTs: Date.now(), runStartProcessed: job.done + job.failed, latest: job };
    live.set(job.id, l);
    enqueue(l, async () => {
      if (resumed) {
        const text = `↻ Job #${job.id} (${opts.runner.title(job)}) was interrupted by a restart and resumes from its checkpoint (${job.done + job.failed}${job.total ? `/${job.total}` : ''} done).`;
        await opts.messenger.notice(job.roomId!, { text, html: escapeHtml(text) }, job.commandEventId ?? undefined);
      }
      if (job.statusEventId) {
        await opts.messenger.edit(job.roomId!, job.statusEventId, statusText(job, l));
      } else {
        const id = await opts.messenger.notice(job.roomId!, statusText(job, l), job.commandEventId ?? undefined);
        if (id) opts.jobs.setStatusEvent(job.id, id);
      }
    });
  });

  opts.runner.on('progress', (job) => {
    const l = live.get(job.id);
    if (!l) return;
    l.latest = job;
    const wait = opts.intervalMs - (Date.now() - l.lastEditTs);
    if (wait <= 0) edit(l);
    else if (!l.timer) l.timer = setTimeout(() => edit(l), wait);
  });

  opts.runner.on('finished', (job) => {
    if (job.origin !== 'room' || !job.roomId) return;
    const l = live.get(job.id) ?? { chain: Promise.resolve(), timer: null, lastEditTs: 0, runStartTs: Date.now(), runStartProcessed: 0, latest: job };
    l.latest = job;
    edit(l);
    live.delete(job.id);
    enqueue(l, async () => {
      const summary = finishedSummary(job, opts.runner.title(job), opts.jobs);
      if (job.commandEventId) {
        await opts.messenger.notice(job.roomId!, summary, job.commandEventId);
        await opts.messenger.react(job.roomId!, job.commandEventId, job.state === 'done' ? '✅' : '❌');
      } else {
        await opts.messenger.notice(job.roomId!, summary);
      }
      if (opts.statusRoomId !== job.roomId) await opts.messenger.notice(opts.statusRoomId, summary);
    });
  });
}

export function finishedSummary(job: JobRecord, title: string, jobs: JobStore): Rich {
  const took = job.finishedTs && job.startedTs ? ` in ${formatDuration(job.finishedTs - job.startedTs)}` : '';
  const head = `${stateIcon(job)} Job #${job.id} ${title} ${job.state === 'done' ? 'finished' : job.state}${took}`;
  const lines = [head];
  if (job.result?.summary) lines.push(job.result.summary);
  if (job.error) lines.push(`Error: ${job.error}`);
  const errors = job.failed ? jobs.errors(job.id, 5) : [];
  if (errors.length) {
    lines.push(`${job.failed} item(s) failed${job.failed > errors.length ? `; first ${errors.length}` : ''} (!job ${job.id} for more):`);
    for (const e of errors) lines.push(`• ${e.item}: ${e.message}`);
  }
  return { text: lines.join('\n'), html: lines.map(escapeHtml).join('<br>') };
}
