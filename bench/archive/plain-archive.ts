// The baseline of bench/archive: a plain script paging the same admin API with the same
// concurrency and writing the same JSONL lines, with none of Steward's bookkeeping (no database,
// no fsync, no resume, no dedupe, no redaction lookups).
//
//   node bench/archive/plain-archive.ts <homeserver url> <admin token> <out dir> <concurrency>
import { appendFile, mkdir } from 'node:fs/promises';
import path from 'node:path';

const [baseArg, tokenArg, outArg, concurrencyText] = process.argv.slice(2);
if (!baseArg || !tokenArg || !outArg || !concurrencyText) throw new Error('usage: plain-archive.ts <url> <token> <out> <concurrency>');
const base: string = baseArg;
const token: string = tokenArg;
const out: string = outArg;
const concurrency = Number(concurrencyText);
const headers = { authorization: `Bearer ${token}` };
const filter = JSON.stringify({ event_format: 'federation' });

async function get(url: string): Promise<any> {
  const res = await fetch(url, { headers });
  if (!res.ok) throw new Error(`${url}: ${res.status} ${await res.text()}`);
  return res.json();
}

function line(roomId: string, event: any): string {
  // Same normalisation as Steward: what depends on the moment of reading is dropped.
  if (event.unsigned) {
    const { age: _age, 'm.relations': _rel, ...rest } = event.unsigned;
    event = { ...event, unsigned: rest };
  }
  return `${JSON.stringify({ event_id: event.event_id, room_id: roomId, origin_server_ts: event.origin_server_ts, event })}\n`;
}

async function archiveRoom(roomId: string): Promise<number> {
  const dir = path.join(out, 'rooms', encodeURIComponent(roomId));
  let from: string | undefined;
  let n = 0;
  for (;;) {
    const qs = new URLSearchParams({ dir: 'f', limit: '1000', filter });
    if (from) qs.set('from', from);
    const page = await get(`${base}/_synapse/admin/v1/rooms/${encodeURIComponent(roomId)}/messages?${qs}`);
    const byDay = new Map<string, string>();
    for (const event of page.chunk) {
      const day = new Date(event.origin_server_ts).toISOString().slice(0, 10);
      byDay.set(day, (byDay.get(day) ?? '') + line(roomId, event));
      n += 1;
    }
    for (const [day, text] of byDay) {
      const file = path.join(dir, day.slice(0, 4), day.slice(5, 7), `${day}.jsonl`);
      await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
      await appendFile(file, text, { mode: 0o600 });
    }
    if (!page.end || page.end === from) return n;
    from = page.end;
  }
}

const rooms: string[] = [];
for (let from: number | undefined; ;) {
  const page = await get(`${base}/_synapse/admin/v1/rooms?limit=500&order_by=creator${from !== undefined ? `&from=${from}` : ''}`);
  rooms.push(...page.rooms.map((r: any) => r.room_id));
  if (page.next_batch === undefined || page.next_batch === null) break;
  from = Number(page.next_batch);
}
rooms.sort();
let next = 0;
let events = 0;
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (next < rooms.length) {
    const n = await archiveRoom(rooms[next++]!);
    events += n;
  }
}));
process.stdout.write(`${JSON.stringify({ rooms: rooms.length, events })}\n`);
