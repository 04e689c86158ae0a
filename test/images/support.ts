// Test images built with tar-stream, a reference extraction into a directory (whiteout rules applied), tree
// comparison, and e2fsck on volumes exported to sparse files.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  ftruncateSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  writeSync,
  chmodSync,
  lutimesSync,
} from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { expect } from 'vitest';
import type { Volume } from '../../src/thin/volume.js';
import type { FsSession } from '../../src/images/fs-worker.js';
import { toolPath } from '../support/tools.js';

export interface TEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link';
  body?: Buffer | string;
  mode?: number;
  uid?: number;
  gid?: number;
  linkname?: string;
  /** ms since the epoch; default: a time derived from the name */
  mtime?: number;
}

export function defaultMtime(name: string): number {
  let h = 0;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return 1600000000000 + (h % 100000000) * 1000;
}

export async function makeTar(entries: TEntry[], opts: { gzip?: boolean } = {}): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => chunks.push(c as Buffer));
  const end = new Promise<void>((r) => pack.on('end', () => r()));
  for (const e of entries) {
    const type = e.type ?? 'file';
    const body = type === 'file' ? (typeof e.body === 'string' ? Buffer.from(e.body) : (e.body ?? Buffer.alloc(0))) : undefined;
    await new Promise<void>((resolve, reject) => {
      pack.entry(
        {
          name: e.name,
          type,
          mode: e.mode ?? (type === 'directory' ? 0o755 : type === 'symlink' ? 0o777 : 0o644),
          uid: e.uid ?? 0,
          gid: e.gid ?? 0,
          mtime: new Date(e.mtime ?? defaultMtime(e.name)),
          linkname: e.linkname,
          size: body?.length ?? 0,
        },
        body ?? Buffer.alloc(0),
        (err) => (err ? reject(err) : resolve()),
      );
    });
  }
  pack.finalize();
  await end;
  const t = Buffer.concat(chunks);
  return opts.gzip ? gzipSync(t) : t;
}

export function pattern(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  let x = (seed * 2654435761) >>> 0;
  for (let i = 0; i < size; i += 4) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    b.writeUInt32LE(x, i);
  }
  return b;
}

/** The three layers of the standard test image. */
export function threeLayers(big = 3 * 1024 * 1024): TEntry[][] {
  return [
    [
      { name: 'etc/', type: 'directory' },
      { name: 'etc/hostname', body: 'base\n' },
      { name: 'etc/passwd', body: 'root:x:0:0::/root:/bin/sh\n', mode: 0o600 },
      { name: 'bin/', type: 'directory' },
      { name: 'bin/tool', body: pattern(70000, 1), mode: 0o755, uid: 1000, gid: 100 },
      { name: 'bin/tool-hard', type: 'link', linkname: 'bin/tool' },
      { name: 'bin/sh', type: 'symlink', linkname: 'tool' },
      { name: 'data/', type: 'directory' },
      { name: 'data/big.bin', body: pattern(big, 2) },
      { name: 'cache/', type: 'directory', mode: 0o700 },
      { name: 'cache/a', body: 'a' },
      { name: 'cache/sub/', type: 'directory' },
      { name: 'cache/sub/b', body: 'b' },
      { name: 'gone.txt', body: 'to be whited out' },
      { name: 'gonedir/', type: 'directory' },
      { name: 'gonedir/x', body: 'x' },
    ],
    [
      { name: 'etc/hostname', body: 'layer two\n' },
      { name: 'etc/abs-link', type: 'symlink', linkname: '/etc/passwd' },
      { name: '.wh.gone.txt' },
      { name: '.wh.gonedir' },
      { name: 'cache/.wh..wh..opq' },
      { name: 'cache/new', body: 'fresh cache entry' },
      { name: 'data/big.bin', body: Buffer.concat([pattern(1024 * 1024, 3), pattern(100, 4)]) },
    ],
    [
      { name: 'etc/motd', body: 'hello from layer three\n', mode: 0o640, uid: 7, gid: 8 },
      { name: 'bin/tool', body: pattern(5000, 5), mode: 0o750 },
      { name: 'gone.txt', body: 'back again' },
      { name: 'opt/app/', type: 'directory' },
      { name: 'opt/app/run', type: 'link', linkname: 'etc/motd' },
    ],
  ];
}

function clean(name: string): string {
  return name
    .split('/')
    .filter((p) => p && p !== '.')
    .join('/');
}

/** Extract layers in order into dir, applying whiteouts and opaque markers (the reference). */
export function referenceExtract(dir: string, layers: TEntry[][]): void {
  mkdirSync(dir, { recursive: true });
  for (const layer of layers) {
    const unpacked = new Set<string>();
    const opaque: string[] = [];
    const stamps: Array<[string, number]> = [];
    for (const e of layer) {
      const rel = clean(e.name);
      const base = rel.slice(rel.lastIndexOf('/') + 1);
      const parent = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
      if (base === '.wh..wh..opq') {
        opaque.push(parent);
        continue;
      }
      if (base.startsWith('.wh.')) {
        rmSync(join(dir, parent, base.slice(4)), { recursive: true, force: true });
        continue;
      }
      const p = join(dir, rel);
      mkdirSync(join(dir, parent), { recursive: true });
      const type = e.type ?? 'file';
      let old: ReturnType<typeof lstatSync> | null = null;
      try {
        old = lstatSync(p);
      } catch {
        /* none */
      }
      if (old && !(old.isDirectory() && type === 'directory')) rmSync(p, { recursive: true, force: true });
      const mode = e.mode ?? (type === 'directory' ? 0o755 : 0o644);
      if (type === 'directory') {
        mkdirSync(p, { recursive: true });
        chmodSync(p, mode);
      } else if (type === 'symlink') symlinkSync(e.linkname!, p);
      else if (type === 'link') linkSync(join(dir, clean(e.linkname!)), p);
      else {
        writeFileSync(p, typeof e.body === 'string' ? Buffer.from(e.body) : (e.body ?? Buffer.alloc(0)));
        chmodSync(p, mode);
      }
      unpacked.add(rel);
      stamps.push([p, (e.mtime ?? defaultMtime(e.name)) / 1000]);
    }
    const onPath = new Set<string>();
    for (const u of unpacked) for (let i = u.lastIndexOf('/'); i > 0; i = u.lastIndexOf('/', i - 1)) onPath.add(u.slice(0, i));
    const prune = (rel: string): void => {
      for (const n of readdirSync(join(dir, rel))) {
        const c = rel ? `${rel}/${n}` : n;
        if (unpacked.has(c) || onPath.has(c)) {
          if (lstatSync(join(dir, c)).isDirectory()) prune(c);
        } else rmSync(join(dir, c), { recursive: true, force: true });
      }
    };
    for (const o of opaque) {
      mkdirSync(join(dir, o), { recursive: true });
      prune(o);
    }
    for (const [p, t] of stamps) {
      try {
        lutimesSync(p, t, t);
      } catch {
        /* whited out later in the layer */
      }
    }
  }
}

export interface Node {
  path: string;
  type: string;
  mode: number;
  target?: string;
  sha?: string;
  mtime?: number;
}

export function dirTree(root: string, opts: { times?: boolean } = {}): Node[] {
  const out: Node[] = [];
  const walk = (rel: string): void => {
    for (const n of readdirSync(join(root, rel)).sort()) {
      const r = `${rel}/${n}`;
      const st = lstatSync(join(root, r));
      const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : 'other';
      const node: Node = { path: r, type, mode: type === 'symlink' ? 0 : st.mode & 0o7777 };
      if (type === 'symlink') node.target = readlinkSync(join(root, r));
      if (type === 'file')
        node.sha = createHash('sha256')
          .update(readFileSync(join(root, r)))
          .digest('hex');
      if (opts.times && type !== 'dir') node.mtime = Math.floor(st.mtimeMs / 1000);
      out.push(node);
      if (type === 'dir') walk(r);
    }
  };
  walk('');
  return out;
}

export async function fsTree(fs: FsSession, opts: { times?: boolean } = {}): Promise<Node[]> {
  const out: Node[] = [];
  for (const s of await fs.tree('/')) {
    if (s.path === '/lost+found' || s.path.startsWith('/lost+found/')) continue;
    const node: Node = { path: s.path, type: s.type, mode: s.type === 'symlink' ? 0 : s.mode };
    if (s.type === 'symlink') node.target = s.target;
    if (s.type === 'file') node.sha = await fs.hashFile(s.path);
    if (opts.times && s.type !== 'dir') node.mtime = Math.floor(s.mtimeMs / 1000);
    out.push(node);
  }
  return out;
}

/** Write a volume's mapped extents to a sparse file of its size. */
export function exportSparse(v: Volume, file: string): void {
  const fd = openSync(file, 'w');
  try {
    ftruncateSync(fd, v.sizeBytes);
    const buf = Buffer.alloc(1024 * 1024);
    for (const e of v.map()) {
      for (let off = 0; off < e.lengthBytes; off += buf.length) {
        const n = Math.min(buf.length, e.lengthBytes - off);
        v.readSync(buf.subarray(0, n), e.offsetBytes + off);
        writeSync(fd, buf, 0, n, e.offsetBytes + off);
      }
    }
  } finally {
    closeSync(fd);
  }
}

export function expectFsck(v: Volume, dir: string): void {
  const file = join(dir, `fsck-${v.id}.img`);
  exportSparse(v, file);
  try {
    const r = spawnSync(toolPath('e2fsck'), ['-fn', file], { encoding: 'utf8' });
    expect(r.status, `e2fsck -fn ${v.label}:\n${r.stdout}${r.stderr}`).toBe(0);
  } finally {
    rmSync(file, { force: true });
  }
}

/** Distinct data blocks mapped by a set of volumes, in bytes. */
export function distinctBytes(vols: Volume[]): number {
  const seen = new Set<number>();
  for (const v of vols) {
    const bs = v.pool.blockSize;
    for (const e of v.map()) for (let i = 0; i < e.lengthBytes / bs; i++) seen.add(e.dblock + i);
  }
  return seen.size * (vols[0]?.pool.blockSize ?? 0);
}
