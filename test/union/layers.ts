/** Test layers described once and written in either format: AUFS (`.wh.` files) or kernel overlayfs (0/0 devices, xattrs). */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, lstatSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export type LayerOp =
  | { file: string; content: string }
  | { dir: string }
  | { link: string; target: string }
  | { del: string }
  | { opaque: string };

export type Format = 'aufs' | 'overlay';

export function writeLayer(root: string, ops: readonly LayerOp[], format: Format): void {
  mkdirSync(root, { recursive: true });
  for (const op of ops) {
    if ('file' in op) {
      mkdirSync(dirname(join(root, op.file)), { recursive: true });
      writeFileSync(join(root, op.file), op.content);
    } else if ('dir' in op) {
      mkdirSync(join(root, op.dir), { recursive: true });
    } else if ('link' in op) {
      mkdirSync(dirname(join(root, op.link)), { recursive: true });
      symlinkSync(op.target, join(root, op.link));
    } else if ('del' in op) {
      const p = join(root, op.del);
      mkdirSync(dirname(p), { recursive: true });
      if (format === 'aufs') writeFileSync(join(dirname(p), `.wh.${p.slice(dirname(p).length + 1)}`), '');
      else execFileSync('mknod', [p, 'c', '0', '0']);
    } else {
      const p = join(root, op.opaque);
      mkdirSync(p, { recursive: true });
      if (format === 'aufs') writeFileSync(join(p, '.wh..wh..opq'), '');
      else execFileSync('python3', ['-c', 'import os,sys; os.setxattr(sys.argv[1], "trusted.overlay.opaque", b"y")', p]);
    }
  }
}

/** Why the kernel side cannot run here, or undefined when it can. */
export function overlayUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `not Linux (${process.platform})`;
  if (process.getuid?.() !== 0) return 'not root (mounting needs CAP_SYS_ADMIN)';
  if (!readFileSync('/proc/filesystems', 'utf8').includes('overlay')) return 'kernel has no overlay filesystem';
  if (spawnSync('mknod', ['--version']).status !== 0) return 'mknod missing';
  if (spawnSync('python3', ['-c', 'import os; os.setxattr']).status !== 0) return 'python3 with os.setxattr missing';
  return undefined;
}

export interface Tree {
  [path: string]: string;
}

/** A description of a directory tree through an fs-like view: type, content / target, mode bits of files. */
export function snapshotTree(view: {
  readdir(p: string): string[];
  lstat(p: string): { isDirectory(): boolean; isSymbolicLink(): boolean; mode: number };
  read(p: string): string;
  readlink(p: string): string;
}): Tree {
  const out: Tree = {};
  const walk = (p: string): void => {
    for (const name of view.readdir(p).sort()) {
      const child = p === '' ? name : `${p}/${name}`;
      const st = view.lstat(child);
      if (st.isDirectory()) {
        out[child] = 'dir';
        walk(child);
      } else if (st.isSymbolicLink()) {
        out[child] = `link:${view.readlink(child)}`;
      } else {
        out[child] = `file:${(st.mode & 0o777).toString(8)}:${view.read(child)}`;
      }
    }
  };
  walk('');
  return out;
}

export function hostView(root: string) {
  return {
    readdir: (p: string) => readdirSync(join(root, p)),
    lstat: (p: string) => lstatSync(join(root, p)),
    read: (p: string) => readFileSync(join(root, p), 'utf8'),
    readlink: (p: string) => readlinkSync(join(root, p)),
  };
}
