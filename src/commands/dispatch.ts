import { errorMessage, fail, type Result } from '../util/result.ts';
import type { CommandContext } from './context.ts';
import { findCommand, parseInput, suggest, tokenize } from './parse.ts';
import type { CommandOutput } from './types.ts';

/** Parses a command line and runs the command it names; the same path for room and terminal. */
export async function dispatch(line: string, ctx: CommandContext): Promise<Result<CommandOutput>> {
  const words = tokenize(line);
  if (!words.ok) return words;
  if (words.value.length === 0) return fail('E_USAGE', 'No command given. Try help.');
  const found = findCommand(words.value, ctx.commands);
  if (!found) {
    const near = suggest(words.value, ctx.commands.filter((c) => c.frontEnds.includes(ctx.frontEnd)));
    const prefix = ctx.frontEnd === 'room' ? '!' : 'steward ';
    return fail('E_UNKNOWN_COMMAND', `Unknown command "${words.value.slice(0, 2).join(' ')}".${near ? ` Did you mean ${prefix}${near}?` : ''} Type ${prefix}help for the list.`);
  }
  if (!found.command.frontEnds.includes(ctx.frontEnd)) {
    return fail('E_WRONG_FRONT_END', ctx.frontEnd === 'room'
      ? `${found.command.name} runs only in the terminal (steward ${found.command.name}), never in a room.`
      : `${found.command.name} runs only in the admin room.`);
  }
  const input = parseInput(found.command, found.rest);
  if (!input.ok) return input;
  try {
    return await found.command.execute(ctx, input.value);
  } catch (err) {
    // An exception here is a bug in the command; the admin gets a message, the service lives on.
    return fail('E_BUG', `${found.command.name} failed with an internal error; see the log.`, `command ${found.command.name} threw: ${err instanceof Error ? err.stack ?? err.message : errorMessage(err)}`);
  }
}
