import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CanonicalJsonError, canonicalJson, canonicalJsonBytes, compareCodePoints } from "../../src/federation/index.ts";

describe("canonicalJson: the spec appendix examples", () => {
  const examples: Array<[string, unknown, string]> = [
    ["empty object", {}, "{}"],
    ["simple object", { one: 1, two: "Two" }, '{"one":1,"two":"Two"}'],
    ["reordered keys", { b: "2", a: "1" }, '{"a":"1","b":"2"}'],
    [
      "nested objects and arrays",
      {
        auth: {
          success: true,
          mxid: "@john.doe:example.com",
          profile: {
            display_name: "John Doe",
            three_pids: [
              { medium: "email", address: "john.doe@example.org" },
              { medium: "msisdn", address: "123456789" },
            ],
          },
        },
      },
      '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":' +
        '[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}',
    ],
    ["UTF-8 is not escaped", { a: "日本語" }, '{"a":"日本語"}'],
    ["non-ASCII keys sort by code point", { 本: 2, 日: 1 }, '{"日":1,"本":2}'],
    ["escaped input decodes", JSON.parse('{"a":"\\u65E5"}'), '{"a":"日"}'],
    ["null", { a: null }, '{"a":null}'],
    ["-0 and 1e10 are integers", { a: -0, b: 1e10 }, '{"a":0,"b":10000000000}'],
  ];
  for (const [name, input, expected] of examples) {
    it(name, () => assert.equal(canonicalJson(input), expected));
  }
});

describe("canonicalJson: strings", () => {
  it("uses short escapes where they exist and lower-case \\u00XX for other control characters", () => {
    assert.equal(canonicalJson("\u0000\u0001\b\t\n\u000b\f\r\u001f"), '"\\u0000\\u0001\\b\\t\\n\\u000b\\f\\r\\u001f"');
  });

  it("escapes only the quote and the backslash among printable characters", () => {
    assert.equal(canonicalJson('"\\/\u007f\u2028'), '"\\"\\\\/\u007f\u2028"');
  });

  it("keeps astral characters as UTF-8", () => {
    assert.deepEqual(canonicalJsonBytes("😀"), Buffer.from([0x22, 0xf0, 0x9f, 0x98, 0x80, 0x22]));
  });

  it("refuses lone surrogates, which have no UTF-8 form", () => {
    assert.throws(() => canonicalJson("\ud83d"), CanonicalJsonError);
    assert.throws(() => canonicalJson({ "\udc00": 1 }), CanonicalJsonError);
  });
});

describe("canonicalJson: key order is by code point, not UTF-16 code unit", () => {
  it("sorts U+E000 before U+1F600 although its code unit is larger than the surrogate's", () => {
    assert.equal(canonicalJson({ "😀": 2, "\ue000": 1 }), '{"\ue000":1,"😀":2}');
    // JavaScript's default sort gets this wrong, which is the point of the custom comparator.
    assert.deepEqual(["\ue000", "😀"].sort(), ["😀", "\ue000"]);
  });

  it("orders prefixes first and compares astral characters among themselves", () => {
    const keys = ["b", "ab", "a", "😀", "😁", "\uffff", "z"];
    assert.deepEqual(keys.sort(compareCodePoints), ["a", "ab", "b", "z", "\uffff", "😀", "😁"]);
  });
});

describe("canonicalJson: numbers", () => {
  it("accepts integers at ±(2^53−1)", () => {
    assert.equal(canonicalJson([9007199254740991, -9007199254740991]), "[9007199254740991,-9007199254740991]");
  });

  it("refuses integers beyond ±(2^53−1)", () => {
    assert.throws(() => canonicalJson(9007199254740992), CanonicalJsonError);
    assert.throws(() => canonicalJson(-9007199254740992), CanonicalJsonError);
  });

  it("refuses floats, NaN and infinities", () => {
    for (const value of [1.5, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      assert.throws(() => canonicalJson({ n: value }), CanonicalJsonError, String(value));
    }
  });

  it("accepts bigints in range only", () => {
    assert.equal(canonicalJson(12n), "12");
    assert.throws(() => canonicalJson(2n ** 53n), CanonicalJsonError);
  });
});

describe("canonicalJson: values JSON cannot carry", () => {
  it("refuses undefined, functions and symbols, naming the path", () => {
    assert.throws(() => canonicalJson({ content: { a: undefined } }), { name: "CanonicalJsonError", path: "/content/a" });
    assert.throws(() => canonicalJson([() => 1]), CanonicalJsonError);
    assert.throws(() => canonicalJson(Symbol("x")), CanonicalJsonError);
  });

  it("refuses class instances, sparse arrays and cycles", () => {
    assert.throws(() => canonicalJson(new Date(0)), CanonicalJsonError);
    assert.throws(() => canonicalJson(new Map()), CanonicalJsonError);
    assert.throws(() => canonicalJson([1, , 3]), CanonicalJsonError);
    const cyclic: Record<string, unknown> = {};
    cyclic["self"] = cyclic;
    assert.throws(() => canonicalJson(cyclic), CanonicalJsonError);
  });

  it("accepts the same object twice when it is not a cycle", () => {
    const shared = { x: 1 };
    assert.equal(canonicalJson({ a: shared, b: [shared] }), '{"a":{"x":1},"b":[{"x":1}]}');
  });

  it("accepts objects without a prototype, as some parsers produce", () => {
    const bare = Object.create(null) as Record<string, unknown>;
    bare["k"] = true;
    assert.equal(canonicalJson(bare), '{"k":true}');
  });
});
