import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { authEventIds, checkAuthChainClosure, compareWithCurrentState, stateAfter } from '../../src/dump/room-auth-chain.ts';
import type { DumpedEvent } from '../../src/dump/room-auth-chain.ts';
import { latestExtremity } from '../../src/dump/dump-rooms.ts';
import { version } from './federation-test-key.ts';

const ev = (event_id: string, pdu: Record<string, unknown>): DumpedEvent => ({ event_id, pdu });

describe('room auth chain helpers', () => {
  it('reads auth event ids in both formats: [id, hashes] pairs (v1–2) and strings (v3+)', () => {
    assert.deepEqual(authEventIds({ auth_events: [['$a:hs', { sha256: 'x' }], ['$b:hs', {}]] }), ['$a:hs', '$b:hs']);
    assert.deepEqual(authEventIds({ auth_events: ['$a', '$b'] }), ['$a', '$b']);
    assert.deepEqual(authEventIds({}), []);
  });

  it('closes when every auth event is present, and names the ones that are not', () => {
    const events = [ev('$c:hs', { auth_events: [] }), ev('$j:hs', { auth_events: [['$c:hs', {}]] }), ev('$p:hs', { auth_events: [['$c:hs', {}], ['$j:hs', {}], ['$gone:hs', {}]] })];
    assert.deepEqual(checkAuthChainClosure(events.slice(0, 2), '!r:hs', version('1')), { closed: true, missing: [], missingCount: 0 });
    assert.deepEqual(checkAuthChainClosure(events, '!r:hs', version('1')), { closed: false, missing: ['$gone:hs'], missingCount: 1 });
  });

  it('from v12 requires the create event, which no event lists', () => {
    const roomId = '!CREATEHASH';
    const create = ev('$CREATEHASH', { type: 'm.room.create', state_key: '', auth_events: [] });
    const join = ev('$join', { auth_events: [] });
    assert.deepEqual(checkAuthChainClosure([join], roomId, version('12')), { closed: false, missing: ['$CREATEHASH'], missingCount: 1 });
    assert.equal(checkAuthChainClosure([create, join], roomId, version('12')).closed, true);
    // Before v12 the same shape needs nothing more.
    assert.equal(checkAuthChainClosure([join], '!r:hs', version('11')).closed, true);
  });

  it('applies a state event the state is at, and compares with the current state by event id', () => {
    const state = [ev('$1', { type: 'm.room.create', state_key: '' }), ev('$2', { type: 'm.room.topic', state_key: '' })];
    const after = stateAfter(state, ev('$3', { type: 'm.room.topic', state_key: '' }));
    assert.deepEqual([...after.values()].map((e) => e.event_id), ['$1', '$3']);
    const current = [{ type: 'm.room.create', state_key: '', event_id: '$1' }, { type: 'm.room.topic', state_key: '', event_id: '$3' }];
    assert.equal(compareWithCurrentState(after, current).matches, true);
    const differs = compareWithCurrentState(stateAfter(state, ev('$m', { type: 'm.room.message' })), current);
    assert.equal(differs.matches, false);
    assert.deepEqual(differs.onlyInCurrentState.map((e) => e.event_id), ['$3']);
    assert.deepEqual(differs.onlyInFederation.map((e) => e.event_id), ['$2']);
  });

  it('takes the deepest forward extremity as the latest event', () => {
    assert.equal(latestExtremity([{ event_id: '$a', depth: 5 }, { event_id: '$b', depth: 9 }, { event_id: '$c', depth: 7 }])?.event_id, '$b');
    assert.equal(latestExtremity([{ event_id: '$a', depth: 5, received_ts: 1 }, { event_id: '$b', depth: 5, received_ts: 2 }])?.event_id, '$b');
    assert.equal(latestExtremity([]), undefined);
  });
});
