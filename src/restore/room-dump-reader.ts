import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileSha256 } from '../dump/dump-checksums.ts';
import { fileNameFor } from '../dump/dump-files.ts';
import { ROOM_DUMP_FORMAT } from '../dump/dump-rooms.ts';
import { isJsonObject } from '../federation/json-object.ts';
import { errorMessage, fail, ok, type Result } from '../util/result.ts';
import { formatProblem, readDumpManifest } from './dump-manifest.ts';

/** One state event of a room dump, client format (the admin API's current state). */
export interface DumpStateEvent {
  readonly type: string;
  readonly state_key: string;
  readonly content: Record<string, unknown>;
  readonly sender?: string;
  readonly event_id?: string;
}

/** What restore uses of one room file (steward.room-dump/1). */
export interface RoomDocument {
  readonly roomId: string;
  readonly roomVersion: string | null;
  readonly details: Record<string, unknown>;
  readonly state: readonly DumpStateEvent[];
  /** Local aliases pointing to the room when it was dumped; null in dumps made before they were recorded. */
  readonly aliases: readonly string[] | null;
}

export interface RoomDumpIndex {
  readonly root: string;
  readonly serverName: string;
  /** Room files in name order, each already checked (parsed, its format known, its checksum matching). */
  readonly rooms: readonly { readonly file: string; readonly roomId: string }[];
  readonly checksummed: boolean;
}

/** Parses one room file strictly: anything missing or of the wrong kind is an error naming the file. */
export function parseRoomDocument(text: string, file: string): Result<RoomDocument> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return fail('E_DUMP_PARSE', `${file} is not valid JSON (truncated or edited?): ${errorMessage(err)}`);
  }
  if (!isJsonObject(raw)) return fail('E_DUMP_PARSE', `${file} does not hold a JSON object.`);
  const problem = formatProblem(raw.format, ROOM_DUMP_FORMAT, file);
  if (problem) return fail('E_DUMP_FORMAT', problem);
  if (typeof raw.room_id !== 'string' || !raw.room_id.startsWith('!')) return fail('E_DUMP_INVALID', `${file} has no room_id.`);
  if (fileNameFor(raw.room_id) !== file) return fail('E_DUMP_INVALID', `${file} holds room ${raw.room_id}, whose file would be named ${fileNameFor(raw.room_id)}: the file was renamed or edited.`);
  if (!isJsonObject(raw.details)) return fail('E_DUMP_INVALID', `${file} has no details section.`);
  if (!Array.isArray(raw.current_state)) return fail('E_DUMP_INVALID', `${file} has no current_state (the admin API's state could not be read when it was dumped): nothing to restore the room from.`);
  const state: DumpStateEvent[] = [];
  for (const [i, ev] of raw.current_state.entries()) {
    if (!isJsonObject(ev) || typeof ev.type !== 'string' || typeof ev.state_key !== 'string' || !isJsonObject(ev.content)) {
      return fail('E_DUMP_INVALID', `${file}: current_state[${i}] is not a state event (type, state_key, content).`);
    }
    state.push({
      type: ev.type,
      state_key: ev.state_key,
      content: ev.content,
      ...(typeof ev.sender === 'string' ? { sender: ev.sender } : {}),
      ...(typeof ev.event_id === 'string' ? { event_id: ev.event_id } : {}),
    });
  }
  if (!state.some((e) => e.type === 'm.room.create')) return fail('E_DUMP_INVALID', `${file}: the current state has no m.room.create event.`);
  const aliases = Array.isArray(raw.aliases) ? raw.aliases.filter((a): a is string => typeof a === 'string') : null;
  return ok({ roomId: raw.room_id, roomVersion: typeof raw.room_version === 'string' ? raw.room_version : null, details: raw.details, state, aliases });
}

/**
 * Checks a whole room dump before restore writes anything: the manifest (format, kind, finished,
 * server name) and every room file (checksum against the manifest, JSON, format version, shape).
 * The first problem is the answer; a dump with any problem is not restored at all.
 */
export async function validateRoomDump(dir: string, serverName: string): Promise<Result<RoomDumpIndex>> {
  const read = await readDumpManifest(dir, 'rooms', serverName, 'its users and aliases belong to that server name');
  if (!read.ok) return read;
  const manifest = read.value;

  const checksums = isJsonObject(manifest.checksums) && manifest.checksums.algorithm === 'sha256' && isJsonObject(manifest.checksums.files) ? manifest.checksums.files : null;
  const names = (await readdir(join(dir, 'rooms')).catch(() => [] as string[])).filter((n) => n.endsWith('.json') && !n.startsWith('.')).sort();
  if (checksums) {
    for (const key of Object.keys(checksums)) {
      if (key.startsWith('rooms/') && !names.includes(key.slice('rooms/'.length))) return fail('E_DUMP_INVALID', `${key} is listed in the manifest but missing from the dump.`);
    }
  }
  const rooms: { file: string; roomId: string }[] = [];
  for (const name of names) {
    const file = join(dir, 'rooms', name);
    if (checksums) {
      const expected = checksums[`rooms/${name}`];
      if (typeof expected !== 'string') return fail('E_DUMP_INVALID', `rooms/${name} is not listed in the manifest's checksums: it was added after the dump.`);
      const actual = await fileSha256(file);
      if (actual !== expected) return fail('E_DUMP_CHECKSUM', `rooms/${name} does not match its checksum in the manifest: the file was truncated or edited after the dump.`);
    }
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      return fail('E_DUMP_READ', `Cannot read rooms/${name}: ${errorMessage(err)}`);
    }
    const parsed = parseRoomDocument(text, name);
    if (!parsed.ok) return parsed;
    rooms.push({ file: name, roomId: parsed.value.roomId });
  }
  return ok({ root: dir, serverName, rooms, checksummed: checksums !== null });
}

export async function readRoomDocument(index: RoomDumpIndex, file: string): Promise<Result<RoomDocument>> {
  try {
    return parseRoomDocument(await readFile(join(index.root, 'rooms', file), 'utf8'), file);
  } catch (err) {
    return fail('E_DUMP_READ', `Cannot read rooms/${file}: ${errorMessage(err)}`);
  }
}
