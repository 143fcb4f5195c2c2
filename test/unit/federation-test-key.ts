// The key of the spec's "Cryptographic Test Vectors" appendix, shared by the federation tests.
import { decodeBase64, roomVersion, signingKeyFromSeed } from "../../src/federation/index.ts";
import type { RoomVersion, SigningKey } from "../../src/federation/index.ts";
import type { Result } from "../../src/util/result.ts";

export const VECTOR_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1";
export const VECTOR_SERVER = "domain";

export function unwrap<T>(result: Result<T>): T {
  if (!result.ok) throw new Error(`expected ok, got ${result.error.code}: ${result.error.log}`);
  return result.value;
}

export function vectorKey(version = "1"): SigningKey {
  return unwrap(signingKeyFromSeed(version, unwrap(decodeBase64(VECTOR_SEED))));
}

export function version(id: string): RoomVersion {
  return unwrap(roomVersion(id));
}
