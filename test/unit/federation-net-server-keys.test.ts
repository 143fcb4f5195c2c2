import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { FederationFailure, FederationRequestOptions } from "../../src/federation/federation-client.ts";
import { encodeBase64, hashAndSignEvent, signJson, signingKeyFromSeed, verifyEvent } from "../../src/federation/index.ts";
import type { JsonObject, SigningKey } from "../../src/federation/index.ts";
import { MAX_KEY_VALIDITY_MS, ServerKeyStore, verifyServerKeys } from "../../src/federation/server-keys.ts";
import type { KeyFetchClient } from "../../src/federation/server-keys.ts";
import { ok } from "../../src/util/result.ts";
import type { Result } from "../../src/util/result.ts";
import { unwrap, version } from "./federation-test-key.ts";
import { SqlitePersistedServerKeys } from "../../src/federation/persisted-keys.ts";
import { openDatabase, type Db } from "../../src/store/database.ts";

const NOW = 1_800_000_000_000;
const HOUR = 3600_000;
const DAY = 24 * HOUR;

function keyOf(version: string, fill: number): SigningKey {
  return unwrap(signingKeyFromSeed(version, new Uint8Array(32).fill(fill)));
}

const ownKey = keyOf("a_own", 1);
const remoteKey = keyOf("a_remote", 2);
const otherKey = keyOf("a_other", 3);
const notaryKey = keyOf("a_notary", 4);
const oldKey = keyOf("a_old", 5);

interface KeyResponseOptions {
  validUntil?: number;
  keys?: SigningKey[];
  old?: Array<[SigningKey, number]>;
  signWith?: Array<[string, SigningKey]>;
}

/** A Server Keys object as /_matrix/key/v2/server serves it, self-signed unless told otherwise. */
function keyResponse(server: string, opts: KeyResponseOptions = {}): JsonObject {
  const keys = opts.keys ?? [remoteKey];
  const body: JsonObject = {
    server_name: server,
    valid_until_ts: opts.validUntil ?? NOW + DAY,
    verify_keys: Object.fromEntries(keys.map((k) => [k.keyId, { key: encodeBase64(k.publicKey) }])),
    old_verify_keys: Object.fromEntries((opts.old ?? []).map(([k, expired]) => [k.keyId, { key: encodeBase64(k.publicKey), expired_ts: expired }])),
  };
  let signed: JsonObject = body;
  for (const [name, key] of opts.signWith ?? keys.map((k): [string, SigningKey] => [server, k])) signed = signJson(signed, name, key);
  return signed;
}

interface Call {
  destination: string;
  method: string;
  path: string;
  opts: FederationRequestOptions | undefined;
}

type Route = (call: Call) => Result<unknown, FederationFailure> | Promise<Result<unknown, FederationFailure>>;

function fakeClient(routes: Record<string, Route>): KeyFetchClient & { calls: Call[] } {
  const calls: Call[] = [];
  return {
    calls,
    async request<T>(destination: string, method: string, path: string, opts?: FederationRequestOptions) {
      const call = { destination, method, path, opts };
      calls.push(call);
      const route = routes[`${method} ${destination}${path}`];
      if (route === undefined) return networkFailure(destination) as Result<T, FederationFailure>;
      return (await route(call)) as Result<T, FederationFailure>;
    },
  };
}

function networkFailure(destination: string): Result<never, FederationFailure> {
  return {
    ok: false,
    error: { code: "E_NETWORK", human: `cannot reach ${destination}`, log: `cannot reach ${destination}`, status: 0, errcode: undefined, body: undefined, destination },
  };
}

const serve = (json: unknown): Route => () => ok(json);

function store(client: KeyFetchClient, opts: { notary?: string; clock?: { now: number } } = {}): ServerKeyStore {
  const clock = opts.clock ?? { now: NOW };
  return new ServerKeyStore(client, { serverName: "own.test", signingKey: ownKey, notary: opts.notary }, { now: () => clock.now });
}

function code(result: Result<unknown>): string {
  return result.ok ? "ok" : result.error.code;
}

describe("server keys: direct fetch", () => {
  it("fetches GET /_matrix/key/v2/server unsigned, verifies it and answers the key", async () => {
    const client = fakeClient({ "GET remote.test/_matrix/key/v2/server": serve(keyResponse("remote.test")) });
    const keys = store(client);
    const found = unwrap(await keys.lookup("remote.test", remoteKey.keyId, NOW - HOUR));
    assert.deepEqual(found, remoteKey.publicKey);
    assert.equal(client.calls.length, 1);
    assert.equal(client.calls[0]!.opts?.authenticate, false);
  });

  it("serves the second lookup from the cache without a request", async () => {
    const client = fakeClient({ "GET remote.test/_matrix/key/v2/server": serve(keyResponse("remote.test")) });
    const keys = store(client);
    unwrap(await keys.lookup("remote.test", remoteKey.keyId, NOW));
    unwrap(await keys.lookup("remote.test", remoteKey.keyId, NOW + HOUR));
    unwrap(await keys.lookup("remote.test", remoteKey.keyId, 0));
    assert.equal(client.calls.length, 1);
  });

  it("shares one fetch between concurrent lookups of a server", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const client = fakeClient({
      "GET remote.test/_matrix/key/v2/server": async () => {
        await gate;
        return ok(keyResponse("remote.test", { keys: [remoteKey, otherKey] }));
      },
    });
    const keys = store(client);
    const lookups = [remoteKey, otherKey, remoteKey, otherKey].map((k) => keys.lookup("remote.test", k.keyId, NOW));
    release();
    const results = await Promise.all(lookups);
    assert.ok(results.every((r) => r.ok));
    assert.equal(client.calls.length, 1);
  });

  it("answers our own current key without a request", async () => {
    const client = fakeClient({});
    assert.deepEqual(unwrap(await store(client).lookup("own.test", ownKey.keyId, NOW)), ownKey.publicKey);
    assert.equal(client.calls.length, 0);
  });
});

describe("server keys: forged answers are rejected", () => {
  const cases: Array<[string, JsonObject, string]> = [
    [
      "a bad self-signature (signed by another key under the listed key id)",
      (() => {
        const forged = keyResponse("remote.test", { signWith: [] });
        const impostor = unwrap(signingKeyFromSeed("a_remote", new Uint8Array(32).fill(9)));
        return signJson(forged, "remote.test", impostor);
      })(),
      "E_KEY_RESPONSE_BAD_SIGNATURE",
    ],
    [
      "a key swapped after signing",
      { ...keyResponse("remote.test"), verify_keys: { [remoteKey.keyId]: { key: encodeBase64(otherKey.publicKey) } } },
      "E_KEY_RESPONSE_BAD_SIGNATURE",
    ],
    [
      "a wrong server_name (a valid answer of another server)",
      keyResponse("evil.test", { keys: [remoteKey] }),
      "E_KEY_RESPONSE_WRONG_SERVER",
    ],
    ["no self-signature", keyResponse("remote.test", { signWith: [] }), "E_KEY_RESPONSE_UNSIGNED"],
    [
      "a signature only by a key it does not list",
      keyResponse("remote.test", { signWith: [["remote.test", otherKey]] }),
      "E_KEY_RESPONSE_UNSIGNED",
    ],
    [
      "a valid_until_ts that is missing",
      (() => {
        const { valid_until_ts: _drop, ...rest } = keyResponse("remote.test", { signWith: [] });
        return signJson(rest, "remote.test", remoteKey);
      })(),
      "E_KEY_RESPONSE_MALFORMED",
    ],
    [
      "a verify key that is not 32 bytes",
      signJson({ ...keyResponse("remote.test", { signWith: [] }), verify_keys: { [remoteKey.keyId]: { key: "AAAA" } } }, "remote.test", remoteKey),
      "E_KEY_RESPONSE_MALFORMED",
    ],
  ];
  for (const [what, response, expected] of cases) {
    it(`rejects ${what}`, async () => {
      assert.equal(code(verifyServerKeys(response, "remote.test", NOW)), expected);
      const client = fakeClient({ "GET remote.test/_matrix/key/v2/server": serve(response) });
      const found = await store(client).lookup("remote.test", remoteKey.keyId, NOW);
      assert.equal(code(found), expected);
    });
  }

  it("rejects a key whose valid_until_ts passed before the event, but accepts it for earlier events", async () => {
    const expired = keyResponse("remote.test", { validUntil: NOW - HOUR });
    const client = fakeClient({ "GET remote.test/_matrix/key/v2/server": serve(expired) });
    const keys = store(client);
    const late = await keys.lookup("remote.test", remoteKey.keyId, NOW);
    assert.equal(code(late), "E_UNKNOWN_KEY");
    if (!late.ok) assert.match(late.error.human, /valid only until/);
    unwrap(await keys.lookup("remote.test", remoteKey.keyId, NOW - 2 * HOUR));
    // Room versions 1–4 ignore valid_until_ts.
    unwrap(await keys.lookup("remote.test", remoteKey.keyId, 0));
  });

  it("trusts valid_until_ts no further than 7 days after the fetch", async () => {
    const far = keyResponse("remote.test", { validUntil: NOW + 365 * DAY });
    const client = fakeClient({ "GET remote.test/_matrix/key/v2/server": serve(far) });
    const keys = store(client);
    unwrap(await keys.lookup("remote.test", remoteKey.keyId, NOW + 6 * DAY));
    assert.equal(code(await keys.lookup("remote.test", remoteKey.keyId, NOW + MAX_KEY_VALIDITY_MS + 1)), "E_UNKNOWN_KEY");
  });

  it("honours old_verify_keys up to their expired_ts", async () => {
    const response = keyResponse("remote.test", { old: [[oldKey, NOW - DAY]] });
    const client = fakeClient({ "GET remote.test/_matrix/key/v2/server": serve(response) });
    const keys = store(client);
    assert.deepEqual(unwrap(await keys.lookup("remote.test", oldKey.keyId, NOW - 2 * DAY)), oldKey.publicKey);
    assert.equal(code(await keys.lookup("remote.test", oldKey.keyId, NOW - HOUR)), "E_UNKNOWN_KEY");
  });
});

describe("server keys: refetching and failures", () => {
  it("does not refetch for an unknown key until minRefetchInterval has passed", async () => {
    const clock = { now: NOW };
    const client = fakeClient({ "GET remote.test/_matrix/key/v2/server": serve(keyResponse("remote.test")) });
    const keys = store(client, { clock });
    assert.equal(code(await keys.lookup("remote.test", "ed25519:missing", NOW)), "E_UNKNOWN_KEY");
    assert.equal(code(await keys.lookup("remote.test", "ed25519:missing", NOW)), "E_UNKNOWN_KEY");
    assert.equal(client.calls.length, 1);
    clock.now += 61_000;
    assert.equal(code(await keys.lookup("remote.test", "ed25519:missing", NOW)), "E_UNKNOWN_KEY");
    assert.equal(client.calls.length, 2);
  });

  it("remembers a failed fetch briefly, passing its code (not E_UNKNOWN_KEY) through", async () => {
    const clock = { now: NOW };
    const client = fakeClient({});
    const keys = store(client, { clock });
    const first = await keys.lookup("down.test", remoteKey.keyId, NOW);
    assert.equal(code(first), "E_NETWORK");
    if (!first.ok) assert.match(first.error.human, /Cannot fetch the keys of down\.test/);
    assert.equal(code(await keys.lookup("down.test", remoteKey.keyId, NOW)), "E_NETWORK");
    assert.equal(client.calls.length, 1);
    clock.now += 61_000;
    await keys.lookup("down.test", remoteKey.keyId, NOW);
    assert.equal(client.calls.length, 2);
  });

  it("refetches when a cached key does not reach the event's time, and uses the newer answer", async () => {
    const clock = { now: NOW };
    let validUntil = NOW + HOUR;
    const client = fakeClient({ "GET remote.test/_matrix/key/v2/server": () => ok(keyResponse("remote.test", { validUntil })) });
    const keys = store(client, { clock });
    unwrap(await keys.lookup("remote.test", remoteKey.keyId, NOW));
    clock.now += 2 * HOUR;
    validUntil = clock.now + DAY;
    unwrap(await keys.lookup("remote.test", remoteKey.keyId, clock.now));
    assert.equal(client.calls.length, 2);
  });
});

describe("server keys: notary fallback", () => {
  const origin = "remote.test";
  const notary = "notary.test";

  function notaryAnswer(entry: JsonObject, signer: SigningKey = notaryKey): JsonObject {
    return { server_keys: [signJson(entry, notary, signer)] };
  }

  it("asks the notary when the server does not answer, checking both signatures", async () => {
    const client = fakeClient({
      [`GET ${notary}/_matrix/key/v2/server`]: serve(keyResponse(notary, { keys: [notaryKey] })),
      [`POST ${notary}/_matrix/key/v2/query`]: serve(notaryAnswer(keyResponse(origin))),
    });
    const keys = store(client, { notary });
    assert.deepEqual(unwrap(await keys.lookup(origin, remoteKey.keyId, NOW - HOUR)), remoteKey.publicKey);
    assert.deepEqual(
      client.calls.map((c) => `${c.method} ${c.destination}${c.path}`),
      [`GET ${origin}/_matrix/key/v2/server`, `GET ${notary}/_matrix/key/v2/server`, `POST ${notary}/_matrix/key/v2/query`],
    );
    const query = client.calls[2]!;
    assert.deepEqual(query.opts?.body, { server_keys: { [origin]: { [remoteKey.keyId]: { minimum_valid_until_ts: NOW - HOUR } } } });
    assert.equal(query.opts?.authenticate, false);
    // Cached afterwards.
    unwrap(await keys.lookup(origin, remoteKey.keyId, NOW));
    assert.equal(client.calls.length, 3);
  });

  it("asks the notary when the server answers without the key", async () => {
    const client = fakeClient({
      [`GET ${origin}/_matrix/key/v2/server`]: serve(keyResponse(origin, { keys: [otherKey] })),
      [`GET ${notary}/_matrix/key/v2/server`]: serve(keyResponse(notary, { keys: [notaryKey] })),
      [`POST ${notary}/_matrix/key/v2/query`]: serve(notaryAnswer(keyResponse(origin, { keys: [otherKey], old: [[remoteKey, NOW - DAY]] }))),
    });
    const keys = store(client, { notary });
    assert.deepEqual(unwrap(await keys.lookup(origin, remoteKey.keyId, NOW - 2 * DAY)), remoteKey.publicKey);
  });

  it("rejects a relayed answer the notary did not sign, or signed wrongly", async () => {
    for (const [answer, expected] of [
      [{ server_keys: [keyResponse(origin)] }, "E_NOTARY_UNSIGNED"],
      [notaryAnswer(keyResponse(origin), otherKey), "E_NOTARY_UNSIGNED"],
      [notaryAnswer(keyResponse(origin), unwrap(signingKeyFromSeed("a_notary", new Uint8Array(32).fill(8)))), "E_NOTARY_BAD_SIGNATURE"],
    ] as const) {
      const client = fakeClient({
        [`GET ${notary}/_matrix/key/v2/server`]: serve(keyResponse(notary, { keys: [notaryKey] })),
        [`POST ${notary}/_matrix/key/v2/query`]: serve(answer),
      });
      const found = await store(client, { notary }).lookup(origin, remoteKey.keyId, NOW);
      assert.equal(found.ok, false);
      if (!found.ok) assert.match(found.error.log, new RegExp(`via notary ${notary}`));
      const direct = await store(client, { notary }).fetchFromNotary(origin, [remoteKey.keyId], NOW);
      assert.equal(code(direct), expected);
    }
  });

  it("rejects a relayed answer signed by the notary but not self-signed by the origin", async () => {
    const forged = keyResponse(origin, { signWith: [[origin, otherKey]] });
    const client = fakeClient({
      [`GET ${notary}/_matrix/key/v2/server`]: serve(keyResponse(notary, { keys: [notaryKey] })),
      [`POST ${notary}/_matrix/key/v2/query`]: serve(notaryAnswer(forged)),
    });
    assert.equal(code(await store(client, { notary }).fetchFromNotary(origin, [remoteKey.keyId], NOW)), "E_KEY_RESPONSE_UNSIGNED");
  });

  it("rejects a notary whose own key answer is forged", async () => {
    const client = fakeClient({
      [`GET ${notary}/_matrix/key/v2/server`]: serve(keyResponse(notary, { keys: [notaryKey], signWith: [[notary, otherKey]] })),
      [`POST ${notary}/_matrix/key/v2/query`]: serve(notaryAnswer(keyResponse(origin))),
    });
    assert.equal(code(await store(client, { notary }).fetchFromNotary(origin, [remoteKey.keyId], NOW)), "E_KEY_RESPONSE_UNSIGNED");
    assert.equal(client.calls.filter((c) => c.method === "POST").length, 0);
  });
});

describe("server keys: as verifyEvent's KeyLookup", () => {
  it("verifies an event signed by a remote server, and rejects one signed with a key it no longer had", async () => {
    const event: JsonObject = {
      type: "m.room.message",
      sender: "@bob:remote.test",
      room_id: "!room:remote.test",
      content: { body: "hi", msgtype: "m.text" },
      origin_server_ts: NOW - HOUR,
      depth: 3,
      prev_events: ["$prev"],
      auth_events: ["$auth"],
    };
    const client = fakeClient({ "GET remote.test/_matrix/key/v2/server": serve(keyResponse("remote.test", { old: [[oldKey, NOW - DAY]] })) });
    const keys = store(client);
    const good = hashAndSignEvent(event, version("10"), "remote.test", remoteKey);
    const verified = unwrap(await verifyEvent(good, "10", keys.lookup));
    assert.equal(verified.redacted, false);

    const byOldKey = hashAndSignEvent(event, version("10"), "remote.test", oldKey);
    assert.equal(code(await verifyEvent(byOldKey, "10", keys.lookup)), "E_UNKNOWN_KEY");
    // Room version 4 does not enforce key validity.
    unwrap(await verifyEvent(hashAndSignEvent(event, version("4"), "remote.test", oldKey), "4", keys.lookup));
    assert.equal(client.calls.length, 1);
  });
});

describe("server keys: persisted across restarts", () => {
  function persistedStore(db: Db, client: KeyFetchClient, clock = { now: NOW }, notary?: string): ServerKeyStore {
    return new ServerKeyStore(client, { serverName: "own.test", signingKey: ownKey, notary }, { now: () => clock.now, persisted: new SqlitePersistedServerKeys(db) });
  }

  it("answers a key verified by an earlier process when the origin is down, after trying it", async () => {
    const db = openDatabase(":memory:");
    const up = fakeClient({ "GET remote.test/_matrix/key/v2/server": serve(keyResponse("remote.test", { old: [[oldKey, NOW - DAY]] })) });
    unwrap(await persistedStore(db, up).lookup("remote.test", remoteKey.keyId, NOW));
    const down = fakeClient({});
    const later = persistedStore(db, down, { now: NOW + HOUR });
    assert.deepEqual(unwrap(await later.lookup("remote.test", remoteKey.keyId, NOW + HOUR)), remoteKey.publicKey);
    assert.deepEqual(unwrap(await later.lookup("remote.test", oldKey.keyId, NOW - 2 * DAY)), oldKey.publicKey);
    assert.deepEqual(down.calls.map((c) => `${c.method} ${c.destination}${c.path}`), ["GET remote.test/_matrix/key/v2/server"], "the origin was tried first (once, then the failure is remembered)");
    db.close();
  });

  it("honours valid_until_ts (capped at fetch + 7 days) and expired_ts exactly as the memory cache does", async () => {
    const db = openDatabase(":memory:");
    const up = fakeClient({ "GET remote.test/_matrix/key/v2/server": serve(keyResponse("remote.test", { validUntil: NOW + 365 * DAY, old: [[oldKey, NOW - DAY]] })) });
    unwrap(await persistedStore(db, up).lookup("remote.test", remoteKey.keyId, NOW));
    const later = persistedStore(db, fakeClient({}), { now: NOW + 30 * DAY });
    unwrap(await later.lookup("remote.test", remoteKey.keyId, NOW + 6 * DAY));
    const tooLate = await later.lookup("remote.test", remoteKey.keyId, NOW + MAX_KEY_VALIDITY_MS + 1);
    assert.equal(code(tooLate), "E_NETWORK", "the origin's failure, not a stored key past its validity");
    assert.equal(code(await later.lookup("remote.test", oldKey.keyId, NOW - HOUR)), "E_NETWORK");
    unwrap(await later.lookup("remote.test", remoteKey.keyId, 0));
    db.close();
  });

  it("is not used when the origin answers without the key: a server that dropped a key is believed", async () => {
    const db = openDatabase(":memory:");
    unwrap(await persistedStore(db, fakeClient({ "GET remote.test/_matrix/key/v2/server": serve(keyResponse("remote.test")) })).lookup("remote.test", remoteKey.keyId, NOW));
    const rotated = fakeClient({ "GET remote.test/_matrix/key/v2/server": serve(keyResponse("remote.test", { keys: [otherKey] })) });
    assert.equal(code(await persistedStore(db, rotated).lookup("remote.test", remoteKey.keyId, NOW)), "E_UNKNOWN_KEY");
    db.close();
  });

  it("keeps the statement with the longest validity, as the memory cache does", async () => {
    const db = openDatabase(":memory:");
    const persisted = new SqlitePersistedServerKeys(db);
    const key = { serverName: "remote.test", keyId: remoteKey.keyId, publicKey: remoteKey.publicKey, old: false };
    persisted.save([{ ...key, validUntilTs: NOW + DAY }], NOW);
    persisted.save([{ ...key, validUntilTs: NOW + HOUR }], NOW + 1);
    assert.equal(persisted.load("remote.test", remoteKey.keyId)?.validUntilTs, NOW + DAY);
    persisted.save([{ ...key, validUntilTs: NOW + 2 * DAY }], NOW + 2);
    assert.equal(persisted.load("remote.test", remoteKey.keyId)?.validUntilTs, NOW + 2 * DAY);
    assert.equal(persisted.load("remote.test", "ed25519:nope"), undefined);
    // A corrupted row is ignored, never trusted.
    db.prepare("UPDATE federation_server_keys SET public_key = 'not base64!' WHERE key_id = ?").run(remoteKey.keyId);
    assert.equal(persisted.load("remote.test", remoteKey.keyId), undefined);
    db.close();
  });

  it("also stores keys relayed by the notary, and falls back to them when both are down", async () => {
    const db = openDatabase(":memory:");
    const notary = "notary.test";
    const viaNotary = fakeClient({
      [`GET ${notary}/_matrix/key/v2/server`]: serve(keyResponse(notary, { keys: [notaryKey] })),
      [`POST ${notary}/_matrix/key/v2/query`]: serve({ server_keys: [signJson(keyResponse("remote.test"), notary, notaryKey)] }),
    });
    unwrap(await persistedStore(db, viaNotary, { now: NOW }, notary).lookup("remote.test", remoteKey.keyId, NOW));
    const allDown = fakeClient({});
    unwrap(await persistedStore(db, allDown, { now: NOW }, notary).lookup("remote.test", remoteKey.keyId, NOW));
    assert.ok(allDown.calls.some((c) => c.destination === notary), "the notary was asked before the store");
    db.close();
  });
});
