/**
 * ext4 inside a volume, without a mount: libext2fs (the `ext2fs` package, compiled to WASM) runs in a worker
 * thread, because it installs process-wide uncaught-error handlers and has a fixed heap that aborts on big
 * operations. The worker's `Disk` forwards every block read, write, discard and flush to this thread, where a
 * `VolumeDisk` over the volume serves it; so the pool stays owned by one thread and one transaction.
 *
 * Contract:
 * - `FsSession.open(volume)` mounts; `close()` unmounts (flushing libext2fs's caches) and ends the worker.
 * - A read-only volume (a committed layer, a view) mounts read-only: the worker's disk drops writes and this
 *   side refuses every write request with EROFS; `writable` is false and the changing calls throw EROFS before
 *   reaching the worker.
 * - Calls move at most 1 MiB of file data each (libext2fs aborts at ~16 MiB per operation).
 * - Errors from the filesystem arrive as `FsError` with the errno code (ENOENT, EEXIST, ENOTDIR, ...); once a
 *   block I/O on this side failed (ENOSPC_DATA from a full pool, an I/O error), every failing call reports
 *   that error instead of the EIO libext2fs turned it into. A volume without ext4 fails `open` with ENOENT.
 */
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { ThinpoolError } from '../errors.js';
import { VolumeDisk } from '../testing/disk.js';
import type { Volume } from '../thin/volume.js';

export const CHUNK = 1024 * 1024;

export type EntryType = 'file' | 'dir' | 'symlink' | 'other';

export interface FsStat {
  path: string;
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
  ino: number;
  nlink: number;
  target?: string;
}

export interface PutEntry {
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'link';
  mode: number;
  uid: number;
  gid: number;
  /** symlink target, or the hard link's existing path */
  linkname?: string;
  /** Whole content of a small file (else: returns an fd for write()/close()). */
  data?: Uint8Array;
  /** Refuse parents that are symlinks (paths of layer tars). Default true. */
  noSymlinkParents?: boolean;
}

export class FsError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'FsError';
    this.code = code;
  }
}

// The worker, as CommonJS source (it runs from src/ under vitest and from dist/ alike).
// Only dynamic import(): the eval'd source is CommonJS or an ES module depending on the parent's --input-type.
const WORKER = String.raw`
(async () => {
const { parentPort, workerData } = await import('node:worker_threads');
const crypto = await import('node:crypto');
const { pathToFileURL } = await import('node:url');
const { Buffer } = await import('node:buffer');
const load = async (p) => { const m = await import(pathToFileURL(p).href); return m.default ?? m; };
const ext2fs = await load(workerData.ext2fs);
const { Disk } = await load(workerData.fileDisk);
let seq = 0;
const pending = new Map();
function io(msg, transfer) {
  return new Promise((resolve, reject) => {
    const id = ++seq;
    pending.set(id, { resolve, reject });
    parentPort.postMessage(Object.assign({ t: 'io', id }, msg), transfer || []);
  });
}
// Every libext2fs I/O is one 4 KiB block: this disk caches 256 KiB read windows and keeps written pages
// (write-back) until 16 MiB are dirty, a flush, a discard or the unmount, then sends them as runs of up to 1 MiB.
const PAGE = 4096, WIN = 256 * 1024, MAXWIN = 128, MAXDIRTY = 16 * 1024 * 1024, RUN = 1024 * 1024;
class ProxyDisk extends Disk {
  constructor(ro, capacity) { super(ro, false, false, true); this.cap = capacity; this.win = new Map(); this.dirty = new Map(); }
  async _getCapacity() { return this.cap; }
  async fetchWin(w) {
    let b = this.win.get(w);
    if (b) { this.win.delete(w); this.win.set(w, b); return b; }
    const off = w * WIN;
    const len = Math.min(WIN, this.cap - off);
    const r = await io({ op: 'read', length: len, offset: off });
    b = new Uint8Array(r.data, 0, r.n);
    for (let p = off / PAGE; p * PAGE < off + b.length; p++) {
      const d = this.dirty.get(p);
      if (d) b.set(d.subarray(0, Math.min(PAGE, off + b.length - p * PAGE)), p * PAGE - off);
    }
    this.win.set(w, b);
    if (this.win.size > MAXWIN) this.win.delete(this.win.keys().next().value);
    return b;
  }
  async _read(buffer, bufferOffset, length, fileOffset) {
    const end = Math.min(fileOffset + length, this.cap);
    let done = 0;
    while (fileOffset + done < end) {
      const pos = fileOffset + done;
      const w = Math.floor(pos / WIN);
      const b = await this.fetchWin(w);
      const within = pos - w * WIN;
      const n = Math.min(b.length - within, end - pos);
      if (n <= 0) break;
      buffer.set(b.subarray(within, within + n), bufferOffset + done);
      done += n;
    }
    return { bytesRead: done, buffer };
  }
  async _write(buffer, bufferOffset, length, fileOffset) {
    let done = 0;
    while (done < length) {
      const pos = fileOffset + done;
      const p = Math.floor(pos / PAGE);
      const within = pos - p * PAGE;
      const n = Math.min(PAGE - within, length - done);
      let page = this.dirty.get(p);
      if (!page) {
        page = new Uint8Array(PAGE);
        if (n < PAGE) await this._read(page, 0, PAGE, p * PAGE);
        this.dirty.set(p, page);
      }
      page.set(buffer.subarray(bufferOffset + done, bufferOffset + done + n), within);
      const w = Math.floor(pos / WIN);
      const cached = this.win.get(w);
      if (cached) cached.set(buffer.subarray(bufferOffset + done, bufferOffset + done + n), pos - w * WIN);
      done += n;
    }
    if (this.dirty.size * PAGE >= MAXDIRTY) await this.writeBack();
    return { bytesWritten: length, buffer };
  }
  async writeBack() {
    if (this.dirty.size === 0) return;
    const pages = [...this.dirty.keys()].sort((a, b) => a - b);
    let i = 0;
    while (i < pages.length) {
      let j = i + 1;
      while (j < pages.length && pages[j] === pages[j - 1] + 1 && (j - i) * PAGE < RUN) j++;
      const run = new Uint8Array((j - i) * PAGE);
      for (let k = i; k < j; k++) run.set(this.dirty.get(pages[k]), (k - i) * PAGE);
      const off = pages[i] * PAGE;
      const len = Math.min(run.length, this.cap - off);
      const data = len === run.length ? run : run.slice(0, len);
      await io({ op: 'write', data, offset: off }, [data.buffer]);
      i = j;
    }
    this.dirty.clear();
  }
  async _flush() { await this.writeBack(); await io({ op: 'flush' }); }
  async discard(offset, length) {
    if (this.readOnly) return;
    await this.writeBack();
    await io({ op: 'discard', offset, length });
    for (const w of [...this.win.keys()]) if (w * WIN < offset + length && (w + 1) * WIN > offset) this.win.delete(w);
  }
}
let fs = null;
let disk = null;
const S_IFMT = 0o170000;
function typeOf(mode) {
  const t = mode & S_IFMT;
  return t === 0o100000 ? 'file' : t === 0o040000 ? 'dir' : t === 0o120000 ? 'symlink' : 'other';
}
async function lstat(p) {
  try {
    const s = await fs.lstat(p);
    const out = { path: p, type: typeOf(s.mode), mode: s.mode & 0o7777, uid: s.uid, gid: s.gid, size: s.size, mtimeMs: s.mtime.getTime(), ino: s.ino, nlink: s.nlink };
    if (out.type === 'symlink') out.target = await fs.readlink(p);
    return out;
  } catch (e) {
    if (e && e.code === 'ENOENT') return null;
    throw e;
  }
}
function toBuf(u) { return Buffer.from(u.buffer, u.byteOffset, u.byteLength); }
function join(a, b) { return a === '/' ? '/' + b : a + '/' + b; }
async function rmrf(p) {
  const s = await lstat(p);
  if (!s) return;
  if (s.type === 'dir') {
    for (const n of await fs.readdir(p)) await rmrf(join(p, n));
    await fs.rmdir(p);
  } else await fs.unlink(p);
}
function err(code, message) { const e = new Error(message); e.code = code; return e; }
async function checkParents(p, noSymlinks) {
  const parts = p.split('/').filter(Boolean);
  let cur = '';
  for (let i = 0; i < parts.length - 1; i++) {
    cur += '/' + parts[i];
    const s = await lstat(cur);
    if (!s) { await fs.mkdir(cur, 0o755); continue; }
    if (s.type === 'symlink' && noSymlinks) throw err('ESYMLINK', 'path ' + p + ' goes through the symbolic link ' + cur + ' (-> ' + s.target + '): refusing to write through a link');
    if (s.type !== 'dir' && s.type !== 'symlink') throw err('ENOTDIR', 'path ' + p + ': ' + cur + ' is not a directory');
  }
}
async function tree(root) {
  const out = [];
  async function walk(dir) {
    const names = (await fs.readdir(dir)).sort();
    for (const n of names) {
      const p = join(dir, n);
      const s = await lstat(p);
      out.push(s);
      if (s.type === 'dir') await walk(p);
    }
  }
  await walk(root);
  return out;
}
const fds = new Map();
const ops = {
  async mount(capacity, ro) {
    disk = new ProxyDisk(ro, capacity);
    fs = (await ext2fs.mount(disk, 0)).promises;
    fs.__raw = fs;
    return true;
  },
  async umount() {
    if (fs) {
      for (const fd of fds.keys()) { try { await fs.close(fd); } catch {} }
      fds.clear();
      const raw = fs; fs = null;
      await ext2fs.umount(raw);
      await disk.writeBack();
    }
    return true;
  },
  lstat,
  async readdir(p) { return (await fs.readdir(p)).sort(); },
  tree,
  rmrf,
  async emptyDir(p) { for (const n of await fs.readdir(p)) await rmrf(join(p, n)); return true; },
  async mkdirp(p, mode) {
    await checkParents(p + '/x', false);
    const s = await lstat(p);
    if (!s) await fs.mkdir(p, mode);
    return true;
  },
  async put(e) {
    await checkParents(e.path, e.noSymlinkParents !== false);
    const old = await lstat(e.path);
    if (old && !(old.type === 'dir' && e.type === 'dir')) await rmrf(e.path);
    if (e.type === 'dir') {
      if (!old || old.type !== 'dir') await fs.mkdir(e.path, e.mode);
      await fs.chmod(e.path, e.mode);
      await fs.chown(e.path, e.uid, e.gid);
      return { fd: null, ino: (await lstat(e.path)).ino };
    }
    if (e.type === 'symlink') {
      await fs.symlink(e.linkname, e.path);
      await fs.lchown(e.path, e.uid, e.gid);
      return { fd: null, ino: (await lstat(e.path)).ino };
    }
    if (e.type === 'link') {
      const t = await lstat(e.linkname);
      if (!t) throw err('ENOENT', 'hard link ' + e.path + ': its target ' + e.linkname + ' does not exist');
      if (t.type === 'dir') throw err('EPERM', 'hard link ' + e.path + ': its target ' + e.linkname + ' is a directory');
      await fs.link(e.linkname, e.path);
      return { fd: null, ino: t.ino };
    }
    const fd = (await fs.open(e.path, 'w', e.mode)).fd;
    if (e.data) {
      if (e.data.length > 0) await fs.write(fd, toBuf(e.data), 0, e.data.length, 0);
      await fs.fchmod(fd, e.mode);
      await fs.fchown(fd, e.uid, e.gid);
      await fs.close(fd);
      return { fd: null, ino: (await lstat(e.path)).ino };
    }
    fds.set(fd, e);
    return { fd, ino: (await lstat(e.path)).ino };
  },
  async open(p, flags) { const fd = (await fs.open(p, flags, 0o644)).fd; fds.set(fd, null); return fd; },
  async write(fd, data, pos) { await fs.write(fd, toBuf(data), 0, data.length, pos); return data.length; },
  async read(fd, length, pos) {
    const b = Buffer.alloc(length);
    const { bytesRead } = await fs.read(fd, b, 0, length, pos);
    const out = new Uint8Array(bytesRead); out.set(b.subarray(0, bytesRead));
    return out;
  },
  async close(fd) {
    const e = fds.get(fd);
    fds.delete(fd);
    if (e) { await fs.fchmod(fd, e.mode); await fs.fchown(fd, e.uid, e.gid); }
    await fs.close(fd);
    return true;
  },
  async hashFile(p) {
    const h = crypto.createHash('sha256');
    const fd = (await fs.open(p, 'r', 0)).fd;
    try {
      const b = Buffer.alloc(${CHUNK});
      for (let pos = 0; ; ) {
        const { bytesRead } = await fs.read(fd, b, 0, b.length, pos);
        if (bytesRead <= 0) break;
        h.update(b.subarray(0, bytesRead));
        pos += bytesRead;
      }
    } finally { await fs.close(fd); }
    return h.digest('hex');
  },
  async unlink(p) { await fs.unlink(p); return true; },
  async rmdir(p) { await fs.rmdir(p); return true; },
  async trim() { await fs.trim(); return true; },
};
parentPort.on('message', async (m) => {
  if (m.t === 'io-reply') {
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (m.error) p.reject(err(m.error.code, m.error.message)); else p.resolve(m);
    return;
  }
  try {
    if (!ops[m.op]) throw err('EINVAL', 'unknown operation ' + m.op);
    if (m.op !== 'mount' && !fs) throw err('EINVAL', 'not mounted');
    const value = await ops[m.op](...m.args);
    parentPort.postMessage({ t: 'reply', id: m.id, value });
  } catch (e) {
    parentPort.postMessage({ t: 'reply', id: m.id, error: { code: (e && e.code) || 'EIO', message: String((e && e.message) || e) } });
  }
});
parentPort.postMessage({ t: 'ready' });
})().catch((e) => { setTimeout(() => { throw e; }); });
`;

const require_ = createRequire(import.meta.url);

/** Idle workers (unmounted, libext2fs compiled and ready), reused by the next session. */
const idle: Worker[] = [];
const MAX_IDLE = 2;

function spawnWorker(): Worker {
  const w = new Worker(WORKER, {
    eval: true,
    workerData: { ext2fs: require_.resolve('ext2fs'), fileDisk: require_.resolve('file-disk') },
  });
  w.unref();
  return w;
}

interface Reply { t: 'reply'; id: number; value?: unknown; error?: { code: string; message: string } }
interface IoReq { t: 'io'; id: number; op: 'read' | 'write' | 'flush' | 'discard'; length?: number; offset?: number; data?: Uint8Array }

/** One mounted ext4 filesystem inside a volume. */
export class FsSession {
  readonly volume: Volume;
  readonly writable: boolean;
  private readonly worker: Worker;
  private readonly disk: VolumeDisk;
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  private dead: Error | null = null;
  /**
   * The first error of a block I/O this side served (e.g. ENOSPC_DATA from a full pool): libext2fs only sees
   * EIO, so a call that fails after it reports this error, the cause, instead.
   */
  private ioError: unknown = null;

  private readonly onMessage: (m: Reply | IoReq) => void;
  private readonly onFail: (e: Error) => void;
  private readonly onExit: (code: number) => void;

  private constructor(volume: Volume, readOnly: boolean) {
    this.volume = volume;
    this.writable = !readOnly;
    this.disk = new VolumeDisk(volume, { readOnly });
    this.worker = idle.pop() ?? spawnWorker();
    this.onMessage = (m) => {
      if (m.t === 'io') void this.serve(m);
      else {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (!p) return;
        if (m.error) p.reject(new FsError(m.error.code, m.error.message));
        else p.resolve(m.value);
      }
    };
    this.onFail = (e) => {
      this.dead = e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    this.onExit = (code) => this.onFail(new FsError('EIO', `the ext2fs worker exited (code ${code})`));
    this.worker.on('message', this.onMessage);
    this.worker.on('error', this.onFail);
    this.worker.on('exit', this.onExit);
  }

  /** Unmounted cleanly: keep the worker (and its compiled libext2fs) for the next session. */
  private release(reuse: boolean): Promise<unknown> {
    this.worker.off('message', this.onMessage);
    this.worker.off('error', this.onFail);
    this.worker.off('exit', this.onExit);
    if (reuse && !this.dead && idle.length < MAX_IDLE) {
      idle.push(this.worker);
      return Promise.resolve();
    }
    return this.worker.terminate();
  }

  /** Mount the ext4 filesystem of a volume (read-only when the volume is, or when asked). */
  static async open(volume: Volume, opts: { readOnly?: boolean } = {}): Promise<FsSession> {
    const ro = opts.readOnly === true || volume.readOnly;
    const s = new FsSession(volume, ro);
    try {
      await s.call('mount', volume.sizeBytes, ro);
    } catch (e) {
      await s.release(false);
      if (s.ioError !== null) throw s.ioError;
      // libext2fs's own words ("UNKNOWN node_ext2fs_mount UNKNOWN (2133571347)") stay in the cause.
      throw new ThinpoolError('ENOENT', `volume ${volume.label} holds no ext4 filesystem (or a damaged one that cannot be mounted)`, { cause: e });
    }
    return s;
  }

  private async serve(m: IoReq): Promise<void> {
    try {
      switch (m.op) {
        case 'read': {
          const ab = new ArrayBuffer(m.length!);
          const r = await this.disk.read(Buffer.from(ab), 0, m.length!, m.offset!);
          this.worker.postMessage({ t: 'io-reply', id: m.id, n: r.bytesRead, data: ab }, [ab]);
          return;
        }
        case 'write':
          if (!this.writable) throw new ThinpoolError('EROFS', `volume ${this.volume.label} is read-only`);
          await this.disk.write(Buffer.from(m.data!.buffer, m.data!.byteOffset, m.data!.length), 0, m.data!.length, m.offset!);
          break;
        case 'discard':
          if (!this.writable) throw new ThinpoolError('EROFS', `volume ${this.volume.label} is read-only`);
          await this.disk.discard(m.offset!, m.length!);
          break;
        case 'flush':
          break;
      }
      this.worker.postMessage({ t: 'io-reply', id: m.id });
    } catch (e) {
      if (this.ioError === null) this.ioError = e;
      this.worker.postMessage({ t: 'io-reply', id: m.id, error: { code: (e as { code?: string }).code ?? 'EIO', message: (e as Error).message } });
    }
  }

  private call<T>(op: string, ...args: unknown[]): Promise<T> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise<T>((resolve, reject) => {
      const id = ++this.seq;
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject: (e) => reject(this.ioError ?? e) });
      this.worker.postMessage({ t: 'call', id, op, args });
    });
  }

  private mustWrite(what: string): void {
    if (!this.writable) throw new ThinpoolError('EROFS', `volume ${this.volume.label} is read-only (a committed layer or a view): cannot ${what}`);
  }

  lstat(path: string): Promise<FsStat | null> { return this.call('lstat', path); }
  readdir(path: string): Promise<string[]> { return this.call('readdir', path); }
  /** Every entry below root (not root itself), depth first, names sorted. */
  tree(root = '/'): Promise<FsStat[]> { return this.call('tree', root); }
  hashFile(path: string): Promise<string> { return this.call('hashFile', path); }

  async readFile(path: string): Promise<Buffer> {
    const fd = await this.call<number>('open', path, 'r');
    const parts: Uint8Array[] = [];
    try {
      for (let pos = 0; ;) {
        const b = await this.call<Uint8Array>('read', fd, CHUNK, pos);
        if (b.length === 0) break;
        parts.push(b);
        pos += b.length;
      }
    } finally {
      await this.call('close', fd);
    }
    return Buffer.concat(parts);
  }

  /** Stream a file's content in chunks of at most 1 MiB. */
  async *readChunks(path: string): AsyncGenerator<Uint8Array> {
    const fd = await this.call<number>('open', path, 'r');
    try {
      for (let pos = 0; ;) {
        const b = await this.call<Uint8Array>('read', fd, CHUNK, pos);
        if (b.length === 0) break;
        yield b;
        pos += b.length;
      }
    } finally {
      await this.call('close', fd);
    }
  }

  /** Create or replace one entry (parents made as needed); a file without data gets a handle (fd) to fill. */
  async put(e: PutEntry): Promise<{ fd: number | null; ino: number }> {
    this.mustWrite(`write ${e.path}`);
    return this.call('put', e);
  }

  async write(fd: number, data: Uint8Array, pos: number): Promise<void> {
    this.mustWrite('write');
    for (let off = 0; off < data.length; off += CHUNK) {
      const part = data.subarray(off, Math.min(data.length, off + CHUNK));
      await this.call('write', fd, part, pos + off);
    }
  }

  closeFile(fd: number): Promise<void> { return this.call('close', fd); }

  /** Write a whole file (replacing what is there). */
  async writeFile(path: string, data: Uint8Array, opts: { mode?: number; uid?: number; gid?: number } = {}): Promise<void> {
    const base = { path, type: 'file' as const, mode: opts.mode ?? 0o644, uid: opts.uid ?? 0, gid: opts.gid ?? 0, noSymlinkParents: false };
    if (data.length <= CHUNK) {
      await this.put({ ...base, data });
      return;
    }
    const fd = (await this.put(base)).fd!;
    try {
      await this.write(fd, data, 0);
    } finally {
      await this.closeFile(fd);
    }
  }

  async rmrf(path: string): Promise<void> {
    this.mustWrite(`remove ${path}`);
    await this.call('rmrf', path);
  }

  async emptyDir(path: string): Promise<void> {
    this.mustWrite(`empty ${path}`);
    await this.call('emptyDir', path);
  }

  async mkdirp(path: string, mode = 0o755): Promise<void> {
    this.mustWrite(`make ${path}`);
    await this.call('mkdirp', path, mode);
  }

  /** Give the blocks of deleted files back to the pool. */
  async trim(): Promise<void> {
    this.mustWrite('trim');
    await this.call('trim');
  }

  /** Unmount (writes libext2fs's caches back) and end the worker. */
  async close(): Promise<void> {
    let ok = false;
    try {
      if (!this.dead) await this.call('umount');
      ok = true;
    } finally {
      await this.release(ok);
    }
  }
}

/** Mount, run fn, unmount. */
export async function withFs<T>(volume: Volume, fn: (fs: FsSession) => Promise<T>, opts: { readOnly?: boolean } = {}): Promise<T> {
  const s = await FsSession.open(volume, opts);
  let ok = false;
  try {
    const r = await fn(s);
    ok = true;
    return r;
  } finally {
    try {
      await s.close();
    } catch (e) {
      if (ok) throw e;
    }
  }
}
