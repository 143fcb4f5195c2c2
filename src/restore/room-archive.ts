import { createReadStream } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ARCHIVE_FORMAT, ARCHIVE_ROOM_FORMAT, type ArchiveLine } from '../archive/archive-line.ts';
import { fileNameFor } from '../dump/dump-files.ts';
import { isJsonObject } from '../federation/json-object.ts';
import { errorMessage, fail, ok, type Result } from '../util/result.ts';

export interface ArchiveIndex {
  readonly root: string;
}

/** What restore does with one archived event. */
export type LineKind = 'message' | 'redaction' | 'state' | 'encrypted' | 'soft-failed';

export function lineKind(line: ArchiveLine): LineKind {
  const ev = line.event;
  if (line.steward?.soft_failed || line.steward?.policy_spammy) return 'soft-failed';
  if (typeof ev.state_key === 'string') return 'state';
  if (ev.type === 'm.room.encrypted') return 'encrypted';
  if (ev.type === 'm.room.redaction') return 'redaction';
  return 'message';
}

export function parseArchiveLine(text: string, roomId: string, where: string): Result<ArchiveLine> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return fail('E_ARCHIVE_PARSE', `${where} is not valid JSON (truncated or edited?): ${errorMessage(err)}`);
  }
  if (!isJsonObject(raw) || typeof raw.event_id !== 'string' || typeof raw.room_id !== 'string' || typeof raw.origin_server_ts !== 'number' || !isJsonObject(raw.event)) {
    return fail('E_ARCHIVE_INVALID', `${where} is not a steward.archive-event/1 line (event_id, room_id, origin_server_ts, event).`);
  }
  if (raw.room_id !== roomId) return fail('E_ARCHIVE_INVALID', `${where} belongs to ${raw.room_id}, not to ${roomId}.`);
  if (typeof raw.event.type !== 'string' || typeof raw.event.sender !== 'string') return fail('E_ARCHIVE_INVALID', `${where}: the event has no type or sender.`);
  if (raw.steward !== undefined && !isJsonObject(raw.steward)) return fail('E_ARCHIVE_INVALID', `${where}: steward annotations are not an object.`);
  return ok(raw as unknown as ArchiveLine);
}

/** Checks the archive's top-level document: its format and whose server it archived. */
export async function openArchive(dir: string, serverName: string): Promise<Result<ArchiveIndex>> {
  let text: string;
  try {
    text = await readFile(join(dir, 'archive.json'), 'utf8');
  } catch (err) {
    return fail('E_ARCHIVE_MISSING', `${dir} is not an archive folder: cannot read its archive.json (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}).`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return fail('E_ARCHIVE_PARSE', `${dir}/archive.json is not valid JSON: ${errorMessage(err)}`);
  }
  if (!isJsonObject(raw)) return fail('E_ARCHIVE_PARSE', `${dir}/archive.json does not hold a JSON object.`);
  if (raw.format !== ARCHIVE_FORMAT) {
    return fail('E_ARCHIVE_FORMAT', typeof raw.format === 'string' && raw.format.startsWith('steward.archive/')
      ? `The archive has format ${raw.format}, a version this Steward does not know (it reads ${ARCHIVE_FORMAT}).`
      : `${dir}/archive.json is not a ${ARCHIVE_FORMAT} document.`);
  }
  if (raw.server_name !== serverName) return fail('E_ARCHIVE_SERVER', `The archive is of the server ${JSON.stringify(raw.server_name)}, not of ${serverName}.`);
  return ok({ root: dir });
}

/** The room's folder in the archive, or null when the archive has none for it. */
export async function roomArchiveDir(index: ArchiveIndex, roomId: string): Promise<Result<string | null>> {
  const dir = join(index.root, 'rooms', fileNameFor(roomId).slice(0, -'.json'.length));
  let text: string;
  try {
    text = await readFile(join(dir, 'room.json'), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return ok(null);
    return fail('E_ARCHIVE_READ', `Cannot read ${dir}/room.json: ${errorMessage(err)}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return fail('E_ARCHIVE_PARSE', `${dir}/room.json is not valid JSON: ${errorMessage(err)}`);
  }
  if (!isJsonObject(raw) || raw.format !== ARCHIVE_ROOM_FORMAT) return fail('E_ARCHIVE_FORMAT', `${dir}/room.json is not a ${ARCHIVE_ROOM_FORMAT} document.`);
  if (raw.room_id !== roomId) return fail('E_ARCHIVE_INVALID', `${dir}/room.json is for ${String(raw.room_id)}, not ${roomId}.`);
  return ok(dir);
}

/** Day files of a room, oldest first, as paths relative to its folder (YYYY/MM/YYYY-MM-DD.jsonl). */
export async function dayFiles(roomDir: string): Promise<string[]> {
  const out: string[] = [];
  const sorted = async (dir: string, pattern: RegExp): Promise<string[]> => (await readdir(dir).catch(() => [] as string[])).filter((n) => pattern.test(n)).sort();
  for (const year of await sorted(roomDir, /^\d{4}$/)) {
    for (const month of await sorted(join(roomDir, year), /^\d{2}$/)) {
      for (const day of await sorted(join(roomDir, year, month), /^\d{4}-\d{2}-\d{2}\.jsonl$/)) out.push(`${year}/${month}/${day}`);
    }
  }
  return out;
}

/** The lines of one day file from `fromLine` (0-based), parsed; a blank last line is not a line. */
export async function* readDay(roomDir: string, file: string, roomId: string, fromLine = 0): AsyncGenerator<{ line: number; parsed: Result<ArchiveLine> }> {
  const input = createInterface({ input: createReadStream(join(roomDir, file), { encoding: 'utf8' }), crlfDelay: Infinity });
  let n = -1;
  for await (const text of input) {
    n += 1;
    if (n < fromLine) continue;
    if (text.trim() === '') continue;
    yield { line: n, parsed: parseArchiveLine(text, roomId, `${file} line ${n + 1}`) };
  }
}

export interface ArchiveCounts {
  readonly files: number;
  readonly lines: number;
  readonly byKind: Record<LineKind, number>;
}

/** Reads a room's whole archive once: every line must parse (nothing is imported from a broken archive). */
export async function surveyRoomArchive(roomDir: string, roomId: string): Promise<Result<ArchiveCounts>> {
  const byKind: Record<LineKind, number> = { message: 0, redaction: 0, state: 0, encrypted: 0, 'soft-failed': 0 };
  const files = await dayFiles(roomDir);
  let lines = 0;
  try {
    for (const file of files) {
      for await (const { parsed } of readDay(roomDir, file, roomId)) {
        if (!parsed.ok) return parsed;
        lines += 1;
        byKind[lineKind(parsed.value)] += 1;
      }
    }
  } catch (err) {
    return fail('E_ARCHIVE_READ', `Cannot read the archive of ${roomId}: ${errorMessage(err)}`);
  }
  return ok({ files: files.length, lines, byKind });
}
