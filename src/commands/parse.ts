import { nearest } from '../config/reader.ts';
import { fail, ok, type Result } from '../util/result.ts';
import { CommandInput, type Command, type FlagSpec, type ParamSpec, type Value } from './types.ts';
import { usage } from './help.ts';

/** Splits a command line into words; single or double quotes group words, backslash escapes. */
export function tokenize(line: string): Result<string[]> {
  const words: string[] = [];
  let current = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\' && i + 1 < line.length && quote !== "'") {
      current += line[++i];
      inWord = true;
    } else if (quote) {
      if (c === quote) quote = null;
      else current += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(current);
      current = '';
      inWord = false;
    } else {
      current += c;
      inWord = true;
    }
  }
  if (quote) return fail('E_USAGE', `Unclosed ${quote} quote.`);
  if (inWord) words.push(current);
  return ok(words);
}

/** Finds the command whose name is the longest prefix of the words. */
export function findCommand(words: readonly string[], commands: readonly Command[]): { command: Command; rest: string[] } | undefined {
  let best: { command: Command; rest: string[] } | undefined;
  for (const command of commands) {
    const nameWords = command.name.split(' ');
    if (nameWords.every((w, i) => words[i]?.toLowerCase() === w) && (!best || nameWords.length > best.command.name.split(' ').length)) {
      best = { command, rest: words.slice(nameWords.length) };
    }
  }
  return best;
}

export function suggest(words: readonly string[], commands: readonly Command[]): string | undefined {
  const names = commands.map((c) => c.name);
  const typed = words.slice(0, 2).join(' ').toLowerCase();
  return nearest(typed, names) ?? nearest(words[0]?.toLowerCase() ?? '', names) ?? names.find((n) => n.startsWith(`${words[0]?.toLowerCase()} `));
}

const USER_ID = /^@[^:\s]+:[^\s]+$/;
const ROOM_REF = /^[!#][^\s]+$/;

function convert(spec: ParamSpec | FlagSpec, raw: string, label: string): Result<Value> {
  switch (spec.type) {
    case 'int': {
      if (!/^-?\d+$/.test(raw)) return fail('E_USAGE', `${label} expects a whole number, got "${raw}".`);
      const n = Number(raw);
      const { min, max } = spec as FlagSpec;
      if ((min !== undefined && n < min) || (max !== undefined && n > max)) return fail('E_USAGE', `${label} must be from ${min ?? '-∞'} to ${max ?? '∞'}, got ${n}.`);
      return ok(n);
    }
    case 'user':
      return USER_ID.test(raw) ? ok(raw) : fail('E_USAGE', `${label} expects a full Matrix ID such as @alice:example.org, got "${raw}".`);
    case 'room':
      return ROOM_REF.test(raw) ? ok(raw) : fail('E_USAGE', `${label} expects a room id (!…) or alias (#…), got "${raw}".`);
    case 'boolean':
      return ok(true);
    default:
      return raw.length > 0 ? ok(raw) : fail('E_USAGE', `${label} must not be empty.`);
  }
}

/** Checks the words after the command name against its declaration. */
export function parseInput(command: Command, words: readonly string[]): Result<CommandInput> {
  const params = new Map<string, Value>();
  const flags = new Map<string, Value | Value[]>();
  const positional: string[] = [];
  const bad = (message: string): Result<never> => fail('E_USAGE', `${message}\nUsage: ${usage(command)}`);

  for (let i = 0; i < words.length; i++) {
    const word = words[i]!;
    if (!word.startsWith('--') || word === '--') {
      positional.push(word);
      continue;
    }
    const eq = word.indexOf('=');
    const name = word.slice(2, eq > 0 ? eq : undefined);
    const spec = command.flags.find((f) => f.name === name);
    if (!spec) {
      const near = nearest(name, command.flags.map((f) => f.name));
      return bad(`Unknown option --${name}${near ? ` (did you mean --${near}?)` : ''}.`);
    }
    let raw: string;
    if (spec.type === 'boolean') {
      if (eq > 0) return bad(`--${name} takes no value.`);
      raw = '';
    } else if (eq > 0) {
      raw = word.slice(eq + 1);
    } else {
      const next = words[i + 1];
      if (next === undefined) return bad(`--${name} needs a value.`);
      raw = next;
      i++;
    }
    const value = convert(spec, raw, `--${name}`);
    if (!value.ok) return bad(value.error.human);
    if (spec.repeatable) {
      const list = (flags.get(name) as Value[] | undefined) ?? [];
      list.push(value.value);
      flags.set(name, list);
    } else if (flags.has(name)) {
      return bad(`--${name} was given twice.`);
    } else {
      flags.set(name, value.value);
    }
  }

  const last = command.params[command.params.length - 1];
  if (last?.rest && positional.length > command.params.length) {
    positional.splice(command.params.length - 1, positional.length, positional.slice(command.params.length - 1).join(' '));
  }
  if (positional.length > command.params.length) return bad(`Too many arguments: ${positional.slice(command.params.length).join(' ')}.`);
  for (const [i, spec] of command.params.entries()) {
    const raw = positional[i];
    if (raw === undefined) {
      if (!spec.optional) return bad(`Missing <${spec.name}>.`);
      continue;
    }
    const value = convert(spec, raw, `<${spec.name}>`);
    if (!value.ok) return bad(value.error.human);
    params.set(spec.name, value.value);
  }
  return ok(new CommandInput(params, flags));
}
