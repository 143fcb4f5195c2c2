// Reading a process's memory and CPU from /proc (Linux), for benchmarks.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

let clockTicks: number | undefined;
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** VmRSS and VmHWM (peak RSS so far) in KiB, or null once the process is gone. */
/** How long the CLI takes to load its modules and exit (`steward --version`): the start-up every CLI run pays. */
export async function cliStartupSeconds(main: string): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const started = performance.now();
    await new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, [main, '--version'], { stdio: 'ignore' });
      child.once('error', reject);
      child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`steward --version exited ${code}`))));
    });
    times.push((performance.now() - started) / 1000);
  }
  return Math.min(...times);
}

export function memoryKb(pid: number): { rssKb: number; hwmKb: number } | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
  return { rssKb: field('VmRSS'), hwmKb: field('VmHWM') };
}

/** User + system CPU seconds the process has used, or null once it is gone. */
export function cpuSeconds(pid: number): number | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may contain spaces; fields after its closing parenthesis are plain.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return (utime + stime) / ticksPerSecond();
}

/** The first process whose command line contains `needle` (e.g. a Synapse config path). */
export function findPid(needle: string): number | null {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmdline.includes(needle)) return Number(name);
    } catch {
      // Gone between readdir and read.
    }
  }
  return null;
}

/**
 * Polls a running process every `intervalMs`, keeping its peak RSS (VmHWM is the kernel's own
 * high-water mark, so only the last interval before exit can be missed) and its CPU time.
 */
export class ProcSampler {
  readonly pid: number;
  peakRssKb = 0;
  cpuSeconds = 0;
  samples = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(pid: number, intervalMs = 25) {
    this.pid = pid;
    this.sample();
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  sample(): void {
    const mem = memoryKb(this.pid);
    if (mem) {
      this.peakRssKb = Math.max(this.peakRssKb, mem.hwmKb, mem.rssKb);
      this.samples += 1;
    }
    const cpu = cpuSeconds(this.pid);
    if (cpu !== null) this.cpuSeconds = cpu;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** Busy CPU seconds of the whole machine (all cores, all processes) since boot, from /proc/stat. */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const [, ...fields] = line.trim().split(/\s+/);
  const n = fields.map(Number);
  // user nice system idle iowait irq softirq steal …; guest time is already counted in user.
  const busy = (n[0] ?? 0) + (n[1] ?? 0) + (n[2] ?? 0) + (n[5] ?? 0) + (n[6] ?? 0) + (n[7] ?? 0);
  return busy / ticksPerSecond();
}
