import { readFile } from 'node:fs/promises';
import yaml from 'js-yaml';
import { errorMessage } from '../util/result.ts';

/** Synapse's redaction_retention_period as far as Steward can tell. */
export type Retention =
  | { readonly kind: 'forever' }
  | { readonly kind: 'period'; readonly ms: number; readonly source: string }
  | { readonly kind: 'unknown'; readonly why: string };

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000, y: 31_536_000_000 };

/** Synapse's parse_duration: an integer is milliseconds; a string is digits with an optional s/m/h/d/w/y suffix. */
export function parseSynapseDuration(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  if (typeof value !== 'string') return undefined;
  const m = /^(\d+)([smhdwy]?)$/.exec(value.trim());
  if (!m) return undefined;
  return Number(m[1]) * (m[2] ? UNITS[m[2]]! : 1);
}

/** Reads redaction_retention_period from Synapse's homeserver.yaml (its default is 7d). */
export async function readRetention(synapseConfig: string | undefined): Promise<Retention> {
  if (synapseConfig === undefined) return { kind: 'unknown', why: 'archive.synapse_config is not set' };
  let raw: unknown;
  try {
    raw = yaml.load(await readFile(synapseConfig, 'utf8'));
  } catch (err) {
    return { kind: 'unknown', why: `cannot read ${synapseConfig}: ${errorMessage(err)}` };
  }
  const config = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
  if (!Object.hasOwn(config, 'redaction_retention_period')) return { kind: 'period', ms: 7 * 86_400_000, source: `${synapseConfig} (not set: Synapse's default)` };
  const value = config.redaction_retention_period;
  if (value === null) return { kind: 'forever' };
  const ms = parseSynapseDuration(value);
  if (ms === undefined) return { kind: 'unknown', why: `${synapseConfig} has redaction_retention_period ${JSON.stringify(value)}, which Steward cannot read` };
  return { kind: 'period', ms, source: synapseConfig };
}

/** What the admin should know once; undefined when nothing will be lost. */
export function retentionNote(r: Retention): string | undefined {
  const consequence = 'Synapse then censors the redacted event in its database, so an event redacted before the archive read it keeps only its stripped copy (marked original_missing: "purged"). Archive at least that often, or set redaction_retention_period: null in homeserver.yaml to keep originals.';
  if (r.kind === 'forever') return undefined;
  if (r.kind === 'period') return `Redacted events: Synapse keeps their original content for ${humanDuration(r.ms)} after the redaction (redaction_retention_period, from ${r.source}). ${consequence}`;
  return `Redacted events: Steward cannot tell how long Synapse keeps their original content (${r.why}). Check with: grep redaction_retention_period homeserver.yaml — absent means 7 days, null means forever. After that period ${consequence.charAt(0).toLowerCase()}${consequence.slice(1)} Set archive.synapse_config to homeserver.yaml to let Steward read it.`;
}

function humanDuration(ms: number): string {
  for (const [unit, size] of [['year', UNITS.y!], ['week', UNITS.w!], ['day', UNITS.d!], ['hour', UNITS.h!], ['minute', UNITS.m!], ['second', UNITS.s!]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size} ${unit}${ms / size === 1 ? '' : 's'}`;
  }
  return `${ms} ms`;
}
