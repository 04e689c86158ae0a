/**
 * The metadata space map (spec 4.5, 4.9, 6.1): a reference count for every metadata block.
 *
 * In core, counts live in a u32 array in WASM memory (at most 4,161,600 blocks = 16 MiB) plus one "used in the
 * committed state" flag per block; counting, allocation and the transaction's bookkeeping run in the WASM
 * core (assembly/space-map-metadata.ts), which the btree updates there call directly. This class is the
 * host's door to them and owns the on-disk form: the dm-thin layout of an index block of up to 255 entries,
 * 2-bit bitmaps, and a ref-count btree for counts >= 3. The on-disk form is rewritten only at commit
 * (`prepareCommit`), by shadowing every bitmap whose counts changed, the index block, and rebuilding the
 * ref-count tree when a count >= 3 changed; those allocations are themselves counted, so it loops to a fixed
 * point (each block is shadowed at most once per transaction, so it ends).
 *
 * Allocation rule (4.9): a block is handed out only if its count is 0 now AND it is unused in the committed
 * state, so nothing the last commit can reach is ever overwritten. Search starts at a cursor that survives
 * commits and wraps once.
 */
import type { Core } from '../core/wasm.js';
import { ThinpoolError } from '../errors.js';
import { BlockKind } from './block-kinds.js';
import type { BlockCache } from './block-cache.js';
import {
  ENTRIES_PER_BITMAP,
  S_NR_META,
  S_ALLOCATED,
  S_COMMITTED_ALLOCATED,
  S_TX_ALLOCS,
  S_IN_COMMIT,
  S_USE_RESERVE,
  S_REF_DIRTY,
  S_NR_TOUCHED,
  S_META_DIRTY_BITMAPS,
  TX_NEW,
} from '../core/abi.js';
import { TWO32 } from '../core/u64.js';

export { ENTRIES_PER_BITMAP };
export const MAX_METADATA_BLOCKS = 255 * ENTRIES_PER_BITMAP;
const MAX_INDEX_ENTRIES = 255;

export interface SpaceMapRoot {
  nrBlocks: number;
  nrAllocated: number;
  bitmapRoot: number;
  refCountRoot: number;
}

/** Hooks into the btree layer, which sits above this one (the ref-count tree is an ordinary btree). */
export interface RefTreeCodec {
  /** Every (block, count) entry of the tree at root, calling onNode for each node block; bounded. */
  read(root: number, onEntry: (mblock: number, count: number) => void, onNode: (mblock: number) => void): void;
  /** Build a new tree from sorted entries with blocks from alloc; returns the root. */
  build(entries: Array<[number, number]>): number;
}

export class MetadataSpaceMap {
  private readonly core: Core;
  private readonly counts: Uint32Array;
  private readonly committed: Uint8Array;
  /** Per block: TX_TOUCHED (count changed in this transaction), TX_NEW (allocated in it). */
  private readonly txflags: Uint8Array;
  /** Blocks whose count changed in this transaction (length: the state's S_NR_TOUCHED). */
  private readonly touched: Uint32Array;
  /** Per bitmap: its counts changed in this transaction. */
  private readonly dirtyBitmaps: Uint8Array;
  /** The transaction state page, as u32 words. */
  private readonly st: Uint32Array;
  private bitmapBlocks: number[] = [];
  private bitmapFree: number[] = [];
  private bitmapNfb: number[] = [];
  private indexBlock = -1;
  private refRoot = -1;

  /** `nrBlocks` now; the core's count arrays (its nrMetaBlocks) bound how far `extend` may grow it. */
  constructor(core: Core, nrBlocks: number) {
    if (nrBlocks > core.nrMetaBlocks) throw new ThinpoolError('EINVAL', 'metadata counts area too small');
    const capacity = core.nrMetaBlocks;
    const buf = core.memory.buffer;
    this.core = core;
    this.counts = new Uint32Array(buf, core.countsBase, capacity);
    this.committed = new Uint8Array(buf, core.committedBase, capacity);
    this.txflags = new Uint8Array(buf, core.txflagsBase, capacity);
    this.touched = new Uint32Array(buf, core.touchedBase, capacity);
    this.dirtyBitmaps = new Uint8Array(buf, core.state + S_META_DIRTY_BITMAPS, MAX_INDEX_ENTRIES + 1);
    this.st = new Uint32Array(buf, core.state, 1024);
    this.nrBlocks = nrBlocks;
  }

  get nrBlocks(): number {
    return this.st[S_NR_META >>> 2];
  }

  set nrBlocks(n: number) {
    this.st[S_NR_META >>> 2] = n;
  }

  private get allocated(): number {
    return this.st[S_ALLOCATED >>> 2];
  }

  private set allocated(n: number) {
    this.st[S_ALLOCATED >>> 2] = n;
  }

  private get refDirty(): boolean {
    return this.st[S_REF_DIRTY >>> 2] !== 0;
  }

  private set refDirty(v: boolean) {
    this.st[S_REF_DIRTY >>> 2] = v ? 1 : 0;
  }

  private set inCommit(v: boolean) {
    this.st[S_IN_COMMIT >>> 2] = v ? 1 : 0;
  }

  /** > 0 while an operation that frees space runs: it may allocate from the reserve. */
  get useReserve(): number {
    return this.st[S_USE_RESERVE >>> 2];
  }

  set useReserve(n: number) {
    this.st[S_USE_RESERVE >>> 2] = n;
  }

  /** Blocks kept back from ordinary allocations so a commit can always complete (spec 12). */
  get reserve(): number {
    return this.core.x.smReserve();
  }

  private get nrTouched(): number {
    return this.st[S_NR_TOUCHED >>> 2];
  }

  /** Grow to newNr blocks (spec 7.8): the last bitmap covers more, new bitmaps are created at the commit. */
  extend(newNr: number): void {
    if (newNr < this.nrBlocks) throw new ThinpoolError('EINVAL', `metadata space map cannot shrink (${this.nrBlocks} -> ${newNr})`);
    if (newNr > this.core.nrMetaBlocks || newNr > MAX_METADATA_BLOCKS)
      throw new ThinpoolError('EINVAL', `metadata space map cannot grow to ${newNr} blocks`);
    const oldBitmaps = this.nrBitmaps;
    if (oldBitmaps > 0) this.dirtyBitmaps[oldBitmaps - 1] = 1;
    this.nrBlocks = newNr;
    for (let j = oldBitmaps; j < this.nrBitmaps; j++) {
      this.bitmapBlocks.push(-1);
      this.bitmapFree.push(0);
      this.bitmapNfb.push(0);
      this.dirtyBitmaps[j] = 1;
    }
  }

  get nrBitmaps(): number {
    return Math.ceil(this.nrBlocks / ENTRIES_PER_BITMAP);
  }

  /** A fresh map for format: every bitmap is created at the first commit. */
  initEmpty(): void {
    this.counts.fill(0);
    this.committed.fill(0);
    this.resetTransaction();
    this.bitmapBlocks = new Array(this.nrBitmaps).fill(-1);
    this.bitmapFree = new Array(this.nrBitmaps).fill(0);
    this.bitmapNfb = new Array(this.nrBitmaps).fill(0);
    for (let j = 0; j < this.nrBitmaps; j++) this.dirtyBitmaps[j] = 1;
    this.refDirty = true;
    this.allocated = 0;
    this.st[S_COMMITTED_ALLOCATED >>> 2] = 0;
  }

  /** Forget this transaction's bookkeeping (flags, touched list, dirty bitmaps, counters). */
  private resetTransaction(): void {
    this.txflags.fill(0);
    this.st[S_NR_TOUCHED >>> 2] = 0;
    this.dirtyBitmaps.fill(0);
    this.st[S_TX_ALLOCS >>> 2] = 0;
    this.st[S_IN_COMMIT >>> 2] = 0;
    this.refDirty = false;
  }

  /** Load the committed map from disk (index block, bitmaps, ref-count tree). */
  load(root: SpaceMapRoot, cache: BlockCache, refTree: RefTreeCodec): void {
    if (root.nrBlocks > this.core.nrMetaBlocks) throw new ThinpoolError('EINVAL', 'metadata space map size mismatch');
    this.nrBlocks = root.nrBlocks;
    this.bitmapFree = [];
    this.bitmapNfb = [];
    this.resetTransaction();
    const { x } = this.core;
    this.counts.fill(0);
    this.indexBlock = root.bitmapRoot;
    this.refRoot = root.refCountRoot;
    const n = this.nrBitmaps;
    if (n > MAX_INDEX_ENTRIES) throw new ThinpoolError('EBADSUPER', `metadata space map has ${n} bitmaps (max 255)`);
    const idx = cache.get(root.bitmapRoot, BlockKind.Index);
    const blocks: number[] = [];
    for (let j = 0; j < n; j++) {
      const e = idx + 16 + j * 16;
      blocks.push(this.core.u64(e));
      this.bitmapFree.push(this.core.u32[(e + 8) >>> 2]);
      this.bitmapNfb.push(this.core.u32[(e + 12) >>> 2]);
    }
    this.bitmapBlocks = blocks;
    let allocated = 0;
    for (let j = 0; j < n; j++) {
      const p = cache.get(blocks[j], BlockKind.Bitmap);
      const base = j * ENTRIES_PER_BITMAP;
      const covered = Math.min(ENTRIES_PER_BITMAP, this.nrBlocks - base);
      for (let i = 0; i < covered; i++) {
        const v = x.bitmapGet(p, i);
        if (v) {
          this.counts[base + i] = v;
          allocated++;
        }
      }
    }
    refTree.read(
      root.refCountRoot,
      (b, c) => {
        if (b < this.nrBlocks && this.counts[b] === 3) this.counts[b] = c;
      },
      () => undefined,
    );
    for (let b = 0; b < this.core.nrMetaBlocks; b++) this.committed[b] = this.counts[b] ? 1 : 0;
    this.allocated = allocated;
    this.st[S_COMMITTED_ALLOCATED >>> 2] = allocated;
  }

  isTxNew(b: number): boolean {
    return (this.txflags[b] & TX_NEW) !== 0;
  }

  inc(b: number): void {
    const s = this.core.x.smInc(b >>> 0, Math.floor(b / TWO32));
    if (s !== 0) this.core.throwStatus(s, 'space map');
  }

  /** Decrement; returns the new count. */
  dec(b: number): number {
    const c = this.core.x.smDec(b >>> 0, Math.floor(b / TWO32));
    if (c < 0) this.core.throwStatus(-c, 'space map');
    return c;
  }

  /** Allocate a block with count 1. Ordinary allocations keep `reserve` blocks back for commits. */
  alloc(): number {
    const b = this.core.x.smAlloc();
    if (b < 0) this.core.throwStatus(-b, 'space map');
    return b;
  }

  /** Free metadata blocks as reported to users: committed free, minus this transaction's allocations and the reserve. */
  freeBlocks(): number {
    return this.core.x.smFreeBlocks();
  }

  get nrAllocated(): number {
    return this.allocated;
  }

  /**
   * Write the map's on-disk form for this transaction's counts; returns the root to store in the superblock.
   */
  prepareCommit(cache: BlockCache, refTree: RefTreeCodec): SpaceMapRoot {
    this.inCommit = true;
    try {
      const { x } = this.core;
      if (this.refDirty) {
        const oldNodes: number[] = [];
        if (this.refRoot >= 0)
          refTree.read(
            this.refRoot,
            () => undefined,
            (b) => oldNodes.push(b),
          );
        for (const b of oldNodes) this.dec(b);
        const entries: Array<[number, number]> = [];
        for (let b = 0; b < this.nrBlocks; b++) if (this.counts[b] >= 3) entries.push([b, this.counts[b]]);
        this.refRoot = refTree.build(entries);
        this.refDirty = false;
      }
      for (let round = 0; ; round++) {
        if (round > 2 * MAX_INDEX_ENTRIES + 4) throw new ThinpoolError('EFAILED', 'space map commit did not converge');
        let moved = false;
        for (let j = 0; j < this.nrBitmaps; j++) {
          if (!this.dirtyBitmaps[j]) continue;
          const old = this.bitmapBlocks[j];
          if (old >= 0 && this.isTxNew(old)) continue;
          const nb = this.alloc();
          if (old >= 0) this.dec(old);
          this.bitmapBlocks[j] = nb;
          cache.create(nb, BlockKind.Bitmap);
          moved = true;
        }
        if (this.indexBlock < 0 || !this.isTxNew(this.indexBlock)) {
          const nb = this.alloc();
          if (this.indexBlock >= 0) this.dec(this.indexBlock);
          this.indexBlock = nb;
          cache.create(nb, BlockKind.Index);
          moved = true;
        }
        if (!moved) break;
      }
      for (let j = 0; j < this.nrBitmaps; j++) {
        if (!this.dirtyBitmaps[j]) continue;
        const b = this.bitmapBlocks[j];
        const p = cache.get(b, BlockKind.Bitmap);
        cache.markDirty(b, BlockKind.Bitmap);
        const base = j * ENTRIES_PER_BITMAP;
        const covered = Math.min(ENTRIES_PER_BITMAP, this.nrBlocks - base);
        x.bitmapFillFromCounts(p, this.core.countsBase, base, covered);
        this.core.setU64(p + 8, b);
        const free = x.bitmapCountFree(p, covered);
        const nfb = free === 0 ? covered : x.bitmapFindFree(p, p, 0, covered);
        this.bitmapFree[j] = free;
        this.bitmapNfb[j] = nfb;
      }
      const idx = cache.get(this.indexBlock, BlockKind.Index);
      cache.markDirty(this.indexBlock, BlockKind.Index);
      this.core.u8.fill(0, idx, idx + 4096);
      this.core.setU64(idx + 8, this.indexBlock);
      for (let j = 0; j < this.nrBitmaps; j++) {
        const e = idx + 16 + j * 16;
        this.core.setU64(e, this.bitmapBlocks[j]);
        this.core.u32[(e + 8) >>> 2] = this.bitmapFree[j];
        this.core.u32[(e + 12) >>> 2] = this.bitmapNfb[j];
      }
      return { nrBlocks: this.nrBlocks, nrAllocated: this.allocated, bitmapRoot: this.indexBlock, refCountRoot: this.refRoot };
    } finally {
      this.inCommit = false;
    }
  }

  /** The commit landed: this transaction's counts become the committed state. */
  afterCommit(): void {
    const n = this.nrTouched;
    for (let i = 0; i < n; i++) {
      const b = this.touched[i];
      this.committed[b] = this.counts[b] ? 1 : 0;
      this.txflags[b] = 0;
    }
    this.st[S_NR_TOUCHED >>> 2] = 0;
    this.dirtyBitmaps.fill(0);
    this.st[S_COMMITTED_ALLOCATED >>> 2] = this.allocated;
    this.st[S_TX_ALLOCS >>> 2] = 0;
  }

  /** True when nothing changed since the last commit. */
  get clean(): boolean {
    return this.nrTouched === 0;
  }

  /** Every block with a non-zero count (for the checker). */
  countOf(b: number): number {
    return this.counts[b];
  }
}
