import assert from "node:assert/strict";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { inspect } from "node:util";
import {
  decodeBase64,
  encodeBase64,
  encodeBase64UrlSafe,
  loadSigningKey,
  parseSigningKey,
  parseSigningKeys,
  publicKeyBase64,
  signJson,
  verifyJsonSignature,
} from "../../src/federation/index.ts";
import { unwrap, VECTOR_SEED, VECTOR_SERVER, vectorKey } from "./federation-test-key.ts";

describe("base64", () => {
  it("encodes unpadded standard base64 (spec examples)", () => {
    const examples = ["", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"];
    examples.forEach((expected, length) => {
      assert.equal(encodeBase64(Buffer.from("foobar".slice(0, length))), expected);
    });
  });

  it("encodes URL-safe base64 without padding", () => {
    assert.equal(encodeBase64(Uint8Array.from([0xfb, 0xff])), "+/8");
    assert.equal(encodeBase64UrlSafe(Uint8Array.from([0xfb, 0xff])), "-_8");
  });

  it("decodes padded and unpadded input in both alphabets", () => {
    for (const text of ["+/8", "+/8=", "-_8", "-_8="]) {
      assert.deepEqual(unwrap(decodeBase64(text)), Uint8Array.from([0xfb, 0xff]), text);
    }
  });

  it("tolerates non-zero trailing bits, as the spec's own seed has", () => {
    assert.equal(unwrap(decodeBase64(VECTOR_SEED)).length, 32);
  });

  it("refuses characters outside the alphabets and impossible lengths", () => {
    for (const text of ["Zm9v!", "Zm 9v", "Z", "Zg=", "Zm9v===", "=Zg"]) {
      const decoded = decodeBase64(text);
      assert.equal(decoded.ok, false, text);
      if (!decoded.ok) assert.equal(decoded.error.code, "E_BAD_BASE64");
    }
  });
});

describe("signJson: the spec's JSON signing vectors", () => {
  const key = vectorKey();

  it("signs the empty object", () => {
    assert.deepEqual(signJson({}, VECTOR_SERVER, key), {
      signatures: {
        domain: {
          "ed25519:1": "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ",
        },
      },
    });
  });

  it("signs an object with data", () => {
    assert.deepEqual(signJson({ one: 1, two: "Two" }, VECTOR_SERVER, key), {
      one: 1,
      two: "Two",
      signatures: {
        domain: {
          "ed25519:1": "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw",
        },
      },
    });
  });

  it("ignores unsigned and existing signatures, keeps both, and leaves the input alone", () => {
    const input = {
      one: 1,
      two: "Two",
      unsigned: { age_ts: 922834800000 },
      signatures: { other: { "ed25519:x": "abc" }, domain: { "ed25519:old": "def" } },
    };
    const signed = signJson(input, VECTOR_SERVER, key);
    assert.deepEqual(signed.signatures, {
      other: { "ed25519:x": "abc" },
      domain: {
        "ed25519:old": "def",
        "ed25519:1": "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw",
      },
    });
    assert.deepEqual(signed.unsigned, { age_ts: 922834800000 });
    assert.deepEqual(input.signatures.domain, { "ed25519:old": "def" });
  });
});

describe("verifyJsonSignature", () => {
  const key = vectorKey();
  const signed = signJson({ one: 1, two: "Two", unsigned: { hops: 1 } }, VECTOR_SERVER, key);

  it("accepts a valid signature, whatever unsigned holds", () => {
    assert.deepEqual(verifyJsonSignature({ ...signed, unsigned: { hops: 9 } }, VECTOR_SERVER, "ed25519:1", key.publicKey), {
      ok: true,
      value: undefined,
    });
  });

  it("refuses a changed object", () => {
    const result = verifyJsonSignature({ ...signed, two: "Three" }, VECTOR_SERVER, "ed25519:1", key.publicKey);
    assert.equal(result.ok ? "ok" : result.error.code, "E_BAD_SIGNATURE");
  });

  it("reports a missing signature apart from a wrong one", () => {
    const result = verifyJsonSignature(signed, "elsewhere", "ed25519:1", key.publicKey);
    assert.equal(result.ok ? "ok" : result.error.code, "E_MISSING_SIGNATURE");
  });

  it("refuses an undecodable signature and a wrong-sized key", () => {
    const garbled = { ...signed, signatures: { domain: { "ed25519:1": "!!" } } };
    const bad = verifyJsonSignature(garbled, VECTOR_SERVER, "ed25519:1", key.publicKey);
    assert.equal(bad.ok ? "ok" : bad.error.code, "E_BAD_SIGNATURE");
    const shortKey = verifyJsonSignature(signed, VECTOR_SERVER, "ed25519:1", new Uint8Array(31));
    assert.equal(shortKey.ok ? "ok" : shortKey.error.code, "E_BAD_KEY");
  });

  it("refuses objects that are not canonical JSON instead of throwing", () => {
    const result = verifyJsonSignature({ ...signed, n: 0.5 }, VECTOR_SERVER, "ed25519:1", key.publicKey);
    assert.equal(result.ok ? "ok" : result.error.code, "E_BAD_JSON");
  });
});

describe("signing key file", () => {
  const seedLine = `ed25519 a_AbC1 ${VECTOR_SEED}`;

  it("parses Synapse's one-line format", () => {
    const key = unwrap(parseSigningKey(`${seedLine}\n`));
    assert.equal(key.keyId, "ed25519:a_AbC1");
    assert.equal(encodeBase64(key.seed), encodeBase64(unwrap(decodeBase64(VECTOR_SEED))));
    assert.equal(key.privateKey.asymmetricKeyType, 'ed25519');
    assert.equal(publicKeyBase64(key), publicKeyBase64(vectorKey()));
  });

  it("reads every key of a multi-key file, signing with the first as Synapse does", () => {
    const text = `\r\n${seedLine}\r\n\n  ed25519\tb_2   ${encodeBase64(new Uint8Array(32).fill(7))}  \n`;
    const keys = unwrap(parseSigningKeys(text));
    assert.deepEqual(keys.map((key) => key.keyId), ["ed25519:a_AbC1", "ed25519:b_2"]);
    assert.equal(unwrap(parseSigningKey(text)).keyId, "ed25519:a_AbC1");
  });

  it("refuses malformed files without echoing the seed", () => {
    const cases: Array<[string, RegExp]> = [
      ["", /no key/],
      ["\n  \n", /no key/],
      [`# Synapse key\n${seedLine}`, /line 1: comments/],
      [`${seedLine} extra`, /4 fields/],
      [`ed25519 ${VECTOR_SEED}`, /2 fields/],
      [`rsa a_1 ${VECTOR_SEED}`, /ed25519/],
      [`ed25519 a-1 ${VECTOR_SEED}`, /version/],
      [`ed25519 a_1 ${VECTOR_SEED.slice(0, 40)}!!`, /base64/],
      [`ed25519 a_1 ${encodeBase64(new Uint8Array(16))}`, /32 bytes, got 16/],
      [`${seedLine}\nnonsense`, /line 2/],
    ];
    for (const [text, message] of cases) {
      const result = parseSigningKeys(text);
      assert.equal(result.ok, false, text);
      if (result.ok) continue;
      assert.equal(result.error.code, "E_SIGNING_KEY_MALFORMED");
      assert.match(result.error.human, message);
      assert.ok(!result.error.log.includes(VECTOR_SEED.slice(0, 12)), "seed leaked into the message");
    }
  });

  it("never shows the seed or secret key when printed, logged or serialised", () => {
    const key = unwrap(parseSigningKey(seedLine));
    const secretForms = [VECTOR_SEED.slice(0, 20), encodeBase64(key.seed).slice(0, 20), `${key.seed[0]}, ${key.seed[1]}`];
    const outputs = [
      JSON.stringify(key),
      JSON.stringify({ nested: { key } }),
      inspect(key),
      inspect({ nested: [key] }, { depth: 10, showHidden: true }),
      String(key),
      `${key}`,
      JSON.stringify({ ...key }),
      inspect({ ...key }),
    ];
    for (const output of outputs) {
      for (const secret of secretForms) assert.ok(!output.includes(secret), `leaked in ${output}`);
    }
    assert.match(JSON.stringify(key), /"seed":"\[redacted\]"/);
    assert.match(inspect(key), /ed25519:a_AbC1/);
  });
});

describe("loadSigningKey", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "steward-signing-key-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("loads a private file without warnings", async () => {
    const path = join(dir, "private.key");
    await writeFile(path, `ed25519 a_1 ${VECTOR_SEED}\n`, { mode: 0o600 });
    await chmod(path, 0o600);
    const loaded = unwrap(await loadSigningKey(path));
    assert.equal(loaded.key.keyId, "ed25519:a_1");
    assert.deepEqual(loaded.warnings, []);
  });

  it("warns when group or others can read the file", async () => {
    const path = join(dir, "shared.key");
    await writeFile(path, `ed25519 a_1 ${VECTOR_SEED}\n`);
    await chmod(path, 0o644);
    const loaded = unwrap(await loadSigningKey(path));
    assert.equal(loaded.warnings.length, 1);
    assert.match(loaded.warnings[0]!, /mode 644.*chmod 600/);
  });

  it("names a missing file, a directory and a malformed file apart", async () => {
    const missing = await loadSigningKey(join(dir, "absent.key"));
    assert.equal(missing.ok ? "ok" : missing.error.code, "E_SIGNING_KEY_MISSING");
    const directory = await loadSigningKey(dir);
    assert.equal(directory.ok ? "ok" : directory.error.code, "E_SIGNING_KEY_UNREADABLE");
    const path = join(dir, "bad.key");
    await writeFile(path, "ed25519 a_1\n", { mode: 0o600 });
    const bad = await loadSigningKey(path);
    assert.equal(bad.ok ? "ok" : bad.error.code, "E_SIGNING_KEY_MALFORMED");
    if (!bad.ok) assert.match(bad.error.human, /bad\.key/);
  });
});
