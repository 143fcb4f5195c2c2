import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AccountApi } from '../homeserver/account-api.ts';
import type { ClientApi } from '../homeserver/client-api.ts';
import type { HttpFailure } from '../homeserver/http.ts';
import type { SynapseAdmin } from '../homeserver/synapse-admin.ts';
import type { SynapseDb } from '../homeserver/synapse-db.ts';
import { isJsonObject, type JsonObject } from '../federation/json-object.ts';
import { errorMessage, type Result } from '../util/result.ts';
import { PUSH_RULE_KINDS, type DumpedPushRule, type UserDocument } from './user-dump-reader.ts';

export interface UserRestoreDeps {
  readonly admin: SynapseAdmin;
  readonly client: ClientApi;
  readonly account: AccountApi;
  /** Steward's own user: never demoted, whatever the dump says. */
  readonly botUserId: string;
}

export interface UserRestoreInput {
  readonly doc: UserDocument;
  /** false: a dry run, everything is compared and nothing is written. */
  readonly apply: boolean;
  readonly signal: AbortSignal;
  /** An archive folder whose media/ holds content-addressed files (media/<2 hex>/<sha256>). */
  readonly archiveDir?: string | undefined;
  readonly synapseDb?: SynapseDb | undefined;
  /** The dump's hash for this user: undefined when the dump has no hashes, null when the user had none. */
  readonly passwordHash?: string | null | undefined;
}

export type UserOutcomeKind = 'restored' | 'unchanged' | 'failed';

export interface UserOutcome {
  readonly outcome: UserOutcomeKind;
  /** What was (or, in a dry run, would be) written, one short phrase per change. */
  readonly changes: string[];
  /** What could not be moved for this user, or was left alone, and why. */
  readonly notes: string[];
  readonly errors: { section: string; message: string }[];
  /** The user's password was not restored (no hash in the dump, or no --synapse-db). */
  readonly needsPasswordReset: boolean;
  /** The dump's read markers (m.fully_read), which only restore rooms can set: recorded for it by the caller. */
  readonly readMarkers: { readonly roomId: string; readonly eventId: string }[];
}

/** JSON with sorted keys: two values are the same when this is. */
export function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (isJsonObject(value)) return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${stableJson(value[k])}`).join(',')}}`;
  return JSON.stringify(value ?? null);
}
const same = (a: unknown, b: unknown): boolean => stableJson(a) === stableJson(b);

class SectionFailed extends Error {
  readonly section: string;
  constructor(section: string, message: string) {
    super(message);
    this.section = section;
  }
}

/** A read or write that must succeed for the section to go on. */
function need<T>(section: string, r: Result<T, HttpFailure>): T {
  if (!r.ok) throw new SectionFailed(section, r.error.human);
  return r.value;
}

/**
 * Restores one user from a checked document, section by section, in the order the account needs:
 * the account (admin API), password hash, avatar, account data, push rules, devices, pushers, key
 * backup, cross-signing keys, and deactivation last. Devices come before pushers because Synapse
 * ties a pusher to a device. Each section compares the server's current values with the dump's and
 * writes only what differs, so a re-run writes nothing. A failing section is recorded and the next
 * one still runs (they are independent), except that nothing runs when the account cannot be made.
 */
export async function restoreUser(deps: UserRestoreDeps, input: UserRestoreInput): Promise<UserOutcome> {
  const { doc, apply, signal } = input;
  const uid = doc.userId;
  const opts = { signal };
  const changes: string[] = [];
  const notes: string[] = [];
  const errors: { section: string; message: string }[] = [];
  let needsPasswordReset = false;
  const readMarkers: { roomId: string; eventId: string }[] = [];
  const done = (): UserOutcome => ({ outcome: errors.length > 0 ? 'failed' : changes.length > 0 ? 'restored' : 'unchanged', changes, notes, errors, needsPasswordReset, readMarkers });

  const run = async (section: string, fn: () => Promise<void>): Promise<boolean> => {
    if (signal.aborted) return false;
    try {
      await fn();
      return true;
    } catch (err) {
      errors.push({ section, message: err instanceof SectionFailed ? err.message : `unexpected: ${errorMessage(err)}` });
      return false;
    }
  };

  // 1. The account.
  let current: JsonObject | null = null;
  const accountOk = await run('account', async () => {
    const got = await deps.admin.user(uid, opts);
    if (!got.ok && got.error.status !== 404) throw new SectionFailed('account', got.error.human);
    current = got.ok ? got.value : null;
    const a = doc.account;
    if (current === null) {
      const body: Record<string, unknown> = { threepids: a.threepids, external_ids: a.externalIds, admin: a.admin, user_type: a.userType, locked: a.locked };
      if (doc.profile.displayname !== null) body.displayname = doc.profile.displayname;
      changes.push('create the account');
      if (apply) current = need('account', await deps.account.upsertUser(uid, body, opts));
      return;
    }
    const cur = current as JsonObject;
    const body: Record<string, unknown> = {};
    if (doc.profile.displayname !== null && cur.displayname !== doc.profile.displayname) body.displayname = doc.profile.displayname;
    const pairs = (xs: unknown, a1: string, a2: string): string[] => (Array.isArray(xs) ? xs.filter(isJsonObject).map((x) => `${String(x[a1])}\u0000${String(x[a2])}`).sort() : []);
    if (!same(pairs(cur.threepids, 'medium', 'address'), pairs(a.threepids, 'medium', 'address'))) body.threepids = a.threepids;
    if (!same(pairs(cur.external_ids, 'auth_provider', 'external_id'), pairs(a.externalIds, 'auth_provider', 'external_id'))) body.external_ids = a.externalIds;
    if (Boolean(cur.admin) !== a.admin && !(uid === deps.botUserId && !a.admin)) body.admin = a.admin;
    if ((cur.user_type ?? null) !== a.userType) body.user_type = a.userType;
    if (Boolean(cur.locked) !== a.locked && !a.deactivated) body.locked = a.locked;
    if (Boolean(cur.deactivated) && !a.deactivated) body.deactivated = false;
    const names: Record<string, string> = { displayname: 'display name', threepids: 'threepids', external_ids: 'external ids', admin: 'admin flag', user_type: 'user type', locked: 'locked flag', deactivated: 'reactivate' };
    for (const k of Object.keys(body)) changes.push(names[k] ?? k);
    if (apply && Object.keys(body).length > 0) current = need('account', await deps.account.upsertUser(uid, body, opts));
  });
  if (!accountOk) return done();
  const exists = current !== null; // false only in a dry run for an account still to be created
  const cur = (current ?? {}) as JsonObject;

  if (doc.account.deactivated) {
    // Deactivation erases devices, pushers, account data, push rules and key backups: nothing else to restore.
    if (!cur.deactivated) {
      changes.push('deactivate');
      if (apply) await run('deactivate', async () => void need('deactivate', await deps.account.upsertUser(uid, { deactivated: true }, opts)));
    }
    return done();
  }

  // 2. The password hash: no API sets one, so it goes straight into Synapse's users table.
  await run('password', async () => {
    const hash = input.passwordHash;
    if (hash === null || hash === '') return; // the user had no password (SSO, appservice): nothing to restore
    if (hash === undefined || !input.synapseDb) {
      needsPasswordReset = true;
      return;
    }
    const now = exists ? await input.synapseDb.passwordHash(uid) : undefined;
    if (now === hash) return;
    changes.push('password hash');
    if (apply && !(await input.synapseDb.setPasswordHash(uid, hash))) throw new SectionFailed('password', `${uid} is not in Synapse's users table: is --synapse-db the database of this homeserver?`);
  });

  // 3. The avatar.
  await run('avatar', async () => {
    const want = doc.profile.avatarUrl;
    if (want === null) return;
    const have = typeof cur.avatar_url === 'string' ? cur.avatar_url : null;
    const gone = await mediaGone(deps, want, uid.slice(uid.indexOf(':') + 1), signal);
    if (!gone) {
      if (have !== want) {
        changes.push('avatar');
        if (apply) need('avatar', await deps.account.upsertUser(uid, { avatar_url: want }, opts));
      }
      return;
    }
    // The media is gone (its repository was lost too): an avatar with the same content counts as restored.
    if (have !== null && doc.profile.avatarSha256 !== null && (await mediaSha256(deps, have, signal)) === doc.profile.avatarSha256) return;
    const file = input.archiveDir && doc.profile.avatarSha256 ? join(input.archiveDir, 'media', doc.profile.avatarSha256.slice(0, 2), doc.profile.avatarSha256) : null;
    let bytes: Buffer | null = null;
    if (file) bytes = await readFile(file).catch(() => null);
    if (!bytes) {
      notes.push(`avatar ${want}: its media is gone from this server${doc.profile.avatarSha256 === null ? ' and the dump has no checksum to find it by' : input.archiveDir ? ' and the archive does not hold it' : '; give --archive to re-upload it from an archive'}`);
      return;
    }
    changes.push('avatar (re-uploaded from the archive)');
    if (!apply) return;
    const uploaded = need('avatar', await deps.account.uploadMedia(uid, bytes, doc.profile.avatarType ?? 'application/octet-stream', doc.profile.avatarName ?? undefined, opts));
    need('avatar', await deps.account.upsertUser(uid, { avatar_url: uploaded.content_uri }, opts));
  });

  // 4. Account data, global and per room.
  if (doc.accountData) {
    const data = doc.accountData;
    await run('account_data', async () => {
      const now = exists ? need('account_data', await deps.admin.accountData(uid, opts)).account_data : { global: {}, rooms: {} };
      let global = 0;
      let rooms = 0;
      for (const [type, content] of Object.entries(data.global)) {
        if (type === 'm.push_rules') continue; // restored from push_rules below
        if (same(now.global?.[type], content)) continue;
        global += 1;
        if (apply) need('account_data', await deps.account.setGlobalAccountData(uid, type, content, opts));
      }
      for (const [room, types] of Object.entries(data.rooms)) {
        for (const [type, content] of Object.entries(types)) {
          // The account-data API refuses read markers; POST /read_markers takes them, once the
          // user is in the room again and the event is known there: restore rooms' work.
          if (type === 'm.fully_read') {
            if (isJsonObject(content) && typeof content.event_id === 'string') readMarkers.push({ roomId: room, eventId: content.event_id });
            continue;
          }
          if (same(now.rooms?.[room]?.[type], content)) continue;
          rooms += 1;
          if (apply) need('account_data', await deps.account.setRoomAccountData(uid, room, type, content, opts));
        }
      }
      if (global) changes.push(`${global} global account data`);
      if (rooms) changes.push(`${rooms} room account data`);
      if (readMarkers.length) notes.push(`read markers (m.fully_read) in ${readMarkers.length} room(s): ${apply ? 'set by restore rooms' : 'would be set by restore rooms'} once the rooms are back (the account-data API refuses them)`);
    });
  } else if (doc.missingSections.account_data) notes.push(`account data: ${doc.missingSections.account_data}`);

  // 5. Push rules: server-default rules get their enabled flag and actions; the user's own rules are put back in order.
  if (doc.pushRules) {
    const rules = doc.pushRules;
    await run('push_rules', async () => {
      const now = exists ? (need('push_rules', await deps.client.pushRules(uid, opts)).global as JsonObject | undefined) ?? {} : {};
      let written = 0;
      const unknownDefaults: string[] = [];
      for (const kind of PUSH_RULE_KINDS) {
        const target = (Array.isArray(now[kind]) ? now[kind] : []).filter(isJsonObject) as JsonObject[];
        const byId = new Map(target.map((r) => [String(r.rule_id), r]));
        const isDefault = (r: DumpedPushRule): boolean => r.default || r.rule_id.startsWith('.');
        // An account still to be created (dry run) gets this server's defaults: nothing to compare them with yet.
        for (const r of exists ? rules[kind].filter(isDefault) : []) {
          const t = byId.get(r.rule_id);
          if (!t) {
            unknownDefaults.push(r.rule_id);
            continue;
          }
          if (Boolean(t.enabled) !== r.enabled) {
            written += 1;
            if (apply) need('push_rules', await deps.account.setPushRuleEnabled(uid, kind, r.rule_id, r.enabled, opts));
          }
          if (!same(t.actions, r.actions)) {
            written += 1;
            if (apply) need('push_rules', await deps.account.setPushRuleActions(uid, kind, r.rule_id, r.actions, opts));
          }
        }
        const own = rules[kind].filter((r) => !isDefault(r));
        if (own.length === 0) continue;
        const body = (r: DumpedPushRule): JsonObject => ({ actions: r.actions, ...(r.conditions ? { conditions: r.conditions } : {}), ...(r.pattern !== undefined ? { pattern: r.pattern } : {}) });
        const targetOwn = target.filter((t) => !t.default && !String(t.rule_id).startsWith('.'));
        const wanted = new Set(own.map((r) => r.rule_id));
        const order = targetOwn.map((t) => String(t.rule_id)).filter((id) => wanted.has(id));
        const inPlace = same(order, own.map((r) => r.rule_id)) && own.every((r) => {
          const t = byId.get(r.rule_id)!;
          return same(body(r), { actions: t.actions, ...(r.conditions ? { conditions: t.conditions } : {}), ...(r.pattern !== undefined ? { pattern: t.pattern } : {}) });
        });
        if (!inPlace) {
          // Rewritten in order: the first above every other rule of the user's, each next one after the one before.
          const firstOther = targetOwn.find((t) => !wanted.has(String(t.rule_id)));
          let previous: string | undefined;
          for (const r of own) {
            written += 1;
            const place = previous ? { after: previous } : firstOther ? { before: String(firstOther.rule_id) } : {};
            if (apply) need('push_rules', await deps.account.putPushRule(uid, kind, r.rule_id, body(r), place, opts));
            previous = r.rule_id;
          }
        }
        for (const r of own) {
          const enabledNow = inPlace ? Boolean(byId.get(r.rule_id)?.enabled) : true; // a rule just put is enabled
          if (enabledNow === r.enabled) continue;
          written += 1;
          if (apply) need('push_rules', await deps.account.setPushRuleEnabled(uid, kind, r.rule_id, r.enabled, opts));
        }
      }
      if (written) changes.push(`${written} push rule change(s)`);
      if (unknownDefaults.length) notes.push(`server-default push rules this Synapse does not have: ${unknownDefaults.join(', ')}`);
    });
  } else if (doc.missingSections.push_rules) notes.push(`push rules: ${doc.missingSections.push_rules}`);

  // 6. Device ids (and names). Their keys cannot come back: clients must sign in again and re-verify.
  const deviceIds = new Set<string>();
  if (doc.devices) {
    const devices = doc.devices;
    await run('devices', async () => {
      const now = exists ? need('devices', await deps.admin.devices(uid, opts)).devices : [];
      const byId = new Map(now.map((d) => [String(d.device_id), d]));
      let written = 0;
      for (const d of devices) {
        deviceIds.add(d.device_id);
        const t = byId.get(d.device_id);
        if (t && (t.display_name ?? null) === d.display_name) continue;
        written += 1;
        if (apply) need('devices', await deps.account.putDevice(uid, d.device_id, d.display_name, opts));
      }
      if (written) changes.push(`${written} device(s)`);
    });
  }

  // 7. Pushers, each on its own device when that device is back, with its enabled flag where the
  // server takes one (MSC3881: Synapse ignores the flag unless the feature is on for the user).
  if (doc.pushers) {
    const pushers = doc.pushers;
    await run('pushers', async () => {
      const now = exists ? need('pushers', await deps.admin.pushers(uid, opts)).pushers : [];
      const key = (p: JsonObject): string => `${String(p.app_id)}\u0000${String(p.pushkey)}`;
      const byKey = new Map(now.map((p) => [key(p), p]));
      const fields = ['kind', 'app_display_name', 'device_display_name', 'lang', 'data', 'profile_tag'];
      // Whether this server takes the flag for this user: asked once, only when a flag differs.
      let flagTaken: boolean | null | undefined;
      const takesFlag = async (): Promise<boolean | null> => {
        if (flagTaken === undefined) flagTaken = await pusherFlagTaken(deps, uid, signal);
        return flagTaken;
      };
      let written = 0;
      const sentDisabled: JsonObject[] = [];
      for (const p of pushers) {
        const t = byKey.get(key(p));
        const wantEnabled = pusherEnabled(p.enabled);
        const fieldsSame = t !== undefined && fields.every((f) => same(t[f] ?? null, p[f] ?? null));
        if (fieldsSame && pusherEnabled(t.enabled) === wantEnabled) continue;
        if (fieldsSame && (await takesFlag()) === false) {
          // Only the flag differs and this server cannot change it: writing again would change nothing.
          notes.push(pusherFlagNote(p));
          continue;
        }
        written += 1;
        if (!wantEnabled) sentDisabled.push(p);
        if (!apply) continue;
        const body: JsonObject = { app_id: p.app_id, pushkey: p.pushkey, append: true, [MSC3881_ENABLED]: wantEnabled };
        for (const f of fields) body[f] = p[f] ?? (f === 'profile_tag' ? '' : null);
        const device = typeof p.device_id === 'string' && deviceIds.has(p.device_id) ? p.device_id : undefined;
        need('pushers', await deps.account.setPusher(uid, body, device, opts));
      }
      if (written) changes.push(`${written} pusher(s)`);
      if (sentDisabled.length > 0 && apply) {
        // Synapse answers 200 whether or not it took the flag: read back which stayed enabled.
        const after = new Map(need('pushers', await deps.admin.pushers(uid, opts)).pushers.map((p) => [key(p), p]));
        for (const p of sentDisabled) if (pusherEnabled(after.get(key(p))?.enabled)) notes.push(pusherFlagNote(p));
      }
    });
  } else if (doc.missingSections.pushers) notes.push(`pushers: ${doc.missingSections.pushers}`);

  // 8. The key backup: its version (a new number on this server) and its sessions, opaque ciphertext.
  if (doc.keyBackup) {
    const kb = doc.keyBackup;
    await run('key_backup', async () => {
      let version: string | null = null;
      if (exists) {
        const got = await deps.account.keyBackupVersion(uid, opts);
        if (!got.ok && got.error.errcode !== 'M_NOT_FOUND') throw new SectionFailed('key_backup', got.error.human);
        if (got.ok) {
          if (got.value.algorithm === kb.algorithm && same(got.value.auth_data, kb.auth_data)) version = String(got.value.version);
          else {
            notes.push(`key backup: the user already has another backup (version ${String(got.value.version)}); the dumped one (version ${kb.version}) is not put over it`);
            return;
          }
        }
      }
      let existing: Record<string, { sessions: Record<string, unknown> }> = {};
      if (version === null) {
        changes.push(`key backup version (was ${kb.version})`);
        if (apply) version = need('key_backup', await deps.account.createKeyBackupVersion(uid, { algorithm: kb.algorithm, auth_data: kb.auth_data }, opts)).version;
      } else if (kb.rooms) {
        existing = need('key_backup', await deps.account.keyBackupKeys(uid, version, opts)).rooms ?? {};
      }
      if (!kb.rooms) {
        notes.push('key backup: this dump has no sessions (made before dump users recorded them); only the version is restored');
        return;
      }
      let batch: Record<string, { sessions: Record<string, unknown> }> = {};
      let inBatch = 0;
      let total = 0;
      const flush = async (): Promise<void> => {
        if (inBatch === 0) return;
        if (apply && version !== null) need('key_backup', await deps.account.putKeyBackupKeys(uid, version, batch, opts));
        batch = {};
        inBatch = 0;
      };
      for (const [room, { sessions }] of Object.entries(kb.rooms)) {
        for (const [id, session] of Object.entries(sessions)) {
          if (same(existing[room]?.sessions?.[id], session)) continue;
          (batch[room] ??= { sessions: {} }).sessions[id] = session;
          inBatch += 1;
          total += 1;
          if (inBatch >= 200) await flush();
        }
      }
      await flush();
      if (total) changes.push(`${total} backed-up session(s)`);
    });
  } else if (doc.missingSections.key_backup) notes.push(`key backup: ${doc.missingSections.key_backup}`);

  // 9. Cross-signing public keys (the private keys never left the user's devices or secret storage).
  if (doc.crossSigning?.master_key) {
    const cs = doc.crossSigning;
    await run('cross_signing', async () => {
      let now: JsonObject = {};
      if (exists) {
        const q = need('cross_signing', await deps.client.keysQuery(uid, uid, opts));
        const pick = (f: string): unknown => (q[f] as JsonObject | undefined)?.[uid] ?? null;
        now = { master_key: pick('master_keys'), self_signing_key: pick('self_signing_keys'), user_signing_key: pick('user_signing_keys') };
      }
      const publicPart = (k: unknown): unknown => (isJsonObject(k) ? { keys: k.keys, usage: k.usage, user_id: k.user_id } : null);
      const upload: JsonObject = {};
      for (const name of ['master_key', 'self_signing_key', 'user_signing_key'] as const) {
        if (cs[name] && !same(publicPart(now[name]), publicPart(cs[name]))) upload[name] = cs[name];
      }
      if (Object.keys(upload).length === 0) return;
      // Every key is sent again: a new master key makes the others' signatures need it.
      for (const name of ['master_key', 'self_signing_key', 'user_signing_key'] as const) if (cs[name]) upload[name] = cs[name];
      changes.push('cross-signing keys');
      if (!apply) return;
      if (now.master_key) {
        const allowed = await deps.account.allowCrossSigningReplacement(uid, opts);
        if (!allowed.ok && allowed.error.status !== 404) throw new SectionFailed('cross_signing', allowed.error.human);
      }
      need('cross_signing', await deps.account.uploadCrossSigningKeys(uid, upload, opts));
    });
  } else if (doc.missingSections.cross_signing) notes.push(`cross-signing: ${doc.missingSections.cross_signing}`);

  return done();
}

/** True when a local mxc's media is no longer in the media repository; remote media is not ours to check. */
async function mediaGone(deps: UserRestoreDeps, mxc: string, localServer: string, signal: AbortSignal): Promise<boolean> {
  const m = /^mxc:\/\/([^/]+)\/([^/?#]+)$/.exec(mxc);
  if (!m) return true;
  if (m[1] !== localServer) return false;
  const info = await deps.account.mediaInfo(m[1]!, m[2]!, { signal });
  if (info.ok) return false;
  if (info.error.status === 404) return true;
  throw new SectionFailed('avatar', info.error.human);
}

async function mediaSha256(deps: UserRestoreDeps, mxc: string, signal: AbortSignal): Promise<string | null> {
  const m = /^mxc:\/\/([^/]+)\/([^/?#]+)$/.exec(mxc);
  if (!m) return null;
  const info = await deps.account.mediaInfo(m[1]!, m[2]!, { signal });
  return info.ok && typeof info.value.media_info?.sha256 === 'string' ? info.value.media_info.sha256 : null;
}

/** MSC3881's unstable name of a pusher's enabled flag in the client API (POST /pushers/set, GET /pushers). */
export const MSC3881_ENABLED = 'org.matrix.msc3881.enabled';

/** A pusher is enabled unless it says otherwise (Synapse's admin API on SQLite may give 0/1). */
function pusherEnabled(v: unknown): boolean {
  return !(v === false || v === 0);
}

function pusherFlagNote(p: JsonObject): string {
  return `pusher ${String(p.app_id)} (${String(p.app_display_name ?? p.pushkey)}) was disabled, but this server keeps it enabled: ` +
    'Synapse takes the flag only with MSC3881 on (experimental_features: msc3881_enabled, or per user through the admin API); ' +
    'the user can disable it again in their client';
}

/**
 * Whether the server takes pushers' enabled flag for this user: the client API shows MSC3881's
 * field on each pusher exactly when it does. null when the user has no pusher to show it on yet.
 */
async function pusherFlagTaken(deps: UserRestoreDeps, userId: string, signal: AbortSignal): Promise<boolean | null> {
  const got = need('pushers', await deps.account.clientPushers(userId, { signal }));
  const list = Array.isArray(got.pushers) ? got.pushers.filter(isJsonObject) : [];
  return list.length === 0 ? null : list.some((p) => Object.hasOwn(p, MSC3881_ENABLED));
}
