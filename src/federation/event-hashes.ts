import { createHash } from "node:crypto";
import { errorMessage, fail, ok } from "../util/result.ts";
import type { Result } from "../util/result.ts";
import { decodeBase64, encodeBase64, encodeBase64UrlSafe } from "./base64.ts";
import { CanonicalJsonError, canonicalJsonBytes } from "./canonical-json.ts";
import { isJsonObject } from "./json-object.ts";
import type { JsonObject } from "./json-object.ts";
import { redactEvent } from "./redaction.ts";
import type { RoomVersion } from "./room-versions.ts";

function sha256(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(bytes).digest());
}

function without(event: JsonObject, keys: readonly string[]): JsonObject {
  const copy = { ...event };
  for (const key of keys) delete copy[key];
  return copy;
}

const NOT_HASHED = ["unsigned", "signatures", "hashes"];

/**
 * Top-level keys Synapse additionally leaves out of the content hash: legacy or internal
 * fields that may linger on very old events it serves.
 */
const SYNAPSE_ALSO_NOT_HASHED = ["age_ts", "outlier", "destinations"];

/**
 * The content hash (spec "Calculating the content hash"): sha256 over the full event
 * minus `unsigned`, `signatures` and `hashes`, as unpadded base64 — the value that
 * belongs in `hashes.sha256`.
 * @throws CanonicalJsonError when the event has no canonical JSON form.
 */
export function contentHash(event: JsonObject): string {
  return encodeBase64(sha256(canonicalJsonBytes(without(event, NOT_HASHED))));
}

/**
 * Whether `hashes.sha256` matches the event. A missing or undecodable hash does not
 * match. The spec's hash is tried first; Synapse's variant (see SYNAPSE_ALSO_NOT_HASHED)
 * only when such keys are present, since they carry no meaning either way.
 * @throws CanonicalJsonError when the event has no canonical JSON form.
 */
export function checkContentHash(event: JsonObject): boolean {
  const hashes = event["hashes"];
  const claimed = isJsonObject(hashes) ? hashes["sha256"] : undefined;
  if (typeof claimed !== "string") return false;
  const decoded = decodeBase64(claimed);
  if (!decoded.ok) return false;
  const expected = encodeBase64(decoded.value);
  if (contentHash(event) === expected) return true;
  if (!SYNAPSE_ALSO_NOT_HASHED.some((key) => Object.hasOwn(event, key))) return false;
  return contentHash(without(event, SYNAPSE_ALSO_NOT_HASHED)) === expected;
}

/**
 * The reference hash (spec "Calculating the reference hash"): sha256 over the redacted
 * event without `signatures` and `unsigned`. Redaction already drops `unsigned` and any
 * top-level `age_ts`, so neither ever influences it.
 * @throws CanonicalJsonError when the event has no canonical JSON form.
 */
export function referenceHash(event: JsonObject, version: RoomVersion): Uint8Array {
  return sha256(canonicalJsonBytes(without(redactEvent(event, version), ["signatures", "unsigned"])));
}

/**
 * The id of an event in a room version whose ids are reference hashes (v3+). Failures:
 * E_UNSUPPORTED_ROOM_VERSION for v1–2 (their ids are the `event_id` field), and
 * E_MALFORMED_EVENT when the event has no canonical JSON form.
 */
export function computeEventId(event: JsonObject, version: RoomVersion): Result<string> {
  if (version.eventIdFormat === "server-generated") {
    return fail(
      "E_UNSUPPORTED_ROOM_VERSION",
      `Event ids in room version ${version.id} are chosen by the server, not computed; read event_id.`,
    );
  }
  let hash: Uint8Array;
  try {
    hash = referenceHash(event, version);
  } catch (err) {
    if (!(err instanceof CanonicalJsonError)) throw err;
    return fail("E_MALFORMED_EVENT", "The event is not valid canonical JSON.", `event is not canonical JSON: ${errorMessage(err)}`);
  }
  const encoded = version.eventIdFormat === "reference-hash" ? encodeBase64(hash) : encodeBase64UrlSafe(hash);
  return ok(`$${encoded}`);
}

/**
 * The id of the room a create event creates, for room versions whose room ids are the
 * create event's hash (v12+): its event id with `!` for `$`. Earlier versions name the
 * room in the create event's `room_id`.
 */
export function roomIdOfCreateEvent(createEvent: JsonObject, version: RoomVersion): Result<string> {
  if (!version.roomIdIsCreateEventHash) {
    const roomId = createEvent["room_id"];
    if (typeof roomId !== "string") return fail("E_MALFORMED_EVENT", "The create event has no room_id.");
    return ok(roomId);
  }
  const eventId = computeEventId(createEvent, version);
  return eventId.ok ? ok(`!${eventId.value.slice(1)}`) : eventId;
}
