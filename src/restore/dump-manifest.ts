import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DUMP_MANIFEST_FORMAT } from '../dump/dump-users.ts';
import { isJsonObject, type JsonObject } from '../federation/json-object.ts';
import { errorMessage, fail, ok, type Result } from '../util/result.ts';

/** Why a document's `format` is not the one this Steward reads, or null when it is. */
export function formatProblem(found: unknown, expected: string, what: string): string | null {
  if (found === expected) return null;
  const family = expected.slice(0, expected.lastIndexOf('/') + 1);
  if (typeof found === 'string' && found.startsWith(family)) {
    return `${what} has format ${found}, a version this Steward does not know (it reads ${expected}); restore with a Steward that knows it.`;
  }
  return `${what} is not a Steward ${expected} document (format: ${JSON.stringify(found ?? null).slice(0, 60)}).`;
}

/**
 * The checks every restore makes of a dump's manifest before anything else: it reads as JSON, is a
 * manifest this Steward knows, is a dump of `kind`, of this server, and finished. `serverReason`
 * says why only the server's own dump will do.
 */
export async function readDumpManifest(dir: string, kind: 'users' | 'rooms', serverName: string, serverReason: string): Promise<Result<JsonObject>> {
  let text: string;
  try {
    text = await readFile(join(dir, 'manifest.json'), 'utf8');
  } catch (err) {
    return fail('E_DUMP_MISSING', `${dir} is not a dump folder: cannot read its manifest.json (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}). Give the folder that dump ${kind} wrote (…/${kind}-<time>-job<n>).`);
  }
  let manifest: unknown;
  try {
    manifest = JSON.parse(text);
  } catch (err) {
    return fail('E_DUMP_PARSE', `${dir}/manifest.json is not valid JSON (truncated or edited?): ${errorMessage(err)}`);
  }
  if (!isJsonObject(manifest)) return fail('E_DUMP_PARSE', `${dir}/manifest.json does not hold a JSON object.`);
  const problem = formatProblem(manifest.format, DUMP_MANIFEST_FORMAT, 'The manifest');
  if (problem) return fail('E_DUMP_FORMAT', problem);
  if (manifest.kind !== kind) return fail('E_DUMP_KIND', `${dir} is a dump of ${JSON.stringify(manifest.kind)}, not of ${kind}: restore ${kind} needs a folder written by dump ${kind}.`);
  if (manifest.server_name !== serverName) {
    return fail('E_DUMP_SERVER', `This dump is of the server ${JSON.stringify(manifest.server_name)}, not of ${serverName}: restore ${kind} only restores a server's own dump (${serverReason}).`);
  }
  if (manifest.state !== 'complete') return fail('E_DUMP_INCOMPLETE', `The dump in ${dir} did not finish (state ${JSON.stringify(manifest.state)}): resume it with the same dump command, or restore from a finished one.`);
  return ok(manifest);
}
