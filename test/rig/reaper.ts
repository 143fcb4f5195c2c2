import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';

// What the rig must not leave behind when a test throws, times out or forgets
// cleanup(): live Synapses (they hold ports and CPU) and their temp dirs.
const children = new Set<ChildProcess>();
const dirs = new Set<string>();
// Test databases on the shared PostgreSQL, with how to drop one (synchronously).
const databases = new Map<string, (name: string) => void>();
let hooksInstalled = false;

function reap(): void {
  for (const child of children) {
    try {
      child.kill('SIGKILL');
    } catch {
      // Already gone.
    }
  }
  children.clear();
  if (process.env['STEWARD_KEEP_RIG'] !== '1') {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    for (const [name, drop] of databases) {
      try {
        drop(name);
      } catch {
        // Best effort: the process is ending.
      }
    }
  }
  dirs.clear();
  databases.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  reap();
  process.removeListener(signal, onSignal);
  // Re-raise only when nobody else (e.g. a graceful-shutdown handler of code under
  // test) is listening; otherwise we would cut their shutdown short.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', reap);
  // 'exit' does not fire when a signal ends the process: node --test sends SIGTERM to
  // a test file that overruns its timeout, and Ctrl-C sends SIGINT.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);
}

/**
 * Kills `child` when this process ends. The child is also unref'd, so a test that
 * forgets to stop its server ends (and reaps it) instead of hanging.
 */
export function trackChild(child: ChildProcess): void {
  installHooks();
  children.add(child);
  child.unref();
  child.once('exit', () => children.delete(child));
}

/** Removes `dir` when this process ends, unless STEWARD_KEEP_RIG=1. */
export function trackDir(dir: string): void {
  installHooks();
  dirs.add(dir);
}

export function untrackDir(dir: string): void {
  dirs.delete(dir);
}


/** Drops PostgreSQL database `name` when this process ends (after its Synapse was killed), unless STEWARD_KEEP_RIG=1. */
export function trackDatabase(name: string, drop: (name: string) => void): void {
  installHooks();
  databases.set(name, drop);
}

export function untrackDatabase(name: string): void {
  databases.delete(name);
}
