import { errorMessage, fail, ok } from "../util/result.ts";
import type { Result } from "../util/result.ts";
import { decodeBase64, encodeBase64 } from "./base64.ts";
import { CanonicalJsonError, canonicalJsonBytes } from "./canonical-json.ts";
import { PUBLIC_KEY_BYTES, SIGNATURE_BYTES, signDetached, verifyDetached } from "./ed25519.ts";
import { isJsonObject } from "./json-object.ts";
import type { JsonObject } from "./json-object.ts";
import type { SigningKey } from "./signing-key.ts";

/** `signatures` as it appears on signed JSON: server name → key id → unpadded base64. */
export type Signatures = Record<string, Record<string, string>>;

/**
 * The bytes a signature covers: the object without `signatures` and `unsigned`, which
 * other servers may add to in transit.
 * @throws CanonicalJsonError when the object has no canonical JSON form.
 */
export function signedBytes(obj: JsonObject): Buffer {
  const { signatures: _signatures, unsigned: _unsigned, ...rest } = obj;
  return canonicalJsonBytes(rest);
}

/**
 * The detached signature of `obj` by `key`, unpadded standard base64.
 * @throws CanonicalJsonError when the object has no canonical JSON form.
 */
export function signatureOf(obj: JsonObject, key: SigningKey): string {
  return encodeBase64(signDetached(signedBytes(obj), key.privateKey));
}

/**
 * A copy of `obj` carrying `signatures[serverName][key.keyId]`, keeping any signatures
 * already present (from other servers or other keys) and `unsigned` untouched.
 * @throws CanonicalJsonError when the object has no canonical JSON form.
 */
export function signJson<T extends JsonObject>(obj: T, serverName: string, key: SigningKey): T & { signatures: Signatures } {
  const signature = signatureOf(obj, key);
  const signatures = copySignatures(obj["signatures"]);
  signatures[serverName] = { ...signatures[serverName], [key.keyId]: signature };
  return { ...obj, signatures };
}

function copySignatures(value: unknown): Signatures {
  const copy: Signatures = {};
  if (!isJsonObject(value)) return copy;
  for (const [server, byKey] of Object.entries(value)) {
    if (isJsonObject(byKey)) copy[server] = { ...(byKey as Record<string, string>) };
  }
  return copy;
}

/**
 * Checks one signature (spec appendix "Checking for a Signature"). Failures:
 * E_MISSING_SIGNATURE (no such signature), E_BAD_SIGNATURE (undecodable or wrong),
 * E_BAD_JSON (object has no canonical form), E_BAD_KEY (public key not 32 bytes).
 */
export function verifyJsonSignature(obj: JsonObject, serverName: string, keyId: string, publicKey: Uint8Array): Result<void> {
  const signatures = obj["signatures"];
  const byServer = isJsonObject(signatures) ? signatures[serverName] : undefined;
  const signature = isJsonObject(byServer) ? byServer[keyId] : undefined;
  if (typeof signature !== "string") {
    return fail("E_MISSING_SIGNATURE", `Not signed by ${serverName} with key ${keyId}.`);
  }
  if (publicKey.length !== PUBLIC_KEY_BYTES) {
    return fail("E_BAD_KEY", `The public key for ${serverName} ${keyId} is not a valid ed25519 key.`);
  }
  const signatureBytes = decodeBase64(signature);
  if (!signatureBytes.ok || signatureBytes.value.length !== SIGNATURE_BYTES) {
    return fail("E_BAD_SIGNATURE", `The signature by ${serverName} with key ${keyId} is malformed.`);
  }
  let message: Buffer;
  try {
    message = signedBytes(obj);
  } catch (err) {
    if (!(err instanceof CanonicalJsonError)) throw err;
    return fail("E_BAD_JSON", "The signed JSON is not valid canonical JSON.", `not canonical JSON: ${errorMessage(err)}`);
  }
  if (!verifyDetached(message, signatureBytes.value, publicKey)) {
    return fail("E_BAD_SIGNATURE", `The signature by ${serverName} with key ${keyId} does not match.`);
  }
  return ok(undefined);
}
