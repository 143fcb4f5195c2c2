import { resolve } from 'node:path';
import type { CommandContext } from '../commands/context.ts';
import type { Command, CommandOutput } from '../commands/types.ts';
import type { FederationClient } from '../federation/federation-client.ts';
import { isJsonObject } from '../federation/json-object.ts';
import { isValidServerName } from '../federation/server-name.ts';
import { escapeHtml } from '../util/html.ts';
import { fail, ok, type Result } from '../util/result.ts';
import { exportSigningKey } from './export-key.ts';
import { parseQuery, roomReply, runQuery, terminalReply } from './query.ts';
import { fetchRoomState, type FetchedRoomState, type PartCounts, type StatePoint } from '../federation/room-state.ts';
import { stateFileJson, stateFilePath, writeStateFile } from './state-file.ts';
import { summariseState, summaryHtml, summaryLines } from './state-summary.ts';

export const fedQueryCommand: Command = {
  name: 'fed query',
  summary: 'a signed federation request to any server, answer as JSON',
  description:
    'Sends a request signed with our server\'s key (X-Matrix) to <server>, like `synadm raw` for the server-server API. ' +
    'Only paths under /_matrix/ are allowed; characters that cannot go on the request line as typed (spaces, # as in aliases) are percent-encoded. ' +
    'With --json and no --method the request is a POST. In the room the answer is a summary (time, size) and the JSON cut to a few KB; ' +
    'in the terminal the whole JSON is printed, nothing else. Errors (4xx/5xx with the server\'s errcode and error, timeouts, addresses refused by the address guard) are reported as failures.',
  params: [
    { name: 'server', type: 'string', description: 'server name to ask, e.g. matrix.org or example.org:8448' },
    { name: 'path', type: 'string', description: 'path and query string, starting with /_matrix/' },
  ],
  flags: [
    { name: 'method', type: 'string', description: 'GET (default), POST or PUT' },
    { name: 'json', type: 'string', description: 'request body as JSON (quote it); implies POST unless --method says otherwise' },
  ],
  frontEnds: ['room', 'terminal'],
  examples: [
    'fed query matrix.org /_matrix/federation/v1/version',
    'fed query example.org /_matrix/federation/v1/query/directory?room_alias=#room:example.org',
    'fed query example.org /_matrix/key/v2/query --json \'{"server_keys": {"example.org": {}}}\'',
  ],
  async execute(ctx, input) {
    const request = parseQuery(input.param('server')!, input.param('path')!, input.string('method'), input.string('json'));
    if (!request.ok) return request;
    const access = await ctx.federation.get();
    if (!access.ok) return access;
    const answer = await runQuery(access.value.client, request.value);
    if (!answer.ok) return answer;
    return ok({ kind: 'reply', ...(ctx.frontEnd === 'terminal' ? terminalReply(answer.value) : roomReply(answer.value)) });
  },
};

export const fedStateCommand: Command = {
  name: 'fed state',
  summary: 'a room\'s state as another server sees it, verified and summarised, full state in a file',
  description:
    'Asks <server> over federation for the room\'s state (timestamp_to_event, then /state with the event), checks every state and auth-chain event ' +
    '(content hash, signatures against the servers\' keys, event id, room id; events that fail are dropped and counted, never trusted) and summarises it: ' +
    'name, members by server and membership, power levels, join rule, history visibility. The verified state and auth chain go to ' +
    '<storage.dumps>/fed-state/<room>-<time>.json (0600). Without --at or --ts: the state now (after the latest event the server has). ' +
    '--ts TIME: the state after the last event at or before TIME (ms since the epoch, or ISO-8601 such as 2025-06-01T12:00:00Z). ' +
    '--at EVENT: the state at that event as the spec defines it, i.e. before it (what it was authorised against). ' +
    'The server defaults to the one in the room id (room versions up to 11; later room ids name no server, so give --server). ' +
    'Our server must be in the room: servers show room state only to servers in it.',
  params: [{ name: 'room', type: 'room', description: 'room id (!…) or alias (#…, resolved over federation)' }],
  flags: [
    { name: 'server', type: 'string', description: 'server to ask (default: the room id\'s server)' },
    { name: 'at', type: 'string', description: 'event id ($…): the state before this event' },
    { name: 'ts', type: 'string', description: 'time: ms since the epoch or ISO-8601; the state after the last event at or before it' },
  ],
  frontEnds: ['room', 'terminal'],
  examples: [
    'fed state !abc:example.org',
    'fed state #room:example.org --server other.example',
    'fed state !abc:example.org --ts 2025-06-01T12:00:00Z',
    'fed state !abc:example.org --at $eventid',
  ],
  async execute(ctx, input) {
    return fedState(ctx, input.param('room')!, input.string('server'), input.string('at'), input.string('ts'));
  },
};

export const exportKeyCommand: Command = {
  name: 'export-key',
  summary: 'copy Synapse\'s signing key into a file for a migration bundle (terminal only)',
  description:
    'Reads Synapse\'s signing key (federation.signing_key_path), checks that it parses, and writes it to FILE in Synapse\'s own key-file format ' +
    '(ed25519 <version> <seed>), mode 0600, through a temporary file; an existing FILE is never overwritten. Prints the key id and public key, never the seed. ' +
    'Runs only in the terminal: the key never passes through a room.',
  params: [],
  flags: [{ name: 'out', type: 'path', description: 'file to write; must not exist yet' }],
  frontEnds: ['terminal'],
  offline: true,
  examples: ['export-key --out /root/migration/signing.key'],
  async execute(ctx, input) {
    const out = input.string('out');
    if (out === undefined) return fail('E_USAGE', 'export-key needs --out FILE: the file to write (it must not exist yet).');
    const source = ctx.config.federation.signingKeyPath;
    if (source === undefined) {
      return fail('E_NO_SIGNING_KEY', 'No signing key configured: set federation.signing_key_path in the config to Synapse\'s signing key file (signing_key_path in homeserver.yaml).');
    }
    const exported = await exportSigningKey(source, resolve(out));
    if (!exported.ok) return exported;
    const { keys, warnings } = exported.value;
    const server = ctx.config.homeserver.serverName;
    const lines = [
      `Wrote ${exported.value.out} (mode 0600): Synapse's signing key${keys.length > 1 ? 's' : ''} for ${server}, from ${source}.`,
      ...keys.map((k, i) => `  ${k.keyId}  public key ${k.publicKey}${keys.length > 1 && i === 0 ? '  (the one Synapse signs with)' : ''}`),
      `WARNING: this file is ${server}'s private key. Whoever holds it can sign requests and events as ${server}. ` +
        'Keep it secret: store it encrypted, move it over secure channels only, and delete copies you no longer need.',
      ...warnings.map((w) => `WARNING: ${w}`),
    ];
    const text = lines.join('\n');
    return ok({ kind: 'reply', text, html: `<pre>${escapeHtml(text)}</pre>` });
  },
};

export const FED_COMMANDS: readonly Command[] = [fedQueryCommand, fedStateCommand, exportKeyCommand];

/** Milliseconds since the epoch, or an ISO-8601 date/time (without a zone: local time; a bare date: UTC midnight). */
export function parseTime(raw: string): Result<number> {
  const text = raw.trim();
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    if (!Number.isSafeInteger(n)) return fail('E_USAGE', `--ts ${text} is out of range.`);
    if (n < 100_000_000_000) return fail('E_USAGE', `--ts ${text} looks like seconds: give milliseconds since the epoch (${text}000) or an ISO-8601 time.`);
    return ok(n);
  }
  if (!/^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/i.test(text)) {
    return fail('E_USAGE', `--ts expects milliseconds since the epoch or an ISO-8601 time such as 2025-06-01T12:00:00Z, got "${raw}".`);
  }
  const ts = Date.parse(text);
  if (Number.isNaN(ts)) return fail('E_USAGE', `--ts "${raw}" is not a valid date.`);
  return ok(ts);
}

/** The server part of a room id of versions up to 11 (`!opaque:server`); later room ids have none. */
export function roomIdServer(roomId: string): string | undefined {
  const colon = roomId.indexOf(':');
  if (colon < 0) return undefined;
  const server = roomId.slice(colon + 1);
  return isValidServerName(server) ? server : undefined;
}

interface ResolvedRoom {
  readonly roomId: string;
  readonly server: string;
  readonly alias?: string;
}

async function resolveRoom(client: Pick<FederationClient, 'request'>, ref: string, serverFlag: string | undefined): Promise<Result<ResolvedRoom>> {
  if (serverFlag !== undefined && !isValidServerName(serverFlag)) return fail('E_USAGE', `--server "${serverFlag}" is not a server name.`);
  if (ref.startsWith('!')) {
    const server = serverFlag ?? roomIdServer(ref);
    if (server === undefined) {
      return fail('E_USAGE', `${ref} names no server (room version 12 and later): add --server with a server that is in the room.`);
    }
    return ok({ roomId: ref, server });
  }
  const aliasServer = roomIdServer(ref);
  if (aliasServer === undefined) return fail('E_USAGE', `${ref} is not a room alias of the form #name:server.`);
  const answer = await client.request<unknown>(aliasServer, 'GET', `/_matrix/federation/v1/query/directory?room_alias=${encodeURIComponent(ref)}`);
  if (!answer.ok) return { ok: false, error: { ...answer.error, human: `Resolving ${ref}: ${answer.error.human}` } };
  const body = answer.value;
  if (!isJsonObject(body) || typeof body['room_id'] !== 'string' || !body['room_id'].startsWith('!')) {
    return fail('E_BAD_RESPONSE', `${aliasServer} answered the alias query for ${ref} without a room id.`);
  }
  const servers = Array.isArray(body['servers']) ? body['servers'].filter((s): s is string => typeof s === 'string' && isValidServerName(s)) : [];
  const server = serverFlag ?? roomIdServer(body['room_id']) ?? servers[0] ?? aliasServer;
  return ok({ roomId: body['room_id'], server, alias: ref });
}

async function fedState(ctx: CommandContext, ref: string, serverFlag: string | undefined, at: string | undefined, tsText: string | undefined): Promise<Result<CommandOutput>> {
  if (at !== undefined && tsText !== undefined) return fail('E_USAGE', 'Give --at or --ts, not both.');
  let point: StatePoint;
  if (at !== undefined) {
    if (!/^\$[^\s]+$/.test(at)) return fail('E_USAGE', `--at expects an event id ($…), got "${at}".`);
    point = { kind: 'event', eventId: at };
  } else {
    const ts = tsText === undefined ? ok(Date.now()) : parseTime(tsText);
    if (!ts.ok) return ts;
    point = { kind: 'ts', ts: ts.value };
  }
  const access = await ctx.federation.get();
  if (!access.ok) return access;
  const room = await resolveRoom(access.value.client, ref, serverFlag);
  if (!room.ok) return room;
  const fetched = await fetchRoomState(access.value, room.value.roomId, room.value.server, point);
  if (!fetched.ok) return fetched;
  const fetchedTs = Date.now();
  const summary = summariseState(fetched.value.state, fetched.value.roomVersion);
  const file = stateFilePath(ctx.config.storage.dumps, fetched.value.roomId, fetchedTs);
  const written = await writeStateFile(file, stateFileJson(fetched.value, summary, ctx.config.homeserver.serverName, fetchedTs));
  if (!written.ok) return written;

  const f = fetched.value;
  const head = `State of ${f.roomId}${room.value.alias ? ` (${room.value.alias})` : ''} as ${f.server} sees it, room version ${f.roomVersion}`;
  const where = positionLine(f, point);
  const verified = verificationLine(f);
  const rejected = f.rejected.slice(0, 5).map((r) => `  ${r.eventId ?? '(no id)'} ${r.type ?? '?'}${r.stateKey !== null ? ` "${r.stateKey}"` : ''} [${r.where}]: ${r.code} ${r.message}`);
  if (f.rejected.length > rejected.length) rejected.push(`  … ${f.rejected.length - rejected.length} more in the file`);
  const warnings = f.warnings.slice(0, 5).map((w) => `Warning: ${w}`);
  const text = [head, where, ...summaryLines(summary), verified, ...rejected, ...warnings, `Full state: ${file}`].join('\n');
  const e = escapeHtml;
  const html =
    `<p><b>${e(head)}</b><br>${e(where)}</p><p>${summaryHtml(summary)}</p>` +
    `<p>${f.rejected.length ? '⚠️ ' : '✅ '}${e(verified)}</p>` +
    (rejected.length ? `<pre>${e(rejected.join('\n'))}</pre>` : '') +
    (warnings.length ? `<p>${warnings.map(e).join('<br>')}</p>` : '') +
    `<p>Full state: <code>${e(file)}</code></p>`;
  return ok({ kind: 'reply', text, html });
}

function positionLine(f: FetchedRoomState, point: StatePoint): string {
  const when = f.eventTs !== null ? ` (${new Date(f.eventTs).toISOString()})` : '';
  if (point.kind === 'event') return `At ${f.eventId}${when}: the state before it, which it was authorised against.`;
  const asked = new Date(point.ts).toISOString();
  if (f.position === 'after') return `After ${f.eventId}${when}, the last event at or before ${asked}.`;
  return `Before ${f.eventId}${when}, the last event at or before ${asked} (the event itself could not be applied; see the warnings).`;
}

function countLine(c: PartCounts, what: string): string {
  return `${c.verified} of ${c.received} ${what}${c.redacted ? ` (${c.redacted} only as redacted copies)` : ''}`;
}

function verificationLine(f: FetchedRoomState): string {
  const base = `Verified ${countLine(f.counts.state, 'state events')} and ${countLine(f.counts.authChain, 'auth chain events')}.`;
  if (f.rejected.length === 0) return base;
  const byCode = new Map<string, number>();
  for (const r of f.rejected) byCode.set(r.code, (byCode.get(r.code) ?? 0) + 1);
  return `${base} ${f.rejected.length} rejected and dropped (${[...byCode].map(([c, n]) => `${c} ×${n}`).join(', ')}):`;
}
