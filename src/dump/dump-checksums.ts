import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';

export const CHECKSUM_ALGORITHM = 'sha256';

export async function fileSha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * The sha256 of every finished file of a dump section (`rooms`, `users`), keyed `<section>/<name>`:
 * written into the manifest, so that a reader can tell a truncated or edited file from a whole one.
 */
export async function sectionChecksums(root: string, section: string): Promise<Record<string, string>> {
  const names = (await readdir(join(root, section)).catch(() => [] as string[])).filter((n) => n.endsWith('.json') && !n.startsWith('.')).sort();
  const out: Record<string, string> = {};
  for (const name of names) out[`${section}/${name}`] = await fileSha256(join(root, section, name));
  return out;
}
