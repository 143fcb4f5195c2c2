import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { path, type HomeserverHttp } from '../../homeserver/http.ts';
import type { Logger } from '../../log.ts';
import { errorMessage, fail, ok, type Result } from '../../util/result.ts';
import { parseMxc } from './event-facts.ts';

/** One downloaded mxc, as media/index.jsonl records it (the index's media table is rebuilt from it). */
export interface MediaRecord {
  readonly mxc: string;
  readonly sha256: string;
  readonly size: number;
  readonly media_type: string | null;
  readonly upload_name: string | null;
  /** An encrypted attachment: the file holds the ciphertext the server stored. */
  readonly encrypted: boolean;
}

export interface MediaStoreOptions {
  readonly http: HomeserverHttp;
  /** `<out>/media` */
  readonly root: string;
  readonly maxBytes: number;
  readonly log: Logger;
}

export const DEFAULT_MEDIA_MAX_BYTES = 100 * 1024 * 1024;

interface AdminMediaInfo {
  readonly media_type?: unknown;
  readonly media_length?: unknown;
  readonly upload_name?: unknown;
  readonly sha256?: unknown;
}

/**
 * Media content-addressed by sha256 under `<out>/media/<aa>/<sha256>`: the same bytes are stored
 * once whatever room or mxc they came from. Downloads stream to a temp file that is hashed while
 * written and renamed into place, so no file is ever held in memory or left half-written.
 */
export class MediaStore {
  private readonly opts: MediaStoreOptions;

  constructor(opts: MediaStoreOptions) {
    this.opts = opts;
  }

  get indexPath(): string {
    return join(this.opts.root, 'index.jsonl');
  }

  /** Records of earlier downloads (for an index rebuilt from scratch); bad lines are skipped. */
  records(): MediaRecord[] {
    if (!existsSync(this.indexPath)) return [];
    const out: MediaRecord[] = [];
    for (const line of readFileSync(this.indexPath, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      try {
        const r = JSON.parse(line) as MediaRecord;
        if (typeof r.mxc === 'string' && typeof r.sha256 === 'string' && /^[0-9a-f]{64}$/.test(r.sha256) && existsSync(this.blobPath(r.sha256))) out.push(r);
      } catch {
        // A torn last line from a crash: that download is simply done again.
      }
    }
    return out;
  }

  blobPath(sha256: string): string {
    return join(this.opts.root, sha256.slice(0, 2), sha256);
  }

  async download(mxc: string, encrypted: boolean, signal: AbortSignal): Promise<Result<MediaRecord>> {
    const parsed = parseMxc(mxc);
    if (!parsed) return fail('E_MEDIA_BAD_MXC', `${mxc} is not a valid mxc URI`);
    const { server, mediaId } = parsed;
    const { http, maxBytes } = this.opts;
    // Metadata is best effort: remote media the server has not cached yet is unknown to the admin API.
    const info = await http.request<{ media_info?: AdminMediaInfo }>('GET', path`/_synapse/admin/v1/media/${server}/${mediaId}`, { signal });
    const meta = info.ok ? info.value.media_info ?? {} : {};
    if (typeof meta.media_length === 'number' && meta.media_length > maxBytes) {
      return fail('E_MEDIA_TOO_LARGE', `${mxc} is ${meta.media_length} bytes, over the archive's cap of ${maxBytes} (archive.media_max_mb)`);
    }
    const answer = await http.stream(path`/_matrix/client/v1/media/download/${server}/${mediaId}`, { signal });
    if (!answer.ok) return fail(answer.error.errcode ?? answer.error.code, `cannot download ${mxc}: ${answer.error.human}`, answer.error.log);
    await mkdir(join(this.opts.root, '.tmp'), { recursive: true, mode: 0o700 });
    const temp = join(this.opts.root, '.tmp', `${randomBytes(8).toString('hex')}.part`);
    const hash = createHash('sha256');
    let size = 0;
    let tooLarge = false;
    const handle = await open(temp, 'wx', 0o600);
    try {
      for await (const chunk of answer.value.body) {
        size += chunk.byteLength;
        if (size > maxBytes) {
          tooLarge = true;
          break;
        }
        hash.update(chunk);
        await handle.write(chunk);
      }
      if (!tooLarge) await handle.sync();
    } catch (err) {
      await handle.close().catch(() => undefined);
      await rm(temp, { force: true });
      return fail('E_MEDIA_DOWNLOAD', `cannot download ${mxc}: ${errorMessage(err)}`);
    }
    await handle.close();
    if (tooLarge) {
      await rm(temp, { force: true });
      return fail('E_MEDIA_TOO_LARGE', `${mxc} is larger than the archive's cap of ${maxBytes} bytes (archive.media_max_mb)`);
    }
    const sha256 = hash.digest('hex');
    if (typeof meta.sha256 === 'string' && meta.sha256 !== '' && meta.sha256.toLowerCase() !== sha256) {
      await rm(temp, { force: true });
      return fail('E_MEDIA_HASH', `${mxc}: the downloaded bytes do not match the sha256 the server recorded`);
    }
    const target = this.blobPath(sha256);
    try {
      if (existsSync(target)) {
        await rm(temp, { force: true });
      } else {
        await mkdir(join(this.opts.root, sha256.slice(0, 2)), { recursive: true, mode: 0o700 });
        await rename(temp, target);
      }
    } catch (err) {
      await rm(temp, { force: true });
      return fail('E_MEDIA_STORE', `cannot store ${mxc}: ${errorMessage(err)}`);
    }
    const headers = answer.value.headers;
    const record: MediaRecord = {
      mxc,
      sha256,
      size,
      media_type: typeof meta.media_type === 'string' ? meta.media_type : headers.get('content-type'),
      upload_name: typeof meta.upload_name === 'string' ? meta.upload_name : fileNameFrom(headers.get('content-disposition')),
      encrypted,
    };
    await this.appendRecord(record);
    return ok(record);
  }

  private async appendRecord(record: MediaRecord): Promise<void> {
    await mkdir(this.opts.root, { recursive: true, mode: 0o700 });
    const handle = await open(this.indexPath, 'a', 0o600);
    try {
      await handle.write(`${JSON.stringify(record)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
}

/** `attachment; filename="a.png"` or `filename*=utf-8''a%20b.png`. */
export function fileNameFrom(disposition: string | null): string | null {
  if (!disposition) return null;
  const star = /filename\*\s*=\s*(?:utf-8|UTF-8)''([^;]+)/.exec(disposition);
  if (star) {
    try {
      return decodeURIComponent(star[1]!.trim());
    } catch {
      return null;
    }
  }
  const plain = /filename\s*=\s*"([^"]*)"|filename\s*=\s*([^;\s]+)/.exec(disposition);
  return plain ? (plain[1] ?? plain[2] ?? null) : null;
}
