/**
 * The last line of defence before a snapshot is written: every sensitive string of the source
 * (/sync answer and profile) is searched for in the serialised output; one hit and the file is not
 * written. Pure: no I/O.
 *
 * What counts as sensitive, and how it is searched (case-insensitive, Unicode NFKC):
 * - identifiers, searched as substrings anywhere in the output (keys and values): user ids, room
 *   ids, event ids, aliases, mxc URIs and their media ids, server names with a dot or a port,
 *   multi-word display names, room names and topics as whole strings. Identifiers are also pulled
 *   out of free text (a user id inside a message body);
 * - words, matched against the output's words: localparts, display names, every word of every
 *   string under an event's `content` or `unsigned` (bodies, names, topics, reasons, reaction
 *   keys, old display names in prev_content, content of dropped event types, account data) and of
 *   non-user state keys. A word is a run of letters and digits; words of at least 3 characters are
 *   checked (1–2 letter words carry almost nothing and collide with the format). A word leaks if
 *   it equals a word of the output, or, from 5 characters on, if it is part of one. Not checked:
 *   all-`x` words (the anonymised text itself), numbers shorter than 6 digits (power levels, sizes
 *   and counters), and words of the format's own vocabulary (field names, whitelisted event types
 *   and keys, enumerated values such as "join" or "public"): these cannot be told apart from the
 *   format and are counted as "unchecked".
 *
 * Reports name what leaked by kind and by the snapshot's own numbering ("display name of user #3",
 * "user id of user #2", "name of room #1") plus a masked form ("A…(13)"), never the string itself.
 *
 * Complement's README heuristic (`grep -Ei "the|matrix|and|mxc"`, unique lines) runs too, as a
 * warning: format words such as org.matrix.custom.html match it, so its count is reported, not enforced.
 */
import { asArray, asObject, isObject, localpartOf, serverOf, USER_ID } from './json.ts';
import { ANON_SERVER, ENUMS, KNOWN_EVENT_TYPES, WHITELISTED_KEYS, WHITELISTED_TYPES } from './rules.ts';

export const MIN_WORD = 3;
export const MIN_PART_WORD = 5;
export const MIN_NUMBER_WORD = 6;

export type SensitiveMode = 'id' | 'word';

export interface SensitiveString {
  readonly value: string;
  readonly kind: string;
  readonly mode: SensitiveMode;
}

export interface Leak {
  readonly kind: string;
  readonly masked: string;
  /** Where in the output it was found, with non-format keys hidden: `blueprint.Homeservers[0].Rooms[1].Events[3].content.msgtype`. */
  readonly where: string;
}

export interface LeakReport {
  /** Sensitive strings searched for. */
  readonly checked: number;
  /** Sensitive words skipped because they are also words of the format (see above). */
  readonly unchecked: number;
  readonly leaks: readonly Leak[];
  /** Unique output lines matching Complement's `the|matrix|and|mxc` heuristic (warning only). */
  readonly heuristicHits: number;
}

export interface LabelSource {
  userLabel(userId: string): string | undefined;
  roomLabel(roomId: string): string | undefined;
}

const WORD = /[\p{L}\p{N}]+/gu;
const ID_SIGILS = ['mxc://', '@', '!', '$', '#'];

function norm(s: string): string {
  return s.normalize('NFKC').toLowerCase();
}

export function words(text: string): string[] {
  return norm(text).match(WORD) ?? [];
}

/** At most a first character and a length: enough to tell leaks apart, too little to read. */
export function mask(s: string): string {
  const first = [...s][0] ?? '';
  return `${first}…(${[...s].length})`;
}

/** Field names and values the format itself puts in every snapshot. */
const FORMAT_STRINGS: readonly string[] = [
  'blueprint', 'base_image_uri', 'Name', 'Homeservers', 'Users', 'Rooms', 'Localpart', 'DisplayName', 'AvatarURL',
  'AccountData', 'Type', 'Value', 'DeviceID', 'Ref', 'Creator', 'CreateRoom', 'Events', 'KeepAccessTokensForUsers',
  'ApplicationServices', 'BaseImageURI', 'type', 'sender', 'state_key', 'content', 'event_id', 'redacts',
  'room_version', 'creation_content', 'predecessor', 'room_id', 'm.direct', 'yes', ANON_SERVER, 'anon', 'alias',
  'server', 'device', 'true', 'false', 'null', 'snapshot', 'complement', 'synapse', 'dendrite', 'latest',
  'steward', 'format', 'created_ts', 'timeline_limit', 'counts', 'leak_check', 'sensitive_strings', 'leaks',
  'heuristic_hits', 'rooms', 'rooms_failed', 'users', 'blueprint_events', 'events_read', 'events_kept',
  'events_not_whitelisted', 'events_malformed', 'reactions_kept', 'reactions_dropped', 'redactions_kept',
  'redactions_dropped', 'relations_removed', 'transitions_skipped', 'invites_added', 'm.in_reply_to',
  'm.relates_to', 'm.new_content', 'm.mentions', 'user_ids', 'm.topic', 'm.text', 'ciphertext_length',
];

export const FORMAT_VOCABULARY: ReadonlySet<string> = new Set([
  ...FORMAT_STRINGS,
  ...WHITELISTED_TYPES,
  ...KNOWN_EVENT_TYPES,
  ...Object.values(WHITELISTED_KEYS).flat(),
  ...Object.values(ENUMS).flat(),
].flatMap(words));

/** Output keys shown in a leak's location; any other key (a user id in a power-levels map…) is hidden. */
const SHOWN_KEYS: ReadonlySet<string> = new Set([
  ...FORMAT_STRINGS,
  ...Object.values(WHITELISTED_KEYS).flat().flatMap((k) => k.split('.')),
  'm.federate', 'm.in_reply_to', 'notifications', 'info', 'allow', 'deny', 'pinned', 'additional_creators',
]);

/** Gathers the sensitive strings of a source, labelled by kind. */
export class SensitiveCollector {
  private readonly seen = new Map<string, SensitiveString>();
  private readonly labels: LabelSource;
  private readonly ownServer: string;

  constructor(opts: { serverName: string; labels: LabelSource }) {
    this.labels = opts.labels;
    this.ownServer = opts.serverName;
    this.server(opts.serverName);
  }

  list(): SensitiveString[] {
    return [...this.seen.values()];
  }

  private add(value: string, kind: string, mode: SensitiveMode): void {
    const v = norm(value);
    if (v.length < MIN_WORD) return;
    const key = `${mode}\u0000${v}`;
    if (!this.seen.has(key)) this.seen.set(key, { value: v, kind, mode });
  }

  private userLabel(userId: string): string {
    return this.labels.userLabel(userId) ?? 'a user outside the snapshot';
  }

  private roomLabel(roomId: string | undefined): string {
    return (roomId && this.labels.roomLabel(roomId)) || 'a room outside the snapshot';
  }

  server(name: string): void {
    const kind = name === this.ownServer ? 'our server name' : 'a server name';
    // Its labels are searched as words ("localhost", "example"); the whole name only when no label
    // is checkable on its own (searching every string for every server would not scale).
    for (const w of words(name)) this.add(w, `part of ${kind}`, 'word');
    if (!words(name).some(checkableWord)) this.add(name, kind, 'id');
  }

  user(userId: string): void {
    const label = this.userLabel(userId);
    this.add(userId, `user id of ${label}`, 'id');
    for (const w of words(localpartOf(userId))) this.add(w, `localpart of ${label}`, 'word');
    const server = serverOf(userId);
    if (server) this.server(server);
  }

  room(roomId: string): void {
    this.add(roomId, `room id of ${this.roomLabel(roomId)}`, 'id');
    const server = serverOf(roomId);
    if (server) this.server(server);
  }

  /** Identifiers inside any string: whole or embedded in text. */
  identifiers(s: string): void {
    for (const m of s.matchAll(/@[^\s:@"'<>]+:[A-Za-z0-9.\-[\]]+(?::\d{1,5})?/g)) if (USER_ID.test(m[0])) this.user(m[0]);
    for (const m of s.matchAll(/#[^\s:#"'<>]+:[A-Za-z0-9.\-[\]]+(?::\d{1,5})?/g)) {
      this.add(m[0], 'a room alias', 'id');
      for (const w of words(localpartOf(m[0]))) this.add(w, 'a word of a room alias', 'word');
      const server = serverOf(m[0]);
      if (server) this.server(server);
    }
    for (const m of s.matchAll(/![A-Za-z0-9_\-+/=]{8,}(?::[A-Za-z0-9.\-[\]]+(?::\d{1,5})?)?/g)) this.room(m[0]);
    for (const m of s.matchAll(/\$[A-Za-z0-9_\-+/=]{8,}(?::[A-Za-z0-9.\-[\]]+(?::\d{1,5})?)?/g)) {
      this.add(m[0], 'an event id', 'id');
      const server = serverOf(m[0]);
      if (server) this.server(server);
    }
    for (const m of s.matchAll(/mxc:\/\/([^\s/"'<>]+)\/([A-Za-z0-9_\-=.]+)/gi)) {
      this.add(m[0], 'an mxc URI', 'id');
      for (const w of words(m[2]!)) this.add(w, 'a media id', 'word');
      this.server(m[1]!);
    }
  }

  /**
   * Free text: its identifiers and its words. A name (`whole`) made only of words that cannot be
   * checked on their own ("Public Room") is also searched as a whole string.
   */
  text(s: string, kind: string, whole = false): void {
    this.identifiers(s);
    const ws = words(s);
    for (const w of ws) this.add(w, kind, 'word');
    const trimmed = s.trim();
    if (whole && /\s/.test(trimmed) && trimmed.length >= 6 && !ws.some(checkableWord) && !/^[x\s]+$/i.test(trimmed)) this.add(trimmed, kind, 'id');
  }

  /** Every string of a value (keys too): identifiers always, words when `wordKind` is given. */
  walk(value: unknown, wordKind?: (path: readonly string[]) => { kind: string; whole: boolean }, path: string[] = []): void {
    if (typeof value === 'string') {
      if (wordKind) {
        const k = wordKind(path);
        this.text(value, k.kind, k.whole);
      } else {
        this.identifiers(value);
      }
    } else if (Array.isArray(value)) {
      for (const v of value) this.walk(v, wordKind, path);
    } else if (isObject(value)) {
      for (const [k, v] of Object.entries(value)) {
        if (wordKind) this.text(k, wordKind(path).kind);
        else this.identifiers(k);
        this.walk(v, wordKind, [...path, k]);
      }
    }
  }

  /** One event of a room (or of account data when roomId is undefined). */
  event(ev: unknown, roomId: string | undefined): void {
    const e = asObject(ev);
    if (!e) return;
    const type = typeof e.type === 'string' ? e.type : '';
    const known = WHITELISTED_TYPES.includes(type);
    const where = roomId ? ` in ${this.roomLabel(roomId)}` : '';
    const stateKey = typeof e.state_key === 'string' ? e.state_key : undefined;
    const kindOf = (path: readonly string[]): { kind: string; whole: boolean } => {
      const key = path.join('.');
      if (type === 'm.room.member' && /(^|\.)displayname$/.test(key)) return { kind: `display name of ${stateKey && USER_ID.test(stateKey) ? this.userLabel(stateKey) : 'a member'}`, whole: true };
      if (type === 'm.room.member' && /(^|\.)reason$/.test(key)) return { kind: `a membership reason${where}`, whole: false };
      if (type === 'm.room.name') return { kind: `name of ${this.roomLabel(roomId)}`, whole: true };
      if (type === 'm.room.topic') return { kind: `topic of ${this.roomLabel(roomId)}`, whole: true };
      if (type === 'm.room.message') return { kind: `a word of a message${where}`, whole: false };
      if (type === 'm.reaction') return { kind: `a reaction key${where}`, whole: false };
      if (!roomId) return { kind: 'a word of account data', whole: false };
      return { kind: known ? `a word of an ${type} event${where}` : `a word of a dropped event${where}`, whole: false };
    };
    // Structure (ids, servers, hashes, signatures) is searched for identifiers; text for words too.
    for (const [k, v] of Object.entries(e)) {
      if (k === 'content' || k === 'unsigned') this.walk(v, kindOf);
      else if (k === 'state_key' && typeof v === 'string' && !v.startsWith('@')) this.text(v, `a state key${where}`);
      else if (k === 'signatures' && isObject(v)) for (const server of Object.keys(v)) this.server(server);
      else if (k === 'origin' && typeof v === 'string') this.server(v);
      else this.walk(v);
    }
  }

  /** A whole /sync answer: every room section, account data, presence, to-device, the rest. */
  sync(sync: unknown): void {
    const s = asObject(sync) ?? {};
    const rooms = asObject(s.rooms) ?? {};
    for (const section of Object.values(rooms)) {
      const bySection = asObject(section) ?? {};
      for (const [roomId, room] of Object.entries(bySection)) {
        this.room(roomId);
        const r = asObject(room) ?? {};
        for (const value of Object.values(r)) {
          const events = asObject(value)?.events;
          if (Array.isArray(events)) for (const ev of events) this.event(ev, roomId);
          else this.walk(value);
        }
      }
    }
    for (const [part, value] of Object.entries(s)) {
      if (part === 'rooms') continue;
      const events = asObject(value)?.events;
      if (Array.isArray(events)) for (const ev of asArray(events)) this.event(ev, undefined);
      else this.walk(value);
    }
  }

  /** The account's global profile (display name, avatar), which /sync does not carry. */
  profile(userId: string, profile: { displayname?: unknown; avatar_url?: unknown }): void {
    this.user(userId);
    if (typeof profile.displayname === 'string') this.text(profile.displayname, `display name of ${this.userLabel(userId)}`, true);
    if (typeof profile.avatar_url === 'string') this.identifiers(profile.avatar_url);
  }
}

/** Whether a word is searched for at all (see the header). */
export function checkableWord(w: string): boolean {
  return w.length >= MIN_WORD && !/^x+$/.test(w) && !(/^\d+$/.test(w) && w.length < MIN_NUMBER_WORD) && !FORMAT_VOCABULARY.has(w);
}

interface OutputString {
  readonly path: string;
  readonly text: string;
}

function outputStrings(value: unknown, path: string, out: OutputString[]): void {
  if (typeof value === 'string' || typeof value === 'number') {
    out.push({ path, text: norm(String(value)) });
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => outputStrings(v, `${path}[${i}]`, out));
  } else if (isObject(value)) {
    for (const [k, v] of Object.entries(value)) {
      const shown = SHOWN_KEYS.has(k) ? k : '{key}';
      const p = path ? `${path}.${shown}` : shown;
      out.push({ path: p, text: norm(k) });
      outputStrings(v, p, out);
    }
  }
}

/** Complement's README check: unique lines of the pretty-printed file matching the|matrix|and|mxc. */
export function heuristicHits(serialised: string): number {
  return new Set(serialised.split('\n').filter((line) => /the|matrix|and|mxc/i.test(line)).map((l) => l.trim())).size;
}

/**
 * Searches the output (the parsed form of exactly what will be written) for every sensitive string.
 * `serialised` is the text that will be written, for the heuristic.
 */
export function findLeaks(output: unknown, serialised: string, sensitive: readonly SensitiveString[]): LeakReport {
  const strings: OutputString[] = [];
  outputStrings(output, '', strings);
  const haystack = strings.map((s) => s.text).join('\u0000');
  const starts: number[] = [];
  let offset = 0;
  for (const s of strings) {
    starts.push(offset);
    offset += s.text.length + 1;
  }
  const pathAt = (pos: number): string => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= pos) lo = mid;
      else hi = mid - 1;
    }
    return strings[lo]?.path ?? '?';
  };
  // The output's own words that are not format words nor anonymised text: where a leaked word would show.
  const suspects = new Map<string, string>();
  for (const s of strings) {
    for (const w of s.text.match(WORD) ?? []) {
      if (FORMAT_VOCABULARY.has(w) || /^x+$/.test(w) || suspects.has(w)) continue;
      suspects.set(w, s.path);
    }
  }
  const leaks: Leak[] = [];
  const reported = new Set<string>();
  let unchecked = 0;
  let checked = 0;
  const report = (s: SensitiveString, where: string): void => {
    const id = `${s.mode}\u0000${s.value}`;
    if (reported.has(id)) return;
    reported.add(id);
    leaks.push({ kind: s.kind, masked: mask(s.value), where });
  };

  // Identifiers with a sigil are looked up at each occurrence of the sigil in the output (a clean
  // output has few), by length; the others (few) are searched as substrings.
  const bySigil = new Map<string, Map<number, Map<string, SensitiveString>>>();
  for (const s of sensitive) {
    if (s.mode === 'id') {
      if (FORMAT_VOCABULARY.has(s.value)) {
        unchecked += 1;
        continue;
      }
      checked += 1;
      const sigil = ID_SIGILS.find((g) => s.value.startsWith(g));
      if (!sigil) {
        const at = haystack.indexOf(s.value);
        if (at >= 0) report(s, pathAt(at));
        continue;
      }
      const byLength = bySigil.get(sigil) ?? new Map<number, Map<string, SensitiveString>>();
      bySigil.set(sigil, byLength);
      const values = byLength.get(s.value.length) ?? new Map<string, SensitiveString>();
      byLength.set(s.value.length, values);
      values.set(s.value, s);
      continue;
    }
    const w = s.value;
    if (w.length < MIN_WORD || /^x+$/.test(w) || (/^\d+$/.test(w) && w.length < MIN_NUMBER_WORD)) continue;
    if (FORMAT_VOCABULARY.has(w)) {
      unchecked += 1;
      continue;
    }
    checked += 1;
    const exact = suspects.get(w);
    if (exact !== undefined) {
      report(s, exact);
    } else if (w.length >= MIN_PART_WORD) {
      for (const [token, where] of suspects) {
        if (token.includes(w)) {
          report(s, where);
          break;
        }
      }
    }
  }
  for (const [sigil, byLength] of bySigil) {
    for (let p = haystack.indexOf(sigil); p >= 0; p = haystack.indexOf(sigil, p + 1)) {
      for (const [length, values] of byLength) {
        const hit = values.get(haystack.slice(p, p + length));
        if (hit) report(hit, pathAt(p));
      }
    }
  }
  return { checked, unchecked, leaks, heuristicHits: heuristicHits(serialised) };
}

/** One line per leak, for the admin: kind, masked form, location. */
export function describeLeaks(report: LeakReport, max = 10): string {
  const lines = report.leaks.slice(0, max).map((l) => `• ${l.kind} (${l.masked}) at ${l.where}`);
  if (report.leaks.length > max) lines.push(`• … and ${report.leaks.length - max} more`);
  return lines.join('\n');
}
