import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { factOf, isPlausibleRoomId, parseLogLine, SightingCorrelator } from '../../src/recovery/log-parser.ts';

// Lines as Synapse 1.163 wrote them in the e2e rig (default format), and as MATRIX-FACTS records them.
const PDU = '2026-11-22 02:21:54,590 - synapse.federation.federation_server - 479 - INFO - PUT-2 - Ignoring PDU for unknown room_id: !6F-r7r4sdjpbt9iRwqdN-cUlVVSuaCV7LYxxcKI3hjI';
const ACCESS = '2026-11-22 02:21:54,600 - synapse.access.https.43091 - 643 - INFO - PUT-2 - 127.0.0.1 - 43091 - {localhost:35009} Processed request: 0.004sec/0.000sec ru=(0.002sec, 0.000sec) db=(0.001sec/0.001sec/3) 11B 200 "PUT /_matrix/federation/v1/send/1795314070825 HTTP/1.1" "Synapse/1.163.2" [0 dbevts]';
const RECEIPT = "2026-11-22 02:21:54,642 - synapse.handlers.receipts - 88 - INFO - PUT-4 - Ignoring receipt for room '!6F-r7r4sdjpbt9iRwqdN-cUlVVSuaCV7LYxxcKI3hjI' from server localhost:35009 as we're not in the room";
const TYPING = "2026-11-22 01:42:47,656 - synapse.handlers.typing - 407 - INFO - PUT-26 - Ignoring typing update for room '!doesnotexist:localhost:8481' from server localhost:8481 as we're not in the room";
const NOT_IN_ROOM = "2026-11-22 01:42:47,700 - synapse.handlers.federation_event - 299 - INFO - PUT-30-!abc:example.org-$Hpo_YiZWSFxxWOPSh9vn_i-TZte1k2CDFlzxr57JEsY - Ignoring PDU from example.org as we're not in the room";

describe('parseLogLine', () => {
  it('reads the default format, with its local timestamp', () => {
    const r = parseLogLine(PDU);
    assert.ok(r);
    assert.equal(r.logger, 'synapse.federation.federation_server');
    assert.equal(r.request, 'PUT-2');
    assert.equal(r.message, 'Ignoring PDU for unknown room_id: !6F-r7r4sdjpbt9iRwqdN-cUlVVSuaCV7LYxxcKI3hjI');
    assert.equal(r.ts, new Date(2026, 10, 22, 2, 21, 54, 590).getTime());
  });

  it('skips what comes before the timestamp: journald, docker and worker-name prefixes', () => {
    for (const prefix of ['Nov 22 02:21:54 host matrix-synapse[812]: ', 'synapse  | ', 'worker1 | ']) {
      const r = parseLogLine(prefix + RECEIPT);
      assert.equal(r?.logger, 'synapse.handlers.receipts', prefix);
      assert.equal(r?.request, 'PUT-4');
    }
  });

  it('reads the short "name: [request] message" form', () => {
    const r = parseLogLine("synapse.handlers.receipts: [PUT-12] Ignoring receipt for room '!example:example.org' from server example.org as we're not in the room");
    assert.equal(r?.logger, 'synapse.handlers.receipts');
    assert.equal(r?.request, 'PUT-12');
    assert.match(r?.message ?? '', /^Ignoring receipt/);
  });

  it('reads TerseJsonFormatter / JsonFormatter lines, with the requester of the request', () => {
    const line = JSON.stringify({
      log: 'Ignoring PDU for unknown room_id: !abc:example.org', namespace: 'synapse.federation.federation_server', level: 'INFO', time: 1795314070.83,
      request: 'PUT-7', server_name: 'our.example', ip_address: '10.0.0.2', site_tag: '8448', requester: 'example.org', authenticated_entity: 'example.org',
      method: 'PUT', url: '/_matrix/federation/v1/send/1', protocol: '1.1', user_agent: 'Synapse/1.163.2',
    });
    const r = parseLogLine(line, 'json');
    assert.ok(r);
    assert.equal(r.ts, 1795314070830);
    assert.equal(r.request, 'PUT-7');
    assert.equal(r.requester, 'example.org');
    const fact = factOf(r);
    assert.equal(fact.kind, 'sighting');
    assert.equal(fact.kind === 'sighting' && fact.sighting.server, 'example.org');
    assert.equal(fact.kind === 'sighting' && fact.awaitsOrigin, false);
  });

  it('reads GcpJsonFormatter lines (message, logger, ISO time)', () => {
    const r = parseLogLine('{"severity":"INFO","message":"Ignoring receipt for room \'!abc:example.org\' from server example.org as we\'re not in the room","logger":"synapse.handlers.receipts","time":"2026-05-12T13:40:37.829Z"}');
    assert.equal(r?.ts, Date.parse('2026-05-12T13:40:37.829Z'));
    assert.equal(r?.logger, 'synapse.handlers.receipts');
  });

  it('answers undefined for lines in no known format, and honours a forced format', () => {
    assert.equal(parseLogLine('Traceback (most recent call last):'), undefined);
    assert.equal(parseLogLine('  File "/usr/lib/python3/dist-packages/twisted/internet/defer.py", line 1660'), undefined);
    assert.equal(parseLogLine('{"not": "a synapse line"}'), undefined);
    assert.equal(parseLogLine(PDU, 'json'), undefined);
    assert.ok(parseLogLine(PDU, 'default'));
    // An access-log line holds braces but is not JSON.
    assert.equal(parseLogLine(ACCESS)?.logger, 'synapse.access.https.43091');
  });
});

describe('factOf', () => {
  it('turns each lost-room line into a sighting, and an access line into an origin', () => {
    const facts = [PDU, RECEIPT, TYPING, NOT_IN_ROOM, ACCESS].map((l) => factOf(parseLogLine(l)!));
    assert.deepEqual(facts.map((f) => f.kind), ['sighting', 'sighting', 'sighting', 'sighting', 'origin']);
    const [pdu, receipt, typing, notIn, access] = facts;
    assert.ok(pdu?.kind === 'sighting' && receipt?.kind === 'sighting' && typing?.kind === 'sighting' && notIn?.kind === 'sighting' && access?.kind === 'origin');
    assert.deepEqual([pdu.sighting.roomId, pdu.sighting.server, pdu.awaitsOrigin], ['!6F-r7r4sdjpbt9iRwqdN-cUlVVSuaCV7LYxxcKI3hjI', undefined, true]);
    assert.deepEqual([receipt.sighting.kind, receipt.sighting.server], ['receipt', 'localhost:35009']);
    assert.deepEqual([typing.sighting.roomId, typing.sighting.kind, typing.sighting.server], ['!doesnotexist:localhost:8481', 'typing', 'localhost:8481']);
    // federation_event names the origin; the room comes from the per-PDU log context.
    assert.deepEqual([notIn.sighting.roomId, notIn.sighting.server, notIn.sighting.kind], ['!abc:example.org', 'example.org', 'pdu-not-in-room']);
    assert.deepEqual([access.request, access.origin], ['PUT-2', 'localhost:35009']);
  });

  it('ignores the same words from other places, client requests and implausible room ids', () => {
    const client = '2026-11-22 02:21:54,600 - synapse.access.http.8008 - 643 - INFO - GET-9 - 127.0.0.1 - 8008 - {@alice:example.org} Processed request: 0.004sec/0.000sec ru=(0.002sec, 0.000sec) db=(0.001sec/0.001sec/3) 11B 200 "GET /_matrix/client/v3/sync HTTP/1.1" "curl" [0 dbevts]';
    assert.equal(factOf(parseLogLine(client)!).kind, 'none');
    assert.equal(factOf(parseLogLine("2026-11-22 02:21:54,590 - synapse.handlers.receipts - 103 - INFO - PUT-2 - Ignoring receipt for room '!a:b.org' from server c.org as they're not in the room")!).kind, 'none');
    assert.equal(factOf(parseLogLine('2026-11-22 02:21:54,590 - synapse.federation.federation_server - 479 - INFO - PUT-2 - Ignoring PDU for unknown room_id: <script>')!).kind, 'none');
    assert.equal(isPlausibleRoomId('!abc:example.org'), true);
    assert.equal(isPlausibleRoomId('!6F-r7r4sdjpbt9iRwqdN-cUlVVSuaCV7LYxxcKI3hjI'), true);
    assert.equal(isPlausibleRoomId('!abc:exa mple.org'), false);
    assert.equal(isPlausibleRoomId(`!${'x'.repeat(300)}:example.org`), false);
    assert.equal(isPlausibleRoomId('#alias:example.org'), false);
  });
});

describe('SightingCorrelator', () => {
  it('gives an Ignoring PDU line the origin named by the access line of the same request', () => {
    const c = new SightingCorrelator('auto');
    assert.deepEqual(c.feed(PDU, 0), []);
    assert.equal(c.waiting, 1);
    const out = c.feed(ACCESS, 0);
    assert.equal(out.length, 1);
    assert.equal(out[0]!.server, 'localhost:35009');
    assert.equal(out[0]!.roomId, '!6F-r7r4sdjpbt9iRwqdN-cUlVVSuaCV7LYxxcKI3hjI');
    assert.equal(c.waiting, 0);
  });

  it('releases a sighting without origin when its access line never comes (line and time bounds, flush)', () => {
    const byLines = new SightingCorrelator('auto', { maxPendingLines: 2 });
    byLines.feed(PDU, 0);
    assert.deepEqual(byLines.feed('noise', 0), []);
    assert.deepEqual(byLines.feed('noise', 0), []);
    const released = byLines.feed('noise', 0);
    assert.equal(released.length, 1);
    assert.equal(released[0]!.server, undefined);

    const byTime = new SightingCorrelator('auto', { maxPendingMs: 1000 });
    byTime.feed(PDU, 0);
    assert.deepEqual(byTime.expire(500), []);
    assert.equal(byTime.expire(1500).length, 1);

    const flushed = new SightingCorrelator('auto');
    flushed.feed(PDU, 0);
    assert.equal(flushed.flush().length, 1);
    assert.equal(flushed.waiting, 0);
  });

  it('counts lines, the ones that do not parse, and sightings', () => {
    const c = new SightingCorrelator('auto');
    for (const line of [PDU, 'Traceback (most recent call last):', '', RECEIPT, 'garbage', ACCESS]) c.feed(line, 0);
    assert.deepEqual(c.counters, { lines: 5, parsed: 3, unparsed: 2, sightings: 2 });
  });
});
