import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  computeEventId,
  hashAndSignEvent,
  redactEvent,
  roomIdOfCreateEvent,
  senderServer,
  signingKeyFromSeed,
  verifyEvent,
} from "../../src/federation/index.ts";
import type { JsonObject, KeyLookup, SigningKey } from "../../src/federation/index.ts";
import { fail, ok } from "../../src/util/result.ts";
import type { Result } from "../../src/util/result.ts";
import { unwrap, vectorKey, version } from "./federation-test-key.ts";

const hs1Key = vectorKey("a_hs1");
const hs2Key = unwrap(signingKeyFromSeed("a_hs2", new Uint8Array(32).fill(2)));

interface FakeKeys {
  lookup: KeyLookup;
  calls: Array<[string, string, number]>;
}

function keyring(...known: Array<[string, SigningKey]>): FakeKeys {
  const calls: Array<[string, string, number]> = [];
  const lookup: KeyLookup = async (server, keyId, atTs) => {
    calls.push([server, keyId, atTs]);
    const found = known.find(([name, key]) => name === server && key.keyId === keyId);
    return found ? ok(found[1].publicKey) : fail("E_UNKNOWN_KEY", `no key ${keyId} for ${server}`);
  };
  return { lookup, calls };
}

const bothServers = () => keyring(["hs1", hs1Key], ["hs2", hs2Key]);

function member(overrides: JsonObject = {}, content: JsonObject = {}): JsonObject {
  return {
    type: "m.room.member",
    state_key: "@alice:hs1",
    sender: "@alice:hs1",
    room_id: "!room:hs1",
    content: { membership: "join", displayname: "Alice", ...content },
    origin_server_ts: 1_700_000_000_000,
    depth: 5,
    prev_events: ["$prev"],
    auth_events: ["$auth"],
    origin: "hs1",
    unsigned: { age: 12 },
    ...overrides,
  };
}

function signed(event: JsonObject, roomVersionId: string, ...signers: Array<[string, SigningKey]>): JsonObject {
  let result = event;
  for (const [server, key] of signers) result = hashAndSignEvent(result, version(roomVersionId), server, key);
  return result;
}

function code(result: Result<unknown>): string {
  return result.ok ? "ok" : result.error.code;
}

describe("verifyEvent: a correctly signed event", () => {
  for (const roomVersionId of ["3", "4", "10", "11", "12"]) {
    it(`is accepted in room version ${roomVersionId} under its computed id`, async () => {
      const room = roomVersionId === "12" ? { room_id: `!${"A".repeat(43)}` } : {};
      const pdu = signed(member(room), roomVersionId, ["hs1", hs1Key]);
      const eventId = unwrap(computeEventId(pdu, version(roomVersionId)));
      const verified = unwrap(await verifyEvent(pdu, roomVersionId, bothServers().lookup, eventId));
      assert.deepEqual(verified, { eventId, event: pdu, redacted: false });
    });
  }

  it("accepts a v12 create event and yields the room id", async () => {
    const create: JsonObject = {
      type: "m.room.create",
      state_key: "",
      sender: "@alice:hs1",
      content: { room_version: "12" },
      origin_server_ts: 1,
      depth: 1,
      prev_events: [],
      auth_events: [],
    };
    const pdu = signed(create, "12", ["hs1", hs1Key]);
    const verified = unwrap(await verifyEvent(pdu, "12", bothServers().lookup));
    assert.equal(unwrap(roomIdOfCreateEvent(pdu, version("12"))), `!${verified.eventId.slice(1)}`);
  });

  it("asks for keys valid at origin_server_ts from v5, at any time before", async () => {
    const keys = bothServers();
    await verifyEvent(signed(member(), "5", ["hs1", hs1Key]), "5", keys.lookup);
    await verifyEvent(signed(member(), "4", ["hs1", hs1Key]), "4", keys.lookup);
    assert.deepEqual(keys.calls, [
      ["hs1", "ed25519:a_hs1", 1_700_000_000_000],
      ["hs1", "ed25519:a_hs1", 0],
    ]);
  });

  it("passes when an extra signature uses a key nobody knows or an unknown algorithm", async () => {
    const pdu = signed(member(), "10", ["hs1", hs1Key]);
    const signatures = pdu["signatures"] as Record<string, Record<string, string>>;
    signatures["hs1"] = { ...signatures["hs1"], "ed25519:gone": "AAAA", "curve9:x": "AAAA" };
    assert.equal(code(await verifyEvent(pdu, "10", bothServers().lookup)), "ok");
  });
});

describe("verifyEvent: tampering", () => {
  it("falls back to the redacted copy when only redactable content changed", async () => {
    const pdu = signed(member(), "10", ["hs1", hs1Key]);
    const eventId = unwrap(computeEventId(pdu, version("10")));
    const tampered = { ...pdu, content: { ...(pdu["content"] as JsonObject), displayname: "Mallory" } };
    const verified = unwrap(await verifyEvent(tampered, "10", bothServers().lookup, eventId));
    assert.equal(verified.redacted, true);
    assert.equal(verified.eventId, eventId);
    assert.deepEqual(verified.event, redactEvent(pdu, version("10")));
    assert.deepEqual(verified.event["content"], { membership: "join" });
  });

  it("accepts an event that arrives already redacted, as redacted", async () => {
    const pdu = signed(member(), "11", ["hs1", hs1Key]);
    const verified = unwrap(await verifyEvent(redactEvent(pdu, version("11")), "11", bothServers().lookup));
    assert.equal(verified.redacted, true);
  });

  it("refuses a change to a key the redaction keeps: the signature breaks", async () => {
    const pdu = signed(member(), "10", ["hs1", hs1Key]);
    const tampered = { ...pdu, content: { ...(pdu["content"] as JsonObject), membership: "leave" } };
    assert.equal(code(await verifyEvent(tampered, "10", bothServers().lookup)), "E_BAD_SIGNATURE");
  });

  it("refuses an event that is not the one asked for", async () => {
    const pdu = signed(member(), "10", ["hs1", hs1Key]);
    const result = await verifyEvent(pdu, "10", bothServers().lookup, "$somethingElse");
    assert.equal(code(result), "E_EVENT_ID_MISMATCH");
    if (!result.ok) assert.match(result.error.human, /\$somethingElse/);
  });

  it("refuses a signature by another server's key under the sender server's name", async () => {
    const forged = signed(member(), "10", ["hs1", hs2Key]);
    const keys = keyring(["hs1", unwrap(signingKeyFromSeed("a_hs2", hs1Key.seed))]);
    assert.equal(code(await verifyEvent(forged, "10", keys.lookup)), "E_BAD_SIGNATURE");
  });
});

describe("verifyEvent: keys and signers", () => {
  it("answers E_UNKNOWN_KEY when no key of the signer can be found", async () => {
    const pdu = signed(member(), "10", ["hs1", hs1Key]);
    assert.equal(code(await verifyEvent(pdu, "10", keyring(["hs2", hs2Key]).lookup)), "E_UNKNOWN_KEY");
  });

  it("passes other key lookup failures through so that they stay retryable", async () => {
    const pdu = signed(member(), "10", ["hs1", hs1Key]);
    const timeout: KeyLookup = async () => fail("E_TIMEOUT", "Key server did not answer.");
    assert.equal(code(await verifyEvent(pdu, "10", timeout)), "E_TIMEOUT");
  });

  it("requires the sender's server: another server's signature does not do", async () => {
    const pdu = signed(member(), "10", ["hs2", hs2Key]);
    assert.equal(code(await verifyEvent(pdu, "10", bothServers().lookup)), "E_MISSING_SIGNATURE");
  });

  it("requires only the sender's server from v3 on", async () => {
    const pdu = signed(member({ event_id: "$x:hs2" }), "3", ["hs1", hs1Key]);
    assert.equal(code(await verifyEvent(pdu, "3", bothServers().lookup)), "ok");
  });

  it("in v1–2 also requires the server named in the event id, and takes the id from event_id", async () => {
    const v1Member = member({ event_id: "$join1:hs2", prev_events: [], auth_events: [] });
    const senderOnly = signed(v1Member, "1", ["hs1", hs1Key]);
    assert.equal(code(await verifyEvent(senderOnly, "1", bothServers().lookup)), "E_MISSING_SIGNATURE");
    const both = signed(v1Member, "1", ["hs1", hs1Key], ["hs2", hs2Key]);
    assert.deepEqual(unwrap(await verifyEvent(both, "1", bothServers().lookup, "$join1:hs2")).eventId, "$join1:hs2");
    assert.equal(code(await verifyEvent(both, "1", bothServers().lookup, "$other:hs2")), "E_EVENT_ID_MISMATCH");
    const { event_id: _eventId, ...withoutId } = both;
    assert.equal(code(await verifyEvent(withoutId, "1", bothServers().lookup)), "E_MALFORMED_EVENT");
  });

  it("in v8+ also requires the server that authorised a restricted join", async () => {
    const join = member({}, { join_authorised_via_users_server: "@bob:hs2" });
    const senderOnly = signed(join, "9", ["hs1", hs1Key]);
    assert.equal(code(await verifyEvent(senderOnly, "9", bothServers().lookup)), "E_MISSING_SIGNATURE");
    const both = signed(join, "9", ["hs1", hs1Key], ["hs2", hs2Key]);
    assert.equal(code(await verifyEvent(both, "9", bothServers().lookup)), "ok");
  });

  it("does not require the sender's server for an invite made from a third-party invite", async () => {
    const invite = member({ state_key: "@carol:hs2" }, { membership: "invite", third_party_invite: { signed: { mxid: "@carol:hs2", token: "t" } } });
    const byOtherServer = signed(invite, "10", ["hs2", hs2Key]);
    assert.equal(code(await verifyEvent(byOtherServer, "10", bothServers().lookup)), "ok");
  });
});

describe("verifyEvent: malformed input", () => {
  const good = () => signed(member(), "10", ["hs1", hs1Key]);

  it("refuses unknown room versions", async () => {
    assert.equal(code(await verifyEvent(good(), "99", bothServers().lookup)), "E_UNSUPPORTED_ROOM_VERSION");
  });

  it("refuses events of the wrong shape, saying what is wrong", async () => {
    const cases: Array<[unknown, RegExp]> = [
      [null, /not a JSON object/],
      [[good()], /not a JSON object/],
      [{ ...good(), sender: 42 }, /sender/],
      [{ ...good(), sender: "alice" }, /sender is not a user id/],
      [{ ...good(), type: undefined }, /type/],
      [{ ...good(), content: "x" }, /content/],
      [{ ...good(), room_id: "room" }, /room_id/],
      [{ ...good(), origin_server_ts: "1" }, /origin_server_ts/],
      [{ ...good(), depth: -1 }, /depth/],
      [{ ...good(), prev_events: {} }, /prev_events/],
      [{ ...good(), state_key: 1 }, /state_key/],
      [{ ...good(), hashes: {} }, /hashes/],
      [{ ...good(), signatures: [] }, /signatures/],
    ];
    for (const [pdu, why] of cases) {
      const result = await verifyEvent(pdu, "10", bothServers().lookup);
      assert.equal(code(result), "E_MALFORMED_EVENT", JSON.stringify(pdu)?.slice(0, 80));
      if (!result.ok) assert.match(result.error.human, why);
    }
  });

  it("refuses a v12 create event that carries a room_id, and v12 events citing the create event", async () => {
    const create = signed({ ...member(), type: "m.room.create", state_key: "", content: {} }, "12", ["hs1", hs1Key]);
    assert.equal(code(await verifyEvent(create, "12", bothServers().lookup)), "E_MALFORMED_EVENT");
    const roomId = `!${"B".repeat(43)}`;
    const citing = signed(member({ room_id: roomId, auth_events: [`$${"B".repeat(43)}`] }), "12", ["hs1", hs1Key]);
    assert.equal(code(await verifyEvent(citing, "12", bothServers().lookup)), "E_MALFORMED_EVENT");
  });

  it("refuses non-canonical JSON from v6, but only distrusts the content before", async () => {
    const floaty = (roomVersionId: string) => {
      const pdu = signed(member(), roomVersionId, ["hs1", hs1Key]);
      return { ...pdu, content: { ...(pdu["content"] as JsonObject), ratio: 0.5 } };
    };
    assert.equal(code(await verifyEvent(floaty("6"), "6", bothServers().lookup)), "E_MALFORMED_EVENT");
    const old = unwrap(await verifyEvent(floaty("5"), "5", bothServers().lookup));
    assert.equal(old.redacted, true);
    const inRedactedPart = { ...good(), prev_events: [2.5] };
    assert.equal(code(await verifyEvent(inRedactedPart, "10", bothServers().lookup)), "E_MALFORMED_EVENT");
  });
});

describe("senderServer", () => {
  it("takes everything after the first colon of a user id", () => {
    assert.equal(unwrap(senderServer("@alice:hs1.example:8448")), "hs1.example:8448");
    assert.equal(unwrap(senderServer("@a:[::1]:8448")), "[::1]:8448");
  });

  it("refuses things that are not user ids", () => {
    for (const id of ["alice", "@:hs1", "@alice", "!room:hs1", "@alice:bad host"]) {
      assert.equal(code(senderServer(id)), "E_BAD_IDENTIFIER", id);
    }
  });
});
