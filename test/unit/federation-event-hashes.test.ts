import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  checkContentHash,
  computeEventId,
  contentHash,
  encodeBase64,
  hashAndSignEvent,
  referenceHash,
  roomIdOfCreateEvent,
} from "../../src/federation/index.ts";
import type { JsonObject } from "../../src/federation/index.ts";
import { unwrap, VECTOR_SERVER, vectorKey, version } from "./federation-test-key.ts";

const key = vectorKey();

describe("hashAndSignEvent: the spec's event signing vectors", () => {
  it("signs the minimal event", () => {
    const minimal = {
      room_id: "!x:domain",
      sender: "@a:domain",
      origin: "domain",
      origin_server_ts: 1000000,
      signatures: {},
      hashes: {},
      type: "X",
      content: {},
      prev_events: [],
      auth_events: [],
      depth: 3,
      unsigned: { age_ts: 1000000 },
    };
    assert.deepEqual(hashAndSignEvent(minimal, version("1"), VECTOR_SERVER, key), {
      auth_events: [],
      content: {},
      depth: 3,
      hashes: { sha256: "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos" },
      origin: "domain",
      origin_server_ts: 1000000,
      prev_events: [],
      room_id: "!x:domain",
      sender: "@a:domain",
      signatures: {
        domain: {
          "ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg",
        },
      },
      type: "X",
      unsigned: { age_ts: 1000000 },
    });
  });

  it("signs the event with redactable content", () => {
    const message = {
      content: { body: "Here is the message content" },
      event_id: "$0:domain",
      origin: "domain",
      origin_server_ts: 1000000,
      type: "m.room.message",
      room_id: "!r:domain",
      sender: "@u:domain",
      signatures: {},
      unsigned: { age_ts: 1000000 },
    };
    assert.deepEqual(hashAndSignEvent(message, version("1"), VECTOR_SERVER, key), {
      ...message,
      hashes: { sha256: "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g" },
      signatures: {
        domain: {
          "ed25519:1": "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA",
        },
      },
    });
  });
});

// Expected values computed by Synapse 1.163 (add_hashes_and_signatures, event_id, room_id)
// on these same events, signed with the spec's test key.
describe("hashes and ids agree with Synapse", () => {
  function create(roomVersionId: string, withRoomId: boolean): JsonObject {
    const event: JsonObject = {
      type: "m.room.create",
      state_key: "",
      sender: "@alice:domain",
      content: { room_version: roomVersionId, "m.federate": true },
      origin_server_ts: 1700000000000,
      depth: 1,
      prev_events: [],
      auth_events: [],
      hashes: {},
      signatures: {},
    };
    if (withRoomId) {
      event["room_id"] = "!r:domain";
      (event["content"] as JsonObject)["creator"] = "@alice:domain";
    }
    return event;
  }

  const cases: Array<[string, string, JsonObject, { hash: string; sig: string; eventId: string; roomId: string }]> = [
    [
      "v3 member (standard base64 id)",
      "3",
      {
        type: "m.room.member",
        state_key: "@bob:domain",
        sender: "@bob:domain",
        room_id: "!r:domain",
        content: { membership: "join", displayname: "Bob" },
        origin_server_ts: 1700000000001,
        depth: 2,
        prev_events: ["$p"],
        auth_events: ["$a"],
        origin: "domain",
        unsigned: { age: 3 },
      },
      {
        hash: "HiSl+Kp1BqZnI5VvoYcfG7n5DYIuJQ9OR0VbGT+JYYM",
        sig: "OcG/eKF4WSupZNu40Lt9tHQ9B3D97VDpFFgF+eFJIgc5zsT06V5K1/BuAx/FukO1U/+4znD4VpFR+GFzWzeDCA",
        eventId: "$OEP4ehEmKhvAWGvlS29g7DnP5E/9z/O2gOZey0s0QUg",
        roomId: "!r:domain",
      },
    ],
    [
      "v10 create",
      "10",
      create("10", true),
      {
        hash: "BCmBGiVE7MQyk3/O7ReGZfoT8COrYPc0WiotsE0ieuE",
        sig: "QsRjYHLDsSUJwPKY0sR/oNExrWTDsjJoQSqv6A4v3cL8CKpbQLOpf45uGzqMZo1JE3T9UFAy0EfO1vrjqIsaCw",
        eventId: "$16_EoGWY4GPqHIuRjkbM3HqdfZk0ZRHSzkZ-nP4Pktk",
        roomId: "!r:domain",
      },
    ],
    [
      "v11 create (all content covered by the signature)",
      "11",
      create("11", true),
      {
        hash: "H38tPcWcjznhy1cRNBwwu6D1ubwuUN6+3Rc2siblkoI",
        sig: "lwHrPcNq9+k/jze8Hg5WNo2b3+db1QBS5vQk6b19qOOOSfCdh/zk1UwlRyEbd/0bhbD0Gss7vphukV8d61yXAQ",
        eventId: "$VRDyVhuVG7Rb3Qhlk-2-1zsGx_YbkA8FIUQoRxh5R7A",
        roomId: "!r:domain",
      },
    ],
    [
      "v12 create (no room_id; the room id is its hash)",
      "12",
      create("12", false),
      {
        hash: "CfKPgQJUf+DtMuQuRGxFXkXejC5qA4JsChhVSqb4kSQ",
        sig: "QL8ps7XtfaCnAWOfyYIXsRINY8LnOv5oucvv0OtRjMzXeUdkKoYr/0Z3HbkCR7vi3141x+OF34oGwaEC9//tAA",
        eventId: "$xNYN_S3smNQ4mHt_HuckXoJMeHVacKHevOEoJ5eLQu4",
        roomId: "!xNYN_S3smNQ4mHt_HuckXoJMeHVacKHevOEoJ5eLQu4",
      },
    ],
  ];

  for (const [name, roomVersionId, unsignedEvent, expected] of cases) {
    it(name, () => {
      const signed = hashAndSignEvent(unsignedEvent, version(roomVersionId), VECTOR_SERVER, key);
      assert.deepEqual(signed["hashes"], { sha256: expected.hash });
      assert.deepEqual(signed["signatures"], { domain: { "ed25519:1": expected.sig } });
      assert.equal(unwrap(computeEventId(signed, version(roomVersionId))), expected.eventId);
      if (unsignedEvent["type"] === "m.room.create") {
        assert.equal(unwrap(roomIdOfCreateEvent(signed, version(roomVersionId))), expected.roomId);
      }
    });
  }
});

describe("content hash", () => {
  const event = { type: "m.room.message", content: { body: "hi" }, sender: "@a:hs", room_id: "!r:hs" };

  it("ignores unsigned, signatures and existing hashes", () => {
    const hash = contentHash(event);
    assert.equal(contentHash({ ...event, unsigned: { age: 1 }, signatures: { hs: {} }, hashes: { sha256: "x" } }), hash);
    assert.notEqual(contentHash({ ...event, content: { body: "ho" } }), hash);
  });

  it("checkContentHash matches the hash in any base64 spelling and nothing else", () => {
    const hash = contentHash(event);
    assert.equal(checkContentHash({ ...event, hashes: { sha256: hash } }), true);
    assert.equal(checkContentHash({ ...event, hashes: { sha256: `${hash.replace(/\+/g, "-").replace(/\//g, "_")}=` } }), true);
    assert.equal(checkContentHash({ ...event, content: { body: "ho" }, hashes: { sha256: hash } }), false);
    assert.equal(checkContentHash({ ...event, hashes: { sha256: "***" } }), false);
    assert.equal(checkContentHash({ ...event, hashes: {} }), false);
    assert.equal(checkContentHash(event), false);
  });

  it("also accepts Synapse's variant that leaves out a legacy top-level age_ts", () => {
    const legacy = { ...event, age_ts: 12345, hashes: { sha256: contentHash(event) } };
    assert.equal(checkContentHash(legacy), true);
  });
});

describe("reference hash and event ids", () => {
  const base: JsonObject = {
    type: "m.room.message",
    content: { body: "hi" },
    sender: "@a:hs",
    room_id: "!r:hs",
    origin_server_ts: 5,
    depth: 4,
    prev_events: [],
    auth_events: [],
    hashes: { sha256: "abc" },
    signatures: { hs: { "ed25519:1": "sig" } },
  };

  it("does not depend on unsigned, age_ts, signatures or redactable content", () => {
    const hash = encodeBase64(referenceHash(base, version("10")));
    const variants = [
      { ...base, unsigned: { age_ts: 99 } },
      { ...base, age_ts: 99 },
      { ...base, signatures: {} },
      { ...base, content: { body: "changed" } },
    ];
    for (const variant of variants) assert.equal(encodeBase64(referenceHash(variant, version("10"))), hash);
    assert.notEqual(encodeBase64(referenceHash({ ...base, hashes: { sha256: "abd" } }, version("10"))), hash);
  });

  it("depends on origin only before v11, where redaction still keeps it", () => {
    const moved = { ...base, origin: "elsewhere" };
    assert.notEqual(unwrap(computeEventId(moved, version("10"))), unwrap(computeEventId(base, version("10"))));
    assert.equal(unwrap(computeEventId(moved, version("11"))), unwrap(computeEventId(base, version("11"))));
  });

  it("encodes v3 ids in standard and v4+ ids in URL-safe base64, from the same hash", () => {
    const hash = referenceHash(base, version("3"));
    assert.equal(unwrap(computeEventId(base, version("3"))), `$${encodeBase64(hash)}`);
    assert.equal(unwrap(computeEventId(base, version("4"))), `$${Buffer.from(hash).toString("base64url")}`);
  });

  it("refuses to compute ids for v1–2, whose ids are server-generated", () => {
    const result = computeEventId(base, version("2"));
    assert.equal(result.ok ? "ok" : result.error.code, "E_UNSUPPORTED_ROOM_VERSION");
  });

  it("answers E_MALFORMED_EVENT for events that are not canonical JSON", () => {
    const result = computeEventId({ ...base, depth: 1.5 }, version("10"));
    assert.equal(result.ok ? "ok" : result.error.code, "E_MALFORMED_EVENT");
  });

  it("takes pre-v12 room ids from the create event's room_id", () => {
    assert.equal(unwrap(roomIdOfCreateEvent({ ...base, type: "m.room.create" }, version("11"))), "!r:hs");
    const missing = roomIdOfCreateEvent({ type: "m.room.create" }, version("11"));
    assert.equal(missing.ok ? "ok" : missing.error.code, "E_MALFORMED_EVENT");
  });
});
