/**
 * Reads Synapse's log lines for the signs of rooms this server no longer knows while the rest of
 * federation still sends it events. Pure: one line in, one record out; no I/O.
 *
 * Formats understood:
 * - Synapse's default format `%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s`,
 *   anywhere in the line (journald or worker-name prefixes are skipped), and the shorter
 *   `%(name)s: [%(request)s] %(message)s` some deployments use;
 * - structured logging: `synapse.logging.JsonFormatter` / `TerseJsonFormatter` (`log`, `namespace`,
 *   `level`, `time`, `request`, plus the request's `requester` / `authenticated_entity`), and
 *   `GcpJsonFormatter` (`message`, `logger`, `severity`, ISO `time`).
 */
import { isValidServerName } from '../federation/index.ts';

export type LogFormat = 'auto' | 'default' | 'json';
export const LOG_FORMATS: readonly LogFormat[] = ['auto', 'default', 'json'];

export interface LogRecord {
  /** When the line says it was written (ms since the epoch), if it carries a timestamp. */
  readonly ts: number | undefined;
  /** The Python logger, e.g. synapse.federation.federation_server. */
  readonly logger: string;
  /** The log context ("request") the line was written in, e.g. PUT-26, or PUT-26-!room:hs-$event. */
  readonly request: string | undefined;
  readonly message: string;
  /** Structured logs only: the authenticated requester of the HTTP request (a server name for federation). */
  readonly requester: string | undefined;
}

// The timestamp is local time without a zone, as Python's asctime writes it.
const DEFAULT_LINE = /(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:[,.](\d{1,6}))? - ([\w.-]+) - \d+ - [A-Z]+ - (\S*?) - (.*)$/;
const BRACKET_LINE = /(?:^|\s)(synapse(?:\.[\w-]+)*|twisted): \[([^\]\s]*)\] (.*)$/;

/** Parses one line, or answers undefined when it is in none of the formats (tracebacks, noise). */
export function parseLogLine(line: string, format: LogFormat = 'auto'): LogRecord | undefined {
  const text = line.endsWith('\r') ? line.slice(0, -1) : line;
  if (format !== 'default') {
    const brace = text.indexOf('{"');
    if (brace >= 0 && text.trimEnd().endsWith('}')) {
      const json = parseJsonLine(text.slice(brace));
      if (json || format === 'json') return json;
    } else if (format === 'json') {
      return undefined;
    }
  }
  return parseDefaultLine(text);
}

function parseDefaultLine(text: string): LogRecord | undefined {
  const m = DEFAULT_LINE.exec(text);
  if (m) {
    const [, y, mo, d, h, mi, s, frac, logger, request, message] = m;
    const ms = frac ? Math.floor(Number(frac.padEnd(3, '0').slice(0, 3))) : 0;
    const ts = new Date(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s), ms).getTime();
    return { ts: Number.isFinite(ts) ? ts : undefined, logger: logger!, request: request || undefined, message: message!, requester: undefined };
  }
  const b = BRACKET_LINE.exec(text);
  if (b) return { ts: undefined, logger: b[1]!, request: b[2] || undefined, message: b[3]!, requester: undefined };
  return undefined;
}

function parseJsonLine(text: string): LogRecord | undefined {
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return undefined;
  const o = obj as Record<string, unknown>;
  const message = typeof o.log === 'string' ? o.log : typeof o.message === 'string' ? o.message : undefined;
  const logger = typeof o.namespace === 'string' ? o.namespace : typeof o.logger === 'string' ? o.logger : undefined;
  if (message === undefined || logger === undefined) return undefined;
  let ts: number | undefined;
  if (typeof o.time === 'number' && Number.isFinite(o.time)) ts = Math.round(o.time * 1000);
  else if (typeof o.time === 'string') {
    const parsed = Date.parse(o.time);
    if (Number.isFinite(parsed)) ts = parsed;
  }
  const entity = typeof o.authenticated_entity === 'string' ? o.authenticated_entity : typeof o.requester === 'string' ? o.requester : undefined;
  return { ts, logger, request: typeof o.request === 'string' && o.request ? o.request : undefined, message, requester: entity };
}

/** What a line tells about lost rooms. */
export type LineFact =
  | { readonly kind: 'sighting'; readonly sighting: Sighting; readonly awaitsOrigin: boolean }
  | { readonly kind: 'origin'; readonly request: string; readonly origin: string }
  | { readonly kind: 'none' };

export type SightingKind = 'pdu' | 'typing' | 'receipt' | 'pdu-not-in-room';

/** One sign that a room this server is not in is still sending it events. */
export interface Sighting {
  readonly roomId: string;
  /** The server that sent it; undefined until learned (for `Ignoring PDU` lines, from the access log). */
  readonly server: string | undefined;
  readonly ts: number | undefined;
  readonly kind: SightingKind;
  readonly request: string | undefined;
}

const UNKNOWN_ROOM = /^Ignoring PDU for unknown room_id: (\S+)$/;
const EDU_NOT_IN_ROOM = /^Ignoring (typing update|receipt) for room (['"])(.+?)\2 from server (\S+) as we're not in the room$/;
const PDU_NOT_IN_ROOM = /^Ignoring PDU from (\S+) as we're not in the room$/;
// "<ip> - <site tag> - {<requester>} Processed request: ... "<METHOD> <path> <proto>" ..."
const ACCESS = /^\S+ - \S+ - \{([^}]*)\} Processed request: .*? "([A-Z]+) (\S+) [^"]*"/;
// In a per-PDU log context the room id and event id are appended to the request id.
const NESTED_ROOM = /-(![^\s$]+?)-\$\S*$/;

const MAX_ID_LENGTH = 255;

/** Room ids come from remote servers: accept only ones that look like room ids. */
export function isPlausibleRoomId(roomId: string): boolean {
  if (roomId.length < 2 || roomId.length > MAX_ID_LENGTH || !roomId.startsWith('!')) return false;
  if (/[\s\u0000-\u001f\u007f"'<>]/.test(roomId)) return false;
  const colon = roomId.indexOf(':');
  if (colon < 0) return /^![A-Za-z0-9_-]{10,}$/.test(roomId); // room version 12: !<create event hash>
  return colon > 1 && isValidServerName(roomId.slice(colon + 1));
}

function plausibleServer(name: string | undefined): string | undefined {
  return name !== undefined && name.length <= MAX_ID_LENGTH && isValidServerName(name) ? name : undefined;
}

/** Classifies one parsed line. */
export function factOf(record: LogRecord): LineFact {
  const { message, logger } = record;
  if (!message.startsWith('Ignoring ') && !message.includes('Processed request')) return { kind: 'none' };
  let m = UNKNOWN_ROOM.exec(message);
  if (m && logger.startsWith('synapse.federation')) {
    if (!isPlausibleRoomId(m[1]!)) return { kind: 'none' };
    const server = plausibleServer(record.requester);
    return { kind: 'sighting', sighting: { roomId: m[1]!, server, ts: record.ts, kind: 'pdu', request: record.request }, awaitsOrigin: server === undefined && record.request !== undefined };
  }
  m = EDU_NOT_IN_ROOM.exec(message);
  if (m) {
    const server = plausibleServer(m[4]);
    if (!isPlausibleRoomId(m[3]!) || !server) return { kind: 'none' };
    return { kind: 'sighting', sighting: { roomId: m[3]!, server, ts: record.ts, kind: m[1] === 'receipt' ? 'receipt' : 'typing', request: record.request }, awaitsOrigin: false };
  }
  m = PDU_NOT_IN_ROOM.exec(message);
  if (m) {
    const room = record.request ? NESTED_ROOM.exec(record.request)?.[1] : undefined;
    const server = plausibleServer(m[1]);
    if (!room || !isPlausibleRoomId(room) || !server) return { kind: 'none' };
    return { kind: 'sighting', sighting: { roomId: room, server, ts: record.ts, kind: 'pdu-not-in-room', request: record.request }, awaitsOrigin: false };
  }
  m = ACCESS.exec(message);
  if (m && record.request && m[3]!.startsWith('/_matrix/federation/')) {
    // For a federation request the requester is the authenticated origin server.
    const origin = plausibleServer(m[1]!.split('|').pop());
    if (origin) return { kind: 'origin', request: record.request, origin };
  }
  return { kind: 'none' };
}

export interface CorrelatorOptions {
  /** An `Ignoring PDU` line waits at most this many lines for its access-log line. */
  readonly maxPendingLines?: number;
  /** … and at most this long (live following). */
  readonly maxPendingMs?: number;
  /** Bound on requests waiting at once; the oldest are released without an origin beyond it. */
  readonly maxPendingRequests?: number;
}

interface Pending {
  readonly sightings: Sighting[];
  readonly line: number;
  readonly at: number;
}

export interface LineCounters {
  lines: number;
  parsed: number;
  unparsed: number;
  sightings: number;
}

/**
 * Turns a stream of lines into sightings. `Ignoring PDU for unknown room_id` names no origin, so
 * such a sighting waits for the access-log line of the same request (written when the request
 * finishes), which names the authenticated origin in braces. Request ids restart when Synapse
 * restarts, so waiting is bounded in lines and time.
 */
export class SightingCorrelator {
  readonly counters: LineCounters = { lines: 0, parsed: 0, unparsed: 0, sightings: 0 };
  private readonly format: LogFormat;
  private readonly pending = new Map<string, Pending>();
  private readonly maxLines: number;
  private readonly maxMs: number;
  private readonly maxRequests: number;

  constructor(format: LogFormat, opts: CorrelatorOptions = {}) {
    this.format = format;
    this.maxLines = opts.maxPendingLines ?? 20_000;
    this.maxMs = opts.maxPendingMs ?? 60_000;
    this.maxRequests = opts.maxPendingRequests ?? 10_000;
  }

  /** Feeds one line; answers the sightings that are complete now (possibly none). */
  feed(line: string, now = Date.now()): Sighting[] {
    if (line.trim() === '') return [];
    this.counters.lines += 1;
    const record = parseLogLine(line, this.format);
    if (!record) {
      this.counters.unparsed += 1;
      return this.expire(now);
    }
    this.counters.parsed += 1;
    const fact = factOf(record);
    const out: Sighting[] = [];
    if (fact.kind === 'sighting') {
      this.counters.sightings += 1;
      if (fact.awaitsOrigin) {
        const key = fact.sighting.request!;
        const p = this.pending.get(key);
        if (p) p.sightings.push(fact.sighting);
        else this.pending.set(key, { sightings: [fact.sighting], line: this.counters.lines, at: now });
        if (this.pending.size > this.maxRequests) {
          const oldest = this.pending.keys().next().value!;
          out.push(...this.pending.get(oldest)!.sightings);
          this.pending.delete(oldest);
        }
      } else {
        out.push(fact.sighting);
      }
    } else if (fact.kind === 'origin') {
      const p = this.pending.get(fact.request);
      if (p) {
        this.pending.delete(fact.request);
        for (const s of p.sightings) out.push({ ...s, server: fact.origin });
      }
    }
    out.push(...this.expire(now));
    return out;
  }

  /** Releases every waiting sighting without an origin (end of a file, or a timer). */
  flush(): Sighting[] {
    const out = [...this.pending.values()].flatMap((p) => p.sightings);
    this.pending.clear();
    return out;
  }

  /** Releases waiting sightings that are too old; call from a timer when following live. */
  expire(now = Date.now()): Sighting[] {
    if (this.pending.size === 0) return [];
    const out: Sighting[] = [];
    for (const [key, p] of this.pending) {
      if (this.counters.lines - p.line <= this.maxLines && now - p.at <= this.maxMs) break; // insertion order: the rest are newer
      out.push(...p.sightings);
      this.pending.delete(key);
    }
    return out;
  }

  get waiting(): number {
    return this.pending.size;
  }
}
