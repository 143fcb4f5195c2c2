import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseXMatrix, signJson, verifyXMatrix, xMatrixAuthorization } from "../../src/federation/index.ts";
import type { FederationRequest } from "../../src/federation/index.ts";
import { unwrap, vectorKey } from "./federation-test-key.ts";

const key = vectorKey("a_Test");

const request: FederationRequest = {
  method: "POST",
  uri: "/_matrix/federation/v1/get_missing_events/!room%3Ahs1?x=1",
  origin: "hs1.example:8448",
  destination: "[::1]:8481",
  content: { limit: 10, earliest_events: [], latest_events: ["$a"] },
};

describe("xMatrixAuthorization", () => {
  it("writes the conservative form the spec asks senders to use", () => {
    const header = unwrap(xMatrixAuthorization(request, key));
    assert.match(header, /^X-Matrix origin="hs1\.example:8448",destination="\[::1\]:8481",key="ed25519:a_Test",sig="[A-Za-z0-9+/]{86}"$/);
  });

  it("signs the spec's request JSON with the same signature signJson produces", () => {
    const header = unwrap(xMatrixAuthorization(request, key));
    const { method, uri, origin, destination, content } = request;
    const expected = signJson({ method, uri, origin, destination, content }, origin, key).signatures[origin]!["ed25519:a_Test"];
    assert.equal(unwrap(parseXMatrix(header)).sig, expected);
  });

  it("leaves content out of the signed JSON for bodiless requests", () => {
    const get = { method: "GET", uri: "/_matrix/federation/v1/event/$e", origin: "a.example", destination: "b.example" };
    const sig = unwrap(parseXMatrix(unwrap(xMatrixAuthorization(get, key)))).sig;
    assert.equal(sig, signJson({ ...get }, "a.example", key).signatures["a.example"]!["ed25519:a_Test"]);
    const withEmptyBody = unwrap(parseXMatrix(unwrap(xMatrixAuthorization({ ...get, content: {} }, key)))).sig;
    assert.notEqual(withEmptyBody, sig);
  });

  it("refuses bad server names, lower-case methods, relative targets and non-canonical bodies", () => {
    const cases: Array<[Partial<FederationRequest>, string]> = [
      [{ origin: "bad name" }, "E_BAD_SERVER_NAME"],
      [{ destination: 'x",sig="y' }, "E_BAD_SERVER_NAME"],
      [{ method: "post" }, "E_BAD_REQUEST"],
      [{ uri: "https://b.example/_matrix/x" }, "E_BAD_REQUEST"],
      [{ content: { ratio: 0.5 } }, "E_BAD_JSON"],
    ];
    for (const [change, code] of cases) {
      const result = xMatrixAuthorization({ ...request, ...change }, key);
      assert.equal(result.ok ? "ok" : result.error.code, code, JSON.stringify(change));
    }
  });
});

describe("parseXMatrix", () => {
  it("round-trips a header we wrote", () => {
    const auth = unwrap(parseXMatrix(unwrap(xMatrixAuthorization(request, key))));
    assert.equal(auth.origin, "hs1.example:8448");
    assert.equal(auth.destination, "[::1]:8481");
    assert.equal(auth.key, "ed25519:a_Test");
  });

  it("accepts any case, order, spacing, escapes and bare values the spec allows", () => {
    const header = 'x-matrix   SIG = "ab\\c" ,\tKey=ed25519:a_1 , unknown="ignored, really",origin=hs1.example:8448';
    assert.deepEqual(unwrap(parseXMatrix(header)), {
      origin: "hs1.example:8448",
      destination: undefined,
      key: "ed25519:a_1",
      sig: "abc",
    });
  });

  it("refuses other schemes, missing parameters, duplicates and broken quoting", () => {
    const headers = [
      'Bearer origin="a",key="k",sig="s"',
      'X-Matrix origin="a.example",key="ed25519:1"',
      'X-Matrix origin="a.example",origin="b.example",key="ed25519:1",sig="s"',
      'X-Matrix origin="a.example,key="ed25519:1",sig="s"',
      'X-Matrix origin="a.example" key="ed25519:1",sig="s"',
      'X-Matrix origin="not a server",key="ed25519:1",sig="s"',
      'X-Matrixorigin="a.example",key="ed25519:1",sig="s"',
    ];
    for (const header of headers) {
      const result = parseXMatrix(header);
      assert.equal(result.ok ? "ok" : result.error.code, "E_BAD_AUTH_HEADER", header);
    }
  });
});

describe("verifyXMatrix", () => {
  const received = { method: request.method, uri: request.uri, destination: request.destination, content: request.content };
  const auth = unwrap(parseXMatrix(unwrap(xMatrixAuthorization(request, key))));

  it("accepts the request as signed", () => {
    assert.equal(verifyXMatrix(auth, received, key.publicKey).ok, true);
  });

  it("refuses a changed target, body or method", () => {
    for (const change of [{ uri: `${request.uri}&y=2` }, { content: { limit: 11 } }, { method: "PUT" }, { content: undefined }]) {
      const result = verifyXMatrix(auth, { ...received, ...change }, key.publicKey);
      assert.equal(result.ok ? "ok" : result.error.code, "E_BAD_SIGNATURE", JSON.stringify(change));
    }
  });

  it("refuses a request addressed elsewhere, with or without the destination parameter", () => {
    const elsewhere = verifyXMatrix(auth, { ...received, destination: "other.example" }, key.publicKey);
    assert.equal(elsewhere.ok ? "ok" : elsewhere.error.code, "E_WRONG_DESTINATION");
    const legacy = verifyXMatrix({ ...auth, destination: undefined }, { ...received, destination: "other.example" }, key.publicKey);
    assert.equal(legacy.ok ? "ok" : legacy.error.code, "E_BAD_SIGNATURE");
    assert.equal(verifyXMatrix({ ...auth, destination: undefined }, received, key.publicKey).ok, true);
  });
});
