/**
 * The ext2fs worker thread: libext2fs (the `ext2fs` package, compiled to WASM) mounts the filesystem of one
 * volume through a ProxyDisk whose blocks live in the thread that owns the pool, and runs the filesystem
 * operations `FsSession` (fs-worker.ts) asks for, one `call` at a time in the order they arrive, answering each
 * with one `reply`; a chained call after a failed chained call is skipped with ECANCELED (fs-batch.ts).
 *
 * Invariants: operations other than `mount` fail with EINVAL while nothing is mounted; `umount` closes every
 * handle still open, unmounts (libext2fs writes its caches back) and then writes the disk's dirty pages back,
 * so after its reply every change has reached the owning thread. Errors carry an errno-like `code`. Files
 * opened through `put` without data get their mode and owner set on `close` (the package version in use
 * creates them with the mode asked and owner 0:0, but that is not its documented contract: the entry ends as
 * the layer says either way). File data a batch placed in the session's data ring (`attachData`, memory shared
 * with the owning thread) is read by `put` (dataAt) and `writeShared` before their reply; a call that names
 * the ring before one is attached fails with EINVAL.
 */
import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { ext2fs, ext2fsBinding, syncIo } from './ext2fs-sync-io.js';
import { ProxyDisk } from './fs-proxy-disk.js';
import {
  type CallMsg,
  CHUNK,
  type EntryType,
  type FromWorker,
  type FsStat,
  type IoReply,
  type PutEntry,
  type PutResult,
  type ReplyMsg,
  type ToWorker,
} from './fs-protocol.js';

/** The part of libext2fs's promise API used here (the package ships no types). */
interface Ext2Stats {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: Date;
  ino: number;
  nlink: number;
}
interface Ext2Fs {
  lstat(p: string): Promise<Ext2Stats>;
  readlink(p: string): Promise<string>;
  readdir(p: string): Promise<string[]>;
  mkdir(p: string, mode: number): Promise<void>;
  rmdir(p: string): Promise<void>;
  unlink(p: string): Promise<void>;
  chmod(p: string, mode: number): Promise<void>;
  chown(p: string, uid: number, gid: number): Promise<void>;
  lchown(p: string, uid: number, gid: number): Promise<void>;
  symlink(target: string, p: string): Promise<void>;
  link(existing: string, p: string): Promise<void>;
  open(p: string, flags: string | number, mode: number): Promise<{ fd: number }>;
  write(fd: number, b: Buffer, off: number, len: number, pos: number): Promise<unknown>;
  read(fd: number, b: Buffer, off: number, len: number, pos: number): Promise<{ bytesRead: number }>;
  fchmod(fd: number, mode: number): Promise<void>;
  fchown(fd: number, uid: number, gid: number): Promise<void>;
  close(fd: number): Promise<void>;
  trim(): Promise<void>;
}

const port = parentPort!;

class CodedError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

// ---- block I/O through the owning thread ----
let seq = 0;
const pending = new Map<number, { resolve: (r: IoReply) => void; reject: (e: Error) => void }>();

function io(msg: Parameters<ConstructorParameters<typeof ProxyDisk>[2]>[0]): Promise<IoReply> {
  return new Promise((resolve, reject) => {
    const id = ++seq;
    pending.set(id, { resolve, reject });
    port.postMessage({ t: 'io', id, ...msg } satisfies FromWorker);
  });
}

// ---- the mounted filesystem ----
let fs: Ext2Fs | null = null;
let raw: unknown = null;
let disk: ProxyDisk | null = null;
/** Open handles; a handle made by put() keeps its entry, to set mode and owner on close. */
const fds = new Map<number, PutEntry | null>();

function mounted(): Ext2Fs {
  if (!fs) throw new CodedError('EINVAL', 'not mounted');
  return fs;
}

const S_IFMT = 0o170000;
function typeOf(mode: number): EntryType {
  const t = mode & S_IFMT;
  return t === 0o100000 ? 'file' : t === 0o040000 ? 'dir' : t === 0o120000 ? 'symlink' : 'other';
}
const SPECIAL = new Map<number, FsStat['special']>([
  [0o020000, 'char'],
  [0o060000, 'block'],
  [0o010000, 'fifo'],
  [0o140000, 'socket'],
]);

const toBuf = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.byteLength);
const join = (a: string, b: string): string => (a === '/' ? `/${b}` : `${a}/${b}`);

/** open(2) flags as the package numbers them: a descriptor on the entry itself, never on a link's target. */
const O_NOFOLLOW = 0o400000;
const O_WRONLY = 1;

/**
 * Run fn on a descriptor of p's entry (a last symbolic link not followed), then close it; null when p does not
 * exist. An open, fn's calls and a close: fewer WASM calls than the package's lstat (open, twelve, close).
 */
async function onEntry<T>(p: string, fn: (fd: number) => Promise<T>, flags = O_NOFOLLOW): Promise<T | null> {
  let fd: number;
  try {
    fd = (await mounted().open(p, flags, 0)).fd;
  } catch (e) {
    if ((e as { code?: string })?.code === 'ENOENT') return null;
    throw e;
  }
  try {
    return await fn(fd);
  } finally {
    await mounted().close(fd);
  }
}

/** The type of p's entry (not following a last link), or null when there is none. */
async function typeAt(p: string): Promise<EntryType | null> {
  return onEntry(p, async (fd) => typeOf(await ext2fsBinding.stat_i_mode(fd)));
}

/** Set the mode (not for links) and owner of p's entry and return its inode number, in one open. */
async function finish(p: string, mode: number | null, uid: number, gid: number, flags = O_NOFOLLOW): Promise<number> {
  const ino = await onEntry(
    p,
    async (fd) => {
      if (mode !== null) await mounted().fchmod(fd, mode);
      await mounted().fchown(fd, uid, gid);
      return ext2fsBinding.stat_ino(fd);
    },
    flags,
  );
  if (ino === null) throw new CodedError('ENOENT', `${p} vanished while it was made`);
  return ino;
}

async function lstat(p: string): Promise<FsStat | null> {
  try {
    const s = await mounted().lstat(p);
    const out: FsStat = {
      path: p,
      type: typeOf(s.mode),
      mode: s.mode & 0o7777,
      uid: s.uid,
      gid: s.gid,
      size: s.size,
      mtimeMs: s.mtime.getTime(),
      ino: s.ino,
      nlink: s.nlink,
    };
    if (out.type === 'symlink') out.target = await mounted().readlink(p);
    if (out.type === 'other') out.special = SPECIAL.get(s.mode & S_IFMT);
    return out;
  } catch (e) {
    if ((e as { code?: string })?.code === 'ENOENT') return null;
    throw e;
  }
}

/**
 * Directories known to exist (lstat said so, or made here) since the last removal: checkParents does not look
 * them up again. Emptied on mount, unmount and every removal (rmrf, unlink, rmdir), the only ways a directory
 * stops being one.
 */
const dirs = new Set<string>();

/**
 * What this session knows to be absent, so that a new entry is not looked up first (a failed lookup costs a
 * thrown error inside the ext2fs package, about 16 µs): `fresh` holds directories this session made with mkdir,
 * `made` every path this session made (or opened) directly inside one. A path whose parent is fresh and that is
 * not in `made` does not exist. Emptied with `dirs` (mount, unmount, every removal): afterwards everything is
 * looked up again, never wrongly skipped.
 */
const fresh = new Set<string>();
const made = new Set<string>();

function forgetKnown(): void {
  dirs.clear();
  fresh.clear();
  made.clear();
}

function parentOf(p: string): string {
  return p.slice(0, p.lastIndexOf('/')) || '/';
}

/** True when p is known not to exist (see `fresh`); false when it must be looked up. */
function knownAbsent(p: string): boolean {
  return fresh.has(parentOf(p)) && !made.has(p);
}

/** p was just made (or opened for writing); `isNewDir`: a directory made here, so empty. */
function noteMade(p: string, isNewDir: boolean): void {
  if (fresh.has(parentOf(p))) made.add(p);
  if (isNewDir) {
    fresh.add(p);
    dirs.add(p);
  }
}

async function rmrf(p: string): Promise<boolean> {
  forgetKnown();
  const type = await typeAt(p);
  if (type === null) return true;
  if (type === 'dir') {
    for (const n of await mounted().readdir(p)) await rmrf(join(p, n));
    await mounted().rmdir(p);
  } else await mounted().unlink(p);
  return true;
}

/** Make missing parents of p; refuse a parent that is not a directory (or, with noSymlinks, that is a link). */
async function checkParents(p: string, noSymlinks: boolean): Promise<void> {
  const parts = p.split('/').filter(Boolean);
  let cur = '';
  for (let i = 0; i < parts.length - 1; i++) {
    cur += `/${parts[i]}`;
    if (dirs.has(cur)) continue;
    const type = knownAbsent(cur) ? null : await typeAt(cur);
    if (type === null) {
      await mounted().mkdir(cur, 0o755);
      noteMade(cur, true);
      continue;
    }
    if (type === 'symlink' && noSymlinks)
      throw new CodedError(
        'ESYMLINK',
        `path ${p} goes through the symbolic link ${cur} (-> ${await mounted().readlink(cur)}): refusing to write through a link`,
      );
    if (type !== 'dir' && type !== 'symlink') throw new CodedError('ENOTDIR', `path ${p}: ${cur} is not a directory`);
    if (type === 'dir') dirs.add(cur);
  }
}

async function tree(root: string): Promise<FsStat[]> {
  const out: FsStat[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const n of (await mounted().readdir(dir)).sort()) {
      const p = join(dir, n);
      const s = (await lstat(p))!;
      out.push(s);
      if (s.type === 'dir') await walk(p);
    }
  };
  await walk(root);
  return out;
}

/** The session's data ring (attachData): file data FsBatch places in memory shared with this thread. */
let ring: Uint8Array | null = null;
function ringView(at: number, length: number): Uint8Array {
  if (ring === null) throw new CodedError('EINVAL', 'no data ring attached');
  return ring.subarray(at, at + length);
}

async function put(e: PutEntry): Promise<PutResult> {
  if (e.dataAt !== undefined) e.data = ringView(e.dataAt, e.dataLength ?? 0);
  const r = await make(e);
  if (e.wantParent) r.parent = (await onEntry(parentOf(e.path), (fd) => ext2fsBinding.stat_ino(fd)))!;
  return r;
}

async function make(e: PutEntry): Promise<PutResult> {
  const f = mounted();
  await checkParents(e.path, e.noSymlinkParents !== false);
  const old = knownAbsent(e.path) ? null : await typeAt(e.path);
  if (old && !(old === 'dir' && e.type === 'dir')) await rmrf(e.path);
  noteMade(e.path, false); // before the creation: a failed one leaves the path looked up next time
  switch (e.type) {
    case 'dir':
      if (old !== 'dir') {
        await f.mkdir(e.path, e.mode);
        noteMade(e.path, true);
      }
      return { fd: null, ino: await finish(e.path, e.mode, e.uid, e.gid) };
    case 'symlink':
      await f.symlink(e.linkname!, e.path);
      // The owner of the link itself (as lchown: opened for writing, not followed); a link has no mode of its own.
      return { fd: null, ino: await finish(e.path, null, e.uid, e.gid, O_WRONLY | O_NOFOLLOW) };
    case 'link': {
      const t = await onEntry(e.linkname!, async (fd) => ({
        type: typeOf(await ext2fsBinding.stat_i_mode(fd)),
        ino: await ext2fsBinding.stat_ino(fd),
      }));
      if (!t) throw new CodedError('ENOENT', `hard link ${e.path}: its target ${e.linkname} does not exist`);
      if (t.type === 'dir') throw new CodedError('EPERM', `hard link ${e.path}: its target ${e.linkname} is a directory`);
      await f.link(e.linkname!, e.path);
      return { fd: null, ino: t.ino };
    }
    case 'file': {
      const fd = (await f.open(e.path, 'w', e.mode)).fd;
      const ino = await ext2fsBinding.stat_ino(fd);
      if (!e.data) {
        fds.set(fd, e);
        return { fd, ino };
      }
      if (e.data.length > 0) await f.write(fd, toBuf(e.data), 0, e.data.length, 0);
      await f.fchmod(fd, e.mode);
      await f.fchown(fd, e.uid, e.gid);
      await f.close(fd);
      return { fd: null, ino };
    }
  }
}

async function hashFile(p: string): Promise<string> {
  const f = mounted();
  const h = createHash('sha256');
  const fd = (await f.open(p, 'r', 0)).fd;
  try {
    const b = Buffer.alloc(CHUNK);
    for (let pos = 0; ; ) {
      const { bytesRead } = await f.read(fd, b, 0, b.length, pos);
      if (bytesRead <= 0) break;
      h.update(b.subarray(0, bytesRead));
      pos += bytesRead;
    }
  } finally {
    await f.close(fd);
  }
  return h.digest('hex');
}

/** The operations FsSession calls by name; each returns a value that can be posted back. */
const ops: Record<string, (...args: never[]) => Promise<unknown>> = {
  async mount(capacity: number, ro: boolean, answerNow: boolean) {
    forgetKnown();
    disk = new ProxyDisk(ro, capacity, io, answerNow);
    await disk.attach();
    raw = await ext2fs.mount(disk, 0);
    fs = (raw as { promises: Ext2Fs }).promises;
    return { syncIo: syncIo && answerNow };
  },
  async umount() {
    if (fs) {
      for (const fd of fds.keys()) await fs.close(fd).catch(() => undefined);
      fds.clear();
      forgetKnown();
      fs = null;
      await ext2fs.umount(raw);
      await disk!.writeBack();
      disk!.release();
      return { ...disk!.counts };
    }
    return null;
  },
  lstat,
  async readdir(p: string) {
    return (await mounted().readdir(p)).sort();
  },
  tree,
  rmrf,
  async emptyDir(p: string) {
    for (const n of await mounted().readdir(p)) await rmrf(join(p, n));
    return true;
  },
  async mkdirp(p: string, mode: number) {
    await checkParents(`${p}/x`, false);
    if (knownAbsent(p) || (await typeAt(p)) === null) {
      noteMade(p, false);
      await mounted().mkdir(p, mode);
      noteMade(p, true);
    }
    return true;
  },
  put,
  async open(p: string, flags: string) {
    noteMade(p, false); // it may be created
    const fd = (await mounted().open(p, flags, 0o644)).fd;
    fds.set(fd, null);
    return fd;
  },
  async write(fd: number, data: Uint8Array, pos: number) {
    await mounted().write(fd, toBuf(data), 0, data.length, pos);
    return data.length;
  },
  async attachData(shared: SharedArrayBuffer) {
    ring = new Uint8Array(shared);
    return true;
  },
  /** write() of length bytes at `at` in the data ring. */
  async writeShared(fd: number, at: number, length: number, pos: number) {
    await mounted().write(fd, toBuf(ringView(at, length)), 0, length, pos);
    return length;
  },
  async read(fd: number, length: number, pos: number) {
    const b = Buffer.alloc(length);
    const { bytesRead } = await mounted().read(fd, b, 0, length, pos);
    const out = new Uint8Array(bytesRead); // exactly the bytes read: a posted view would copy its whole buffer
    out.set(b.subarray(0, bytesRead));
    return out;
  },
  async close(fd: number) {
    const f = mounted();
    const e = fds.get(fd);
    fds.delete(fd);
    if (e) {
      await f.fchmod(fd, e.mode);
      await f.fchown(fd, e.uid, e.gid);
    }
    await f.close(fd);
    return true;
  },
  hashFile,
  async unlink(p: string) {
    forgetKnown();
    await mounted().unlink(p);
    return true;
  },
  async rmdir(p: string) {
    forgetKnown();
    await mounted().rmdir(p);
    return true;
  },
  async trim() {
    await mounted().trim();
    return true;
  },
};

/** Run one call and post its reply; a chained call after a failed chained call is skipped (ECANCELED). */
async function run(m: CallMsg): Promise<void> {
  if (!m.chain) chainFailed = false;
  else if (chainFailed) {
    reply({ t: 'reply', id: m.id, error: { code: 'ECANCELED', message: `${m.op} skipped: an earlier operation failed` } });
    return;
  }
  try {
    const op = ops[m.op];
    if (!op) throw new CodedError('EINVAL', `unknown operation ${m.op}`);
    if (m.op !== 'mount') mounted();
    const value = await op(...(m.args as never[]));
    reply({ t: 'reply', id: m.id, value });
  } catch (e) {
    if (m.chain) chainFailed = true;
    const err = e as { code?: string; message?: string; stack?: string } | undefined;
    reply({ t: 'reply', id: m.id, error: { code: err?.code || 'EIO', message: String(err?.message ?? e), stack: err?.stack } });
  }
}

/**
 * Replies not posted yet: posted together once no call waits to run or 32 are held (fewer wakeups of the
 * owning thread while it streams calls; a lone call is answered at once).
 */
const outbox: ReplyMsg[] = [];
function reply(r: ReplyMsg): void {
  outbox.push(r);
  if (waiting > 0 && outbox.length < 32) return;
  if (outbox.length === 1) port.postMessage(outbox[0] satisfies FromWorker);
  else port.postMessage({ t: 'replies', list: outbox.slice() } satisfies FromWorker);
  outbox.length = 0;
}

/** Calls run one at a time, in the order they arrive; I/O replies are taken at once. */
let queue: Promise<void> = Promise.resolve();
let chainFailed = false;
/** Calls received and not yet started. */
let waiting = 0;
port.on('message', (m: ToWorker) => {
  if (m.t === 'io-reply') {
    const p = pending.get(m.id);
    pending.delete(m.id);
    if (m.error) p?.reject(new CodedError(m.error.code, m.error.message));
    else p?.resolve(m);
    return;
  }
  waiting++;
  queue = queue.then(() => {
    waiting--;
    return run(m);
  });
});
port.postMessage({ t: 'ready' } satisfies FromWorker);
