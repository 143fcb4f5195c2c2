import { join } from 'node:path';
import { writeFileAtomic } from '../util/atomic-write.ts';
import { errorMessage, fail, ok, type Result } from '../util/result.ts';
import type { FetchedRoomState } from '../federation/room-state.ts';
import type { StateSummary } from './state-summary.ts';

export const STATE_FILE_FORMAT = 'steward-fed-state/1';

/** A file name part from a room id: ids may hold `/` or `:`, which do not belong in paths. */
export function safeName(id: string): string {
  return id.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 200);
}

/** `2025-06-01T12-30-05-123Z`: sortable, unique to the millisecond, no colons. */
export function fileStamp(ts: number): string {
  return new Date(ts).toISOString().replace(/[:.]/g, '-');
}

export function stateFilePath(dumpsDir: string, roomId: string, ts: number): string {
  return join(dumpsDir, 'fed-state', `${safeName(roomId)}-${fileStamp(ts)}.json`);
}

/** The whole answer: verified state and auth chain, what was rejected and why, and the summary. */
export function stateFileJson(fetched: FetchedRoomState, summary: StateSummary, origin: string, fetchedTs: number): string {
  return `${JSON.stringify({
    format: STATE_FILE_FORMAT,
    room_id: fetched.roomId,
    room_version: fetched.roomVersion,
    server: fetched.server,
    origin,
    fetched_at: new Date(fetchedTs).toISOString(),
    at: { event_id: fetched.eventId, position: fetched.position, origin_server_ts: fetched.eventTs },
    counts: fetched.counts,
    rejected: fetched.rejected,
    warnings: fetched.warnings,
    summary,
    state: fetched.state,
    auth_chain: fetched.authChain,
  }, null, 2)}\n`;
}

export async function writeStateFile(path: string, json: string): Promise<Result<void>> {
  try {
    await writeFileAtomic(path, json, 0o600);
    return ok(undefined);
  } catch (err) {
    return fail('E_WRITE', `Cannot write ${path}.`, `writing ${path}: ${errorMessage(err)}`);
  }
}
