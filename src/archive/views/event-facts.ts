import { filedTime } from '../archive-event.ts';
import type { ArchiveLine } from '../archive-line.ts';

/** What the index and the markdown need from one archived event, read once from its line. */
export interface EventFacts {
  readonly eventId: string;
  readonly roomId: string;
  readonly sender: string;
  readonly ts: number;
  readonly depth: number;
  /** UTC day of origin_server_ts, YYYY-MM-DD: the day file the event belongs to. */
  readonly day: string;
  readonly type: string;
  readonly stateKey: string | null;
  /** rel_type of m.relates_to (m.replace, m.annotation, m.thread, m.reference, …). */
  readonly relation: string | null;
  readonly relatesTo: string | null;
  readonly replyTo: string | null;
  readonly threadRoot: string | null;
  /** The event an m.room.redaction removes (top level before room v11, in content from v11). */
  readonly redacts: string | null;
  /** Searchable text: a message's body (an edit's new body); null for everything else. */
  readonly body: string | null;
  /** content as archived (stripped when the event was already redacted). */
  readonly content: Record<string, unknown>;
  /** content of steward.original: the unredacted event (of this event, or of the target of a redaction). */
  readonly original: Record<string, unknown> | null;
  readonly redacted: boolean;
  readonly originalMissing: string | null;
  readonly media: readonly MediaRef[];
}

export interface MediaRef {
  readonly mxc: string;
  /** Encrypted attachment (content.file): the server holds ciphertext only. */
  readonly encrypted: boolean;
}

const MXC = /^mxc:\/\/([A-Za-z0-9.:\-[\]]+)\/([A-Za-z0-9_-]+)$/;

export function parseMxc(uri: string): { server: string; mediaId: string } | null {
  const m = MXC.exec(uri);
  return m ? { server: m[1]!, mediaId: m[2]! } : null;
}

export function dayOf(ts: number): string {
  const d = new Date(ts);
  return Number.isFinite(d.getTime()) ? d.toISOString().slice(0, 10) : '1970-01-01';
}

function obj(v: unknown): Record<string, unknown> | null {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

/** Reads an archived line; tolerates any shape a server may have sent (missing or odd fields become null). */
export function eventFacts(line: ArchiveLine): EventFacts {
  const event = obj(line.event) ?? {};
  const content = obj(event.content) ?? {};
  const type = str(event.type) ?? '';
  const relatesTo = obj(content['m.relates_to']);
  const relation = str(relatesTo?.rel_type);
  const inReplyTo = obj(relatesTo?.['m.in_reply_to']);
  // A thread reply carries m.in_reply_to as a fallback for clients without threads; it is not a reply.
  const replyTo = relation === 'm.thread' && relatesTo?.is_falling_back === true ? null : str(inReplyTo?.event_id);
  const redacts = type === 'm.room.redaction' ? str(event.redacts) ?? str(content.redacts) : null;
  const original = obj(obj(line.steward?.original)?.content);
  // Filed as the job files it, so the event's day and time agree (a day is found by its time range).
  const ts = typeof line.origin_server_ts === 'number' && Number.isFinite(line.origin_server_ts) ? filedTime(line.origin_server_ts) : 0;
  const mediaSources = [content, obj(content['m.new_content']), type === 'm.room.redaction' ? null : original];
  const media = new Map<string, boolean>();
  for (const c of mediaSources) if (c) collectMedia(type, c, media);
  return {
    eventId: line.event_id,
    roomId: line.room_id,
    sender: str(event.sender) ?? '',
    ts,
    depth: typeof event.depth === 'number' ? event.depth : 0,
    day: dayOf(ts),
    type,
    stateKey: str(event.state_key),
    relation,
    relatesTo: str(relatesTo?.event_id),
    replyTo,
    threadRoot: relation === 'm.thread' ? str(relatesTo?.event_id) : null,
    redacts,
    body: searchableBody(type, relation, content, line.steward?.redacted === true ? original : null),
    content,
    original,
    redacted: line.steward?.redacted === true,
    originalMissing: str(line.steward?.original_missing),
    media: [...media].map(([mxc, encrypted]) => ({ mxc, encrypted })).sort((a, b) => (a.mxc < b.mxc ? -1 : a.mxc > b.mxc ? 1 : 0)),
  };
}

function searchableBody(type: string, relation: string | null, content: Record<string, unknown>, original: Record<string, unknown> | null): string | null {
  if (type !== 'm.room.message' && type !== 'm.sticker') return null;
  const c = original ?? content;
  if (relation === 'm.replace') {
    const replaced = str(obj(c['m.new_content'])?.body);
    if (replaced !== null) return replaced;
  }
  return str(c.body);
}

function collectMedia(type: string, c: Record<string, unknown>, into: Map<string, boolean>): void {
  const add = (v: unknown, encrypted: boolean): void => {
    const uri = str(v);
    if (uri && parseMxc(uri)) into.set(uri, (into.get(uri) ?? false) || encrypted);
  };
  const info = obj(c.info);
  if (type === 'm.room.member') {
    add(c.avatar_url, false);
    return;
  }
  add(c.url, false);
  add(info?.thumbnail_url, false);
  add(obj(c.file)?.url, true);
  add(obj(info?.thumbnail_file)?.url, true);
}
