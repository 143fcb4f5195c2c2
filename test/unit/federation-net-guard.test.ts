import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AddressGuard, parseCidr, parseIp } from "../../src/federation/address-guard.ts";
import { unwrap } from "./federation-test-key.ts";

const noAllowlist = unwrap(AddressGuard.create([]));

describe("address guard: refused without an allowlist", () => {
  const refused = [
    ["10.0.0.1", /private/],
    ["172.16.5.4", /private/],
    ["192.168.1.1", /private/],
    ["127.0.0.1", /loopback/],
    ["127.255.255.254", /loopback/],
    ["169.254.169.254", /link-local/],
    ["100.64.0.1", /carrier-grade NAT/],
    ["0.0.0.0", /this network/],
    ["0.1.2.3", /this network/],
    ["224.0.0.1", /multicast/],
    ["255.255.255.255", /broadcast/],
    ["240.0.0.1", /reserved/],
    ["192.0.2.10", /documentation/],
    ["::1", /loopback/],
    ["::", /unspecified/],
    ["fd00::1", /unique local/],
    ["fc00::1", /unique local/],
    ["fe80::1", /link-local/],
    ["fe80::1%eth0", /link-local/],
    ["febf::1", /link-local/],
    ["ff02::1", /multicast/],
    ["2001:db8::1", /documentation/],
    ["::ffff:127.0.0.1", /IPv4-mapped form of 127\.0\.0\.1/],
    ["::ffff:7f00:1", /IPv4-mapped form of 127\.0\.0\.1/],
    ["::FFFF:7F00:0001", /IPv4-mapped form of 127\.0\.0\.1/],
    ["0:0:0:0:0:ffff:a00:1", /IPv4-mapped form of 10\.0\.0\.1/],
    ["::ffff:10.0.0.1", /IPv4-mapped form of 10\.0\.0\.1/],
    ["::ffff:169.254.169.254", /IPv4-mapped form of 169\.254\.169\.254/],
    ["::127.0.0.1", /IPv4-compatible form of 127\.0\.0\.1/],
    ["::a00:1", /IPv4-compatible form of 10\.0\.0\.1/],
    ["::ffff:0:10.0.0.1", /IPv4-translated form of 10\.0\.0\.1/],
    ["64:ff9b::10.0.0.1", /NAT64 form of 10\.0\.0\.1/],
    ["64:ff9b::7f00:1", /NAT64 form of 127\.0\.0\.1/],
    ["64:ff9b:1::8.8.8.8", /local-use NAT64/],
    ["2002:a9fe:a9fe::1", /6to4 address embedding 169\.254\.169\.254/],
    ["2001:0:4136:e378::1", /Teredo/],
    ["[::1]", /loopback/],
    ["localhost", /not an IP address/],
    ["example.org", /not an IP address/],
    ["", /not an IP address/],
    ["1.2.3", /not an IP address/],
    ["0x7f.0.0.1", /not an IP address/],
  ] as const;
  for (const [address, reason] of refused) {
    it(`refuses ${address || "(empty)"}`, () => {
      const checked = noAllowlist.check(address);
      assert.equal(checked.ok, false);
      if (checked.ok) return;
      assert.equal(checked.error.code, "E_ADDRESS_REFUSED");
      assert.match(checked.error.human, reason);
      assert.match(checked.error.human, /federation\.address_allowlist/);
    });
  }
});

describe("address guard: public addresses pass", () => {
  for (const address of ["8.8.8.8", "93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450::1", "::ffff:8.8.8.8", "64:ff9b::8.8.8.8", "2002:808:808::1", "100.128.0.1", "172.32.0.1", "11.0.0.1"]) {
    it(`admits ${address}`, () => assert.equal(noAllowlist.refusalReason(address), undefined));
  }
});

describe("address guard: allowlist", () => {
  it("admits 127.0.0.1 when 127.0.0.0/8 is allowlisted, and only the listed ranges", () => {
    const guard = unwrap(AddressGuard.create(["127.0.0.0/8", "::1/128", "10.1.0.0/16"]));
    assert.equal(guard.check("127.0.0.1").ok, true);
    assert.equal(guard.check("127.4.5.6").ok, true);
    assert.equal(guard.check("::1").ok, true);
    assert.equal(guard.check("10.1.2.3").ok, true);
    assert.equal(guard.check("10.2.0.1").ok, false);
    assert.equal(guard.check("169.254.169.254").ok, false);
  });

  it("matches the address as written: an IPv4 entry does not admit the IPv4-mapped form", () => {
    const guard = unwrap(AddressGuard.create(["127.0.0.0/8"]));
    assert.equal(guard.check("::ffff:127.0.0.1").ok, false);
    assert.equal(guard.check("::ffff:7f00:1").ok, false);
    const mapped = unwrap(AddressGuard.create(["::ffff:127.0.0.0/104"]));
    assert.equal(mapped.check("::ffff:127.0.0.1").ok, true);
    assert.equal(mapped.check("127.0.0.1").ok, false);
  });

  it("takes a single address as /32 or /128, and tolerates host bits in a CIDR", () => {
    const guard = unwrap(AddressGuard.create(["127.0.0.1", "fd00::1", "192.168.7.9/24"]));
    assert.equal(guard.check("127.0.0.1").ok, true);
    assert.equal(guard.check("127.0.0.2").ok, false);
    assert.equal(guard.check("fd00::1").ok, true);
    assert.equal(guard.check("fd00::2").ok, false);
    assert.equal(guard.check("192.168.7.200").ok, true);
    assert.equal(guard.check("192.168.8.1").ok, false);
  });

  it("refuses malformed CIDRs", () => {
    for (const bad of ["", "127.0.0.0/33", "::/129", "127.0.0/8", "localhost/8", "1.2.3.4/-1", "1.2.3.4/", "fe80::1%eth0/64", "1.2.3.4/8/8"]) {
      const parsed = parseCidr(bad);
      assert.equal(parsed.ok, false, bad);
      if (!parsed.ok) assert.equal(parsed.error.code, "E_BAD_CIDR");
    }
    assert.equal(AddressGuard.create(["10.0.0.0/8", "nonsense"]).ok, false);
  });
});

describe("parseIp", () => {
  it("expands IPv6 forms to the same bytes", () => {
    const a = parseIp("::ffff:127.0.0.1")!;
    const b = parseIp("::ffff:7f00:1")!;
    const c = parseIp("0000:0000:0000:0000:0000:ffff:7f00:0001")!;
    assert.deepEqual(a, b);
    assert.deepEqual(a, c);
    assert.equal(a.family, 6);
    assert.deepEqual([...a.bytes.slice(10)], [0xff, 0xff, 127, 0, 0, 1]);
    assert.deepEqual([...parseIp("1::")!.bytes], [0, 1, ...new Array(14).fill(0)]);
    assert.deepEqual([...parseIp("10.0.0.1")!.bytes], [10, 0, 0, 1]);
  });
});
