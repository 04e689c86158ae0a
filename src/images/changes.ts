/**
 * What changed in a container against its image, as `docker diff` reports it, and the layer those changes make,
 * as `docker commit` makes it. Works on two open filesystems (fs-worker.ts sessions); no pool state. Layer:
 * images and snapshotter (used by images.ts).
 *
 * Contract:
 * - `treeChanges` lists paths added (A), changed (C) and deleted (D), sorted by path; the ancestors of a change
 *   are C, a deleted tree is reported by its top only, and lost+found is left out. A file whose metadata is
 *   unchanged counts as changed only when it was written since `since` (ms) and its content differs.
 * - `changesDigest` is the sha256 diff id of the layer tar of those changes (files, links and directories as
 *   they are in the container, a whiteout `.wh.NAME` for each deletion), streamed, never held whole.
 */
import { createHash } from 'node:crypto';
import type { Header } from 'tar-stream';
import type { FsSession, FsStat } from './fs-worker.js';
import { tarStream } from './tar-stream-lazy.js';

export interface Change {
  kind: 'A' | 'C' | 'D';
  path: string;
}

/** A container's changes against its image: A, C, D rows; ancestors of changes are C (as docker reports them). */
export async function treeChanges(a: FsSession, b: FsSession, since: number): Promise<Change[]> {
  const skip = (p: string): boolean => p === '/lost+found' || p.startsWith('/lost+found/');
  const ta = new Map((await a.tree()).filter((s) => !skip(s.path)).map((s) => [s.path, s]));
  const tb = new Map((await b.tree()).filter((s) => !skip(s.path)).map((s) => [s.path, s]));
  const out = new Map<string, Change['kind']>();
  const parentsChanged = (p: string): void => {
    for (let i = p.lastIndexOf('/'); i > 0; i = p.lastIndexOf('/', i - 1)) {
      const d = p.slice(0, i);
      if (!out.has(d) && ta.has(d) && tb.has(d)) out.set(d, 'C');
    }
  };
  for (const [p, sb] of tb) {
    const sa = ta.get(p);
    if (!sa || sa.type !== sb.type) {
      out.set(p, sa ? 'C' : 'A');
      parentsChanged(p);
      continue;
    }
    if (await differs(a, b, sa, sb, since)) {
      out.set(p, 'C');
      parentsChanged(p);
    }
  }
  for (const p of ta.keys()) {
    if (tb.has(p)) continue;
    const parent = p.slice(0, p.lastIndexOf('/'));
    if (parent && ta.has(parent) && !tb.has(parent)) continue; // report the top of a deleted tree only
    out.set(p, 'D');
    parentsChanged(p);
  }
  return [...out].map(([path, kind]) => ({ kind, path })).sort((x, y) => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
}

async function differs(a: FsSession, b: FsSession, sa: FsStat, sb: FsStat, since: number): Promise<boolean> {
  if (sa.mode !== sb.mode || sa.uid !== sb.uid || sa.gid !== sb.gid || sa.target !== sb.target) return true;
  if (sa.type === 'dir') return false; // a directory is changed when something in it is (reported through its children)
  if (sa.size !== sb.size || sa.mtimeMs !== sb.mtimeMs || sa.ino !== sb.ino) return true;
  // Same metadata: the content can still differ when rewritten within the clock's second; compare it then.
  if (sa.type === 'file' && sb.mtimeMs >= since) return (await a.hashFile(sa.path)) !== (await b.hashFile(sb.path));
  return false;
}

/** sha256 of the layer tar made of the changes (files, links, dirs; whiteouts for deletions): the diff id. */
export async function changesDigest(b: FsSession, changes: Change[]): Promise<string> {
  const pack = tarStream().pack();
  const hash = createHash('sha256');
  pack.on('data', (c: unknown) => hash.update(c as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  const entry = (h: Partial<Header> & { name: string }, body?: Buffer): Promise<void> =>
    new Promise((resolve, reject) => {
      pack.entry(h, body ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
    });
  for (const ch of changes) {
    const rel = ch.path.slice(1);
    if (ch.kind === 'D') {
      const i = rel.lastIndexOf('/');
      await entry({ name: `${rel.slice(0, i + 1)}.wh.${rel.slice(i + 1)}`, type: 'file', size: 0, mode: 0o644, mtime: new Date(0) });
      continue;
    }
    const st = await b.lstat(ch.path);
    if (!st) continue;
    const common = { name: rel, mode: st.mode, uid: st.uid, gid: st.gid, mtime: new Date(st.mtimeMs) };
    if (st.type === 'dir') await entry({ ...common, type: 'directory' });
    else if (st.type === 'symlink') await entry({ ...common, type: 'symlink', linkname: st.target ?? '' });
    else if (st.type === 'file') {
      let fin!: Promise<void>;
      const s = (() => {
        let res!: () => void;
        let rej!: (e: Error) => void;
        fin = new Promise<void>((a, b2) => {
          res = a;
          rej = b2;
        });
        return pack.entry({ ...common, type: 'file', size: st.size }, (err) => (err ? rej(err) : res()));
      })();
      for await (const c of b.readChunks(ch.path)) {
        if (!s.write(c)) await new Promise<void>((r) => s.once('drain', () => r()));
      }
      s.end(undefined as unknown as Buffer);
      await fin;
    }
  }
  pack.finalize();
  await done;
  return `sha256:${hash.digest('hex')}`;
}
