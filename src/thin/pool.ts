/**
 * ThinPool: a dm-thin pool on a pair of block devices plus a catalog, usually a directory holding `metadata`
 * (a real dm-thin metadata device), `data` (sparse) and `catalog.json`, or objects in Ceph RADOS when the
 * pool is addressed `rados://CEPH_POOL/NAME` (rados-pool.ts).
 *
 * Contract:
 * - Pool operations are serialised (all I/O below is synchronous); the async methods resolve when done.
 * - `commit()`: flush the data device, commit the metadata (superblock last, flushed), then publish the
 *   catalog (two-phase, see catalog.ts). Only then is anything acknowledged as durable.
 * - A metadata operation that fails part-way (I/O error, corruption found) aborts the transaction back to the
 *   last commit, sets needs_check in the superblock and leaves the pool read-only (spec 7.9). Out-of-space is
 *   detected before anything changes and leaves the pool writable: delete volumes, then write again.
 * - Opening a pool takes its lock (lock.ts); close() commits and releases it.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ThinpoolError, isThinpoolError } from '../errors.js';
import type { BlockDevice } from '../io/block-device.js';
import { FileDevice } from '../io/file-device.js';
import { MemoryDevice } from '../io/memory-device.js';
import { MAX_METADATA_BLOCKS } from '../pd/space-map-metadata.js';
import {
  emptyCatalog, FileCatalogStore, MemoryCatalogStore, recoverCatalog, type CatalogData, type CatalogStore,
  type VolumeRecord,
} from './catalog.js';
import { lockPool } from './lock.js';
import { mergeSpaceSettings, thresholdLevel, ThresholdTracker, type SpaceSettings, type ThresholdEvent } from './space-policy.js';
import { FileHighWaterStore, HighWater, MemoryHighWaterStore, type HighWaterStore } from './high-water.js';
import { MAX_DEVICE_ID, ThinMetadata, type Mapping } from './metadata.js';
import { deviceUsage, diffDevices, type DiffRange } from './usage.js';
import { Volume } from './volume.js';
import { type CephOptions, formatRadosStorage, isRadosAddress, openRadosStorage } from './rados-pool.js';
import { VOLUME_NAME_RULE, volumeNameProblem } from './names.js';

export const MIN_BLOCK_SIZE = 64 * 1024;
export const MAX_BLOCK_SIZE = 1024 * 1024 * 1024;
const MIN_METADATA_BYTES = 2 * 1024 * 1024;
const MAX_METADATA_BYTES = MAX_METADATA_BLOCKS * 4096;
/** Metadata blocks a single operation may need at most (shadowed paths of a few trees plus splits). */
const OP_METADATA_MARGIN = 64;
/** Errors raised before a metadata change starts: they leave the transaction intact and the pool writable. */
const CLEAN_ERRORS = new Set(['EINVAL', 'EEXIST', 'ENOENT', 'EBUSY', 'ENOSPC_DATA', 'EROFS']);

export interface PoolStorage {
  metadata: BlockDevice;
  data: BlockDevice;
  catalog: CatalogStore;
  /** Called by close() after the devices are closed. */
  release?(): void;
  /** Directory of a file pool. */
  dir?: string;
  /** Durable data high-water mark (see high-water.ts); absent: every new block is zeroed. */
  highWater?: HighWaterStore;
  /** A pool in Ceph RADOS (rados-pool.ts): its address and I/O context. */
  rados?: { address: string; io: unknown };
}

export interface PoolFormatOptions {
  /** Data device size in bytes (rounded down to whole blocks). */
  size: number;
  /** Data block size in bytes: 64 KiB to 1 GiB, a multiple of 64 KiB. Default 64 KiB. */
  blockSize?: number;
  /** Metadata device size in bytes; default 48 x size / blockSize, clamped to [2 MiB, 16 GiB]. */
  metadataSize?: number;
  cacheBlocks?: number;
  /** For a `rados://CEPH_POOL/NAME` pool: the cluster, client and data object size. */
  ceph?: CephOptions;
}

export interface PoolOpenOptions {
  cacheBlocks?: number;
  readOnly?: boolean;
  /** For a `rados://CEPH_POOL/NAME` pool: the cluster and client. */
  ceph?: CephOptions;
}

export type PoolMode = 'write' | 'read-only' | 'fail';

export interface PoolStatus {
  blockSize: number;
  dataBlocks: { used: number; total: number; free: number };
  metadataBlocks: { used: number; total: number; free: number };
  transactionId: number;
  heldMetadataRoot: number | null;
  mode: PoolMode;
  needsCheck: boolean;
  time: number;
  volumes: number;
  /** Highest low-water threshold (percent) currently reached, 0 if none. */
  lowWater: { data: number; metadata: number };
  discardPassdown: boolean;
}

export interface VolumeInfo {
  id: number;
  name?: string;
  sizeBytes: number;
  origin?: number;
  originName?: string;
  createdAt?: string;
  creationTime: number;
  snapshottedTime: number;
  mappedBytes: number;
  exclusiveBytes: number;
  sharedBytes: number;
  readOnly: boolean;
  labels: Record<string, string>;
}

export interface CreateOptions {
  size: number;
  labels?: Record<string, string>;
  readOnly?: boolean;
}

/** The label that marks a volume as owned by a layer above the pool (see checkOwner). */
export const OWNER_LABEL = 'thinpool.owner';

export interface OwnerOptions {
  /** The owner a caller acts for (matches the volume's `thinpool.owner` label). */
  owner?: string;
}

export interface SnapshotOptions {
  labels?: Record<string, string>;
  readOnly?: boolean;
}

/** The dm-thin rule: 48 bytes per data block, clamped to [2 MiB, 16 GiB], in whole 4 KiB blocks. */
export function defaultMetadataSize(size: number, blockSize: number): number {
  const raw = Math.ceil((48 * size) / blockSize);
  const clamped = Math.min(MAX_METADATA_BYTES, Math.max(MIN_METADATA_BYTES, raw));
  return Math.ceil(clamped / 4096) * 4096;
}

function checkBlockSize(bs: number): void {
  if (!Number.isSafeInteger(bs) || bs < MIN_BLOCK_SIZE || bs > MAX_BLOCK_SIZE || bs % MIN_BLOCK_SIZE !== 0) {
    throw new ThinpoolError('EINVAL', `block size ${bs} must be a multiple of 64 KiB between 64 KiB and 1 GiB`);
  }
}

export interface PoolEvents {
  /** Use of data or metadata crossed a low-water threshold (percent). */
  threshold: [ThresholdEvent];
  /** The pool grew (auto-extend or extend()). */
  extended: [{ resource: 'data' | 'metadata'; fromBlocks: number; toBlocks: number; auto: boolean }];
  /** Something worth telling a user that is not an error (e.g. space cannot be returned to the host). */
  warning: [{ code: string; message: string }];
}

export interface ExtendOptions {
  /** New data device size in bytes. */
  size?: number;
  /** New metadata device size in bytes. */
  metadataSize?: number;
}

export class ThinPool extends EventEmitter<PoolEvents> {
  readonly storage: PoolStorage;
  #md: ThinMetadata;
  private readonly thresholds = new ThresholdTracker();
  private warnedNoPunch = false;
  readonly blockSize: number;
  private catalog: CatalogData;
  private catalogDirty = false;
  /** Data was written (in place or to new blocks) since the last commit: a commit must flush the data device. */
  private dataDirty = false;
  private closed = false;
  private zeroes: Uint8Array | null = null;
  private readonly highWater: HighWater;
  private settings: SpaceSettings | null = null;
  /** The catalog value `settings` was merged from (the data path reads the policy on every allocation). */
  private settingsOf: unknown = null;
  private recIndex: Map<number, VolumeRecord> | null = null;
  private recIndexOf: VolumeRecord[] | null = null;
  private recIndexLen = 0;

  private constructor(storage: PoolStorage, md: ThinMetadata, catalog: CatalogData) {
    super();
    this.storage = storage;
    this.#md = md;
    this.blockSize = md.dataBlockSectors * 512;
    this.catalog = catalog;
    this.highWater = new HighWater(storage.highWater);
    this.reconcile();
  }

  // ---- creation and opening ----
  static async format(dir: string, opts: PoolFormatOptions): Promise<ThinPool> {
    return ThinPool.formatSync(dir, opts);
  }

  static formatSync(dir: string, opts: PoolFormatOptions): ThinPool {
    const bs = opts.blockSize ?? MIN_BLOCK_SIZE;
    checkBlockSize(bs);
    const nrData = Math.floor(opts.size / bs);
    if (!(nrData >= 1)) throw new ThinpoolError('EINVAL', `pool size ${opts.size} is smaller than one block (${bs} bytes)`);
    const metaSize = opts.metadataSize ?? defaultMetadataSize(opts.size, bs);
    if (metaSize < 64 * 1024) throw new ThinpoolError('EINVAL', `metadata size ${metaSize} is below 64 KiB`);
    if (isRadosAddress(dir)) {
      const storage = formatRadosStorage(dir, { dataSize: nrData * bs, metadataSize: Math.min(metaSize, MAX_METADATA_BYTES) }, opts.ceph);
      try {
        const pool = ThinPool.formatStorage(storage, { ...opts, blockSize: bs });
        storage.finish();
        return pool;
      } catch (e) {
        storage.release();
        throw e;
      }
    }
    mkdirSync(dir, { recursive: true });
    for (const f of ['metadata', 'data', 'catalog.json']) {
      if (existsSync(join(dir, f))) throw new ThinpoolError('EEXIST', `${join(dir, f)} exists: ${dir} already holds a pool`);
    }
    const lock = lockPool(dir);
    try {
      const metadata = FileDevice.create(join(dir, 'metadata'), Math.min(metaSize, MAX_METADATA_BYTES));
      const data = FileDevice.create(join(dir, 'data'), nrData * bs);
      const highWater = new FileHighWaterStore(dir);
      highWater.write(0);
      const storage: PoolStorage = { metadata, data, catalog: new FileCatalogStore(dir), release: () => lock.release(), dir, highWater };
      return ThinPool.formatStorage(storage, { ...opts, blockSize: bs });
    } catch (e) {
      lock.release();
      throw e;
    }
  }

  /** Format a pool on given devices (memory pools, test devices). The metadata device's size is used as is. */
  static formatStorage(storage: PoolStorage, opts: PoolFormatOptions): ThinPool {
    const bs = opts.blockSize ?? MIN_BLOCK_SIZE;
    checkBlockSize(bs);
    const nrData = Math.floor(opts.size / bs);
    if (storage.data.sizeBytes < nrData * bs) storage.data.resize(nrData * bs);
    const md = ThinMetadata.format(storage.metadata, { nrDataBlocks: nrData, dataBlockSectors: bs / 512, cacheBlocks: opts.cacheBlocks });
    const pool = new ThinPool(storage, md, emptyCatalog());
    pool.catalogDirty = true;
    pool.commitSync();
    return pool;
  }

  /** An in-memory pool (sparse memory devices): same API as a file pool. */
  static memory(opts: PoolFormatOptions): ThinPool {
    const bs = opts.blockSize ?? MIN_BLOCK_SIZE;
    checkBlockSize(bs);
    const metaSize = opts.metadataSize ?? defaultMetadataSize(opts.size, bs);
    const storage: PoolStorage = {
      metadata: new MemoryDevice(metaSize),
      data: new MemoryDevice(Math.floor(opts.size / bs) * bs),
      catalog: new MemoryCatalogStore(),
      highWater: new MemoryHighWaterStore(0),
    };
    return ThinPool.formatStorage(storage, opts);
  }

  static async open(dir: string, opts: PoolOpenOptions = {}): Promise<ThinPool> {
    return ThinPool.openSync(dir, opts);
  }

  static openSync(dir: string, opts: PoolOpenOptions = {}): ThinPool {
    if (isRadosAddress(dir)) {
      const storage = openRadosStorage(dir, { ...opts.ceph, readOnly: opts.readOnly });
      try {
        return ThinPool.openStorage(storage, opts);
      } catch (e) {
        storage.release();
        throw e;
      }
    }
    if (!existsSync(join(dir, 'metadata'))) {
      throw new ThinpoolError('ENOENT', `${dir} is not a thinpool pool (no metadata file)`);
    }
    const lock = lockPool(dir, { readOnly: opts.readOnly });
    try {
      const metadata = FileDevice.open(join(dir, 'metadata'), { readOnly: opts.readOnly });
      let data: BlockDevice;
      try {
        data = FileDevice.open(join(dir, 'data'), { readOnly: opts.readOnly });
      } catch (e) {
        metadata.close();
        throw e;
      }
      const storage: PoolStorage = {
        metadata, data, catalog: new FileCatalogStore(dir), release: () => lock.release(), dir, highWater: new FileHighWaterStore(dir),
      };
      try {
        return ThinPool.openStorage(storage, opts);
      } catch (e) {
        metadata.close();
        data.close();
        throw e;
      }
    } catch (e) {
      lock.release();
      throw e;
    }
  }

  static openStorage(storage: PoolStorage, opts: PoolOpenOptions = {}): ThinPool {
    const md = ThinMetadata.open(storage.metadata, { cacheBlocks: opts.cacheBlocks, readOnly: opts.readOnly });
    const bs = md.dataBlockSectors * 512;
    if (storage.data.sizeBytes < md.nrDataBlocks * bs) {
      throw new ThinpoolError('EBADSUPER', `data device is ${storage.data.sizeBytes} bytes but the superblock (block 0) describes ${md.nrDataBlocks} blocks of ${bs} bytes`, { structure: 'superblock', mblock: 0 });
    }
    const catalog = opts.readOnly
      ? (storage.catalog.readPublished() ?? emptyCatalog())
      : recoverCatalog(storage.catalog, ThinPool.fingerprint(storage.metadata));
    return new ThinPool(storage, md, catalog);
  }

  /** Identity of the superblock on disk: what a staged catalog is tied to. */
  private static fingerprint(dev: BlockDevice): string {
    const b = new Uint8Array(512);
    dev.read(b, 0);
    return createHash('sha256').update(b).digest('hex');
  }

  /** Drop catalog entries for devices that no longer exist (e.g. deleted by another tool). */
  private reconcile(): void {
    const before = this.catalog.volumes.length;
    this.catalog.volumes = this.catalog.volumes.filter((v) => this.metadata.hasDevice(v.id));
    if (this.catalog.volumes.length !== before) this.catalogDirty = true;
  }

  get metadata(): ThinMetadata {
    return this.#md;
  }

  // ---- lifecycle ----
  get isClosed(): boolean {
    return this.closed;
  }

  private alive(): void {
    if (this.closed) throw new ThinpoolError('ECLOSED', 'pool is closed');
  }

  /** Commit (unless `commit: false`: uncommitted changes are then dropped) and release the pool. */
  async close(opts: { commit?: boolean } = {}): Promise<void> {
    this.closeSync(opts);
  }

  closeSync(opts: { commit?: boolean } = {}): void {
    if (this.closed) return;
    try {
      if (this.mode === 'write' && opts.commit !== false) this.commitSync();
    } finally {
      this.closed = true;
      try {
        this.storage.metadata.close();
        this.storage.data.close();
      } finally {
        this.storage.release?.();
      }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.closeSync();
  }

  get mode(): PoolMode {
    return this.metadata.mode;
  }

  /** Run a metadata change; on any failure except a clean out-of-space, abort and go read-only (spec 7.9). */
  /**
   * `freeing`: the operation releases space (delete, discard, shrink): it skips the headroom check and may dip
   * into the metadata reserve, so deleting volumes always makes room again.
   */
  private change<T>(fn: () => T, freeing = false): T {
    this.alive();
    if (this.metadata.mode !== 'write') {
      throw new ThinpoolError('EROFS', this.metadata.needsCheck
        ? 'pool is read-only: needs_check is set after a failed metadata operation (run `thinpool check`)'
        : `pool is ${this.metadata.mode === 'fail' ? 'failed' : 'read-only'}`);
    }
    if (!freeing) this.ensureMetadataHeadroom();
    if (freeing) this.metadata.msm.useReserve++;
    try {
      const result = fn();
      this.checkSpace();
      return result;
    } catch (e) {
      if (e instanceof WebAssembly.RuntimeError) {
        // A trap leaves the core's state unknown: refuse all further work until the pool is reopened.
        this.metadata.mode = 'fail';
        throw new ThinpoolError('EFAILED', `the WASM core trapped (${e.message}); the pool has failed: close and reopen it`, { cause: e });
      }
      if (!(isThinpoolError(e) && CLEAN_ERRORS.has(e.code))) {
        this.fail();
      }
      throw e;
    } finally {
      if (freeing) this.metadata.msm.useReserve--;
    }
  }

  private fail(): void {
    try {
      this.metadata.abort();
      this.catalog = this.storage.catalog.readPublished() ?? emptyCatalog();
      this.catalogDirty = false;
    } catch {
      // abort already marked the metadata failed
    }
    this.metadata.setNeedsCheck();
  }

  private ensureMetadataHeadroom(): void {
    if (this.metadata.metadataFreeBlocks >= OP_METADATA_MARGIN) return;
    if (this.metadata.dirty) this.commitSync();
    if (this.metadata.metadataFreeBlocks < OP_METADATA_MARGIN) {
      throw new ThinpoolError('ENOSPC_METADATA', `out of metadata space (${this.metadata.metadataFreeBlocks} free blocks of ${this.metadata.metadataNrBlocks}): delete volumes or grow the metadata device`);
    }
  }

  /** Commit everything written so far (data flush, metadata, catalog). */
  async commit(): Promise<void> {
    this.commitSync();
  }

  commitSync(): void {
    this.alive();
    if (this.metadata.mode !== 'write') {
      if (this.dataDirty) this.storage.data.flush(); // in-place writes in read-only mode are still made durable
      this.dataDirty = false;
      return;
    }
    if (!this.metadata.dirty && !this.catalogDirty) {
      if (this.dataDirty) this.storage.data.flush();
      this.dataDirty = false;
      return;
    }
    try {
      this.storage.data.flush();
      this.dataDirty = false;
      this.stageThenCommit(this.catalogDirty);
      this.catalogDirty = false;
    } catch (e) {
      this.fail();
      throw e;
    }
  }

  /**
   * Two-phase catalog commit. The fingerprint of the new superblock is known only once the metadata commit has
   * prepared it, so the metadata commit is told to call back between "all blocks written and flushed" and
   * "superblock written": the catalog is staged there.
   */
  private stageThenCommit(catalogChanged: boolean): void {
    const md = this.metadata;
    if (!md.dirty) {
      if (!catalogChanged) return;
      this.storage.catalog.stage(this.catalog, ThinPool.fingerprint(this.storage.metadata));
      this.storage.catalog.publish();
      return;
    }
    md.commit(catalogChanged ? (sbBytes) => {
      const fp = createHash('sha256').update(sbBytes.subarray(0, 512)).digest('hex');
      this.storage.catalog.stage(this.catalog, fp);
    } : undefined);
    if (catalogChanged) this.storage.catalog.publish();
    this.passDown(md.dsm.takeFreed());
  }

  /** Discard passdown: release data blocks freed by the commit that just landed (never before it). */
  private passDown(freed: number[]): void {
    if (freed.length === 0 || !this.spaceSettings.discardPassdown) return;
    const md = this.metadata;
    const free = freed.filter((d) => md.dsm.count(d) === 0).sort((a, b) => a - b);
    this.releaseRuns(free);
  }

  /** Punch holes for sorted data blocks, coalesced into runs; warns once when the device cannot. */
  private releaseRuns(sorted: number[], onProgress?: (done: number, total: number) => void): number {
    const bs = this.blockSize;
    let released = 0;
    for (let i = 0; i < sorted.length; ) {
      let j = i + 1;
      while (j < sorted.length && sorted[j] === sorted[j - 1] + 1) j++;
      if (this.storage.data.discard(sorted[i] * bs, (j - i) * bs)) released += j - i;
      else if (!this.warnedNoPunch) {
        this.warnedNoPunch = true;
        this.emit('warning', { code: 'NO_PUNCH_HOLE', message: 'the data device cannot release space (no hole punching here): freed blocks stay allocated in the data file' });
        return released;
      }
      onProgress?.(j, sorted.length);
      i = j;
    }
    return released;
  }

  // ---- space: settings, trim, extend, thresholds ----
  /** The space policy: the catalog's settings merged over the defaults (merged once per catalog change). */
  get spaceSettings(): SpaceSettings {
    if (this.settingsOf !== this.catalog.settings.space) {
      this.settings = mergeSpaceSettings(this.catalog.settings.space);
      this.settingsOf = this.catalog.settings.space;
    }
    return this.settings!;
  }

  /** Change the space policy (committed with the next commit). */
  configureSpace(patch: Partial<SpaceSettings>): SpaceSettings {
    const merged = mergeSpaceSettings(this.catalog.settings.space, patch);
    this.catalog.settings.space = merged;
    this.catalogDirty = true;
    return merged;
  }

  /**
   * Release every data block that no volume uses from the data file (like thin_trim), e.g. for pools written
   * before passdown or by other tools. Commits first. Returns the number of blocks released.
   */
  trimSync(onProgress?: (done: number, total: number) => void): number {
    this.alive();
    if (this.mode === 'write') this.commitSync();
    const md = this.metadata;
    const free: number[] = [];
    for (let d = 0; d < md.nrDataBlocks; d++) if (md.dsm.count(d) === 0) free.push(d);
    return this.releaseRuns(free, onProgress);
  }

  async trim(onProgress?: (done: number, total: number) => void): Promise<number> {
    return this.trimSync(onProgress);
  }

  /** Grow the data device and/or the metadata device (spec 7.8); shrinking data only while its tail is unused. */
  extendSync(opts: ExtendOptions): void {
    this.grow(opts, false);
  }

  private grow(opts: ExtendOptions, auto: boolean): void {
    this.alive();
    if (this.metadata.mode !== 'write') throw new ThinpoolError('EROFS', 'pool is read-only: it cannot grow (needs_check set?)');
    const bs = this.blockSize;
    if (opts.size !== undefined) {
      const nr = Math.floor(opts.size / bs);
      const old = this.metadata.nrDataBlocks;
      if (nr < old) {
        throw new ThinpoolError('EINVAL', `shrinking the data device (${old} -> ${nr} blocks) is not supported`);
      }
      if (nr > old) {
        this.storage.data.resize(nr * bs);
        this.change(() => this.metadata.extendData(nr));
        this.commitSync();
        this.emit('extended', { resource: 'data', fromBlocks: old, toBlocks: nr, auto });
      }
    }
    if (opts.metadataSize !== undefined) {
      const nr = Math.min(Math.floor(opts.metadataSize / 4096), MAX_METADATA_BLOCKS);
      const old = this.metadata.metadataNrBlocks;
      if (nr < old) throw new ThinpoolError('EINVAL', `shrinking the metadata device (${old} -> ${nr} blocks) is not supported`);
      if (nr > old) {
        this.commitSync();
        const cacheBlocks = this.metadata.cache.slots;
        this.storage.metadata.resize(nr * 4096);
        const grown = ThinMetadata.open(this.storage.metadata, { cacheBlocks, growTo: nr });
        this.#md = grown;
        this.commitSync();
        this.emit('extended', { resource: 'metadata', fromBlocks: old, toBlocks: nr, auto });
      }
    }
  }

  async extend(opts: ExtendOptions): Promise<void> {
    this.extendSync(opts);
  }

  /**
   * Metadata use against what operations may really use: the device less the reserve kept for commits and the
   * headroom every operation needs (so thresholds are reached before ENOSPC_METADATA, not after).
   */
  private metadataUse(): { used: number; usable: number } {
    const md = this.metadata;
    const usable = Math.max(1, md.metadataNrBlocks - md.msm.reserve - OP_METADATA_MARGIN);
    const used = Math.min(usable, md.metadataNrBlocks - md.metadataFreeBlocks - md.msm.reserve);
    return { used, usable };
  }

  /** Report threshold crossings (events only: nothing here commits). */
  private checkSpace(): void {
    const md = this.metadata;
    const set = this.spaceSettings;
    const dataUsed = md.dsm.nrAllocated;
    const dataTotal = md.nrDataBlocks;
    const t = this.thresholds.update('data', set.thresholds.data, dataUsed, dataTotal);
    if (t !== null) this.emit('threshold', { resource: 'data', threshold: t, usedBlocks: dataUsed, totalBlocks: dataTotal });
    const meta = this.metadataUse();
    const tm = this.thresholds.update('metadata', set.thresholds.metadata, meta.used, meta.usable);
    if (tm !== null) this.emit('threshold', { resource: 'metadata', threshold: tm, usedBlocks: meta.used, totalBlocks: meta.usable });
  }

  /** Grow the data device by the policy's percentage (at least one block), up to its maximum. Returns success. */
  private autoExtend(set: SpaceSettings): boolean {
    const ae = set.autoExtend;
    const bs = this.blockSize;
    const old = this.metadata.nrDataBlocks;
    const max = Math.floor(ae.maxBytes / bs);
    const target = Math.min(max, old + Math.max(1, Math.ceil((old * ae.percent) / 100)));
    if (!ae.enabled || target <= old) return false;
    this.grow({ size: target * bs }, true);
    return true;
  }

  // ---- volumes ----
  /** The catalog record of a device (indexed: this is on the data path through Volume.sizeBytes). */
  recordOf(id: number): VolumeRecord | undefined {
    if (this.recIndex === null || this.recIndexOf !== this.catalog.volumes || this.recIndexLen !== this.catalog.volumes.length) {
      this.recIndex = new Map(this.catalog.volumes.map((v) => [v.id, v]));
      this.recIndexOf = this.catalog.volumes;
      this.recIndexLen = this.catalog.volumes.length;
    }
    return this.recIndex.get(id);
  }

  /** Resolve a volume by name, by id (number), or by "#id" / a decimal string naming no volume. */
  private idOf(ref: string | number): number {
    this.alive();
    if (typeof ref === 'number') {
      if (!this.metadata.hasDevice(ref)) throw new ThinpoolError('ENOENT', `no volume with device id ${ref}`);
      return ref;
    }
    const rec = this.catalog.volumes.find((v) => v.name === ref);
    if (rec) return rec.id;
    const m = /^#?(\d+)$/.exec(ref);
    if (m && this.metadata.hasDevice(Number(m[1]))) return Number(m[1]);
    throw new ThinpoolError('ENOENT', `no volume named "${ref}"`);
  }

  volume(ref: string | number): Volume {
    return new Volume(this, this.idOf(ref));
  }

  has(ref: string | number): boolean {
    try {
      this.idOf(ref);
      return true;
    } catch {
      return false;
    }
  }

  /** Virtual size: from the catalog, or for devices made by other tools, up to the last mapped block. */
  sizeOf(id: number): number {
    const rec = this.recordOf(id);
    if (rec) return rec.sizeBytes;
    if (!this.metadata.hasDevice(id)) throw new ThinpoolError('ENOENT', `no volume with device id ${id}`);
    let last = -1;
    this.metadata.forEachMapping(id, (v) => { last = v; });
    return (last + 1) * this.blockSize;
  }

  private checkName(name: string): void {
    const problem = volumeNameProblem(name);
    if (problem !== null) throw new ThinpoolError('EINVAL', `bad volume name ${JSON.stringify(name)}: ${problem} (${VOLUME_NAME_RULE})`);
    if (this.catalog.volumes.some((v) => v.name === name)) throw new ThinpoolError('EEXIST', `a volume named "${name}" already exists`);
  }

  private checkSize(size: number): void {
    if (!Number.isSafeInteger(size) || size <= 0 || size % 512 !== 0) {
      throw new ThinpoolError('EINVAL', `volume size ${size} must be a positive multiple of 512 bytes`);
    }
  }

  private nextId(): number {
    const ids = this.metadata.deviceIds();
    const used = new Set(ids);
    let id = ids.length === 0 ? 1 : ids[ids.length - 1] + 1;
    if (id <= MAX_DEVICE_ID) return id;
    for (id = 1; id <= MAX_DEVICE_ID; id++) if (!used.has(id)) return id;
    throw new ThinpoolError('ENOSPC_METADATA', 'no free thin device id');
  }

  async createThin(name: string, opts: CreateOptions): Promise<Volume> {
    return this.createThinSync(name, opts);
  }

  createThinSync(name: string, opts: CreateOptions): Volume {
    this.alive();
    this.checkName(name);
    this.checkSize(opts.size);
    return this.change(() => {
      const id = this.nextId();
      this.metadata.createThin(id);
      this.catalog.volumes.push({ id, name, sizeBytes: opts.size, createdAt: new Date().toISOString(), labels: { ...(opts.labels ?? {}) }, ...(opts.readOnly ? { readOnly: true } : {}) });
      this.catalogDirty = true;
      return new Volume(this, id);
    });
  }

  async snapshot(origin: string | number, name: string, opts: SnapshotOptions = {}): Promise<Volume> {
    return this.snapshotSync(origin, name, opts);
  }

  /** A snapshot of origin (itself possibly a snapshot): constant time, it shares the origin's whole tree. */
  snapshotSync(origin: string | number, name: string, opts: SnapshotOptions = {}): Volume {
    const oid = this.idOf(origin);
    this.checkName(name);
    return this.change(() => {
      const id = this.nextId();
      this.metadata.createSnapshot(id, oid);
      this.catalog.volumes.push({
        id, name, sizeBytes: this.sizeOf(oid), origin: oid, createdAt: new Date().toISOString(),
        labels: { ...(opts.labels ?? {}) }, ...(opts.readOnly ? { readOnly: true } : {}),
      });
      this.catalogDirty = true;
      return new Volume(this, id);
    });
  }

  async delete(ref: string | number, opts: OwnerOptions = {}): Promise<void> {
    this.deleteSync(ref, opts);
  }

  /**
   * A volume labelled `thinpool.owner` (e.g. an image layer, owned by the images layer) is deleted, resized or
   * unsealed only by a caller naming that owner: plain pool users cannot pull layers from under an image.
   */
  private checkOwner(id: number, opts: OwnerOptions, what: string): void {
    const owner = this.recordOf(id)?.labels[OWNER_LABEL];
    if (owner !== undefined && owner !== opts.owner) {
      throw new ThinpoolError('EBUSY', `volume ${this.recordOf(id)!.name} belongs to ${owner}: it cannot be ${what} directly (use the ${owner} commands, e.g. "thinpool image rm" or "thinpool container rm")`);
    }
  }

  deleteSync(ref: string | number, opts: OwnerOptions = {}): void {
    const id = this.idOf(ref);
    this.checkOwner(id, opts, 'deleted');
    this.change(() => {
      this.metadata.deleteDevice(id);
      this.catalog.volumes = this.catalog.volumes.filter((v) => v.id !== id);
      for (const v of this.catalog.volumes) if (v.origin === id) delete v.origin;
      this.catalogDirty = true;
    }, true);
  }

  async resize(ref: string | number, size: number): Promise<void> {
    this.resizeSync(ref, size);
  }

  /** Grow or shrink the virtual size; shrinking unmaps the blocks past the new end and zeroes a partial tail. */
  resizeSync(ref: string | number, size: number, opts: OwnerOptions = {}): void {
    const id = this.idOf(ref);
    this.checkOwner(id, opts, 'resized');
    this.checkSize(size);
    if (this.recordOf(id)?.readOnly) throw new ThinpoolError('EROFS', `volume ${this.recordOf(id)!.name} is read-only: it cannot be resized`);
    this.change(() => {
      const bs = this.blockSize;
      const old = this.sizeOf(id);
      // Shrinking only unmaps (no allocation, so nothing can commit half-way); bytes past the end of a partial
      // last block are invisible until the volume grows again, and growing zeroes them first.
      if (size < old) {
        const firstGone = Math.ceil(size / bs);
        const doomed: number[] = [];
        this.metadata.forEachMappingIn(id, firstGone, Number.MAX_SAFE_INTEGER, (v) => { doomed.push(v); });
        for (const v of doomed) this.metadata.removeMapping(id, v);
      } else if (size > old && old % bs !== 0) {
        this.zeroRange(id, old, Math.min(size, Math.ceil(old / bs) * bs) - old);
      }
      const rec = this.recordOf(id);
      if (rec) rec.sizeBytes = size;
      else this.catalog.volumes.push({ id, name: `thin${id}`, sizeBytes: size, createdAt: new Date().toISOString(), labels: {} });
      this.catalogDirty = true;
    });
  }

  /** Rename a volume or change its labels / read-only flag (committed with the next commit). */
  updateSync(ref: string | number, patch: { name?: string; labels?: Record<string, string>; readOnly?: boolean }, opts: OwnerOptions = {}): void {
    const id = this.idOf(ref);
    if (patch.readOnly === false || patch.name !== undefined || (patch.labels !== undefined && patch.labels[OWNER_LABEL] !== this.recordOf(id)?.labels[OWNER_LABEL])) {
      this.checkOwner(id, opts, 'renamed, relabelled or made writable');
    }
    let rec = this.recordOf(id);
    if (patch.name !== undefined && patch.name !== rec?.name) this.checkName(patch.name);
    if (!rec) {
      rec = { id, name: patch.name ?? `thin${id}`, sizeBytes: this.sizeOf(id), createdAt: new Date().toISOString(), labels: {} };
      this.catalog.volumes.push(rec);
    }
    if (patch.name !== undefined) rec.name = patch.name;
    if (patch.labels !== undefined) rec.labels = { ...patch.labels };
    if (patch.readOnly !== undefined) {
      if (patch.readOnly) rec.readOnly = true;
      else delete rec.readOnly;
    }
    this.catalogDirty = true;
  }

  list(): VolumeInfo[] {
    this.alive();
    const usage = deviceUsage(this.metadata);
    const bs = this.blockSize;
    return this.metadata.deviceIds().map((id) => {
      const rec = this.recordOf(id);
      const det = this.metadata.details0(id);
      const u = usage.get(id) ?? { mappedBlocks: 0, exclusiveBlocks: 0, sharedBlocks: 0 };
      return {
        id,
        name: rec?.name,
        sizeBytes: this.sizeOf(id),
        origin: rec?.origin,
        originName: rec?.origin !== undefined ? this.recordOf(rec.origin)?.name : undefined,
        createdAt: rec?.createdAt,
        creationTime: det.creationTime,
        snapshottedTime: det.snapshottedTime,
        mappedBytes: u.mappedBlocks * bs,
        exclusiveBytes: u.exclusiveBlocks * bs,
        sharedBytes: u.sharedBlocks * bs,
        readOnly: rec?.readOnly === true,
        labels: { ...(rec?.labels ?? {}) },
      };
    });
  }

  /** Changed block ranges between two volumes, as thin_delta reports them (in blocks). */
  diff(a: string | number, b: string | number): DiffRange[] {
    return diffDevices(this.metadata, this.idOf(a), this.idOf(b));
  }

  status(): PoolStatus {
    this.alive();
    const md = this.metadata;
    return {
      blockSize: this.blockSize,
      dataBlocks: { used: md.dsm.nrAllocated, total: md.nrDataBlocks, free: md.dsm.nrFree },
      metadataBlocks: { used: md.metadataUsedBlocks, total: md.metadataNrBlocks, free: md.metadataFreeBlocks },
      transactionId: md.transactionId,
      heldMetadataRoot: md.heldRoot === 0 ? null : md.heldRoot,
      mode: md.mode,
      needsCheck: md.needsCheck,
      time: md.time,
      volumes: md.deviceIds().length,
      lowWater: {
        data: thresholdLevel(this.spaceSettings.thresholds.data, md.dsm.nrAllocated, md.nrDataBlocks),
        metadata: thresholdLevel(this.spaceSettings.thresholds.metadata, this.metadataUse().used, this.metadataUse().usable),
      },
      discardPassdown: this.spaceSettings.discardPassdown,
    };
  }

  get transactionId(): number {
    return this.metadata.transactionId;
  }

  /** Compare-and-set of the userspace transaction id (dm-thin's set_transaction_id), committed at once. */
  async setTransactionId(oldId: number, newId: number): Promise<void> {
    this.change(() => this.metadata.setTransactionId(oldId, newId));
    this.commitSync();
  }

  /** Take the held metadata snapshot (dm-thin's reserve_metadata_snap): commits before and after. */
  async reserveMetadataSnap(): Promise<number> {
    this.commitSync();
    const held = this.change(() => this.metadata.reserveMetadataSnap());
    this.commitSync();
    return held;
  }

  async releaseMetadataSnap(): Promise<void> {
    this.change(() => this.metadata.releaseMetadataSnap());
    this.commitSync();
  }

  /** Pool-level settings and data of layers above (images, snapshotter), committed with the catalog. */
  getExtension<T>(key: string): T | undefined {
    return this.catalog.extensions[key] as T | undefined;
  }

  setExtension(key: string, value: unknown): void {
    this.catalog.extensions[key] = value;
    this.catalogDirty = true;
  }

  // ---- data path (called by Volume) ----
  /** @internal */
  readData(id: number, buf: Uint8Array, offset: number): void {
    this.alive();
    const bs = this.blockSize;
    const md = this.metadata;
    const root = md.rootOf(id);
    const data = this.storage.data;
    let done = 0;
    while (done < buf.length) {
      const pos = offset + done;
      const vblock = Math.floor(pos / bs);
      const within = pos - vblock * bs;
      let n = Math.min(bs - within, buf.length - done);
      const dblock = md.lookupDblock(root, vblock);
      if (dblock >= md.nrDataBlocks) this.badMapping(id, vblock, dblock, root);
      if (dblock < 0) {
        buf.fill(0, done, done + n);
      } else {
        // One read for a run of virtual blocks mapped to consecutive data blocks.
        let next = vblock + 1;
        while (done + n < buf.length && dblock + (next - vblock) < md.nrDataBlocks && md.lookupDblock(root, next) === dblock + (next - vblock)) {
          n += Math.min(bs, buf.length - done - n);
          next++;
        }
        data.read(buf.subarray(done, done + n), dblock * bs + within);
      }
      done += n;
    }
  }

  /** @internal */
  writeData(id: number, buf: Uint8Array, offset: number): void {
    this.alive();
    const bs = this.blockSize;
    const md = this.metadata;
    let done = 0;
    while (done < buf.length) {
      const pos = offset + done;
      const vblock = Math.floor(pos / bs);
      const within = pos - vblock * bs;
      let n = Math.min(bs - within, buf.length - done);
      const m = md.lookup(id, vblock);
      if (m && !m.shared && m.dblock < md.nrDataBlocks && md.mode !== 'fail' && n < buf.length - done) {
        // A run of mapped, unshared blocks on consecutive data blocks is written in place with one write.
        let next = vblock + 1;
        while (done + n < buf.length && this.inPlaceRun(id, next) === m.dblock + (next - vblock)) {
          n += Math.min(bs, buf.length - done - n);
          next++;
        }
        this.dataDirty = true;
        this.storage.data.write(buf.subarray(done, done + n), m.dblock * bs + within);
      } else {
        this.writeBlock(id, vblock, within, buf.subarray(done, done + n), m);
      }
      done += n;
    }
  }

  /** The data block vblock is mapped to when a write may go there in place (mapped, not shared), else null. */
  private inPlaceRun(id: number, vblock: number): number | null {
    const m = this.metadata.lookup(id, vblock);
    return m !== null && !m.shared && m.dblock < this.metadata.nrDataBlocks ? m.dblock : null;
  }

  /** Write part into vblock at within; m is vblock's mapping as looked up by the caller (one lookup per block). */
  private writeBlock(id: number, vblock: number, within: number, part: Uint8Array, m: (Mapping & { shared: boolean }) | null): void {
    const md = this.metadata;
    this.dataDirty = true;
    const bs = this.blockSize;
    const data = this.storage.data;
    if (m && m.dblock >= md.nrDataBlocks) this.badMapping(id, vblock, m.dblock, md.rootOf(id));
    if (m && !m.shared && md.mode !== 'fail') {
      data.write(part, m.dblock * bs + within); // in place; read-only mode still writes unshared mapped blocks
      return;
    }
    if (md.mode !== 'write') this.change(() => undefined); // refuses with the mode's error
    const dblock = this.allocDataBlock();
    try {
      const pristine = this.highWater.isPristine(dblock);
      this.highWater.beforeWrite(dblock);
      if (part.length < bs) {
        if (m) this.copyBlock(m.dblock, dblock);
        else if (!pristine) {
          this.zeroData(dblock * bs, within);
          this.zeroData(dblock * bs + within + part.length, bs - within - part.length);
        }
      }
      data.write(part, dblock * bs + within);
    } catch (e) {
      this.change(() => md.dsm.dec(dblock));
      throw e;
    }
    this.change(() => md.insertMapping(id, vblock, dblock));
  }

  /** A mapping that points past the data device: corrupt metadata, never followed. */
  private badMapping(id: number, vblock: number, dblock: number, root: number): never {
    throw new ThinpoolError('ECORRUPT', `mapping tree of thin device ${id} maps block ${vblock} to data block ${dblock}, beyond the data device (${this.metadata.nrDataBlocks} blocks) (root block ${root})`, { structure: 'mapping tree', mblock: root });
  }

  /** A free data block; when none is free but this transaction freed some, commit and retry (as the kernel does). */
  private allocDataBlock(): number {
    // Growing commits: do it before the allocation, never between an allocation and its mapping.
    const set = this.spaceSettings;
    const md0 = this.metadata;
    if (set.autoExtend.enabled && 100 * (md0.dsm.nrAllocated + 1) >= set.autoExtend.atPercent * md0.nrDataBlocks) this.autoExtend(set);
    return this.change(() => {
      try {
        return this.metadata.allocDataBlock();
      } catch (e) {
        if (!isThinpoolError(e, 'ENOSPC_DATA')) throw e;
        if (this.metadata.dsm.freedInTransaction > 0) {
          this.commitSync();
          return this.metadata.allocDataBlock();
        }
        if (this.autoExtend(this.spaceSettings)) return this.metadata.allocDataBlock();
        const total = this.metadata.nrDataBlocks;
        throw new ThinpoolError('ENOSPC_DATA', `pool is full: all ${total} data blocks (${total * this.blockSize} bytes) are in use; delete volumes or extend the pool`);
      }
    });
  }

  private copyBuf: Uint8Array | null = null;

  private copyBlock(from: number, to: number): void {
    const bs = this.blockSize;
    const buf = (this.copyBuf ??= new Uint8Array(Math.min(bs, 1024 * 1024)));
    for (let off = 0; off < bs; off += buf.length) {
      this.storage.data.read(buf, from * bs + off);
      this.storage.data.write(buf, to * bs + off);
    }
  }

  private zeroData(pos: number, len: number): void {
    if (len <= 0) return;
    const z = (this.zeroes ??= new Uint8Array(Math.min(this.blockSize, 1024 * 1024)));
    for (let off = 0; off < len; off += z.length) {
      this.storage.data.write(z.subarray(0, Math.min(z.length, len - off)), pos + off);
    }
  }

  /** Zero a byte range of a volume through the write path (only mapped blocks need it). */
  private zeroRange(id: number, offset: number, length: number): void {
    const bs = this.blockSize;
    let done = 0;
    while (done < length) {
      const pos = offset + done;
      const vblock = Math.floor(pos / bs);
      const within = pos - vblock * bs;
      const n = Math.min(bs - within, length - done);
      const m = this.metadata.lookup(id, vblock);
      if (m) this.writeBlock(id, vblock, within, new Uint8Array(n), m);
      done += n;
    }
  }

  /** @internal */
  discardData(id: number, offset: number, length: number): void {
    const bs = this.blockSize;
    const firstFull = Math.ceil(offset / bs);
    const endFull = Math.floor((offset + length) / bs);
    if (firstFull >= endFull) {
      this.zeroRange(id, offset, length);
      return;
    }
    this.zeroRange(id, offset, firstFull * bs - offset);
    this.zeroRange(id, endFull * bs, offset + length - endFull * bs);
    const md = this.metadata;
    const doomed: number[] = [];
    if (endFull - firstFull <= md.details0(id).mappedBlocks) {
      const root = md.rootOf(id);
      for (let v = firstFull; v < endFull; v++) if (md.lookupDblock(root, v) >= 0) doomed.push(v);
    } else {
      md.forEachMapping(id, (v) => { if (v >= firstFull && v < endFull) doomed.push(v); });
    }
    for (const v of doomed) this.change(() => md.removeMapping(id, v), true);
  }
}

/** Does dir look like a pool? */
export function isPoolDir(dir: string): boolean {
  try {
    return readdirSync(dir).includes('metadata');
  } catch {
    return false;
  }
}
