import { escapeHtml } from '../util/html.ts';
import type { JobRecord } from './job-store.ts';

const BAR_WIDTH = 20;

export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function progressBar(done: number, total: number | null): string {
  if (!total) return `[${'░'.repeat(BAR_WIDTH)}]`;
  const filled = Math.min(BAR_WIDTH, Math.round((done / total) * BAR_WIDTH));
  return `[${'█'.repeat(filled)}${'░'.repeat(BAR_WIDTH - filled)}]`;
}

/** "[████░░] 40% 800/2000 · 85/s · ETA 14s · 2 failed": rate and ETA from this run's own pace. */
export function progressLine(job: JobRecord, rate: number | null): string {
  const processed = job.done + job.failed;
  const parts = [progressBar(processed, job.total)];
  if (job.total) parts.push(`${Math.floor((processed / job.total) * 100)}% ${processed}/${job.total}`);
  else parts.push(`${processed} so far`);
  if (rate !== null && rate > 0) {
    parts.push(`${rate >= 10 ? Math.round(rate) : rate.toFixed(1)}/s`);
    if (job.total) parts.push(`ETA ${formatDuration(((job.total - processed) / rate) * 1000)}`);
  }
  if (job.failed) parts.push(`${job.failed} failed`);
  return parts.join(' · ');
}

const STATE_ICON: Record<string, string> = { queued: '⏳', running: '⏳', done: '✅', failed: '❌', cancelled: '🚫', interrupted: '⏸️' };

export function stateIcon(job: JobRecord): string {
  return STATE_ICON[job.state] ?? '•';
}

/** One line per job for !jobs. */
export function jobLine(job: JobRecord, title: string, now = Date.now()): { text: string; html: string } {
  const age = formatDuration(now - job.createdTs);
  const progress = job.total ? ` ${job.done + job.failed}/${job.total}` : job.done ? ` ${job.done}` : '';
  const text = `${stateIcon(job)} #${job.id} ${title} — ${job.state}${progress}${job.failed ? ` (${job.failed} failed)` : ''} · ${age} ago${job.origin === 'terminal' ? ' · terminal' : ''}`;
  return { text, html: escapeHtml(text) };
}
