import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Rich } from '../../src/admin-room/messenger.ts';
import { createLogger } from '../../src/log.ts';
import { lostRoomsMessage } from '../../src/recovery/announcer.ts';
import { LostRoomDetection } from '../../src/recovery/detection.ts';
import type { LogSource, SourceCallbacks } from '../../src/recovery/log-sources.ts';
import { LogSourceStore, LostRoomStore } from '../../src/recovery/lost-rooms.ts';
import type { RecoveryConfig } from '../../src/recovery/recovery-config.ts';
import { openDatabase } from '../../src/store/database.ts';

const OWN = 'our.example';
const log = createLogger({ level: 'silent' });

async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('LostRoomStore', () => {
  it('records each room once, with its servers, first and last seen and a count', () => {
    const store = new LostRoomStore(openDatabase(':memory:'));
    const first = store.record([
      { roomId: '!a:b.org', server: undefined, ts: 2000 },
      { roomId: '!a:b.org', server: 'b.org', ts: 1000 },
      { roomId: '!c:d.org', server: 'd.org', ts: 3000 },
      { roomId: '!c:d.org', server: OWN, ts: 3000 },
    ], OWN, 5000);
    assert.deepEqual(first, { newRooms: ['!a:b.org', '!c:d.org'], lostAgain: [] });
    const again = store.record([{ roomId: '!a:b.org', server: 'e.org', ts: 4000 }], OWN, 6000);
    assert.deepEqual(again, { newRooms: [], lostAgain: [] });
    const a = store.get('!a:b.org')!;
    assert.deepEqual([a.state, a.firstSeenTs, a.lastSeenTs, a.sightings], ['lost', 1000, 4000, 3]);
    assert.deepEqual(a.servers.map((s) => [s.server, s.sightings]), [['e.org', 1], ['b.org', 1]]);
    assert.deepEqual(store.get('!c:d.org')!.servers.map((s) => s.server), ['d.org'], 'our own server is never a sender');
  });

  it('a recovered room that sends again after its recovery is lost again; a forgotten one stays forgotten', () => {
    const store = new LostRoomStore(openDatabase(':memory:'));
    store.record([{ roomId: '!a:b.org', server: 'b.org', ts: 1000 }, { roomId: '!f:b.org', server: 'b.org', ts: 1000 }], OWN, 1000);
    store.markAnnounced(['!a:b.org', '!f:b.org'], 1500);
    store.markRecovered('!a:b.org', 7, 2000);
    assert.equal(store.forget('!f:b.org'), true);
    // A straggler logged before the recovery changes nothing.
    assert.deepEqual(store.record([{ roomId: '!a:b.org', server: 'b.org', ts: 1900 }], OWN, 2100).lostAgain, []);
    assert.equal(store.get('!a:b.org')!.state, 'recovered');
    assert.deepEqual(store.record([{ roomId: '!a:b.org', server: 'b.org', ts: 3000 }, { roomId: '!f:b.org', server: 'b.org', ts: 3000 }], OWN, 3000).lostAgain, ['!a:b.org']);
    const a = store.get('!a:b.org')!;
    assert.deepEqual([a.state, a.announcedTs, a.recoveredByJob], ['lost', null, 7]);
    assert.equal(store.get('!f:b.org')!.state, 'forgotten');
    assert.deepEqual(store.unannounced(10).map((r) => r.roomId), ['!a:b.org']);
    assert.deepEqual(store.countByState(), { lost: 1, recovered: 0, forgotten: 1 });
  });

  it('add records by hand (or brings back) with a server named first', () => {
    const store = new LostRoomStore(openDatabase(':memory:'));
    assert.equal(store.add('!x:y.org', 'z.org', '@admin:our.example', 10), 'added');
    assert.equal(store.add('!x:y.org', 'w.org', '@admin:our.example', 11), 'updated');
    store.record([{ roomId: '!x:y.org', server: 'v.org', ts: 12 }], OWN, 12);
    const x = store.get('!x:y.org')!;
    assert.equal(x.addedBy, '@admin:our.example');
    assert.notEqual(x.announcedTs, null, 'an admin who added it knows');
    assert.deepEqual(x.servers.map((s) => [s.server, s.manual]), [['w.org', true], ['z.org', true], ['v.org', false]]);
    store.forget('!x:y.org');
    assert.equal(store.add('!x:y.org', undefined, '@admin:our.example', 13), 'reinstated');
    assert.equal(store.get('!x:y.org')!.state, 'lost');
    assert.equal(store.forget('!nothing:y.org'), false);
  });
});

describe('announcements', () => {
  it('one message names every room, its senders and how often; the rest are counted', () => {
    const store = new LostRoomStore(openDatabase(':memory:'));
    store.record([
      { roomId: '!a:b.org', server: 'b.org', ts: 1 }, { roomId: '!a:b.org', server: 'b.org', ts: 2 },
      { roomId: '!c:d.org', server: undefined, ts: 3 }, { roomId: '!e:f.org', server: 'f.org', ts: 4 },
    ], OWN, 5);
    const msg = lostRoomsMessage(store.unannounced(10), 2);
    assert.match(msg.text, /^⚠️ 3 rooms this server is no longer in are still sending us events:/);
    assert.match(msg.text, /• !a:b\.org — from b\.org \(2 times\)/);
    assert.match(msg.text, /• !c:d\.org — sender not known yet \(1 time\)/);
    assert.match(msg.text, /… and 1 more/);
    assert.match(msg.text, /!rejoin all --dry-run/);
    assert.match(msg.html, /<code>!a:b\.org<\/code>/);
    assert.match(lostRoomsMessage(store.unannounced(1), 5).text, /^⚠️ 1 room this server is no longer in is still sending us events:/);
  });
});

class FakeSource implements LogSource {
  readonly name: string;
  readonly cb: SourceCallbacks;
  started = false;
  constructor(name: string, cb: SourceCallbacks) {
    this.name = name;
    this.cb = cb;
  }
  start(): void {
    this.started = true;
    this.cb.onState('following', null);
  }
  async stop(): Promise<void> {
    this.cb.onState('stopped', null);
  }
}

const CONFIG: RecoveryConfig = {
  logSources: [{ kind: 'file', path: '/var/log/synapse.log', format: 'auto', startAt: 'end' }, { kind: 'command', argv: ['journalctl', '-f'], format: 'auto' }],
  logFormat: 'auto', announceIntervalSeconds: 1, pollIntervalMs: 100, roomConcurrency: 2, joinConcurrency: 2, joinIntervalMs: 0, reports: '/tmp/reports',
};

describe('LostRoomDetection', () => {
  it('records rooms from every source, announces them grouped, and reports a failing source once', async () => {
    const db = openDatabase(':memory:');
    const rooms = new LostRoomStore(db);
    const sources = new LogSourceStore(db);
    const notices: Rich[] = [];
    const fakes: FakeSource[] = [];
    const detection = new LostRoomDetection({
      config: CONFIG, serverName: OWN, rooms, sources, log, originWaitMs: 50,
      notify: async (m) => {
        notices.push(m);
      },
      makeSource: (_config, name, cb) => {
        const f = new FakeSource(name, cb);
        fakes.push(f);
        return f;
      },
    });
    detection.start();
    assert.deepEqual(fakes.map((f) => [f.name, f.started]), [['file:/var/log/synapse.log', true], ['command:journalctl -f', true]]);
    const [file, cmd] = fakes as [FakeSource, FakeSource];
    file.cb.onLines([
      '2026-11-22 02:21:54,590 - synapse.federation.federation_server - 479 - INFO - PUT-2 - Ignoring PDU for unknown room_id: !a:b.org',
      'not a log line',
      '2026-11-22 02:21:54,600 - synapse.access.https.8448 - 643 - INFO - PUT-2 - 10.0.0.1 - 8448 - {b.org} Processed request: 0.004sec/0.000sec ru=(0.002sec, 0.000sec) db=(0.001sec/0.001sec/3) 11B 200 "PUT /_matrix/federation/v1/send/1 HTTP/1.1" "Synapse/1.163.2" [0 dbevts]',
    ]);
    cmd.cb.onLines(["synapse.handlers.typing: [PUT-9] Ignoring typing update for room '!c:d.org' from server d.org as we're not in the room"]);
    // An Ignoring PDU whose access line never comes is recorded without a sender after the wait.
    cmd.cb.onLines(['2026-11-22 02:21:55,000 - synapse.federation.federation_server - 479 - INFO - PUT-10 - Ignoring PDU for unknown room_id: !e:f.org']);
    await until(() => notices.some((n) => n.text.includes('!e:f.org')) || notices.filter((n) => /no longer in/.test(n.text)).length >= 2, 'announcements');
    const announced = notices.filter((n) => /no longer in/.test(n.text)).map((n) => n.text).join('\n');
    assert.match(announced, /!a:b\.org — from b\.org/);
    assert.match(announced, /!c:d\.org — from d\.org/);
    await until(() => rooms.get('!e:f.org') !== undefined, 'the room without a sender');
    assert.deepEqual(rooms.get('!e:f.org')!.servers, []);

    file.cb.onState('failing', 'cannot read /var/log/synapse.log: it does not exist');
    file.cb.onState('failing', 'cannot read /var/log/synapse.log: it does not exist');
    file.cb.onState('failing', 'cannot read /var/log/synapse.log: permission denied');
    file.cb.onState('following', null);
    await detection.stop();
    const about = notices.filter((n) => n.text.includes('Log source file:/var/log/synapse.log'));
    assert.deepEqual(about.map((n) => n.text.split(':')[0]), ['⚠️ Log source file', '✅ Log source file'], 'one failure notice, one recovery notice');
    const status = sources.statuses().find((s) => s.source === 'file:/var/log/synapse.log')!;
    assert.deepEqual([status.lines, status.unparsed, status.sightings], [3, 1, 1]);
  });
});
