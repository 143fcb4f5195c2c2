import { isJsonObject } from "./json-object.ts";
import type { JsonObject } from "./json-object.ts";
import type { RedactionRules, RoomVersion } from "./room-versions.ts";

interface Rules {
  readonly topLevel: ReadonlySet<string>;
  /** Content keys that survive, per event type; "all" keeps the whole content. */
  readonly content: Readonly<Record<string, readonly string[] | "all">>;
  /** v11+: `third_party_invite` of a member event survives, reduced to its `signed`. */
  readonly keepsThirdPartyInviteSigned: boolean;
}

const V1_TOP_LEVEL = [
  "event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures",
  "depth", "prev_events", "auth_events", "origin_server_ts",
  "prev_state", "origin", "membership",
];
const V11_TOP_LEVEL = V1_TOP_LEVEL.filter((key) => !["prev_state", "origin", "membership"].includes(key));

const POWER_LEVELS = ["ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"];

const V1_CONTENT = {
  "m.room.member": ["membership"],
  "m.room.create": ["creator"],
  "m.room.join_rules": ["join_rule"],
  "m.room.power_levels": POWER_LEVELS,
  "m.room.aliases": ["aliases"],
  "m.room.history_visibility": ["history_visibility"],
};
// v6 stops protecting m.room.aliases (its special auth rules went away too).
const { "m.room.aliases": _aliases, ...V6_CONTENT } = V1_CONTENT;
const V8_CONTENT = { ...V6_CONTENT, "m.room.join_rules": ["join_rule", "allow"] };
const V9_CONTENT = { ...V8_CONTENT, "m.room.member": ["membership", "join_authorised_via_users_server"] };
const V11_CONTENT = {
  ...V9_CONTENT,
  "m.room.create": "all" as const,
  "m.room.power_levels": [...POWER_LEVELS, "invite"],
  "m.room.redaction": ["redacts"],
};

const RULES: Readonly<Record<RedactionRules, Rules>> = {
  v1: { topLevel: new Set(V1_TOP_LEVEL), content: V1_CONTENT, keepsThirdPartyInviteSigned: false },
  v6: { topLevel: new Set(V1_TOP_LEVEL), content: V6_CONTENT, keepsThirdPartyInviteSigned: false },
  v8: { topLevel: new Set(V1_TOP_LEVEL), content: V8_CONTENT, keepsThirdPartyInviteSigned: false },
  v9: { topLevel: new Set(V1_TOP_LEVEL), content: V9_CONTENT, keepsThirdPartyInviteSigned: false },
  v11: { topLevel: new Set(V11_TOP_LEVEL), content: V11_CONTENT, keepsThirdPartyInviteSigned: true },
};

/**
 * The redacted form of an event under its room version's redaction algorithm: what
 * event signatures and reference hashes (hence v3+ event ids) cover. Returns a new
 * object sharing nothing with the input. `content` is always present, as `{}` at least.
 */
export function redactEvent(event: JsonObject, version: RoomVersion): JsonObject {
  const rules = RULES[version.redactionRules];
  const redacted: JsonObject = {};
  for (const [key, value] of Object.entries(event)) {
    if (rules.topLevel.has(key)) redacted[key] = structuredClone(value);
  }
  redacted["content"] = redactContent(event["type"], event["content"], rules);
  return redacted;
}

function redactContent(type: unknown, content: unknown, rules: Rules): JsonObject {
  if (typeof type !== "string" || !isJsonObject(content)) return {};
  const kept = Object.hasOwn(rules.content, type) ? rules.content[type] : undefined;
  if (kept === "all") return structuredClone(content);
  const redacted: JsonObject = {};
  for (const key of kept ?? []) {
    if (Object.hasOwn(content, key)) redacted[key] = structuredClone(content[key]);
  }
  if (type === "m.room.member" && rules.keepsThirdPartyInviteSigned) {
    const invite = content["third_party_invite"];
    // Synapse keeps an empty object when `signed` is absent; the spec is silent, and
    // event ids must agree with Synapse's.
    if (isJsonObject(invite)) {
      redacted["third_party_invite"] = Object.hasOwn(invite, "signed") ? { signed: structuredClone(invite["signed"]) } : {};
    }
  }
  return redacted;
}
