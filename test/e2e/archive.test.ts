// `archive` end to end against a real Synapse: rooms seeded over three days through the
// appservice (`?ts=`), with an edit, a reply, a thread, a reaction, an image, a redaction whose
// original Synapse still holds and one whose original it has censored. Then: files per day hold
// exactly the admin API's events; more messages are appended and nothing else; a re-run changes
// no byte; a run killed with SIGKILL (and a torn line left behind) resumes to output
// byte-identical to an uninterrupted run; `!archive status` reports what is archived.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFile, cp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { MAIN, runCli, startStewardWithSynapse, type StewardSetup } from '../rig/steward.ts';
import { trackChild } from '../rig/reaper.ts';
import { command, replyMatching } from './room-helpers.ts';
import { adminEventIds, censorInSynapse, DAY_MS, flakyProxy, readArchive, snapshotFiles, TimedSender } from './archive-helpers.ts';

const PNG = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082', 'hex');

describe('archive', () => {
  let s: StewardSetup;
  let send: TimedSender;
  let admin: string;
  let history: string; // room v10, seeded over three days
  let second: string; // room v11
  let out: string;
  const ids: Record<string, string> = {};
  const day = (n: number): number => Math.floor(Date.now() / DAY_MS) * DAY_MS - (3 - n) * DAY_MS + 10 * 3600_000;
  const dayName = (ts: number): string => new Date(ts).toISOString().slice(0, 10);
  const cli = (args: string[]) => s.steward.cli(['archive', ...args, '--json']);

  before(async () => {
    s = await startStewardWithSynapse({
      synapse: { extraConfig: { redaction_retention_period: null } },
      config: { archive: { page_size: 3, concurrency: 2 } },
    });
    admin = s.admin.userId;
    out = path.join(s.steward.dir, 'archive');
    send = new TimedSender(s.hs.clientUrl, s.steward.asToken);
    history = await s.adminClient.createRoom({ room_version: '10', name: 'History', preset: 'private_chat' });
    second = await s.adminClient.createRoom({ room_version: '11', name: 'Second', preset: 'private_chat' });
    for (let i = 0; i < 4; i++) ids[`d0-${i}`] = await send.text(history, admin, day(0) + i * 60_000, `day zero #${i}`);
    const t1 = day(1);
    ids.edit = await send.send(history, admin, t1, 'm.room.message', { msgtype: 'm.text', body: '* day zero #0 (edited)', 'm.new_content': { msgtype: 'm.text', body: 'day zero #0 (edited)' }, 'm.relates_to': { rel_type: 'm.replace', event_id: ids['d0-0'] } });
    ids.reply = await send.send(history, admin, t1 + 1000, 'm.room.message', { msgtype: 'm.text', body: 'a reply', 'm.relates_to': { 'm.in_reply_to': { event_id: ids['d0-1'] } } });
    ids.thread = await send.send(history, admin, t1 + 2000, 'm.room.message', { msgtype: 'm.text', body: 'in a thread', 'm.relates_to': { rel_type: 'm.thread', event_id: ids['d0-2'], is_falling_back: true, 'm.in_reply_to': { event_id: ids['d0-2'] } } });
    ids.reaction = await send.send(history, admin, t1 + 3000, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: ids['d0-3'], key: '👍' } });
    const t2 = day(2);
    const mxc = await send.upload(admin, PNG, 'image/png');
    ids.image = await send.send(history, admin, t2, 'm.room.message', { msgtype: 'm.image', body: 'pixel.png', url: mxc, info: { mimetype: 'image/png', size: PNG.length, w: 1, h: 1 } });
    ids.kept = await send.text(history, admin, t2 + 1000, 'redacted, original kept');
    ids.keptRedaction = await send.redact(history, admin, t2 + 2000, ids.kept, 'kept');
    ids.purged = await send.text(history, admin, t2 + 3000, 'redacted, original purged');
    ids.purgedRedaction = await send.redact(history, admin, t2 + 4000, ids.purged, 'purged');
    for (let i = 0; i < 3; i++) ids[`s-${i}`] = await send.text(second, admin, day(1) + i * 1000, `second #${i}`);
    // Synapse's censoring, done by hand while it is stopped (its own job waits 5 minutes).
    await s.hs.stop();
    censorInSynapse(s.hs, ids.purged, '10');
    await s.hs.start();
  });

  after(async () => {
    await s?.steward.stop();
    await s?.hs.cleanup();
  });

  it('writes one file per UTC day holding exactly the admin API\'s events, with redactions annotated', async () => {
    const run = await cli([]);
    assert.equal(run.code, 0, run.stderr + run.stdout);
    const result = JSON.parse(run.stdout);
    assert.equal(result.job.state, 'done');
    assert.equal(result.job.failed, 0, JSON.stringify(result.job.errors));
    assert.match(result.job.result.summary, /rooms archived to/);

    const archive = await readArchive(out);
    const listed = (await s.adminClient.request('GET', '/_synapse/admin/v1/rooms', undefined, { limit: '100' })).rooms.map((r: any) => r.room_id);
    assert.deepEqual([...archive.keys()].sort(), [...listed].sort(), 'every room of the server');
    for (const roomId of [history, second, s.steward.adminRoomId]) {
      const files = archive.get(roomId)!;
      const lines = [...files.values()].flat();
      const expected = await adminEventIds(s.adminClient, roomId);
      assert.deepEqual(lines.map((l) => l.event_id).sort(), [...expected].sort(), `${roomId}: the admin API's events, each once`);
      for (const [rel, fileLines] of files) {
        for (const l of fileLines) {
          assert.equal(rel, `${dayName(l.origin_server_ts).slice(0, 4)}/${dayName(l.origin_server_ts).slice(5, 7)}/${dayName(l.origin_server_ts)}.jsonl`, 'the UTC day of origin_server_ts');
          assert.equal(l.room_id, roomId);
          assert.equal(l.origin_server_ts, l.event.origin_server_ts);
          assert.ok(l.event.hashes?.sha256 && l.event.signatures, 'federation format: hashes and signatures kept');
          assert.equal(l.event.unsigned?.age, undefined, 'no read-time age');
          assert.deepEqual(Object.keys(l).slice(0, 4), ['event_id', 'room_id', 'origin_server_ts', 'event']);
        }
      }
    }
    const hist = archive.get(history)!;
    const days = [...hist.keys()].map((rel) => path.basename(rel, '.jsonl'));
    for (const n of [0, 1, 2]) assert.ok(days.includes(dayName(day(n))), `a file for day ${n}`);
    const byId = new Map([...hist.values()].flat().map((l) => [l.event_id, l]));
    assert.equal(hist.get(`${dayName(day(0)).slice(0, 4)}/${dayName(day(0)).slice(5, 7)}/${dayName(day(0))}.jsonl`)!.length, 4);
    assert.equal(byId.get(ids.edit).event.content['m.relates_to'].rel_type, 'm.replace');
    assert.equal(byId.get(ids.thread).event.content['m.relates_to'].rel_type, 'm.thread');
    assert.equal(byId.get(ids.reaction).event.type, 'm.reaction');
    assert.match(byId.get(ids.image).event.content.url, /^mxc:\/\//);

    const kept = byId.get(ids.kept);
    assert.equal(kept.steward.redacted, true);
    assert.deepEqual(kept.event.content, {}, 'the stripped copy as the API gave it');
    assert.equal(kept.steward.original.content.body, 'redacted, original kept');
    assert.equal(byId.get(ids.keptRedaction).steward.original.content.body, 'redacted, original kept', 'the redaction carries the original too');
    const purged = byId.get(ids.purged);
    assert.equal(purged.steward.redacted, true);
    assert.equal(purged.steward.original_missing, 'purged');
    assert.equal(purged.steward.original, undefined);
    assert.equal(byId.get(ids.purgedRedaction).steward.original_missing, 'purged');
    assert.equal(byId.get(ids['d0-0']).steward, undefined, 'no annotations, no steward key');

    const roomDoc = JSON.parse(await readFile(path.join(out, 'rooms', encodeURIComponent(history), 'room.json'), 'utf8'));
    assert.deepEqual([roomDoc.format, roomDoc.room_id, roomDoc.room_version], ['steward.archive-room/1', history, '10']);
    const manifest = JSON.parse(await readFile(path.join(out, 'archive.json'), 'utf8'));
    assert.equal(manifest.format, 'steward.archive/1');
    assert.equal(manifest.server_name, s.hs.serverName);
    const snap = await snapshotFiles(out);
    for (const [rel, f] of snap) assert.equal(f.mode, 0o600, rel);
    assert.equal((await stat(out)).mode & 0o777, 0o700);
    assert.equal((await stat(path.join(out, 'rooms', encodeURIComponent(history), dayName(day(0)).slice(0, 4)))).mode & 0o777, 0o700);
  });

  it('appends exactly the new messages on the next run, and a re-run changes no byte', async () => {
    const before = await snapshotFiles(out);
    const fresh = [await send.text(history, admin, day(0) + 3600_000, 'late, on day zero'), await s.adminClient.sendText(history, 'today'), await s.adminClient.sendText(second, 'today too')];
    const run = await cli([]);
    assert.equal(run.code, 0, run.stderr + run.stdout);
    assert.match(JSON.parse(run.stdout).job.result.summary, / 3 new events/);
    const afterRun = await snapshotFiles(out);
    const added: any[] = [];
    // The day files are append-only; the markdown and the index beside them are derived views, re-rendered.
    for (const [rel, f] of afterRun) {
      if (!rel.endsWith('.jsonl')) continue;
      const old = before.get(rel)?.text ?? '';
      assert.ok(f.text.startsWith(old), `${rel}: only appended to`);
      added.push(...f.text.slice(old.length).split('\n').filter(Boolean).map((l) => JSON.parse(l)));
    }
    assert.deepEqual(added.map((l) => l.event_id).sort(), [...fresh].sort());
    const late = added.find((l) => l.event_id === fresh[0]);
    assert.equal(dayName(late.origin_server_ts), dayName(day(0)), 'a late message goes to its own day');

    const again = await cli([]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(JSON.parse(again.stdout).job.result.summary, / 0 new events/);
    assert.deepEqual(await snapshotFiles(out), afterRun, 'no byte and no mtime changed');
  });

  it('archives a room folder or a whole archive that was deleted anew, to the same bytes', async () => {
    const texts = async (): Promise<Map<string, string>> => new Map([...(await snapshotFiles(out))].filter(([rel]) => /\.(jsonl|md)$|room\.json$/.test(rel)).map(([rel, f]) => [rel, f.text]));
    const before = await texts();
    const secondDir = [...before.keys()].find((rel) => rel.endsWith('room.json') && JSON.parse(before.get(rel)!).room_id === second);
    assert.ok(secondDir, 'the second room has a folder');
    await rm(path.join(out, path.dirname(secondDir)), { recursive: true });
    const room = await cli([]);
    assert.equal(room.code, 0, room.stderr + room.stdout);
    assert.doesNotMatch(JSON.parse(room.stdout).job.result.summary, / 0 new events/);
    assert.deepEqual(await texts(), before, 'the room folder is written again as it was');

    await rm(out, { recursive: true });
    const all = await cli([]);
    assert.equal(all.code, 0, all.stderr + all.stdout);
    assert.match(JSON.parse(all.stdout).job.result.summary, /had no archive\.json .*archived again from their first event/);
    assert.deepEqual(await texts(), before, 'the whole archive is written again as it was');
  });

  it('refuses to cut day files it has no record of (a copied folder), and a folder another run is writing', async () => {
    const copy = path.join(s.steward.dir, 'archive-copy');
    await cp(out, copy, { recursive: true });
    const before = await snapshotFiles(copy);
    const copied = await cli(['--out', copy]);
    const job = JSON.parse(copied.stdout).job;
    assert.ok(job.failed >= 2, copied.stdout);
    assert.match(copied.stdout, /no record of .*refusing to cut them/);
    assert.match(job.result.summary, /is a copy of the archive at .*\/archive \(the same archive\.json\), which Steward goes on writing/);
    const after = await snapshotFiles(copy, (rel) => rel === 'archive.sqlite');
    for (const [rel, f] of after) if (rel.endsWith('.jsonl')) assert.equal(f.text, before.get(rel)?.text, `${rel} untouched`);

    // A live process holds the folder: this run leaves it alone.
    await writeFile(path.join(out, '.steward-archive.lock'), JSON.stringify({ pid: process.pid, host: os.hostname(), job: 999, since: Date.now() }));
    const busy = await cli([]);
    assert.notEqual(busy.code, 0);
    assert.match(busy.stdout + busy.stderr, /being written by job #999/);
    await rm(path.join(out, '.steward-archive.lock'));
    const free = await cli([]);
    assert.equal(free.code, 0, free.stderr + free.stdout);
  });

  it('reports a day file that went missing outside Steward, even with nothing new, until it is back', async () => {
    const files = await snapshotFiles(out);
    const dayFile = [...files.keys()].find((rel) => rel.endsWith('.jsonl'))!;
    await rm(path.join(out, dayFile));
    const run = await cli([]);
    assert.match(run.stdout, new RegExp(`day file is missing or shorter than archived \\(${path.basename(dayFile, '.jsonl')} missing\\)`));
    assert.ok(JSON.parse(run.stdout.trim().split('\n').pop()!).job.failed >= 1);
    await writeFile(path.join(out, dayFile), files.get(dayFile)!.text, { mode: 0o600 });
    const back = await cli([]);
    assert.equal(back.code, 0, back.stderr + back.stdout);
    assert.match(JSON.parse(back.stdout).job.result.summary, / 0 new events/);
  });

  it('resumes a run killed with SIGKILL (a torn line left behind) to output byte-identical to an uninterrupted run', async () => {
    const killedOut = path.join(s.steward.dir, 'archive-killed');
    const cleanOut = path.join(s.steward.dir, 'archive-clean');
    const args = ['archive', '--out', killedOut, '--room', history, '--room', second, '--concurrency', '1', '-c', s.steward.configPath, '-r', s.steward.registrationPath];
    const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    trackChild(child);
    child.ref();
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    let exitCode: number | null = null;
    const exited = new Promise((resolve) => child.once('exit', (code) => { exitCode = code; resolve(code); }));
    const db = new Database(s.steward.dbPath, { readonly: true, fileMustExist: true });
    let cut: { id: number; room_id: string } | undefined;
    try {
      for (let i = 0; i < 3000 && !cut; i++) {
        try {
          cut = db.prepare('SELECT id, room_id FROM archive_rooms WHERE out_dir = ? AND pass_started = 1 AND events >= 3').get(killedOut) as typeof cut;
        } catch {
          // the schema may be mid-write; try again
        }
        if (!cut) await sleep(5);
        if (exitCode !== null) break;
      }
      assert.ok(cut, `caught the run in the middle of a room (exit ${exitCode}: ${stderr.slice(-2000)})`);
      child.kill('SIGKILL');
      await exited;
      const file = db.prepare('SELECT day FROM archive_files WHERE room = ? ORDER BY length DESC LIMIT 1').get(cut.id) as { day: string };
      const dir = encodeURIComponent(cut.room_id);
      await appendFile(path.join(killedOut, 'rooms', dir, file.day.slice(0, 4), file.day.slice(5, 7), `${file.day}.jsonl`), '{"event_id":"$torn","room_id":"!x');
    } finally {
      db.close();
    }
    const resumed = await s.steward.cli(args.slice(0, -4).concat(['--json', '-c', s.steward.configPath, '-r', s.steward.registrationPath]));
    assert.equal(resumed.code, 0, resumed.stderr + resumed.stdout);
    const job = JSON.parse(resumed.stdout).job;
    assert.equal(job.state, 'done');
    assert.ok(job.resumedCount >= 1, 'the killed job was resumed, not started again');

    const clean = await s.steward.cli(['archive', '--out', cleanOut, '--room', history, '--room', second, '--concurrency', '1', '--json']);
    assert.equal(clean.code, 0, clean.stderr);
    // archive.json carries the run's time; archive.sqlite is the derived index, a database file whose
    // pages differ with the order of writes (its content is checked by the archive views tests).
    const notManifest = (rel: string) => rel === 'archive.json' || rel.startsWith('archive.sqlite');
    const [a, b] = await Promise.all([snapshotFiles(killedOut, notManifest), snapshotFiles(cleanOut, notManifest)]);
    assert.deepEqual([...a.keys()], [...b.keys()]);
    for (const [rel, f] of a) assert.equal(f.text, b.get(rel)!.text, `${rel} is byte-identical`);
    assert.ok([...a.keys()].filter((k) => k.endsWith('.jsonl')).length >= 4);
  });

  it('answers !archive status in the room with per-room counts and the totals, and !archive runs there too', async () => {
    const room = s.steward.adminRoomId;
    const bot = s.steward.botUserId;
    const status = await command(s.adminClient, room, bot, '!archive status');
    const text: string = status.reply.content.body;
    assert.match(text, new RegExp(`Archive ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: \\d+ rooms, \\d+ events`));
    assert.match(text, /Schedule: none/);
    const line = text.split('\n').find((l) => l.startsWith(history));
    assert.ok(line, text);
    const archive = await readArchive(out);
    const count = [...archive.get(history)!.values()].flat().length;
    assert.match(line!, new RegExp(`\\s${count}\\s`));

    const started = await command(s.adminClient, room, bot, `!archive --room ${second}`);
    const summary = await replyMatching(s.adminClient, room, bot, started.eventId, /finished|failed/);
    assert.match(summary.content.body, /archive \(1 room\) finished/);
    assert.match(summary.content.body, /1 room archived to .*: 0 new events/);
  });

  it('follows an archive folder that was moved, and cuts nothing of another archive put in the place of one', async () => {
    const moved = path.join(s.steward.dir, 'archive-moved');
    await rename(out, moved);
    const id = await send.text(second, admin, day(2) + 5 * 60_000, 'after the move');
    const before = await snapshotFiles(moved);
    const run = await cli(['--room', second, '--out', moved]);
    assert.equal(run.code, 0, run.stderr + run.stdout);
    const job = JSON.parse(run.stdout).job;
    assert.equal(job.failed, 0, run.stdout);
    assert.match(job.result.summary, /^1 room archived to .*: 1 new events/);
    assert.match(job.result.summary, new RegExp(`is the archive Steward wrote at ${out}, moved: its \\d+ rooms carry on from where they were`));
    const after = await snapshotFiles(moved);
    for (const [rel, f] of before) if (rel.endsWith('.jsonl')) assert.ok(after.get(rel)!.text.startsWith(f.text), `${rel} only appended to`);
    const added = [...after].filter(([rel, f]) => rel.endsWith('.jsonl') && f.text !== before.get(rel)?.text).map(([rel, f]) => f.text.slice(before.get(rel)?.text.length ?? 0));
    assert.deepEqual(added.join('').trim().split('\n').map((l) => JSON.parse(l).event_id), [id]);
    await rename(moved, out);
    const back = await cli([]);
    assert.equal(JSON.parse(back.stdout).job.failed, 0, back.stdout);
    assert.match(JSON.parse(back.stdout).job.result.summary, new RegExp(`\n${out} is the archive Steward wrote at ${moved}, moved: `));

    // Another archive's files under a path Steward archived to: what it remembers of that path is not applied to them.
    const other = path.join(s.steward.dir, 'archive-replaced');
    assert.equal((await cli(['--room', second, '--out', other])).code, 0);
    const manifest = JSON.parse(await readFile(path.join(other, 'archive.json'), 'utf8'));
    await writeFile(path.join(other, 'archive.json'), JSON.stringify({ ...manifest, created_ts: manifest.created_ts - 1 }));
    const dayFile = [...(await snapshotFiles(other)).keys()].find((rel) => rel.endsWith('.jsonl'))!;
    await appendFile(path.join(other, dayFile), '{"another archive\'s line"}\n');
    const replacedBefore = await snapshotFiles(other, (rel) => rel === 'archive.sqlite');
    const replaced = await cli(['--room', second, '--out', other]);
    const replacedJob = JSON.parse(replaced.stdout.trim().split('\n').pop()!).job;
    assert.equal(replacedJob.failed, 1, replaced.stdout);
    assert.match(replaced.stdout, /holds another archive\.json than the one Steward wrote there/);
    assert.match(replaced.stdout, /no record of .*refusing to cut them/);
    const replacedAfter = await snapshotFiles(other, (rel) => rel === 'archive.sqlite');
    for (const [rel, f] of replacedBefore) if (rel.endsWith('.jsonl')) assert.equal(replacedAfter.get(rel)?.text, f.text, `${rel} untouched`);
  });

  it('fails a room whose redacted original cannot be looked up now (a 502), writing nothing of that page, and reads it again on the next run', async () => {
    const flaky = await s.adminClient.createRoom({ room_version: '10', name: 'Flaky', preset: 'private_chat' });
    const kept = await send.text(flaky, admin, day(2), 'redacted while the lookup fails');
    await send.redact(flaky, admin, day(2) + 1000, kept, 'flaky');
    let failing = true;
    const proxy = await flakyProxy(s.hs.clientUrl, (p) => failing && p.startsWith('/_synapse/admin/v1/fetch_event/'));
    try {
      const config = JSON.parse(await readFile(s.steward.configPath, 'utf8'));
      const proxied = path.join(s.steward.dir, 'steward-proxied.yaml');
      await writeFile(proxied, JSON.stringify({ ...config, homeserver: { ...config.homeserver, url: proxy.url }, requests: { max_retries: 1 } }));
      const viaProxy = () => runCli(['archive', '--room', flaky, '--json', '-c', proxied, '-r', s.steward.registrationPath]);
      const down = await viaProxy();
      const job = JSON.parse(down.stdout.trim().split('\n').pop()!).job;
      assert.equal(job.failed, 1, down.stdout);
      assert.match(down.stdout, new RegExp(`looking up the original of \\${kept} failed .*the next run reads it again`));
      const written = (await readArchive(out)).get(flaky) ?? new Map();
      const lines = [...written.values()].flat();
      assert.equal(lines.some((l) => l.event_id === kept || l.steward?.original_missing !== undefined), false, JSON.stringify(lines));
      failing = false;
      const up = await viaProxy();
      assert.equal(JSON.parse(up.stdout.trim().split('\n').pop()!).job.failed, 0, up.stdout);
      const after = [...((await readArchive(out)).get(flaky)!.values())].flat();
      const redacted = after.find((l) => l.event_id === kept);
      assert.equal(redacted?.steward?.redacted, true);
      assert.equal(redacted?.steward?.original?.content?.body, 'redacted while the lookup fails');
    } finally {
      await proxy.close();
    }
  });

  it('files an event from past the year 9999 (a remote clock, or a lie) under the last day there is, keeping its real time', async () => {
    const future = 253402300800000 + 7 * DAY_MS;
    const id = await send.text(second, admin, future, 'sent from the far future');
    const run = await cli(['--room', second]);
    assert.equal(run.code, 0, run.stderr + run.stdout);
    assert.match(JSON.parse(run.stdout).job.result.summary, / 1 new events/);
    const dir = path.join(out, 'rooms', encodeURIComponent(second), '9999', '12');
    const line = JSON.parse((await readFile(path.join(dir, '9999-12-31.jsonl'), 'utf8')).trim());
    assert.equal(line.event_id, id);
    assert.equal(line.origin_server_ts, future);
    assert.match(await readFile(path.join(dir, '9999-12-31.md'), 'utf8'), /sent from the far future/);
    const found = await s.steward.cli(['archive', 'search', 'far future', '--out', out, '--json']);
    assert.equal(found.code, 0, found.stderr + found.stdout);
    assert.match(JSON.parse(found.stdout).text, /^9999-12-31 23:59 UTC · .*\n  sent from the «far» «future»$/m);
  });
});
