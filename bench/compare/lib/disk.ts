/** What reached the disk: bytes written (dirtied) by this process and its reaped children, and space allocated. */
import { lstatSync, readdirSync, readFileSync, statfsSync } from 'node:fs';
import { join } from 'node:path';

/**
 * write_bytes of /proc/self/io: bytes this process caused to be sent to storage (counted when page-cache pages
 * are dirtied, so a 4 KiB write into a large folio counts the folio). Includes children already waited for
 * (qemu-img, qemu-io, mount), and kernel overlayfs copy-up done in this process's system calls.
 */
export function writtenBytes(): number {
  try {
    const m = /write_bytes:\s*(\d+)/.exec(readFileSync('/proc/self/io', 'utf8'));
    const c = /cancelled_write_bytes:\s*(\d+)/.exec(readFileSync('/proc/self/io', 'utf8'));
    return Number(m?.[1] ?? 0) - Number(c?.[1] ?? 0);
  } catch {
    return NaN;
  }
}

export function canCountWrites(): boolean {
  return !Number.isNaN(writtenBytes());
}

/** Bytes allocated on disk (st_blocks x 512) under path, each inode counted once. */
export function allocatedBytes(...paths: string[]): number {
  const seen = new Set<number>();
  let total = 0;
  const walk = (p: string): void => {
    let st;
    try {
      st = lstatSync(p);
    } catch {
      return;
    }
    if (!seen.has(st.ino)) {
      seen.add(st.ino);
      total += st.blocks * 512;
    }
    if (st.isDirectory()) for (const n of readdirSync(p)) walk(join(p, n));
  };
  for (const p of paths) walk(p);
  return total;
}

export function freeBytes(path: string): number {
  const s = statfsSync(path);
  return s.bavail * s.bsize;
}

/** Run fn and report its time, bytes written and the change of allocation under paths. */
export function measure(paths: string[], fn: () => void): { ms: number; written: number; allocated: number } {
  const a0 = allocatedBytes(...paths);
  const w0 = writtenBytes();
  const t = Number(process.hrtime.bigint());
  fn();
  const ms = (Number(process.hrtime.bigint()) - t) / 1e6;
  return { ms, written: writtenBytes() - w0, allocated: allocatedBytes(...paths) - a0 };
}
