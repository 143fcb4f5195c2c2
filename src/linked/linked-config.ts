import type { ConfigReader } from '../config/reader.ts';
import { parseCidr } from '../federation/address-guard.ts';

/** The `linked_accounts:` section: which Matrix IDs belong to one person, and what to mirror. */
export interface LinkedAccountsConfig {
  /** Off by default: nothing is mirrored and no events are kept for it. */
  readonly enabled: boolean;
  readonly directory: DirectoryConfig | undefined;
  /** Join local linked accounts into rooms they were invited to by mirroring. */
  readonly autoJoin: boolean;
  /** Also invite linked accounts that left the room (banned ones never: Synapse refuses). */
  readonly reinviteLeft: boolean;
  readonly catchUp: {
    /** Local accounts whose receipts are brought up to date at start-up, at most. */
    readonly maxUsers: number;
    /** Rooms per account looked at by that catch-up, at most (the most recently joined are not preferred: joined_rooms order). */
    readonly maxRoomsPerUser: number;
  };
}

export interface DirectoryConfig {
  /** http(s) URL with `{mxid}`, replaced by the URL-encoded Matrix ID. */
  readonly urlTemplate: string;
  readonly timeoutMs: number;
  readonly cacheSeconds: number;
  /** How long "no linked accounts" and failed lookups are remembered. */
  readonly negativeCacheSeconds: number;
  /**
   * Addresses the directory may live on although the address guard refuses them (private,
   * loopback…). Its own list, not federation.address_allowlist: a directory usually sits on an
   * internal network that federation must never be pointed at.
   */
  readonly addressAllowlist: readonly string[];
}

export const DIRECTORY_PLACEHOLDER = '{mxid}';

export function parseLinkedAccountsConfig(r: ConfigReader, raw: unknown): LinkedAccountsConfig {
  const la = r.section(raw, 'linked_accounts', ['enabled', 'directory', 'auto_join', 'reinvite_left', 'catch_up']);
  const enabled = r.boolean(la, 'linked_accounts', 'enabled', false);

  let directory: DirectoryConfig | undefined;
  const dr = r.section(la?.directory, 'linked_accounts.directory', ['url', 'timeout_ms', 'cache_seconds', 'negative_cache_seconds', 'address_allowlist']);
  if (dr) {
    const url = r.string(dr, 'linked_accounts.directory', 'url', { pattern: /^https?:\/\/[^\s/]+(\/\S*)?$/, expect: 'an http(s) URL with {mxid}, such as https://directory.example.org/links?mxid={mxid}' });
    if (url && !url.includes(DIRECTORY_PLACEHOLDER)) r.problems.push(`linked_accounts.directory.url: must contain ${DIRECTORY_PLACEHOLDER}, where the URL-encoded Matrix ID goes`);
    const allowlist = r.stringList(dr, 'linked_accounts.directory', 'address_allowlist', { expect: 'CIDRs such as 10.0.0.0/8 or ::1/128' });
    allowlist.forEach((entry, i) => {
      if (!parseCidr(entry).ok) r.problems.push(`linked_accounts.directory.address_allowlist[${i}]: expected a CIDR such as 10.0.0.0/8 or ::1/128, got ${JSON.stringify(entry)}`);
    });
    directory = {
      urlTemplate: url,
      timeoutMs: r.integer(dr, 'linked_accounts.directory', 'timeout_ms', { default: 5000, min: 100, max: 60_000 }),
      cacheSeconds: r.integer(dr, 'linked_accounts.directory', 'cache_seconds', { default: 300, min: 0, max: 7 * 86400 }),
      negativeCacheSeconds: r.integer(dr, 'linked_accounts.directory', 'negative_cache_seconds', { default: 60, min: 0, max: 86400 }),
      addressAllowlist: allowlist,
    };
  }

  const cu = r.section(la?.catch_up, 'linked_accounts.catch_up', ['max_users', 'max_rooms_per_user']);
  return {
    enabled,
    directory,
    autoJoin: r.boolean(la, 'linked_accounts', 'auto_join', true),
    reinviteLeft: r.boolean(la, 'linked_accounts', 'reinvite_left', false),
    catchUp: {
      maxUsers: r.integer(cu, 'linked_accounts.catch_up', 'max_users', { default: 200, min: 0, max: 100_000 }),
      maxRoomsPerUser: r.integer(cu, 'linked_accounts.catch_up', 'max_rooms_per_user', { default: 200, min: 1, max: 10_000 }),
    },
  };
}
