import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { JobStore, type JobRecord } from '../../src/jobs/job-store.ts';
import { JobRunner, type JobContext, type JobDefinition } from '../../src/jobs/runner.ts';
import { createLogger } from '../../src/log.ts';
import { openDatabase, type Db } from '../../src/store/database.ts';
import { fail, failure, ok } from '../../src/util/result.ts';

const log = createLogger({ level: 'silent' });

/** What one run of the counting executor saw when it started. */
interface RunStart {
  readonly jobId: number;
  readonly resumeFrom: unknown;
  readonly counters: { done: number; failed: number; total: number | null };
  readonly errorsAtStart: string[];
  readonly signal: AbortSignal;
}

/**
 * Per-test behaviour of the counting executor, looked up by the job's `script` argument:
 * `beforeItem` may block (e.g. until the signal aborts) or throw.
 */
interface Script {
  beforeItem?: (i: number, ctx: JobContext) => Promise<void> | void;
}

let db: Db;
let store: JobStore;
let scripts: Map<string, Script>;
let starts: RunStart[];
const runners: JobRunner[] = [];

/**
 * Counts `n` items, one by one. Items listed in `failOn` fail; every 5 items it checkpoints the
 * index to resume from. It stops early (as a failure) when its signal aborts.
 */
const counting: JobDefinition = {
  type: 'count',
  title: (args) => `count to ${String(args.n)}`,
  async run(ctx) {
    const n = ctx.job.args.n as number;
    const failOn = (ctx.job.args.failOn as number[] | undefined) ?? [];
    const script = scripts.get(String(ctx.job.args.script)) ?? {};
    starts.push({
      jobId: ctx.job.id,
      resumeFrom: ctx.resumeFrom,
      counters: ctx.counters(),
      errorsAtStart: store.errors(ctx.job.id).map((e) => e.item),
      signal: ctx.signal,
    });
    ctx.setTotal(n);
    for (let i = typeof ctx.resumeFrom === 'number' ? ctx.resumeFrom : 0; i < n; i++) {
      await script.beforeItem?.(i, ctx);
      if (ctx.signal.aborted) return fail('E_CANCELLED', `stopped at item ${i}`);
      if (failOn.includes(i)) ctx.itemFailed(`item-${i}`, failure('E_ITEM', `item ${i} broke`));
      else ctx.advance();
      if ((i + 1) % 5 === 0) ctx.checkpoint(i + 1);
    }
    return ok({ summary: `counted to ${n}`, details: { counters: ctx.counters() } });
  },
};

const crashing: JobDefinition = {
  type: 'crash',
  title: () => 'crash',
  async run(ctx) {
    ctx.setTotal(3);
    ctx.advance();
    throw new Error('boom');
  },
};

function newRunner(concurrency = 2): JobRunner {
  const runner = new JobRunner({ store, definitions: [counting, crashing], concurrency, log });
  runners.push(runner);
  return runner;
}

function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/** A promise and the function that resolves it. */
function latch(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

/** Resolves with the job when the runner reports it finished; attach before submitting. */
function finished(runner: JobRunner, match: (job: JobRecord) => boolean): Promise<JobRecord> {
  return new Promise((resolve) => {
    const listener = (job: JobRecord): void => {
      if (!match(job)) return;
      runner.off('finished', listener);
      resolve(job);
    };
    runner.on('finished', listener);
  });
}

const byEvent = (eventId: string) => (job: JobRecord): boolean => job.commandEventId === eventId;

beforeEach(() => {
  db = openDatabase(':memory:');
  store = new JobStore(db);
  scripts = new Map();
  starts = [];
});

afterEach(async () => {
  for (const runner of runners.splice(0)) await runner.stop();
  db.close();
});

describe('JobStore', () => {
  it('creates one job per command event, however often the command is handled', () => {
    const first = store.create({ type: 'count', args: { n: 1 }, origin: 'room', requestedBy: '@a:hs', roomId: '!r:hs', commandEventId: '$cmd' });
    const again = store.create({ type: 'count', args: { n: 999 }, origin: 'room', commandEventId: '$cmd' });
    assert.equal(first.created, true);
    assert.equal(again.created, false);
    assert.equal(again.job.id, first.job.id);
    assert.deepEqual(again.job.args, { n: 1 }, 'the first request wins');
    assert.equal(first.job.state, 'queued');
    assert.equal(first.job.requestedBy, '@a:hs');
    assert.equal(first.job.roomId, '!r:hs');
    assert.equal(store.list(10).length, 1);
    const other = store.create({ type: 'count', args: { n: 1 }, origin: 'room', commandEventId: '$other' });
    assert.equal(other.created, true);
    assert.notEqual(other.job.id, first.job.id);
  });

  it('creates a new job every time when there is no command event (terminal)', () => {
    const a = store.create({ type: 'count', args: { n: 1 }, origin: 'terminal' });
    const b = store.create({ type: 'count', args: { n: 1 }, origin: 'terminal' });
    assert.equal(a.created, true);
    assert.equal(b.created, true);
    assert.notEqual(a.job.id, b.job.id);
  });

  it('finds the newest unfinished terminal job with the same type and arguments', () => {
    const a = store.create({ type: 'count', args: { n: 1 }, origin: 'terminal' }).job;
    const b = store.create({ type: 'count', args: { n: 1 }, origin: 'terminal' }).job;
    store.create({ type: 'count', args: { n: 2 }, origin: 'terminal' });
    assert.equal(store.findUnfinished('count', { n: 1 }, 'terminal')?.id, b.id);
    store.finish(b.id, 'done', { summary: 'ok' }, null);
    assert.equal(store.findUnfinished('count', { n: 1 }, 'terminal')?.id, a.id);
    assert.equal(store.findUnfinished('count', { n: 1 }, 'room'), undefined);
    assert.equal(store.findUnfinished('count', { n: 3 }, 'terminal'), undefined);
  });

  it('marks running jobs of one origin interrupted and lists them as pending', () => {
    const room = store.create({ type: 'count', args: {}, origin: 'room', commandEventId: '$1' }).job;
    const terminal = store.create({ type: 'count', args: {}, origin: 'terminal' }).job;
    const queued = store.create({ type: 'count', args: {}, origin: 'room', commandEventId: '$2' }).job;
    store.start(room.id);
    store.start(terminal.id);
    assert.equal(store.markInterrupted('room'), 1);
    assert.equal(store.get(room.id)?.state, 'interrupted');
    assert.equal(store.get(terminal.id)?.state, 'running');
    assert.deepEqual(store.pending('room').map((j) => j.id), [room.id, queued.id]);
    assert.deepEqual(store.countByState(), { interrupted: 1, running: 1, queued: 1 });
  });

  it('keeps one error per item, the latest, in time order', () => {
    const job = store.create({ type: 'count', args: {}, origin: 'terminal' }).job;
    store.addError(job.id, 'b', failure('E_B', 'b failed'), 200);
    store.addError(job.id, 'a', failure('E_A', 'a failed'), 100);
    store.addError(job.id, 'b', failure('E_B2', 'b failed again'), 300);
    assert.deepEqual(store.errors(job.id), [
      { item: 'a', code: 'E_A', message: 'a failed', ts: 100 },
      { item: 'b', code: 'E_B2', message: 'b failed again', ts: 300 },
    ]);
    assert.deepEqual(store.errors(job.id, 1).map((e) => e.item), ['a']);
  });

  it('on resume restores the checkpoint counters and drops errors recorded after it', () => {
    const job = store.create({ type: 'count', args: {}, origin: 'room', commandEventId: '$c' }).job;
    store.start(job.id, 1000);
    store.addError(job.id, 'item-2', failure('E', 'x'), 1001);
    store.checkpoint(job.id, { next: 5 }, 4, 10, 1, 1002);
    store.addError(job.id, 'item-7', failure('E', 'y'), 1003);
    store.progress(job.id, 6, 10, 2, 1004);
    store.markInterrupted('room', 1005);
    const resumed = store.start(job.id, 2000);
    assert.equal(resumed.state, 'running');
    assert.equal(resumed.done, 4);
    assert.equal(resumed.failed, 1);
    assert.equal(resumed.total, 10);
    assert.equal(resumed.resumedCount, 1);
    assert.equal(resumed.startedTs, 1000, 'the first start time is kept');
    assert.deepEqual(resumed.checkpoint, { data: { next: 5 }, done: 4, failed: 1, ts: 1002, errorsUpTo: 1 });
    assert.deepEqual(store.errors(job.id).map((e) => e.item), ['item-2']);
  });

  it('drops an error recorded after the checkpoint within the same millisecond',
    () => {
      const job = store.create({ type: 'count', args: {}, origin: 'room', commandEventId: '$c' }).job;
      store.start(job.id, 1000);
      store.checkpoint(job.id, { next: 5 }, 5, 10, 0, 1002);
      store.addError(job.id, 'item-7', failure('E', 'y'), 1002);
      store.markInterrupted('room', 1003);
      const resumed = store.start(job.id, 2000);
      assert.equal(resumed.failed, 0);
      assert.deepEqual(store.errors(job.id).map((e) => e.item), [], 'item-7 will be tried again, so its old error must go');
    });

  it('starts a first run with zero counters and without counting it as a resume', () => {
    const job = store.create({ type: 'count', args: {}, origin: 'terminal' }).job;
    const started = store.start(job.id, 1234);
    assert.equal(started.resumedCount, 0);
    assert.equal(started.startedTs, 1234);
    assert.equal(started.done, 0);
    assert.equal(started.failed, 0);
  });
});

describe('JobRunner', { timeout: 5000 }, () => {
  it('runs a submitted job to done, with counters and the result stored', async () => {
    const runner = newRunner();
    const end = finished(runner, byEvent('$1'));
    const { job, created } = runner.submit({ type: 'count', args: { n: 10 }, origin: 'room', commandEventId: '$1' });
    assert.equal(created, true);
    const done = await end;
    assert.equal(done.id, job.id);
    assert.equal(done.state, 'done');
    assert.equal(done.done, 10);
    assert.equal(done.total, 10);
    assert.equal(done.failed, 0);
    assert.equal(done.result?.summary, 'counted to 10');
    assert.deepEqual(done.checkpoint?.data, 10);
    assert.ok(done.finishedTs !== null && done.startedTs !== null);
    assert.equal(runner.title(done), 'count to 10');
  });

  it('does not run a repeated command event twice', async () => {
    const runner = newRunner();
    const end = finished(runner, byEvent('$1'));
    const first = runner.submit({ type: 'count', args: { n: 3 }, origin: 'room', commandEventId: '$1' });
    const second = runner.submit({ type: 'count', args: { n: 3 }, origin: 'room', commandEventId: '$1' });
    assert.equal(second.created, false);
    assert.equal(second.job.id, first.job.id);
    await end;
    assert.equal(starts.length, 1);
  });

  it('records failed items retrievable with errors(), and the job still finishes done', async () => {
    const runner = newRunner();
    const end = finished(runner, byEvent('$1'));
    const { job } = runner.submit({ type: 'count', args: { n: 10, failOn: [1, 6] }, origin: 'room', commandEventId: '$1' });
    const done = await end;
    assert.equal(done.state, 'done');
    assert.equal(done.done, 8);
    assert.equal(done.failed, 2);
    assert.deepEqual(store.errors(job.id).map(({ item, code, message }) => ({ item, code, message })), [
      { item: 'item-1', code: 'E_ITEM', message: 'item 1 broke' },
      { item: 'item-6', code: 'E_ITEM', message: 'item 6 broke' },
    ]);
  });

  it('resumes an interrupted job from its last checkpoint with the counters as they were then', async (t) => {
    // A fake clock that moves 1 ms per item, so "recorded after the checkpoint" is unambiguous.
    t.mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
    const reached = latch();
    let run = 0;
    scripts.set('interrupt', {
      async beforeItem(i, ctx) {
        t.mock.timers.tick(1);
        // First run: item 2 fails before the checkpoint at 5, item 7 after it; stop at item 8.
        if (run === 1 && i === 8) {
          reached.open();
          await untilAborted(ctx.signal);
        }
      },
    });

    const first = newRunner();
    run = 1;
    const { job } = first.submit({ type: 'count', args: { n: 10, failOn: [2, 7], script: 'interrupt' }, origin: 'room', commandEventId: '$dump' });
    await reached.promise;
    await first.stop();
    const cut = store.get(job.id)!;
    assert.equal(cut.state, 'running', 'a stop leaves the job for the next start');
    assert.equal(cut.done, 6);
    assert.equal(cut.failed, 2);
    assert.deepEqual(store.errors(job.id).map((e) => e.item), ['item-2', 'item-7']);

    // The service starts again: a new runner on the same database.
    run = 2;
    const second = newRunner();
    const started: { job: JobRecord; resumed: boolean }[] = [];
    second.on('started', (j, resumed) => started.push({ job: j, resumed }));
    const end = finished(second, byEvent('$dump'));
    const pending = second.resumePending('room');
    assert.deepEqual(pending.map((j) => [j.id, j.state]), [[job.id, 'interrupted']]);
    const done = await end;

    assert.equal(starts.length, 2);
    const { signal: _signal, ...resumedRun } = starts[1]!;
    assert.deepEqual(resumedRun, { jobId: job.id, resumeFrom: 5, counters: { done: 4, failed: 1, total: 10 }, errorsAtStart: ['item-2'] });
    assert.equal(started.length, 1);
    assert.equal(started[0]!.resumed, true);
    assert.equal(started[0]!.job.resumedCount, 1);
    assert.equal(done.state, 'done');
    assert.equal(done.done, 8, '4 before the checkpoint, items 5, 6, 8 and 9 after it');
    assert.equal(done.failed, 2, 'item 2 from the first run, item 7 again');
    assert.deepEqual(store.errors(job.id).map((e) => e.item), ['item-2', 'item-7']);
  });

  it('resumes a job left running by a crash (no clean stop)', async () => {
    const job = store.create({ type: 'count', args: { n: 10 }, origin: 'room', commandEventId: '$crash' }).job;
    store.start(job.id, 1000);
    store.checkpoint(job.id, 5, 5, 10, 0, 1001);
    store.progress(job.id, 7, 10, 0, 1002);
    const runner = newRunner();
    const end = finished(runner, byEvent('$crash'));
    runner.resumePending('room');
    const done = await end;
    assert.equal(starts[0]!.resumeFrom, 5);
    assert.deepEqual(starts[0]!.counters, { done: 5, failed: 0, total: 10 });
    assert.equal(done.state, 'done');
    assert.equal(done.done, 10);
  });

  it('does not resume jobs of the other origin', () => {
    const job = store.create({ type: 'count', args: { n: 1 }, origin: 'terminal' }).job;
    store.start(job.id);
    const runner = newRunner();
    assert.deepEqual(runner.resumePending('room'), []);
    assert.equal(store.get(job.id)?.state, 'running');
  });

  it('cancels a queued job at once, and never runs it', async () => {
    const release = latch();
    scripts.set('block', { beforeItem: () => release.promise });
    const runner = newRunner(1);
    const firstEnd = finished(runner, byEvent('$1'));
    const secondEnd = finished(runner, byEvent('$2'));
    const blocking = runner.submit({ type: 'count', args: { n: 1, script: 'block' }, origin: 'room', commandEventId: '$1' }).job;
    const queued = runner.submit({ type: 'count', args: { n: 1 }, origin: 'room', commandEventId: '$2' }).job;
    assert.equal(store.get(queued.id)?.state, 'queued');
    const outcome = runner.cancel(queued.id);
    assert.ok(outcome.ok);
    assert.equal(outcome.value.state, 'cancelled');
    assert.equal(outcome.value.result?.summary, 'cancelled before it started');
    assert.equal((await secondEnd).state, 'cancelled');
    release.open();
    assert.equal((await firstEnd).state, 'done');
    assert.deepEqual(starts.map((s) => s.jobId), [blocking.id], 'the cancelled job never started');
    const again = runner.cancel(queued.id);
    assert.ok(!again.ok);
    assert.equal(again.error.code, 'E_JOB_FINISHED');
    assert.equal(again.error.human, `Job #${queued.id} has already been cancelled.`);
  });

  it('cancels a running job by aborting its signal; it ends cancelled', async () => {
    const reached = latch();
    scripts.set('wait', {
      async beforeItem(i, ctx) {
        if (i === 3) {
          reached.open();
          await untilAborted(ctx.signal);
        }
      },
    });
    const runner = newRunner();
    const end = finished(runner, byEvent('$1'));
    const { job } = runner.submit({ type: 'count', args: { n: 10, script: 'wait' }, origin: 'room', commandEventId: '$1' });
    await reached.promise;
    assert.equal(runner.activeCount(), 1);
    const outcome = runner.cancel(job.id);
    assert.ok(outcome.ok);
    assert.equal(outcome.value.state, 'running', 'it stops at its next check, not at once');
    assert.equal(outcome.value.cancelRequested, true);
    assert.equal(starts[0]!.signal.aborted, true);
    const done = await end;
    assert.equal(done.state, 'cancelled');
    assert.equal(done.result?.summary, 'cancelled after 3/10');
    assert.equal(done.error, null);
  });

  it('refuses to cancel a job that does not exist or has finished', async () => {
    const runner = newRunner();
    const missing = runner.cancel(77);
    assert.ok(!missing.ok);
    assert.equal(missing.error.code, 'E_NO_JOB');
    const end = finished(runner, byEvent('$1'));
    const { job } = runner.submit({ type: 'count', args: { n: 1 }, origin: 'room', commandEventId: '$1' });
    await end;
    const late = runner.cancel(job.id);
    assert.ok(!late.ok);
    assert.equal(late.error.code, 'E_JOB_FINISHED');
    assert.equal(late.error.human, `Job #${job.id} has already finished.`);
  });

  it('fails a job whose executor throws with "internal error", and keeps working', async () => {
    const runner = newRunner(1);
    const crashEnd = finished(runner, byEvent('$crash'));
    const nextEnd = finished(runner, byEvent('$next'));
    const crashed = runner.submit({ type: 'crash', args: {}, origin: 'room', commandEventId: '$crash' }).job;
    runner.submit({ type: 'count', args: { n: 4 }, origin: 'room', commandEventId: '$next' });
    const failedJob = await crashEnd;
    assert.equal(failedJob.id, crashed.id);
    assert.equal(failedJob.state, 'failed');
    assert.equal(failedJob.error, 'internal error: boom');
    assert.equal(failedJob.done, 1, 'counters up to the crash are kept');
    const next = await nextEnd;
    assert.equal(next.state, 'done');
    assert.equal(next.done, 4);
  });

  it('fails a job of an unknown type', async () => {
    const runner = newRunner();
    const end = finished(runner, byEvent('$1'));
    runner.submit({ type: 'no-such-type', args: {}, origin: 'room', commandEventId: '$1' });
    const done = await end;
    assert.equal(done.state, 'failed');
    assert.equal(done.error, 'unknown job type no-such-type');
  });

  it('runs at most `concurrency` jobs at once', async () => {
    const release = latch();
    let inFlight = 0;
    let most = 0;
    scripts.set('overlap', {
      async beforeItem() {
        inFlight += 1;
        most = Math.max(most, inFlight);
        await release.promise;
        inFlight -= 1;
      },
    });
    const runner = newRunner(2);
    const ends = ['$1', '$2', '$3'].map((e) => finished(runner, byEvent(e)));
    for (const e of ['$1', '$2', '$3']) runner.submit({ type: 'count', args: { n: 1, script: 'overlap' }, origin: 'room', commandEventId: e });
    assert.equal(runner.activeCount(), 2);
    assert.equal(store.countByState().queued, 1);
    release.open();
    const done = await Promise.all(ends);
    assert.deepEqual(done.map((j) => j.state), ['done', 'done', 'done']);
    assert.equal(most, 2);
  });

  it('runs a terminal job in-process with runToEnd', async () => {
    const runner = newRunner();
    const { job } = store.create({ type: 'count', args: { n: 6, failOn: [0] }, origin: 'terminal' });
    const done = await runner.runToEnd(job.id);
    assert.equal(done.state, 'done');
    assert.equal(done.done, 5);
    assert.equal(done.failed, 1);
  });

  it('stop() halts a job run with runToEnd at its next check',
    async () => {
      const reached = latch();
      const release = latch();
      scripts.set('terminal', {
        async beforeItem(i, ctx) {
          if (i === 2) {
            reached.open();
            await Promise.race([untilAborted(ctx.signal), release.promise]);
          }
        },
      });
      const runner = newRunner();
      const { job } = store.create({ type: 'count', args: { n: 5, script: 'terminal' }, origin: 'terminal' });
      const run = runner.runToEnd(job.id);
      try {
        await reached.promise;
        await runner.stop();
        assert.equal(starts[0]!.signal.aborted, true, 'stop() must abort the job');
      } finally {
        release.open();
        await run;
      }
      assert.equal(store.get(job.id)?.state, 'running', 'a stopped job is left for the next run to resume');
    });

  it('cancel from another process flags a running job but does not mark it cancelled before it stops',
    async () => {
      const reached = latch();
      const release = latch();
      scripts.set('elsewhere', {
        async beforeItem(i) {
          if (i === 1) {
            reached.open();
            await release.promise;
          }
        },
      });
      const terminal = newRunner();
      const room = newRunner();
      const { job } = store.create({ type: 'count', args: { n: 3, script: 'elsewhere' }, origin: 'terminal' });
      const run = terminal.runToEnd(job.id);
      try {
        await reached.promise;
        const outcome = room.cancel(job.id);
        assert.ok(outcome.ok);
        assert.equal(outcome.value.state, 'running', 'the job is still running in the terminal');
        assert.equal(outcome.value.finishedTs, null);
      } finally {
        release.open();
        await run;
      }
    });
});
