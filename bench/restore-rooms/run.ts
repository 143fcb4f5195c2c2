// Benchmark of `steward restore rooms --archive` after a total loss (issue 9).
//
//   node bench/restore-rooms/run.ts [--rooms 20] [--messages 50] [--repeat 1]
//
// One Synapse with Steward. `--rooms` rooms only this server is in, each with a name, an alias,
// two members and `--messages` messages (alternating senders, one reply each ten), are dumped
// (`steward dump rooms`) and archived (the steward.archive/1 layout). Before every run Synapse's
// database is deleted, it starts empty with the same key, and the two users are registered
// again. Each run times:
//   (a) the real `steward restore rooms DUMP --archive DIR` CLI process, and
//   (b) a plain script doing the core of the same work with the same API, one room after the
//       other as Steward does: createRoom as the creator with the name and power levels, invite
//       and join the second member, re-post every message as its sender at its time (`ts`), set
//       the alias.
// Every run's outcome is checked (every room back with every message). Prints a result block on
// stdout (progress on stderr); writes nothing into the repository.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { MatrixTestClient } from '../../test/rig/client.ts';
import { trackChild } from '../../test/rig/reaper.ts';
import { MAIN, attachSteward } from '../../test/rig/steward.ts';
import { prepareSynapse } from '../../test/rig/synapse.ts';
import { wipeSynapse, writeArchiveFixture } from '../../test/e2e/restore-helpers.ts';
import { callOk } from '../lib/http.ts';
import { ProcSampler } from '../lib/proc.ts';

const { values: flags } = parseArgs({
  options: { rooms: { type: 'string', default: '20' }, messages: { type: 'string', default: '50' }, repeat: { type: 'string', default: '1' } },
  strict: true,
});
const positiveInt = (name: string, v: string | undefined): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${v}`);
  return n;
};
const ROOMS = positiveInt('rooms', flags.rooms);
const MESSAGES = positiveInt('messages', flags.messages);
const REPEAT = positiveInt('repeat', flags.repeat);

const benchStart = performance.now();
const say = (msg: string): void => {
  process.stderr.write(`[bench ${((performance.now() - benchStart) / 1000).toFixed(1).padStart(6)}s] ${msg}\n`);
};
const mib = (kb: number): string => `${(kb / 1024).toFixed(1)} MiB`;

interface Run {
  readonly label: string;
  readonly seconds: number;
  readonly peakRssKb?: number;
}

async function main(): Promise<void> {
  const hs = await prepareSynapse({ name: 'bench-restore', federation: true });
  try {
    const s = await attachSteward(hs, { federation: true });
    const asToken = s.steward.asToken;
    const names = ['ua', 'ub'];
    const userIds = names.map((n) => `@${n}:${hs.serverName}`);
    for (const n of names) await hs.registerUser(n, { password: `${n}-password` });
    const as = (method: string, p: string, user: string, body?: unknown, ts?: number) =>
      callOk(method, `${hs.clientUrl}${p}${p.includes('?') ? '&' : '?'}user_id=${encodeURIComponent(user)}${ts !== undefined ? `&ts=${ts}` : ''}`, { token: asToken, body });
    const enc = encodeURIComponent;
    const t0 = Date.now() - 3 * 86_400_000;
    let txn = 0;
    const seeded: string[] = [];
    for (let r = 0; r < ROOMS; r++) {
      const roomId = (await as('POST', '/_matrix/client/v3/createRoom', userIds[0]!, { preset: 'private_chat', name: `bench ${r}`, room_alias_name: `bench-${r}`, invite: [userIds[1]] })).room_id as string;
      await as('POST', `/_matrix/client/v3/join/${enc(roomId)}`, userIds[1]!, {});
      let last = '';
      for (let m = 0; m < MESSAGES; m++) {
        const content: Record<string, unknown> = { msgtype: 'm.text', body: `room ${r} message ${m}` };
        if (m % 10 === 9) content['m.relates_to'] = { 'm.in_reply_to': { event_id: last } };
        last = (await as('PUT', `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/seed-${++txn}`, userIds[m % 2]!, content, t0 + r * 1000 + m)).event_id;
      }
      seeded.push(roomId);
    }
    say(`${ROOMS} rooms × ${MESSAGES} messages seeded`);
    const dumped = await s.steward.cli(['dump', 'rooms']);
    const dump = /dumped to (\S+)/.exec(dumped.stdout)?.[1];
    if (dumped.code !== 0 || !dump) throw new Error(`dump rooms failed: ${dumped.stdout}${dumped.stderr}`);
    const archive = path.join(s.steward.dir, 'archive');
    await writeArchiveFixture(s.adminClient, hs.serverName, seeded, archive);
    await s.steward.stop();
    const docs = await Promise.all(seeded.map(async (roomId) => {
      const page = await s.adminClient.request('GET', `/_synapse/admin/v1/rooms/${enc(roomId)}/messages`, undefined, { dir: 'f', limit: '1000' });
      return { roomId, messages: (page.chunk as any[]).filter((e) => e.type === 'm.room.message') };
    }));

    let admin: MatrixTestClient;
    const loseEverything = async (): Promise<void> => {
      const a = await wipeSynapse(hs, s.steward);
      admin = new MatrixTestClient(hs.clientUrl, a.userId, a.accessToken);
      for (const n of names) await hs.registerUser(n, { password: `${n}-password` });
      const db = new Database(s.steward.dbPath);
      db.exec('DELETE FROM restored_rooms; DELETE FROM restored_events; DELETE FROM restored_history; DELETE FROM restore_room_results;');
      db.close();
    };
    const check = async (label: string): Promise<void> => {
      const rooms = (await admin.request('GET', '/_synapse/admin/v1/rooms', undefined, { limit: '1000' })).rooms as any[];
      let messages = 0;
      for (const room of rooms) {
        const page = await admin.request('GET', `/_synapse/admin/v1/rooms/${enc(room.room_id)}/messages`, undefined, { dir: 'f', limit: '1000' });
        messages += (page.chunk as any[]).filter((e) => e.type === 'm.room.message' && e.content?.msgtype === 'm.text').length;
      }
      if (messages < ROOMS * MESSAGES) throw new Error(`${label}: ${messages} of ${ROOMS * MESSAGES} messages are back`);
    };

    const stewardRun = async (): Promise<Run> => {
      await loseEverything();
      const started = performance.now();
      const child = spawn(process.execPath, [MAIN, 'restore', 'rooms', dump, '--archive', archive, '-c', s.steward.configPath, '-r', s.steward.registrationPath], { stdio: ['ignore', 'pipe', 'pipe'] });
      trackChild(child);
      child.ref();
      const sampler = new ProcSampler(child.pid!, 25);
      let out = '';
      child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
      child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
      const code = await new Promise<number>((resolve) => child.once('exit', (c) => resolve(c ?? 1)));
      const seconds = (performance.now() - started) / 1000;
      sampler.stop();
      if (code !== 0 || !new RegExp(`${ROOMS} recreated`).test(out)) throw new Error(`steward restore rooms exited ${code}:\n${out}`);
      await check('steward');
      say(`steward: ${seconds.toFixed(2)} s, peak RSS ${mib(sampler.peakRssKb)}`);
      return { label: 'steward', seconds, peakRssKb: sampler.peakRssKb };
    };
    const plainRun = async (): Promise<Run> => {
      await loseEverything();
      const started = performance.now();
      for (const [r, doc] of docs.entries()) {
        const roomId = (await as('POST', '/_matrix/client/v3/createRoom', userIds[0]!, { preset: 'private_chat', name: `bench ${r}`, invite: [userIds[1]] })).room_id as string;
        await as('POST', `/_matrix/client/v3/join/${enc(roomId)}`, userIds[1]!, {});
        const map = new Map<string, string>();
        for (const ev of doc.messages) {
          const content = { ...ev.content };
          const reply = content['m.relates_to']?.['m.in_reply_to']?.event_id;
          if (reply) content['m.relates_to'] = { 'm.in_reply_to': { event_id: map.get(reply) ?? reply } };
          map.set(ev.event_id, (await as('PUT', `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/plain-${++txn}`, ev.sender, content, ev.origin_server_ts)).event_id);
        }
        await as('PUT', `/_matrix/client/v3/directory/room/${enc(`#bench-${r}:${hs.serverName}`)}`, userIds[0]!, { room_id: roomId });
      }
      const seconds = (performance.now() - started) / 1000;
      await check('plain');
      say(`plain script: ${seconds.toFixed(2)} s`);
      return { label: 'plain', seconds };
    };

    const runs: Run[] = [];
    for (let r = 0; r < REPEAT; r++) {
      if (r % 2 === 0) runs.push(await stewardRun(), await plainRun());
      else runs.push(await plainRun(), await stewardRun());
    }
    const best = (label: string): number => Math.min(...runs.filter((r) => r.label === label).map((r) => r.seconds));
    const steward = best('steward');
    const plain = best('plain');
    const events = ROOMS * MESSAGES;
    const peak = Math.max(...runs.filter((r) => r.label === 'steward').map((r) => r.peakRssKb!));
    process.stdout.write([
      `restore rooms benchmark: ${ROOMS} local rooms × ${MESSAGES} messages (${events} events) after a total loss, best of ${REPEAT}`,
      `  steward restore rooms --archive (process): ${steward.toFixed(2)} s  (${(events / steward).toFixed(0)} events/s, incl. start-up and checking the dump and archive)`,
      `  plain script:                              ${plain.toFixed(2)} s  (${(events / plain).toFixed(0)} events/s)`,
      `  ratio steward/plain: ${(steward / plain).toFixed(2)}`,
      `  steward peak RSS: ${mib(peak)}`,
      `  every run, in order: ${runs.map((r) => `${r.label} ${r.seconds.toFixed(1)} s`).join(', ')}`,
    ].join('\n') + '\n');
  } finally {
    await hs.cleanup();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  },
);
