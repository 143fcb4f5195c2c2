import { path, type HomeserverHttp } from '../homeserver/http.ts';
import type { ReadMarker, RestoredRoomStore } from './room-store.ts';

/** How far back a rejoined room's history is paged (and so backfilled from the other servers) for a marked event. */
export const BACKFILL_PAGES = 10;
const PAGE = 100;

export interface ReadMarkerDeps {
  readonly http: HomeserverHttp;
  readonly store: RestoredRoomStore;
}

/** Where the old room stands now, as far as its read markers care. */
export type MarkerTarget =
  | { readonly kind: 'rejoin'; readonly roomId: string }
  | { readonly kind: 'recreate'; readonly roomId: string }
  | { readonly kind: 'skip'; readonly reason: string };

export interface MarkerNotSet {
  readonly userId: string;
  readonly eventId: string;
  /** failed: a re-run tries again; lost: it cannot come back. */
  readonly state: 'failed' | 'lost';
  readonly reason: string;
}

export interface MarkersOutcome {
  /** Users whose marker was set this time. */
  readonly set: readonly string[];
  readonly notSet: readonly MarkerNotSet[];
}

/**
 * The read markers (m.fully_read) restore users recorded for this room, set as each user with
 * POST /rooms/{id}/read_markers — the only way Synapse takes them. In a rejoined room the event
 * keeps its id, but our server may not hold it yet: the user's view of the history is paged back
 * (Synapse backfills it from the other servers as it goes) until the event turns up. In a
 * recreated room the marker moves to the imported copy of its event. A marker that cannot be set
 * is recorded with the reason and reported, never failing the room. Synapse only moves a marker
 * forward, so one the user has moved on since is left where it is.
 */
export async function restoreReadMarkers(oldRoomId: string, target: MarkerTarget, deps: ReadMarkerDeps, signal: AbortSignal): Promise<MarkersOutcome> {
  const set: string[] = [];
  const notSet: MarkerNotSet[] = [];
  const give = (m: ReadMarker, state: 'failed' | 'lost', reason: string): void => {
    deps.store.setMarker(m, state, reason);
    notSet.push({ userId: m.userId, eventId: m.eventId, state, reason });
  };
  for (const m of deps.store.markersToSet(oldRoomId)) {
    if (signal.aborted) break;
    if (target.kind === 'skip') {
      give(m, 'lost', `the room is not restored (${target.reason})`);
      continue;
    }
    let eventId = m.eventId;
    if (target.kind === 'recreate') {
      const copy = deps.store.newEventFor(oldRoomId, m.eventId);
      if (!copy) {
        give(m, 'lost', deps.store.history(oldRoomId)
          ? `the event it marks (${m.eventId}) was not re-posted from the archive (a state event, an encrypted message, or not in the archive)`
          : `the room was recreated without its history (no --archive), so the event it marks (${m.eventId}) is not in ${target.roomId}`);
        continue;
      }
      eventId = copy;
    }
    let marked = await mark(deps, target.roomId, m.userId, eventId, signal);
    if (!marked.ok && marked.status === 404 && target.kind === 'rejoin') {
      const found = await backfillTo(deps, target.roomId, m.userId, eventId, signal);
      if (found.ok && found.found) marked = await mark(deps, target.roomId, m.userId, eventId, signal);
      else if (found.ok) {
        give(m, 'failed', `the event it marks (${eventId}) is not known here: it is not among the ${found.searched} event(s) of history this server holds after asking the other servers for more (they may not be able to serve history from before they joined); a re-run asks again`);
        continue;
      } else {
        give(m, 'failed', `the history could not be read to find the event it marks (${eventId}): ${found.reason}`);
        continue;
      }
    }
    if (marked.ok) {
      deps.store.setMarker(m, 'set', null);
      set.push(m.userId);
      continue;
    }
    give(m, 'failed', marked.status === 403 ? `${m.userId} is not in ${target.roomId}: ${marked.reason}` : marked.reason);
  }
  return { set, notSet };
}

async function mark(deps: ReadMarkerDeps, roomId: string, userId: string, eventId: string, signal: AbortSignal): Promise<{ ok: true } | { ok: false; status: number; reason: string }> {
  const r = await deps.http.request('POST', path`/_matrix/client/v3/rooms/${roomId}/read_markers`, { body: { 'm.fully_read': eventId }, asUser: userId, idempotent: true, signal });
  return r.ok ? { ok: true } : { ok: false, status: r.error.status, reason: r.error.human };
}

/** Pages the user's view of the room backwards until `eventId` is in it, or BACKFILL_PAGES pages have come back without it. */
async function backfillTo(deps: ReadMarkerDeps, roomId: string, userId: string, eventId: string, signal: AbortSignal): Promise<{ ok: true; found: boolean; searched: number } | { ok: false; reason: string }> {
  let from: string | undefined;
  let searched = 0;
  for (let page = 0; page < BACKFILL_PAGES && !signal.aborted; page++) {
    const r = await deps.http.request<{ chunk?: { event_id?: unknown }[]; end?: unknown }>('GET', path`/_matrix/client/v3/rooms/${roomId}/messages`, {
      asUser: userId, signal, query: { dir: 'b', limit: String(PAGE), from },
    });
    if (!r.ok) return { ok: false, reason: r.error.human };
    const chunk = Array.isArray(r.value.chunk) ? r.value.chunk : [];
    searched += chunk.length;
    if (chunk.some((e) => e?.event_id === eventId)) return { ok: true, found: true, searched };
    if (chunk.length === 0 || typeof r.value.end !== 'string' || r.value.end === from) break;
    from = r.value.end;
  }
  return { ok: true, found: false, searched };
}
