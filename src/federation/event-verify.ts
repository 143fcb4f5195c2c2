import { errorMessage, fail, failure, ok } from "../util/result.ts";
import type { Failure, Result } from "../util/result.ts";
import { CanonicalJsonError } from "./canonical-json.ts";
import { checkContentHash, computeEventId } from "./event-hashes.ts";
import { isJsonObject } from "./json-object.ts";
import type { JsonObject } from "./json-object.ts";
import { redactEvent } from "./redaction.ts";
import { roomVersion } from "./room-versions.ts";
import type { RoomVersion } from "./room-versions.ts";
import { eventIdServer, senderServer } from "./server-name.ts";
import { verifyJsonSignature } from "./signatures.ts";

/**
 * The public key `serverName` published as `keyId`, valid at `atTs` (ms since the epoch;
 * 0 means "at any time", which room versions before 5 ask for). Answer a Failure with
 * code E_UNKNOWN_KEY when the server has no such key; any other Failure (a timeout, say)
 * is passed through by verifyEvent so that it stays distinguishable and retryable.
 */
export type KeyLookup = (serverName: string, keyId: string, atTs: number) => Promise<Result<Uint8Array>>;

export interface VerifiedEvent {
  eventId: string;
  event: Record<string, unknown>;
  /** The content hash did not match, so `event` is the redacted copy: only that is trustworthy. */
  redacted: boolean;
}

/**
 * Checks a PDU received over federation (spec "Validating hashes and signatures on
 * received events"): its shape, its id, the signatures of every server that must have
 * signed it, and its content hash. Failure codes: E_UNSUPPORTED_ROOM_VERSION,
 * E_MALFORMED_EVENT, E_EVENT_ID_MISMATCH, E_MISSING_SIGNATURE, E_UNKNOWN_KEY,
 * E_BAD_SIGNATURE, E_BAD_KEY (the lookup answered something that is not an ed25519 key),
 * or a KeyLookup failure passed through. Authorisation rules are not checked here.
 */
export async function verifyEvent(
  pdu: unknown,
  roomVersionId: string,
  keys: KeyLookup,
  expectedEventId?: string,
): Promise<Result<VerifiedEvent>> {
  const version = roomVersion(roomVersionId);
  if (!version.ok) return version;
  const shape = checkShape(pdu, version.value);
  if (!shape.ok) return shape;
  const event = shape.value;
  try {
    return await verifyShapedEvent(event, version.value, keys, expectedEventId);
  } catch (err) {
    if (!(err instanceof CanonicalJsonError)) throw err;
    return fail("E_MALFORMED_EVENT", "The event is not valid canonical JSON.", `event is not canonical JSON: ${errorMessage(err)}`);
  }
}

async function verifyShapedEvent(
  event: ShapedEvent,
  version: RoomVersion,
  keys: KeyLookup,
  expectedEventId: string | undefined,
): Promise<Result<VerifiedEvent>> {
  const eventId = eventIdOf(event, version);
  if (!eventId.ok) return eventId;
  if (expectedEventId !== undefined && eventId.value !== expectedEventId) {
    return fail(
      "E_EVENT_ID_MISMATCH",
      `Asked for event ${expectedEventId} but got ${eventId.value}.`,
      `expected event ${expectedEventId}, received event has id ${eventId.value}`,
    );
  }
  const servers = requiredSigners(event, version, eventId.value);
  if (!servers.ok) return servers;
  const redacted = redactEvent(event.json, version);
  const atTs = version.enforceKeyValidity ? event.originServerTs : 0;
  for (const server of servers.value) {
    const signed = await checkServerSignature(redacted, server, keys, atTs, eventId.value);
    if (!signed.ok) return signed;
  }
  if (contentHashMatches(event.json, version)) return ok({ eventId: eventId.value, event: event.json, redacted: false });
  return ok({ eventId: eventId.value, event: redacted, redacted: true });
}

/**
 * Room versions before 6 did not enforce canonical JSON, so their content may hold
 * floats or huge integers we cannot re-encode as the sender did. The signatures (over
 * the redacted form) have passed by then, so such an event falls back to its redacted
 * copy, exactly like one whose hash does not match.
 */
function contentHashMatches(event: JsonObject, version: RoomVersion): boolean {
  try {
    return checkContentHash(event);
  } catch (err) {
    if (err instanceof CanonicalJsonError && !version.strictCanonicalJson) return false;
    throw err;
  }
}

interface ShapedEvent {
  readonly json: JsonObject;
  readonly type: string;
  readonly sender: string;
  readonly senderServer: string;
  readonly content: JsonObject;
  readonly originServerTs: number;
}

function checkShape(pdu: unknown, version: RoomVersion): Result<ShapedEvent> {
  if (!isJsonObject(pdu)) return malformed("it is not a JSON object");
  const { type, sender, content, room_id: roomId, origin_server_ts: ts, depth } = pdu;
  if (typeof type !== "string") return malformed("type is not a string");
  if (typeof sender !== "string") return malformed("sender is not a string");
  const server = senderServer(sender);
  if (!server.ok) return malformed("sender is not a user id");
  if (!isJsonObject(content)) return malformed("content is not an object");
  const isCreate = type === "m.room.create" && pdu["state_key"] === "";
  if (version.roomIdIsCreateEventHash && isCreate) {
    if (roomId !== undefined) return malformed(`a create event in room version ${version.id} must not have a room_id`);
  } else if (typeof roomId !== "string" || !roomId.startsWith("!")) {
    return malformed("room_id is not a room id");
  }
  if (typeof ts !== "number" || !Number.isSafeInteger(ts)) return malformed("origin_server_ts is not an integer");
  if (typeof depth !== "number" || !Number.isSafeInteger(depth) || depth < 0) return malformed("depth is not a non-negative integer");
  if (pdu["state_key"] !== undefined && typeof pdu["state_key"] !== "string") return malformed("state_key is not a string");
  for (const list of ["prev_events", "auth_events"]) {
    if (!Array.isArray(pdu[list])) return malformed(`${list} is not an array`);
  }
  if (!isJsonObject(pdu["signatures"])) return malformed("signatures is not an object");
  const hashes = pdu["hashes"];
  if (!isJsonObject(hashes) || typeof hashes["sha256"] !== "string") return malformed("hashes.sha256 is missing");
  if (version.roomIdIsCreateEventHash && !isCreate && typeof roomId === "string") {
    // The room id is the create event's id; naming it again in auth_events is forbidden.
    if ((pdu["auth_events"] as unknown[]).includes(`$${roomId.slice(1)}`)) {
      return malformed("auth_events lists the create event");
    }
  }
  return ok({ json: pdu, type, sender, senderServer: server.value, content, originServerTs: ts });
}

function eventIdOf(event: ShapedEvent, version: RoomVersion): Result<string> {
  if (version.eventIdFormat !== "server-generated") return computeEventId(event.json, version);
  const eventId = event.json["event_id"];
  if (typeof eventId !== "string" || !eventIdServer(eventId).ok) {
    return malformed(`event_id is missing or not of the form $id:server (room version ${version.id})`);
  }
  return ok(eventId);
}

/**
 * The servers whose signatures an event needs (spec, plus Synapse for restricted joins):
 * the sender's server, except for an invite made from a third-party invite, which any
 * server may send on the sender's behalf; in v1–2 also the server that minted the event
 * id; for a restricted join, the server of the user who authorised it.
 */
function requiredSigners(event: ShapedEvent, version: RoomVersion, eventId: string): Result<Set<string>> {
  const servers = new Set<string>();
  const isMember = event.type === "m.room.member";
  const membership = event.content["membership"];
  const viaThirdPartyInvite = isMember && membership === "invite" && Object.hasOwn(event.content, "third_party_invite");
  if (!viaThirdPartyInvite) servers.add(event.senderServer);
  if (version.eventIdFormat === "server-generated") {
    const minted = eventIdServer(eventId);
    if (minted.ok) servers.add(minted.value);
  }
  const authoriser = event.content["join_authorised_via_users_server"];
  if (version.restrictedJoins && isMember && membership === "join" && authoriser !== undefined) {
    const server = typeof authoriser === "string" ? senderServer(authoriser) : undefined;
    if (server === undefined || !server.ok) return malformed("join_authorised_via_users_server is not a user id");
    servers.add(server.value);
  }
  return ok(servers);
}

/**
 * Spec "Checking for a Signature": keys of unknown algorithms and keys the server does
 * not (or no longer) publish are skipped, but at least one must verify and none of the
 * keys found may fail.
 */
async function checkServerSignature(
  redacted: JsonObject,
  server: string,
  keys: KeyLookup,
  atTs: number,
  eventId: string,
): Promise<Result<void>> {
  const byServer = (redacted["signatures"] as JsonObject)[server];
  const keyIds = isJsonObject(byServer) ? Object.keys(byServer).filter((id) => id.startsWith("ed25519:")) : [];
  if (keyIds.length === 0) {
    return fail("E_MISSING_SIGNATURE", `Event ${eventId} is not signed by ${server}.`);
  }
  let verified = false;
  let lookupFailure: Failure | undefined;
  for (const keyId of keyIds) {
    const publicKey = await keys(server, keyId, atTs);
    if (!publicKey.ok) {
      if (publicKey.error.code !== "E_UNKNOWN_KEY") lookupFailure ??= publicKey.error;
      continue;
    }
    const checked = verifyJsonSignature(redacted, server, keyId, publicKey.value);
    if (!checked.ok) {
      if (checked.error.code === "E_BAD_JSON") return malformed("its redacted form is not canonical JSON");
      if (checked.error.code === "E_BAD_KEY") return { ok: false, error: checked.error };
      return fail("E_BAD_SIGNATURE", `Event ${eventId} has a bad signature from ${server}.`, `event ${eventId}: ${checked.error.log}`);
    }
    verified = true;
  }
  if (verified) return ok(undefined);
  if (lookupFailure !== undefined) return { ok: false, error: lookupFailure };
  return { ok: false, error: unknownKeys(server, keyIds, eventId) };
}

function unknownKeys(server: string, keyIds: readonly string[], eventId: string): Failure {
  return failure(
    "E_UNKNOWN_KEY",
    `Event ${eventId} is signed by ${server} with a key we do not know.`,
    `event ${eventId}: no key of ${server} found among ${keyIds.join(", ")}`,
  );
}

function malformed(why: string): Result<never> {
  return fail("E_MALFORMED_EVENT", `Malformed event: ${why}.`);
}
