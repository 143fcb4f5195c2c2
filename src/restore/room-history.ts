import { createHash } from 'node:crypto';
import type { ArchiveLine } from '../archive/archive-line.ts';
import { isJsonObject } from '../federation/json-object.ts';
import { path, type HomeserverHttp, type HttpFailure } from '../homeserver/http.ts';
import { failure, ok, type Failure, type Result } from '../util/result.ts';
import { dayFiles, lineKind, readDay, type LineKind } from './room-archive.ts';
import type { HistoryProgress, RestoredRoomStore } from './room-store.ts';

export const IMPORTED_KEY = 'org.steward.imported';
/** The event map's key for the opening notice of a room's imported history. */
const NOTICE_KEY = 'org.steward.imported-notice';

export interface HistoryDeps {
  readonly http: HomeserverHttp;
  readonly store: RestoredRoomStore;
  readonly botUserId: string;
}

export interface HistoryOutcome {
  readonly imported: number;
  readonly alreadyImported: number;
  readonly skipped: Record<Exclude<LineKind, 'message' | 'redaction'> | 'redaction-target-missing', number>;
  readonly postedByBot: number;
  readonly relationsLeftUnmapped: number;
  readonly failedEvents: readonly { readonly eventId: string; readonly reason: string }[];
}

/** Same old event, same new room → same transaction id: a resend after a crash is deduplicated by the homeserver. */
function txnFor(newRoomId: string, key: string): string {
  return `steward-import-${createHash('sha256').update(`${newRoomId}\n${key}`).digest('hex').slice(0, 40)}`;
}

/** Points edits, replies, reactions and thread relations at the new events; counts those it cannot map. */
export function mapRelations(content: Record<string, unknown>, map: (oldId: string) => string | undefined): { content: Record<string, unknown>; unmapped: number } {
  const rel = content['m.relates_to'];
  if (!isJsonObject(rel)) return { content, unmapped: 0 };
  let unmapped = 0;
  const next: Record<string, unknown> = { ...rel };
  if (typeof rel.event_id === 'string') {
    const to = map(rel.event_id);
    if (to) next.event_id = to;
    else unmapped += 1;
  }
  const reply = rel['m.in_reply_to'];
  if (isJsonObject(reply) && typeof reply.event_id === 'string') {
    const to = map(reply.event_id);
    if (to) next['m.in_reply_to'] = { ...reply, event_id: to };
    else unmapped += 1;
  }
  return { content: { ...content, 'm.relates_to': next }, unmapped };
}

/** A message re-posted by the bot for a sender who cannot post it: say who wrote it. */
function attributed(content: Record<string, unknown>, sender: string): Record<string, unknown> {
  if (typeof content.body !== 'string') return content;
  const out: Record<string, unknown> = { ...content, body: `${sender}: ${content.body}` };
  if (typeof content.formatted_body === 'string') out.formatted_body = `${escapeText(sender)}: ${content.formatted_body}`;
  return out;
}

function escapeText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * Re-posts a room's archived history into the room that replaces it: day files in order, lines in
 * file order, each message event by its original sender (identity assertion) at its original time
 * (appservice `ts`), marked `org.steward.imported`. State events are not re-posted (the room's state
 * was recreated from the dump); encrypted events are not either (their keys are bound to the old
 * room). Redactions are replayed onto the new copies. The position is saved after every line, so a
 * resumed import carries on where it stopped and posts nothing twice.
 */
export async function importHistory(
  oldRoomId: string,
  newRoomId: string,
  roomDir: string,
  canPost: ReadonlySet<string>,
  totals: { readonly importable: number; readonly encrypted: number },
  deps: HistoryDeps,
  signal: AbortSignal,
): Promise<Result<HistoryOutcome>> {
  const skipped = { state: 0, encrypted: 0, 'soft-failed': 0, 'redaction-target-missing': 0 };
  let imported = 0;
  let alreadyImported = 0;
  let postedByBot = 0;
  let relationsLeftUnmapped = 0;
  const failedEvents: { eventId: string; reason: string }[] = [];
  const start = deps.store.history(oldRoomId);
  let position: HistoryProgress = start ?? { file: '', line: 0, imported: 0, skipped: 0 };
  const files = await dayFiles(roomDir);

  const send = async (asUser: string, method: string, urlPath: string, body: Record<string, unknown>, ts: number): Promise<Result<{ event_id: string }, HttpFailure>> =>
    deps.http.request<{ event_id: string }>(method, urlPath, { body, asUser, query: { ts }, signal });

  if (!deps.store.newEventFor(oldRoomId, NOTICE_KEY) && files.length > 0) {
    const first = await firstTimestamp(roomDir, files, oldRoomId);
    const text = `History imported from Steward's archive of ${oldRoomId}, which was lost with the server: ${totals.importable} event(s) re-posted by their original senders at their original times, each marked ${IMPORTED_KEY} with its original event id.` +
      (totals.encrypted > 0 ? ` ${totals.encrypted} encrypted event(s) were not imported: their keys belong to the old room, so no client could read them here.` : '');
    const sent = await send(deps.botUserId, 'PUT', path`/_matrix/client/v3/rooms/${newRoomId}/send/m.room.notice/${txnFor(newRoomId, NOTICE_KEY)}`, { msgtype: 'm.notice', body: text, [IMPORTED_KEY]: { notice: true, room_id: oldRoomId } }, first ?? Date.now());
    if (!sent.ok) return { ok: false, error: failure(sent.error.code, `cannot post the opening notice of the imported history: ${sent.error.human}`, sent.error.log) };
    deps.store.recordLine(oldRoomId, position, { oldEventId: NOTICE_KEY, newEventId: sent.value.event_id });
  }

  const map = (id: string): string | undefined => deps.store.newEventFor(oldRoomId, id);
  for (const file of files) {
    if (file < position.file) continue;
    const from = file === position.file ? position.line : 0;
    for await (const { line, parsed } of readDay(roomDir, file, oldRoomId, from)) {
      if (signal.aborted) return { ok: false, error: failure('E_CANCELLED', 'stopped') };
      if (!parsed.ok) return parsed; // checked before the import began; the file changed since
      const entry = parsed.value;
      const next = (counted: 'imported' | 'skipped'): HistoryProgress => ({
        file, line: line + 1,
        imported: position.imported + (counted === 'imported' ? 1 : 0),
        skipped: position.skipped + (counted === 'skipped' ? 1 : 0),
      });
      if (map(entry.event_id)) {
        alreadyImported += 1;
        position = next('skipped');
        deps.store.recordLine(oldRoomId, position);
        continue;
      }
      const kind = lineKind(entry);
      if (kind === 'state' || kind === 'encrypted' || kind === 'soft-failed') {
        skipped[kind] += 1;
        position = next('skipped');
        deps.store.recordLine(oldRoomId, position);
        continue;
      }
      const posted = kind === 'redaction' ? await redaction(entry) : await message(entry);
      if (!posted.ok) {
        if (posted.error.code === 'E_TARGET_MISSING') {
          skipped['redaction-target-missing'] += 1;
        } else if (isPermanent(posted.error)) {
          failedEvents.push({ eventId: entry.event_id, reason: posted.error.human });
        } else {
          return { ok: false, error: failure(posted.error.code, `importing ${entry.event_id} failed: ${posted.error.human}`, posted.error.log) };
        }
        position = next('skipped');
        deps.store.recordLine(oldRoomId, position);
        continue;
      }
      imported += 1;
      position = next('imported');
      deps.store.recordLine(oldRoomId, position, { oldEventId: entry.event_id, newEventId: posted.value });
    }
  }
  return ok({ imported, alreadyImported, skipped, postedByBot, relationsLeftUnmapped, failedEvents });

  async function message(entry: ArchiveLine): Promise<Result<string, Failure & { status?: number }>> {
    const ev = entry.event;
    const sender = String(ev.sender);
    const byBot = !canPost.has(sender);
    let raw = isJsonObject(ev.content) ? ev.content : {};
    // A message redacted before it was archived has no content left; Synapse wants a body. The
    // archived redaction that follows redacts the copy, as it did the original.
    if (entry.steward?.redacted && ev.type === 'm.room.message' && typeof raw.body !== 'string') raw = { ...raw, msgtype: 'm.text', body: '' };
    const mapped = mapRelations(raw, map);
    relationsLeftUnmapped += mapped.unmapped;
    const marker: Record<string, unknown> = { event_id: entry.event_id, origin_server_ts: entry.origin_server_ts, room_id: entry.room_id };
    if (byBot) marker.sender = sender;
    if (entry.steward?.redacted) marker.redacted = true;
    const content = { ...(byBot ? attributed(mapped.content, sender) : mapped.content), [IMPORTED_KEY]: marker };
    const sent = await send(byBot ? deps.botUserId : sender, 'PUT', path`/_matrix/client/v3/rooms/${newRoomId}/send/${String(ev.type)}/${txnFor(newRoomId, entry.event_id)}`, content, entry.origin_server_ts);
    if (!sent.ok) return sent;
    if (byBot) postedByBot += 1;
    return ok(sent.value.event_id);
  }

  async function redaction(entry: ArchiveLine): Promise<Result<string, Failure & { status?: number }>> {
    const ev = entry.event;
    const content = isJsonObject(ev.content) ? ev.content : {};
    const target = typeof content.redacts === 'string' ? content.redacts : typeof ev.redacts === 'string' ? ev.redacts : undefined;
    const newTarget = target ? map(target) : undefined;
    if (!newTarget) return { ok: false, error: failure('E_TARGET_MISSING', 'the redacted event was not imported') };
    const sender = String(ev.sender);
    const asUser = canPost.has(sender) ? sender : deps.botUserId;
    const body: Record<string, unknown> = { [IMPORTED_KEY]: { event_id: entry.event_id, origin_server_ts: entry.origin_server_ts, room_id: entry.room_id } };
    if (typeof content.reason === 'string') body.reason = content.reason;
    const sent = await send(asUser, 'PUT', path`/_matrix/client/v3/rooms/${newRoomId}/redact/${newTarget}/${txnFor(newRoomId, entry.event_id)}`, body, entry.origin_server_ts);
    if (!sent.ok) return sent;
    return ok(sent.value.event_id);
  }
}

/** A 4xx other than 429: this event will never go in (too large, refused); others may still. */
function isPermanent(f: Failure & { status?: number }): boolean {
  return typeof f.status === 'number' && f.status >= 400 && f.status < 500 && f.status !== 429;
}

async function firstTimestamp(roomDir: string, files: readonly string[], roomId: string): Promise<number | undefined> {
  for (const file of files) {
    for await (const { parsed } of readDay(roomDir, file, roomId)) {
      if (parsed.ok && lineKind(parsed.value) === 'message') return parsed.value.origin_server_ts;
    }
  }
  return undefined;
}
