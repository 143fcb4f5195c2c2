// The linked-accounts tables: local link groups, receipts and echoes, pending invites, activity,
// counters; and the linked_accounts config section.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/config/config.ts';
import { LinkedStore } from '../../src/linked/store.ts';
import { openDatabase } from '../../src/store/database.ts';

describe('LinkedStore', () => {
  it('groups local links into connected components and unlinks pairs', () => {
    const store = new LinkedStore(openDatabase(':memory:'));
    assert.equal(store.addLinks([['@a:x', '@b:y'], ['@a:x', '@c:z']], '@admin:x'), 2);
    assert.equal(store.addLinks([['@b:y', '@a:x']], '@admin:x'), 0, 'the same pair either way round');
    store.addLinks([['@c:z', '@d:w']], null);
    assert.deepEqual(store.localComponent('@b:y').members.sort(), ['@a:x', '@c:z', '@d:w']);
    assert.equal(store.localComponent('@b:y').links.length, 3);
    assert.equal(store.hasAnyLocalLink('@d:w'), true);
    assert.equal(store.hasAnyLocalLink('@e:v'), false);
    assert.equal(store.removeLink('@c:z', '@a:x'), true);
    assert.deepEqual(store.localComponent('@a:x').members, ['@b:y']);
    assert.deepEqual(store.localComponent('@d:w').members, ['@c:z']);
    assert.equal(store.removeLink('@a:x', '@d:w'), false);
    assert.deepEqual(store.locallyLinkedUsers().sort(), ['@a:x', '@b:y', '@c:z', '@d:w']);
  });

  it('remembers every receipt event of a user and which ones Steward sent', () => {
    const store = new LinkedStore(openDatabase(':memory:'));
    store.noteReceipt('!r', '@a:x', 'm.read', '', '$1', 10);
    store.noteReceipt('!r', '@a:x', 'm.read', '', '$2', 20);
    assert.equal(store.hasReceiptAt('!r', '@a:x', 'm.read', '$1'), true, 'an older one still counts as "was there"');
    assert.equal(store.hasReceiptAt('!r', '@a:x', 'm.read.private', '$1'), false);
    assert.equal(store.wasSentBySteward('!r', '@a:x', 'm.read', '$2', undefined), false);
    store.noteSentReceipt('!r', '@a:x', 'm.read', '$2', '');
    store.noteSentReceipt('!r', '@b:y', 'm.read', '$3', '$root');
    assert.equal(store.wasSentBySteward('!r', '@a:x', 'm.read', '$2', undefined), true);
    assert.equal(store.wasSentBySteward('!r', '@b:y', 'm.read', '$3', undefined), true, 'any thread when the echo does not say');
    assert.equal(store.wasSentBySteward('!r', '@b:y', 'm.read', '$3', ''), false, 'not the unthreaded one');
    assert.equal(store.wasSentBySteward('!r', '@b:y', 'm.read', '$3', '$root'), true);
  });

  it('forgets receipts after a week, activity beyond the newest 5000, and keeps counters', () => {
    let now = 1_000_000_000;
    const store = new LinkedStore(openDatabase(':memory:'), () => now);
    store.noteReceipt('!r', '@a:x', 'm.read', '', '$old', 1);
    for (let i = 0; i < 5100; i++) store.record({ action: 'receipt', outcome: 'ok', target: `@t${i}:x` });
    now += 8 * 24 * 3600 * 1000;
    store.prune();
    assert.equal(store.hasReceiptAt('!r', '@a:x', 'm.read', '$old'), false);
    const last = store.activity(10);
    assert.equal(last.length, 10);
    assert.equal(last.at(-1)!.target, '@t5099:x', 'newest last');
    assert.equal(store.activity(10_000).length, 5000);
    store.bump('x');
    store.bump('x', 2);
    assert.deepEqual(store.counters(), { x: 3 });
  });

  it('keeps pending invites until taken once', () => {
    const store = new LinkedStore(openDatabase(':memory:'));
    store.addPendingInvite('!r', '@a:x', 'created the room');
    assert.equal(store.takePendingInvite('!r', '@a:x'), 'created the room');
    assert.equal(store.takePendingInvite('!r', '@a:x'), undefined);
  });

  it('remembers directory answers and finds this server\'s users in them', () => {
    const store = new LinkedStore(openDatabase(':memory:'));
    store.saveDirectoryAnswer('@a:remote.test', ['@a:here.test', '@a:other.test']);
    store.saveDirectoryAnswer('@b:here.test', ['@b:remote.test']);
    store.saveDirectoryAnswer('@c:here.test', []);
    assert.deepEqual(store.directoryUsersOn('here.test', 10).sort(), ['@a:here.test', '@b:here.test']);
    assert.deepEqual(store.directoryAnswer('@b:here.test')?.members, ['@b:remote.test']);
    assert.equal(store.directoryAnswer('@c:here.test'), undefined);
  });
});

describe('linked_accounts config', () => {
  const base = { homeserver: { url: 'http://127.0.0.1:8008', server_name: 'example.org' }, admin_room: { admins: ['@admin:example.org'] } };

  it('is off by default, with auto_join on and reinvite_left off', () => {
    const r = parseConfig(base, '/srv');
    assert.ok(r.ok);
    assert.deepEqual(r.value.linkedAccounts, { enabled: false, directory: undefined, autoJoin: true, reinviteLeft: false, catchUp: { maxUsers: 200, maxRoomsPerUser: 200 } });
  });

  it('reads the directory settings', () => {
    const r = parseConfig({ ...base, linked_accounts: { enabled: true, auto_join: false, directory: { url: 'https://dir.example.org/links?mxid={mxid}', timeout_ms: 2500, cache_seconds: 600, negative_cache_seconds: 30, address_allowlist: ['10.0.0.0/8'] } } }, '/srv');
    assert.ok(r.ok);
    assert.deepEqual(r.value.linkedAccounts.directory, { urlTemplate: 'https://dir.example.org/links?mxid={mxid}', timeoutMs: 2500, cacheSeconds: 600, negativeCacheSeconds: 30, addressAllowlist: ['10.0.0.0/8'] });
    assert.equal(r.value.linkedAccounts.autoJoin, false);
  });

  it('names the bad keys', () => {
    const r = parseConfig({ ...base, linked_accounts: { enabled: 'yes', auto_joins: true, directory: { url: 'https://dir.example.org/links', timeout_ms: 10, address_allowlist: ['nope'] } } }, '/srv');
    assert.equal(r.ok, false);
    if (r.ok) return;
    const text = r.error.human;
    assert.match(text, /linked_accounts\.enabled: expected true or false/);
    assert.match(text, /linked_accounts\.auto_joins: unknown key \(did you mean 'auto_join'\?\)/);
    assert.match(text, /linked_accounts\.directory\.url: must contain \{mxid\}/);
    assert.match(text, /linked_accounts\.directory\.timeout_ms: expected a whole number from 100/);
    assert.match(text, /linked_accounts\.directory\.address_allowlist\[0\]: expected a CIDR/);
  });
});
