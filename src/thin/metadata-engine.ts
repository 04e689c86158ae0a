/**
 * The engine below thin metadata: the layered parts of one open pool's metadata (WASM core, block cache,
 * metadata space map, transaction manager, data space map, the mapping and details trees), built once per
 * open, and the operations on them that are not about devices: space and cache figures, data block
 * references held outside mappings, the metadata reserve, the held snapshot's superblock, the needs_check
 * flag, inspection.
 * `MetadataDevices` (metadata-devices.ts) extends it with the in-core device table, the reads and the commit,
 * and `ThinMetadata` (metadata.ts) with format, open and the changes.
 *
 * Contract:
 * - The parts are protected: callers outside the metadata layer use the named operations here and in
 *   ThinMetadata, the tools the read-only `inspect()` door (metadata-inspect.ts); white-box tests and engine
 *   benchmarks `MetadataEngine.internals` (nothing in src/ does, test/layers.test.ts checks).
 * - Every change requires write mode (`writable()`): read-only and failed metadata refuse with EROFS.
 */
import type { BlockDevice } from '../io/block-device.js';
import { Core } from '../core/wasm.js';
import { ThinpoolError } from '../errors.js';
import { BlockCache } from '../pd/block-cache.js';
import { BlockKind } from '../pd/block-kinds.js';
import { BTree } from '../pd/btree.js';
import { DataSpaceMap } from '../pd/space-map-data.js';
import { MetadataSpaceMap, type RefTreeCodec } from '../pd/space-map-metadata.js';
import { TransactionManager } from '../pd/transaction-manager.js';
import { INDEX_ENTRY, TREE_ROOT, U32, type IndexEntry } from '../pd/value-types.js';
import { BLOCK_TIME, type Mapping } from './block-time.js';
import { DEVICE_DETAILS, type DeviceDetails } from './device-details.js';
import { MetadataInspection } from './metadata-inspect.js';
import { decodeSuperblock, NEEDS_CHECK, sealSuperblockAt, type Superblock } from './superblock.js';

export const DEFAULT_CACHE_BLOCKS = 8192;

export type MetadataMode = 'write' | 'read-only' | 'fail';

/**
 * A metadata cache size in 4 KiB blocks, or a rule giving it from the data blocks the superblock describes (read
 * before the cache is made, so a reader sizes its cache for the pool without reading block 0 twice).
 */
export type CacheBlocks = number | ((nrDataBlocks: number) => number);

/** The cache size `c` gives for a pool of nrDataBlocks (undefined: the default). */
export function cacheBlocksFor(c: CacheBlocks | undefined, nrDataBlocks: number): number | undefined {
  return typeof c === 'function' ? c(nrDataBlocks) : c;
}

export interface MetadataOpenOptions {
  /** Metadata cache size in 4 KiB blocks (default 8192 = 32 MiB, capped at the metadata size); see CacheBlocks. */
  cacheBlocks?: CacheBlocks;
  /** Entries of the read lookup cache (mapping-cache.ts; default 32768 = 1 MiB; 0 turns it off). */
  mappingCacheEntries?: number;
  readOnly?: boolean;
  /** Grow the metadata space map to this many blocks after opening (the device must be that large). */
  growTo?: number;
}

/** What the engine is made with: a cache size already resolved from its rule (cacheBlocksFor). */
export type EngineOptions = Omit<MetadataOpenOptions, 'cacheBlocks'> & { cacheBlocks?: number };

/** The engine below a ThinMetadata, for white-box tests and engine benchmarks only (see `internals`). */
export interface MetadataInternals {
  core: Core;
  cache: BlockCache;
  msm: MetadataSpaceMap;
  tm: TransactionManager;
  dsm: DataSpaceMap;
  l0: BTree<number>;
  l1: BTree<Mapping>;
  details: BTree<DeviceDetails>;
}

export abstract class MetadataEngine {
  readonly dev: BlockDevice;
  protected readonly core: Core;
  protected readonly cache: BlockCache;
  protected readonly msm: MetadataSpaceMap;
  protected readonly tm: TransactionManager;
  protected readonly dsm: DataSpaceMap;
  /** Level 0 of the mapping tree: device id -> level-1 root. */
  protected readonly l0: BTree<number>;
  /** Level 1: virtual block -> block-time. */
  protected readonly l1: BTree<Mapping>;
  protected readonly details: BTree<DeviceDetails>;
  protected readonly refTree: BTree<number>;
  protected readonly refCodec: RefTreeCodec;
  protected sb!: Superblock;
  protected committedSb!: Superblock;
  protected sbDirty = false;
  private inspection?: MetadataInspection;
  mode: MetadataMode = 'write';

  /** capacity: metadata blocks the count arrays are sized for (>= the space map's nr_blocks). */
  protected constructor(dev: BlockDevice, capacity: number, opts: EngineOptions) {
    this.dev = dev;
    const slots = Math.max(64, Math.min(opts.cacheBlocks ?? DEFAULT_CACHE_BLOCKS, capacity + 8));
    this.core = new Core(slots, capacity);
    this.cache = new BlockCache(this.core, dev);
    this.msm = new MetadataSpaceMap(this.core, capacity);
    this.tm = new TransactionManager(this.core, this.cache, this.msm);
    this.l1 = new BTree(this.tm, BLOCK_TIME, 'mapping tree (level 1)');
    this.l0 = new BTree(this.tm, TREE_ROOT, 'mapping tree (level 0)');
    this.details = new BTree(this.tm, DEVICE_DETAILS, 'device details tree');
    this.refTree = new BTree(this.tm, U32, 'metadata ref-count tree');
    const dataIndex = new BTree<IndexEntry>(this.tm, INDEX_ENTRY, 'data space map index');
    const dataRef = new BTree(this.tm, U32, 'data ref-count tree');
    this.dsm = new DataSpaceMap(this.tm, dataIndex, dataRef);
    this.refCodec = {
      read: (root, onEntry, onNode) => this.refTree.walk(root, onEntry, (b) => onNode(b)),
      build: (entries) =>
        this.refTree.build(
          entries.map((e) => e[0]),
          (i) => entries[i][1],
        ),
    };
    if (opts.readOnly) this.mode = 'read-only';
  }

  /**
   * The engine's parts, for white-box tests (deliberate corruption, the transaction manager's edges) and the
   * engine benchmarks (the raw btree). Nothing in src/ calls this (test/layers.test.ts checks): the pool uses
   * the named operations below, the tools `inspect()`.
   */
  static internals(md: MetadataEngine): MetadataInternals {
    return { core: md.core, cache: md.cache, msm: md.msm, tm: md.tm, dsm: md.dsm, l0: md.l0, l1: md.l1, details: md.details };
  }

  /** The read-only door for check, dump and usage (metadata-inspect.ts). */
  inspect(): MetadataInspection {
    return (this.inspection ??= new MetadataInspection({
      core: this.core,
      cache: this.cache,
      msm: this.msm,
      dsm: this.dsm,
      l0: this.l0,
      l1: this.l1,
      details: this.details,
      superblock: () => this.sb,
      heldSuperblock: () => this.heldSuperblock(),
    }));
  }

  get nrDataBlocks(): number {
    return this.dsm.nrBlocks;
  }

  get needsCheck(): boolean {
    return (this.sb.flags & NEEDS_CHECK) !== 0;
  }

  // ---- changes ----
  protected writable(): void {
    if (this.mode !== 'write') {
      throw new ThinpoolError(
        'EROFS',
        this.needsCheck
          ? 'pool metadata is read-only: needs_check is set (run a check/repair first)'
          : `pool metadata is ${this.mode === 'fail' ? 'failed' : 'read-only'}`,
      );
    }
  }

  allocDataBlock(): number {
    this.writable();
    return this.dsm.alloc();
  }

  dataBlockCount(dblock: number): number {
    return this.dsm.count(dblock);
  }

  /**
   * Drop one reference to a data block that no mapping holds any more (a block allocated for a write that
   * was not mapped, or a copy abandoned); at 0 it is free after the commit.
   */
  releaseDataBlock(dblock: number): void {
    this.writable();
    this.dsm.dec(dblock);
  }

  /** Data blocks whose count fell to 0 since the last call (to release from the data device after the commit). */
  takeFreedDataBlocks(): number[] {
    return this.dsm.takeFreed();
  }

  /** Data blocks with a non-zero count. */
  get dataUsedBlocks(): number {
    return this.dsm.nrAllocated;
  }

  /** Data blocks free now (freed ones included, though reusable only after the commit). */
  get dataFreeBlocks(): number {
    return this.dsm.nrFree;
  }

  /** Data blocks freed in this transaction (reusable after the commit). */
  get dataFreedInTransaction(): number {
    return this.dsm.freedInTransaction;
  }

  /**
   * Run fn, an operation that frees space, allowed to allocate from the metadata reserve kept for such
   * operations and for commits (the kernel's reserve for deleting on a full device).
   */
  usingMetadataReserve<T>(fn: () => T): T {
    this.msm.useReserve++;
    try {
      return fn();
    } finally {
      this.msm.useReserve--;
    }
  }

  /** Metadata blocks kept back from ordinary allocations for commits and freeing operations. */
  get metadataReserve(): number {
    return this.msm.reserve;
  }

  /** Size of the metadata block cache, in 4 KiB blocks. */
  get cacheBlocks(): number {
    return this.cache.slots;
  }

  /** Metadata blocks read from and written to the device so far (cache misses and write-backs). */
  get cacheIo(): { reads: number; writes: number } {
    return { reads: this.cache.reads, writes: this.cache.writes };
  }

  extendData(nrBlocks: number): void {
    this.writable();
    this.dsm.extend(nrBlocks);
  }

  /** Read the held snapshot's superblock (for dump -m and checks). */
  heldSuperblock(): Superblock | null {
    const h = this.sb.heldRoot;
    if (h === 0) return null;
    const a = this.tm.read(h, BlockKind.Superblock);
    return decodeSuperblock(this.core.u8.slice(a, a + 4096), true, h);
  }

  get metadataFreeBlocks(): number {
    return Math.max(0, this.msm.freeBlocks());
  }

  get metadataNrBlocks(): number {
    return this.msm.nrBlocks;
  }

  get metadataUsedBlocks(): number {
    return this.msm.nrAllocated;
  }

  /**
   * Set NEEDS_CHECK in block 0 outside any commit (spec 7.9) and go read-only. Best effort: if the device
   * refuses the write the pool is marked failed.
   */
  setNeedsCheck(): void {
    this.sb.flags |= NEEDS_CHECK;
    this.committedSb.flags |= NEEDS_CHECK;
    this.mode = 'read-only';
    try {
      this.rewriteCommittedSuperblock();
    } catch {
      this.mode = 'fail';
    }
  }

  /** Clear NEEDS_CHECK after a clean check (like thin_check --clear-needs-check-flag). */
  clearNeedsCheck(): void {
    this.sb.flags &= ~NEEDS_CHECK;
    this.committedSb.flags &= ~NEEDS_CHECK;
    this.rewriteCommittedSuperblock();
    this.mode = 'write';
  }

  /** Write the committed superblock again (only its flags changed) and flush: block 0 is the one in-place block. */
  private rewriteCommittedSuperblock(): void {
    const b = sealSuperblockAt(this.core, this.core.scratch, this.committedSb);
    this.dev.write(b, 0);
    this.dev.flush();
  }
}
