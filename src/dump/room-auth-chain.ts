// A room as federation sees it, checked: every event of a `/state` answer (and the event the
// state is at) verified with the room's version, forged ones dropped and counted, the auth chain
// checked for closure, and the resulting state compared with the homeserver's current state.
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { KeyLookup } from '../federation/event-verify.ts';
import { verifyEvent } from '../federation/event-verify.ts';
import { roomIdOfCreateEvent } from '../federation/event-hashes.ts';
import { isJsonObject } from '../federation/json-object.ts';
import type { JsonObject } from '../federation/json-object.ts';
import { roomVersion } from '../federation/room-versions.ts';
import type { RoomVersion } from '../federation/room-versions.ts';
import { ok, type Result } from '../util/result.ts';

/** Lists in a room file are capped: a broken room must not make a file of rejects. */
export const MAX_LISTED = 100;
/** Events verified between two yields to the event loop (progress, cancel, other rooms). */
const YIELD_EVERY = 64;

export type EventSection = 'state' | 'auth_chain' | 'at_event';

/** A verified event as written to a room file; `pdu` is exactly what was verified. */
export interface DumpedEvent {
  readonly event_id: string;
  /** The content hash did not match: `pdu` is the redacted copy, the only trustworthy part. */
  readonly redacted_copy?: true;
  readonly pdu: JsonObject;
}

export interface RejectedEvent {
  readonly section: EventSection;
  /** The id the event claimed or hashes to, when one could be told. */
  readonly event_id: string | null;
  readonly code: string;
  readonly reason: string;
}

export interface FederationCounts {
  /** As received: `pdus` of /state (the state before the event it is at). */
  state_events: number;
  /** As received: `auth_chain` of /state. */
  auth_chain_events: number;
  /** Events kept (state + auth chain + the event the state is at), redacted copies included. */
  verified: number;
  /** Events dropped: failed a check, or conflicting with another. Never written. */
  failed: number;
  /** Kept as their redacted copy because their content hash did not match. */
  redacted_copies_used: number;
  /** Distinct event ids among the kept events (the state and the auth chain overlap). */
  distinct_events: number;
  failed_by_code: Record<string, number>;
}

/** What `/state?event_id=` and `/event` answered, unverified. */
export interface RoomStateAnswer {
  readonly atEventId: string;
  /** The PDU `/event/{atEventId}` answered, or undefined when it could not be fetched. */
  readonly atEvent: unknown;
  readonly pdus: readonly unknown[];
  readonly authChain: readonly unknown[];
}

export interface VerifiedRoomState {
  readonly atEvent: DumpedEvent | null;
  readonly state: DumpedEvent[];
  readonly authChain: DumpedEvent[];
  readonly counts: FederationCounts;
  /** The first MAX_LISTED rejects; counts.failed has them all. */
  readonly rejected: RejectedEvent[];
}

export interface AuthChainClosure {
  readonly closed: boolean;
  /** Ids referenced as auth events (or, from v12, the create event) that are not among the kept events. */
  readonly missing: string[];
  readonly missingCount: number;
}

export interface StateComparison {
  readonly matches: boolean;
  readonly onlyInCurrentState: StateEntry[];
  readonly onlyInFederation: StateEntry[];
}

export interface StateEntry {
  readonly type: string;
  readonly state_key: string;
  readonly event_id: string;
}

/** The ids an event names as its auth events: strings from v3, `[id, hashes]` pairs in v1–2. */
export function authEventIds(pdu: JsonObject): string[] {
  const list = pdu['auth_events'];
  if (!Array.isArray(list)) return [];
  const ids: string[] = [];
  for (const entry of list) {
    if (typeof entry === 'string') ids.push(entry);
    else if (Array.isArray(entry) && typeof entry[0] === 'string') ids.push(entry[0]);
  }
  return ids;
}

/** From v12 the create event's id is the room id with `$` for `!`. */
export function createEventIdOf(roomId: string): string {
  return `$${roomId.slice(1)}`;
}

/**
 * Every auth event of every kept event must itself be kept; from v12 the create event is not
 * listed in `auth_events` but is an auth event of every other event, so it must be there too.
 */
export function checkAuthChainClosure(events: Iterable<DumpedEvent>, roomId: string, version: RoomVersion): AuthChainClosure {
  const all = [...events];
  const present = new Set(all.map((e) => e.event_id));
  const missing = new Set<string>();
  const createId = version.roomIdIsCreateEventHash ? createEventIdOf(roomId) : undefined;
  for (const { event_id: id, pdu } of all) {
    for (const authId of authEventIds(pdu)) if (!present.has(authId)) missing.add(authId);
    if (createId !== undefined && id !== createId && !present.has(createId)) missing.add(createId);
  }
  const sorted = [...missing].sort();
  return { closed: missing.size === 0, missing: sorted.slice(0, MAX_LISTED), missingCount: missing.size };
}

const stateKeyOf = (type: string, stateKey: string): string => `${type}\u0000${stateKey}`;

/** The state after `atEvent`: /state answers the state before it, so a state event is applied on top. */
export function stateAfter(state: readonly DumpedEvent[], atEvent: DumpedEvent | null): Map<string, StateEntry> {
  const map = new Map<string, StateEntry>();
  const put = (e: DumpedEvent): void => {
    const { type, state_key: stateKey } = e.pdu;
    if (typeof type === 'string' && typeof stateKey === 'string') map.set(stateKeyOf(type, stateKey), { type, state_key: stateKey, event_id: e.event_id });
  };
  state.forEach(put);
  if (atEvent) put(atEvent);
  return map;
}

/** Federation's state after the latest event against the admin API's current state, by (type, state_key) → event id. */
export function compareWithCurrentState(federation: Map<string, StateEntry>, currentState: readonly unknown[]): StateComparison {
  const current = new Map<string, StateEntry>();
  for (const ev of currentState) {
    if (!isJsonObject(ev)) continue;
    const { type, state_key: stateKey, event_id: eventId } = ev;
    if (typeof type === 'string' && typeof stateKey === 'string' && typeof eventId === 'string') current.set(stateKeyOf(type, stateKey), { type, state_key: stateKey, event_id: eventId });
  }
  const onlyInCurrentState: StateEntry[] = [];
  const onlyInFederation: StateEntry[] = [];
  for (const [key, entry] of current) if (federation.get(key)?.event_id !== entry.event_id) onlyInCurrentState.push(entry);
  for (const [key, entry] of federation) if (current.get(key)?.event_id !== entry.event_id) onlyInFederation.push(entry);
  return {
    matches: onlyInCurrentState.length === 0 && onlyInFederation.length === 0,
    onlyInCurrentState: onlyInCurrentState.slice(0, MAX_LISTED),
    onlyInFederation: onlyInFederation.slice(0, MAX_LISTED),
  };
}

function claimedId(pdu: unknown): string | null {
  return isJsonObject(pdu) && typeof pdu['event_id'] === 'string' ? pdu['event_id'] : null;
}

/**
 * Verifies every event of a `/state` answer and the event it is at, for room `roomId` of
 * version `versionId`. An event is kept only if it passes verifyEvent (id, signatures of every
 * server that must sign, content hash — a mismatch keeps the redacted copy), belongs to this
 * room, and, in the state, is a state event not conflicting with another for the same
 * (type, state_key). A PDU that carries an `event_id` must hash to it (v3+), and the event the
 * state is at must be the one asked for. Everything else is dropped and counted by code.
 * Fails only for an unsupported room version.
 */
export async function verifyRoomState(
  answer: RoomStateAnswer,
  roomId: string,
  versionId: string,
  keys: KeyLookup,
  signal?: AbortSignal,
): Promise<Result<VerifiedRoomState>> {
  const version = roomVersion(versionId);
  if (!version.ok) return version;
  const counts: FederationCounts = {
    state_events: answer.pdus.length,
    auth_chain_events: answer.authChain.length,
    verified: 0,
    failed: 0,
    redacted_copies_used: 0,
    distinct_events: 0,
    failed_by_code: {},
  };
  const rejected: RejectedEvent[] = [];
  const reject = (section: EventSection, eventId: string | null, code: string, reason: string): null => {
    counts.failed += 1;
    counts.failed_by_code[code] = (counts.failed_by_code[code] ?? 0) + 1;
    if (rejected.length < MAX_LISTED) rejected.push({ section, event_id: eventId, code, reason });
    return null;
  };
  // The state and the auth chain overlap; the same JSON is verified once. The key is the JSON
  // itself (a digest of it costs more than the map), kept only while this room is checked.
  const verdicts = new Map<string, Result<{ eventId: string; event: JsonObject; redacted: boolean }>>();
  let sinceYield = 0;

  const check = async (pdu: unknown, section: EventSection, expected?: string): Promise<DumpedEvent | null> => {
    if (++sinceYield >= YIELD_EVERY) {
      sinceYield = 0;
      await yieldToLoop();
    }
    const claimed = expected ?? (version.value.eventIdFormat === 'server-generated' ? undefined : claimedId(pdu) ?? undefined);
    const key = `${claimed ?? ''}\u0000${JSON.stringify(pdu)}`;
    let verdict = verdicts.get(key);
    if (verdict === undefined) {
      const verified = await verifyEvent(pdu, version.value.id, keys, claimed);
      verdict = verified.ok ? ok({ eventId: verified.value.eventId, event: verified.value.event, redacted: verified.value.redacted }) : verified;
      verdicts.set(key, verdict);
    }
    if (!verdict.ok) return reject(section, claimed ?? claimedId(pdu), verdict.error.code, verdict.error.log);
    const { eventId, event, redacted } = verdict.value;
    const inRoom = roomOf(event, version.value);
    if (inRoom !== roomId) return reject(section, eventId, 'E_WRONG_ROOM', `event ${eventId} is in ${inRoom ?? 'no room'}, not ${roomId}`);
    counts.verified += 1;
    if (redacted) counts.redacted_copies_used += 1;
    return redacted ? { event_id: eventId, redacted_copy: true, pdu: event } : { event_id: eventId, pdu: event };
  };

  let atEvent: DumpedEvent | null = null;
  if (answer.atEvent === undefined) reject('at_event', answer.atEventId, 'E_NOT_FETCHED', 'the event the state is at could not be fetched');
  else atEvent = await check(answer.atEvent, 'at_event', answer.atEventId);

  const state: DumpedEvent[] = [];
  const byStateKey = new Map<string, string>();
  for (const pdu of answer.pdus) {
    if (signal?.aborted) break;
    const kept = await check(pdu, 'state');
    if (kept === null) continue;
    const { type, state_key: stateKey } = kept.pdu;
    if (typeof type !== 'string' || typeof stateKey !== 'string') {
      uncount(kept);
      reject('state', kept.event_id, 'E_NOT_STATE', `event ${kept.event_id} in the state has no state_key`);
      continue;
    }
    const slot = stateKeyOf(type, stateKey);
    const holder = byStateKey.get(slot);
    if (holder !== undefined) {
      uncount(kept);
      if (holder !== kept.event_id) reject('state', kept.event_id, 'E_STATE_CONFLICT', `event ${kept.event_id} and ${holder} both claim (${type}, ${JSON.stringify(stateKey)}) in the state`);
      else reject('state', kept.event_id, 'E_DUPLICATE', `event ${kept.event_id} is listed twice in the state`);
      continue;
    }
    byStateKey.set(slot, kept.event_id);
    state.push(kept);
  }

  const authChain: DumpedEvent[] = [];
  const inChain = new Set<string>();
  for (const pdu of answer.authChain) {
    if (signal?.aborted) break;
    const kept = await check(pdu, 'auth_chain');
    if (kept === null) continue;
    if (inChain.has(kept.event_id)) {
      uncount(kept);
      reject('auth_chain', kept.event_id, 'E_DUPLICATE', `event ${kept.event_id} is listed twice in the auth chain`);
      continue;
    }
    inChain.add(kept.event_id);
    authChain.push(kept);
  }
  counts.distinct_events = new Set([...state, ...authChain, ...(atEvent ? [atEvent] : [])].map((e) => e.event_id)).size;
  return ok({ atEvent, state, authChain, counts, rejected });

  function uncount(kept: DumpedEvent): void {
    counts.verified -= 1;
    if (kept.redacted_copy) counts.redacted_copies_used -= 1;
  }
}

/** The room an event belongs to; a v12 create event names none, its id makes the room id. */
function roomOf(event: JsonObject, version: RoomVersion): string | null {
  if (version.roomIdIsCreateEventHash && event['type'] === 'm.room.create' && event['state_key'] === '') {
    const id = roomIdOfCreateEvent(event, version);
    return id.ok ? id.value : null;
  }
  return typeof event['room_id'] === 'string' ? event['room_id'] : null;
}
