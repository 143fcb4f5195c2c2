import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { renderReport, runChecks, worst, type CheckResult } from '../../src/doctor/check.ts';
import { freeSpaceVerdict } from '../../src/doctor/checks.ts';
import { parseSynapseDuration, readRedactionRetention, SYNAPSE_DEFAULT_REDACTION_RETENTION_MS } from '../../src/homeserver/synapse-config-file.ts';

describe('parseSynapseDuration (Synapse\'s Config.parse_duration)', () => {
  it('reads integers as milliseconds and the s, m, h, d, w, y suffixes', () => {
    const cases: [unknown, number][] = [
      [1500, 1500], ['1500', 1500], ['10s', 10_000], ['5m', 300_000], ['1h', 3600_000], ['7d', 604_800_000],
      ['2w', 1_209_600_000], ['1y', 31_536_000_000], [' 7d', 604_800_000], ['1_000', 1000], ['0d', 0],
    ];
    for (const [input, expected] of cases) {
      const parsed = parseSynapseDuration(input);
      assert.ok(parsed.ok, `${String(input)}: ${JSON.stringify(parsed)}`);
      assert.equal(parsed.value, expected, String(input));
    }
  });

  it('refuses what Synapse refuses', () => {
    for (const input of ['7x', '7 days', 'd', '', '1.5h', 1.5, true, {}, []]) {
      assert.equal(parseSynapseDuration(input).ok, false, JSON.stringify(input));
    }
  });
});

describe('readRedactionRetention', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'steward-synapse-config-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const file = async (name: string, text: string): Promise<string> => {
    const p = path.join(dir, name);
    await writeFile(p, text);
    return p;
  };

  it('reads the value, null as forever, and Synapse\'s 7 d default when absent', async () => {
    assert.deepEqual(readRedactionRetention(await file('a.yaml', 'server_name: x\nredaction_retention_period: 30d\n')), { ok: true, value: { periodMs: 30 * 86_400_000 } });
    assert.deepEqual(readRedactionRetention(await file('b.yaml', 'redaction_retention_period: null\n')), { ok: true, value: { periodMs: null } });
    assert.deepEqual(readRedactionRetention(await file('c.yaml', 'server_name: x\n')), { ok: true, value: { periodMs: SYNAPSE_DEFAULT_REDACTION_RETENTION_MS } });
    assert.deepEqual(readRedactionRetention(await file('d.yaml', '')), { ok: true, value: { periodMs: SYNAPSE_DEFAULT_REDACTION_RETENTION_MS } });
  });

  it('says clearly what is wrong with a missing, unreadable, broken or bad file', async () => {
    const missing = readRedactionRetention(path.join(dir, 'nope.yaml'));
    assert.ok(!missing.ok);
    assert.match(missing.error.human, /does not exist/);
    const broken = readRedactionRetention(await file('e.yaml', 'a: [\n'));
    assert.ok(!broken.ok);
    assert.match(broken.error.human, /not valid YAML/);
    const bad = readRedactionRetention(await file('f.yaml', 'redaction_retention_period: 7 days\n'));
    assert.ok(!bad.ok);
    assert.match(bad.error.human, /redaction_retention_period in .*not a duration|bad duration suffix/);
    const list = readRedactionRetention(await file('g.yaml', '- a\n'));
    assert.ok(!list.ok);
    if (process.getuid?.() !== 0) {
      const secret = await file('h.yaml', 'redaction_retention_period: 1d\n');
      await chmod(secret, 0o000);
      const denied = readRedactionRetention(secret);
      assert.ok(!denied.ok);
      assert.match(denied.error.human, /permission denied/);
    }
  });
});

describe('runChecks', () => {
  it('bounds each check in time, turns a throw into a ❌ of its own and keeps the order', async () => {
    let aborted = false;
    const results = await runChecks([
      { title: 'fine', run: async () => ({ status: 'ok', detail: 'all good' }) },
      { title: 'hangs', timeoutMs: 50, run: (signal) => new Promise(() => { signal.addEventListener('abort', () => { aborted = true; }); }) },
      { title: 'throws', run: async () => { throw new Error('boom'); } },
      { title: 'several', run: async () => [{ title: 'one', status: 'warn', detail: 'w', fix: 'do x' }, { title: 'two', status: 'ok', detail: 'o' }] },
    ]);
    assert.deepEqual(results.map((r) => [r.title, r.status]), [['fine', 'ok'], ['hangs', 'fail'], ['throws', 'fail'], ['one', 'warn'], ['two', 'ok']]);
    assert.match(results[1]!.detail, /no answer within 0 s|no answer within/);
    assert.equal(aborted, true, 'the hanging check was told to stop');
    assert.match(results[2]!.detail, /boom/);
  });

  it('renders ✅ / ⚠️ / ❌ with fixes only for problems; worst decides the exit code', () => {
    const results: CheckResult[] = [
      { title: 'A', status: 'ok', detail: 'fine', fix: 'never shown' },
      { title: 'B', status: 'warn', detail: 'meh', fix: 'do b' },
      { title: 'C <x>', status: 'fail', detail: 'bad', fix: 'do c' },
    ];
    const { text, html } = renderReport(results, 'a note');
    assert.equal(text, 'Doctor: 1 ✅ · 1 ⚠️ · 1 ❌\n✅ A: fine\n⚠️ B: meh\n   fix: do b\n❌ C <x>: bad\n   fix: do c\n\na note');
    assert.match(html, /<b>C &lt;x&gt;<\/b>/);
    assert.equal(worst(results), 'fail');
    assert.equal(worst(results.slice(0, 2)), 'warn');
    assert.equal(worst(results.slice(0, 1)), 'ok');
  });
});

describe('freeSpaceVerdict', () => {
  const GiB = 1024 ** 3;
  it('❌ below half a GiB, ⚠️ below 5 GiB or 5 % of the disk, ✅ otherwise, naming the place measured', () => {
    assert.equal(freeSpaceVerdict(GiB / 4, 100 * GiB, '/d', '/d').status, 'fail');
    assert.equal(freeSpaceVerdict(2 * GiB, 100 * GiB, '/d', '/d').status, 'warn');
    assert.equal(freeSpaceVerdict(40 * GiB, 1000 * GiB, '/d', '/d').status, 'warn', '4 % of the disk');
    const fine = freeSpaceVerdict(60 * GiB, 100 * GiB, '/srv/dumps', '/srv');
    assert.equal(fine.status, 'ok');
    assert.equal(fine.detail, '60.0 GiB free of 100.0 GiB at /srv/dumps (created on first dump; measured at /srv)');
    assert.match(freeSpaceVerdict(GiB / 4, 100 * GiB, '/d', '/d').fix ?? '', /larger disk/);
  });
});
