import { readFileSync } from 'node:fs';
import yaml from 'js-yaml';
import { fail, ok, type Result } from '../util/result.ts';

/** Synapse's default (synapse/config/server.py). */
export const SYNAPSE_DEFAULT_REDACTION_RETENTION_MS = 7 * 24 * 3600_000;

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3600_000, d: 86_400_000, w: 7 * 86_400_000, y: 365 * 86_400_000 };

/**
 * Synapse's duration syntax (`Config.parse_duration`): an integer is milliseconds; a string is an
 * integer with an optional suffix s, m, h, d, w or y (no suffix: milliseconds). Anything else
 * (floats, booleans, other suffixes) is an error in Synapse too.
 */
export function parseSynapseDuration(value: unknown): Result<number> {
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) ? ok(value) : fail('E_BAD_DURATION', `${value} is not a whole number of milliseconds`);
  }
  if (typeof value !== 'string' || value.length === 0) return fail('E_BAD_DURATION', `expected a duration such as 7d, got ${JSON.stringify(value)}`);
  const suffix = value.at(-1)!;
  const unit = UNIT_MS[suffix];
  const digits = unit === undefined ? value : value.slice(0, -1);
  if (unit === undefined && !/\d/.test(suffix)) return fail('E_BAD_DURATION', `bad duration suffix in ${JSON.stringify(value)} (expected none or one of s, m, h, d, w, y)`);
  // Python's int(): surrounding whitespace, a sign and digit-group underscores are allowed.
  if (!/^\s*[+-]?\d+(_\d+)*\s*$/.test(digits)) return fail('E_BAD_DURATION', `${JSON.stringify(value)} is not a duration`);
  const n = Number(digits.replace(/_/g, '').trim()) * (unit ?? 1);
  return Number.isSafeInteger(n) ? ok(n) : fail('E_BAD_DURATION', `${JSON.stringify(value)} is too large`);
}

/**
 * `redaction_retention_period` of a Synapse homeserver.yaml: how long Synapse keeps the original
 * content of redacted events (`periodMs`), `null` meaning forever. Absent means Synapse's default,
 * 7 days. Only this one file is read: settings in other files given to Synapse with `-c` are not seen.
 */
export function readRedactionRetention(path: string): Result<{ periodMs: number | null }> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'it does not exist' : code === 'EACCES' ? 'permission denied (Synapse keeps it private; give Steward read access or leave homeserver.synapse_config unset)' : code ?? String(err);
    return fail('E_SYNAPSE_CONFIG', `Cannot read Synapse's config ${path}: ${why}.`);
  }
  let raw: unknown;
  try {
    raw = yaml.load(text, { filename: path });
  } catch (err) {
    return fail('E_SYNAPSE_CONFIG', `Synapse's config ${path} is not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (raw === undefined || raw === null) return ok({ periodMs: SYNAPSE_DEFAULT_REDACTION_RETENTION_MS });
  if (typeof raw !== 'object' || Array.isArray(raw)) return fail('E_SYNAPSE_CONFIG', `Synapse's config ${path} is not a mapping.`);
  const config = raw as Record<string, unknown>;
  if (!('redaction_retention_period' in config)) return ok({ periodMs: SYNAPSE_DEFAULT_REDACTION_RETENTION_MS });
  const value = config.redaction_retention_period;
  if (value === null) return ok({ periodMs: null });
  const parsed = parseSynapseDuration(value);
  if (!parsed.ok) return fail('E_SYNAPSE_CONFIG', `redaction_retention_period in ${path}: ${parsed.error.human}`);
  return ok({ periodMs: parsed.value });
}
