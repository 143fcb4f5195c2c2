// The checks restore users makes before it writes anything: the dump as a whole (manifest) and each
// user file (checksum, JSON, format version, shape), and the password-hash file.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openUserDump, parseUserDocument, readPasswordHashes, readUserFile } from '../../src/restore/user-dump-reader.ts';
import { stableJson } from '../../src/restore/user-restore-sections.ts';

const SERVER = 'example.org';
const fileFor = (u: string): string => `${encodeURIComponent(u)}.json`;
const sha = (text: string): string => createHash('sha256').update(text).digest('hex');

function userDoc(userId: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    format: 'steward.user-dump/1',
    user_id: userId,
    dumped_ts: 1,
    profile: { displayname: 'Alice', avatar_url: 'mxc://example.org/abc', avatar_media: { sha256: 'a'.repeat(64), media_type: 'image/png', upload_name: 'a.png', media_length: 3 } },
    account: { admin: false, deactivated: false, locked: false, user_type: null, threepids: [{ medium: 'email', address: 'a@example.org', added_at: 1 }], external_ids: [] },
    account_data: { global: { 'org.example': { a: 1 } }, rooms: { '!r:example.org': { 'org.example.r': { b: 2 } } } },
    devices: [{ device_id: 'DEV', display_name: null, last_seen_ts: 5 }],
    pushers: [{ kind: 'http', app_id: 'app', pushkey: 'key', data: {} }],
    push_rules: { global: { override: [{ rule_id: '.m.rule.master', default: true, enabled: false, actions: [] }], content: [], room: [], sender: [], underride: [] } },
    memberships: {},
    key_backup: { version: '3', algorithm: 'm.megolm_backup.v1.curve25519-aes-sha2', auth_data: { public_key: 'x' }, count: 1, etag: '1', rooms: { '!r:example.org': { sessions: { s: { first_message_index: 0, session_data: { ciphertext: 'c' } } } } } },
    cross_signing: { master_key: { user_id: userId, usage: ['master'], keys: { 'ed25519:K': 'K' } }, self_signing_key: null, user_signing_key: null },
    ...extra,
  };
}

describe('restore users: reading a dump', () => {
  let root: string;
  const write = async (dir: string, manifest: Record<string, unknown> | string, users: Record<string, string>, checksums = true): Promise<string> => {
    await mkdir(path.join(dir, 'users'), { recursive: true });
    const files: Record<string, string> = {};
    for (const [name, text] of Object.entries(users)) {
      await writeFile(path.join(dir, 'users', name), text);
      files[`users/${name}`] = sha(text);
    }
    const m = typeof manifest === 'string' ? manifest : JSON.stringify({ ...manifest, ...(checksums ? { checksums: { algorithm: 'sha256', files } } : {}) });
    await writeFile(path.join(dir, 'manifest.json'), m);
    return dir;
  };
  const good = { format: 'steward.dump-manifest/1', kind: 'users', state: 'complete', server_name: SERVER };
  let n = 0;
  const fresh = (): string => path.join(root, `d${++n}`);

  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'steward-restore-reader-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('refuses the whole dump when the manifest is missing, broken, unknown, of another server, unfinished or not of users', async () => {
    const cases: [Record<string, unknown> | string | null, RegExp][] = [
      [null, /is not a dump folder: cannot read its manifest\.json \(ENOENT\)/],
      ['{"format": "steward.dump-manifest/1", "kind"', /manifest\.json is not valid JSON \(truncated or edited\?\)/],
      [{ ...good, format: 'steward.dump-manifest/2' }, /format steward\.dump-manifest\/2, a version this Steward does not know \(it reads steward\.dump-manifest\/1\)/],
      [{ ...good, format: 'something-else' }, /is not a Steward steward\.dump-manifest\/1 document/],
      [{ ...good, server_name: 'other.org' }, /This dump is of the server "other\.org", not of example\.org/],
      [{ ...good, state: 'in-progress' }, /did not finish \(state "in-progress"\)/],
      [{ ...good, kind: 'rooms' }, /is a dump of "rooms", not of users/],
    ];
    for (const [manifest, expected] of cases) {
      const dir = fresh();
      if (manifest === null) await mkdir(dir, { recursive: true });
      else await write(dir, manifest, {});
      const r = await openUserDump(dir, SERVER);
      assert.equal(r.ok, false, String(expected));
      if (!r.ok) assert.match(r.error.human, expected);
    }
  });

  it('refuses a dump whose manifest lists a user file that is gone', async () => {
    const dir = await write(fresh(), good, { [fileFor('@a:example.org')]: JSON.stringify(userDoc('@a:example.org')) });
    await rm(path.join(dir, 'users', fileFor('@a:example.org')));
    const r = await openUserDump(dir, SERVER);
    assert.ok(!r.ok && /1 user file\(s\) listed in the manifest are missing/.test(r.error.human));
  });

  it('reads a whole user file into a checked document', async () => {
    const id = '@alice:example.org';
    const dir = await write(fresh(), good, { [fileFor(id)]: JSON.stringify(userDoc(id)) });
    const index = await openUserDump(dir, SERVER);
    assert.ok(index.ok);
    assert.deepEqual(index.value.files, [fileFor(id)]);
    const doc = await readUserFile(index.value, fileFor(id));
    assert.ok(doc.ok, doc.ok ? '' : doc.error.human);
    assert.equal(doc.value.userId, id);
    assert.equal(doc.value.profile.avatarSha256, 'a'.repeat(64));
    assert.deepEqual(doc.value.account.threepids, [{ medium: 'email', address: 'a@example.org' }]);
    assert.equal(doc.value.pushRules?.override[0]?.enabled, false);
    assert.deepEqual(Object.keys(doc.value.keyBackup?.rooms ?? {}), ['!r:example.org']);
    assert.deepEqual(doc.value.devices, [{ device_id: 'DEV', display_name: null }]);
  });

  it('fails a truncated or edited file by its checksum, and a file added after the dump', async () => {
    const id = '@alice:example.org';
    const text = JSON.stringify(userDoc(id));
    const dir = await write(fresh(), good, { [fileFor(id)]: text });
    const index = await openUserDump(dir, SERVER);
    assert.ok(index.ok);
    await writeFile(path.join(dir, 'users', fileFor(id)), text.slice(0, 100));
    let r = await readUserFile(index.value, fileFor(id));
    assert.ok(!r.ok && r.error.code === 'E_DUMP_CHECKSUM' && /truncated or edited after the dump/.test(r.error.human));
    await writeFile(path.join(dir, 'users', fileFor(id)), text.replace('Alice', 'Alicf'));
    r = await readUserFile(index.value, fileFor(id));
    assert.ok(!r.ok && r.error.code === 'E_DUMP_CHECKSUM');
    await writeFile(path.join(dir, 'users', fileFor('@new:example.org')), JSON.stringify(userDoc('@new:example.org')));
    r = await readUserFile(index.value, fileFor('@new:example.org'));
    assert.ok(!r.ok && /not listed in the manifest's checksums: it was added after the dump/.test(r.error.human));
  });

  it('without checksums (older dumps), still fails truncated JSON, unknown formats and mismatched files', () => {
    const id = '@alice:example.org';
    const bad = (text: string, file = fileFor(id)) => {
      const r = parseUserDocument(text, file, SERVER);
      assert.equal(r.ok, false);
      return r.ok ? '' : r.error.human;
    };
    assert.match(bad(JSON.stringify(userDoc(id)).slice(0, 50)), /is not valid JSON \(truncated or edited\?\)/);
    assert.match(bad(JSON.stringify(userDoc(id, { format: 'steward.user-dump/2' }))), /steward\.user-dump\/2, a version this Steward does not know/);
    assert.match(bad(JSON.stringify(userDoc(id)), fileFor('@bob:example.org')), /holds @alice:example\.org, whose file would be named .*renamed or edited/);
    assert.match(bad(JSON.stringify(userDoc('@alice:other.org')), fileFor('@alice:other.org')), /is not a user of example\.org/);
    assert.match(bad(JSON.stringify(userDoc(id, { account: { threepids: 'x' } }))), /account\.threepids is not a list/);
    assert.match(bad(JSON.stringify(userDoc(id, { push_rules: { global: { override: [{ actions: [] }] } } }))), /push_rules\.global\.override\[0\]\.rule_id is not a string/);
    assert.match(bad(JSON.stringify(userDoc(id, { key_backup: { version: '1', algorithm: 'a', auth_data: {}, rooms: { '!r:x': { sessions: { s: { session_data: 'x' } } } } } }))), /session_data is not an object/);
    assert.match(bad(JSON.stringify(userDoc(id, { profile: { avatar_url: 'https://example.org/a.png' } }))), /avatar_url is not an mxc URI/);
  });

  it('keeps the sections the dump could not read apart from empty ones', () => {
    const id = '@gone:example.org';
    const r = parseUserDocument(JSON.stringify(userDoc(id, { push_rules: null, key_backup: null, cross_signing: null, not_collected: { reason: 'deactivated users cannot be acted as', sections: ['push_rules', 'key_backup', 'cross_signing'] }, errors: { pushers: 'GET …: 500' } })), fileFor(id), SERVER);
    assert.ok(r.ok);
    assert.equal(r.value.pushRules, null);
    assert.match(r.value.missingSections.push_rules!, /not in the dump: deactivated users cannot be acted as/);
    assert.match(r.value.missingSections.pushers!, /not in the dump: GET …: 500/);
  });

  it('reads the password-hash file only when the manifest names one, and checks it', async () => {
    const dir = fresh();
    await write(dir, good, {});
    let index = await openUserDump(dir, SERVER);
    assert.ok(index.ok);
    assert.deepEqual(await readPasswordHashes(index.value), { ok: true, value: null });

    const hashes = JSON.stringify({ format: 'steward.password-hashes/1', server_name: SERVER, hashes: { '@a:example.org': '$2b$04$x', '@sso:example.org': null } });
    await writeFile(path.join(dir, 'password-hashes.json'), hashes);
    await writeFile(path.join(dir, 'manifest.json'), JSON.stringify({ ...good, password_hashes: { file: 'password-hashes.json' }, checksums: { algorithm: 'sha256', files: { 'password-hashes.json': sha(hashes) } } }));
    index = await openUserDump(dir, SERVER);
    assert.ok(index.ok);
    const read = await readPasswordHashes(index.value);
    assert.ok(read.ok && read.value);
    assert.equal(read.value.get('@a:example.org'), '$2b$04$x');
    assert.equal(read.value.get('@sso:example.org'), null);

    await writeFile(path.join(dir, 'password-hashes.json'), hashes.replace('$x', '$y'));
    const edited = await readPasswordHashes(index.value);
    assert.ok(!edited.ok && /password-hashes\.json does not match its checksum/.test(edited.error.human));
  });

  it('compares values regardless of key order', () => {
    assert.equal(stableJson({ b: [1, { y: 2, x: 1 }], a: null }), stableJson({ a: null, b: [1, { x: 1, y: 2 }] }));
    assert.notEqual(stableJson({ a: [1, 2] }), stableJson({ a: [2, 1] }));
  });
});
