// Benchmark of the archive views (issue 8): index + FTS5 + day markdown built from JSONL day files.
//
//   node bench/archive-views/run.ts [--events 100000] [--rooms 4] [--days 60]
//
// Writes a synthetic archive (federation-format events: messages, edits, replies, thread replies,
// reactions, redactions, display-name changes) into a temp folder, then times in separate child
// processes (a) Steward's views (createArchiveViews + syncAll: archive.sqlite with FTS5, members,
// relations, and every day's markdown), (b) a plain script doing the least a reader could: parse
// every line, put the bodies into an FTS5 table in one transaction, write one markdown line per
// message per day, and (c) a re-run of (a) with nothing new (must write nothing). Prints wall time,
// lines per second and peak RSS of each. Needs no Synapse. Writes nothing into the repository.
import { spawnSync } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values: flags } = parseArgs({
  options: {
    events: { type: 'string', default: '100000' },
    rooms: { type: 'string', default: '4' },
    days: { type: 'string', default: '60' },
    child: { type: 'string' },
    out: { type: 'string' },
  },
  strict: true,
});

const HERE = fileURLToPath(import.meta.url);

async function steward(out: string): Promise<unknown> {
  const { createArchiveViews } = await import('../../src/archive/views/archive-views.ts');
  const { createLogger } = await import('../../src/log.ts');
  const views = createArchiveViews({ out, media: false, log: createLogger({ level: 'silent' }) });
  if (!views.ok) throw new Error(views.error.human);
  const s = await views.value.syncAll(new AbortController().signal);
  views.value.close();
  return { lines: s.lines, days: s.daysWritten, failures: s.itemFailures.length };
}

async function plain(out: string): Promise<unknown> {
  const Database = (await import('better-sqlite3')).default;
  const db = new Database(path.join(out, 'plain.sqlite'));
  db.exec('CREATE VIRTUAL TABLE IF NOT EXISTS t USING fts5 (event_id UNINDEXED, body)');
  const insert = db.prepare('INSERT INTO t (event_id, body) VALUES (?, ?)');
  let lines = 0;
  let days = 0;
  for (const room of readdirSync(path.join(out, 'rooms'))) {
    const dir = path.join(out, 'rooms', room);
    const files = readdirSync(dir, { recursive: true }).map(String).filter((f) => f.endsWith('.jsonl')).sort();
    db.transaction(() => {
      for (const f of files) {
        const md: string[] = [];
        for (const text of readFileSync(path.join(dir, f), 'utf8').split('\n')) {
          if (!text) continue;
          const line = JSON.parse(text);
          lines++;
          const body = line.event?.content?.body;
          if (typeof body === 'string') {
            insert.run(line.event_id, body);
            md.push(`- ${new Date(line.origin_server_ts).toISOString().slice(11, 19)} ${line.event.sender}: ${body}`);
          }
        }
        writeFileSync(path.join(dir, f.replace(/\.jsonl$/, '.plain.md')), `${md.join('\n')}\n`);
        days++;
      }
    })();
  }
  db.close();
  return { lines, days };
}

if (flags.child) {
  const started = process.hrtime.bigint();
  const result = flags.child === 'plain' ? await plain(flags.out!) : await steward(flags.out!);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = process.cpuUsage();
  process.stdout.write(JSON.stringify({ result, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024) }));
  process.exit(0);
}

const events = Number(flags.events);
const rooms = Number(flags.rooms);
const days = Number(flags.days);
let seed = 42;
const random = (): number => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed / 2147483648;
};
const out = mkdtempSync(path.join(os.tmpdir(), 'bench-archive-views-'));
try {
  process.stderr.write(`writing ${events} events in ${rooms} rooms over ${days} days to ${out}\n`);
  const start = Date.UTC(2026, 0, 1);
  const perRoom = Math.ceil(events / rooms);
  for (let r = 0; r < rooms; r++) {
    const roomId = `!bench${r}:hs.test`;
    const dir = path.join(out, 'rooms', encodeURIComponent(roomId));
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'room.json'), JSON.stringify({ format: 'steward.archive-room/1', room_id: roomId, room_version: '10' }));
    const ids: string[] = [];
    const buffers = new Map<string, string[]>();
    for (let i = 0; i < perRoom; i++) {
      const ts = start + Math.floor((i / perRoom) * days * 86_400_000);
      const sender = `@user${i % 25}:hs.test`;
      const id = `$r${r}e${i}`;
      // Relations point at one of the last 200 events, as they do in a conversation.
      const target = ids.length > 0 ? ids[ids.length - 1 - Math.floor(random() * Math.min(ids.length, 200))]! : undefined;
      let type = 'm.room.message';
      let content: Record<string, unknown> = { msgtype: 'm.text', body: `message ${i} about budget ${i % 97} and the venue ${i % 13}` };
      const kind = i % 20;
      if (target && kind === 3) content = { msgtype: 'm.text', body: `* edited ${i}`, 'm.new_content': { msgtype: 'm.text', body: `edited ${i}` }, 'm.relates_to': { rel_type: 'm.replace', event_id: target } };
      else if (target && kind === 5) content = { msgtype: 'm.text', body: `reply ${i}`, 'm.relates_to': { 'm.in_reply_to': { event_id: target } } };
      else if (target && kind === 7) content = { msgtype: 'm.text', body: `thread ${i}`, 'm.relates_to': { rel_type: 'm.thread', event_id: target, is_falling_back: true, 'm.in_reply_to': { event_id: target } } };
      else if (target && (kind === 9 || kind === 10)) [type, content] = ['m.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: target, key: kind === 9 ? '👍' : '🎉' } }];
      else if (target && kind === 13) [type, content] = ['m.room.redaction', { redacts: target }];
      else if (kind === 17) [type, content] = ['m.room.member', { membership: 'join', displayname: `User ${i % 25} (${i})` }];
      const event: Record<string, unknown> = { auth_events: [], prev_events: [], content, depth: i + 1, hashes: { sha256: 'x' }, origin_server_ts: ts, room_id: roomId, sender, signatures: {}, type, unsigned: {} };
      if (type === 'm.room.member') event.state_key = sender;
      if (type === 'm.room.redaction') event.redacts = target;
      ids.push(id);
      const day = new Date(ts).toISOString().slice(0, 10);
      const rel = path.join(day.slice(0, 4), day.slice(5, 7), `${day}.jsonl`);
      const buf = buffers.get(rel) ?? [];
      buf.push(JSON.stringify({ event_id: id, room_id: roomId, origin_server_ts: ts, event }));
      buffers.set(rel, buf);
    }
    for (const [rel, lines] of buffers) {
      mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
      appendFileSync(path.join(dir, rel), `${lines.join('\n')}\n`);
    }
  }
  const run = (child: string) => {
    const r = spawnSync(process.execPath, [HERE, '--child', child, '--out', out], { encoding: 'utf8', maxBuffer: 1 << 24 });
    if (r.status !== 0) throw new Error(`${child}: ${r.stderr}`);
    return JSON.parse(r.stdout) as { result: unknown; seconds: number; cpuSeconds: number; maxRssMb: number };
  };
  const a = run('steward');
  const b = run('plain');
  const c = run('steward');
  const rate = (s: number): number => Math.round((rooms * perRoom) / s);
  // CPU seconds are the figure to compare on a shared machine; wall time waits for other work.
  console.log(`archive views, ${rooms * perRoom} events, ${rooms} rooms, ${days} days (node ${process.version}, ${os.cpus().length} cores, load ${os.loadavg()[0]!.toFixed(1)})`);
  console.log(`  steward views (index + FTS5 + markdown): ${a.cpuSeconds.toFixed(2)} s CPU (${a.seconds.toFixed(2)} s wall), ${rate(a.cpuSeconds)} lines per CPU second, peak RSS ${a.maxRssMb} MB  ${JSON.stringify(a.result)}`);
  console.log(`  plain script (FTS5 + one line per message): ${b.cpuSeconds.toFixed(2)} s CPU (${b.seconds.toFixed(2)} s wall), ${rate(b.cpuSeconds)} lines per CPU second, peak RSS ${b.maxRssMb} MB`);
  console.log(`  ratio steward/plain (CPU): ${(a.cpuSeconds / b.cpuSeconds).toFixed(2)}`);
  console.log(`  re-run with nothing new: ${c.cpuSeconds.toFixed(2)} s CPU (${c.seconds.toFixed(2)} s wall), peak RSS ${c.maxRssMb} MB  ${JSON.stringify(c.result)}`);
} finally {
  rmSync(out, { recursive: true, force: true });
}
