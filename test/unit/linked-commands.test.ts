// !link, !unlink, !links, !links activity and !links status through the shared dispatcher, with
// a directory on 127.0.0.1.
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { CommandContext } from '../../src/commands/context.ts';
import { dispatch } from '../../src/commands/dispatch.ts';
import { parseConfig, type StewardConfig } from '../../src/config/config.ts';
import { createLogger } from '../../src/log.ts';
import { LINKED_COMMANDS } from '../../src/linked/commands.ts';
import { LinkedAccounts } from '../../src/linked/linked-accounts.ts';
import { openDatabase } from '../../src/store/database.ts';

describe('linked accounts commands', () => {
  let server: http.Server;
  let linked: LinkedAccounts;
  let ctx: CommandContext;
  const answers = new Map<string, string>();

  before(async () => {
    server = http.createServer((req, res) => {
      const user = decodeURIComponent((req.url ?? '').split('/').pop() ?? '');
      const body = answers.get(user);
      if (body === undefined) res.writeHead(404).end();
      else res.writeHead(200).end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const parsed = parseConfig({
      homeserver: { url: 'http://127.0.0.1:8008', server_name: 'a.test' },
      admin_room: { admins: ['@admin:a.test'] },
      linked_accounts: { enabled: true, directory: { url: `http://127.0.0.1:${port}/links/{mxid}`, negative_cache_seconds: 0, address_allowlist: ['127.0.0.1/32'] } },
    }, '/srv');
    assert.ok(parsed.ok);
    const config: StewardConfig = parsed.value;
    linked = new LinkedAccounts(openDatabase(':memory:'), config, createLogger({ level: 'silent' }));
    ctx = {
      frontEnd: 'room', sender: '@admin:a.test', roomId: '!admin:a.test', commandEventId: '$cmd',
      config, jobs: undefined as never, runner: undefined as never, federation: undefined as never, recovery: undefined as never, commands: LINKED_COMMANDS,
      status: () => ({ version: '0', homeserver: '', serverName: 'a.test', botUserId: '@steward:a.test', startedTs: 0, synapseVersion: null }),
      linked,
    };
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  async function text(line: string): Promise<string> {
    const r = await dispatch(line, ctx);
    if (!r.ok) return `ERROR ${r.error.human}`;
    assert.equal(r.value.kind, 'reply');
    return r.value.kind === 'reply' ? r.value.text : '';
  }

  it('links, shows where each link comes from, and unlinks', async () => {
    answers.set('@alice:a.test', '["@alice:a.test","@alice:b.test"]');
    assert.match(await text('link @alice:a.test @alice:c.test @alice:d.test'), /Linked @alice:a\.test, @alice:c\.test, @alice:d\.test \(2 new links\)\.\nLocal group now: @alice:a\.test, @alice:c\.test, @alice:d\.test/);
    assert.match(await text('link @alice:c.test @alice:a.test'), /already linked/);
    const shown = await text('links @alice:a.test');
    assert.match(shown, /@alice:b\.test — directory\n/);
    assert.match(shown, /@alice:c\.test — local\n/);
    assert.match(shown, /Directory: names 1 linked account\(s\)/);
    assert.match(shown, /@alice:a\.test ⟷ @alice:c\.test \(by @admin:a\.test, /);
    assert.match(await text('links'), /1 local group\(s\):\n {2}@alice:a\.test, @alice:c\.test, @alice:d\.test/);
    assert.match(await text('unlink @alice:a.test @alice:c.test'), /Removed the local link @alice:a\.test ⟷ @alice:c\.test\./);
    assert.match(await text('unlink @alice:c.test @alice:d.test'), /had no direct local link/);
    assert.doesNotMatch(await text('links @alice:a.test'), /@alice:c\.test/);
  });

  it('refuses bad input with a usage hint', async () => {
    assert.match(await text('link @alice:a.test'), /at least two/);
    assert.match(await text('link @alice:a.test bob'), /Not a Matrix ID: bob/);
    assert.match(await text('unlink @alice:a.test'), /Missing <other>/);
  });

  it('says when the directory cannot answer, and counts it in !links status', async () => {
    answers.set('@broken:a.test', '{"oops":1}');
    assert.match(await text('links @broken:a.test'), /Directory: no usable answer \(the answer is not a JSON array of Matrix IDs \(got object\)\) — nothing is mirrored for @broken:a\.test/);
    const status = await text('links status');
    assert.match(status, /Linked accounts: enabled; auto_join on; reinvite_left off/);
    assert.match(status, /Directory: http:\/\/127\.0\.0\.1:\d+ · timeout 5000 ms · cache 300s, negative 0s/);
    assert.match(status, /directory\.errors\.malformed: 1/);
  });

  it('lists recent mirror actions', async () => {
    assert.match(await text('links activity'), /No mirror actions yet/);
    linked.store.record({ action: 'invite', outcome: 'ok', roomId: '!r:a.test', target: '@alice:b.test', source: '@alice:a.test', detail: 'invited by @bob:a.test' });
    linked.store.record({ action: 'receipt', outcome: 'failed', roomId: '!r:a.test', target: '@carol:a.test', source: '@carol:b.test', detail: 'nope' });
    const all = await text('links activity');
    assert.match(all, /✓ invite → @alice:b\.test \(for @alice:a\.test\) in !r:a\.test: invited by @bob:a\.test\n.*✗ receipt → @carol:a\.test/);
    const filtered = await text('links activity --user @carol:b.test');
    assert.doesNotMatch(filtered, /invite/);
  });
});
