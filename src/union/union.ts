/**
 * A file-level union (AUFS / overlay style) in userspace: read-only branches (layers) under one writable branch
 * (the container). The merged view resolves each path top-down (lookup.ts), lists merged directories
 * (readdir.ts), copies whole files up on their first write (copyup.ts, file.ts) and records deletions as
 * whiteouts (whiteout.ts). Synchronous, like node:fs's *Sync calls.
 */
import { closeSync, openSync, rmSync, mkdirSync, type Stats } from 'node:fs';
import { Branch } from './branch.js';
import { copyUpDirs, copyUpEntry } from './copyup.js';
import { UnionError } from './errors.js';
import { UnionFile } from './file.js';
import { resolve, type Resolved } from './lookup.js';
import { components } from './path.js';
import { mergedNames } from './readdir.js';
import { addWhiteout, markOpaque, removeWhiteout } from './whiteout.js';

export interface UnionOptions {
  /** Read-only branches, top (newest layer) first. */
  lower: readonly string[];
  /** The writable branch; without it the view is read-only. */
  upper?: string;
}

export type OpenFlags = 'r' | 'r+' | 'w' | 'wx';

export interface UnionCounters {
  copyUps: number;
  copyUpBytes: number;
  whiteouts: number;
}

export class Union {
  readonly branches: readonly Branch[];
  readonly upper: Branch | undefined;
  readonly counters: UnionCounters = { copyUps: 0, copyUpBytes: 0, whiteouts: 0 };

  constructor(opts: UnionOptions) {
    this.upper = opts.upper !== undefined ? new Branch(opts.upper, true) : undefined;
    const lower = opts.lower.map((d) => new Branch(d, false));
    this.branches = this.upper ? [this.upper, ...lower] : lower;
    if (this.branches.length === 0) throw new UnionError('EINVAL', 'a union needs at least one branch');
  }

  private find(path: string): Resolved {
    const r = resolve(this.branches, components(path));
    if ('missing' in r) throw new UnionError(r.missing, path);
    return r;
  }

  private tryFind(parts: readonly string[]): Resolved | undefined {
    const r = resolve(this.branches, parts);
    return 'missing' in r ? undefined : r;
  }

  private writableBranch(path: string): Branch {
    if (!this.upper) throw new UnionError('EROFS', `read-only union: ${path}`);
    return this.upper;
  }

  /** Parent directory parts of parts, checked to be a directory of the merged view; copied up. */
  private prepareParent(upper: Branch, parts: readonly string[], path: string): void {
    const parent = parts.slice(0, -1);
    const p = this.tryFind(parent);
    if (!p) throw new UnionError('ENOENT', path);
    if (!p.stats.isDirectory()) throw new UnionError('ENOTDIR', path);
    copyUpDirs(upper, parent, (rel) => this.find(rel));
  }

  /** lstat of the visible entry (symbolic links are not followed). */
  stat(path: string): Stats {
    return this.find(path).stats;
  }

  exists(path: string): boolean {
    return this.tryFind(components(path)) !== undefined;
  }

  /** Which branch holds the visible entry: 0 is the top (the writable branch when there is one). */
  branchOf(path: string): number {
    return this.branches.indexOf(this.find(path).branch);
  }

  readdir(path: string): string[] {
    const r = this.find(path);
    if (!r.stats.isDirectory()) throw new UnionError('ENOTDIR', path);
    return mergedNames(r.dirs, r.rel);
  }

  open(path: string, flags: OpenFlags = 'r'): UnionFile {
    const parts = components(path);
    if (parts.length === 0) throw new UnionError('EISDIR', path);
    const r = this.tryFind(parts);
    if (r?.stats.isDirectory()) throw new UnionError('EISDIR', path);
    if (flags === 'r' || flags === 'r+') {
      if (!r) throw new UnionError('ENOENT', path);
      const writable = flags === 'r+';
      const upper = writable ? this.writableBranch(path) : this.upper;
      return new UnionFile(r.branch.host(r.rel), r.branch === upper, writable, () => this.copyUp(path));
    }
    if (r && flags === 'wx') throw new UnionError('EEXIST', path);
    const upper = this.writableBranch(path);
    this.prepareParent(upper, parts, path);
    const rel = parts.join('/');
    if (r && r.branch === upper) {
      closeSync(openSync(upper.host(rel), 'w'));
    } else {
      removeWhiteout(upper, rel);
      closeSync(openSync(upper.host(rel), 'w', r ? r.stats.mode & 0o7777 : 0o644));
    }
    return new UnionFile(upper.host(rel), true, true, () => upper.host(rel));
  }

  /** Copy the entry at path up into the writable branch (no-op if it is there); returns its host path. */
  copyUp(path: string): string {
    const upper = this.writableBranch(path);
    const parts = components(path);
    const r = this.find(path);
    if (r.branch === upper) return upper.host(r.rel);
    copyUpDirs(upper, parts.slice(0, -1), (rel) => this.find(rel));
    this.counters.copyUpBytes += copyUpEntry(upper, r);
    this.counters.copyUps++;
    return upper.host(r.rel);
  }

  readFile(path: string): Buffer {
    const f = this.open(path, 'r');
    try {
      const size = f.size();
      const buf = Buffer.alloc(size);
      let done = 0;
      while (done < size) {
        const n = f.read(buf.subarray(done), done);
        if (n === 0) break;
        done += n;
      }
      return buf.subarray(0, done);
    } finally {
      f.close();
    }
  }

  writeFile(path: string, data: Uint8Array | string): void {
    const f = this.open(path, 'w');
    try {
      const buf = typeof data === 'string' ? Buffer.from(data) : data;
      if (buf.length > 0) f.write(buf, 0);
    } finally {
      f.close();
    }
  }

  unlink(path: string): void {
    const upper = this.writableBranch(path);
    const parts = components(path);
    const r = this.find(path);
    if (r.stats.isDirectory()) throw new UnionError('EISDIR', path);
    if (r.branch === upper) rmSync(upper.host(r.rel));
    if (this.tryFind(parts)) this.whiteout(upper, parts);
  }

  mkdir(path: string): void {
    const upper = this.writableBranch(path);
    const parts = components(path);
    if (parts.length === 0 || this.tryFind(parts)) throw new UnionError('EEXIST', path);
    this.prepareParent(upper, parts, path);
    const rel = parts.join('/');
    const hidSomething = removeWhiteout(upper, rel);
    mkdirSync(upper.host(rel), { mode: 0o755 });
    if (hidSomething) markOpaque(upper, rel);
  }

  rmdir(path: string): void {
    const upper = this.writableBranch(path);
    const parts = components(path);
    if (parts.length === 0) throw new UnionError('EINVAL', 'cannot remove the root');
    const r = this.find(path);
    if (!r.stats.isDirectory()) throw new UnionError('ENOTDIR', path);
    if (mergedNames(r.dirs, r.rel).length > 0) throw new UnionError('ENOTEMPTY', path);
    if (r.dirs.includes(upper)) rmSync(upper.host(r.rel), { recursive: true });
    if (this.tryFind(parts)) this.whiteout(upper, parts);
  }

  private whiteout(upper: Branch, parts: readonly string[]): void {
    this.prepareParent(upper, parts, parts.join('/'));
    addWhiteout(upper, parts.join('/'));
    this.counters.whiteouts++;
  }
}
