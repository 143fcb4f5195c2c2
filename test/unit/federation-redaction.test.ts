import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { KNOWN_ROOM_VERSIONS, redactEvent, roomVersion } from "../../src/federation/index.ts";
import type { JsonObject } from "../../src/federation/index.ts";
import { version } from "./federation-test-key.ts";

function event(type: string, content: JsonObject, extra: JsonObject = {}): JsonObject {
  return {
    type,
    content,
    sender: "@alice:hs1",
    room_id: "!r:hs1",
    event_id: "$e:hs1",
    state_key: "",
    origin: "hs1",
    origin_server_ts: 1,
    depth: 3,
    prev_events: ["$p"],
    auth_events: ["$a"],
    prev_state: [],
    membership: "join",
    hashes: { sha256: "h" },
    signatures: { hs1: { "ed25519:1": "s" } },
    unsigned: { age_ts: 5 },
    extra_top_level: true,
    ...extra,
  };
}

const COMMON_KEPT = ["auth_events", "content", "depth", "event_id", "hashes", "origin_server_ts", "prev_events", "room_id", "sender", "signatures", "state_key", "type"];

describe("room versions", () => {
  it("knows 1 to 12 and refuses anything else", () => {
    assert.deepEqual(KNOWN_ROOM_VERSIONS, ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"]);
    for (const unknown of ["13", "org.matrix.msc4242.12", "", "__proto__", "toString"]) {
      const result = roomVersion(unknown);
      assert.equal(result.ok ? "ok" : result.error.code, "E_UNSUPPORTED_ROOM_VERSION", unknown);
    }
  });

  it("records the event id format and room id scheme of each version", () => {
    assert.equal(version("2").eventIdFormat, "server-generated");
    assert.equal(version("3").eventIdFormat, "reference-hash");
    assert.equal(version("4").eventIdFormat, "reference-hash-url-safe");
    assert.equal(version("12").eventIdFormat, "reference-hash-url-safe");
    assert.equal(version("11").roomIdIsCreateEventHash, false);
    assert.equal(version("12").roomIdIsCreateEventHash, true);
    assert.equal(version("4").enforceKeyValidity, false);
    assert.equal(version("5").enforceKeyValidity, true);
  });
});

describe("redactEvent: top-level keys", () => {
  it("keeps origin, membership and prev_state before v11 and drops unknown keys and unsigned", () => {
    const redacted = redactEvent(event("m.room.message", { body: "hi" }), version("10"));
    assert.deepEqual(Object.keys(redacted).sort(), [...COMMON_KEPT, "membership", "origin", "prev_state"].sort());
    assert.deepEqual(redacted["content"], {});
  });

  it("drops origin, membership and prev_state from v11", () => {
    for (const id of ["11", "12"]) {
      const redacted = redactEvent(event("m.room.message", { body: "hi" }), version(id));
      assert.deepEqual(Object.keys(redacted).sort(), COMMON_KEPT, id);
    }
  });

  it("always yields a content object and copies instead of sharing", () => {
    const original = event("m.room.power_levels", { users: { "@alice:hs1": 100 } });
    delete original["content"];
    assert.deepEqual(redactEvent(original, version("9"))["content"], {});
    const withContent = event("m.room.power_levels", { users: { "@alice:hs1": 100 } });
    const redacted = redactEvent(withContent, version("9"));
    (redacted["content"] as { users: Record<string, number> }).users["@alice:hs1"] = 0;
    (redacted["prev_events"] as string[]).push("$q");
    assert.deepEqual(withContent["content"], { users: { "@alice:hs1": 100 } });
    assert.deepEqual(withContent["prev_events"], ["$p"]);
  });
});

describe("redactEvent: m.room.member", () => {
  const member = event("m.room.member", {
    membership: "join",
    displayname: "Alice",
    avatar_url: "mxc://hs1/a",
    join_authorised_via_users_server: "@bob:hs2",
    third_party_invite: { display_name: "alice@example.org", signed: { mxid: "@alice:hs1", token: "t" } },
  });

  it("keeps only membership up to v8", () => {
    for (const id of ["1", "6", "8"]) assert.deepEqual(redactEvent(member, version(id))["content"], { membership: "join" }, id);
  });

  it("also keeps join_authorised_via_users_server from v9", () => {
    assert.deepEqual(redactEvent(member, version("9"))["content"], {
      membership: "join",
      join_authorised_via_users_server: "@bob:hs2",
    });
  });

  it("also keeps third_party_invite.signed from v11", () => {
    assert.deepEqual(redactEvent(member, version("11"))["content"], {
      membership: "join",
      join_authorised_via_users_server: "@bob:hs2",
      third_party_invite: { signed: { mxid: "@alice:hs1", token: "t" } },
    });
  });

  it("keeps an empty third_party_invite without signed, as Synapse does, and drops a non-object one", () => {
    const unsigned = event("m.room.member", { membership: "invite", third_party_invite: { display_name: "x" } });
    assert.deepEqual(redactEvent(unsigned, version("12"))["content"], { membership: "invite", third_party_invite: {} });
    const odd = event("m.room.member", { membership: "invite", third_party_invite: "x" });
    assert.deepEqual(redactEvent(odd, version("12"))["content"], { membership: "invite" });
  });
});

describe("redactEvent: other state events", () => {
  it("m.room.create keeps only creator up to v10, all content from v11", () => {
    const create = event("m.room.create", { creator: "@alice:hs1", room_version: "10", "m.federate": false, predecessor: { room_id: "!old:hs1" } });
    assert.deepEqual(redactEvent(create, version("10"))["content"], { creator: "@alice:hs1" });
    assert.deepEqual(redactEvent(create, version("11"))["content"], create["content"]);
  });

  it("m.room.power_levels keeps invite only from v11", () => {
    const content = {
      ban: 50, events: { "m.room.name": 50 }, events_default: 0, invite: 50, kick: 50, redact: 50,
      state_default: 50, users: { "@alice:hs1": 100 }, users_default: 0, notifications: { room: 50 },
    };
    const { invite: _invite, notifications: _notifications, ...v10Kept } = content;
    const { notifications: _n, ...v11Kept } = content;
    assert.deepEqual(redactEvent(event("m.room.power_levels", content), version("10"))["content"], v10Kept);
    assert.deepEqual(redactEvent(event("m.room.power_levels", content), version("11"))["content"], v11Kept);
  });

  it("m.room.join_rules keeps allow only from v8", () => {
    const joinRules = event("m.room.join_rules", { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: "!s:hs1" }], x: 1 });
    assert.deepEqual(redactEvent(joinRules, version("7"))["content"], { join_rule: "restricted" });
    assert.deepEqual(redactEvent(joinRules, version("8"))["content"], { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: "!s:hs1" }] });
  });

  it("m.room.aliases keeps aliases only up to v5", () => {
    const aliases = event("m.room.aliases", { aliases: ["#a:hs1"] }, { state_key: "hs1" });
    assert.deepEqual(redactEvent(aliases, version("5"))["content"], { aliases: ["#a:hs1"] });
    assert.deepEqual(redactEvent(aliases, version("6"))["content"], {});
  });

  it("m.room.history_visibility keeps history_visibility in every version", () => {
    for (const id of KNOWN_ROOM_VERSIONS) {
      const visibility = event("m.room.history_visibility", { history_visibility: "joined", x: 1 });
      assert.deepEqual(redactEvent(visibility, version(id))["content"], { history_visibility: "joined" }, id);
    }
  });

  it("m.room.redaction keeps content.redacts only from v11; the top-level redacts never survives", () => {
    const redaction = event("m.room.redaction", { redacts: "$t", reason: "spam" }, { redacts: "$t" });
    const v10 = redactEvent(redaction, version("10"));
    assert.deepEqual(v10["content"], {});
    assert.equal("redacts" in v10, false);
    assert.deepEqual(redactEvent(redaction, version("11"))["content"], { redacts: "$t" });
  });

  it("strips content of unknown types entirely", () => {
    assert.deepEqual(redactEvent(event("m.room.name", { name: "Secret" }), version("12"))["content"], {});
  });
});
