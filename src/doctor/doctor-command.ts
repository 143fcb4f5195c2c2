import type { Command } from '../commands/types.ts';
import { fail, ok } from '../util/result.ts';
import { renderReport, worst } from './check.ts';

export const doctorCommand: Command = {
  name: 'doctor',
  summary: 'checks this deployment: ✅ / ⚠️ / ❌ with the fix for each',
  description:
    'Checks the homeserver is reachable, the registration is loaded and matches, the admin API rights, that Synapse reaches Steward (ping), ' +
    'that transactions and ephemeral events arrive (in the room: a test event and read receipt sent as the bot must come back through Steward), ' +
    'that the configured signing key is the one the server publishes, the key notary (federation.notary, or our own server), rate-limit exemption, ' +
    'each log source, redaction_retention_period (homeserver.synapse_config) and the free space where dumps go. ' +
    'Every check is independent and bounded in time. On the terminal the exit code is 1 when any check failed (❌), 0 otherwise (warnings allowed).',
  params: [],
  flags: [],
  frontEnds: ['room', 'terminal'],
  // The doctor checks the homeserver itself: the terminal must not give up before it runs.
  offline: true,
  examples: ['doctor', 'doctor --json'],
  async execute(ctx) {
    if (!ctx.doctor) return fail('E_UNAVAILABLE', 'The doctor is not available in this front end.');
    const results = await ctx.doctor.run();
    const note = ctx.frontEnd === 'terminal'
      ? 'From the terminal: no running appservice here, so event and receipt delivery are not round-tripped (the ping shows whether a running Steward is reachable); !doctor in the admin room tests them.'
      : undefined;
    const { text, html } = renderReport(results, note);
    const failed = worst(results) === 'fail';
    return ok({ kind: 'reply', text, html, exitCode: failed ? 1 : 0, data: { checks: results } });
  },
};
