import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ALL_COMMANDS } from '../../src/commands/all-commands.ts';
import type { CommandContext } from '../../src/commands/context.ts';
import { dispatch } from '../../src/commands/dispatch.ts';
import { parseConfig, type StewardConfig } from '../../src/config/config.ts';
import { JobStore } from '../../src/jobs/job-store.ts';
import { JobRunner } from '../../src/jobs/runner.ts';
import { federationProvider } from '../../src/federation/federation-access.ts';
import { createLogger } from '../../src/log.ts';
import { forecastText } from '../../src/recovery/rejoin-report.ts';
import { LogSourceStore, LostRoomStore } from '../../src/recovery/lost-rooms.ts';
import { openDatabase } from '../../src/store/database.ts';

const log = createLogger({ level: 'silent' });

function setup(extra: Record<string, unknown> = {}) {
  const parsed = parseConfig({
    homeserver: { url: 'http://127.0.0.1:8008', server_name: 'our.example' },
    admin_room: { admins: ['@admin:our.example'] },
    storage: { database: `/tmp/steward-recovery-commands-${process.pid}-${Math.random()}.db` },
    recovery: { log_sources: [{ file: '/var/log/synapse/homeserver.log' }] },
    ...extra,
  }, '/tmp');
  assert.ok(parsed.ok, !parsed.ok ? parsed.error.human : '');
  const config: StewardConfig = parsed.value;
  const db = openDatabase(':memory:');
  const rooms = new LostRoomStore(db);
  const sources = new LogSourceStore(db);
  const jobs = new JobStore(db);
  const runner = new JobRunner({ store: jobs, definitions: [], concurrency: 1, log });
  const ctx: CommandContext = {
    frontEnd: 'room', sender: '@admin:our.example', roomId: '!admin:our.example', commandEventId: undefined,
    config, jobs, runner, commands: ALL_COMMANDS, federation: federationProvider(config, log, 'test'), recovery: { rooms, sources },
    status: () => ({ version: 'test', homeserver: config.homeserver.url, serverName: 'our.example', botUserId: '@steward:our.example', startedTs: 0, synapseVersion: null }),
  };
  return { ctx, db, jobs, rooms, sources, close: () => db.close() };
}

describe('lost commands', () => {
  const t = setup();
  after(() => t.close());

  it('!lost add records a room and the server to ask; !lost list shows rooms and how each log source is doing', async () => {
    const added = await dispatch('lost add !abc:remote.example remote.example', t.ctx);
    assert.ok(added.ok && added.value.kind === 'reply');
    assert.match(added.value.text, /!abc:remote\.example recorded as lost; remote\.example will be asked/);
    t.rooms.record([{ roomId: '!def:other.example', server: 'other.example', ts: Date.now() }], 'our.example');
    t.sources.saveStatus('file:/var/log/synapse/homeserver.log', 'following', null, { lines: 120, unparsed: 3, sightings: 1 });
    const list = await dispatch('lost list', t.ctx);
    assert.ok(list.ok && list.value.kind === 'reply');
    assert.match(list.value.text, /^2 lost room\(s\)\./);
    assert.match(list.value.text, /• !abc:remote\.example — remote\.example \(added\) · added by @admin:our\.example/);
    assert.match(list.value.text, /• !def:other\.example — other\.example ×1 · seen 1×/);
    assert.match(list.value.text, /file:\/var\/log\/synapse\/homeserver\.log: following · 120 lines read, 3 not parsed, 1 lost-room lines/);
    assert.match(list.value.html, /<code>!abc:remote\.example<\/code>/);
  });

  it('!lost forget hides a room until !lost add brings it back', async () => {
    const forgot = await dispatch('lost forget !def:other.example', t.ctx);
    assert.ok(forgot.ok);
    const list = await dispatch('lost list', t.ctx);
    assert.ok(list.ok && list.value.kind === 'reply');
    assert.doesNotMatch(list.value.text, /!def:other\.example/);
    const all = await dispatch('lost list --all', t.ctx);
    assert.ok(all.ok && all.value.kind === 'reply');
    assert.match(all.value.text, /!def:other\.example — .* · forgotten/);
    const missing = await dispatch('lost forget !nope:other.example', t.ctx);
    assert.ok(!missing.ok);
    assert.match(missing.error.human, /not recorded as a lost room/);
  });

  it('refuses what cannot be right, saying why', async () => {
    const cases: [string, RegExp][] = [
      ['lost add not-a-room remote.example', /is not a room id/],
      ['lost add !abc:remote.example not_a_server', /is not a server name/],
      ['lost add !abc:remote.example our.example', /this server is the one that lost it/],
      ['lost add !6F-r7r4sdjpbt9iRwqdN-cUlVVSuaCV7LYxxcKI3hjI', /names no server/],
      ['lost scan relative/homeserver.log', /absolute path/],
      ['lost scan /var/log/x.log --format xml', /--format must be one of auto, default, json/],
      ['rejoin', /Missing <rooms>/],
      ['rejoin all !abc:remote.example', /Not a room id: all/],
      ['rejoin !abc:remote.example --via bad_server', /--via expects server names/],
      ['rejoin all', /set federation\.signing_key_path/],
    ];
    for (const [line, why] of cases) {
      const outcome = await dispatch(line, t.ctx);
      assert.ok(!outcome.ok, line);
      assert.match(outcome.error.human, why, line);
    }
  });

  it('!rejoin starts a durable job with the rooms, servers and dry-run flag', async () => {
    const k = setup({ federation: { signing_key_path: '/etc/matrix-synapse/homeserver.signing.key' } });
    try {
      const outcome = await dispatch('rejoin !abc:remote.example !def:other.example --via remote.example --via b.example --dry-run', { ...k.ctx, frontEnd: 'terminal' });
      assert.ok(outcome.ok && outcome.value.kind === 'job');
      assert.deepEqual(outcome.value.job.args, { rooms: ['!abc:remote.example', '!def:other.example'], all: false, via: ['remote.example', 'b.example'], dryRun: true });
      const all = await dispatch('rejoin all', { ...k.ctx, frontEnd: 'terminal' });
      assert.ok(all.ok && all.value.kind === 'job');
      assert.deepEqual(all.value.job.args, { rooms: [], all: true, via: [], dryRun: false });
    } finally {
      k.close();
    }
  });
});

describe('rate-limit forecast', () => {
  it('says nothing for small recoveries; for large ones, how long default limits take and how to lift them', () => {
    assert.equal(forecastText(5, 10), undefined);
    const text = forecastText(100, 300)!;
    assert.match(text, /100 remote and 300 local join\(s\) needed: if Synapse rate-limits Steward, at its default limits this takes about 2h30m/);
    assert.match(text, /rate_limited: false/);
    assert.match(text, /rc_joins_per_room: \{per_second: 10, burst_count: 100\}/);
  });
});
