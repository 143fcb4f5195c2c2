import type { JobRecord } from '../jobs/job-store.ts';
import type { JobRunner } from '../jobs/runner.ts';
import { progressLine } from '../jobs/format.ts';

/**
 * A progress bar on stderr for a job run from the terminal: redrawn in place on a TTY, one line
 * every few seconds otherwise (logs and CI), so stdout stays clean for the answer.
 */
export function followInTerminal(runner: JobRunner, jobId: number, title: string, stream: NodeJS.WriteStream = process.stderr): () => void {
  const tty = stream.isTTY === true;
  const minGapMs = tty ? 200 : 5000;
  let last = 0;
  let runStart = Date.now();
  let runStartProcessed = 0;
  const draw = (job: JobRecord, force = false): void => {
    const now = Date.now();
    if (!force && now - last < minGapMs) return;
    last = now;
    const elapsed = (now - runStart) / 1000;
    const rate = elapsed > 1 ? (job.done + job.failed - runStartProcessed) / elapsed : null;
    const line = `#${job.id} ${title} ${progressLine(job, rate)}`;
    if (tty) stream.write(`\r\x1b[2K${line}`);
    else stream.write(`${line}\n`);
  };
  const onStarted = (job: JobRecord, resumed: boolean): void => {
    if (job.id !== jobId) return;
    runStart = Date.now();
    runStartProcessed = job.done + job.failed;
    if (resumed) stream.write(`resuming job #${job.id} from its checkpoint (${runStartProcessed}${job.total ? `/${job.total}` : ''} done)\n`);
  };
  const onProgress = (job: JobRecord): void => {
    if (job.id === jobId) draw(job);
  };
  const onFinished = (job: JobRecord): void => {
    if (job.id !== jobId) return;
    draw(job, true);
    if (tty) stream.write('\n');
  };
  runner.on('started', onStarted);
  runner.on('progress', onProgress);
  runner.on('finished', onFinished);
  return () => {
    runner.off('started', onStarted);
    runner.off('progress', onProgress);
    runner.off('finished', onFinished);
  };
}
