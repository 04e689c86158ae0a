/**
 * Path resolution through the branches, top first (the writable branch, then the layers from newest to oldest).
 *
 * Per path component, walking the branches still visible for the parent directory:
 * - the first branch holding the name gives the entry; a non-directory there shadows everything below;
 * - a directory merges with directories of the same path below, until a branch marks it opaque
 *   (`.wh..wh..opq`) or holds a non-directory of that name;
 * - a whiteout (`.wh.NAME`, or an overlayfs 0/0 character device in place of NAME) hides NAME in every branch
 *   below the one holding it (an entry in the same branch stays visible).
 */
import type { Stats } from 'node:fs';
import type { Branch } from './branch.js';
import { isOverlayWhiteout } from './names.js';

export interface Resolved {
  /** Merged-view path, components joined by '/'. */
  rel: string;
  /** Branch holding the visible entry and its lstat. */
  branch: Branch;
  stats: Stats;
  /** For a directory: the branches whose directories merge into it, top first. */
  dirs: Branch[];
}

export type Resolution = Resolved | { missing: 'ENOENT' | 'ENOTDIR' };

export function resolve(branches: readonly Branch[], parts: readonly string[]): Resolution {
  let visible: readonly Branch[] = branches;
  let parent = '';
  if (parts.length === 0) {
    const dirs = rootDirs(branches);
    return { rel: '', branch: dirs[0]!, stats: dirs[0]!.lstat('')!, dirs };
  }
  let found: Resolved | undefined;
  for (let i = 0; i < parts.length; i++) {
    const name = parts[i]!;
    const rel = parent === '' ? name : `${parent}/${name}`;
    found = undefined;
    const dirs: Branch[] = [];
    for (const b of visible) {
      const st = b.lstat(rel);
      if (st && isOverlayWhiteout(st)) break;
      if (st) {
        if (!found) {
          found = { rel, branch: b, stats: st, dirs };
          if (!st.isDirectory()) break;
          dirs.push(b);
        } else if (st.isDirectory()) {
          dirs.push(b);
        } else {
          break;
        }
        if (b.isOpaque(rel)) break;
      }
      if (b.hasWhiteoutFile(parent, name)) break;
    }
    if (!found) return { missing: 'ENOENT' };
    if (i < parts.length - 1 && !found.stats.isDirectory()) return { missing: 'ENOTDIR' };
    visible = dirs;
    parent = rel;
  }
  return found!;
}

function rootDirs(branches: readonly Branch[]): Branch[] {
  const out: Branch[] = [];
  for (const b of branches) {
    out.push(b);
    if (b.isOpaque('')) break;
  }
  return out;
}
