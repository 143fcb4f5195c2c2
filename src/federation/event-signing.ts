import { contentHash } from "./event-hashes.ts";
import type { JsonObject } from "./json-object.ts";
import { redactEvent } from "./redaction.ts";
import type { RoomVersion } from "./room-versions.ts";
import { signJson } from "./signatures.ts";
import type { SigningKey } from "./signing-key.ts";

/**
 * A copy of `event` with `hashes.sha256` set and `serverName`'s signature added (spec
 * "Adding hashes and signatures to outgoing events"). The signature covers the redacted
 * event, so it survives redaction; the content hash covers the rest.
 * @throws CanonicalJsonError when the event has no canonical JSON form.
 */
export function hashAndSignEvent(event: JsonObject, version: RoomVersion, serverName: string, key: SigningKey): JsonObject {
  const hashed: JsonObject = { ...event, hashes: { sha256: contentHash(event) } };
  const { signatures } = signJson(redactEvent(hashed, version), serverName, key);
  return { ...hashed, signatures };
}
