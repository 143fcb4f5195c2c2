import { constants } from 'node:fs';
import { access, stat, statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Registration } from '../appservice/registration.ts';
import type { StewardConfig } from '../config/config.ts';
import { encodeBase64 } from '../federation/base64.ts';
import type { FederationProvider } from '../federation/federation-access.ts';
import { loadFederationSettings } from '../federation/federation-settings.ts';
import { isJsonObject } from '../federation/json-object.ts';
import type { ClientApi } from '../homeserver/client-api.ts';
import { path, type HomeserverHttp } from '../homeserver/http.ts';
import { readRedactionRetention } from '../homeserver/synapse-config-file.ts';
import type { SynapseAdmin } from '../homeserver/synapse-admin.ts';
import { sourceName } from '../recovery/recovery-config.ts';
import type { LogSourceStore } from '../recovery/lost-rooms.ts';
import type { CheckOutcome, CheckResult, DoctorCheck } from './check.ts';
import type { TransactionSelfTest } from './self-test.ts';
import { detectAuthDelegation, issueTokenSteps, plainAdminTokenProblem, readAdminToken } from '../production/delegated-auth.ts';
import type { Logger } from '../log.ts';

export interface DoctorDeps {
  readonly config: StewardConfig;
  readonly registration: Registration;
  readonly http: HomeserverHttp;
  readonly admin: SynapseAdmin;
  readonly client: ClientApi;
  readonly federation: FederationProvider;
  readonly logSources: LogSourceStore;
  readonly botUserId: string;
  readonly log: Logger;
  /** Only in the running service: the event and receipt round trip through its own endpoint. */
  readonly selfTest?: TransactionSelfTest;
}

const GiB = 1024 ** 3;
/** Below this a dump (a few hundred MB for a large server) may not fit: ❌. */
export const FREE_SPACE_FAIL_BYTES = GiB / 2;
/** Below this, or below 5 % of the disk: ⚠️. */
export const FREE_SPACE_WARN_BYTES = 5 * GiB;
/** A followed file whose last line is older than this looks stale from the terminal. */
const STALE_LOG_MS = 3600_000;

function duration(ms: number): string {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000} d`;
  if (ms % 3600_000 === 0) return `${ms / 3600_000} h`;
  if (ms >= 60_000) return `${Math.round(ms / 60_000)} min`;
  return `${Math.round(ms / 1000)} s`;
}

function bytes(n: number): string {
  return n >= GiB ? `${(n / GiB).toFixed(1)} GiB` : `${Math.round(n / 1024 ** 2)} MiB`;
}

export function homeserverCheck(d: DoctorDeps): DoctorCheck {
  return {
    title: 'Homeserver reachable',
    async run(signal) {
      const answer = await d.http.request<{ versions?: string[] }>('GET', '/_matrix/client/versions', { maxRetries: 0, timeoutMs: 10_000, signal, anonymous: true });
      if (!answer.ok) {
        return { status: 'fail', detail: `${d.config.homeserver.url} does not answer: ${answer.error.human}`, fix: 'start Synapse, or set homeserver.url to its client-server listener (a local plain-HTTP one is best)' };
      }
      const versions = Array.isArray(answer.value.versions) ? answer.value.versions : [];
      return { status: 'ok', detail: `${d.config.homeserver.url} answers (client-server API up to ${versions.at(-1) ?? 'unknown'})` };
    },
  };
}

export function registrationCheck(d: DoctorDeps): DoctorCheck {
  return {
    title: 'Registration loaded by Synapse',
    needsHomeserver: true,
    async run() {
      const who = await d.client.whoami();
      if (!who.ok) {
        if (who.error.errcode === 'M_UNKNOWN_TOKEN' || who.error.status === 401) {
          return { status: 'fail', detail: 'Synapse does not know the as_token of the registration file Steward uses', fix: 'list that exact file under app_service_config_files in homeserver.yaml and restart Synapse (a regenerated registration has new tokens)' };
        }
        return { status: 'fail', detail: `whoami with the as_token failed: ${who.error.human}` };
      }
      if (who.value.user_id !== d.botUserId) {
        return { status: 'fail', detail: `the as_token belongs to ${who.value.user_id}, not ${d.botUserId}`, fix: 'sender_localpart of the registration and appservice.bot_localpart must agree' };
      }
      const mismatches: string[] = [];
      const { appservice } = d.config;
      if (d.registration.id !== appservice.id) mismatches.push(`id is ${d.registration.id}, appservice.id is ${appservice.id}`);
      if (d.registration.senderLocalpart !== appservice.botLocalpart) mismatches.push(`sender_localpart is ${d.registration.senderLocalpart}, appservice.bot_localpart is ${appservice.botLocalpart}`);
      if (d.registration.url.replace(/\/+$/, '') !== appservice.url.replace(/\/+$/, '')) mismatches.push(`url is ${d.registration.url}, appservice.url is ${appservice.url}`);
      if (mismatches.length) {
        return { status: 'warn', detail: `loaded, but the file and the config disagree: ${mismatches.join('; ')}`, fix: 'run generate-registration again with this config and restart Synapse, or align the config with the file' };
      }
      return { status: 'ok', detail: `loaded: the as_token is ${d.botUserId}'s; id, url and sender_localpart match the config` };
    },
  };
}

export function adminApiCheck(d: DoctorDeps): DoctorCheck {
  return {
    title: 'Admin API rights',
    needsHomeserver: true,
    async run(signal) {
      const tokenFile = d.config.homeserver.adminTokenFile;
      // The terminal's doctor runs before (instead of) the start-up steps that load the admin token.
      const delegation = await detectAuthDelegation(d.http);
      const mas = delegation.delegated === true;
      if (tokenFile !== undefined && !d.http.hasAdminToken) {
        const token = await readAdminToken(tokenFile, d.log);
        if (!token.ok) {
          const fix = delegation.delegated === false
            ? `put a current access token of a Synapse admin, alone on one line, in ${tokenFile} (umask 077), or unset homeserver.admin_token_file and make ${d.botUserId} an admin`
            : issueTokenSteps(d.registration.senderLocalpart, tokenFile).trim();
          return { status: 'fail', detail: token.error.human, fix };
        }
        d.http.setAdminToken(token.value);
      }
      const using = tokenFile !== undefined ? `the admin token of ${tokenFile}` : 'the appservice token';
      if (mas && tokenFile === undefined) {
        return { status: 'fail', detail: `Synapse delegates authentication to MAS${delegation.issuer ? ` (${delegation.issuer})` : ''}: the appservice token can never use the admin API`, fix: `give Steward an admin-scoped token: ${issueTokenSteps(d.registration.senderLocalpart, undefined).trim()}` };
      }
      const self = await d.admin.user(d.botUserId, { signal });
      if (!self.ok) {
        if (self.error.status === 401 || self.error.status === 403) {
          if (tokenFile !== undefined && delegation.delegated === false) {
            const problem = plainAdminTokenProblem(self.error, tokenFile);
            return { status: 'fail', detail: problem.human, fix: problem.fix };
          }
          if (tokenFile !== undefined) {
            return { status: 'fail', detail: `${using} is refused by the admin API (${self.error.status} ${self.error.errcode ?? ''})${mas ? ': under MAS it needs the scope urn:synapse:admin:*' : ''}`.trim(), fix: issueTokenSteps(d.registration.senderLocalpart, tokenFile).trim() };
          }
          return {
            status: 'fail',
            detail: `${d.botUserId} cannot use the Synapse admin API (${self.error.status} ${self.error.errcode ?? ''})`.trim(),
            fix: `make it an admin: curl -X PUT -H "Authorization: Bearer <an admin's token>" -d '{"admin": true}' '${d.config.homeserver.url}${path`/_synapse/admin/v2/users/${d.botUserId}`}'`,
          };
        }
        return { status: 'fail', detail: `the admin API did not answer: ${self.error.human}` };
      }
      const version = await d.admin.serverVersion({ signal });
      return { status: 'ok', detail: `the admin API answers ${using}${mas ? ' under MAS (delegated authentication)' : ''}${version.ok ? ` (Synapse ${version.value.server_version})` : ''}` };
    },
  };
}

/** Synapse → Steward: the homeserver calls our registration URL with the hs_token. */
export function pingCheck(d: DoctorDeps): DoctorCheck {
  return {
    title: 'Synapse reaches Steward (ping)',
    needsHomeserver: true,
    timeoutMs: 40_000,
    async run() {
      const ping = await d.client.ping(d.registration.id);
      if (ping.ok) return { status: 'ok', detail: `Synapse called ${d.registration.url} with the hs_token in ${ping.value.duration_ms} ms` };
      const code = ping.error.errcode ?? ping.error.code;
      if (code === 'M_CONNECTION_FAILED' || code === 'M_CONNECTION_TIMEOUT') {
        return {
          status: d.selfTest ? 'fail' : 'warn',
          detail: `Synapse cannot connect to ${d.registration.url} (${code})${d.selfTest ? '' : ': is `steward run` running?'}`,
          fix: 'start `steward run`; the registration url must be reachable from Synapse (in a container, bind_address 0.0.0.0 and a url Synapse can resolve)',
        };
      }
      if (code === 'M_BAD_STATUS') {
        return { status: 'fail', detail: `Steward at ${d.registration.url} refused Synapse's call (${ping.error.human})`, fix: 'Synapse and Steward use different registration files (hs_token differs): load the same file in both and restart Synapse' };
      }
      return { status: 'fail', detail: `the ping failed: ${ping.error.human}` };
    },
  };
}

export function deliveryCheck(d: DoctorDeps): DoctorCheck {
  const selfTest = d.selfTest;
  if (selfTest) return { title: 'Transactions and ephemeral events', timeoutMs: 40_000, needsHomeserver: true, run: (signal) => selfTest.run(signal) };
  return {
    title: 'Ephemeral events (read receipts) reach Steward',
    async run() {
      // loadRegistration refuses a file without it, so this always holds here; say what the terminal cannot see.
      return { status: 'ok', detail: 'the registration asks for them (receive_ephemeral); the terminal cannot see deliveries: !doctor in the admin room sends a test event and receipt through the running service' };
    },
  };
}

export function signingKeyCheck(d: DoctorDeps): DoctorCheck {
  return {
    title: 'Signing key',
    async run(signal) {
      if (d.config.federation.signingKeyPath === undefined) {
        return { status: 'warn', detail: 'federation.signing_key_path is not set: !fed, !dump rooms and !rejoin cannot run', fix: 'set federation.signing_key_path to Synapse\'s signing_key_path (readable by Steward only)' };
      }
      const settings = await loadFederationSettings(d.config);
      if (!settings.ok) return { status: 'fail', detail: settings.error.human, fix: 'point federation.signing_key_path at Synapse\'s signing key file' };
      const own = settings.value.settings.signingKey;
      const access = await d.federation.get();
      if (!access.ok) return { status: 'fail', detail: access.error.human };
      const serverName = d.config.homeserver.serverName;
      const answer = await access.value.client.request<unknown>(serverName, 'GET', '/_matrix/key/v2/server', { authenticate: false, timeoutMs: 10_000, signal, retry: false });
      if (!answer.ok) return { status: 'fail', detail: `${serverName} does not serve its keys over federation: ${answer.error.human}`, fix: 'check the federation listener (port 8448 or .well-known) and federation.address_allowlist / ca_file' };
      const keys = isJsonObject(answer.value) ? answer.value['verify_keys'] : undefined;
      const published = isJsonObject(keys) ? keys[own.keyId] : undefined;
      const publishedKey = isJsonObject(published) ? published['key'] : undefined;
      const mine = encodeBase64(own.publicKey);
      if (publishedKey === mine) return { status: 'ok', detail: `${serverName} publishes ${own.keyId} with the public key of federation.signing_key_path` };
      const listed = isJsonObject(keys) ? Object.keys(keys).join(', ') : 'none';
      return {
        status: 'fail',
        detail: publishedKey === undefined
          ? `${serverName} does not publish ${own.keyId} (it publishes: ${listed}); requests Steward signs will be refused`
          : `${serverName} publishes ${own.keyId} with another public key than the file has`,
        fix: 'set federation.signing_key_path to the signing_key_path of this Synapse (homeserver.yaml)',
      };
    },
  };
}

export function notaryCheck(d: DoctorDeps): DoctorCheck {
  return {
    title: 'Key notary',
    async run(signal) {
      const serverName = d.config.homeserver.serverName;
      const notary = d.config.federation.notary ?? serverName;
      const which = d.config.federation.notary ? `the notary ${notary}` : `our own server ${notary} (no federation.notary configured)`;
      if (d.config.federation.signingKeyPath === undefined) return { status: 'warn', detail: `not checked: federation is off (federation.signing_key_path is not set)` };
      const settings = await loadFederationSettings(d.config);
      if (!settings.ok) return { status: 'warn', detail: `not checked: ${settings.error.human}` };
      const access = await d.federation.get();
      if (!access.ok) return { status: 'fail', detail: access.error.human };
      // A named key id: with none, Synapse answers only from its cache and never fetches.
      const answer = await access.value.client.request<unknown>(notary, 'POST', '/_matrix/key/v2/query', {
        body: { server_keys: { [serverName]: { [settings.value.settings.signingKey.keyId]: { minimum_valid_until_ts: Date.now() } } } }, authenticate: false, timeoutMs: 10_000, signal, retry: false,
      });
      if (!answer.ok) return { status: 'fail', detail: `${which} does not answer /_matrix/key/v2/query: ${answer.error.human}`, fix: 'set federation.notary to a notary that is reachable (e.g. matrix.org), or fix federation to it' };
      const entries = isJsonObject(answer.value) ? answer.value['server_keys'] : undefined;
      const found = Array.isArray(entries) && entries.some((e) => isJsonObject(e) && e['server_name'] === serverName);
      if (!found) return { status: 'warn', detail: `${which} answers but has no keys of ${serverName}` };
      return { status: 'ok', detail: `${which} answers key queries: keys of servers that are down can be fetched there` };
    },
  };
}

export function rateLimitCheck(d: DoctorDeps): DoctorCheck {
  return {
    title: 'Rate limits',
    needsHomeserver: true,
    async run(signal) {
      const override = await d.http.request<{ messages_per_second?: number; burst_count?: number }>('GET', path`/_synapse/admin/v1/users/${d.botUserId}/override_ratelimit`, { signal });
      const overridden = override.ok && override.value.messages_per_second === 0 && override.value.burst_count === 0;
      if (d.registration.rateLimited === false) {
        return { status: 'ok', detail: `rate_limited: false in the registration exempts the bot and the users it acts as${overridden ? '; the bot also has an override' : ''}` };
      }
      const fix = `set rate_limited: false in the registration and restart Synapse (exempts the users Steward acts as, which !rejoin needs), or for the bot alone: curl -X POST -H "Authorization: Bearer <admin token>" -d '{"messages_per_second": 0, "burst_count": 0}' '${d.config.homeserver.url}${path`/_synapse/admin/v1/users/${d.botUserId}/override_ratelimit`}'`;
      if (overridden) return { status: 'warn', detail: 'the bot has a rate-limit override, but the registration is rate limited: joins as users during !rejoin are limited', fix };
      return { status: 'warn', detail: 'the bot is rate limited (the registration has no rate_limited: false and the bot has no override)', fix };
    },
  };
}

export function redactionRetentionCheck(d: DoctorDeps): DoctorCheck {
  return {
    title: 'redaction_retention_period',
    async run() {
      const file = d.config.homeserver.synapseConfig;
      if (file === undefined) return { status: 'warn', detail: 'not checked: homeserver.synapse_config is not set', fix: 'set homeserver.synapse_config to Synapse\'s homeserver.yaml if Steward may read it' };
      const read = readRedactionRetention(file);
      if (!read.ok) return { status: 'warn', detail: read.error.human, fix: 'give Steward read access to homeserver.synapse_config, or unset it' };
      if (read.value.periodMs === null) return { status: 'ok', detail: 'null: Synapse keeps the original content of redacted events forever (an archive may keep it too)' };
      return { status: 'ok', detail: `${duration(read.value.periodMs)}: Synapse purges the original content of redacted events after that; an archive taken later no longer sees it` };
    },
  };
}

export function freeSpaceCheck(d: DoctorDeps): DoctorCheck {
  return {
    title: 'Free space for dumps',
    async run() {
      const target = d.config.storage.dumps;
      // The folder is created on first use: measure the nearest existing parent.
      let dir = target;
      for (;;) {
        try {
          await stat(dir);
          break;
        } catch {
          const up = dirname(dir);
          if (up === dir) break;
          dir = up;
        }
      }
      try {
        await access(dir, constants.W_OK);
      } catch {
        return { status: 'fail', detail: `${dir} is not writable by Steward`, fix: 'make storage.dumps writable by the user Steward runs as' };
      }
      const fs = await statfs(dir);
      return freeSpaceVerdict(fs.bavail * fs.bsize, fs.blocks * fs.bsize, target, dir);
    },
  };
}

/** The verdict on `free` of `total` bytes where dumps go (`dir`: the existing parent measured). */
export function freeSpaceVerdict(free: number, total: number, target: string, dir: string): CheckOutcome {
  const detail = `${bytes(free)} free of ${bytes(total)} at ${target}${dir !== target ? ` (created on first dump; measured at ${dir})` : ''}`;
  if (free < FREE_SPACE_FAIL_BYTES) return { status: 'fail', detail, fix: 'free space or point storage.dumps (or --out) at a larger disk' };
  if (free < FREE_SPACE_WARN_BYTES || free < total * 0.05) return { status: 'warn', detail, fix: 'a dump of a large server needs several GiB: free space or move storage.dumps' };
  return { status: 'ok', detail };
}

/** One line per configured source: readable, and (as far as this front end can tell) producing lines. */
export function logSourcesCheck(d: DoctorDeps): DoctorCheck {
  return {
    title: 'Log sources',
    async run(): Promise<CheckResult[]> {
      const sources = d.config.recovery.logSources;
      if (sources.length === 0) {
        return [{ title: 'Log sources', status: 'warn', detail: 'none configured: lost rooms after a database restore are not detected', fix: 'add Synapse\'s log under recovery.log_sources (a file, journalctl -f or docker logs -f)' }];
      }
      const statuses = new Map(d.logSources.statuses().map((s) => [s.source, s]));
      const live = d.selfTest !== undefined;
      return Promise.all(sources.map(async (source): Promise<CheckResult> => {
        const name = sourceName(source);
        const title = `Log source ${name}`;
        const saved = statuses.get(name);
        const savedNote = saved ? `; the service reports ${saved.status}, ${saved.lines} lines (${saved.unparsed} unparsed)` : '';
        const outcome = async (): Promise<CheckOutcome> => {
          if (source.kind === 'file') {
            try {
              await access(source.path, constants.R_OK);
            } catch (err) {
              const code = (err as NodeJS.ErrnoException).code;
              return { status: 'fail', detail: `${source.path} is not readable (${code})`, fix: 'give Steward read access (e.g. the adm group) or fix the path' };
            }
            const info = await stat(source.path);
            const age = Date.now() - info.mtimeMs;
            if (live && saved) {
              if (saved.status !== 'following') return { status: 'fail', detail: `${saved.status}: ${saved.detail ?? ''}`.trim() };
              if (saved.lines === 0 && age > STALE_LOG_MS) return { status: 'warn', detail: `followed, but no line since Steward started; the file was last written ${duration(age)} ago`, fix: 'is Synapse logging to this file (log_config)?' };
              return { status: 'ok', detail: `followed, ${saved.lines} lines read (${saved.unparsed} unparsed)` };
            }
            if (age > STALE_LOG_MS) return { status: 'warn', detail: `readable, but last written ${duration(age)} ago${savedNote}`, fix: 'is Synapse logging to this file (log_config)?' };
            return { status: 'ok', detail: `readable, last written ${duration(age)} ago${savedNote}` };
          }
          if (!saved) return { status: 'warn', detail: live ? 'not started yet' : 'the terminal does not run commands or read stdin: no report from a running service yet', fix: 'run !doctor in the admin room for the live state' };
          if (saved.status !== 'following') return { status: 'fail', detail: `${saved.status}: ${saved.detail ?? ''}`.trim(), fix: 'check the command runs as the user Steward runs as' };
          if (saved.lines === 0) return { status: 'warn', detail: `following, but no line yet (as of ${new Date(saved.updatedTs).toISOString()})` };
          return { status: 'ok', detail: `following, ${saved.lines} lines read (${saved.unparsed} unparsed) as of ${new Date(saved.updatedTs).toISOString()}` };
        };
        return { title, ...(await outcome()) };
      }));
    },
  };
}

/** Every check but the homeserver's reachability, which the doctor runs first. */
export function allChecks(d: DoctorDeps): DoctorCheck[] {
  return [
    registrationCheck(d),
    adminApiCheck(d),
    pingCheck(d),
    deliveryCheck(d),
    signingKeyCheck(d),
    notaryCheck(d),
    rateLimitCheck(d),
    logSourcesCheck(d),
    redactionRetentionCheck(d),
    freeSpaceCheck(d),
  ];
}
