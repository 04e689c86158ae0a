/**
 * ThinPool: a dm-thin pool on a pair of block devices plus a catalog, usually a directory holding `metadata`
 * (a real dm-thin metadata device), `data` (sparse) and `catalog.json`, or objects in Ceph RADOS when the
 * pool is addressed `rados://CEPH_POOL/NAME` (rados-pool.ts). This file holds the public class; each
 * concept lives in a file of its own, which the class delegates to:
 *   lifecycle.ts   geometry, format, open, lock, reconcile, close     commit.ts     metadata changes, commit order
 *   space.ts       thresholds, metadata use, passdown, trim           extend.ts     growing data and metadata
 *   data-path.ts   reads, writes, copy-on-write, discard              volumes.ts    create, snapshot, delete, ...
 *   pool-state.ts  the state they share                               volume.ts     a volume, over VolumeIO
 *
 * Contract:
 * - Pool operations are serialised (all I/O below is synchronous); the async methods resolve when done.
 * - `commit()`: flush the data device, commit the metadata (superblock last, flushed), then publish the
 *   catalog (two-phase, see catalog.ts). Only then is anything acknowledged as durable.
 * - A metadata operation that fails part-way (I/O error, corruption found) aborts the transaction back to the
 *   last commit, sets needs_check in the superblock and leaves the pool read-only (spec 7.9). Out-of-space is
 *   detected before anything changes and leaves the pool writable: delete volumes, then write again.
 * - Opening a pool takes its lock (lock.ts); close() commits and releases it.
 * - Catalog extensions: layers above (images, snapshotter) keep pool-level data under a key of their own,
 *   committed with the catalog.
 */
import { isAsyncDevice } from '../io/block-device.js';
import { EventEmitter } from 'node:events';
import { ThinpoolError } from '../errors.js';
import { change, commit } from './commit.js';
import { DataPath } from './data-path.js';
import { grow, type ExtendOptions } from './extend.js';
import {
  clearUncleanMarker,
  closeStorage,
  createFileStorage,
  formatMetadata,
  memoryStorage,
  openFileStorage,
  openMetadata,
  reconcile,
  type PoolFormatOptions,
  type PoolOpenOptions,
} from './lifecycle.js';
import { emptyCatalog, type CatalogData, type VolumeRecord } from './catalog.js';
import type { ThinMetadata } from './metadata.js';
import { PoolState, type PoolEvents, type PoolStorage } from './pool-state.js';
import { metadataUse, releaseUncommitted, releaseUnused } from './space.js';
import { mergeSpaceSettings, thresholdLevel, type SpaceSettings } from './space-policy.js';
import { heldTag } from './rados-reader.js';
import { diffDevices, type DiffRange } from './usage.js';
import type { Volume, VolumeIO } from './volume.js';
import { Volumes, type CreateOptions, type OwnerOptions, type SnapshotOptions, type VolumeInfo } from './volumes.js';

export {
  MIN_BLOCK_SIZE,
  MAX_BLOCK_SIZE,
  defaultMetadataSize,
  isPoolDir,
  type PoolFormatOptions,
  type PoolOpenOptions,
} from './lifecycle.js';
export type { PoolStorage, PoolEvents } from './pool-state.js';
export type { ExtendOptions } from './extend.js';
export { OWNER_LABEL, RECEIVING_OWNER, type CreateOptions, type OwnerOptions, type SnapshotOptions, type VolumeInfo } from './volumes.js';

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

declare module './volume.js' {
  /** `volume.pool` is the ThinPool the volume belongs to (volume.ts itself does not import this file). */
  interface VolumePool extends ThinPool {}
}

export class ThinPool extends EventEmitter<PoolEvents> implements VolumeIO {
  readonly storage: PoolStorage;
  readonly blockSize: number;
  readonly #s: PoolState;
  readonly #data: DataPath;
  readonly #volumes: Volumes;

  private constructor(storage: PoolStorage, md: ThinMetadata, catalog: CatalogData) {
    super();
    this.storage = storage;
    this.#s = new PoolState(storage, md, catalog, this);
    this.blockSize = this.#s.blockSize;
    this.#data = new DataPath(this.#s);
    this.#volumes = new Volumes(this.#s, this.#data, this, this);
    reconcile(this.#s);
    // A volume still owned by a receive was left half-received by a crash after a commit forced mid-receive.
    if (this.#s.md.mode === 'write') this.#volumes.dropIncomplete();
  }

  // ---- creation and opening (lifecycle.ts) ----
  static async format(dir: string, opts: PoolFormatOptions): Promise<ThinPool> {
    return ThinPool.formatSync(dir, opts);
  }

  static formatSync(dir: string, opts: PoolFormatOptions): ThinPool {
    return createFileStorage(dir, opts, (storage, o) => ThinPool.formatStorage(storage, o));
  }

  /** Format a pool on given devices (memory pools, test devices). The metadata device's size is used as is. */
  static formatStorage(storage: PoolStorage, opts: PoolFormatOptions): ThinPool {
    const md = formatMetadata(storage, opts);
    const pool = new ThinPool(storage, md, emptyCatalog());
    pool.#s.catalogDirty = true;
    pool.commitSync();
    return pool;
  }

  /** An in-memory pool (sparse memory devices): same API as a file pool. */
  static memory(opts: PoolFormatOptions): ThinPool {
    return ThinPool.formatStorage(memoryStorage(opts), opts);
  }

  static async open(dir: string, opts: PoolOpenOptions = {}): Promise<ThinPool> {
    return ThinPool.openSync(dir, opts);
  }

  static openSync(dir: string, opts: PoolOpenOptions = {}): ThinPool {
    return openFileStorage(dir, opts, (storage) => ThinPool.openStorage(storage, opts));
  }

  static openStorage(storage: PoolStorage, opts: PoolOpenOptions = {}): ThinPool {
    const { md, catalog } = openMetadata(storage, opts);
    const pool = new ThinPool(storage, md, catalog);
    if (storage.uncleanStop && !opts.readOnly && pool.mode === 'write') {
      pool.releasedOnOpen = releaseUncommitted(pool.#s);
      clearUncleanMarker(storage);
    }
    return pool;
  }

  /**
   * Data blocks this open released because the last writer stopped without closing the pool (written, never
   * committed: the committed space map calls them free).
   */
  releasedOnOpen = 0;

  /**
   * Release data blocks written but never committed, below the high-water mark (space.ts releaseUncommitted):
   * for a process whose command was interrupted, after dropping its changes (`close({ commit: false })` and a
   * fresh open). Refused with uncommitted changes. Returns the blocks released.
   */
  releaseUncommittedSync(): number {
    if (this.metadata.dirty) throw new ThinpoolError('EBUSY', 'the pool has uncommitted changes: commit or drop them first');
    return releaseUncommitted(this.#s);
  }

  get metadata(): ThinMetadata {
    return this.#s.md;
  }

  // ---- lifecycle ----
  get isClosed(): boolean {
    return this.#s.closed;
  }

  /**
   * Commit (unless `commit: false`: uncommitted changes are then dropped) and release the pool. A pool gone
   * read-only still flushes the in-place writes it took (commit.ts); a failed one closes without a flush.
   */
  async close(opts: { commit?: boolean } = {}): Promise<void> {
    this.closeSync(opts);
  }

  closeSync(opts: { commit?: boolean } = {}): void {
    if (this.#s.closed) return;
    try {
      if (this.mode !== 'fail' && opts.commit !== false) this.commitSync();
    } finally {
      closeStorage(this.#s);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.closeSync();
  }

  get mode(): PoolMode {
    return this.#s.md.mode;
  }

  // ---- transaction (commit.ts) ----
  /** Commit everything written so far (data flush, metadata, catalog). */
  async commit(): Promise<void> {
    this.commitSync();
  }

  commitSync(): void {
    commit(this.#s);
  }

  get transactionId(): number {
    return this.#s.md.transactionId;
  }

  /** Compare-and-set of the userspace transaction id (dm-thin's set_transaction_id), committed at once. */
  async setTransactionId(oldId: number, newId: number): Promise<void> {
    change(this.#s, () => this.#s.md.setTransactionId(oldId, newId));
    this.commitSync();
  }

  /** Take the held metadata snapshot (dm-thin's reserve_metadata_snap): commits before and after. */
  async reserveMetadataSnap(): Promise<number> {
    this.commitSync();
    // Readers that share the store (rados-reader.ts) find the catalog of the held state, tagged with its roots.
    this.storage.catalog.hold?.(this.#s.catalog, heldTag(this.#s.md.superblock));
    const held = change(this.#s, () => this.#s.md.reserveMetadataSnap());
    this.commitSync();
    return held;
  }

  async releaseMetadataSnap(): Promise<void> {
    change(this.#s, () => this.#s.md.releaseMetadataSnap());
    this.commitSync();
    this.storage.catalog.dropHeld?.();
  }

  // ---- space: settings, trim, extend (space.ts, extend.ts) ----
  /** The space policy: the catalog's settings merged over the defaults (merged once per catalog change). */
  get spaceSettings(): SpaceSettings {
    return this.#s.spaceSettings;
  }

  /** Change the space policy (committed with the next commit). */
  configureSpace(patch: Partial<SpaceSettings>): SpaceSettings {
    const s = this.#s;
    const merged = mergeSpaceSettings(s.catalog.settings.space, patch);
    s.catalog.settings.space = merged;
    s.catalogDirty = true;
    return merged;
  }

  /**
   * Release every data block that no volume uses from the data file (like thin_trim), e.g. for pools written
   * before passdown or by other tools. Commits first. Returns the number of blocks released.
   * Only the writer may: a read-only open (which takes no lock: a writer may be working, its new blocks not yet
   * committed) and a pool gone read-only (needs_check: its space maps are suspect) refuse with EROFS, since
   * discarding a block that is in use destroys its data.
   */
  trimSync(onProgress?: (done: number, total: number) => void): number {
    this.#s.alive();
    if (this.mode !== 'write') {
      throw new ThinpoolError(
        'EROFS',
        `pool is ${this.mode === 'fail' ? 'failed' : 'read-only'}: trim releases blocks only from a pool open for writing`,
      );
    }
    this.commitSync();
    return releaseUnused(this.#s, onProgress);
  }

  async trim(onProgress?: (done: number, total: number) => void): Promise<number> {
    return this.trimSync(onProgress);
  }

  /** Grow the data device and/or the metadata device (spec 7.8); shrinking data only while its tail is unused. */
  extendSync(opts: ExtendOptions): void {
    grow(this.#s, opts, false);
  }

  async extend(opts: ExtendOptions): Promise<void> {
    this.extendSync(opts);
  }

  status(): PoolStatus {
    const s = this.#s;
    s.alive();
    const md = s.md;
    return {
      blockSize: this.blockSize,
      dataBlocks: { used: md.dataUsedBlocks, total: md.nrDataBlocks, free: md.dataFreeBlocks },
      metadataBlocks: { used: md.metadataUsedBlocks, total: md.metadataNrBlocks, free: md.metadataFreeBlocks },
      transactionId: md.transactionId,
      heldMetadataRoot: md.heldRoot === 0 ? null : md.heldRoot,
      mode: md.mode,
      needsCheck: md.needsCheck,
      time: md.time,
      volumes: md.deviceIds().length,
      lowWater: {
        data: thresholdLevel(s.spaceSettings.thresholds.data, md.dataUsedBlocks, md.nrDataBlocks),
        metadata: thresholdLevel(s.spaceSettings.thresholds.metadata, metadataUse(s).used, metadataUse(s).usable),
      },
      discardPassdown: s.spaceSettings.discardPassdown,
    };
  }

  // ---- volumes (volumes.ts) ----
  /** The catalog record of a device (indexed: this is on the data path through Volume.sizeBytes). */
  recordOf(id: number): VolumeRecord | undefined {
    return this.#s.recordOf(id);
  }

  /** Virtual size: from the catalog, or for devices made by other tools, up to the last mapped block. */
  sizeOf(id: number): number {
    return this.#s.sizeOf(id);
  }

  volume(ref: string | number): Volume {
    return this.#volumes.volume(this.#volumes.idOf(ref));
  }

  has(ref: string | number): boolean {
    try {
      this.#volumes.idOf(ref);
      return true;
    } catch {
      return false;
    }
  }

  async createThin(name: string, opts: CreateOptions): Promise<Volume> {
    return this.createThinSync(name, opts);
  }

  createThinSync(name: string, opts: CreateOptions): Volume {
    return this.#volumes.create(name, opts);
  }

  async snapshot(origin: string | number, name: string, opts: SnapshotOptions = {}): Promise<Volume> {
    return this.snapshotSync(origin, name, opts);
  }

  /** A snapshot of origin (itself possibly a snapshot): constant time, it shares the origin's whole tree. */
  snapshotSync(origin: string | number, name: string, opts: SnapshotOptions = {}): Volume {
    return this.#volumes.snapshot(origin, name, opts);
  }

  async delete(ref: string | number, opts: OwnerOptions = {}): Promise<void> {
    this.deleteSync(ref, opts);
  }

  /** A volume labelled `thinpool.owner` is deleted only by a caller naming that owner (volumes.ts). */
  deleteSync(ref: string | number, opts: OwnerOptions = {}): void {
    this.#volumes.delete(ref, opts);
  }

  async resize(ref: string | number, size: number, opts: OwnerOptions = {}): Promise<void> {
    this.resizeSync(ref, size, opts);
  }

  /** Grow or shrink the virtual size; shrinking unmaps the blocks past the new end and zeroes a partial tail. */
  resizeSync(ref: string | number, size: number, opts: OwnerOptions = {}): void {
    this.#volumes.resize(ref, size, opts);
  }

  /** Rename a volume or change its labels / read-only flag (committed with the next commit). */
  updateSync(
    ref: string | number,
    patch: { name?: string; labels?: Record<string, string>; readOnly?: boolean },
    opts: OwnerOptions = {},
  ): void {
    this.#volumes.update(ref, patch, opts);
  }

  /** Rename a volume (lvrename, zfs rename): same id, data, labels and snapshots; durable with the next commit. */
  renameSync(ref: string | number, name: string, opts: OwnerOptions = {}): void {
    this.#volumes.update(ref, { name }, opts);
  }

  async rename(ref: string | number, name: string, opts: OwnerOptions = {}): Promise<void> {
    this.renameSync(ref, name, opts);
  }

  /**
   * Rollback (zfs rollback, lvconvert --merge): VOLUME's content becomes SNAPSHOT's, in constant time; VOLUME
   * keeps its name, id, size, labels and origin, SNAPSHOT stays as it is. No data is copied (one block at most,
   * when VOLUME is larger and SNAPSHOT ends inside a block); the blocks only VOLUME held are freed, and passed
   * down, at the next commit. Refused before anything changes: SNAPSHOT not a snapshot of VOLUME (EINVAL),
   * VOLUME read-only (EROFS), owned by a layer above unless opts.owner names it, or claimed in use (EBUSY).
   */
  rollbackSync(ref: string | number, snapshot: string | number, opts: OwnerOptions = {}): void {
    this.#volumes.rollback(ref, snapshot, opts);
  }

  async rollback(ref: string | number, snapshot: string | number, opts: OwnerOptions = {}): Promise<void> {
    this.rollbackSync(ref, snapshot, opts);
  }

  /**
   * Delete volumes left half-received (owned by RECEIVING_OWNER), as every writable open does; returns their
   * names. Not while a receive runs on this pool.
   */
  dropIncompleteReceives(): string[] {
    return this.#volumes.dropIncomplete();
  }

  /** Is `snap` a snapshot of `of`, directly or through snapshots of snapshots? */
  isSnapshotOf(snap: string | number, of: string | number): boolean {
    return this.#volumes.isSnapshotOf(this.#volumes.idOf(snap), this.#volumes.idOf(of));
  }

  /** Mark a volume in use by `who` in this process (an NBD export, ...) until the returned function is called. */
  claim(ref: string | number, who: string): () => void {
    return this.#volumes.claim(this.#volumes.idOf(ref), who);
  }

  /** Who holds a volume in use in this process (see claim). */
  usersOf(ref: string | number): string[] {
    return this.#volumes.usersOf(this.#volumes.idOf(ref));
  }

  list(): VolumeInfo[] {
    return this.#volumes.list();
  }

  /** Changed block ranges between two volumes, as thin_delta reports them (in blocks). */
  diff(a: string | number, b: string | number): DiffRange[] {
    return diffDevices(this.#s.md, this.#volumes.idOf(a), this.#volumes.idOf(b));
  }

  // ---- data path (data-path.ts), called by Volume through VolumeIO ----
  /** @internal */
  readData(id: number, buf: Uint8Array, offset: number): void {
    this.#data.readData(id, buf, offset);
  }

  /** @internal */
  writeData(id: number, buf: Uint8Array, offset: number): void {
    this.#data.writeData(id, buf, offset);
  }

  /** @internal the data device takes asynchronous requests (RADOS): volumes use the *Async data path */
  get asyncData(): boolean {
    return isAsyncDevice(this.#s.storage.data);
  }

  /** @internal bytes of writes the data device may answer before it has them (AsyncBlockDevice.writeBackBytes) */
  get writeBackBytes(): number {
    const data = this.#s.storage.data;
    return isAsyncDevice(data) ? data.writeBackBytes : 0;
  }

  /** @internal */
  readDataAsync(id: number, buf: Uint8Array, offset: number): Promise<void> {
    return this.#data.readDataAsync(id, buf, offset);
  }

  /** @internal */
  writeDataAsync(id: number, buf: Uint8Array, offset: number): Promise<void> {
    return this.#data.writeDataAsync(id, buf, offset);
  }

  /** @internal */
  discardData(id: number, offset: number, length: number): void {
    this.#data.discardData(id, offset, length);
  }

  /** @internal */
  forEachMappingIn(id: number, first: number, end: number, fn: (vblock: number, dblock: number) => void): void {
    this.#s.pending.settleAll(); // data block numbers leave the pool here: their bytes must be whole
    this.#s.md.forEachMappingIn(id, first, end, fn);
  }

  // ---- catalog extensions ----
  /** Pool-level settings and data of layers above (images, snapshotter), committed with the catalog. */
  getExtension<T>(key: string): T | undefined {
    return this.#s.catalog.extensions[key] as T | undefined;
  }

  setExtension(key: string, value: unknown): void {
    this.#s.catalog.extensions[key] = value;
    this.#s.catalogDirty = true;
  }
}
