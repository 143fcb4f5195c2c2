import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig, parseConfig, type StewardConfig } from '../../src/config/config.ts';
import { ConfigReader, levenshtein, nearest } from '../../src/config/reader.ts';
import type { Result } from '../../src/util/result.ts';

const BASE = '/srv/steward';

function minimal(): Record<string, Record<string, unknown>> {
  return {
    homeserver: { url: 'http://127.0.0.1:8008', server_name: 'example.org' },
    admin_room: { admins: ['@alice:example.org'] },
  };
}

function value(result: Result<StewardConfig>): StewardConfig {
  if (!result.ok) assert.fail(`expected a valid config, got: ${result.error.human}`);
  return result.value;
}

/** The problem lines of a failed parse, one per problem. */
function problems(result: Result<StewardConfig>): string[] {
  if (result.ok) assert.fail('expected the config to be refused');
  assert.equal(result.error.code, 'E_BAD_CONFIG');
  const lines = result.error.human.split('\n');
  assert.match(lines[0]!, /^The configuration has \d+ problem\(s\):$/);
  const list = lines.slice(1).map((l) => l.replace(/^- /, ''));
  assert.equal(lines[0], `The configuration has ${list.length} problem(s):`);
  return list;
}

function withSection(section: string, values: Record<string, unknown>): Record<string, unknown> {
  const raw: Record<string, unknown> = minimal();
  raw[section] = { ...(raw[section] as Record<string, unknown> | undefined), ...values };
  return raw;
}

describe('parseConfig: a minimal valid config', () => {
  it('fills every default', () => {
    const config = value(parseConfig(minimal(), BASE));
    // Section by section, so sections added later (e.g. federation) do not break this test.
    assert.deepEqual(config.homeserver, { url: 'http://127.0.0.1:8008', serverName: 'example.org', adminTokenFile: undefined, startupWaitSeconds: 300, synapseConfig: undefined });
    assert.deepEqual(config.appservice, { id: 'steward', botLocalpart: 'steward', bindAddress: '127.0.0.1', port: 9993, url: 'http://127.0.0.1:9993', allowQueryToken: false, metrics: true });
    assert.deepEqual(config.adminRoom, { admins: ['@alice:example.org'], room: undefined, statusRoom: undefined, name: 'Steward admin' });
    assert.deepEqual(config.storage, { database: '/srv/steward/data/steward.db', dumps: '/srv/steward/dumps' });
    assert.deepEqual(config.jobs, { concurrency: 2, progressIntervalSeconds: 3 });
    assert.deepEqual(config.requests, { timeoutSeconds: 60, maxRetries: 6, concurrency: 4 });
    assert.deepEqual(config.logging, { level: 'info' });
  });

  it('reads the start-up wait, Synapse\'s config path (relative to baseDir), query-token and metrics switches', () => {
    const hs = value(parseConfig(withSection('homeserver', { url: 'http://127.0.0.1:8008', server_name: 'example.org', startup_wait_seconds: 0, synapse_config: 'synapse/homeserver.yaml' }), '/etc/steward'));
    assert.equal(hs.homeserver.startupWaitSeconds, 0);
    assert.equal(hs.homeserver.synapseConfig, '/etc/steward/synapse/homeserver.yaml');
    const as = value(parseConfig(withSection('appservice', { allow_query_token: true, metrics: false }), BASE));
    assert.equal(as.appservice.allowQueryToken, true);
    assert.equal(as.appservice.metrics, false);
    const bad = parseConfig(withSection('homeserver', { url: 'http://127.0.0.1:8008', server_name: 'example.org', startup_wait_seconds: -1 }), BASE);
    assert.ok(!bad.ok);
    assert.match(bad.error.human, /homeserver\.startup_wait_seconds/);
  });

  it('resolves relative storage paths against baseDir and keeps absolute ones', () => {
    const config = value(parseConfig(withSection('storage', { database: 'db/s.db', dumps: '/var/dumps' }), '/etc/steward'));
    assert.equal(config.storage.database, '/etc/steward/db/s.db');
    assert.equal(config.storage.dumps, '/var/dumps');
  });

  it('derives the appservice url from bind_address and port, bracketing IPv6', () => {
    assert.equal(value(parseConfig(withSection('appservice', { port: 8123, bind_address: '0.0.0.0' }), BASE)).appservice.url, 'http://0.0.0.0:8123');
    assert.equal(value(parseConfig(withSection('appservice', { bind_address: '::1' }), BASE)).appservice.url, 'http://[::1]:9993');
    assert.equal(value(parseConfig(withSection('appservice', { url: 'http://steward:1' }), BASE)).appservice.url, 'http://steward:1');
  });

  it('strips trailing slashes from homeserver.url and accepts a port in server_name', () => {
    const config = value(parseConfig(withSection('homeserver', { url: 'https://matrix.example.org/', server_name: 'example.org:8448' }), BASE));
    assert.equal(config.homeserver.url, 'https://matrix.example.org');
    assert.equal(config.homeserver.serverName, 'example.org:8448');
  });

  it('takes given values over defaults', () => {
    const config = value(parseConfig({
      ...withSection('admin_room', { room: '#admins:example.org', status_room: '!status:example.org', name: 'Ops' }),
      jobs: { concurrency: 4, progress_interval_seconds: 10 },
      requests: { timeout_seconds: 5, max_retries: 0, concurrency: 64 },
      logging: { level: 'debug' },
    }, BASE));
    assert.equal(config.adminRoom.room, '#admins:example.org');
    assert.equal(config.adminRoom.statusRoom, '!status:example.org');
    assert.equal(config.adminRoom.name, 'Ops');
    assert.deepEqual(config.jobs, { concurrency: 4, progressIntervalSeconds: 10 });
    assert.deepEqual(config.requests, { timeoutSeconds: 5, maxRetries: 0, concurrency: 64 });
    assert.equal(config.logging.level, 'debug');
  });
});

describe('parseConfig: problems name the key and what was expected', () => {
  it('reports a missing required section', () => {
    assert.deepEqual(problems(parseConfig({ homeserver: minimal().homeserver }, BASE)), [
      'admin_room: required section is missing',
      'admin_room.admins: required, expected a list of full Matrix IDs such as @alice:example.org',
    ]);
  });

  it('reports every required key of an empty document', () => {
    for (const raw of [null, undefined, {}]) {
      assert.deepEqual(problems(parseConfig(raw, BASE)), [
        'homeserver: required section is missing',
        'homeserver.url: required, expected an http(s) URL such as http://127.0.0.1:8008',
        'homeserver.server_name: required, expected a server name such as example.org',
        'admin_room: required section is missing',
        'admin_room.admins: required, expected a list of full Matrix IDs such as @alice:example.org',
      ]);
    }
  });

  it('refuses a document that is not a mapping', () => {
    const list = problems(parseConfig(['homeserver', 'admin_room'], BASE));
    assert.match(list[0]!, /expected a mapping of keys, got a list$/);
    assert.ok(list.includes('homeserver: required section is missing'));
    assert.match(problems(parseConfig('just text', BASE))[0]!, /expected a mapping of keys, got "just text"$/);
  });

  it('reports a section of the wrong type', () => {
    const list = problems(parseConfig({ ...minimal(), jobs: [1, 2] }, BASE));
    assert.deepEqual(list, ['jobs: expected a mapping of keys, got a list']);
    assert.deepEqual(problems(parseConfig({ ...minimal(), logging: 'debug' }, BASE)), ['logging: expected a mapping of keys, got "debug"']);
  });

  it('reports a value of the wrong type', () => {
    assert.deepEqual(problems(parseConfig(withSection('appservice', { port: '9993' }), BASE)), ['appservice.port: expected a whole number from 1 to 65535, got "9993"']);
    assert.deepEqual(problems(parseConfig(withSection('homeserver', { url: 8008 }), BASE)), ['homeserver.url: expected an http(s) URL such as http://127.0.0.1:8008, got number 8008']);
    assert.deepEqual(problems(parseConfig(withSection('admin_room', { admins: '@alice:example.org' }), BASE)), [
      'admin_room.admins: expected a list of full Matrix IDs such as @alice:example.org, got "@alice:example.org"',
    ]);
    assert.deepEqual(problems(parseConfig(withSection('jobs', { concurrency: 1.5 }), BASE)), ['jobs.concurrency: expected a whole number from 1 to 16, got number 1.5']);
  });

  it('reports an unknown key with a "did you mean" hint', () => {
    const raw = minimal();
    raw.admin_room = { admin: ['@alice:example.org'], admins: ['@alice:example.org'] };
    assert.deepEqual(problems(parseConfig(raw, BASE)), ["admin_room.admin: unknown key (did you mean 'admins'?)"]);
    assert.deepEqual(problems(parseConfig({ ...minimal(), loging: { level: 'info' } }, BASE)), ["loging: unknown key (did you mean 'logging'?)"]);
  });

  it('reports an unknown key without a hint when nothing is close', () => {
    assert.deepEqual(problems(parseConfig(withSection('homeserver', { flavour: 'synapse' }), BASE)), ['homeserver.flavour: unknown key']);
  });

  it('names the index of a bad entry in the admins list', () => {
    const list = problems(parseConfig(withSection('admin_room', { admins: ['@alice:example.org', 'bob', '@carol:example.org', 42] }), BASE));
    assert.deepEqual(list, [
      'admin_room.admins[1]: expected full Matrix IDs such as @alice:example.org, got "bob"',
      'admin_room.admins[3]: expected full Matrix IDs such as @alice:example.org, got number 42',
    ]);
  });

  it('refuses an empty admins list', () => {
    assert.deepEqual(problems(parseConfig(withSection('admin_room', { admins: [] }), BASE)), ['admin_room.admins: must list at least one entry']);
  });

  it('refuses a port out of range', () => {
    for (const port of [0, 65536, -1]) {
      assert.deepEqual(problems(parseConfig(withSection('appservice', { port }), BASE)), [`appservice.port: expected a whole number from 1 to 65535, got number ${port}`]);
    }
    assert.equal(value(parseConfig(withSection('appservice', { port: 65535 }), BASE)).appservice.port, 65535);
    assert.equal(value(parseConfig(withSection('appservice', { port: 1 }), BASE)).appservice.port, 1);
  });

  it('refuses a bad log level', () => {
    assert.deepEqual(problems(parseConfig({ ...minimal(), logging: { level: 'verbose' } }, BASE)), [
      'logging.level: expected one of trace, debug, info, warn, error, fatal, silent, got "verbose"',
    ]);
  });

  it('refuses bad urls, server names and room references', () => {
    assert.deepEqual(problems(parseConfig(withSection('homeserver', { url: 'ftp://example.org' }), BASE)), [
      'homeserver.url: expected an http(s) URL such as http://127.0.0.1:8008, got "ftp://example.org"',
    ]);
    assert.deepEqual(problems(parseConfig(withSection('homeserver', { server_name: 'exa mple.org' }), BASE)), [
      'homeserver.server_name: expected a server name such as example.org, got "exa mple.org"',
    ]);
    assert.deepEqual(problems(parseConfig(withSection('admin_room', { room: 'admins' }), BASE)), [
      'admin_room.room: expected a room id (!…) or alias (#…), got "admins"',
    ]);
  });

  it('reports several problems together, in one failure', () => {
    const list = problems(parseConfig({
      homeserver: { url: 'http://127.0.0.1:8008' },
      appservice: { port: 70000 },
      admin_room: { admin: ['@alice:example.org'], admins: ['@alice:example.org', 'bob'] },
      logging: { level: 'loud' },
    }, BASE));
    assert.deepEqual(list, [
      'homeserver.server_name: required, expected a server name such as example.org',
      'appservice.port: expected a whole number from 1 to 65535, got number 70000',
      "admin_room.admin: unknown key (did you mean 'admins'?)",
      'admin_room.admins[1]: expected full Matrix IDs such as @alice:example.org, got "bob"',
      'logging.level: expected one of trace, debug, info, warn, error, fatal, silent, got "loud"',
    ]);
  });
});

describe('ConfigReader helpers', () => {
  it('reads booleans and reports non-booleans', () => {
    const r = new ConfigReader();
    assert.equal(r.boolean({ a: true }, 's', 'a', false), true);
    assert.equal(r.boolean({}, 's', 'a', true), true);
    assert.equal(r.boolean({ a: 'yes' }, 's', 'a', false), false);
    assert.deepEqual(r.problems, ['s.a: expected true or false, got "yes"']);
  });

  it('computes edit distances and nearest candidates', () => {
    assert.equal(levenshtein('kitten', 'sitting'), 3);
    assert.equal(levenshtein('', 'abc'), 3);
    assert.equal(levenshtein('same', 'same'), 0);
    assert.equal(nearest('admin', ['admins', 'room', 'name']), 'admins');
    assert.equal(nearest('zzzzzz', ['admins', 'room', 'name']), undefined);
  });
});

describe('loadConfig', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'steward-config-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads a YAML file and anchors relative paths at its folder', async () => {
    const file = join(dir, 'steward.yaml');
    await writeFile(file, 'homeserver:\n  url: http://127.0.0.1:8008\n  server_name: example.org\nadmin_room:\n  admins: ["@alice:example.org"]\nstorage:\n  database: state/s.db\n');
    const config = value(await loadConfig(file));
    assert.equal(config.storage.database, join(dir, 'state/s.db'));
    assert.equal(config.storage.dumps, join(dir, 'dumps'));
  });

  it('fails with E_BAD_CONFIG, not a throw, when the file is missing', async () => {
    const file = join(dir, 'nope.yaml');
    const result = await loadConfig(file);
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.equal(result.error.code, 'E_BAD_CONFIG');
    assert.equal(result.error.human, `Cannot read the config file ${file}: it does not exist`);
  });

  it('fails with E_BAD_CONFIG, not a throw, when the file is a folder', async () => {
    const result = await loadConfig(dir);
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.equal(result.error.code, 'E_BAD_CONFIG');
    assert.equal(result.error.human, `Cannot read the config file ${dir}: EISDIR`);
  });

  it('fails with E_BAD_CONFIG naming the file when the YAML is invalid', async () => {
    const file = join(dir, 'broken.yaml');
    await writeFile(file, 'homeserver:\n  url: "http://127.0.0.1:8008\n  server_name: [example.org\n');
    const result = await loadConfig(file);
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.equal(result.error.code, 'E_BAD_CONFIG');
    assert.ok(result.error.human.startsWith(`The config file ${file} is not valid YAML: `), result.error.human);
    assert.match(result.error.human, /\(4:1\)/, 'says where in the file');
  });

  it('reports validation problems of a readable file', async () => {
    const file = join(dir, 'typo.yaml');
    await writeFile(file, 'homeserver:\n  url: http://127.0.0.1:8008\n  server_name: example.org\nadmin_room:\n  admin: ["@alice:example.org"]\n');
    const result = await loadConfig(file);
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.equal(result.error.code, 'E_BAD_CONFIG');
    assert.match(result.error.human, /admin_room\.admin: unknown key \(did you mean 'admins'\?\)/);
    assert.match(result.error.human, /admin_room\.admins: required/);
  });
});
