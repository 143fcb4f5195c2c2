// Admin API credentials on servers that delegate authentication to the Matrix Authentication
// Service (MAS). Under MAS, Synapse asks MAS to introspect every token except the appservice's,
// and gives appservice requests an empty scope: the as_token can still assert identities, but
// every admin API call with it is refused (403), whether or not the bot is an admin in Synapse's
// database. Admin calls then need a token MAS issued with the scope `urn:synapse:admin:*`.
import { readFile, stat } from 'node:fs/promises';
import type { HomeserverHttp, HttpFailure } from '../homeserver/http.ts';
import type { Logger } from '../log.ts';
import { fail, ok, type Result } from '../util/result.ts';

export const ADMIN_SCOPE = 'urn:synapse:admin:*';

export interface AuthDelegation {
  /** true: Synapse delegates auth (MAS); false: Synapse checks tokens itself; undefined: cannot tell. */
  readonly delegated: boolean | undefined;
  /** The OAuth issuer Synapse advertises, when delegated. */
  readonly issuer: string | undefined;
  /** Why `delegated` is what it is, for the log. */
  readonly detail: string;
}

/**
 * Whether Synapse delegates auth, from `GET /_matrix/client/v1/auth_metadata` (MSC2965, in the
 * spec since v1.15). Synapse registers that servlet only when `matrix_authentication_service` is
 * enabled (rest/client/auth_metadata.py) and answers it with MAS's discovery document, so:
 * 200 with an `issuer` → delegated; 404/405 (M_UNRECOGNIZED, the path is unknown) → not
 * delegated. A 5xx means the servlet exists but Synapse could not fetch MAS's metadata: still
 * delegated. This is a signal Synapse gives on purpose to clients; the alternatives are weaker
 * (the admin API's 403 looks the same as a bot that is not an admin; `/login` flows are gone
 * under MAS but also absent behind some proxies). No retries: a start-up check should answer fast.
 */
export async function detectAuthDelegation(http: HomeserverHttp): Promise<AuthDelegation> {
  const answer = await http.request<{ issuer?: unknown }>('GET', '/_matrix/client/v1/auth_metadata', { idempotent: false });
  if (answer.ok) {
    const issuer = typeof answer.value.issuer === 'string' ? answer.value.issuer : undefined;
    return issuer
      ? { delegated: true, issuer, detail: `auth_metadata names the issuer ${issuer}` }
      : { delegated: undefined, issuer: undefined, detail: 'auth_metadata answered without an issuer' };
  }
  const { status } = answer.error;
  if (status === 404 || status === 405 || answer.error.errcode === 'M_UNRECOGNIZED') {
    return { delegated: false, issuer: undefined, detail: `auth_metadata is not served (${status})` };
  }
  if (status >= 500) return { delegated: true, issuer: undefined, detail: `auth_metadata is served but failed (${answer.error.log}); Synapse cannot read MAS's metadata` };
  return { delegated: undefined, issuer: undefined, detail: `auth_metadata: ${answer.error.log}` };
}

/**
 * Reads the admin token file: one line, nothing else. Warns (never logs the token) when the file
 * can be read by group or others.
 */
export async function readAdminToken(file: string, log: Logger): Promise<Result<string>> {
  let text: string;
  try {
    const info = await stat(file);
    if (!info.isFile()) return fail('E_ADMIN_TOKEN', `homeserver.admin_token_file: ${file} is not a file`);
    if ((info.mode & 0o077) !== 0) {
      log.warn({ file, mode: (info.mode & 0o777).toString(8) }, 'the admin token file is readable by group or others; chmod 600 it');
    }
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'it does not exist'
      : code === 'EACCES' || code === 'EPERM' ? `permission denied (Steward runs as uid ${process.getuid?.() ?? '?'}; the file must be readable by that user only)`
      : code ?? String(err);
    return fail('E_ADMIN_TOKEN', `homeserver.admin_token_file: cannot read ${file}: ${why}`);
  }
  const token = text.trim();
  if (!token) return fail('E_ADMIN_TOKEN', `homeserver.admin_token_file: ${file} is empty; it must hold the admin token on one line`);
  if (!/^[\x21-\x7e]+$/.test(token)) {
    return fail('E_ADMIN_TOKEN', `homeserver.admin_token_file: ${file} must hold exactly one token on one line (printable characters, no spaces)`);
  }
  return ok(token);
}

/** The steps to issue an admin-scoped token under MAS and hand it to Steward. */
export function issueTokenSteps(botLocalpart: string, tokenFile: string | undefined): string {
  const file = tokenFile ?? '/etc/steward/admin-token';
  return [
    `  1. On the MAS host: mas-cli manage issue-compatibility-token --yes-i-want-to-grant-synapse-admin-privileges ${botLocalpart}`,
    `     (for a user MAS knows; the bot's localpart is the natural choice, any MAS user of yours works: Steward uses the token for /_synapse/admin/ calls only)`,
    `  2. Put the token it prints, alone on one line, in a file only Steward can read: umask 077; printf '%s\\n' '<token>' > ${file}`,
    `  3. In Steward's config: homeserver: { admin_token_file: ${file} } (relative paths are relative to the config file), then start Steward again.`,
  ].join('\n');
}

/** Start-up stops here: Synapse delegates auth and no admin token is configured. */
export function adminTokenNeeded(delegation: AuthDelegation, botLocalpart: string): Result<never> {
  return fail('E_ADMIN_TOKEN_NEEDED', [
    `Synapse delegates authentication to MAS${delegation.issuer ? ` (${delegation.issuer})` : ''}. Under MAS the appservice token has no admin scope, so every admin API call Steward makes would be refused. Steward needs a token with the scope ${ADMIN_SCOPE}:`,
    issueTokenSteps(botLocalpart, undefined),
  ].join('\n'), `auth delegated (${delegation.detail}) and homeserver.admin_token_file is not set`);
}

/** The admin API refused the admin token (401/403) on a server that delegates auth. */
export function adminTokenRefused(error: HttpFailure, tokenFile: string, botLocalpart: string): Result<never> {
  const why = error.status === 403
    ? `is valid but does not carry Synapse's admin scope (${ADMIN_SCOPE})`
    : 'is not accepted: MAS says it is not active (revoked, expired, unknown to this MAS) or it lacks the Matrix client API scope';
  return fail('E_ADMIN_TOKEN', [
    `The token in ${tokenFile} ${why}. Synapse answered: ${error.human}. Issue a new one with admin privileges:`,
    issueTokenSteps(botLocalpart, tokenFile),
  ].join('\n'), error.log);
}

/**
 * The admin API refused the admin token on a server that checks tokens itself (no MAS): 401 means
 * Synapse does not know the token at all, 403 that its user is not a server admin.
 */
export function plainAdminTokenProblem(error: HttpFailure, tokenFile: string): { human: string; fix: string } {
  const fix = `put a current access token of a Synapse admin, alone on one line, in ${tokenFile} (umask 077), or make its user an admin: UPDATE users SET admin = 1 WHERE name = '<user id>';`;
  if (error.status === 401) {
    return { human: `Synapse does not accept the token in ${tokenFile} (${error.human}): it is unknown to this server, expired, or its device was logged out.`, fix };
  }
  return { human: `The token in ${tokenFile} belongs to a user who is not a Synapse admin (${error.human}).`, fix };
}

export function plainAdminTokenRefused(error: HttpFailure, tokenFile: string): Result<never> {
  const problem = plainAdminTokenProblem(error, tokenFile);
  return fail('E_ADMIN_TOKEN', `${problem.human} Then start Steward again: ${problem.fix}`, error.log);
}
