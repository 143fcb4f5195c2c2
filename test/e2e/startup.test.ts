// Start-up order as a new deployment meets it: Steward started before Synapse waits for it
// (logged, with backoff) instead of exiting with a misleading message about the registration.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { trackChild } from '../rig/reaper.ts';
import { MAIN, startStewardWithSynapse, type StewardSetup } from '../rig/steward.ts';
import { command } from './room-helpers.ts';

describe('start-up before the homeserver', () => {
  let s: StewardSetup;
  let child: ChildProcess | null = null;

  before(async () => {
    s = await startStewardWithSynapse();
  });

  after(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    await s?.steward.stop();
    await s?.hs.cleanup();
  });

  it('waits for Synapse, logging each retry, then starts and answers commands', async () => {
    await s.steward.stop();
    await s.hs.stop();
    const before = (await s.steward.logLines()).length;
    const newLines = async (): Promise<Record<string, unknown>[]> => (await s.steward.logLines()).slice(before);

    const out = openSync(s.steward.logPath, 'a');
    child = spawn(process.execPath, [MAIN, 'run', '-c', s.steward.configPath, '-r', s.steward.registrationPath], { stdio: ['ignore', out, out], cwd: s.steward.dir });
    closeSync(out);
    trackChild(child);
    child.ref();

    // Two logged retries while Synapse is down, and the process is still alive.
    for (;;) {
      const retries = (await newLines()).filter((l) => String(l.msg).includes('the homeserver is not reachable yet'));
      if (retries.length >= 2) {
        assert.ok(retries.every((l) => l.level === 40 && typeof l.retryInMs === 'number'));
        assert.ok((retries[1]!.retryInMs as number) > (retries[0]!.retryInMs as number), 'backoff grows');
        break;
      }
      assert.equal(child.exitCode, null, `Steward exited while waiting: ${JSON.stringify((await newLines()).slice(-5))}`);
      await sleep(100);
    }
    assert.ok(!(await newLines()).some((l) => /registration/i.test(String(l.msg))));

    await s.hs.start();
    for (;;) {
      const lines = await newLines();
      if (lines.some((l) => l.msg === 'Steward is running')) break;
      const fatal = lines.find((l) => (l.level as number) >= 60);
      assert.equal(fatal, undefined);
      assert.equal(child.exitCode, null, `Steward exited: ${JSON.stringify(lines.slice(-5))}`);
      await sleep(100);
    }
    assert.ok((await newLines()).some((l) => l.msg === 'the homeserver answers now'));
    const { reply } = await command(s.adminClient, s.steward.adminRoomId, s.steward.botUserId, '!status', 60_000);
    assert.match(reply.content.body, /^Steward \d+\.\d+\.\d+/);
  });
});
