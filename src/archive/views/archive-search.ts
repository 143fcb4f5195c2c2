import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import { errorMessage, fail, ok, type Result } from '../../util/result.ts';
import { indexPath } from './archive-views.ts';

export interface SearchQuery {
  readonly words: string;
  readonly roomId?: string;
  /** Inclusive UTC day, YYYY-MM-DD. */
  readonly from?: string;
  /** Inclusive UTC day, YYYY-MM-DD. */
  readonly to?: string;
  readonly sender?: string;
  readonly limit: number;
}

export interface SearchHit {
  readonly eventId: string;
  /** The event the link points at: for an edit, the message it edits. */
  readonly linkEventId: string;
  readonly roomId: string;
  readonly sender: string;
  readonly senderName: string;
  readonly ts: number;
  readonly snippet: string;
  readonly edit: boolean;
  readonly deleted: boolean;
  readonly link: string;
}

export interface SearchAnswer {
  readonly total: number;
  readonly hits: readonly SearchHit[];
}

export const SNIPPET_OPEN = '«';
export const SNIPPET_CLOSE = '»';

/**
 * Turns what an admin typed into an FTS5 query that cannot be an FTS5 syntax error: each word
 * becomes a quoted string (AND between words); a trailing `*` keeps prefix search. Words with no
 * letter or digit are dropped, since the tokenizer would drop them too.
 */
export function ftsQuery(words: string): Result<string> {
  const terms: string[] = [];
  for (const raw of words.trim().split(/\s+/)) {
    const prefix = raw.length > 1 && raw.endsWith('*');
    const word = (prefix ? raw.slice(0, -1) : raw).replace(/"/g, '');
    if (!/[\p{L}\p{N}]/u.test(word)) continue;
    terms.push(`"${word}"${prefix ? '*' : ''}`);
  }
  if (terms.length === 0) return fail('E_USAGE', 'Give at least one word to search for (letters or digits).');
  return ok(terms.join(' '));
}

/** `YYYY-MM-DD` (UTC) to the first millisecond of that day; the day must exist. */
export function parseDay(text: string, flag: string): Result<number> {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  const ts = m ? Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])) : NaN;
  if (!m || !Number.isFinite(ts) || new Date(ts).toISOString().slice(0, 10) !== text) {
    return fail('E_USAGE', `--${flag} takes a day as YYYY-MM-DD (UTC), such as 2026-11-30; got ${JSON.stringify(text)}.`);
  }
  return ok(ts);
}

export function matrixToLink(roomId: string, eventId: string): string {
  return `https://matrix.to/#/${encodeURIComponent(roomId)}/${encodeURIComponent(eventId)}`;
}

interface HitRow {
  event_id: string;
  room_id: string;
  sender: string;
  ts: number;
  depth: number;
  relation: string | null;
  relates_to: string | null;
  redacted: number;
  redaction: string | null;
  snippet: string;
}

/** Searches `<out>/archive.sqlite`, newest first. */
export function searchArchive(out: string, q: SearchQuery): Result<SearchAnswer> {
  const match = ftsQuery(q.words);
  if (!match.ok) return match;
  let fromTs: number | undefined;
  let toTs: number | undefined;
  if (q.from !== undefined) {
    const d = parseDay(q.from, 'from');
    if (!d.ok) return d;
    fromTs = d.value;
  }
  if (q.to !== undefined) {
    const d = parseDay(q.to, 'to');
    if (!d.ok) return d;
    toTs = d.value + 86_400_000;
  }
  if (fromTs !== undefined && toTs !== undefined && fromTs >= toTs) return fail('E_USAGE', `--from ${q.from} is after --to ${q.to}.`);
  const file = indexPath(out);
  if (!existsSync(file)) return fail('E_ARCHIVE_MISSING', `There is no archive index at ${file}. Run \`archive\` first: it writes the index, and rebuilds it from the day files when they are already there.`);
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 5000');
  } catch (err) {
    return fail('E_ARCHIVE_INDEX', `Cannot open the archive index ${file}: ${errorMessage(err)}`);
  }
  try {
    const where: string[] = ['events_fts MATCH @match'];
    const params: Record<string, string | number> = { match: match.value, limit: q.limit };
    if (q.roomId !== undefined) {
      where.push('e.room_id = @room');
      params.room = q.roomId;
    }
    if (q.sender !== undefined) {
      where.push('e.sender = @sender');
      params.sender = q.sender;
    }
    if (fromTs !== undefined) {
      where.push('e.ts >= @from');
      params.from = fromTs;
    }
    if (toTs !== undefined) {
      where.push('e.ts < @to');
      params.to = toTs;
    }
    const base = `FROM events_fts JOIN events e ON e.rowid = events_fts.rowid WHERE ${where.join(' AND ')}`;
    const total = (db.prepare(`SELECT COUNT(*) AS n ${base}`).get(params) as { n: number }).n;
    const rows = db.prepare(`SELECT e.event_id, e.room_id, e.sender, e.ts, e.depth, e.relation, e.relates_to, e.redacted,
        (SELECT r.event_id FROM events r WHERE r.redacts = e.event_id AND r.type = 'm.room.redaction' LIMIT 1) AS redaction,
        snippet(events_fts, 0, '${SNIPPET_OPEN}', '${SNIPPET_CLOSE}', '…', 16) AS snippet
      ${base} ORDER BY e.ts DESC, e.event_id DESC LIMIT @limit`).all(params) as HitRow[];
    const member = db.prepare<[string, string, number, number, number], { displayname: string | null }>(
      'SELECT displayname FROM members WHERE room_id = ? AND user_id = ? AND depth <= ? AND NOT (depth = ? AND ts > ?) ORDER BY depth DESC, ts DESC, event_id DESC LIMIT 1',
    );
    const hits = rows.map((r): SearchHit => {
      const edit = r.relation === 'm.replace' && r.relates_to !== null;
      const linkEventId = edit ? r.relates_to! : r.event_id;
      const name = member.get(r.room_id, r.sender, r.depth, r.depth, r.ts)?.displayname?.trim();
      return {
        eventId: r.event_id,
        linkEventId,
        roomId: r.room_id,
        sender: r.sender,
        senderName: name ? name : r.sender,
        ts: r.ts,
        snippet: r.snippet.replace(/\s+/g, ' ').trim(),
        edit,
        deleted: r.redacted === 1 || r.redaction !== null,
        link: matrixToLink(r.room_id, linkEventId),
      };
    });
    return ok({ total, hits });
  } catch (err) {
    return fail('E_ARCHIVE_SEARCH', `The search failed: ${errorMessage(err)}`);
  } finally {
    db.close();
  }
}
