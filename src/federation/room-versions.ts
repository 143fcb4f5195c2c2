import { fail, ok } from "../util/result.ts";
import type { Result } from "../util/result.ts";

/**
 * How event ids are made: chosen by the origin server (v1–2, `$opaque:server`), or the
 * event's reference hash in standard (v3) or URL-safe (v4+) unpadded base64.
 */
export type EventIdFormat = "server-generated" | "reference-hash" | "reference-hash-url-safe";

/** Redaction algorithms, named after the room version that introduced each. */
export type RedactionRules = "v1" | "v6" | "v8" | "v9" | "v11";

/** The properties of a room version that the federation crypto core depends on. */
export interface RoomVersion {
  readonly id: string;
  readonly eventIdFormat: EventIdFormat;
  readonly redactionRules: RedactionRules;
  /**
   * v5+: a signing key must have been valid at the event's origin_server_ts; earlier
   * versions accept any key the server ever published.
   */
  readonly enforceKeyValidity: boolean;
  /** v6+: events must be strict canonical JSON (before, oversized integers existed). */
  readonly strictCanonicalJson: boolean;
  /** v8+: restricted joins are also signed by the server of `join_authorised_via_users_server`. */
  readonly restrictedJoins: boolean;
  /**
   * Until v11, room ids are `!opaque:server`. From v12 a room id is `!` plus the create
   * event's id without its `$`, the create event has no `room_id`, and no other event
   * lists the create event in its `auth_events`.
   */
  readonly roomIdIsCreateEventHash: boolean;
}

function version(id: string, eventIdFormat: EventIdFormat, redactionRules: RedactionRules, n: number): RoomVersion {
  return Object.freeze({
    id,
    eventIdFormat,
    redactionRules,
    enforceKeyValidity: n >= 5,
    strictCanonicalJson: n >= 6,
    restrictedJoins: n >= 8,
    roomIdIsCreateEventHash: n >= 12,
  });
}

export const ROOM_VERSIONS: Readonly<Record<string, RoomVersion>> = Object.freeze({
  "1": version("1", "server-generated", "v1", 1),
  "2": version("2", "server-generated", "v1", 2),
  "3": version("3", "reference-hash", "v1", 3),
  "4": version("4", "reference-hash-url-safe", "v1", 4),
  "5": version("5", "reference-hash-url-safe", "v1", 5),
  "6": version("6", "reference-hash-url-safe", "v6", 6),
  "7": version("7", "reference-hash-url-safe", "v6", 7),
  "8": version("8", "reference-hash-url-safe", "v8", 8),
  "9": version("9", "reference-hash-url-safe", "v9", 9),
  "10": version("10", "reference-hash-url-safe", "v9", 10),
  "11": version("11", "reference-hash-url-safe", "v11", 11),
  "12": version("12", "reference-hash-url-safe", "v11", 12),
});

export const KNOWN_ROOM_VERSIONS: readonly string[] = Object.freeze(Object.keys(ROOM_VERSIONS));

export function roomVersion(id: string): Result<RoomVersion> {
  const known = Object.hasOwn(ROOM_VERSIONS, id) ? ROOM_VERSIONS[id] : undefined;
  if (known === undefined) {
    const shown = JSON.stringify(id.slice(0, 64));
    return fail("E_UNSUPPORTED_ROOM_VERSION", `Room version ${shown} is not supported (known: ${KNOWN_ROOM_VERSIONS.join(", ")}).`);
  }
  return ok(known);
}
