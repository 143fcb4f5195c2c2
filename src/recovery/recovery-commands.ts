import { isAbsolute, resolve } from 'node:path';
import { reply } from '../commands/reply.ts';
import type { Command } from '../commands/types.ts';
import { startJob } from '../commands/start-job.ts';
import { isValidServerName } from '../federation/index.ts';
import { formatDuration } from '../jobs/format.ts';
import { escapeHtml } from '../util/html.ts';
import { fail } from '../util/result.ts';
import { isPlausibleRoomId, LOG_FORMATS } from './log-parser.ts';
import type { LostRoom, LostRoomState } from './lost-rooms.ts';
import { sourceName } from './recovery-config.ts';


function ago(ts: number, now = Date.now()): string {
  return `${formatDuration(now - ts)} ago`;
}

function roomRow(r: LostRoom, now: number): { text: string; html: string } {
  const servers = r.servers.length
    ? r.servers.map((s) => `${s.server}${s.manual ? ' (added)' : ` ×${s.sightings}`}`).join(', ')
    : 'no server known yet';
  const seen = r.sightings > 0 ? `seen ${r.sightings}× · first ${ago(r.firstSeenTs, now)} · last ${ago(r.lastSeenTs, now)}` : `added by ${r.addedBy ?? 'hand'} ${ago(r.firstSeenTs, now)}`;
  const state = r.state === 'lost' ? '' : r.state === 'recovered' ? ` · recovered${r.recoveredByJob !== null ? ` by job #${r.recoveredByJob}` : ''} ${r.recoveredTs ? ago(r.recoveredTs, now) : ''}` : ' · forgotten';
  const text = `• ${r.roomId} — ${servers} · ${seen}${state}`;
  return { text, html: `<li><code>${escapeHtml(r.roomId)}</code> — ${escapeHtml(servers)} · ${escapeHtml(seen)}${escapeHtml(state)}</li>` };
}

export const lostListCommand: Command = {
  name: 'lost list',
  summary: 'rooms this server is no longer in that other servers still send events for',
  description:
    'Lists the lost rooms Steward has recorded from Synapse\'s logs (or that were added by hand): the servers seen sending for each, when, and how often; and how each log source is doing. ' +
    'Recover them with !rejoin all --dry-run, then !rejoin all.',
  params: [],
  flags: [
    { name: 'all', type: 'boolean', description: 'also rooms already recovered or forgotten' },
    { name: 'limit', type: 'int', description: 'how many rooms to list (default 50)', min: 1, max: 10_000 },
  ],
  frontEnds: ['room', 'terminal'],
  examples: ['lost list', 'lost list --all'],
  async execute(ctx, input) {
    const store = ctx.recovery.rooms;
    const states: LostRoomState[] = input.bool('all') ? ['lost', 'recovered', 'forgotten'] : ['lost'];
    const limit = input.int('limit') ?? 50;
    const rooms = store.list(states, limit + 1);
    const counts = store.countByState();
    const now = Date.now();
    const head = `${counts.lost} lost room(s)${counts.recovered ? `, ${counts.recovered} recovered` : ''}${counts.forgotten ? `, ${counts.forgotten} forgotten` : ''}.`;
    const rows = rooms.slice(0, limit).map((r) => roomRow(r, now));
    const more = rooms.length > limit ? `… and more (--limit ${limit * 2}).` : '';
    // Sources as the running service last reported them.
    const configured = new Set(ctx.config.recovery.logSources.map(sourceName));
    const sources = ctx.recovery.sources.statuses().filter((s) => configured.has(s.source));
    const sourceLines = sources.length
      ? sources.map((s) => `${s.source}: ${s.status}${s.detail ? ` (${s.detail})` : ''} · ${s.lines} lines read, ${s.unparsed} not parsed, ${s.sightings} lost-room lines · updated ${ago(s.updatedTs, now)}`)
      : [ctx.config.recovery.logSources.length ? 'Log sources: not started yet (they run in `steward run`).' : 'No log source configured (recovery.log_sources): lost rooms are found only by !lost scan.'];
    const hint = counts.lost > 0 ? 'Plan the recovery with !rejoin all --dry-run, then run !rejoin all.' : '';
    const text = [head, ...rows.map((r) => r.text), ...(more ? [more] : []), 'Log sources:', ...sourceLines.map((l) => `  ${l}`), ...(hint ? [hint] : [])].join('\n');
    const html = `<p>${escapeHtml(head)}</p>${rows.length ? `<ul>${rows.map((r) => r.html).join('')}</ul>` : ''}${more ? `<p>${escapeHtml(more)}</p>` : ''}` +
      `<p>Log sources:</p><ul>${sourceLines.map((l) => `<li>${escapeHtml(l)}</li>`).join('')}</ul>${hint ? `<p>${escapeHtml(hint)}</p>` : ''}`;
    return reply(text, html);
  },
};

export const lostAddCommand: Command = {
  name: 'lost add',
  summary: 'record a lost room by hand, with a server that is in it',
  description: 'Records a room as lost (or brings back one that was recovered or forgotten) and names a server to ask for its state when rejoining.',
  params: [
    { name: 'room', type: 'string', description: 'room id, e.g. !abc:example.org' },
    { name: 'server', type: 'string', description: 'a server in the room, e.g. example.org', optional: true },
  ],
  flags: [],
  frontEnds: ['room', 'terminal'],
  examples: ['lost add !abc:example.org example.org'],
  async execute(ctx, input) {
    const roomId = input.param('room')!;
    const server = input.param('server');
    if (!isPlausibleRoomId(roomId)) return fail('E_USAGE', `"${roomId}" is not a room id (expected !opaque:server.name).`);
    if (server !== undefined && !isValidServerName(server)) return fail('E_USAGE', `"${server}" is not a server name (expected e.g. example.org or example.org:8448).`);
    if (server === undefined && !roomId.includes(':')) return fail('E_USAGE', `${roomId} names no server: give one that is in the room.`);
    if (server === ctx.config.homeserver.serverName) return fail('E_USAGE', 'Name another server that is in the room: this server is the one that lost it.');
    const outcome = ctx.recovery.rooms.add(roomId, server, ctx.sender ?? 'terminal');
    const msg = `${roomId} ${outcome === 'added' ? 'recorded as lost' : outcome === 'reinstated' ? 'recorded as lost again' : 'was already recorded as lost'}${server ? `; ${server} will be asked for its state` : ''}. Rejoin with !rejoin ${roomId} (add --dry-run to see the plan).`;
    return reply(msg, `<p>${escapeHtml(msg)}</p>`);
  },
};

export const lostForgetCommand: Command = {
  name: 'lost forget',
  summary: 'stop listing, announcing and rejoining a lost room',
  description: 'Marks a lost room as forgotten: it is no longer listed, announced or included in !rejoin all, even if the log keeps naming it. !lost add brings it back.',
  params: [{ name: 'room', type: 'string', description: 'room id' }],
  flags: [],
  frontEnds: ['room', 'terminal'],
  examples: ['lost forget !abc:example.org'],
  async execute(ctx, input) {
    const roomId = input.param('room')!;
    if (!ctx.recovery.rooms.forget(roomId)) return fail('E_NOT_FOUND', `${roomId} is not recorded as a lost room (!lost list --all shows them).`);
    const msg = `${roomId} forgotten: it will not be listed, announced or rejoined. !lost add ${roomId} brings it back.`;
    return reply(msg, `<p>${escapeHtml(msg)}</p>`);
  },
};

export const lostScanCommand: Command = {
  name: 'lost scan',
  summary: 'read a historical Synapse log file (plain or gzip) for lost rooms',
  description:
    'Reads one log file from start to end — a rotated homeserver.log.1 or homeserver.log.2.gz, or a journal export — and records the lost rooms it names, as a job with progress. ' +
    'Lines that are not Synapse log lines are counted and skipped.',
  params: [{ name: 'file', type: 'path', description: 'the log file (absolute path in the room; relative to the current folder in the terminal)' }],
  flags: [{ name: 'format', type: 'string', description: `log format: ${LOG_FORMATS.join(', ')} (default: recovery.log_format)` }],
  frontEnds: ['room', 'terminal'],
  examples: ['lost scan /var/log/matrix-synapse/homeserver.log.1', 'lost scan /var/log/matrix-synapse/homeserver.log.2.gz --format json'],
  async execute(ctx, input) {
    const file = input.param('file')!;
    if (ctx.frontEnd === 'room' && !isAbsolute(file)) return fail('E_USAGE', `Give the file's absolute path (Steward's working folder is not yours): ${file}`);
    const format = input.string('format') ?? ctx.config.recovery.logFormat;
    if (!(LOG_FORMATS as readonly string[]).includes(format)) return fail('E_USAGE', `--format must be one of ${LOG_FORMATS.join(', ')}, got "${format}".`);
    return startJob(ctx, 'lost-scan', { path: resolve(file), format });
  },
};

export const rejoinCommand: Command = {
  name: 'rejoin',
  summary: 'rejoin local users to lost rooms, as the remote servers say they are members',
  description:
    'For each room: asks the servers seen sending for it (and --via, and the room id\'s server) for the latest event and the room state at it over federation, verifies every event, ' +
    'and joins each local user whose membership there is "join" — as that user, through the appservice namespace, never by logging in as them. ' +
    'Users that no longer exist or are deactivated are skipped and reported. A server that fails or answers state that does not verify is passed over for the next. ' +
    'Durable and idempotent: a re-run joins nobody twice. The final reply has a table of rooms; a JSON report is written to recovery.reports.',
  params: [{ name: 'rooms', type: 'string', description: 'a room id, several separated by spaces, or "all" for every lost room', rest: true }],
  flags: [
    { name: 'via', type: 'string', description: 'a server to ask first (and to join through)', repeatable: true },
    { name: 'dry-run', type: 'boolean', description: 'only print the plan: servers, users to rejoin, users skipped and why' },
    { name: 'leave-skipped', type: 'boolean', description: 'make skipped users that remote servers still count as joined (deactivated, gone) leave, over federation as this server' },
  ],
  frontEnds: ['room', 'terminal'],
  examples: ['rejoin all --dry-run', 'rejoin all', 'rejoin !abc:example.org --via example.org'],
  async execute(ctx, input) {
    const words = (input.param('rooms') ?? '').split(/\s+/).filter(Boolean);
    const all = words.length === 1 && words[0]!.toLowerCase() === 'all';
    if (!all) {
      const bad = words.filter((w) => !isPlausibleRoomId(w));
      if (bad.length) return fail('E_USAGE', `Not a room id: ${bad.join(', ')}. Give room ids (!opaque:server) or "all".`);
    }
    const via = [...new Set(input.list('via'))];
    const badVia = via.filter((s) => !isValidServerName(s));
    if (badVia.length) return fail('E_USAGE', `--via expects server names, got ${badVia.join(', ')}.`);
    if (ctx.config.federation.signingKeyPath === undefined) {
      return fail('E_NO_SIGNING_KEY', 'Rejoining asks other servers for room state over federation, signed as this homeserver: set federation.signing_key_path in the config to Synapse\'s signing key file (signing_key_path in homeserver.yaml).');
    }
    return startJob(ctx, 'rejoin', { rooms: all ? [] : [...new Set(words)], all, via, dryRun: input.bool('dry-run'), ...(input.bool('leave-skipped') ? { leaveSkipped: true } : {}) });
  },
};

export const RECOVERY_COMMANDS: readonly Command[] = [lostListCommand, lostAddCommand, lostForgetCommand, lostScanCommand, rejoinCommand];
