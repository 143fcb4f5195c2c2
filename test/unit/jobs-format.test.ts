import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatDuration, jobLine, progressBar, progressLine } from '../../src/jobs/format.ts';
import type { JobRecord } from '../../src/jobs/job-store.ts';

function job(fields: Partial<JobRecord>): JobRecord {
  return {
    id: 7, type: 'count', args: {}, state: 'running', origin: 'room', requestedBy: '@a:hs', roomId: '!r:hs', commandEventId: '$c',
    statusEventId: null, done: 0, total: null, failed: 0, checkpoint: null, result: null, error: null, cancelRequested: false,
    resumedCount: 0, createdTs: 1_000_000, startedTs: 1_000_000, finishedTs: null,
    ...fields,
  };
}

describe('formatDuration', () => {
  it('shows seconds below a minute', () => {
    assert.equal(formatDuration(0), '0s');
    assert.equal(formatDuration(499), '0s');
    assert.equal(formatDuration(500), '1s');
    assert.equal(formatDuration(59_000), '59s');
    assert.equal(formatDuration(59_499), '59s');
  });

  it('shows minutes and padded seconds below an hour', () => {
    assert.equal(formatDuration(59_500), '1m00s');
    assert.equal(formatDuration(60_000), '1m00s');
    assert.equal(formatDuration(65_000), '1m05s');
    assert.equal(formatDuration(3_599_000), '59m59s');
  });

  it('shows hours and padded minutes from an hour', () => {
    assert.equal(formatDuration(3_600_000), '1h00m');
    assert.equal(formatDuration(3_659_000), '1h00m');
    assert.equal(formatDuration(3_660_000), '1h01m');
    assert.equal(formatDuration(100 * 3_600_000 + 5 * 60_000), '100h05m');
  });

  it('never shows a negative duration', () => {
    assert.equal(formatDuration(-5_000), '0s');
  });
});

describe('progressBar', () => {
  it('fills in proportion, within bounds', () => {
    assert.equal(progressBar(0, 10), `[${'░'.repeat(20)}]`);
    assert.equal(progressBar(5, 10), `[${'█'.repeat(10)}${'░'.repeat(10)}]`);
    assert.equal(progressBar(10, 10), `[${'█'.repeat(20)}]`);
    assert.equal(progressBar(15, 10), `[${'█'.repeat(20)}]`);
    assert.equal(progressBar(3, null), `[${'░'.repeat(20)}]`);
    assert.equal(progressBar(3, 0), `[${'░'.repeat(20)}]`);
  });
});

describe('progressLine', () => {
  it('shows percent, done/total, rate, ETA and failures', () => {
    const line = progressLine(job({ done: 798, failed: 2, total: 2000 }), 85);
    assert.equal(line, `${progressBar(800, 2000)} · 40% 800/2000 · 85/s · ETA 14s · 2 failed`);
  });

  it('counts failed items as processed', () => {
    assert.match(progressLine(job({ done: 0, failed: 5, total: 10 }), null), / · 50% 5\/10 · 5 failed$/);
  });

  it('rounds fast rates and keeps one decimal for slow ones', () => {
    assert.match(progressLine(job({ done: 0, total: 100 }), 12.6), / · 13\/s · /);
    assert.match(progressLine(job({ done: 0, total: 100 }), 2.25), / · 2\.3\/s · ETA 44s$/);
  });

  it('computes the ETA from what is left', () => {
    assert.match(progressLine(job({ done: 100, total: 3700 }), 1), /ETA 1h00m$/);
    assert.match(progressLine(job({ done: 10, total: 10 }), 5), /100% 10\/10 · 5\.0\/s · ETA 0s$/);
  });

  it('leaves rate and ETA out without a positive rate', () => {
    assert.equal(progressLine(job({ done: 1, total: 4 }), null), `${progressBar(1, 4)} · 25% 1/4`);
    assert.equal(progressLine(job({ done: 1, total: 4 }), 0), `${progressBar(1, 4)} · 25% 1/4`);
  });

  it('shows a count without a total, and a rate without an ETA', () => {
    assert.equal(progressLine(job({ done: 42, total: null }), 3), `${progressBar(42, null)} · 42 so far · 3.0/s`);
  });

  it('rounds the percentage down so it never reads 100% early', () => {
    assert.match(progressLine(job({ done: 999, total: 1000 }), null), / 99% 999\/1000$/);
  });
});

describe('jobLine', () => {
  it('sums up a job in one line', () => {
    const line = jobLine(job({ state: 'running', done: 4, failed: 1, total: 10, createdTs: 1_000_000 }), 'dump users', 1_000_000 + 90_000);
    assert.equal(line.text, '⏳ #7 dump users — running 5/10 (1 failed) · 1m30s ago');
    const finished = jobLine(job({ state: 'done', done: 3, origin: 'terminal', createdTs: 0 }), 'count <to> "3"', 5_000);
    assert.equal(finished.text, '✅ #7 count <to> "3" — done 3 · 5s ago · terminal');
    assert.equal(finished.html, '✅ #7 count &lt;to&gt; &quot;3&quot; — done 3 · 5s ago · terminal');
  });
});
