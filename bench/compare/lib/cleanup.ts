/** Everything a benchmark mounted or wrote is undone at the end, also on Ctrl-C or a crash. */
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';

const mounts = new Set<string>();
const dirs = new Set<string>();
const closers = new Set<() => void>();
let installed = false;

export function trackMount(mnt: string): void {
  mounts.add(mnt);
}

export function untrackMount(mnt: string): void {
  mounts.delete(mnt);
}

export function trackDir(dir: string): void {
  dirs.add(dir);
}

export function trackCloser(fn: () => void): () => void {
  closers.add(fn);
  return () => closers.delete(fn);
}

export function cleanupAll(): void {
  for (const fn of closers) {
    try {
      fn();
    } catch {
      /* best effort */
    }
  }
  closers.clear();
  for (const m of [...mounts].reverse()) spawnSync('umount', ['-l', m]);
  mounts.clear();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}

export function installCleanupHandlers(): void {
  if (installed) return;
  installed = true;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\n${sig}: cleaning up mounts and files...\n`);
      cleanupAll();
      process.exit(130);
    });
  }
  process.on('exit', cleanupAll);
}
