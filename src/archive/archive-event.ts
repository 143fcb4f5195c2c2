import { checkContentHash, computeEventId } from '../federation/event-hashes.ts';
import { isJsonObject, type JsonObject } from '../federation/json-object.ts';
import type { RoomVersion } from '../federation/room-versions.ts';
import { fail, ok, type Result } from '../util/result.ts';
import type { ArchiveAnnotations, ArchiveLine } from './archive-line.ts';

/**
 * Keys of `unsigned` that describe the moment of reading, not the event: `age` (now minus the
 * event's time) and bundled aggregations (`m.relations`, which grow as reactions and edits come
 * in). Kept, they would make two archives of the same events differ byte for byte.
 */
const READ_TIME_KEYS = ['age', 'm.relations'];

function withoutReadTime(unsigned: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(unsigned)) {
    if (READ_TIME_KEYS.includes(k)) continue;
    // The redaction embedded in a redacted event carries its own age.
    out[k] = k === 'redacted_because' && isJsonObject(v) ? normaliseEvent(v) : v;
  }
  return out;
}

/** The event as the admin API returned it, minus what depends on when it was read (see READ_TIME_KEYS). */
export function normaliseEvent(event: JsonObject): JsonObject {
  const unsigned = event.unsigned;
  if (!isJsonObject(unsigned)) return event;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(event)) out[k] = k === 'unsigned' ? withoutReadTime(unsigned) : v;
  return out;
}

/** Synapse names the event even where the federation format does not (v3+); otherwise it is the reference hash. */
export function eventIdOf(event: JsonObject, version: RoomVersion): Result<string> {
  if (typeof event.event_id === 'string' && event.event_id.startsWith('$')) return ok(event.event_id);
  if (version.eventIdFormat === 'server-generated') return fail('E_MALFORMED_EVENT', 'An event of a room version 1 or 2 came without an event_id.');
  return computeEventId(event, version);
}

export function isRedacted(event: JsonObject): boolean {
  const unsigned = event.unsigned;
  return isJsonObject(unsigned) && (isJsonObject(unsigned.redacted_because) || typeof unsigned.redacted_by === 'string');
}

/** The event an `m.room.redaction` redacts (`content.redacts` from v11, top-level before). */
export function redactionTarget(event: JsonObject): string | undefined {
  if (event.type !== 'm.room.redaction') return undefined;
  const content = event.content;
  if (isJsonObject(content) && typeof content.redacts === 'string') return content.redacts;
  return typeof event.redacts === 'string' ? event.redacts : undefined;
}

/** Markers Synapse puts in `unsigned` for events it keeps but flags. */
export function flagsOf(event: JsonObject): Pick<ArchiveAnnotations, 'soft_failed' | 'policy_spammy'> {
  const unsigned = event.unsigned;
  if (!isJsonObject(unsigned)) return {};
  return {
    ...(unsigned['io.element.synapse.soft_failed'] === true ? { soft_failed: true as const } : {}),
    ...(unsigned['io.element.synapse.policy_server_spammy'] === true ? { policy_spammy: true as const } : {}),
  };
}

/** What reading the original of a redacted event gave. */
export type OriginalLookup =
  | { readonly kind: 'found'; readonly event: JsonObject }
  | { readonly kind: 'not-found'; readonly error: string }
  | { readonly kind: 'error'; readonly error: string };

/**
 * The original's annotations. Synapse censors a redacted event in place once
 * redaction_retention_period has passed: fetch_event then returns the stripped copy, whose
 * content no longer matches its content hash. That is how "purged" is told apart.
 */
export function originalAnnotations(lookup: OriginalLookup, version: RoomVersion): Pick<ArchiveAnnotations, 'original' | 'original_missing' | 'original_error'> {
  if (lookup.kind === 'found') {
    let whole = false;
    try {
      // From v3 the id is not part of the event Synapse hashed; Synapse adds it when serving.
      const { event_id: _id, ...pdu } = lookup.event;
      whole = checkContentHash(version.eventIdFormat === 'server-generated' ? lookup.event : pdu);
    } catch {
      whole = false;
    }
    return whole ? { original: normaliseEvent(lookup.event) } : { original_missing: 'purged' };
  }
  return { original_missing: 'unavailable', original_error: lookup.error };
}

export const DAY = /^(\d{4})-(\d{2})-(\d{2})$/;

/** UTC day of a timestamp, `YYYY-MM-DD`. */
export function dayOf(ts: number): string {
  return new Date(ts).toISOString().slice(0, 10);
}

/** An integer time, as every event carries (the spec's integer range). */
export function validTimestamp(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v);
}

/** The last millisecond of 9999-12-31: day file names and ISO dates have four-digit years. */
const LAST_FILED_TS = 253402300799999;

/**
 * The time an event is filed (and indexed) under: its own, or, for a time before 1970 or after
 * 9999 (a remote server's clock, or a lie), the nearest end of that range. Its line keeps the real one.
 */
export function filedTime(ts: number): number {
  return Math.min(Math.max(ts, 0), LAST_FILED_TS);
}

/** The JSONL line: keys in the order of docs/dump-format.md §3, `steward` only when there is something to say. */
export function lineOf(eventId: string, roomId: string, ts: number, event: JsonObject, annotations: ArchiveAnnotations): ArchiveLine {
  const line: ArchiveLine = Object.keys(annotations).length > 0
    ? { event_id: eventId, room_id: roomId, origin_server_ts: ts, event, steward: annotations }
    : { event_id: eventId, room_id: roomId, origin_server_ts: ts, event };
  return line;
}

export function serializeLine(line: ArchiveLine): string {
  return `${JSON.stringify(line)}\n`;
}
