/** One branch of a union: a directory tree, read-only (a layer) or the single writable branch (the container). */
import { lstatSync, readdirSync, type Dirent, type Stats } from 'node:fs';
import { join } from 'node:path';
import { OPAQUE_MARKER, whiteoutName } from './names.js';

export class Branch {
  constructor(
    readonly root: string,
    readonly writable: boolean,
  ) {}

  /** Host path of a merged-view path in this branch. */
  host(rel: string): string {
    return rel === '' ? this.root : join(this.root, rel);
  }

  /** lstat of rel in this branch, undefined when absent. */
  lstat(rel: string): Stats | undefined {
    try {
      return lstatSync(this.host(rel));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
      throw e;
    }
  }

  /** Does this branch hold a `.wh.NAME` whiteout for name in directory dir (hiding the branches below)? */
  hasWhiteoutFile(dir: string, name: string): boolean {
    return this.lstat(dir === '' ? whiteoutName(name) : join(dir, whiteoutName(name))) !== undefined;
  }

  isOpaque(dir: string): boolean {
    return this.lstat(dir === '' ? OPAQUE_MARKER : join(dir, OPAQUE_MARKER)) !== undefined;
  }

  list(dir: string): string[] {
    return readdirSync(this.host(dir));
  }

  listTyped(dir: string): Dirent[] {
    return readdirSync(this.host(dir), { withFileTypes: true });
  }
}
