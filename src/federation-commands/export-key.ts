import { randomBytes } from 'node:crypto';
import { link, lstat, mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { encodeBase64 } from '../federation/base64.ts';
import { parseSigningKeys, type SigningKey } from '../federation/signing-key.ts';
import { errorMessage, fail, ok, type Result } from '../util/result.ts';

export interface ExportedKey {
  readonly keyId: string;
  /** Unpadded base64, as Synapse publishes it in /_matrix/key/v2/server. */
  readonly publicKey: string;
}

export interface ExportOutcome {
  readonly out: string;
  readonly keys: readonly ExportedKey[];
  /** About the source file, e.g. readable by other users. */
  readonly warnings: readonly string[];
}

/** Synapse's key file format: one `ed25519 <version> <unpadded base64 seed>` line per key. */
export function keyFileText(keys: readonly SigningKey[]): string {
  return keys.map((k) => `ed25519 ${k.keyId.slice('ed25519:'.length)} ${encodeBase64(k.seed)}\n`).join('');
}

/**
 * Copies Synapse's signing key file (every key in it, the one Synapse signs with first) to
 * `out` in Synapse's own format: checked to parse before and after, written 0600 through a
 * temporary file, and never over an existing file. Messages carry key ids and public keys only.
 */
export async function exportSigningKey(source: string, out: string): Promise<Result<ExportOutcome>> {
  const warnings: string[] = [];
  let text: string;
  try {
    const st = await lstat(source);
    if (!st.isFile()) return fail('E_SIGNING_KEY_UNREADABLE', `Signing key path ${source} is not a regular file.`);
    if ((st.mode & 0o077) !== 0) {
      warnings.push(`The source ${source} has mode ${(st.mode & 0o777).toString(8)}: other users can read it. Restrict it (chmod 600).`);
    }
    text = await readFile(source, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return fail('E_SIGNING_KEY_MISSING', `Signing key file ${source} does not exist.`);
    if (code === 'EACCES' || code === 'EPERM') return fail('E_SIGNING_KEY_UNREADABLE', `No permission to read the signing key file ${source}.`);
    return fail('E_SIGNING_KEY_UNREADABLE', `Cannot read the signing key file ${source}.`, `cannot read ${source}: ${errorMessage(err)}`);
  }
  const keys = parseSigningKeys(text);
  if (!keys.ok) return fail(keys.error.code, `${keys.error.human} (${source}); nothing written.`);

  const exists = await lstat(out).then(() => true, (err: NodeJS.ErrnoException) => err.code !== 'ENOENT');
  if (exists) return fail('E_EXISTS', `${out} already exists: refusing to overwrite it. Choose another --out or remove it first.`);

  const data = keyFileText(keys.value);
  const written = await writeNewFile(out, data);
  if (!written.ok) return written;

  // What is on disk must read back as the same keys.
  const back = parseSigningKeys(await readFile(out, 'utf8'));
  const same = back.ok && back.value.length === keys.value.length && back.value.every((k, i) => k.keyId === keys.value[i]!.keyId && encodeBase64(k.publicKey) === encodeBase64(keys.value[i]!.publicKey));
  if (!same) {
    await rm(out, { force: true });
    return fail('E_EXPORT_CHECK', `${out} did not read back as the same key; it was removed.`);
  }
  return ok({ out, keys: keys.value.map((k) => ({ keyId: k.keyId, publicKey: encodeBase64(k.publicKey) })), warnings });
}

/**
 * Writes a file that must not exist yet: temp file (0600, flushed) in the target's folder,
 * then a hard link to the target, which fails if the target appeared meanwhile. Where hard
 * links are not supported, a rename after a last check.
 */
async function writeNewFile(target: string, data: string): Promise<Result<void>> {
  const dir = dirname(target);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    return fail('E_WRITE', `Cannot create the folder ${dir}.`, `mkdir ${dir}: ${errorMessage(err)}`);
  }
  const temp = join(dir, `.steward-key-${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await link(temp, target);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return fail('E_EXISTS', `${target} already exists: refusing to overwrite it.`);
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EXDEV') throw err;
      const appeared = await lstat(target).then(() => true, () => false);
      if (appeared) return fail('E_EXISTS', `${target} already exists: refusing to overwrite it.`);
      await rename(temp, target);
    }
    return ok(undefined);
  } catch (err) {
    return fail('E_WRITE', `Cannot write ${target}.`, `writing ${target}: ${errorMessage(err)}`);
  } finally {
    await rm(temp, { force: true });
  }
}
