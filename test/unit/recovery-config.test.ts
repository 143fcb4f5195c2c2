import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../src/config/config.ts';
import { LostRoomStore } from '../../src/recovery/lost-rooms.ts';
import { scanLogFile } from '../../src/recovery/scan.ts';
import { openDatabase } from '../../src/store/database.ts';

const BASE = {
  homeserver: { url: 'http://127.0.0.1:8008', server_name: 'our.example' },
  admin_room: { admins: ['@admin:our.example'] },
};

describe('recovery config', () => {
  it('has defaults, and reads every kind of log source', () => {
    const none = parseConfig(BASE, '/etc/steward');
    assert.ok(none.ok);
    assert.deepEqual(none.value.recovery.logSources, []);
    assert.equal(none.value.recovery.announceIntervalSeconds, 300);
    assert.equal(none.value.recovery.reports, '/etc/steward/dumps/rejoin-reports');

    const all = parseConfig({
      ...BASE,
      recovery: {
        log_format: 'json',
        log_sources: [
          { file: 'logs/homeserver.log' },
          { file: '/var/log/synapse.log', format: 'default', start_at: 'start' },
          { command: ['journalctl', '-u', 'matrix-synapse', '-o', 'cat', '-f'] },
          { stdin: true },
        ],
        announce_interval_seconds: 60, poll_interval_ms: 250, room_concurrency: 8, join_concurrency: 3, join_interval_ms: 100, reports: 'reports',
      },
    }, '/etc/steward');
    assert.ok(all.ok, !all.ok ? all.error.human : '');
    assert.deepEqual(all.value.recovery, {
      logSources: [
        { kind: 'file', path: '/etc/steward/logs/homeserver.log', format: 'json', startAt: 'end' },
        { kind: 'file', path: '/var/log/synapse.log', format: 'default', startAt: 'start' },
        { kind: 'command', argv: ['journalctl', '-u', 'matrix-synapse', '-o', 'cat', '-f'], format: 'json' },
        { kind: 'stdin', format: 'json' },
      ],
      logFormat: 'json', announceIntervalSeconds: 60, pollIntervalMs: 250, roomConcurrency: 8, joinConcurrency: 3, joinIntervalMs: 100, reports: '/etc/steward/reports',
    });
  });

  it('names the bad key in every error', () => {
    const bad = parseConfig({
      ...BASE,
      recovery: {
        log_format: 'xml',
        log_sources: [{ file: '/a', command: ['x'] }, {}, { command: 'journalctl -f' }, { stdin: true }, { stdin: true }, { file: '/b', start_at: 'middle' }, { file: '/c', colour: 'red' }, 'x'],
        join_concurrency: 0,
        annonce_interval_seconds: 5,
      },
    }, '/');
    assert.ok(!bad.ok);
    const text = bad.error.human;
    for (const expected of [
      'recovery.log_format: expected one of auto, default, json, got "xml"',
      'recovery.log_sources[0]: expected exactly one of file, command or stdin, got file and command',
      'recovery.log_sources[1]: expected exactly one of file, command or stdin, got none',
      'recovery.log_sources[2].command: expected a list of program and arguments',
      'recovery.log_sources[4]: standard input can be read by one source only',
      'recovery.log_sources[5].start_at: expected end or start, got "middle"',
      "recovery.log_sources[6].colour: unknown key",
      'recovery.log_sources[7]: expected a mapping of keys',
      'recovery.join_concurrency: expected a whole number from 1 to 64, got number 0',
      "recovery.annonce_interval_seconds: unknown key (did you mean 'announce_interval_seconds'?)",
    ]) assert.ok(text.includes(expected), `missing: ${expected}\n${text}`);
  });
});

describe('scanLogFile', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'steward-scan-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const lines = [
    '2026-11-22 02:21:54,590 - synapse.federation.federation_server - 479 - INFO - PUT-2 - Ignoring PDU for unknown room_id: !a:b.org',
    'Traceback (most recent call last):',
    '2026-11-22 02:21:54,600 - synapse.access.https.8448 - 643 - INFO - PUT-2 - 10.0.0.1 - 8448 - {b.org} Processed request: 0.004sec/0.000sec ru=(0.002sec, 0.000sec) db=(0.001sec/0.001sec/3) 11B 200 "PUT /_matrix/federation/v1/send/1 HTTP/1.1" "Synapse/1.163.2" [0 dbevts]',
    "2026-11-22 02:22:54,642 - synapse.handlers.receipts - 88 - INFO - PUT-4 - Ignoring receipt for room '!c:d.org' from server d.org as we're not in the room",
  ].join('\n');

  it('reads plain and gzip files alike, with the times the lines carry', async () => {
    const plain = path.join(dir, 'homeserver.log.1');
    const gz = path.join(dir, 'homeserver.log.2.gz');
    await writeFile(plain, `${lines}\n`);
    await writeFile(gz, await promisify(gzip)(Buffer.from(lines))); // no final newline
    for (const file of [plain, gz]) {
      const rooms = new LostRoomStore(openDatabase(':memory:'));
      const scanned = await scanLogFile({ path: file, format: 'auto', rooms, serverName: 'our.example' });
      assert.ok(scanned.ok, file);
      assert.deepEqual(scanned.value, { lines: 4, parsed: 3, unparsed: 1, sightings: 2, rooms: 2, newRooms: 2, lostAgain: 0 }, file);
      const a = rooms.get('!a:b.org')!;
      assert.deepEqual(a.servers.map((s) => s.server), ['b.org']);
      assert.equal(a.firstSeenTs, new Date(2026, 10, 22, 2, 21, 54, 590).getTime());
    }
  });

  it('says what is wrong with a missing file or corrupt gzip', async () => {
    const rooms = new LostRoomStore(openDatabase(':memory:'));
    const missing = await scanLogFile({ path: path.join(dir, 'nope.log'), format: 'auto', rooms, serverName: 'our.example' });
    assert.ok(!missing.ok);
    assert.match(missing.error.human, /nope\.log: it does not exist/);
    const corrupt = path.join(dir, 'corrupt.gz');
    await writeFile(corrupt, Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0]), randomish(200)]));
    const bad = await scanLogFile({ path: corrupt, format: 'auto', rooms, serverName: 'our.example' });
    assert.ok(!bad.ok);
    assert.match(bad.error.human, /Reading .*corrupt\.gz failed/);
  });
});

function randomish(n: number): Buffer {
  return Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + 11) % 256));
}
