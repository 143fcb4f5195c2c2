/**
 * Matrix canonical JSON (spec appendix "Canonical JSON"): the bytes every signature and
 * hash in federation is computed over, so one differing byte means a rejected event.
 */

/**
 * Thrown when a value has no canonical JSON form (float, unsafe integer, undefined,
 * lone surrogate, cycle...). Callers handling wire data convert it into a Failure.
 */
export class CanonicalJsonError extends Error {
  /** JSON-pointer-like location of the offending value, e.g. `/content/n`. */
  readonly path: string;

  constructor(message: string, path: string) {
    super(`${message} at ${path === "" ? "/" : path}`);
    this.name = "CanonicalJsonError";
    this.path = path;
  }
}

export function canonicalJson(value: unknown): string {
  return encodeValue(value, "", new Set());
}

export function canonicalJsonBytes(value: unknown): Buffer {
  return Buffer.from(canonicalJson(value), "utf8");
}

/**
 * Orders strings by Unicode code point, as the spec requires. JavaScript's default sort
 * compares UTF-16 code units, which puts astral characters (surrogate pairs, D800–DFFF)
 * before U+E000–U+FFFF; shifting the two ranges past each other restores code point order.
 */
export function compareCodePoints(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

function codePointRank(codeUnit: number): number {
  if (codeUnit >= 0xe000) return codeUnit - 0x800;
  if (codeUnit >= 0xd800) return codeUnit + 0x2000;
  return codeUnit;
}

function encodeValue(value: unknown, path: string, ancestors: Set<object>): string {
  switch (typeof value) {
    case "string":
      return encodeString(value, path);
    case "number":
      return encodeNumber(value, path);
    case "boolean":
      return value ? "true" : "false";
    case "bigint":
      if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < -BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new CanonicalJsonError("integer outside ±(2^53−1)", path);
      }
      return value.toString();
    case "object":
      if (value === null) return "null";
      return encodeContainer(value, path, ancestors);
    default:
      throw new CanonicalJsonError(`${typeof value} is not JSON`, path);
  }
}

function encodeNumber(value: number, path: string): string {
  if (!Number.isInteger(value)) {
    throw new CanonicalJsonError(`non-integer number ${String(value)}`, path);
  }
  if (!Number.isSafeInteger(value)) {
    throw new CanonicalJsonError("integer outside ±(2^53−1)", path);
  }
  // String(-0) is "0", which is what the spec's own example expects for -0.
  return String(value);
}

function encodeContainer(value: object, path: string, ancestors: Set<object>): string {
  if (ancestors.has(value)) throw new CanonicalJsonError("cyclic structure", path);
  ancestors.add(value);
  try {
    if (Array.isArray(value)) return encodeArray(value, path, ancestors);
    const proto = Object.getPrototypeOf(value) as unknown;
    if (proto !== Object.prototype && proto !== null) {
      throw new CanonicalJsonError("only plain objects and arrays are JSON", path);
    }
    return encodeObject(value as Record<string, unknown>, path, ancestors);
  } finally {
    ancestors.delete(value);
  }
}

function encodeArray(value: readonly unknown[], path: string, ancestors: Set<object>): string {
  const parts: string[] = [];
  for (let i = 0; i < value.length; i++) {
    if (!(i in value)) throw new CanonicalJsonError("sparse array", `${path}/${i}`);
    parts.push(encodeValue(value[i], `${path}/${i}`, ancestors));
  }
  return `[${parts.join(",")}]`;
}

function encodeObject(value: Record<string, unknown>, path: string, ancestors: Set<object>): string {
  const keys = Object.keys(value).sort(compareCodePoints);
  const parts: string[] = [];
  for (const key of keys) {
    const childPath = `${path}/${key}`;
    parts.push(`${encodeString(key, childPath)}:${encodeValue(value[key], childPath, ancestors)}`);
  }
  return `{${parts.join(",")}}`;
}

const NEEDS_ESCAPING = /["\\\u0000-\u001f\ud800-\udfff]/;

const SHORT_ESCAPES: Readonly<Record<number, string>> = {
  0x08: "\\b",
  0x09: "\\t",
  0x0a: "\\n",
  0x0c: "\\f",
  0x0d: "\\r",
  0x22: '\\"',
  0x5c: "\\\\",
};

function encodeString(value: string, path: string): string {
  if (!NEEDS_ESCAPING.test(value)) return `"${value}"`;
  let out = '"';
  for (let i = 0; i < value.length; i++) {
    const unit = value.charCodeAt(i);
    const short = SHORT_ESCAPES[unit];
    if (short !== undefined) {
      out += short;
    } else if (unit < 0x20) {
      out += `\\u${unit.toString(16).padStart(4, "0")}`;
    } else if (unit >= 0xd800 && unit <= 0xdbff && isLowSurrogate(value.charCodeAt(i + 1))) {
      out += value[i]! + value[i + 1]!;
      i++;
    } else if (unit >= 0xd800 && unit <= 0xdfff) {
      // A lone surrogate has no UTF-8 form; encoding it would silently become U+FFFD.
      throw new CanonicalJsonError("lone UTF-16 surrogate in string", path);
    } else {
      out += value[i]!;
    }
  }
  return `${out}"`;
}

function isLowSurrogate(unit: number): boolean {
  return unit >= 0xdc00 && unit <= 0xdfff;
}
