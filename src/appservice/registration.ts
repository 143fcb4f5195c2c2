import { readFile } from 'node:fs/promises';
import yaml from 'js-yaml';
import type { StewardConfig } from '../config/config.ts';
import { writeFileAtomic } from '../util/atomic-write.ts';
import { fail, ok, type Result } from '../util/result.ts';

export interface Registration {
  readonly id: string;
  readonly url: string;
  readonly asToken: string;
  readonly hsToken: string;
  readonly senderLocalpart: string;
  /** `rate_limited` as written (absent: Synapse's default, limited). Read by the doctor. */
  readonly rateLimited?: boolean;
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * The registration Synapse loads: an exclusive namespace for the bot's own user and a
 * non-exclusive one over every local user, which is what lets Steward act as them (and a
 * non-exclusive one over local aliases, which lets it set them).
 */
export async function buildRegistration(config: StewardConfig): Promise<Record<string, unknown>> {
  const { AppServiceRegistration } = await import('matrix-appservice-bridge');
  const server = escapeRegex(config.homeserver.serverName);
  const reg = new AppServiceRegistration(config.appservice.url);
  reg.setId(config.appservice.id);
  reg.setHomeserverToken(AppServiceRegistration.generateToken());
  reg.setAppServiceToken(AppServiceRegistration.generateToken());
  reg.setSenderLocalpart(config.appservice.botLocalpart);
  reg.addRegexPattern('users', `@${escapeRegex(config.appservice.botLocalpart)}:${server}$`, true);
  reg.addRegexPattern('users', `@.*:${server}$`, false);
  // Synapse lets an appservice create only aliases in its namespace, even acting as a user:
  // restore rooms moves a lost room's aliases to the room that replaces it.
  reg.addRegexPattern('aliases', `#.*:${server}$`, false);
  reg.setRateLimited(false);
  return {
    ...reg.getOutput(),
    // Stable flag and its legacy twin, so receipts arrive on older and newer Synapse alike.
    receive_ephemeral: true,
    'de.sorunome.msc2409.push_ephemeral': true,
  };
}

export async function writeRegistration(config: StewardConfig, file: string): Promise<void> {
  const registration = await buildRegistration(config);
  await writeFileAtomic(file, yaml.dump(registration, { lineWidth: -1 }), 0o600);
}

export async function loadRegistration(file: string): Promise<Result<Registration>> {
  let raw: unknown;
  try {
    raw = yaml.load(await readFile(file, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return fail('E_BAD_REGISTRATION', `Cannot read the registration file ${file}: ${code === 'ENOENT' ? 'it does not exist (create it with `steward generate-registration`)' : (err as Error).message}`);
  }
  const r = raw as Record<string, unknown> | null;
  const problems: string[] = [];
  const str = (key: string): string => {
    const v = r?.[key];
    if (typeof v !== 'string' || v.length === 0) problems.push(`${key}: required, expected a non-empty string`);
    return typeof v === 'string' ? v : '';
  };
  const registration = { id: str('id'), url: str('url'), asToken: str('as_token'), hsToken: str('hs_token'), senderLocalpart: str('sender_localpart'), rateLimited: r?.rate_limited !== false };
  if (r && r.receive_ephemeral !== true && r['de.sorunome.msc2409.push_ephemeral'] !== true) {
    problems.push('receive_ephemeral: must be true, or read receipts never reach Steward');
  }
  if (problems.length > 0) return fail('E_BAD_REGISTRATION', `The registration file ${file} has problems:\n- ${problems.join('\n- ')}`);
  return ok(registration);
}
