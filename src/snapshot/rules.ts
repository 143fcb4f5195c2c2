/**
 * What an anonymised snapshot may keep. Everything here is a whitelist: an event type not listed
 * is dropped, a content key not listed is dropped, an enumerated value not listed is dropped.
 * The leak check (leak-check.ts) derives its "structural vocabulary" from these same lists: words
 * the output is allowed to contain because they are part of the format, not of anybody's data.
 */

/** The single homeserver of the blueprint; every anonymised id lives on it. */
export const ANON_SERVER = 'hs1';

/** Event types kept (Complement's list). Every other type is dropped with its content. */
export const WHITELISTED_TYPES: readonly string[] = [
  'm.room.create',
  'm.room.name',
  'm.room.topic',
  'm.room.avatar',
  'm.room.canonical_alias',
  'm.room.server_acl',
  'm.room.encryption',
  'm.room.guest_access',
  'm.room.history_visibility',
  'm.room.join_rules',
  'm.room.tombstone',
  'm.room.pinned_events',
  'm.room.member',
  'm.room.power_levels',
  'm.room.encrypted',
  'm.room.redaction',
  'm.room.message',
  'm.reaction',
  'org.matrix.room.preview_urls',
];

/**
 * Content keys each type may keep (nested keys by dot path). The anonymiser applies a rule per
 * key; this table is the list the leak check and the docs can read.
 */
export const WHITELISTED_KEYS: Readonly<Record<string, readonly string[]>> = {
  'm.room.create': ['creator', 'room_version', 'm.federate', 'type', 'predecessor.room_id', 'predecessor.event_id', 'additional_creators'],
  'm.room.name': ['name'],
  'm.room.topic': ['topic', 'm.topic.m.text.body', 'm.topic.m.text.mimetype'],
  'm.room.avatar': ['url', 'info.h', 'info.w', 'info.size', 'info.mimetype'],
  'm.room.canonical_alias': ['alias'],
  'm.room.server_acl': ['allow', 'deny', 'allow_ip_literals'],
  'm.room.encryption': ['algorithm', 'rotation_period_ms', 'rotation_period_msgs'],
  'm.room.guest_access': ['guest_access'],
  'm.room.history_visibility': ['history_visibility'],
  'm.room.join_rules': ['join_rule', 'allow.type', 'allow.room_id'],
  'm.room.tombstone': ['body', 'replacement_room'],
  'm.room.pinned_events': ['pinned'],
  'm.room.member': ['membership', 'displayname', 'avatar_url', 'reason', 'is_direct'],
  'm.room.power_levels': ['ban', 'events', 'events_default', 'invite', 'kick', 'redact', 'state_default', 'users', 'users_default', 'notifications.room'],
  'm.room.encrypted': ['algorithm', 'ciphertext_length', 'device_id', 'm.relates_to'],
  'm.room.redaction': ['redacts', 'reason'],
  'm.room.message': [
    'msgtype', 'body', 'format', 'formatted_body', 'filename',
    'info.h', 'info.w', 'info.size', 'info.duration', 'info.mimetype',
    'm.new_content.msgtype', 'm.new_content.body', 'm.new_content.format', 'm.new_content.formatted_body',
    'm.relates_to.rel_type', 'm.relates_to.event_id', 'm.relates_to.is_falling_back', 'm.relates_to.m.in_reply_to.event_id',
    'm.mentions.user_ids', 'm.mentions.room',
  ],
  'm.reaction': ['m.relates_to.rel_type', 'm.relates_to.event_id', 'm.relates_to.key'],
  'org.matrix.room.preview_urls': ['disable'],
};

/** Enumerated values kept as they are; any other value of these keys is dropped. */
export const ENUMS = {
  membership: ['join', 'invite', 'leave', 'ban', 'knock'],
  join_rule: ['public', 'invite', 'knock', 'restricted', 'knock_restricted', 'private'],
  history_visibility: ['world_readable', 'shared', 'invited', 'joined'],
  guest_access: ['can_join', 'forbidden'],
  msgtype: ['m.text', 'm.notice', 'm.emote', 'm.image', 'm.file', 'm.audio', 'm.video', 'm.location', 'm.key.verification.request', 'm.server_notice'],
  format: ['org.matrix.custom.html'],
  rel_type: ['m.annotation', 'm.replace', 'm.thread', 'm.reference'],
  algorithm: ['m.megolm.v1.aes-sha2', 'm.olm.v1.curve25519-aes-sha2'],
  room_type: ['m.space'],
  join_rule_allow_type: ['m.room_membership'],
  mimetype: [
    'image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/svg+xml', 'image/avif', 'image/heic',
    'video/mp4', 'video/webm', 'video/quicktime', 'audio/ogg', 'audio/mpeg', 'audio/mp4', 'audio/webm',
    'application/pdf', 'application/octet-stream', 'application/zip', 'text/plain', 'text/html', 'text/markdown',
  ],
} as const satisfies Record<string, readonly string[]>;

/**
 * Event types a power-levels `events` map may name and keep in the snapshot. Custom (namespaced)
 * types are dropped: their names are chosen by people and integrations and may identify them.
 */
export const KNOWN_EVENT_TYPES: readonly string[] = [
  ...WHITELISTED_TYPES,
  'm.room.third_party_invite', 'm.room.policy', 'm.room.retention', 'm.room.related_groups',
  'm.space.child', 'm.space.parent', 'm.sticker', 'm.call.invite', 'm.call.answer', 'm.call.hangup',
  'm.call.candidates', 'm.call.member', 'm.poll.start', 'm.poll.response', 'm.poll.end', 'm.beacon_info', 'm.beacon',
  'm.policy.rule.user', 'm.policy.rule.room', 'm.policy.rule.server', 'm.widget', 'im.vector.modular.widgets',
];

/** Room versions as servers name them: digits, or an unstable identifier of letters, digits, dots and dashes. */
export const ROOM_VERSION = /^[A-Za-z0-9.-]{1,40}$/;

/** Where the replayed blueprint starts from, as Complement's account-snapshot names it. */
export const DEFAULT_BASE_IMAGE = 'complement-synapse:latest';
