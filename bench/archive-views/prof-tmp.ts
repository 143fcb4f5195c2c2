import { createArchiveViews } from '../../src/archive/views/archive-views.ts';
import { createLogger } from '../../src/log.ts';
const out = process.argv[2]!;
const v = createArchiveViews({ out, media: false, log: createLogger({ level: 'silent' }) });
if (!v.ok) throw new Error();
const s = await v.value.syncAll(new AbortController().signal);
console.log(s.lines, s.daysWritten, process.cpuUsage());
