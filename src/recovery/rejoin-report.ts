import { formatDuration } from '../jobs/format.ts';

export type RoomOutcome = 'rejoined' | 'already-recovered' | 'partial' | 'failed' | 'planned' | 'nothing-to-do';

export interface ServerAttempt {
  readonly server: string;
  readonly ok: boolean;
  readonly reason?: string;
}

export interface UserNote {
  readonly user: string;
  readonly reason: string;
}

/** What happened to one room; the unit of the report and of a resumed job. */
export interface RoomResult {
  readonly roomId: string;
  readonly outcome: RoomOutcome;
  /** The server whose verified state was used. */
  readonly stateFrom?: string;
  readonly eventId?: string;
  readonly roomVersion?: string;
  /** Servers asked, in order, and why the ones before the one used were not. */
  readonly servers: readonly ServerAttempt[];
  /** Servers given as via to the joins. */
  readonly via: readonly string[];
  readonly rejoined: readonly string[];
  readonly alreadyJoined: readonly string[];
  readonly planned: readonly string[];
  readonly skipped: readonly UserNote[];
  readonly failed: readonly UserNote[];
  /** Skipped users (deactivated, gone) the remote server still counts as joined. */
  readonly stale?: readonly string[];
  /** With --leave-skipped: stale members made to leave over federation, and those that could not. */
  readonly left?: readonly string[];
  readonly leaveFailed?: readonly UserNote[];
  /** Why the room as a whole failed or needed nothing. */
  readonly reason?: string;
  readonly ts: number;
}

export const REJOIN_REPORT_FORMAT = 'steward.rejoin-report/1';

const ICON: Record<RoomOutcome, string> = {
  rejoined: '✅', 'already-recovered': '☑️', partial: '⚠️', failed: '❌', planned: '📋', 'nothing-to-do': '➖',
};
const LABEL: Record<RoomOutcome, string> = {
  rejoined: 'rejoined', 'already-recovered': 'already recovered', partial: 'partly rejoined', failed: 'failed', planned: 'plan', 'nothing-to-do': 'nothing to do',
};

export interface Totals {
  rooms: number;
  rejoined: number;
  alreadyJoined: number;
  planned: number;
  skipped: number;
  failedUsers: number;
  /** Stale memberships found, and how many were left over federation. */
  stale: number;
  left: number;
  byOutcome: Record<RoomOutcome, number>;
}

export function totals(results: readonly RoomResult[]): Totals {
  const byOutcome: Record<RoomOutcome, number> = { rejoined: 0, 'already-recovered': 0, partial: 0, failed: 0, planned: 0, 'nothing-to-do': 0 };
  const t: Totals = { rooms: results.length, rejoined: 0, alreadyJoined: 0, planned: 0, skipped: 0, failedUsers: 0, stale: 0, left: 0, byOutcome };
  for (const r of results) {
    byOutcome[r.outcome] += 1;
    t.rejoined += r.rejoined.length;
    t.alreadyJoined += r.alreadyJoined.length;
    t.planned += r.planned.length;
    t.skipped += r.skipped.length;
    t.failedUsers += r.failed.length;
    t.stale += r.stale?.length ?? 0;
    t.left += r.left?.length ?? 0;
  }
  return t;
}

function users(list: readonly string[], max = 20): string {
  return list.length <= max ? list.join(', ') : `${list.slice(0, max).join(', ')} and ${list.length - max} more`;
}

function notes(list: readonly UserNote[], max = 10): string {
  const shown = list.slice(0, max).map((n) => `${n.user} (${n.reason})`).join(', ');
  return list.length <= max ? shown : `${shown} and ${list.length - max} more`;
}

/** One line per room: what was (or would be) done, from which server, who was skipped and why. */
export function roomLine(r: RoomResult): string {
  const parts: string[] = [`${ICON[r.outcome]} ${r.roomId} — ${LABEL[r.outcome]}`];
  if (r.stateFrom) parts.push(`state from ${r.stateFrom}`);
  const refused = r.servers.filter((s) => !s.ok);
  if (refused.length) parts.push(`not used: ${refused.map((s) => `${s.server} (${s.reason})`).join('; ')}`);
  if (r.planned.length) parts.push(`would rejoin ${users(r.planned)}`);
  if (r.rejoined.length) parts.push(`rejoined ${users(r.rejoined)}`);
  if (r.alreadyJoined.length) parts.push(`already joined ${users(r.alreadyJoined)}`);
  if (r.skipped.length) parts.push(`skipped ${notes(r.skipped)}`);
  if (r.failed.length) parts.push(`failed ${notes(r.failed)}`);
  const stillJoined = (r.stale ?? []).filter((u) => !(r.left ?? []).includes(u));
  if (r.left?.length) parts.push(`left over federation ${users(r.left)}`);
  if (r.leaveFailed?.length) parts.push(`could not leave ${notes(r.leaveFailed)}`);
  else if (stillJoined.length) parts.push(`stale: ${users(stillJoined)} still joined as ${r.stateFrom ?? 'the remote'} sees it (--leave-skipped makes them leave)`);
  if (r.reason) parts.push(r.reason);
  return parts.join(' · ');
}

const MAX_ROOM_LINES = 50;

/** The final reply: totals, then the table of rooms (the report file has every room). */
export function summaryText(results: readonly RoomResult[], opts: { dryRun: boolean; reportPath: string | null; forecast?: string }): string {
  const t = totals(results);
  const o = t.byOutcome;
  const head = opts.dryRun
    ? `Dry run, nothing was joined. Plan for ${t.rooms} room(s): ${t.planned} user(s) to rejoin, ${t.alreadyJoined} already joined, ${t.skipped} skipped; ${o.failed} room(s) without verifiable state.`
    : `${t.rooms} room(s): ${o.rejoined} rejoined, ${o['already-recovered']} already recovered, ${o.partial} partly, ${o.failed} failed, ${o['nothing-to-do']} with nothing to do · users: ${t.rejoined} rejoined, ${t.alreadyJoined} already joined, ${t.skipped} skipped, ${t.failedUsers} failed.`;
  const lines = [head];
  if (t.stale > 0) {
    lines.push(t.left > 0
      ? `Stale memberships: ${t.stale} skipped user(s) were still joined as remote servers see it; ${t.left} made to leave over federation.`
      : `Stale memberships: ${t.stale} skipped user(s) (deactivated or gone) are still joined as remote servers see it. Run the same !rejoin with --leave-skipped to make them leave over federation.`);
  }
  if (opts.forecast) lines.push(opts.forecast);
  for (const r of results.slice(0, MAX_ROOM_LINES)) lines.push(roomLine(r));
  if (results.length > MAX_ROOM_LINES) lines.push(`… and ${results.length - MAX_ROOM_LINES} more room(s) in the report.`);
  if (opts.reportPath) lines.push(`Report: ${opts.reportPath}`);
  return lines.join('\n');
}

/**
 * How long the joins would take if Synapse rate-limits Steward at its default limits
 * (rc_joins.remote 0.01/s and rc_joins.local 0.1/s, each with a burst of 10): one remote join per
 * room, the room's other users join locally once the server is back in it.
 */
export function defaultLimitsForecast(remoteJoins: number, localJoins: number): number {
  const remote = Math.max(0, remoteJoins - 10) * 100_000;
  const local = Math.max(0, localJoins - 10) * 10_000;
  return Math.max(remote, local);
}

export const LIFT_LIMITS_ADVICE = [
  'To lift the limits for Steward: its registration file must say `rate_limited: false` (`steward generate-registration` writes it; restart Synapse after changing it) — the users Steward acts as are then exempt.',
  'Or raise them in homeserver.yaml for everyone:',
  '  rc_joins:',
  '    local: {per_second: 10, burst_count: 100}',
  '    remote: {per_second: 10, burst_count: 100}',
  '  rc_joins_per_room: {per_second: 10, burst_count: 100}',
].join('\n');

export function forecastText(remoteJoins: number, localJoins: number): string | undefined {
  const ms = defaultLimitsForecast(remoteJoins, localJoins);
  if (ms < 60_000) return undefined;
  return `${remoteJoins} remote and ${localJoins} local join(s) needed: if Synapse rate-limits Steward, at its default limits this takes about ${formatDuration(ms)}.\n${LIFT_LIMITS_ADVICE}`;
}

export function reportDocument(results: readonly RoomResult[], meta: Record<string, unknown>): Record<string, unknown> {
  return { format: REJOIN_REPORT_FORMAT, ...meta, totals: totals(results), rooms: results };
}
