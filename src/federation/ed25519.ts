import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

// Ed25519 through Node's built-in crypto (OpenSSL). bench/federation measured tweetnacl at
// roughly 60x slower per verification, and verification dominates every job that checks events.
export const PUBLIC_KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;
export const SEED_BYTES = 32;

// DER prefixes that wrap a raw 32-byte seed (PKCS#8) or public key (SPKI) for Ed25519 (OID 1.3.101.112).
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export function privateKeyFromSeed(seed: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
}

export function publicKeyOf(privateKey: KeyObject): Uint8Array {
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  return new Uint8Array(spki.subarray(spki.length - PUBLIC_KEY_BYTES));
}

export function signDetached(message: Uint8Array, privateKey: KeyObject): Uint8Array {
  return new Uint8Array(sign(null, message, privateKey));
}

// A server signs with one or two keys; importing a key costs more than a verification, so keep them.
const publicKeys = new Map<string, KeyObject>();
const MAX_CACHED_KEYS = 1024;

export function verifyDetached(message: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean {
  if (publicKey.length !== PUBLIC_KEY_BYTES || signature.length !== SIGNATURE_BYTES) return false;
  const id = Buffer.from(publicKey).toString('base64');
  let key = publicKeys.get(id);
  if (!key) {
    key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' });
    if (publicKeys.size >= MAX_CACHED_KEYS) publicKeys.clear();
    publicKeys.set(id, key);
  }
  return verify(null, message, key, signature);
}
