/**
 * The metadata space map (spec 4.5, 4.9, 6.1): a reference count for every metadata block.
 *
 * In core, counts live in a u32 array in WASM memory (at most 4,161,600 blocks = 16 MiB) plus one "used in the
 * committed state" flag per block. On disk it is the dm-thin layout: an index block of up to 255 entries, 2-bit
 * bitmaps, and a ref-count btree for counts >= 3. The on-disk form is rewritten only at commit
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

export const ENTRIES_PER_BITMAP = 16320;
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
  nrBlocks: number;
  private readonly core: Core;
  private readonly counts: Uint32Array;
  private readonly committed: Uint8Array;
  /** Blocks allocated in this transaction (the transaction manager's in-place rule). */
  private readonly txNew: Uint8Array;
  private readonly txNewList: number[] = [];
  private readonly touched: number[] = [];
  private readonly touchedFlag: Uint8Array;
  private readonly dirtyBitmaps = new Set<number>();
  private bitmapBlocks: number[] = [];
  private bitmapFree: number[] = [];
  private bitmapNfb: number[] = [];
  private indexBlock = -1;
  private refRoot = -1;
  private refDirty = false;
  private cursor = 0;
  private allocated = 0;
  private committedAllocated = 0;
  /** Allocations in this transaction (for reported free space). */
  private txAllocs = 0;
  /** Blocks kept back from ordinary allocations so a commit can always complete (spec 12). */
  get reserve(): number {
    return Math.min(4096, Math.max(8, Math.floor(this.nrBlocks / 10)));
  }
  private inCommit = false;
  /** > 0 while an operation that frees space runs: it may allocate from the reserve. */
  useReserve = 0;

  /** `nrBlocks` now; the core's count arrays (its nrMetaBlocks) bound how far `extend` may grow it. */
  constructor(core: Core, nrBlocks: number) {
    if (nrBlocks > core.nrMetaBlocks) throw new ThinpoolError('EINVAL', 'metadata counts area too small');
    const capacity = core.nrMetaBlocks;
    this.core = core;
    this.nrBlocks = nrBlocks;
    this.counts = new Uint32Array(core.memory.buffer, core.countsBase, capacity);
    this.committed = new Uint8Array(core.memory.buffer, core.committedBase, capacity);
    this.txNew = new Uint8Array(capacity);
    this.touchedFlag = new Uint8Array(capacity);
  }

  /** Grow to newNr blocks (spec 7.8): the last bitmap covers more, new bitmaps are created at the commit. */
  extend(newNr: number): void {
    if (newNr < this.nrBlocks) throw new ThinpoolError('EINVAL', `metadata space map cannot shrink (${this.nrBlocks} -> ${newNr})`);
    if (newNr > this.core.nrMetaBlocks || newNr > MAX_METADATA_BLOCKS) throw new ThinpoolError('EINVAL', `metadata space map cannot grow to ${newNr} blocks`);
    const oldBitmaps = this.nrBitmaps;
    if (oldBitmaps > 0) this.dirtyBitmaps.add(oldBitmaps - 1);
    this.nrBlocks = newNr;
    for (let j = oldBitmaps; j < this.nrBitmaps; j++) {
      this.bitmapBlocks.push(-1);
      this.bitmapFree.push(0);
      this.bitmapNfb.push(0);
      this.dirtyBitmaps.add(j);
    }
  }

  get nrBitmaps(): number {
    return Math.ceil(this.nrBlocks / ENTRIES_PER_BITMAP);
  }

  /** A fresh map for format: every bitmap is created at the first commit. */
  initEmpty(): void {
    this.counts.fill(0);
    this.committed.fill(0);
    this.bitmapBlocks = new Array(this.nrBitmaps).fill(-1);
    this.bitmapFree = new Array(this.nrBitmaps).fill(0);
    this.bitmapNfb = new Array(this.nrBitmaps).fill(0);
    for (let j = 0; j < this.nrBitmaps; j++) this.dirtyBitmaps.add(j);
    this.refDirty = true;
    this.allocated = 0;
    this.committedAllocated = 0;
  }

  /** Load the committed map from disk (index block, bitmaps, ref-count tree). */
  load(root: SpaceMapRoot, cache: BlockCache, refTree: RefTreeCodec): void {
    if (root.nrBlocks > this.core.nrMetaBlocks) throw new ThinpoolError('EINVAL', 'metadata space map size mismatch');
    this.nrBlocks = root.nrBlocks;
    this.bitmapFree = [];
    this.bitmapNfb = [];
    this.dirtyBitmaps.clear();
    this.refDirty = false;
    const { x } = this.core;
    this.counts.fill(0);
    this.txNew.fill(0);
    this.txNewList.length = 0;
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
    this.committedAllocated = allocated;
  }

  count(b: number): number {
    return this.counts[b];
  }

  isTxNew(b: number): boolean {
    return this.txNew[b] === 1;
  }

  private change(b: number, c: number): void {
    if (!(b >= 0 && b < this.nrBlocks)) {
      throw ThinpoolError.metadata('EBADBLOCKNR', `reference to block ${b} beyond the metadata device`, 'space map', b);
    }
    const old = this.counts[b];
    if (old >= 3 || c >= 3) this.refDirty = true;
    if (old === 0 && c > 0) this.allocated++;
    if (old > 0 && c === 0) this.allocated--;
    this.counts[b] = c;
    this.dirtyBitmaps.add(Math.floor(b / ENTRIES_PER_BITMAP));
    if (!this.touchedFlag[b]) {
      this.touchedFlag[b] = 1;
      this.touched.push(b);
    }
  }

  inc(b: number): void {
    this.change(b, this.counts[b] + 1);
  }

  /** Decrement; returns the new count. */
  dec(b: number): number {
    const c = this.counts[b];
    if (c === 0) throw ThinpoolError.metadata('ECORRUPT', 'reference count underflow', 'space map', b);
    this.change(b, c - 1);
    return c - 1;
  }

  /** Allocate a block with count 1. Ordinary allocations keep `reserve` blocks back for commits. */
  alloc(): number {
    if (!this.inCommit && this.useReserve === 0 && this.freeBlocks() <= 0) {
      throw new ThinpoolError('ENOSPC_METADATA', `out of metadata space (${this.nrBlocks} blocks, ${this.reserve} reserved)`);
    }
    const { x } = this.core;
    const cb = this.core.countsBase;
    const mb = this.core.committedBase;
    let b = x.countsFindFree(cb, mb, this.cursor, this.nrBlocks);
    if (b < 0) b = x.countsFindFree(cb, mb, 0, this.cursor);
    if (b < 0) throw new ThinpoolError('ENOSPC_METADATA', `out of metadata space (${this.nrBlocks} blocks)`);
    this.cursor = b + 1 >= this.nrBlocks ? 0 : b + 1;
    this.change(b, 1);
    this.txNew[b] = 1;
    this.txNewList.push(b);
    this.txAllocs++;
    return b;
  }

  /** Free metadata blocks as reported to users: committed free, minus this transaction's allocations and the reserve. */
  freeBlocks(): number {
    return this.nrBlocks - this.committedAllocated - this.txAllocs - this.reserve;
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
        if (this.refRoot >= 0) refTree.read(this.refRoot, () => undefined, (b) => oldNodes.push(b));
        for (const b of oldNodes) this.dec(b);
        const entries: Array<[number, number]> = [];
        for (let b = 0; b < this.nrBlocks; b++) if (this.counts[b] >= 3) entries.push([b, this.counts[b]]);
        this.refRoot = refTree.build(entries);
        this.refDirty = false;
      }
      for (let round = 0; ; round++) {
        if (round > 2 * MAX_INDEX_ENTRIES + 4) throw new ThinpoolError('EFAILED', 'space map commit did not converge');
        let moved = false;
        for (const j of [...this.dirtyBitmaps]) {
          const old = this.bitmapBlocks[j];
          if (old >= 0 && this.txNew[old]) continue;
          const nb = this.alloc();
          if (old >= 0) this.dec(old);
          this.bitmapBlocks[j] = nb;
          cache.create(nb, BlockKind.Bitmap);
          moved = true;
        }
        if (this.indexBlock < 0 || !this.txNew[this.indexBlock]) {
          const nb = this.alloc();
          if (this.indexBlock >= 0) this.dec(this.indexBlock);
          this.indexBlock = nb;
          cache.create(nb, BlockKind.Index);
          moved = true;
        }
        if (!moved) break;
      }
      for (const j of this.dirtyBitmaps) {
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
    for (const b of this.touched) {
      this.committed[b] = this.counts[b] ? 1 : 0;
      this.touchedFlag[b] = 0;
    }
    this.touched.length = 0;
    for (const b of this.txNewList) this.txNew[b] = 0;
    this.txNewList.length = 0;
    this.dirtyBitmaps.clear();
    this.committedAllocated = this.allocated;
    this.txAllocs = 0;
  }

  /** True when nothing changed since the last commit. */
  get clean(): boolean {
    return this.touched.length === 0;
  }

  /** Every block with a non-zero count (for the checker). */
  countOf(b: number): number {
    return this.counts[b];
  }
}
