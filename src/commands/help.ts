import type { Command, FrontEnd } from './types.ts';
import { escapeHtml } from '../util/html.ts';

export function usage(command: Command, prefix = '!'): string {
  const params = command.params.map((p) => (p.optional ? `[<${p.name}>]` : `<${p.name}>`));
  const flags = command.flags.map((f) => {
    const value = f.type === 'boolean' ? '' : ` ${f.type === 'int' ? 'N' : f.type === 'user' ? '@user:server' : f.type === 'room' ? 'ROOM' : f.type === 'path' ? 'PATH' : 'VALUE'}`;
    return `[--${f.name}${value}]${f.repeatable ? '…' : ''}`;
  });
  return [`${prefix}${command.name}`, ...params, ...flags].join(' ');
}

/** Help for every command available on one front end, generated from the declarations. */
export function overview(commands: readonly Command[], frontEnd: FrontEnd): { text: string; html: string } {
  const prefix = frontEnd === 'room' ? '!' : 'steward ';
  const visible = commands.filter((c) => c.frontEnds.includes(frontEnd));
  const text = [`Commands${frontEnd === 'room' ? ' (type !help <command> for details)' : ' (steward help <command> for details)'}:`,
    ...visible.map((c) => `  ${prefix}${c.name} — ${c.summary}`)].join('\n');
  const html = `<p><b>Commands</b> (<code>${prefix}help &lt;command&gt;</code> for details)</p><ul>${visible
    .map((c) => `<li><code>${escapeHtml(prefix + c.name)}</code> — ${escapeHtml(c.summary)}</li>`).join('')}</ul>`;
  return { text, html };
}

export function commandHelp(command: Command, frontEnd: FrontEnd): { text: string; html: string } {
  const prefix = frontEnd === 'room' ? '!' : 'steward ';
  const lines = [`Usage: ${usage(command, prefix)}`, '', command.description ?? command.summary];
  const rows: string[] = [];
  for (const p of command.params) rows.push(`  <${p.name}>  ${p.description}${p.optional ? ' (optional)' : ''}`);
  for (const f of command.flags) rows.push(`  --${f.name}  ${f.description}${f.repeatable ? ' (repeatable)' : ''}`);
  if (rows.length) lines.push('', ...rows);
  if (command.examples?.length) lines.push('', 'Examples:', ...command.examples.map((e) => `  ${prefix}${e}`));
  if (!command.frontEnds.includes('room')) lines.push('', 'Terminal only.');
  const text = lines.join('\n');
  const html = `<p><code>${escapeHtml(usage(command, prefix))}</code></p><p>${escapeHtml(command.description ?? command.summary)}</p>${
    rows.length ? `<ul>${[...command.params.map((p) => `<li><code>&lt;${escapeHtml(p.name)}&gt;</code> ${escapeHtml(p.description)}${p.optional ? ' (optional)' : ''}</li>`),
      ...command.flags.map((f) => `<li><code>--${escapeHtml(f.name)}</code> ${escapeHtml(f.description)}${f.repeatable ? ' (repeatable)' : ''}</li>`)].join('')}</ul>` : ''}${
    command.examples?.length ? `<p>Examples:</p><pre>${command.examples.map((e) => escapeHtml(prefix + e)).join('\n')}</pre>` : ''}`;
  return { text, html };
}
