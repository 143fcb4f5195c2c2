import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ALL_COMMANDS } from '../../src/commands/all-commands.ts';
import type { CommandContext } from '../../src/commands/context.ts';
import { dispatch } from '../../src/commands/dispatch.ts';
import { parseConfig } from '../../src/config/config.ts';
import { exportKeyCommand } from '../../src/federation-commands/fed-commands.ts';
import { exportSigningKey } from '../../src/federation-commands/export-key.ts';
import { encodeBase64, signingKeyFromSeed } from '../../src/federation/index.ts';
import { unwrap } from './federation-test-key.ts';

const SEED = new Uint8Array(32).map((_, i) => i * 7 + 3);
const SEED_B64 = encodeBase64(SEED);
const key = unwrap(signingKeyFromSeed('a_Xy9', SEED));
const PUBLIC = encodeBase64(key.publicKey);
const SECOND_SEED_B64 = encodeBase64(new Uint8Array(32).fill(5));

describe('export-key', () => {
  let dir: string;
  let source: string;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'steward-export-key-'));
    source = path.join(dir, 'homeserver.signing.key');
    await writeFile(source, `ed25519 a_Xy9 ${SEED_B64}\n`, { mode: 0o600 });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  function ctx(frontEnd: 'room' | 'terminal', signingKeyPath: string | null = source): CommandContext {
    const config = unwrap(parseConfig({
      homeserver: { url: 'http://127.0.0.1:8008', server_name: 'example.org' },
      admin_room: { admins: ['@admin:example.org'] },
      ...(signingKeyPath ? { federation: { signing_key_path: signingKeyPath } } : {}),
    }, dir));
    return { frontEnd, sender: '@admin:example.org', roomId: '!admin:example.org', commandEventId: '$cmd', config, commands: ALL_COMMANDS } as unknown as CommandContext;
  }

  it('writes Synapse\'s key-file format, 0600, and prints key id and public key but never the seed', async () => {
    const out = path.join(dir, 'bundle', 'nested', 'signing.key');
    const reply = unwrap(await dispatch(`export-key --out ${out}`, ctx('terminal')));
    assert.equal(reply.kind, 'reply');
    if (reply.kind !== 'reply') return;
    assert.equal(await readFile(out, 'utf8'), `ed25519 a_Xy9 ${SEED_B64}\n`);
    assert.equal((await stat(out)).mode & 0o777, 0o600);
    assert.equal((await stat(path.dirname(out))).mode & 0o777, 0o700);
    assert.match(reply.text, new RegExp(`ed25519:a_Xy9 {2}public key ${PUBLIC.replace(/[+/]/g, '\\$&')}`));
    assert.match(reply.text, /WARNING: this file is example\.org's private key/);
    assert.ok(!reply.text.includes(SEED_B64) && !reply.html.includes(SEED_B64));
    // No temporary file left behind.
    assert.deepEqual(await readdir(path.dirname(out)), ['signing.key']);
  });

  it('refuses to overwrite an existing file and leaves it untouched', async () => {
    const out = path.join(dir, 'existing.key');
    await writeFile(out, 'precious\n');
    const r = await dispatch(`export-key --out ${out}`, ctx('terminal'));
    assert.ok(!r.ok);
    assert.equal(r.error.code, 'E_EXISTS');
    assert.equal(await readFile(out, 'utf8'), 'precious\n');
    const direct = await exportSigningKey(source, out);
    assert.equal(direct.ok ? 'ok' : direct.error.code, 'E_EXISTS');
  });

  it('keeps every key of the file in order, and warns about a source readable by others', async () => {
    const multi = path.join(dir, 'multi.key');
    await writeFile(multi, `ed25519 a_Xy9 ${SEED_B64}\n\ned25519 a_old ${SECOND_SEED_B64}\n`);
    await chmod(multi, 0o644);
    const out = path.join(dir, 'multi-out.key');
    const done = unwrap(await exportSigningKey(multi, out));
    assert.equal(await readFile(out, 'utf8'), `ed25519 a_Xy9 ${SEED_B64}\ned25519 a_old ${SECOND_SEED_B64}\n`);
    assert.deepEqual(done.keys.map((k) => k.keyId), ['ed25519:a_Xy9', 'ed25519:a_old']);
    assert.match(done.warnings.join('\n'), /mode 644: other users can read it/);
  });

  it('refuses a malformed or missing source without echoing it, and without writing anything', async () => {
    const bad = path.join(dir, 'bad.key');
    await writeFile(bad, `ed25519 a_Xy9 ${SEED_B64}!!\n`);
    const out = path.join(dir, 'never.key');
    const r = await exportSigningKey(bad, out);
    assert.ok(!r.ok);
    assert.equal(r.error.code, 'E_SIGNING_KEY_MALFORMED');
    assert.ok(!r.error.human.includes(SEED_B64) && !r.error.log.includes(SEED_B64));
    await assert.rejects(stat(out));
    const missing = await exportSigningKey(path.join(dir, 'nope.key'), out);
    assert.equal(missing.ok ? 'ok' : missing.error.code, 'E_SIGNING_KEY_MISSING');
    const unset = await dispatch(`export-key --out ${out}`, ctx('terminal', null));
    assert.equal(unset.ok ? 'ok' : unset.error.code, 'E_NO_SIGNING_KEY');
    const noOut = await dispatch('export-key', ctx('terminal'));
    assert.equal(noOut.ok ? 'ok' : noOut.error.code, 'E_USAGE');
    await assert.rejects(stat(out));
  });

  it('never runs in a room: refused before it reads anything, and the refusal carries no key material', async () => {
    const out = path.join(dir, 'from-room.key');
    const r = await dispatch(`export-key --out ${out}`, ctx('room'));
    assert.ok(!r.ok);
    assert.equal(r.error.code, 'E_WRONG_FRONT_END');
    assert.match(r.error.human, /export-key runs only in the terminal/);
    for (const secret of [SEED_B64, PUBLIC, 'a_Xy9']) assert.ok(!r.error.human.includes(secret) && !r.error.log.includes(secret));
    await assert.rejects(stat(out));
    assert.deepEqual(exportKeyCommand.frontEnds, ['terminal']);
  });
});
