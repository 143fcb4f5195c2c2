import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ALL_COMMANDS } from '../../src/commands/all-commands.ts';
import type { CommandContext } from '../../src/commands/context.ts';
import { dispatch } from '../../src/commands/dispatch.ts';
import type { Command, CommandOutput, FrontEnd } from '../../src/commands/types.ts';
import { parseConfig, type StewardConfig } from '../../src/config/config.ts';
import { JobStore } from '../../src/jobs/job-store.ts';
import { JobRunner } from '../../src/jobs/runner.ts';
import { createLogger } from '../../src/log.ts';
import { openDatabase } from '../../src/store/database.ts';
import { LogSourceStore, LostRoomStore } from '../../src/recovery/lost-rooms.ts';
import { ok, type Result } from '../../src/util/result.ts';

const db = openDatabase(':memory:');
after(() => db.close());
const log = createLogger({ level: 'silent' });
const jobs = new JobStore(db);
const runner = new JobRunner({ store: jobs, definitions: [], concurrency: 1, log });

function config(): StewardConfig {
  const parsed = parseConfig({ homeserver: { url: 'http://127.0.0.1:8008', server_name: 'example.org' }, admin_room: { admins: ['@alice:example.org'] } }, '/tmp/steward-test');
  assert.ok(parsed.ok);
  return parsed.value;
}

const calls: string[] = [];

const terminalOnly: Command = {
  name: 'export key',
  summary: 'prints the signing key',
  params: [],
  flags: [],
  frontEnds: ['terminal'],
  async execute() {
    calls.push('export key');
    return ok({ kind: 'reply', text: 'secret', html: 'secret' });
  },
};

const roomOnly: Command = {
  name: 'wave',
  summary: 'waves in the room',
  params: [],
  flags: [],
  frontEnds: ['room'],
  async execute() {
    calls.push('wave');
    return ok({ kind: 'reply', text: 'o/', html: 'o/' });
  },
};

const thrower: Command = {
  name: 'explode',
  summary: 'throws',
  params: [],
  flags: [],
  frontEnds: ['room', 'terminal'],
  async execute() {
    throw new Error('kaboom at line 7');
  },
};

const echo: Command = {
  name: 'echo',
  summary: 'answers with its input',
  params: [{ name: 'text', type: 'string', description: 'what to say', rest: true }],
  flags: [{ name: 'twice', type: 'boolean', description: 'say it twice' }],
  frontEnds: ['room', 'terminal'],
  async execute(ctx, input) {
    const text = `${ctx.frontEnd}:${ctx.sender ?? '-'}:${input.param('text')}${input.bool('twice') ? ' (twice)' : ''}`;
    return ok({ kind: 'reply', text, html: text });
  },
};

function context(frontEnd: FrontEnd, extra: readonly Command[] = []): CommandContext {
  return {
    frontEnd,
    sender: frontEnd === 'room' ? '@alice:example.org' : undefined,
    roomId: frontEnd === 'room' ? '!admin:example.org' : undefined,
    commandEventId: frontEnd === 'room' ? '$cmd' : undefined,
    config: config(),
    jobs,
    runner,
    commands: [...ALL_COMMANDS, ...extra],
    status: () => ({ version: '9.9.9', homeserver: 'http://127.0.0.1:8008', serverName: 'example.org', botUserId: '@steward:example.org', startedTs: Date.now() - 65_000, synapseVersion: '1.2.3' }),
    recovery: { rooms: new LostRoomStore(db), sources: new LogSourceStore(db) },
    federation: { get: async () => ({ ok: false, error: { code: 'E_NO_SIGNING_KEY', human: 'no signing key in this test', log: 'no signing key' } }), close: () => undefined },
  };
}

function failure(result: Result<CommandOutput>): { code: string; human: string; log: string } {
  if (result.ok) assert.fail(`expected a failure, got ${JSON.stringify(result.value)}`);
  return result.error;
}

function replyText(result: Result<CommandOutput>): string {
  if (!result.ok) assert.fail(`expected a reply, got ${result.error.code}: ${result.error.human}`);
  assert.equal(result.value.kind, 'reply');
  return result.value.kind === 'reply' ? result.value.text : '';
}

describe('dispatch', () => {
  it('suggests "dump users" for "dump user"', async () => {
    const error = failure(await dispatch('dump user', context('room')));
    assert.equal(error.code, 'E_UNKNOWN_COMMAND');
    assert.equal(error.human, 'Unknown command "dump user". Did you mean !dump users? Type !help for the list.');
  });

  it('suggests "status" for "stauts", with the terminal prefix on the terminal', async () => {
    assert.equal(failure(await dispatch('stauts', context('room'))).human, 'Unknown command "stauts". Did you mean !status? Type !help for the list.');
    assert.equal(failure(await dispatch('stauts', context('terminal'))).human, 'Unknown command "stauts". Did you mean steward status? Type steward help for the list.');
  });

  it('does not suggest a command the front end cannot run', async () => {
    const error = failure(await dispatch('export keys', context('room', [terminalOnly])));
    assert.equal(error.code, 'E_UNKNOWN_COMMAND');
    assert.equal(error.human, 'Unknown command "export keys". Type !help for the list.');
    assert.match(failure(await dispatch('export keys', context('terminal', [terminalOnly]))).human, /Did you mean steward export key\?/);
  });

  it('gives no suggestion when nothing is close', async () => {
    assert.equal(failure(await dispatch('xyzzyplugh now', context('room'))).human, 'Unknown command "xyzzyplugh now". Type !help for the list.');
  });

  it('refuses an empty line', async () => {
    const error = failure(await dispatch('   ', context('room')));
    assert.equal(error.code, 'E_USAGE');
  });

  it('passes a tokenizer failure through', async () => {
    const error = failure(await dispatch('echo "unfinished', context('room', [echo])));
    assert.equal(error.code, 'E_USAGE');
    assert.equal(error.human, 'Unclosed " quote.');
  });

  it('refuses a terminal-only command in the room without running it', async () => {
    calls.length = 0;
    const error = failure(await dispatch('export key', context('room', [terminalOnly])));
    assert.equal(error.code, 'E_WRONG_FRONT_END');
    assert.equal(error.human, 'export key runs only in the terminal (steward export key), never in a room.');
    assert.deepEqual(calls, []);
    assert.equal(replyText(await dispatch('export key', context('terminal', [terminalOnly]))), 'secret');
    assert.deepEqual(calls, ['export key']);
  });

  it('refuses a room-only command on the terminal without running it', async () => {
    calls.length = 0;
    const error = failure(await dispatch('wave', context('terminal', [roomOnly])));
    assert.equal(error.code, 'E_WRONG_FRONT_END');
    assert.equal(error.human, 'wave runs only in the admin room.');
    assert.deepEqual(calls, []);
  });

  it('turns a command that throws into an E_BUG failure, with the stack only in the log message', async () => {
    const error = failure(await dispatch('explode', context('room', [thrower])));
    assert.equal(error.code, 'E_BUG');
    assert.equal(error.human, 'explode failed with an internal error; see the log.');
    assert.doesNotMatch(error.human, /kaboom/);
    assert.match(error.log, /^command explode threw: Error: kaboom at line 7/);
  });

  it('turns a thrown non-Error into an E_BUG failure too', async () => {
    const weird: Command = { ...thrower, name: 'weird', async execute() { throw 'a string'; } };
    const error = failure(await dispatch('weird', context('terminal', [weird])));
    assert.equal(error.code, 'E_BUG');
    assert.equal(error.log, 'command weird threw: a string');
  });

  it('returns a parse failure with the usage line', async () => {
    const error = failure(await dispatch('job nine', context('room')));
    assert.equal(error.code, 'E_USAGE');
    assert.equal(error.human, '<id> expects a whole number, got "nine".\nUsage: !job <id> [--errors N]');
  });

  it('runs a command with its parsed input and the caller context', async () => {
    assert.equal(replyText(await dispatch('echo hello "big world" --twice', context('room', [echo]))), 'room:@alice:example.org:hello big world (twice)');
    assert.equal(replyText(await dispatch('ECHO hi', context('terminal', [echo]))), 'terminal:-:hi');
  });

  it('runs the real help and status commands', async () => {
    const help = replyText(await dispatch('help dump users', context('room')));
    assert.match(help, /^Usage: !dump users \[--out PATH\]/);
    const overview = replyText(await dispatch('help', context('terminal', [roomOnly])));
    assert.match(overview, /steward status — version, homeserver, uptime and jobs/);
    assert.doesNotMatch(overview, /wave/, 'room-only commands are not listed on the terminal');
    const status = replyText(await dispatch('status', context('room')));
    assert.match(status, /^Steward 9\.9\.9\nHomeserver: example\.org at http:\/\/127\.0\.0\.1:8008 \(Synapse 1\.2\.3\)\nBot user: @steward:example\.org\nUp for: 1m05s\nJobs: none yet; 0 running now$/);
  });

  it('answers !job for a job that does not exist', async () => {
    const error = failure(await dispatch('job 4242', context('room')));
    assert.equal(error.code, 'E_NO_JOB');
    assert.equal(error.human, 'There is no job #4242.');
  });
});
