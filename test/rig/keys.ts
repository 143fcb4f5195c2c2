import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** A random secret that is safe to put in YAML unquoted or quoted. */
export function randomSecret(bytes = 24): string {
  return randomBytes(bytes).toString('hex');
}

/**
 * Writes a Synapse signing key file: one line `ed25519 <key version> <seed>`, the
 * seed unpadded standard base64 — the format Synapse's `--generate-keys` writes.
 * Done here rather than through Python because it saves a second interpreter start
 * per server.
 */
export async function writeSigningKey(file: string): Promise<string> {
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  if (typeof jwk.d !== 'string') throw new Error('ed25519 JWK export has no private part');
  const seed = Buffer.from(jwk.d, 'base64url').toString('base64').replace(/=+$/, '');
  const version = `a_${randomBytes(3).toString('base64url').replace(/[^A-Za-z0-9]/g, 'x').slice(0, 4)}`;
  await writeFile(file, `ed25519 ${version} ${seed}\n`, { mode: 0o600 });
  return `ed25519:${version}`;
}

/** A self-signed certificate for "localhost"; peers are told not to verify it anyway. */
export async function writeSelfSignedCert(certPath: string, keyPath: string): Promise<void> {
  try {
    await execFileAsync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30',
      '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1',
      '-keyout', keyPath, '-out', certPath,
    ]);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(`openssl could not make a self-signed certificate: ${stderr || String(err)}`);
  }
}
