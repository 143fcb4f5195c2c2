// What restore keeps in Steward's database between runs: per-step outcomes of a recreated room and
// the read markers restore users hands to restore rooms. On a real (in-memory) Steward database,
// migrated like any other.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { openDatabase } from '../../src/store/database.ts';
import { RestoredRoomStore } from '../../src/restore/room-store.ts';

describe('restored room store', () => {
  it('remembers which steps failed, and forgets a failure once the step is done', () => {
    const db = openDatabase(':memory:');
    try {
      const store = new RestoredRoomStore(db);
      store.set({ oldRoomId: '!old:a', kind: 'recreate', newRoomId: '!new:a', phase: 'finished', actingUser: '@alice:a' });
      store.setStep('!old:a', 'members', ['@bob:a does not exist here now: not joined']);
      store.setStep('!old:a', 'directory', []);
      store.setStep('!old:a', 'aliases', ['alias #x:a is taken (it points to !other:a): left as it is']);
      assert.deepEqual(store.failedSteps('!old:a').map((s) => s.step), ['aliases', 'members'], 'in the order they run');
      assert.deepEqual(store.failedSteps('!old:a')[0]!.problems, ['alias #x:a is taken (it points to !other:a): left as it is']);
      store.setStep('!old:a', 'aliases', []);
      assert.deepEqual(store.failedSteps('!old:a').map((s) => s.step), ['members']);
      assert.throws(() => store.setStep('!never:a', 'aliases', []), /FOREIGN KEY/, 'steps belong to a room restore has recorded');
    } finally {
      db.close();
    }
  });

  it('keeps a read marker\'s state when restore users records the same event again, and sets it again for another event', () => {
    const db = openDatabase(':memory:');
    try {
      const store = new RestoredRoomStore(db);
      store.recordMarker('@alice:a', '!r:a', '$one');
      assert.deepEqual(store.markersToSet('!r:a').map((m) => [m.userId, m.eventId, m.state]), [['@alice:a', '$one', 'pending']]);
      store.setMarker({ userId: '@alice:a', oldRoomId: '!r:a' }, 'set', null);
      store.recordMarker('@alice:a', '!r:a', '$one');
      assert.deepEqual(store.markersToSet('!r:a'), [], 'a re-run of restore users does not undo a set marker');
      store.recordMarker('@alice:a', '!r:a', '$two');
      assert.deepEqual(store.markersToSet('!r:a').map((m) => [m.eventId, m.state]), [['$two', 'pending']], 'a newer dump moves it');
      store.recordMarker('@alice:a', '!r:a', '$from-account-data', { keepExisting: true });
      assert.equal(store.markersToSet('!r:a')[0]!.eventId, '$two', 'what the room\'s old account data says never overrides the dump');

      store.setMarker({ userId: '@alice:a', oldRoomId: '!r:a' }, 'lost', 'the event it marks ($two) was not re-posted');
      store.recordMarker('@bob:a', '!r:a', '$three');
      store.setMarker({ userId: '@bob:a', oldRoomId: '!r:a' }, 'failed', 'not known here');
      store.recordMarker('@carol:a', '!elsewhere:a', '$four');
      assert.deepEqual(store.markersToSet('!r:a').map((m) => m.userId), ['@bob:a'], 'failed ones are tried again, lost ones not');
      assert.deepEqual(store.markersNotSet(['!r:a']).map((m) => [m.userId, m.state, m.detail]), [['@alice:a', 'lost', 'the event it marks ($two) was not re-posted'], ['@bob:a', 'failed', 'not known here']]);
    } finally {
      db.close();
    }
  });
});
