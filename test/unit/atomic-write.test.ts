import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ensurePrivateDir, writeFileAtomic } from '../../src/util/atomic-write.ts';

async function mode(path: string): Promise<number> {
  return (await stat(path)).mode & 0o777;
}

describe('writeFileAtomic', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'steward-atomic-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the content with mode 0600 by default', async () => {
    const file = join(dir, 'plain.json');
    await writeFileAtomic(file, '{"a":1}\n');
    assert.equal(await readFile(file, 'utf8'), '{"a":1}\n');
    assert.equal(await mode(file), 0o600);
  });

  it('writes bytes as they are', async () => {
    const file = join(dir, 'bytes.bin');
    const bytes = new Uint8Array([0, 1, 2, 255, 10, 13]);
    await writeFileAtomic(file, bytes);
    assert.deepEqual(new Uint8Array(await readFile(file)), bytes);
  });

  it('creates missing parent folders 0700', async () => {
    const file = join(dir, 'a', 'b', 'c', 'deep.json');
    await writeFileAtomic(file, 'x');
    assert.equal(await readFile(file, 'utf8'), 'x');
    for (const folder of [join(dir, 'a'), join(dir, 'a', 'b'), join(dir, 'a', 'b', 'c')]) {
      assert.equal(await mode(folder), 0o700, folder);
    }
  });

  it('leaves no temp file behind', async () => {
    const folder = join(dir, 'clean');
    await writeFileAtomic(join(folder, 'one.json'), '1');
    await writeFileAtomic(join(folder, 'one.json'), '2');
    await writeFileAtomic(join(folder, 'two.json'), '3');
    assert.deepEqual((await readdir(folder)).sort(), ['one.json', 'two.json']);
  });

  it('overwrites an existing file, and gives it the requested mode', async () => {
    const file = join(dir, 'over.json');
    await writeFile(file, 'old content that is longer than the new', { mode: 0o644 });
    await writeFileAtomic(file, 'new');
    assert.equal(await readFile(file, 'utf8'), 'new');
    assert.equal(await mode(file), 0o600);
  });

  it('honours another mode when asked', async () => {
    const file = join(dir, 'registration.yaml');
    await writeFileAtomic(file, 'id: steward\n', 0o640);
    // Like any file creation, the mode passes through the process umask.
    assert.equal(await mode(file), 0o640 & ~process.umask());
  });

  it('keeps the old file and leaves no temp file when the write cannot complete', async () => {
    const folder = join(dir, 'fails');
    const target = join(folder, 'target');
    // A folder where the file should go: the rename over it fails.
    await mkdir(target, { recursive: true });
    await assert.rejects(writeFileAtomic(target, 'data'));
    assert.deepEqual(await readdir(folder), ['target']);
    assert.ok((await stat(target)).isDirectory());
  });

  it('writes concurrently to the same file without mixing contents', async () => {
    const file = join(dir, 'race.json');
    const contents = Array.from({ length: 10 }, (_, i) => `${String(i).repeat(10_000)}`);
    await Promise.all(contents.map((c) => writeFileAtomic(file, c)));
    assert.ok(contents.includes(await readFile(file, 'utf8')), 'the file holds one whole write');
    assert.deepEqual((await readdir(dir)).filter((n) => n.endsWith('.tmp')), []);
  });
});

describe('ensurePrivateDir', () => {
  it('creates the folder and its parents 0700, and accepts an existing one', async () => {
    const root = await mkdtemp(join(tmpdir(), 'steward-private-'));
    try {
      const folder = join(root, 'x', 'y');
      await ensurePrivateDir(folder);
      await ensurePrivateDir(folder);
      assert.equal(await mode(folder), 0o700);
      assert.equal(await mode(join(root, 'x')), 0o700);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
