import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileNameFor } from '../dump/dump-files.ts';
import { PASSWORD_HASHES_FILE, PASSWORD_HASHES_FORMAT, USER_DUMP_FORMAT } from '../dump/dump-users.ts';
import { isJsonObject, type JsonObject } from '../federation/json-object.ts';
import { errorMessage, fail, ok, type Result } from '../util/result.ts';
import { formatProblem, readDumpManifest } from './dump-manifest.ts';

export const PUSH_RULE_KINDS = ['override', 'content', 'room', 'sender', 'underride'] as const;
export type PushRuleKind = (typeof PUSH_RULE_KINDS)[number];

export interface DumpedPushRule {
  readonly rule_id: string;
  readonly default: boolean;
  readonly enabled: boolean;
  readonly actions: unknown[];
  readonly conditions?: unknown[];
  readonly pattern?: string;
}

export interface DumpedDevice {
  readonly device_id: string;
  readonly display_name: string | null;
}

export interface DumpedKeyBackup {
  readonly version: string;
  readonly algorithm: string;
  readonly auth_data: JsonObject;
  /** Sessions by room; null in dumps made before sessions were dumped. */
  readonly rooms: Record<string, { sessions: Record<string, JsonObject> }> | null;
}

/** One user file (steward.user-dump/1), checked in full before restore writes anything for the user. */
export interface UserDocument {
  readonly userId: string;
  readonly profile: { readonly displayname: string | null; readonly avatarUrl: string | null; readonly avatarSha256: string | null; readonly avatarType: string | null; readonly avatarName: string | null };
  readonly account: {
    readonly admin: boolean;
    readonly deactivated: boolean;
    readonly locked: boolean;
    readonly userType: string | null;
    readonly threepids: readonly { medium: string; address: string }[];
    readonly externalIds: readonly { auth_provider: string; external_id: string }[];
  };
  readonly accountData: { readonly global: Record<string, JsonObject>; readonly rooms: Record<string, Record<string, JsonObject>> } | null;
  readonly pushRules: Readonly<Record<PushRuleKind, readonly DumpedPushRule[]>> | null;
  readonly pushers: readonly JsonObject[] | null;
  readonly devices: readonly DumpedDevice[] | null;
  readonly keyBackup: DumpedKeyBackup | null;
  readonly crossSigning: { readonly master_key: JsonObject | null; readonly self_signing_key: JsonObject | null; readonly user_signing_key: JsonObject | null } | null;
  /** Sections the dump could not read (its `errors` and `not_collected`): reported, never "restored" as empty. */
  readonly missingSections: Readonly<Record<string, string>>;
}

export interface UserDumpIndex {
  readonly root: string;
  readonly serverName: string;
  /** File names under users/, sorted: the order restore works in (its checkpoint is an index into it). */
  readonly files: readonly string[];
  /** sha256 per file name (`users/<name>`), when the dump has checksums. */
  readonly checksums: Readonly<Record<string, string>> | null;
  readonly passwordHashes: boolean;
}

/**
 * Checks what makes a user dump usable at all before a job exists: the manifest (JSON, format,
 * kind, finished, this server's name) and the list of user files. A dump that fails here is not
 * restored at all; a single bad user file fails only that user (see parseUserFile).
 */
export async function openUserDump(dir: string, serverName: string): Promise<Result<UserDumpIndex>> {
  const read = await readDumpManifest(dir, 'users', serverName, 'user ids carry the server name');
  if (!read.ok) return read;
  const manifest = read.value;
  const sums = isJsonObject(manifest.checksums) && manifest.checksums.algorithm === 'sha256' && isJsonObject(manifest.checksums.files) ? manifest.checksums.files : null;
  if (manifest.checksums !== undefined && !sums) return fail('E_DUMP_INVALID', `${dir}/manifest.json has checksums this Steward cannot read (algorithm ${JSON.stringify((manifest.checksums as JsonObject | null)?.algorithm ?? null)}).`);
  const checksums: Record<string, string> = {};
  for (const [k, v] of Object.entries(sums ?? {})) if (typeof v === 'string') checksums[k] = v;

  let names: string[];
  try {
    names = (await readdir(join(dir, 'users'))).filter((n) => n.endsWith('.json') && !n.startsWith('.')).sort();
  } catch (err) {
    return fail('E_DUMP_MISSING', `${dir} has no users folder (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}).`);
  }
  if (sums) {
    const present = new Set(names);
    const missing = Object.keys(checksums).filter((k) => k.startsWith('users/') && !present.has(k.slice('users/'.length)));
    if (missing.length > 0) return fail('E_DUMP_INVALID', `${missing.length} user file(s) listed in the manifest are missing from the dump (first: ${missing[0]}): restore from a whole copy of the dump.`);
  }
  const hashes = isJsonObject(manifest.password_hashes);
  return ok({ root: dir, serverName, files: names, checksums: sums ? checksums : null, passwordHashes: hashes });
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Reads and checks one file of the dump against the manifest's checksum. */
async function readChecked(index: UserDumpIndex, relative: string): Promise<Result<Buffer>> {
  let bytes: Buffer;
  try {
    bytes = await readFile(join(index.root, relative));
  } catch (err) {
    return fail('E_DUMP_MISSING', `cannot read ${relative}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`);
  }
  if (index.checksums) {
    const expected = index.checksums[relative];
    if (expected === undefined) return fail('E_DUMP_INVALID', `${relative} is not listed in the manifest's checksums: it was added after the dump.`);
    if (sha256(bytes) !== expected) return fail('E_DUMP_CHECKSUM', `${relative} does not match its checksum in the manifest: the file was truncated or edited after the dump.`);
  }
  return ok(bytes);
}

export async function readUserFile(index: UserDumpIndex, name: string): Promise<Result<UserDocument>> {
  const bytes = await readChecked(index, `users/${name}`);
  if (!bytes.ok) return bytes;
  return parseUserDocument(bytes.value.toString('utf8'), name, index.serverName);
}

/** The dump's password hashes (steward.password-hashes/1), when it has them. */
export async function readPasswordHashes(index: UserDumpIndex): Promise<Result<Map<string, string | null> | null>> {
  if (!index.passwordHashes) return ok(null);
  const bytes = await readChecked(index, PASSWORD_HASHES_FILE);
  if (!bytes.ok) return bytes;
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.value.toString('utf8'));
  } catch (err) {
    return fail('E_DUMP_PARSE', `${PASSWORD_HASHES_FILE} is not valid JSON (truncated or edited?): ${errorMessage(err)}`);
  }
  if (!isJsonObject(raw)) return fail('E_DUMP_PARSE', `${PASSWORD_HASHES_FILE} does not hold a JSON object.`);
  const problem = formatProblem(raw.format, PASSWORD_HASHES_FORMAT, PASSWORD_HASHES_FILE);
  if (problem) return fail('E_DUMP_FORMAT', problem);
  if (raw.server_name !== index.serverName) return fail('E_DUMP_SERVER', `${PASSWORD_HASHES_FILE} is of the server ${JSON.stringify(raw.server_name)}, not of ${index.serverName}.`);
  if (!isJsonObject(raw.hashes)) return fail('E_DUMP_INVALID', `${PASSWORD_HASHES_FILE} has no hashes.`);
  const map = new Map<string, string | null>();
  for (const [user, hash] of Object.entries(raw.hashes)) {
    if (hash !== null && typeof hash !== 'string') return fail('E_DUMP_INVALID', `${PASSWORD_HASHES_FILE}: the hash of ${user} is neither a string nor null.`);
    map.set(user, hash);
  }
  return ok(map);
}

class Invalid extends Error {}

/** Parses one user file strictly: anything of the wrong kind is an error naming the file and the key. */
export function parseUserDocument(text: string, file: string, serverName: string): Result<UserDocument> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return fail('E_DUMP_PARSE', `${file} is not valid JSON (truncated or edited?): ${errorMessage(err)}`);
  }
  if (!isJsonObject(raw)) return fail('E_DUMP_PARSE', `${file} does not hold a JSON object.`);
  const problem = formatProblem(raw.format, USER_DUMP_FORMAT, file);
  if (problem) return fail('E_DUMP_FORMAT', problem);
  try {
    return ok(toDocument(raw, file, serverName));
  } catch (err) {
    if (err instanceof Invalid) return fail('E_DUMP_INVALID', `${file}: ${err.message}`);
    throw err;
  }
}

function toDocument(raw: JsonObject, file: string, serverName: string): UserDocument {
  const bad = (what: string): never => {
    throw new Invalid(what);
  };
  const userId = raw.user_id;
  if (typeof userId !== 'string' || !/^@[^:]+:.+$/.test(userId)) bad('user_id is not a Matrix user id');
  const uid = userId as string;
  if (uid.slice(uid.indexOf(':') + 1) !== serverName) bad(`${uid} is not a user of ${serverName}`);
  if (fileNameFor(uid) !== file) bad(`holds ${uid}, whose file would be named ${fileNameFor(uid)}: the file was renamed or edited`);
  const str = (v: unknown, what: string): string => (typeof v === 'string' ? v : bad(`${what} is not a string`));
  const strOrNull = (v: unknown, what: string): string | null => (v === null || v === undefined ? null : str(v, what));
  const obj = (v: unknown, what: string): JsonObject => (isJsonObject(v) ? v : bad(`${what} is not an object`));
  const arr = (v: unknown, what: string): unknown[] => (Array.isArray(v) ? v : bad(`${what} is not a list`));
  const bool = (v: unknown, what: string): boolean => (v === undefined || v === null ? false : typeof v === 'boolean' ? v : v === 0 || v === 1 ? v === 1 : bad(`${what} is not a boolean`));

  const missing: Record<string, string> = {};
  if (raw.errors !== undefined) for (const [k, v] of Object.entries(obj(raw.errors, 'errors'))) missing[k] = `not in the dump: ${String(v)}`;
  if (raw.not_collected !== undefined) {
    const nc = obj(raw.not_collected, 'not_collected');
    for (const s of arr(nc.sections ?? [], 'not_collected.sections')) missing[str(s, 'not_collected.sections[]')] = `not in the dump: ${typeof nc.reason === 'string' ? nc.reason : 'not collected'}`;
  }

  const profile = obj(raw.profile, 'profile');
  const media = profile.avatar_media === undefined || profile.avatar_media === null ? null : obj(profile.avatar_media, 'profile.avatar_media');
  const avatarUrl = strOrNull(profile.avatar_url, 'profile.avatar_url');
  if (avatarUrl !== null && !avatarUrl.startsWith('mxc://')) bad('profile.avatar_url is not an mxc URI');
  const sha = media ? strOrNull(media.sha256, 'profile.avatar_media.sha256') : null;
  if (sha !== null && !/^[0-9a-f]{64}$/.test(sha)) bad('profile.avatar_media.sha256 is not a sha256');

  const account = obj(raw.account, 'account');
  const threepids = arr(account.threepids ?? [], 'account.threepids').map((t, i) => {
    const o = obj(t, `account.threepids[${i}]`);
    return { medium: str(o.medium, `account.threepids[${i}].medium`), address: str(o.address, `account.threepids[${i}].address`) };
  });
  const externalIds = arr(account.external_ids ?? [], 'account.external_ids').map((t, i) => {
    const o = obj(t, `account.external_ids[${i}]`);
    return { auth_provider: str(o.auth_provider, `account.external_ids[${i}].auth_provider`), external_id: str(o.external_id, `account.external_ids[${i}].external_id`) };
  });

  let accountData: UserDocument['accountData'] = null;
  if (raw.account_data !== null && raw.account_data !== undefined) {
    const ad = obj(raw.account_data, 'account_data');
    const global: Record<string, JsonObject> = {};
    for (const [t, c] of Object.entries(obj(ad.global ?? {}, 'account_data.global'))) global[t] = obj(c, `account_data.global.${t}`);
    const rooms: Record<string, Record<string, JsonObject>> = {};
    for (const [room, types] of Object.entries(obj(ad.rooms ?? {}, 'account_data.rooms'))) {
      if (!room.startsWith('!')) bad(`account_data.rooms has a key that is not a room id: ${room.slice(0, 80)}`);
      rooms[room] = {};
      for (const [t, c] of Object.entries(obj(types, `account_data.rooms.${room}`))) rooms[room]![t] = obj(c, `account_data.rooms.${room}.${t}`);
    }
    accountData = { global, rooms };
  }

  let pushRules: UserDocument['pushRules'] = null;
  if (raw.push_rules !== null && raw.push_rules !== undefined) {
    const global = obj(obj(raw.push_rules, 'push_rules').global ?? {}, 'push_rules.global');
    const kinds = {} as Record<PushRuleKind, DumpedPushRule[]>;
    for (const kind of PUSH_RULE_KINDS) {
      kinds[kind] = arr(global[kind] ?? [], `push_rules.global.${kind}`).map((r, i) => {
        const o = obj(r, `push_rules.global.${kind}[${i}]`);
        const where = `push_rules.global.${kind}[${i}]`;
        return {
          rule_id: str(o.rule_id, `${where}.rule_id`),
          default: bool(o.default, `${where}.default`),
          enabled: o.enabled === undefined ? true : bool(o.enabled, `${where}.enabled`),
          actions: arr(o.actions ?? [], `${where}.actions`),
          ...(o.conditions !== undefined ? { conditions: arr(o.conditions, `${where}.conditions`) } : {}),
          ...(o.pattern !== undefined ? { pattern: str(o.pattern, `${where}.pattern`) } : {}),
        };
      });
    }
    pushRules = kinds;
  }

  const pushers = raw.pushers === null || raw.pushers === undefined ? null : arr(raw.pushers, 'pushers').map((p, i) => {
    const o = obj(p, `pushers[${i}]`);
    str(o.app_id, `pushers[${i}].app_id`);
    str(o.pushkey, `pushers[${i}].pushkey`);
    str(o.kind, `pushers[${i}].kind`);
    if (o.enabled !== undefined) bool(o.enabled, `pushers[${i}].enabled`);
    return o;
  });

  const devices = raw.devices === null || raw.devices === undefined ? null : arr(raw.devices, 'devices').map((d, i) => {
    const o = obj(d, `devices[${i}]`);
    return { device_id: str(o.device_id, `devices[${i}].device_id`), display_name: strOrNull(o.display_name, `devices[${i}].display_name`) };
  });

  let keyBackup: DumpedKeyBackup | null = null;
  if (raw.key_backup !== null && raw.key_backup !== undefined) {
    const kb = obj(raw.key_backup, 'key_backup');
    let rooms: DumpedKeyBackup['rooms'] = null;
    if (kb.rooms !== undefined && kb.rooms !== null) {
      rooms = {};
      for (const [room, value] of Object.entries(obj(kb.rooms, 'key_backup.rooms'))) {
        const sessions: Record<string, JsonObject> = {};
        for (const [id, s] of Object.entries(obj(obj(value, `key_backup.rooms.${room}`).sessions ?? {}, `key_backup.rooms.${room}.sessions`))) {
          const session = obj(s, `key_backup.rooms.${room}.sessions.${id}`);
          obj(session.session_data, `key_backup.rooms.${room}.sessions.${id}.session_data`);
          sessions[id] = session;
        }
        rooms[room] = { sessions };
      }
    }
    keyBackup = { version: str(kb.version, 'key_backup.version'), algorithm: str(kb.algorithm, 'key_backup.algorithm'), auth_data: obj(kb.auth_data, 'key_backup.auth_data'), rooms };
  }

  let crossSigning: UserDocument['crossSigning'] = null;
  if (raw.cross_signing !== null && raw.cross_signing !== undefined) {
    const cs = obj(raw.cross_signing, 'cross_signing');
    const key = (k: string): JsonObject | null => (cs[k] === null || cs[k] === undefined ? null : obj(cs[k], `cross_signing.${k}`));
    crossSigning = { master_key: key('master_key'), self_signing_key: key('self_signing_key'), user_signing_key: key('user_signing_key') };
  }

  return {
    userId: uid,
    profile: {
      displayname: strOrNull(profile.displayname, 'profile.displayname'),
      avatarUrl,
      avatarSha256: sha,
      avatarType: media ? strOrNull(media.media_type, 'profile.avatar_media.media_type') : null,
      avatarName: media ? strOrNull(media.upload_name, 'profile.avatar_media.upload_name') : null,
    },
    account: {
      admin: bool(account.admin, 'account.admin'),
      deactivated: bool(account.deactivated, 'account.deactivated'),
      locked: bool(account.locked, 'account.locked'),
      userType: strOrNull(account.user_type, 'account.user_type'),
      threepids,
      externalIds,
    },
    accountData,
    pushRules,
    pushers,
    devices,
    keyBackup,
    crossSigning,
    missingSections: missing,
  };
}
