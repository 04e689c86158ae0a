/**
 * ext4 inside a volume, without a mount: libext2fs (the `ext2fs` package, compiled to WASM) runs in a worker
 * thread (fs-thread.ts), because it installs process-wide uncaught-error handlers and has a fixed heap that
 * aborts on big operations. The worker's disk (fs-proxy-disk.ts) forwards every block read, write, discard and
 * flush to this thread, which serves it on the volume synchronously, in the order posted; so the pool stays
 * owned by one thread and one transaction. Block data moves through memory the disk shares with this thread
 * (not copied into messages). The messages between the two are typed in fs-protocol.ts; calls that do not
 * wait for each other's answers go through an `FsBatch` (fs-batch.ts).
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
 * - The worker runs from the compiled fs-thread.js beside this file (dist/, the package); when this file runs
 *   as TypeScript source (the tests) and no .js sits beside it, the worker runs fs-thread.ts through the
 *   project's TypeScript loader (test/support/ts-register.mjs), with source maps on.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ThinpoolError } from '../errors.js';
import type { Volume } from '../thin/volume.js';
import { FsBatch, RING_BYTES } from './fs-batch.js';
import { workerExecArgv } from './worker-exec-argv.js';
import {
  CHUNK,
  type FromWorker,
  type FsStat,
  type IoReq,
  type PutEntry,
  type PutResult,
  type ReplyMsg,
  type ToWorker,
} from './fs-protocol.js';

export { FsBatch } from './fs-batch.js';
export { CHUNK, type EntryType, type FsStat, type PutEntry, type PutResult } from './fs-protocol.js';

export class FsError extends Error {
  readonly code: string;
  /** Where the worker thread raised it (its stack, with fs-thread's own file and line), when it did. */
  readonly workerStack?: string;
  constructor(code: string, message: string, workerStack?: string) {
    super(message);
    this.name = 'FsError';
    this.code = code;
    if (workerStack) this.workerStack = workerStack;
  }
}

/** Idle workers (unmounted, libext2fs compiled and ready), reused by the next session. */
const idle: Worker[] = [];
const MAX_IDLE = 2;
/** How far past a read the unprovisioned space is looked up (IoReply.zeros). */
const ZERO_SPAN = 64 * 1024 * 1024;
/** Data rings of closed sessions (fs-batch.ts), reused by the next: memory already touched. */
const idleRings: Uint8Array[] = [];

/** Where the worker's code is, and how to run it (see the module comment). */
function workerEntry(): { url: URL; execArgv: string[] } {
  const js = new URL('./fs-thread.js', import.meta.url);
  if (existsSync(fileURLToPath(js))) return { url: js, execArgv: workerExecArgv() };
  const ts = new URL('./fs-thread.ts', import.meta.url);
  const loader = fileURLToPath(new URL('../../test/support/ts-register.mjs', import.meta.url));
  if (!existsSync(fileURLToPath(ts)) || !existsSync(loader)) {
    throw new ThinpoolError(
      'ENOENT',
      `the ext2fs worker ${fileURLToPath(js)} is missing: rebuild thinpool (npm run build) or reinstall the package`,
    );
  }
  return { url: ts, execArgv: [...workerExecArgv(), '--enable-source-maps', '--import', pathToFileURL(loader).href] };
}

/** Workers this process has started (tests: a prestarted worker is the one the next session uses). */
let spawned = 0;

function spawnWorker(): Worker {
  const { url, execArgv } = workerEntry();
  const w = new Worker(url, { execArgv });
  spawned++;
  w.unref();
  return w;
}

export interface FsOpenOptions {
  readOnly?: boolean;
  /** Default true: block I/O answered at once where it can be (false: always the package's async way). */
  syncIo?: boolean;
}

export interface BlockIoCounts {
  now: number;
  waited: number;
}

/** One mounted ext4 filesystem inside a volume. */
export class FsSession {
  readonly volume: Volume;
  readonly writable: boolean;
  private readonly worker: Worker;
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  private dead: Error | null = null;
  /**
   * The first error of a block I/O this side served (e.g. ENOSPC_DATA from a full pool): libext2fs only sees
   * EIO, so a call that fails after it reports this error, the cause, instead.
   */
  private ioError: unknown = null;
  /** The memory the worker's disk shares with this thread (its `attach` request): block data in and out. */
  private shared: Uint8Array | null = null;
  /** This session's data ring for batches (fs-batch.ts), attached to the worker by the first batch. */
  private dataRing: Uint8Array | null = null;

  /** Whether libext2fs's block I/O completes without Asyncify when the disk has the answer (ext2fs-sync-io.ts). */
  syncIo = false;
  /** After close: the block I/O of libext2fs answered at once and answered the async way. */
  blockIo: BlockIoCounts | null = null;

  private readonly onMessage: (m: FromWorker) => void;
  private readonly onFail: (e: Error) => void;
  private readonly onExit: (code: number) => void;

  private constructor(volume: Volume, readOnly: boolean) {
    this.volume = volume;
    this.writable = !readOnly;
    this.worker = idle.pop() ?? spawnWorker();
    this.onMessage = (m) => {
      if (m.t === 'io') this.serve(m);
      else if (m.t === 'reply') this.answer(m);
      else if (m.t === 'replies') for (const r of m.list) this.answer(r);
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

  private answer(m: ReplyMsg): void {
    const p = this.pending.get(m.id);
    this.pending.delete(m.id);
    if (!p) return;
    if (m.error) p.reject(new FsError(m.error.code, m.error.message, m.error.stack));
    else p.resolve(m.value);
  }

  /** Unmounted cleanly: keep the worker (and its compiled libext2fs) for the next session. */
  private release(reuse: boolean): Promise<unknown> {
    this.worker.off('message', this.onMessage);
    this.worker.off('error', this.onFail);
    this.worker.off('exit', this.onExit);
    if (reuse && this.dataRing !== null && !this.dead && idleRings.length < MAX_IDLE) idleRings.push(this.dataRing);
    this.dataRing = null;
    if (reuse && !this.dead && idle.length < MAX_IDLE) {
      idle.push(this.worker);
      return Promise.resolve();
    }
    return this.worker.terminate();
  }

  /** Workers started by this process so far, and how many wait idle (for tests). */
  static workerCounts(): { spawned: number; idle: number } {
    return { spawned, idle: idle.length };
  }

  /**
   * Start a worker now when none is idle, so that its start (about 50 ms here: the thread, its modules, the
   * package's WASM) overlaps what the caller does before its first `open`. Nothing waits for it; unused, it does
   * not keep the process alive (unref). One that fails to start leaves the idle list, and `open` starts another
   * (and reports that one's failure).
   */
  static prestart(): void {
    if (idle.length > 0) return;
    let w: Worker;
    try {
      w = spawnWorker();
    } catch {
      return; // open() throws the same error where it can be reported
    }
    const drop = (): void => {
      const i = idle.indexOf(w);
      if (i >= 0) idle.splice(i, 1);
    };
    w.once('error', drop);
    w.once('exit', drop);
    idle.push(w);
  }

  /**
   * Mount the ext4 filesystem of a volume (read-only when the volume is, or when asked). `syncIo: false` sends
   * every block I/O the package's async way (ext2fs-sync-io.ts), for tests that compare the two.
   */
  static async open(volume: Volume, opts: FsOpenOptions = {}): Promise<FsSession> {
    const ro = opts.readOnly === true || volume.readOnly;
    const s = new FsSession(volume, ro);
    try {
      s.syncIo = ((await s.call('mount', volume.sizeBytes, ro, opts.syncIo !== false)) as { syncIo: boolean }).syncIo;
    } catch (e) {
      await s.release(false);
      if (s.ioError !== null) throw s.ioError;
      if (s.dead) throw new ThinpoolError('EIO', `the ext2fs worker thread stopped: ${s.dead.message}`, { cause: s.dead });
      // libext2fs's own words ("UNKNOWN node_ext2fs_mount UNKNOWN (2133571347)") stay in the cause.
      throw new ThinpoolError('ENOENT', `volume ${volume.label} holds no ext4 filesystem (or a damaged one that cannot be mounted)`, {
        cause: e,
      });
    }
    return s;
  }

  /**
   * Serve one block I/O of the worker, synchronously, so requests take effect in the order they were posted
   * (the worker's disk relies on it: it does not wait for its write-backs before reading).
   */
  private serve(m: IoReq): void {
    const v = this.volume;
    try {
      switch (m.op) {
        case 'attach':
          this.shared = new Uint8Array(m.shared!);
          break;
        case 'read': {
          const into = this.mem().subarray(m.at!, m.at! + m.length!);
          const n = Math.max(0, Math.min(m.length!, v.sizeBytes - m.offset!));
          if (n > 0) v.readSync(into.subarray(0, n), m.offset!);
          if (n < into.length) into.fill(0, n);
          // How far the unprovisioned space after it goes: the worker's disk need not ask for windows there.
          const end = m.offset! + m.length!;
          const span = Math.min(ZERO_SPAN, v.sizeBytes - end);
          const next = span > 0 ? v.extents(end, span)[0] : undefined;
          const zeros = span <= 0 ? 0 : next === undefined ? span : Math.max(0, next.offsetBytes - end);
          this.worker.postMessage({ t: 'io-reply', id: m.id, n: into.length, zeros } satisfies ToWorker);
          return;
        }
        case 'write': {
          if (!this.writable) throw new ThinpoolError('EROFS', `volume ${v.label} is read-only`);
          const runs = m.runs!;
          const mem = this.mem();
          for (let i = 0; i < runs.length; i += 3) v.writeSync(mem.subarray(runs[i + 1], runs[i + 1] + runs[i + 2]), runs[i]);
          break;
        }
        case 'discard': {
          if (!this.writable) throw new ThinpoolError('EROFS', `volume ${v.label} is read-only`);
          const end = Math.min(m.offset! + m.length!, v.sizeBytes);
          if (end > m.offset!) v.discardSync(m.offset!, end - m.offset!);
          break;
        }
        case 'flush':
          break;
      }
      this.worker.postMessage({ t: 'io-reply', id: m.id } satisfies ToWorker);
    } catch (e) {
      if (this.ioError === null) this.ioError = e;
      this.worker.postMessage({
        t: 'io-reply',
        id: m.id,
        error: { code: (e as { code?: string }).code ?? 'EIO', message: (e as Error).message },
      } satisfies ToWorker);
    }
  }

  private mem(): Uint8Array {
    if (this.shared === null) throw new FsError('EIO', 'the ext2fs worker sent block I/O before its shared memory');
    return this.shared;
  }

  private call<T>(op: string, ...args: unknown[]): Promise<T> {
    return this.send(op, args, false);
  }

  /** Post one call (chained: see FsBatch; transfer: buffers moved to the worker, not copied). */
  send<T>(op: string, args: unknown[], chain: boolean, transfer: ArrayBuffer[] = []): Promise<T> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise<T>((resolve, reject) => {
      const id = ++this.seq;
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject: (e) => reject(this.ioError ?? e) });
      this.worker.postMessage({ t: 'call', id, op, args, ...(chain ? { chain } : {}) } satisfies ToWorker, transfer);
    });
  }

  /**
   * Calls that do not wait for each other's answers (see FsBatch). The first batch of a writable session
   * gives the worker the session's data ring (an unchained call, before any call of the batch).
   */
  batch(): FsBatch {
    if (this.writable && this.dataRing === null) {
      this.dataRing = idleRings.pop() ?? new Uint8Array(new SharedArrayBuffer(RING_BYTES));
      this.send('attachData', [this.dataRing.buffer], false).catch(() => undefined); // a later call reports it
    }
    return new FsBatch(this);
  }

  /** The data ring the first batch attached (see batch()). */
  ring(): Uint8Array {
    if (this.dataRing === null) throw new ThinpoolError('EROFS', `volume ${this.volume.label} is read-only: no data ring`);
    return this.dataRing;
  }

  /** Throws EROFS (before anything is sent) when the session is read-only. */
  mustWrite(what: string): void {
    if (!this.writable)
      throw new ThinpoolError('EROFS', `volume ${this.volume.label} is read-only (a committed layer or a view): cannot ${what}`);
  }

  lstat(path: string): Promise<FsStat | null> {
    return this.call('lstat', path);
  }
  readdir(path: string): Promise<string[]> {
    return this.call('readdir', path);
  }
  /** Every entry below root (not root itself), depth first, names sorted. */
  tree(root = '/'): Promise<FsStat[]> {
    return this.call('tree', root);
  }
  hashFile(path: string): Promise<string> {
    return this.call('hashFile', path);
  }

  async readFile(path: string): Promise<Buffer> {
    const fd = await this.call<number>('open', path, 'r');
    const parts: Uint8Array[] = [];
    try {
      for (let pos = 0; ; ) {
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
      for (let pos = 0; ; ) {
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
  async put(e: PutEntry): Promise<PutResult> {
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

  closeFile(fd: number): Promise<void> {
    return this.call('close', fd);
  }

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
      if (!this.dead) this.blockIo = (await this.call('umount')) as BlockIoCounts | null;
      ok = true;
    } finally {
      await this.release(ok);
    }
  }
}

/** Mount, run fn, unmount. */
export async function withFs<T>(volume: Volume, fn: (fs: FsSession) => Promise<T>, opts: FsOpenOptions = {}): Promise<T> {
  const s = await FsSession.open(volume, opts);
  let r: T;
  try {
    r = await fn(s);
  } catch (e) {
    await s.close().catch(() => undefined); // the operation's error is the one to report
    throw e;
  }
  await s.close();
  return r;
}
