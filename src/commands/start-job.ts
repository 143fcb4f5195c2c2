import type { CommandContext } from './context.ts';
import type { CommandOutput } from './types.ts';
import { ok, type Result } from '../util/result.ts';

/**
 * Creates the job a command asked for. In the room the runner schedules it; in the terminal the
 * caller runs it in-process, and a re-run of the same command resumes an unfinished one.
 */
export function startJob(ctx: CommandContext, type: string, args: Record<string, unknown>): Result<CommandOutput> {
  if (ctx.frontEnd === 'terminal') {
    const unfinished = ctx.jobs.findUnfinished(type, args, 'terminal');
    if (unfinished) return ok({ kind: 'job', job: unfinished, created: false });
    return ok({ kind: 'job', ...ctx.jobs.create({ type, args, origin: 'terminal' }) });
  }
  const submitted = ctx.runner.submit({
    type,
    args,
    origin: 'room',
    ...(ctx.sender ? { requestedBy: ctx.sender } : {}),
    ...(ctx.roomId ? { roomId: ctx.roomId } : {}),
    ...(ctx.commandEventId ? { commandEventId: ctx.commandEventId } : {}),
  });
  return ok({ kind: 'job', ...submitted });
}
