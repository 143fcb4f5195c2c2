import { isIP } from "node:net";
import { fail, ok } from "../util/result.ts";
import type { Result } from "../util/result.ts";

/**
 * Decides whether Steward may open a connection to an IP address it learnt from a
 * remote party (a server name, a `.well-known` answer, DNS, a redirect). Without this a
 * hostile server name could point federation requests at the machine's own services
 * (Synapse's admin API, a cloud metadata endpoint, the database).
 *
 * Refused unless allowlisted: loopback, unspecified, private (RFC 1918), CGNAT,
 * link-local, IETF/documentation/benchmark ranges, multicast, broadcast and the rest of
 * 240/4, 0/8; on IPv6 the loopback and unspecified addresses, ULA, link-local,
 * site-local, documentation, discard-only, multicast.
 *
 * IPv6 forms that carry an IPv4 address are judged by that address: IPv4-mapped
 * (`::ffff:a.b.c.d`, also written `::ffff:7f00:1`), IPv4-compatible (`::a.b.c.d`,
 * deprecated), IPv4-translated (`::ffff:0:a.b.c.d`), the well-known NAT64 prefix
 * `64:ff9b::/96` (a NAT64 gateway would carry the connection to the embedded address)
 * and 6to4 `2002::/16`. The local-use NAT64 prefix `64:ff9b:1::/48` (RFC 8215) and
 * Teredo `2001::/32` are refused outright: where they lead depends on local
 * configuration or obfuscated relays we cannot check.
 *
 * The allowlist is matched against the address exactly as it will be connected to,
 * family by family: `127.0.0.0/8` admits `127.0.0.1` but not `::ffff:127.0.0.1`. A
 * mapped form only comes from someone choosing to write it, so it gets no benefit of
 * the doubt; list `::ffff:127.0.0.0/104` to admit it.
 */
export class AddressGuard {
  readonly #allowlist: readonly Cidr[];

  private constructor(allowlist: readonly Cidr[]) {
    this.#allowlist = allowlist;
  }

  /** `allowlist` holds CIDRs (`127.0.0.0/8`, `::1/128`) or single addresses. */
  static create(allowlist: readonly string[]): Result<AddressGuard> {
    const parsed: Cidr[] = [];
    for (const entry of allowlist) {
      const cidr = parseCidr(entry);
      if (!cidr.ok) return cidr;
      parsed.push(cidr.value);
    }
    return ok(new AddressGuard(parsed));
  }

  /** Why `address` must not be connected to, or undefined when it may be. */
  refusalReason(address: string): string | undefined {
    const ip = parseIp(address);
    if (ip === undefined) return "it is not an IP address";
    if (this.#allowlist.some((cidr) => cidrContains(cidr, ip))) return undefined;
    return blockedReason(ip);
  }

  isAllowed(address: string): boolean {
    return this.refusalReason(address) === undefined;
  }

  /** ok when `address` may be connected to; otherwise E_ADDRESS_REFUSED naming the reason. */
  check(address: string): Result<void> {
    const reason = this.refusalReason(address);
    if (reason === undefined) return ok(undefined);
    return fail(
      "E_ADDRESS_REFUSED",
      `Refusing to connect to ${address}: ${reason}. If this is intended, add it to federation.address_allowlist.`,
      `address guard refused ${address}: ${reason}`,
    );
  }
}

export interface Cidr {
  readonly family: 4 | 6;
  readonly bytes: Uint8Array;
  readonly prefix: number;
  /** As written in the config, for messages. */
  readonly text: string;
}

/** Parses `a.b.c.d/n`, `x::y/n` or a single address (a /32 or /128). */
export function parseCidr(text: string): Result<Cidr> {
  const slash = text.indexOf("/");
  const addressText = slash === -1 ? text : text.slice(0, slash);
  const ip = addressText.includes("%") ? undefined : parseIp(addressText);
  if (ip === undefined) {
    return fail("E_BAD_CIDR", `"${text}" is not a CIDR such as 127.0.0.0/8 or ::1/128.`);
  }
  const max = ip.family === 4 ? 32 : 128;
  let prefix = max;
  if (slash !== -1) {
    const prefixText = text.slice(slash + 1);
    prefix = /^[0-9]{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
    if (!(prefix >= 0 && prefix <= max)) {
      return fail("E_BAD_CIDR", `"${text}" has a prefix length outside 0–${max}.`);
    }
  }
  return ok({ family: ip.family, bytes: ip.bytes, prefix, text });
}

interface Ip {
  readonly family: 4 | 6;
  readonly bytes: Uint8Array;
}

/** An IPv4 or IPv6 literal (brackets and an IPv6 zone id tolerated) as bytes. */
export function parseIp(text: string): Ip | undefined {
  let address = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  const family = isIP(address);
  if (family === 4) return { family: 4, bytes: parseIpv4(address) };
  if (family !== 6) return undefined;
  const zone = address.indexOf("%");
  if (zone !== -1) address = address.slice(0, zone);
  const bytes = parseIpv6(address);
  return bytes === undefined ? undefined : { family: 6, bytes };
}

function parseIpv4(address: string): Uint8Array {
  return Uint8Array.from(address.split(".").map(Number));
}

/** Only called on text `isIP` accepted, so the grammar is already known to be right. */
function parseIpv6(address: string): Uint8Array | undefined {
  const bytes = new Uint8Array(16);
  let head = address;
  let tail = "";
  const doubleColon = address.indexOf("::");
  if (doubleColon !== -1) {
    head = address.slice(0, doubleColon);
    tail = address.slice(doubleColon + 2);
  }
  const headGroups = groupsOf(head);
  const tailGroups = groupsOf(tail);
  if (headGroups === undefined || tailGroups === undefined) return undefined;
  if (doubleColon === -1 && headGroups.length !== 8) return undefined;
  if (headGroups.length + tailGroups.length > 8) return undefined;
  const groups = [...headGroups, ...new Array<number>(8 - headGroups.length - tailGroups.length).fill(0), ...tailGroups];
  groups.forEach((group, i) => {
    bytes[2 * i] = group >> 8;
    bytes[2 * i + 1] = group & 0xff;
  });
  return bytes;
}

function groupsOf(part: string): number[] | undefined {
  if (part === "") return [];
  const groups: number[] = [];
  for (const piece of part.split(":")) {
    if (piece.includes(".")) {
      if (isIP(piece) !== 4) return undefined;
      const [a, b, c, d] = parseIpv4(piece) as unknown as [number, number, number, number];
      groups.push((a << 8) | b, (c << 8) | d);
    } else {
      if (!/^[0-9A-Fa-f]{1,4}$/.test(piece)) return undefined;
      groups.push(parseInt(piece, 16));
    }
  }
  return groups;
}

function cidrContains(cidr: Cidr, ip: Ip): boolean {
  return cidr.family === ip.family && prefixMatches(ip.bytes, cidr.bytes, cidr.prefix);
}

function prefixMatches(bytes: Uint8Array, network: Uint8Array, prefix: number): boolean {
  const whole = prefix >> 3;
  for (let i = 0; i < whole; i++) if (bytes[i] !== network[i]) return false;
  const rest = prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((bytes[whole]! ^ network[whole]!) & mask) === 0;
}

interface Range {
  readonly bytes: Uint8Array;
  readonly prefix: number;
  readonly label: string;
}

function range(text: string, label: string): Range {
  const cidr = parseCidr(text);
  if (!cidr.ok) throw new Error(`bad built-in range ${text}`);
  return { bytes: cidr.value.bytes, prefix: cidr.value.prefix, label: `${label} (${text})` };
}

const IPV4_BLOCKED: readonly Range[] = [
  range("0.0.0.0/8", "a \"this network\" address"),
  range("10.0.0.0/8", "a private address"),
  range("100.64.0.0/10", "a carrier-grade NAT address"),
  range("127.0.0.0/8", "a loopback address"),
  range("169.254.0.0/16", "a link-local address"),
  range("172.16.0.0/12", "a private address"),
  range("192.0.0.0/24", "an IETF protocol assignment"),
  range("192.0.2.0/24", "a documentation address"),
  range("192.88.99.0/24", "a former 6to4 relay address"),
  range("192.168.0.0/16", "a private address"),
  range("198.18.0.0/15", "a benchmarking address"),
  range("198.51.100.0/24", "a documentation address"),
  range("203.0.113.0/24", "a documentation address"),
  range("224.0.0.0/4", "a multicast address"),
  range("255.255.255.255/32", "the broadcast address"),
  range("240.0.0.0/4", "a reserved address"),
];

const IPV6_BLOCKED: readonly Range[] = [
  range("::/128", "the unspecified address"),
  range("::1/128", "the loopback address"),
  range("64:ff9b:1::/48", "a local-use NAT64 address"),
  range("100::/64", "a discard-only address"),
  range("2001::/32", "a Teredo address"),
  range("2001:db8::/32", "a documentation address"),
  range("fc00::/7", "a unique local address"),
  range("fe80::/10", "a link-local address"),
  range("fec0::/10", "a site-local address"),
  range("ff00::/8", "a multicast address"),
];

interface Embedding {
  readonly range: Range;
  /** Offset of the embedded IPv4 address in the 16 bytes. */
  readonly at: number;
  readonly what: string;
}

const IPV4_EMBEDDINGS: readonly Embedding[] = [
  { range: range("::ffff:0:0/96", "IPv4-mapped"), at: 12, what: "the IPv4-mapped form of" },
  { range: range("::ffff:0:0:0/96", "IPv4-translated"), at: 12, what: "the IPv4-translated form of" },
  { range: range("64:ff9b::/96", "NAT64"), at: 12, what: "the NAT64 form of" },
  { range: range("2002::/16", "6to4"), at: 2, what: "a 6to4 address embedding" },
  // Last: it contains ::/128 and ::1/128, which the blocked list above names first.
  { range: range("::/96", "IPv4-compatible"), at: 12, what: "the IPv4-compatible form of" },
];

function blockedReason(ip: Ip): string | undefined {
  const direct = firstRange(ip.family === 4 ? IPV4_BLOCKED : IPV6_BLOCKED, ip.bytes);
  if (direct !== undefined) return `it is ${direct}`;
  if (ip.family === 4) return undefined;
  for (const embedding of IPV4_EMBEDDINGS) {
    if (!prefixMatches(ip.bytes, embedding.range.bytes, embedding.range.prefix)) continue;
    const v4 = ip.bytes.slice(embedding.at, embedding.at + 4);
    const inner = firstRange(IPV4_BLOCKED, v4);
    return inner === undefined ? undefined : `it is ${embedding.what} ${v4.join(".")}, ${inner}`;
  }
  return undefined;
}

function firstRange(ranges: readonly Range[], bytes: Uint8Array): string | undefined {
  const hit = ranges.find((r) => prefixMatches(bytes, r.bytes, r.prefix));
  return hit === undefined ? undefined : hit.label;
}
