// The recovery drill (test/e2e/recovery.test.ts) on PostgreSQL: the rig backs Synapse up with
// pg_dump (custom format) and restores it with pg_restore into a recreated database, so Steward
// must find and rejoin the rooms a real Postgres restore loses.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { prepareSynapse } from '../rig/synapse.ts';

process.env['STEWARD_RIG_DB'] = 'postgres';

describe('PostgreSQL backup and restore in the rig', () => {
  it('backs up with pg_dump and restores with pg_restore: what came after the backup is gone', async () => {
    const hs = await prepareSynapse({ name: 'pg-drill', federation: false });
    try {
      await hs.start();
      const before = await hs.registerUser('before');
      await hs.stop();
      const backup = await hs.backupDatabase();
      assert.match(backup, /\.pgdump$/);
      assert.equal((await readFile(backup)).subarray(0, 5).toString('latin1'), 'PGDMP', 'a pg_dump custom-format archive');
      await hs.start();
      await hs.registerUser('after');
      await hs.stop();
      await hs.restoreDatabase(backup);
      await hs.start();
      const known = async (localpart: string) => (await fetch(`${hs.clientUrl}/_matrix/client/v3/register/available?username=${localpart}`)).status === 400;
      assert.equal(await known('before'), true, `${before.userId} survived the restore`);
      assert.equal(await known('after'), false, 'the user registered after the backup is gone');
    } finally {
      await hs.cleanup();
    }
  });
});

await import('./recovery.test.ts');
