import type { CommandContext } from '../commands/context.ts';
import { reply } from '../commands/reply.ts';
import type { Command } from '../commands/types.ts';
import { fail, ok, type Result } from '../util/result.ts';
import type { LinkedAccounts } from './linked-accounts.ts';
import { isMxid } from './mxid.ts';
import type { LocalLink } from './store.ts';

function linkedOf(ctx: CommandContext): Result<LinkedAccounts> {
  return ctx.linked ? ok(ctx.linked) : fail('E_UNAVAILABLE', 'Linked accounts are not available here.');
}

const day = (ts: number): string => new Date(ts).toISOString().slice(0, 16).replace('T', ' ');

function disabledNote(linked: LinkedAccounts): string[] {
  return linked.config.enabled ? [] : ['', 'Note: linked_accounts.enabled is off in the config, so nothing is mirrored.'];
}

function linkLine(link: LocalLink): string {
  return `${link.userA} ⟷ ${link.userB} (by ${link.createdBy ?? 'terminal'}, ${day(link.createdTs)} UTC)`;
}

export const linkCommand: Command = {
  name: 'link',
  summary: 'link Matrix IDs of one person (local links, for servers without a directory)',
  description: 'Puts the given Matrix IDs into one group of linked accounts: invites and read receipts of one are mirrored onto the others that live on this server. Each server\'s Steward acts for its own users, so link the same IDs on every server that runs Steward.',
  params: [{ name: 'accounts', type: 'string', description: 'two or more Matrix IDs', rest: true }],
  flags: [],
  frontEnds: ['room', 'terminal'],
  examples: ['link @alice:example.org @alice:other.example.org'],
  async execute(ctx, input) {
    const linked = linkedOf(ctx);
    if (!linked.ok) return linked;
    const words = [...new Set((input.param('accounts') ?? '').split(/\s+/).filter(Boolean))];
    const bad = words.filter((w) => !isMxid(w));
    if (bad.length) return fail('E_USAGE', `Not a Matrix ID: ${bad.join(', ')}. Use full IDs such as @alice:example.org.`);
    if (words.length < 2) return fail('E_USAGE', 'Give at least two different Matrix IDs to link.');
    const [first, ...rest] = words as [string, ...string[]];
    const added = linked.value.store.addLinks(rest.map((u) => [first, u] as const), ctx.sender ?? null);
    const group = linked.value.store.localComponent(first);
    return reply([
      added ? `Linked ${words.join(', ')} (${added} new link${added === 1 ? '' : 's'}).` : `${words.join(', ')} were already linked.`,
      `Local group now: ${[first, ...group.members].sort().join(', ')}`,
      ...disabledNote(linked.value),
    ].join('\n'));
  },
};

export const unlinkCommand: Command = {
  name: 'unlink',
  summary: 'remove the local link between two Matrix IDs',
  params: [
    { name: 'account', type: 'user', description: 'a Matrix ID' },
    { name: 'other', type: 'user', description: 'the Matrix ID to unlink it from' },
  ],
  flags: [],
  frontEnds: ['room', 'terminal'],
  examples: ['unlink @alice:example.org @alice:other.example.org'],
  async execute(ctx, input) {
    const linked = linkedOf(ctx);
    if (!linked.ok) return linked;
    const a = input.param('account')!;
    const b = input.param('other')!;
    const store = linked.value.store;
    const removed = store.removeLink(a, b);
    const still = store.localComponent(a).members.includes(b);
    const lines = [removed ? `Removed the local link ${a} ⟷ ${b}.` : `${a} and ${b} had no direct local link.`];
    if (still) lines.push(`They are still in one local group through other links: ${[a, ...store.localComponent(a).members].sort().join(', ')}. Unlink those too to separate them.`);
    if (linked.value.directory) lines.push('Links from the directory are not changed by this; the directory decides those.');
    return reply(lines.join('\n'));
  },
};

export const linksCommand: Command = {
  name: 'links',
  summary: "an account's linked accounts and where each link comes from (directory or local)",
  description: 'With a Matrix ID: its linked accounts, each marked "directory" or "local" (with who linked them), asking the directory if one is configured. Without: every local group.',
  params: [{ name: 'account', type: 'user', description: 'a Matrix ID', optional: true }],
  flags: [],
  frontEnds: ['room', 'terminal'],
  examples: ['links @alice:example.org', 'links'],
  async execute(ctx, input) {
    const linked = linkedOf(ctx);
    if (!linked.ok) return linked;
    const account = input.param('account');
    const { store, directory } = linked.value;
    if (!account) {
      const seen = new Set<string>();
      const groups: string[][] = [];
      for (const u of store.locallyLinkedUsers().sort()) {
        if (seen.has(u)) continue;
        const members = [u, ...store.localComponent(u).members].sort();
        members.forEach((m) => seen.add(m));
        groups.push(members);
      }
      const lines = groups.length ? [`${groups.length} local group(s):`, ...groups.map((g) => `  ${g.join(', ')}`)] : ['No local links. Add some with !link.'];
      lines.push(directory ? 'A directory is configured: ask !links @user for its answer.' : 'No directory is configured (linked_accounts.directory).');
      return reply([...lines, ...disabledNote(linked.value)].join('\n'));
    }
    const local = store.localComponent(account);
    const sources = new Map<string, string[]>();
    for (const u of local.members) sources.set(u, ['local']);
    let directoryLine: string;
    if (directory) {
      const answer = await directory.lookup(account);
      if (answer.ok) {
        for (const u of answer.value) sources.set(u, [...(sources.get(u) ?? []), 'directory']);
        directoryLine = `Directory: ${answer.value.length ? `names ${answer.value.length} linked account(s)` : 'knows no linked accounts'}.`;
      } else {
        directoryLine = `Directory: no usable answer (${answer.error.human}) — nothing is mirrored for ${account} until it answers.`;
      }
    } else {
      directoryLine = 'Directory: not configured.';
    }
    const lines = [`Linked accounts of ${account}:`];
    if (sources.size === 0) lines.push('  none');
    for (const [u, s] of [...sources].sort(([x], [y]) => x.localeCompare(y))) {
      lines.push(`  ${u} — ${s.join(' + ')}${linked.value.isLocal(u) ? ' (on this server)' : ''}`);
    }
    lines.push(directoryLine);
    if (local.links.length) lines.push('Local links:', ...local.links.map((l) => `  ${linkLine(l)}`));
    store.flushCounters(); // the lookup's counters, also from a short-lived terminal process
    return reply([...lines, ...disabledNote(linked.value)].join('\n'));
  },
};

export const linksActivityCommand: Command = {
  name: 'links activity',
  summary: 'recent mirror actions: invites, auto-joins, read receipts',
  params: [],
  flags: [
    { name: 'limit', type: 'int', description: 'how many (default 20)', min: 1, max: 500 },
    { name: 'user', type: 'user', description: 'only actions for or from this account' },
  ],
  frontEnds: ['room', 'terminal'],
  examples: ['links activity', 'links activity --user @alice:example.org --limit 50'],
  async execute(ctx, input) {
    const linked = linkedOf(ctx);
    if (!linked.ok) return linked;
    const rows = linked.value.store.activity(input.int('limit') ?? 20, input.string('user'));
    if (rows.length === 0) return reply(['No mirror actions yet.', ...disabledNote(linked.value)].join('\n'));
    const mark = { ok: '✓', failed: '✗', skipped: '–' } as const;
    const lines = rows.map((r) => `${day(r.ts)} ${mark[r.outcome] ?? '?'} ${r.action}${r.target ? ` → ${r.target}` : ''}${r.source ? ` (for ${r.source})` : ''}${r.roomId ? ` in ${r.roomId}` : ''}${r.detail ? `: ${r.detail}` : ''}`);
    return reply([`Last ${rows.length} mirror action(s), oldest first (times UTC):`, ...lines].join('\n'));
  },
};

export const linksStatusCommand: Command = {
  name: 'links status',
  summary: 'linked accounts: settings and counters (directory lookups and errors, mirrored receipts and invites)',
  params: [],
  flags: [],
  frontEnds: ['room', 'terminal'],
  async execute(ctx) {
    const linked = linkedOf(ctx);
    if (!linked.ok) return linked;
    const { config, store, directory } = linked.value;
    const counters = store.counters();
    const lines = [
      `Linked accounts: ${config.enabled ? 'enabled' : 'disabled (linked_accounts.enabled)'}; auto_join ${config.autoJoin ? 'on' : 'off'}; reinvite_left ${config.reinviteLeft ? 'on' : 'off'}`,
      config.directory
        ? `Directory: ${new URL(config.directory.urlTemplate.replace('{mxid}', 'x')).origin} · timeout ${config.directory.timeoutMs} ms · cache ${config.directory.cacheSeconds}s, negative ${config.directory.negativeCacheSeconds}s${directory ? ` · ${directory.cacheSize} cached in this process` : ''}`
        : 'Directory: not configured (local links only)',
      'Counters (since the database was created):',
    ];
    const names = Object.keys(counters);
    if (names.length === 0) lines.push('  none yet');
    for (const name of names) lines.push(`  ${name}: ${counters[name]}`);
    return reply(lines.join('\n'));
  },
};

export const LINKED_COMMANDS: readonly Command[] = [linkCommand, unlinkCommand, linksCommand, linksActivityCommand, linksStatusCommand];
