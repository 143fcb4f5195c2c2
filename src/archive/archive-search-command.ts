import { reply } from '../commands/reply.ts';
import type { Command } from '../commands/types.ts';
import { escapeHtml } from '../util/html.ts';
import { fail, type Result } from '../util/result.ts';
import type { CommandOutput } from '../commands/types.ts';
import { outOf } from './archive-commands.ts';
import { searchArchive, SNIPPET_CLOSE, SNIPPET_OPEN, type SearchAnswer, type SearchQuery } from './views/archive-search.ts';

const DEFAULT_LIMIT = 20;

export const archiveSearchCommand: Command = {
  name: 'archive search',
  summary: 'full-text search of the room history archive, newest first, with links to the events',
  description:
    'Searches the bodies of archived messages (edits by their new text) in <archive>/archive.sqlite. Every word must occur (AND); ' +
    'a word ending in * matches as a prefix (hel*). --room, --sender, --from and --to (UTC days, YYYY-MM-DD, both inclusive) narrow it. ' +
    'Each hit shows the time (UTC), room, sender (display name as it was then), a snippet and a matrix.to link to the event ' +
    '(an edit links to the message it edits). Needs no homeserver: the index is a file.',
  params: [{ name: 'words', type: 'string', description: 'words to find', rest: true }],
  flags: [
    { name: 'room', type: 'room', description: 'only this room (a room id)' },
    { name: 'sender', type: 'user', description: 'only messages sent by this user' },
    { name: 'from', type: 'string', description: 'first day, YYYY-MM-DD (UTC)' },
    { name: 'to', type: 'string', description: 'last day, YYYY-MM-DD (UTC)' },
    { name: 'limit', type: 'int', description: `hits shown (default ${DEFAULT_LIMIT})`, min: 1, max: 500 },
    { name: 'out', type: 'path', description: 'the archive folder (default: archive.out from the config)' },
  ],
  frontEnds: ['room', 'terminal'],
  offline: true,
  examples: ['archive search budget meeting', 'archive search deploy* --room !abc:example.org --from 2026-11-01 --to 2026-11-30', 'archive search lunch --sender @alice:example.org --limit 5'],
  async execute(ctx, input) {
    const room = input.string('room');
    if (room !== undefined && !room.startsWith('!')) return fail('E_USAGE', `--room takes a room id (!…), not an alias: ${room}.`);
    const query: SearchQuery = {
      words: input.param('words') ?? '',
      roomId: room,
      sender: input.string('sender'),
      from: input.string('from'),
      to: input.string('to'),
      limit: input.int('limit') ?? DEFAULT_LIMIT,
    };
    const answer = searchArchive(outOf(ctx, input.string('out')), query);
    if (!answer.ok) return answer;
    return searchReply(query, answer.value);
  },
};

function when(ts: number): string {
  return `${new Date(ts).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

export function searchReply(query: SearchQuery, answer: SearchAnswer): Result<CommandOutput> {
  const shown = answer.hits.length;
  const head = answer.total === 0
    ? `No archived message matches ${JSON.stringify(query.words.trim())}.`
    : `${answer.total} hit(s) for ${JSON.stringify(query.words.trim())}${shown < answer.total ? `, newest ${shown} shown (--limit)` : ', newest first'}:`;
  const text: string[] = [head];
  const html: string[] = [`<p>${escapeHtml(head)}</p>`];
  if (shown > 0) html.push('<ol>');
  for (const h of answer.hits) {
    const marks = `${h.edit ? ' (edit)' : ''}${h.deleted ? ' (deleted)' : ''}`;
    const who = h.senderName === h.sender ? h.sender : `${h.senderName} (${h.sender})`;
    text.push('', `${when(h.ts)} · ${h.roomId} · ${who}${marks}`, `  ${h.snippet}`, `  ${h.link}`);
    const snippet = escapeHtml(h.snippet).split(SNIPPET_OPEN).join('<b>').split(SNIPPET_CLOSE).join('</b>');
    html.push(`<li>${escapeHtml(when(h.ts))} · <code>${escapeHtml(h.roomId)}</code> · ${escapeHtml(who)}${escapeHtml(marks)}<br>${snippet}<br><a href="${escapeHtml(h.link)}">${escapeHtml(h.link)}</a></li>`);
  }
  if (shown > 0) html.push('</ol>');
  return reply(text.join('\n'), html.join(''));
}
