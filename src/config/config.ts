import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import yaml from 'js-yaml';
import { ConfigReader } from './reader.ts';
import { parseRecoveryConfig, type RecoveryConfig } from '../recovery/recovery-config.ts';
import { fail, ok, type Result } from '../util/result.ts';
import { parseCidr } from '../federation/address-guard.ts';
import { parseLinkedAccountsConfig, type LinkedAccountsConfig } from '../linked/linked-config.ts';
import { parseArchiveConfig, type ArchiveConfig } from '../archive/archive-config.ts';

export interface StewardConfig {
  readonly homeserver: {
    /** Client-server and admin API base URL, as the bot reaches it. */
    readonly url: string;
    readonly serverName: string;
    /** File holding a token with Synapse's admin scope, for admin API calls only (needed under MAS). */
    readonly adminTokenFile: string | undefined;
    /** How long `steward run` waits for an unreachable homeserver at start-up (0: do not wait). */
    readonly startupWaitSeconds: number;
    /** Synapse's homeserver.yaml, when readable: lets the doctor (and others) check its settings. */
    readonly synapseConfig: string | undefined;
  };
  readonly appservice: {
    readonly id: string;
    readonly botLocalpart: string;
    readonly bindAddress: string;
    readonly port: number;
    /** How the homeserver reaches the bot; written into the registration. */
    readonly url: string;
    /** Accept the hs_token as `?access_token=` (Synapse < 1.84); refused by default. */
    readonly allowQueryToken: boolean;
    /** Serve `GET /metrics` (Prometheus) on the appservice port. */
    readonly metrics: boolean;
  };
  readonly adminRoom: {
    readonly admins: readonly string[];
    /** Room id or alias; when absent the bot creates the room and remembers it. */
    readonly room: string | undefined;
    readonly statusRoom: string | undefined;
    readonly name: string;
  };
  readonly storage: {
    readonly database: string;
    readonly dumps: string;
  };
  readonly jobs: {
    readonly concurrency: number;
    readonly progressIntervalSeconds: number;
  };
  readonly requests: {
    readonly timeoutSeconds: number;
    readonly maxRetries: number;
    readonly concurrency: number;
  };
  readonly logging: {
    readonly level: string;
  };
  readonly federation: {
    /** Synapse's signing key file; absent means commands that speak federation refuse to run. */
    readonly signingKeyPath: string | undefined;
    /** CIDRs the address guard admits although loopback/private/link-local/…. */
    readonly addressAllowlist: readonly string[];
    /** Extra CA certificates (PEM) trusted besides the system's. */
    readonly caFile: string | undefined;
    /** Tests only: do not verify remote certificates. */
    readonly insecureSkipTlsVerify: boolean;
    /** Server name of a notary for keys a server does not serve itself. */
    readonly notary: string | undefined;
    readonly timeoutSeconds: number;
    readonly maxRetries: number;
  };
  /** Lost-room detection and rejoin (src/recovery). */
  readonly recovery: RecoveryConfig;
  /** Linked accounts: mirror invites and read receipts across one person's Matrix IDs (src/linked). */
  readonly linkedAccounts: LinkedAccountsConfig;
  /** Room history archive (src/archive). */
  readonly archive: ArchiveConfig;
  /** Synapse's own database: only for password hashes (dump users --with-password-hashes, restore users). */
  readonly synapse: { readonly database: string | undefined };
}

const MXID = /^@[^:\s]+:[^\s]+$/;
const ROOM_REF = /^[!#][^:\s]+(:[^\s]+)?$/;
const SERVER_NAME = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/;
const LOG_LEVELS = /^(trace|debug|info|warn|error|fatal|silent)$/;

/** Validates parsed YAML; `baseDir` anchors relative paths (the config file's folder). */
export function parseConfig(raw: unknown, baseDir: string): Result<StewardConfig> {
  const r = new ConfigReader();
  const root = r.section(raw ?? {}, '', ['homeserver', 'appservice', 'admin_room', 'storage', 'jobs', 'requests', 'logging', 'federation', 'recovery', 'linked_accounts', 'archive', 'synapse']);

  const hs = r.section(root?.homeserver, 'homeserver', ['url', 'server_name', 'admin_token_file', 'startup_wait_seconds', 'synapse_config'], true);
  const url = r.string(hs, 'homeserver', 'url', { pattern: /^https?:\/\/[^\s/]+(\/[^\s]*)?$/, expect: 'an http(s) URL such as http://127.0.0.1:8008' });
  const serverName = r.string(hs, 'homeserver', 'server_name', { pattern: SERVER_NAME, expect: 'a server name such as example.org' });
  const adminTokenFile = r.optionalString(hs, 'homeserver', 'admin_token_file');

  const startupWaitSeconds = r.integer(hs, 'homeserver', 'startup_wait_seconds', { default: 300, min: 0, max: 86400 });
  const synapseConfig = r.optionalString(hs, 'homeserver', 'synapse_config');
  const as = r.section(root?.appservice, 'appservice', ['id', 'bot_localpart', 'bind_address', 'port', 'url', 'allow_query_token', 'metrics']);
  const port = r.integer(as, 'appservice', 'port', { default: 9993, min: 1, max: 65535 });
  const bindAddress = r.string(as, 'appservice', 'bind_address', { default: '127.0.0.1' });
  const appservice = {
    id: r.string(as, 'appservice', 'id', { default: 'steward', pattern: /^[A-Za-z0-9._-]+$/, expect: 'letters, digits, dot, dash or underscore' }),
    botLocalpart: r.string(as, 'appservice', 'bot_localpart', { default: 'steward', pattern: /^[a-z0-9._=/+-]+$/, expect: 'a lower-case Matrix localpart' }),
    bindAddress,
    port,
    url: r.string(as, 'appservice', 'url', { default: `http://${bindAddress.includes(':') ? `[${bindAddress}]` : bindAddress}:${port}`, pattern: /^https?:\/\/\S+$/, expect: 'an http(s) URL' }),
    allowQueryToken: r.boolean(as, 'appservice', 'allow_query_token', false),
    metrics: r.boolean(as, 'appservice', 'metrics', true),
  };

  const ar = r.section(root?.admin_room, 'admin_room', ['admins', 'room', 'status_room', 'name'], true);
  const adminRoom = {
    admins: r.stringList(ar, 'admin_room', 'admins', { pattern: MXID, expect: 'full Matrix IDs such as @alice:example.org', required: true }),
    room: r.optionalString(ar, 'admin_room', 'room', { pattern: ROOM_REF, expect: 'a room id (!…) or alias (#…)' }),
    statusRoom: r.optionalString(ar, 'admin_room', 'status_room', { pattern: ROOM_REF, expect: 'a room id (!…) or alias (#…)' }),
    name: r.string(ar, 'admin_room', 'name', { default: 'Steward admin' }),
  };

  const st = r.section(root?.storage, 'storage', ['database', 'dumps']);
  const storage = {
    database: resolve(baseDir, r.string(st, 'storage', 'database', { default: './data/steward.db' })),
    dumps: resolve(baseDir, r.string(st, 'storage', 'dumps', { default: './dumps' })),
  };

  const jb = r.section(root?.jobs, 'jobs', ['concurrency', 'progress_interval_seconds']);
  const jobs = {
    concurrency: r.integer(jb, 'jobs', 'concurrency', { default: 2, min: 1, max: 16 }),
    progressIntervalSeconds: r.integer(jb, 'jobs', 'progress_interval_seconds', { default: 3, min: 1, max: 600 }),
  };

  const rq = r.section(root?.requests, 'requests', ['timeout_seconds', 'max_retries', 'concurrency']);
  const requests = {
    timeoutSeconds: r.integer(rq, 'requests', 'timeout_seconds', { default: 60, min: 1, max: 3600 }),
    maxRetries: r.integer(rq, 'requests', 'max_retries', { default: 6, min: 0, max: 50 }),
    concurrency: r.integer(rq, 'requests', 'concurrency', { default: 4, min: 1, max: 64 }),
  };

  const lg = r.section(root?.logging, 'logging', ['level']);
  const logging = { level: r.string(lg, 'logging', 'level', { default: 'info', pattern: LOG_LEVELS, expect: 'one of trace, debug, info, warn, error, fatal, silent' }) };

  const fd = r.section(root?.federation, 'federation', ['signing_key_path', 'address_allowlist', 'ca_file', 'insecure_skip_tls_verify', 'notary', 'timeout_seconds', 'max_retries']);
  const signingKeyPath = r.optionalString(fd, 'federation', 'signing_key_path');
  const caFile = r.optionalString(fd, 'federation', 'ca_file');
  const addressAllowlist = r.stringList(fd, 'federation', 'address_allowlist', { expect: 'CIDRs such as 127.0.0.0/8 or ::1/128' });
  addressAllowlist.forEach((entry, i) => {
    if (!parseCidr(entry).ok) r.problems.push(`federation.address_allowlist[${i}]: expected a CIDR such as 127.0.0.0/8 or ::1/128, got ${JSON.stringify(entry)}`);
  });
  const federation = {
    signingKeyPath: signingKeyPath === undefined ? undefined : resolve(baseDir, signingKeyPath),
    addressAllowlist,
    caFile: caFile === undefined ? undefined : resolve(baseDir, caFile),
    insecureSkipTlsVerify: r.boolean(fd, 'federation', 'insecure_skip_tls_verify', false),
    notary: r.optionalString(fd, 'federation', 'notary', { pattern: SERVER_NAME, expect: 'a server name such as matrix.org' }),
    timeoutSeconds: r.integer(fd, 'federation', 'timeout_seconds', { default: 30, min: 1, max: 600 }),
    maxRetries: r.integer(fd, 'federation', 'max_retries', { default: 2, min: 0, max: 10 }),
  };

  const recovery = parseRecoveryConfig(r, root?.recovery, baseDir, storage.dumps);
  const linkedAccounts = parseLinkedAccountsConfig(r, root?.linked_accounts);
  const archive = parseArchiveConfig(r, root?.archive, baseDir, requests.concurrency);

  const sy = r.section(root?.synapse, 'synapse', ['database']);
  const synapseDatabase = r.optionalString(sy, 'synapse', 'database');
  // A relative SQLite path is relative to this file, like every other path; a DSN stays as it is.
  const synapse = { database: synapseDatabase === undefined || /^postgres(ql)?:\/\//i.test(synapseDatabase) ? synapseDatabase : resolve(baseDir, synapseDatabase) };

  if (r.problems.length > 0) {
    return fail('E_BAD_CONFIG', `The configuration has ${r.problems.length} problem(s):\n- ${r.problems.join('\n- ')}`);
  }
  return ok({ homeserver: { url: url.replace(/\/+$/, ''), serverName, adminTokenFile: adminTokenFile === undefined ? undefined : resolve(baseDir, adminTokenFile), startupWaitSeconds, synapseConfig: synapseConfig === undefined ? undefined : resolve(baseDir, synapseConfig) }, appservice, adminRoom, storage, jobs, requests, logging, federation, recovery, linkedAccounts, archive, synapse });
}

export async function loadConfig(path: string): Promise<Result<StewardConfig>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return fail('E_BAD_CONFIG', `Cannot read the config file ${path}: ${code === 'ENOENT' ? 'it does not exist' : code ?? String(err)}`);
  }
  let raw: unknown;
  try {
    raw = yaml.load(text, { filename: path });
  } catch (err) {
    return fail('E_BAD_CONFIG', `The config file ${path} is not valid YAML: ${(err as Error).message}`);
  }
  return parseConfig(raw, dirname(resolve(path)));
}
