import type { StewardConfig } from '../config/config.ts';
import type { ClientApi } from '../homeserver/client-api.ts';
import type { Logger } from '../log.ts';
import type { KeyValueStore } from '../store/kv.ts';
import { fail, ok, type Result } from '../util/result.ts';

export interface Rooms {
  readonly adminRoomId: string;
  readonly statusRoomId: string;
}

export const CREATED_ROOM_KEY = 'admin_room.created_room_id';

/**
 * Finds or creates the admin room, checks it is usable (joined, unencrypted) and invites the
 * configured admins who are not there yet. The status room defaults to the admin room.
 */
export async function ensureRooms(config: StewardConfig, client: ClientApi, kv: KeyValueStore, botUserId: string, log: Logger): Promise<Result<Rooms>> {
  const admin = config.adminRoom.room
    ? await joinConfigured(config.adminRoom.room, 'admin_room.room', client, botUserId)
    : await createdOrNew(config, client, kv, botUserId, log);
  if (!admin.ok) return admin;
  const usable = await checkUsable(admin.value, client, 'admin room');
  if (!usable.ok) return usable;
  await inviteMissingAdmins(admin.value, config.adminRoom.admins, client, log);

  let statusRoomId = admin.value;
  if (config.adminRoom.statusRoom) {
    const status = await joinConfigured(config.adminRoom.statusRoom, 'admin_room.status_room', client, botUserId);
    if (!status.ok) return status;
    const statusUsable = await checkUsable(status.value, client, 'status room');
    if (!statusUsable.ok) return statusUsable;
    statusRoomId = status.value;
  }
  return ok({ adminRoomId: admin.value, statusRoomId });
}

async function joinConfigured(ref: string, key: string, client: ClientApi, botUserId: string): Promise<Result<string>> {
  const joined = await client.join(ref);
  if (joined.ok) return ok(joined.value.room_id);
  return fail('E_ADMIN_ROOM', `Cannot join ${ref} (${key}): ${joined.error.human}. Invite ${botUserId} to that room, or remove ${key} from the config to let Steward create one.`);
}

async function createdOrNew(config: StewardConfig, client: ClientApi, kv: KeyValueStore, botUserId: string, log: Logger): Promise<Result<string>> {
  const remembered = kv.get(CREATED_ROOM_KEY);
  if (remembered) {
    const joined = await client.join(remembered);
    if (joined.ok) return ok(joined.value.room_id);
    log.warn({ roomId: remembered, detail: joined.error.log }, 'the admin room created earlier is gone; creating a new one');
  }
  // In room versions with privileged creators (12+) the creator must not be listed in power
  // levels; in older ones, overriding `users` would otherwise drop the creator's own 100.
  const powerUsers: Record<string, number> = (await creatorsArePrivileged(client)) ? {} : { [botUserId]: 100 };
  for (const a of config.adminRoom.admins) powerUsers[a] = 100;
  const created = await client.createRoom({
    name: config.adminRoom.name,
    topic: 'Steward admin room: type !help',
    preset: 'private_chat',
    visibility: 'private',
    is_direct: false,
    invite: [...config.adminRoom.admins],
    // No m.room.encryption: Steward does not do E2EE and must read the commands.
    initial_state: [{ type: 'm.room.history_visibility', state_key: '', content: { history_visibility: 'shared' } }],
    power_level_content_override: { users: powerUsers },
  });
  if (!created.ok) return fail('E_ADMIN_ROOM', `Cannot create the admin room: ${created.error.human}`, created.error.log);
  kv.set(CREATED_ROOM_KEY, created.value.room_id);
  log.info({ roomId: created.value.room_id }, 'created the admin room');
  return ok(created.value.room_id);
}

async function checkUsable(roomId: string, client: ClientApi, what: string): Promise<Result<void>> {
  const encryption = await client.stateEvent(roomId, 'm.room.encryption');
  if (encryption.ok && Object.keys(encryption.value).length > 0) {
    return fail('E_ENCRYPTED_ROOM', `The ${what} ${roomId} is encrypted. Steward does not do end-to-end encryption and could not read commands there: use an unencrypted room, or remove the room from the config to let Steward create one.`);
  }
  if (!encryption.ok && encryption.error.errcode !== 'M_NOT_FOUND') {
    return fail('E_ADMIN_ROOM', `Cannot check the ${what} ${roomId}: ${encryption.error.human}`);
  }
  return ok(undefined);
}

async function inviteMissingAdmins(roomId: string, admins: readonly string[], client: ClientApi, log: Logger): Promise<void> {
  const state = await client.roomState(roomId);
  if (!state.ok) {
    log.warn({ roomId, detail: state.error.log }, 'cannot read the admin room members; not inviting admins');
    return;
  }
  const membership = new Map<string, string>();
  for (const ev of state.value) {
    if (ev.type === 'm.room.member' && typeof ev.state_key === 'string') membership.set(ev.state_key, String((ev.content as { membership?: unknown })?.membership));
  }
  for (const admin of admins) {
    const m = membership.get(admin);
    if (m === 'join' || m === 'invite' || m === 'ban') continue;
    const invited = await client.invite(roomId, admin);
    if (invited.ok) log.info({ roomId, admin }, 'invited an admin to the admin room');
    else log.warn({ roomId, admin, detail: invited.error.log }, 'could not invite an admin to the admin room');
  }
}

const PRIVILEGED_CREATOR_VERSIONS = new Set(['12', 'org.matrix.hydra.11']);

async function creatorsArePrivileged(client: ClientApi): Promise<boolean> {
  const caps = await client.capabilities();
  const versions = caps.ok ? (caps.value.capabilities['m.room_versions'] as { default?: unknown } | undefined) : undefined;
  const def = typeof versions?.default === 'string' ? versions.default : '';
  return PRIVILEGED_CREATOR_VERSIONS.has(def) || (/^\d+$/.test(def) && Number(def) >= 12);
}
