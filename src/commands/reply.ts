import { escapeHtml } from '../util/html.ts';
import { ok, type Result } from '../util/result.ts';
import type { CommandOutput } from './types.ts';

/** A plain-text answer; in the room it is shown preformatted unless the command gives its own HTML. */
export function reply(text: string, html = `<pre>${escapeHtml(text)}</pre>`): Result<CommandOutput> {
  return ok({ kind: 'reply', text, html });
}
