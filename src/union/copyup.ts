/**
 * Copy-up: before the first change to an entry of a read-only branch, the whole entry moves to the writable
 * branch (file-level copy-on-write: a 4 KiB write into a 1 GiB file copies 1 GiB). Parent directories are
 * copied up first (empty, with their mode), so the writable branch mirrors the path.
 */
import { chmodSync, copyFileSync, mkdirSync, readlinkSync, symlinkSync, utimesSync } from 'node:fs';
import type { Branch } from './branch.js';
import type { Resolved } from './lookup.js';

/** Make sure every directory of parts (a directory path) exists in the writable branch. */
export function copyUpDirs(upper: Branch, parts: readonly string[], resolveDir: (rel: string) => Resolved): void {
  let rel = '';
  for (const p of parts) {
    rel = rel === '' ? p : `${rel}/${p}`;
    const st = upper.lstat(rel);
    if (st?.isDirectory()) continue;
    const src = resolveDir(rel);
    mkdirSync(upper.host(rel), { mode: src.stats.mode & 0o7777 });
    chmodSync(upper.host(rel), src.stats.mode & 0o7777);
  }
}

/** Copy the visible entry r (file, symlink or directory) into the writable branch; its parents must exist there. */
export function copyUpEntry(upper: Branch, r: Resolved): number {
  const dst = upper.host(r.rel);
  const src = r.branch.host(r.rel);
  const st = r.stats;
  if (st.isSymbolicLink()) {
    symlinkSync(readlinkSync(src), dst);
    return 0;
  }
  if (st.isDirectory()) {
    mkdirSync(dst, { mode: st.mode & 0o7777 });
    return 0;
  }
  copyFileSync(src, dst);
  chmodSync(dst, st.mode & 0o7777);
  utimesSync(dst, st.atime, st.mtime);
  return st.size;
}
