/**
 * GoldenStore: copy-on-write test disks over a thin pool.
 *
 * A golden volume is loaded once (from a raw image file, sparse: all-zero blocks stay unprovisioned) and marked
 * read-only. Every test gets a `Fork`: a writable dm-thin snapshot of the golden volume with a generated name,
 * made in constant time whatever the image size, and deleted again by `dispose()` / `await using`.
 *
 * Contract:
 * - `GoldenStore.memory()` keeps everything in memory (sparse); `GoldenStore.temp()` makes a file pool in a new
 *   temporary directory that `dispose()` removes. Both have the same API.
 * - A fork never changes its golden volume: writes to a fork copy the touched block first (dm-thin sharing).
 * - `dispose()` of a fork deletes its snapshot; its blocks go back to the pool (after the next commit for
 *   metadata blocks). Disposing twice is a no-op. Disposing the store disposes every live fork and the pool.
 * - Nothing here commits per fork: commits happen when the engine needs one, on `commit()`, on `usage()` and on
 *   `dispose()`. Test disks are not meant to survive a crash.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, ftruncateSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ThinPool } from '../thin/pool.js';
import type { Volume } from '../thin/volume.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
/** Default pool size: virtual (memory and data file are sparse), large enough for a few multi-GiB goldens. */
export const DEFAULT_POOL_BYTES = 64 * GiB;
/** I/O chunk for loading and exporting images. */
const IO_CHUNK = 1 * MiB;

export interface GoldenStoreOptions {
  /** Pool (data device) size in bytes: the most data all goldens and forks may hold together. Default 64 GiB. */
  size?: number;
  /** Data block size (copy-on-write granularity): a multiple of 64 KiB. Default 64 KiB. */
  blockSize?: number;
  /** Metadata device size in bytes (default: the engine's rule, 48 bytes per data block, at least 2 MiB). */
  metadataSize?: number;
}

export interface TempStoreOptions extends GoldenStoreOptions {
  /** Parent of the temporary directory (default os.tmpdir()). */
  parent?: string;
  /** Keep the directory on dispose (for debugging). */
  keep?: boolean;
}

export interface LoadImageOptions {
  /** Keep the golden writable (default false: read-only, so a test cannot change it by mistake). */
  writable?: boolean;
  /** Volume size in bytes (default: the file's size rounded up to 512 bytes). */
  size?: number;
}

export interface ForkOptions {
  /** Name of the snapshot (default: generated from the golden's name). */
  name?: string;
  /** Labels stored with the snapshot in the pool catalog. */
  labels?: Record<string, string>;
}

export interface StoreUsage {
  /** Data blocks in use (after a commit). */
  dataBlocks: number;
  /** Metadata blocks in use (after a commit). */
  metadataBlocks: number;
  /** Volumes in the pool (goldens + live forks). */
  volumes: number;
  blockSize: number;
}

/** Anything that can stand for a volume: a Volume, a Golden or a Fork. */
export type VolumeLike = Volume | { readonly volume: Volume };

export function volumeOf(v: VolumeLike): Volume {
  return 'volume' in v && typeof v.volume === 'object' ? v.volume : (v as Volume);
}

let zeroes = Buffer.alloc(0);
/** True when every byte of buf is zero (a native memcmp against a zero buffer). */
export function isAllZero(buf: Uint8Array): boolean {
  if (zeroes.length < buf.length) zeroes = Buffer.alloc(Math.max(buf.length, 64 * KiB));
  return Buffer.from(buf.buffer, buf.byteOffset, buf.length).equals(zeroes.subarray(0, buf.length));
}

/** A read-only (by default) base volume that forks are made from. */
export class Golden {
  readonly store: GoldenStore;
  readonly name: string;
  readonly volume: Volume;

  /** @internal */
  constructor(store: GoldenStore, name: string, volume: Volume) {
    this.store = store;
    this.name = name;
    this.volume = volume;
  }

  get sizeBytes(): number {
    return this.volume.sizeBytes;
  }

  /** A writable fork of this golden (same as `store.fork(golden)`). */
  fork(opts: ForkOptions = {}): Fork {
    return this.store.fork(this, opts);
  }

  /** Write the golden to a sparse file (see `exportVolume`). */
  async exportTo(path: string): Promise<void> {
    exportVolumeSync(this.volume, path);
  }

  exportToSync(path: string): void {
    exportVolumeSync(this.volume, path);
  }
}

/** A writable copy-on-write snapshot of a golden volume that deletes itself when disposed. */
export class Fork implements AsyncDisposable, Disposable {
  readonly store: GoldenStore;
  readonly golden: Golden;
  readonly name: string;
  readonly volume: Volume;
  #disposed = false;

  /** @internal */
  constructor(store: GoldenStore, golden: Golden, name: string, volume: Volume) {
    this.store = store;
    this.golden = golden;
    this.name = name;
    this.volume = volume;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  get sizeBytes(): number {
    return this.volume.sizeBytes;
  }

  readSync(buf: Uint8Array, offsetBytes: number): void {
    this.volume.readSync(buf, offsetBytes);
  }

  writeSync(buf: Uint8Array, offsetBytes: number): void {
    this.volume.writeSync(buf, offsetBytes);
  }

  async read(buf: Uint8Array, offsetBytes: number): Promise<void> {
    this.volume.readSync(buf, offsetBytes);
  }

  async write(buf: Uint8Array, offsetBytes: number): Promise<void> {
    this.volume.writeSync(buf, offsetBytes);
  }

  /** Write this fork to a sparse file (for tools that need a path: e2fsck, qemu-img, ...). */
  async exportTo(path: string): Promise<void> {
    exportVolumeSync(this.volume, path);
  }

  exportToSync(path: string): void {
    exportVolumeSync(this.volume, path);
  }

  /** Delete the snapshot. Idempotent; a no-op once the store is disposed (the pool is gone with it). */
  disposeSync(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.store._release(this);
  }

  async dispose(): Promise<void> {
    this.disposeSync();
  }

  [Symbol.dispose](): void {
    this.disposeSync();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.disposeSync();
  }
}

let storeCounter = 0;

export class GoldenStore implements AsyncDisposable, Disposable {
  readonly pool: ThinPool;
  /** The temporary directory of a file store (removed on dispose), undefined for a memory store. */
  readonly dir: string | undefined;
  readonly #keep: boolean;
  readonly #forks = new Set<Fork>();
  readonly #goldens = new Map<string, Golden>();
  readonly #prefix: string;
  #seq = 0;
  #disposed = false;

  private constructor(pool: ThinPool, dir: string | undefined, keep: boolean) {
    this.pool = pool;
    this.dir = dir;
    this.#keep = keep;
    this.#prefix = `${process.pid.toString(36)}${(storeCounter++).toString(36)}${randomBytes(3).toString('hex')}`;
  }

  /** A store over an in-memory pool. */
  static memory(opts: GoldenStoreOptions = {}): GoldenStore {
    const pool = ThinPool.memory({
      size: opts.size ?? DEFAULT_POOL_BYTES,
      blockSize: opts.blockSize,
      metadataSize: opts.metadataSize,
    });
    return new GoldenStore(pool, undefined, false);
  }

  /** A store over a file pool in a new temporary directory, removed on dispose. */
  static tempSync(opts: TempStoreOptions = {}): GoldenStore {
    const dir = mkdtempSync(join(opts.parent ?? tmpdir(), 'thinpool-test-'));
    try {
      const pool = ThinPool.formatSync(join(dir, 'pool'), {
        size: opts.size ?? DEFAULT_POOL_BYTES,
        blockSize: opts.blockSize,
        metadataSize: opts.metadataSize,
      });
      return new GoldenStore(pool, dir, opts.keep === true);
    } catch (e) {
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
  }

  static async temp(opts: TempStoreOptions = {}): Promise<GoldenStore> {
    return GoldenStore.tempSync(opts);
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  get blockSize(): number {
    return this.pool.blockSize;
  }

  /** Forks not yet disposed. */
  get liveForks(): number {
    return this.#forks.size;
  }

  #alive(): void {
    if (this.#disposed) throw new Error('GoldenStore is disposed');
  }

  /**
   * Load a raw image file as a golden volume. The file is read in block-size chunks; all-zero chunks are not
   * written, so they stay unprovisioned (a sparse or mostly empty image costs only its data).
   */
  loadImageSync(name: string, path: string, opts: LoadImageOptions = {}): Golden {
    this.#alive();
    const fd = openSync(path, 'r');
    try {
      const fileSize = fstatSync(fd).size;
      const size = opts.size ?? Math.max(512, Math.ceil(fileSize / 512) * 512);
      const vol = this.pool.createThinSync(name, { size, labels: { 'thinpool.testing': 'golden' } });
      try {
        const bs = this.pool.blockSize;
        // Read several blocks at a time, but test and write block by block.
        const chunk = Math.max(bs, Math.floor(IO_CHUNK / bs) * bs);
        const buf = new Uint8Array(chunk);
        const limit = Math.min(fileSize, size);
        for (let pos = 0; pos < limit; pos += chunk) {
          const want = Math.min(chunk, limit - pos);
          let got = 0;
          while (got < want) {
            const n = readSync(fd, buf, got, want - got, pos + got);
            if (n === 0) break;
            got += n;
          }
          for (let off = 0; off < got; off += bs) {
            const part = buf.subarray(off, Math.min(off + bs, got));
            if (!isAllZero(part)) vol.writeSync(part, pos + off);
          }
        }
        if (!opts.writable) this.pool.updateSync(name, { readOnly: true });
        this.pool.commitSync();
      } catch (e) {
        try {
          this.pool.deleteSync(name);
        } catch {
          // the pool failed; the error below says why
        }
        throw e;
      }
      const g = new Golden(this, name, this.pool.volume(name));
      this.#goldens.set(name, g);
      return g;
    } finally {
      closeSync(fd);
    }
  }

  async loadImage(name: string, path: string, opts: LoadImageOptions = {}): Promise<Golden> {
    return this.loadImageSync(name, path, opts);
  }

  /**
   * A golden volume filled by a callback instead of a file (e.g. with the volume adapters). It is made
   * read-only after `fill` returns, unless `writable`.
   */
  async createGolden(name: string, size: number, fill?: (volume: Volume) => unknown, opts: { writable?: boolean } = {}): Promise<Golden> {
    this.#alive();
    const vol = this.pool.createThinSync(name, { size, labels: { 'thinpool.testing': 'golden' } });
    try {
      if (fill) await fill(vol);
      if (!opts.writable) this.pool.updateSync(name, { readOnly: true });
      this.pool.commitSync();
    } catch (e) {
      if (!this.pool.isClosed) this.pool.deleteSync(name);
      throw e;
    }
    const g = new Golden(this, name, this.pool.volume(name));
    this.#goldens.set(name, g);
    return g;
  }

  /** A golden loaded earlier, by name. */
  golden(name: string): Golden {
    const g = this.#goldens.get(name);
    if (!g) throw new Error(`no golden volume named "${name}" in this store`);
    return g;
  }

  /** A writable copy-on-write fork of a golden volume (constant time). */
  fork(golden: Golden | string, opts: ForkOptions = {}): Fork {
    this.#alive();
    const g = typeof golden === 'string' ? this.golden(golden) : golden;
    if (g.store !== this) throw new Error(`golden "${g.name}" belongs to another store`);
    const name = opts.name ?? `${g.name}.fork-${this.#prefix}-${(this.#seq++).toString(36)}`;
    const vol = this.pool.snapshotSync(g.name, name, { labels: { 'thinpool.testing': 'fork', ...(opts.labels ?? {}) } });
    const f = new Fork(this, g, name, vol);
    this.#forks.add(f);
    return f;
  }

  /** Run fn with a fresh fork and dispose it afterwards, whatever happens. */
  async withFork<T>(golden: Golden | string, fn: (fork: Fork) => T | Promise<T>, opts: ForkOptions = {}): Promise<T> {
    const f = this.fork(golden, opts);
    try {
      return await fn(f);
    } finally {
      f.disposeSync();
    }
  }

  /** @internal called by Fork.dispose */
  _release(f: Fork): void {
    if (!this.#forks.delete(f)) return;
    if (this.#disposed || this.pool.isClosed) return;
    this.pool.deleteSync(f.volume.id);
  }

  /** Commit the pool (not needed for correctness; frees shadowed metadata blocks of the open transaction). */
  commitSync(): void {
    this.#alive();
    this.pool.commitSync();
  }

  async commit(): Promise<void> {
    this.commitSync();
  }

  /** Pool usage after a commit: what a leak check compares. */
  usage(): StoreUsage {
    this.commitSync();
    const s = this.pool.status();
    return { dataBlocks: s.dataBlocks.used, metadataBlocks: s.metadataBlocks.used, volumes: s.volumes, blockSize: s.blockSize };
  }

  /** Dispose every live fork, close the pool and remove the temporary directory. Idempotent. */
  disposeSync(): void {
    if (this.#disposed) return;
    try {
      for (const f of [...this.#forks]) {
        try {
          f.disposeSync();
        } catch {
          // keep going: the pool is closed below anyway
        }
      }
    } finally {
      this.#disposed = true;
      try {
        this.pool.closeSync();
      } finally {
        if (this.dir !== undefined && !this.#keep) rmSync(this.dir, { recursive: true, force: true });
      }
    }
  }

  async dispose(): Promise<void> {
    this.disposeSync();
  }

  [Symbol.dispose](): void {
    this.disposeSync();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.disposeSync();
  }
}

/**
 * Write a volume to a file, sparse: the file is truncated to the volume's size, only provisioned blocks are
 * written, and all-zero chunks inside them are skipped (they stay holes).
 */
export function exportVolumeSync(v: VolumeLike, path: string): void {
  const vol = volumeOf(v);
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, vol.sizeBytes);
    const buf = new Uint8Array(IO_CHUNK);
    const bs = vol.pool.blockSize;
    const piece = Math.min(bs, 64 * KiB);
    for (const ext of vol.map()) {
      const end = Math.min(ext.offsetBytes + ext.lengthBytes, vol.sizeBytes);
      for (let pos = ext.offsetBytes; pos < end; pos += IO_CHUNK) {
        const n = Math.min(IO_CHUNK, end - pos);
        const part = buf.subarray(0, n);
        vol.readSync(part, pos);
        for (let off = 0; off < n; off += piece) {
          const p = part.subarray(off, Math.min(off + piece, n));
          if (!isAllZero(p)) writeAll(fd, p, pos + off);
        }
      }
    }
  } finally {
    closeSync(fd);
  }
}

export async function exportVolume(v: VolumeLike, path: string): Promise<void> {
  exportVolumeSync(v, path);
}

function writeAll(fd: number, buf: Uint8Array, position: number): void {
  let done = 0;
  while (done < buf.length) done += writeSync(fd, buf, done, buf.length - done, position + done);
}
