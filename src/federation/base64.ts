import { fail, ok } from "../util/result.ts";
import type { Result } from "../util/result.ts";

/** Unpadded standard base64, the encoding of every key, signature and hash in Matrix. */
export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64").replace(/=+$/, "");
}

/** Unpadded URL-safe base64, used for event ids from room version 4 on. */
export function encodeBase64UrlSafe(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64url");
}

const BASE64_BODY = /^[A-Za-z0-9+/_-]*$/;

/**
 * Accepts padded or unpadded input in either alphabet, as the spec asks decoders to.
 * Non-zero trailing bits are tolerated (the spec's own test seed has them, and Python's
 * decoder, which Synapse uses, accepts them), but anything outside the alphabets is not:
 * Node's decoder would silently skip such characters.
 */
export function decodeBase64(text: string): Result<Uint8Array> {
  const body = text.replace(/={1,2}$/, "");
  const padded = body.length !== text.length;
  if (!BASE64_BODY.test(body) || body.length % 4 === 1 || (padded && text.length % 4 !== 0)) {
    return fail("E_BAD_BASE64", "Not valid base64.", `not valid base64 (length ${text.length})`);
  }
  return ok(new Uint8Array(Buffer.from(body.replace(/-/g, "+").replace(/_/g, "/"), "base64")));
}
