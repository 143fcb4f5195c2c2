import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exists, fileNameFor, newDumpId, prepareDumpDir, removeOrphanTemps, writeJson } from '../../src/dump/dump-files.ts';

const IDS = [
  '@alice:example.org',
  '@bob:example.org:8448',
  '@weird/slash:hs',
  '@back\\slash:hs',
  '!room:hs',
  '#alias:hs',
  '@jürgen:hs',
  '@用户:hs',
  '@emoji🦀:hs',
  '@per%cent:hs',
  '@x.y=z_-+:[::1]:8448',
  '@..:hs',
  '@*?<>|":hs',
  '@ space\ttab:hs',
];

describe('fileNameFor', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'steward-dumpfiles-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is reversible: decoding the name without .json gives the id back', () => {
    for (const id of IDS) {
      const name = fileNameFor(id);
      assert.ok(name.endsWith('.json'), name);
      assert.equal(decodeURIComponent(name.slice(0, -'.json'.length)), id);
    }
  });

  it('uses only characters that are safe on every filesystem', () => {
    for (const id of IDS) {
      const name = fileNameFor(id);
      assert.match(name, /^[A-Za-z0-9%._~!'()*-]+$/, name);
      assert.doesNotMatch(name, /[/\\:<>|"?\s]/, name);
      assert.ok(!name.startsWith('.'), `${name} must not be hidden or a relative folder`);
    }
  });

  it('gives different ids different names', () => {
    const names = new Set(IDS.map(fileNameFor));
    assert.equal(names.size, IDS.length);
  });

  it('names files that can be written and read back in one folder', async () => {
    for (const id of IDS) await writeJson(join(dir, fileNameFor(id)), { id });
    const names = (await readdir(dir)).sort();
    assert.equal(names.length, IDS.length);
    for (const name of names) {
      const { id } = JSON.parse(await readFile(join(dir, name), 'utf8')) as { id: string };
      assert.equal(fileNameFor(id), name);
    }
  });

  it('names a file that can be written for every legal user id, up to 255 bytes long',
    async () => {
      for (const length of [229, 255]) {
        const id = `@${'a'.repeat(length - 1 - 1 - 'example.org'.length)}:example.org`;
        assert.equal(Buffer.byteLength(id), length);
        await writeJson(join(dir, fileNameFor(id)), { id });
      }
    });
});

describe('dump folders and files', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'steward-dumpdir-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('names a dump by kind, UTC second and job', () => {
    assert.equal(newDumpId('users', 12, new Date('2024-03-05T06:07:08.901Z')), 'users-20240305T060708Z-job12');
  });

  it('prepares a private section folder', async () => {
    const section = await prepareDumpDir(dir, 'users-x-job1', 'users');
    assert.equal(section, join(dir, 'users-x-job1', 'users'));
    assert.equal((await stat(section)).mode & 0o777, 0o700);
    assert.equal((await stat(join(dir, 'users-x-job1'))).mode & 0o777, 0o700);
  });

  it('writes pretty JSON with a final newline, 0600', async () => {
    const file = join(dir, 'doc.json');
    await writeJson(file, { a: [1, 2], b: 'x' });
    assert.equal(await readFile(file, 'utf8'), '{\n  "a": [\n    1,\n    2\n  ],\n  "b": "x"\n}\n');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal(await exists(file), true);
    assert.equal(await exists(join(dir, 'nope.json')), false);
  });

  it('removes only orphaned temp files', async () => {
    const folder = await prepareDumpDir(dir, 'orphans', 'users');
    await writeFile(join(folder, '.%40a%3Ahs.json.abcdef.tmp'), 'partial');
    await writeFile(join(folder, '.%40b%3Ahs.json.123456.tmp'), 'partial');
    await writeFile(join(folder, '%40c%3Ahs.json'), '{}');
    await writeFile(join(folder, 'notes.tmp'), 'not ours: not hidden');
    assert.equal(await removeOrphanTemps(folder), 2);
    assert.deepEqual((await readdir(folder)).sort(), ['%40c%3Ahs.json', 'notes.tmp']);
    assert.equal(await removeOrphanTemps(join(dir, 'missing')), 0);
  });
});
