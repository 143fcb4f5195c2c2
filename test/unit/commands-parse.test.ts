import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ALL_COMMANDS } from '../../src/commands/all-commands.ts';
import { findCommand, parseInput, suggest, tokenize } from '../../src/commands/parse.ts';
import { usage } from '../../src/commands/help.ts';
import type { Command, CommandInput } from '../../src/commands/types.ts';
import type { Result } from '../../src/util/result.ts';

function command(name: string): Command {
  const found = ALL_COMMANDS.find((c) => c.name === name);
  assert.ok(found, `no command ${name}`);
  return found;
}

function words(line: string): string[] {
  const result = tokenize(line);
  if (!result.ok) assert.fail(`tokenize failed: ${result.error.human}`);
  return result.value;
}

function parsed(result: Result<CommandInput>): CommandInput {
  if (!result.ok) assert.fail(`expected a parse, got: ${result.error.human}`);
  return result.value;
}

/** The failure message of a parse that must fail; checks it ends with the usage line. */
function refused(cmd: Command, args: string): string {
  const result = parseInput(cmd, words(args));
  if (result.ok) assert.fail(`expected "${args}" to be refused`);
  assert.equal(result.error.code, 'E_USAGE');
  const [message, usageLine, ...more] = result.error.human.split('\n');
  assert.equal(usageLine, `Usage: ${usage(cmd)}`);
  assert.deepEqual(more, []);
  return message!;
}

const noop = async (): Promise<never> => {
  throw new Error('not run in these tests');
};

/** A command with every kind of parameter and flag. */
const fake: Command = {
  name: 'fake thing',
  summary: 'for tests',
  params: [
    { name: 'who', type: 'user', description: 'a user' },
    { name: 'where', type: 'room', description: 'a room', optional: true },
  ],
  flags: [
    { name: 'count', type: 'int', description: 'how many', min: 1, max: 10 },
    { name: 'offset', type: 'int', description: 'any whole number' },
    { name: 'tag', type: 'string', description: 'tags', repeatable: true },
    { name: 'dry-run', type: 'boolean', description: 'do nothing' },
    { name: 'room', type: 'room', description: 'another room' },
  ],
  frontEnds: ['room', 'terminal'],
  execute: noop,
};

const say: Command = {
  name: 'say',
  summary: 'for tests',
  params: [
    { name: 'target', type: 'room', description: 'where' },
    { name: 'text', type: 'string', description: 'what', rest: true },
  ],
  flags: [{ name: 'loud', type: 'boolean', description: 'shout' }],
  frontEnds: ['room'],
  execute: noop,
};

describe('tokenize', () => {
  it('splits on any whitespace and drops empty words', () => {
    assert.deepEqual(words('  dump   users\t--user\n@a:b  '), ['dump', 'users', '--user', '@a:b']);
    assert.deepEqual(words(''), []);
    assert.deepEqual(words('   '), []);
  });

  it('groups words in double or single quotes', () => {
    assert.deepEqual(words(`say "hello world" 'and you'`), ['say', 'hello world', 'and you']);
    assert.deepEqual(words(`a"b c"d`), ['ab cd']);
  });

  it('keeps an empty quoted word', () => {
    assert.deepEqual(words(`a "" b ''`), ['a', '', 'b', '']);
  });

  it('keeps the other kind of quote inside quotes', () => {
    assert.deepEqual(words(`"it's" 'say "hi"'`), [`it's`, 'say "hi"']);
  });

  it('escapes with a backslash outside and inside double quotes, not inside single quotes', () => {
    assert.deepEqual(words(String.raw`a\ b \"c\" "x\"y" 'p\q'`), ['a b', '"c"', 'x"y', String.raw`p\q`]);
    assert.deepEqual(words(String.raw`\\`), ['\\']);
  });

  it('keeps a trailing lone backslash literally', () => {
    assert.deepEqual(words('end\\'), ['end\\']);
  });

  it('refuses an unclosed quote', () => {
    for (const [line, quote] of [[`say "hello`, '"'], [`say 'hello`, "'"], [`"a" 'b`, "'"]] as const) {
      const result = tokenize(line);
      assert.equal(result.ok, false, line);
      if (result.ok) continue;
      assert.equal(result.error.code, 'E_USAGE');
      assert.equal(result.error.human, `Unclosed ${quote} quote.`);
    }
  });
});

describe('findCommand', () => {
  const commands = [...ALL_COMMANDS, fake];

  it('picks the longest multi-word name that prefixes the words', () => {
    const dump: Command = { ...fake, name: 'dump' };
    const found = findCommand(['dump', 'users', '--user', '@a:b'], [dump, ...commands]);
    assert.equal(found?.command.name, 'dump users');
    assert.deepEqual(found?.rest, ['--user', '@a:b']);
    // Order of declaration does not matter.
    assert.equal(findCommand(['dump', 'users'], [...commands, dump])?.command.name, 'dump users');
    assert.equal(findCommand(['dump', 'media'], [...commands, dump])?.command.name, 'dump');
  });

  it('tells job from jobs', () => {
    assert.equal(findCommand(['job', '3'], commands)?.command.name, 'job');
    assert.equal(findCommand(['jobs'], commands)?.command.name, 'jobs');
  });

  it('matches the command words case-insensitively and leaves arguments as typed', () => {
    const found = findCommand(['DUMP', 'Users', '--out', 'A/B'], commands);
    assert.equal(found?.command.name, 'dump users');
    assert.deepEqual(found?.rest, ['--out', 'A/B']);
  });

  it('finds nothing for an unknown or incomplete name', () => {
    assert.equal(findCommand(['stauts'], commands), undefined);
    assert.equal(findCommand(['dump'], commands), undefined);
    assert.equal(findCommand([], commands), undefined);
  });
});

describe('suggest', () => {
  it('suggests the nearest command name', () => {
    assert.equal(suggest(['dump', 'user'], ALL_COMMANDS), 'dump users');
    assert.equal(suggest(['stauts'], ALL_COMMANDS), 'status');
    assert.equal(suggest(['hlep'], ALL_COMMANDS), 'help');
  });

  it('completes a first word to a multi-word command', () => {
    assert.equal(suggest(['dump'], ALL_COMMANDS), 'dump users');
  });

  it('suggests nothing for something unrelated', () => {
    assert.equal(suggest(['xyzzyplugh'], ALL_COMMANDS), undefined);
  });
});

describe('parseInput with the real declarations', () => {
  it('parses dump users with no arguments', () => {
    const input = parsed(parseInput(command('dump users'), []));
    assert.equal(input.params.size, 0);
    assert.equal(input.flags.size, 0);
    assert.equal(input.bool('include-deactivated'), false);
    assert.deepEqual(input.list('user'), []);
    assert.equal(input.string('out'), undefined);
    assert.equal(input.int('concurrency'), undefined);
  });

  it('parses --flag value and --flag=value forms', () => {
    const input = parsed(parseInput(command('dump users'), words('--out /srv/dumps --concurrency=8')));
    assert.equal(input.string('out'), '/srv/dumps');
    assert.equal(input.int('concurrency'), 8);
  });

  it('keeps an = inside a --flag=value value', () => {
    assert.equal(parsed(parseInput(command('dump users'), words('--out=/a=b'))).string('out'), '/a=b');
  });

  it('parses boolean flags and refuses a value on them', () => {
    assert.equal(parsed(parseInput(command('dump users'), words('--include-deactivated'))).bool('include-deactivated'), true);
    assert.equal(refused(command('dump users'), '--include-deactivated=yes'), '--include-deactivated takes no value.');
  });

  it('collects a repeatable flag in order', () => {
    const input = parsed(parseInput(command('dump users'), words('--user @alice:example.org --user=@bob:example.org')));
    assert.deepEqual(input.list('user'), ['@alice:example.org', '@bob:example.org']);
    assert.equal(input.string('user'), undefined, 'a list is not a single string');
  });

  it('refuses a non-repeatable flag given twice', () => {
    assert.equal(refused(command('dump users'), '--out a --out b'), '--out was given twice.');
  });

  it('checks int ranges and forms', () => {
    assert.equal(refused(command('dump users'), '--concurrency 0'), '--concurrency must be from 1 to 64, got 0.');
    assert.equal(refused(command('dump users'), '--concurrency 65'), '--concurrency must be from 1 to 64, got 65.');
    assert.equal(refused(command('dump users'), '--concurrency eight'), '--concurrency expects a whole number, got "eight".');
    assert.equal(refused(command('dump users'), '--concurrency 1.5'), '--concurrency expects a whole number, got "1.5".');
    assert.equal(parsed(parseInput(command('dump users'), words('--concurrency 64'))).int('concurrency'), 64);
    assert.equal(parsed(parseInput(command('jobs'), words('--limit 1'))).int('limit'), 1);
  });

  it('validates user ids', () => {
    assert.equal(refused(command('dump users'), '--user alice'), '--user expects a full Matrix ID such as @alice:example.org, got "alice".');
    assert.equal(refused(command('dump users'), '--user @alice'), '--user expects a full Matrix ID such as @alice:example.org, got "@alice".');
  });

  it('says when a flag has no value', () => {
    assert.equal(refused(command('dump users'), '--out'), '--out needs a value.');
  });

  it('refuses an unknown flag with a suggestion', () => {
    assert.equal(refused(command('dump users'), '--users @a:b'), 'Unknown option --users (did you mean --user?).');
    assert.equal(refused(command('dump users'), '--include-deactivate'), 'Unknown option --include-deactivate (did you mean --include-deactivated?).');
    assert.equal(refused(command('dump users'), '--zzzzzzzz'), 'Unknown option --zzzzzzzz.');
    assert.equal(refused(command('status'), '--verbose'), 'Unknown option --verbose.');
  });

  it('parses job <id> and refuses it missing or not a number', () => {
    const input = parsed(parseInput(command('job'), words('12 --errors 0')));
    assert.equal(input.param('id'), '12');
    assert.equal(input.params.get('id'), 12);
    assert.equal(input.int('errors'), 0);
    assert.equal(refused(command('job'), ''), 'Missing <id>.');
    assert.equal(refused(command('job'), 'twelve'), '<id> expects a whole number, got "twelve".');
  });

  it('refuses too many arguments', () => {
    assert.equal(refused(command('job'), '1 2 3'), 'Too many arguments: 2 3.');
    assert.equal(refused(command('status'), 'now'), 'Too many arguments: now.');
    assert.equal(refused(command('dump users'), '@alice:example.org'), 'Too many arguments: @alice:example.org.');
  });

  it('joins the rest of the words into a rest parameter', () => {
    assert.equal(parsed(parseInput(command('help'), words('dump users'))).param('command'), 'dump users');
    assert.equal(parsed(parseInput(command('help'), [])).param('command'), undefined);
  });
});

describe('parseInput with a fake command', () => {
  it('converts every kind of value', () => {
    const input = parsed(parseInput(fake, words('@bob:hs.example !room:hs.example --count 3 --offset=-5 --tag a --tag b --dry-run --room #alias:hs')));
    assert.equal(input.param('who'), '@bob:hs.example');
    assert.equal(input.param('where'), '!room:hs.example');
    assert.equal(input.int('count'), 3);
    assert.equal(input.int('offset'), -5);
    assert.deepEqual(input.list('tag'), ['a', 'b']);
    assert.equal(input.bool('dry-run'), true);
    assert.equal(input.string('room'), '#alias:hs');
  });

  it('takes flags before, between and after positionals', () => {
    const input = parsed(parseInput(fake, words('--dry-run @bob:hs --count 2 !r:hs --tag x')));
    assert.equal(input.param('who'), '@bob:hs');
    assert.equal(input.param('where'), '!r:hs');
    assert.equal(input.int('count'), 2);
  });

  it('allows an optional parameter to be left out', () => {
    const input = parsed(parseInput(fake, words('@bob:hs')));
    assert.equal(input.param('where'), undefined);
    assert.equal(input.params.has('where'), false);
  });

  it('validates user and room parameters and flags', () => {
    assert.equal(refused(fake, 'bob'), '<who> expects a full Matrix ID such as @alice:example.org, got "bob".');
    assert.equal(refused(fake, '@bob:hs room'), '<where> expects a room id (!…) or alias (#…), got "room".');
    assert.equal(refused(fake, '@bob:hs --room @x:y'), '--room expects a room id (!…) or alias (#…), got "@x:y".');
  });

  it('checks the range of int flags', () => {
    assert.equal(refused(fake, '@bob:hs --count 11'), '--count must be from 1 to 10, got 11.');
    assert.equal(refused(fake, '@bob:hs --count=-1'), '--count must be from 1 to 10, got -1.');
  });

  it('refuses an empty string value', () => {
    assert.equal(refused(fake, `@bob:hs --tag ""`), '--tag must not be empty.');
  });

  it('reports the missing required parameter', () => {
    assert.equal(refused(fake, '--dry-run'), 'Missing <who>.');
  });

  it('joins the remaining words into a rest parameter, flags excluded', () => {
    const input = parsed(parseInput(say, words('!r:hs hello   big "wide world" --loud')));
    assert.equal(input.param('target'), '!r:hs');
    assert.equal(input.param('text'), 'hello big wide world');
    assert.equal(input.bool('loud'), true);
    assert.equal(parsed(parseInput(say, words('!r:hs one'))).param('text'), 'one');
    assert.equal(refused(say, '!r:hs'), 'Missing <text>.');
  });

  it('shows the usage line of the command', () => {
    assert.equal(usage(fake), '!fake thing <who> [<where>] [--count N] [--offset N] [--tag VALUE]… [--dry-run] [--room ROOM]');
    assert.equal(usage(command('dump users'), 'steward '), 'steward dump users [--out PATH] [--user @user:server]… [--include-deactivated] [--concurrency N] [--with-password-hashes] [--synapse-db VALUE]');
  });
});
