/**
 * The data space map (spec 4.6, dm-space-map-disk.c): a reference count per data block, kept on disk as
 * 2-bit bitmaps indexed by a btree of 16-byte index entries, with counts >= 3 in a ref-count btree.
 *
 * Contract:
 * - Counts change in the current transaction's copies of the bitmaps (shadowed through the transaction
 *   manager); the committed bitmaps stay readable, and `alloc` hands out a block only when it is free both now
 *   and in the committed state (a block freed in this transaction is never reused before the commit).
 * - Index entries are cached in memory and written into the index tree by `prepareCommit`.
 * - Freed blocks count as free at once in `nrFree` (what the kernel reports), though reusable only later.
 */
import type { Core } from '../core/wasm.js';
import { ThinpoolError } from '../errors.js';
import { BlockKind } from './block-kinds.js';
import type { BTree } from './btree.js';
import type { TransactionManager } from './transaction-manager.js';
import { ENTRIES_PER_BITMAP, type SpaceMapRoot } from './space-map-metadata.js';

export class DataSpaceMap {
  private readonly tm: TransactionManager;
  private readonly core: Core;
  private readonly indexTree: BTree;
  private readonly refTree: BTree;
  nrBlocks = 0;
  private allocated = 0;
  private committedAllocated = 0;
  private block: number[] = [];
  private committedBlock: number[] = [];
  private nrFreeOf: number[] = [];
  private nfb: number[] = [];
  private readonly dirty = new Set<number>();
  private indexRoot = 0;
  private refRoot = 0;
  private cursor = 0;
  /** Blocks freed in this transaction that the committed state still uses (reusable after the commit). */
  private pendingFree = 0;
  /** Blocks whose count fell to 0 in this transaction (discard passdown candidates once committed). */
  private freed: number[] = [];

  constructor(tm: TransactionManager, indexTree: BTree, refTree: BTree) {
    this.tm = tm;
    this.core = tm.core;
    this.indexTree = indexTree;
    this.refTree = refTree;
  }

  /** A new, empty map of nrBlocks (bitmaps and trees allocated in the current transaction). */
  format(nrBlocks: number): void {
    this.nrBlocks = 0;
    this.indexRoot = this.indexTree.emptyRoot();
    this.refRoot = this.refTree.emptyRoot();
    this.extend(nrBlocks);
  }

  /** Grow to nrBlocks: new zeroed bitmaps, each counted once in the metadata map (spec 7.8). */
  extend(nrBlocks: number): void {
    if (nrBlocks < this.nrBlocks) throw new ThinpoolError('EINVAL', `data space map cannot shrink (${this.nrBlocks} -> ${nrBlocks})`);
    const oldBitmaps = this.block.length;
    const n = Math.ceil(nrBlocks / ENTRIES_PER_BITMAP);
    for (let j = oldBitmaps; j < n; j++) {
      const s = this.tm.newBlock(BlockKind.Bitmap);
      this.core.setU64(s.addr + 8, s.block);
      this.block.push(s.block);
      this.committedBlock.push(-1);
      this.nrFreeOf.push(0);
      this.nfb.push(0);
    }
    const prev = this.nrBlocks;
    this.nrBlocks = nrBlocks;
    for (let j = Math.floor(prev / ENTRIES_PER_BITMAP); j < n; j++) {
      const covered = this.covered(j);
      const before = j < oldBitmaps ? Math.min(ENTRIES_PER_BITMAP, prev - j * ENTRIES_PER_BITMAP) : 0;
      this.nrFreeOf[j] += covered - before;
      if (this.nrFreeOf[j] > 0 && this.nfb[j] >= before) this.nfb[j] = Math.min(this.nfb[j], before);
      this.dirty.add(j);
    }
  }

  private covered(j: number): number {
    return Math.min(ENTRIES_PER_BITMAP, this.nrBlocks - j * ENTRIES_PER_BITMAP);
  }

  load(root: SpaceMapRoot): void {
    this.freed = [];
    this.pendingFree = 0;
    this.dirty.clear();
    this.nrBlocks = root.nrBlocks;
    this.indexRoot = root.bitmapRoot;
    this.refRoot = root.refCountRoot;
    this.block = [];
    this.nrFreeOf = [];
    this.nfb = [];
    const n = Math.ceil(this.nrBlocks / ENTRIES_PER_BITMAP);
    this.indexTree.walk(this.indexRoot, (key, v) => {
      if (key !== this.block.length) {
        throw ThinpoolError.metadata('ECORRUPT', `data space map index is missing bitmap ${this.block.length}`, 'data space map index', this.indexRoot);
      }
      this.block.push(this.core.u64(v));
    });
    if (this.block.length !== n) {
      throw ThinpoolError.metadata('ECORRUPT', `data space map index has ${this.block.length} bitmaps, expected ${n}`, 'data space map index', this.indexRoot);
    }
    // Hints are recomputed from the bitmaps: the stored ones may be stale (thin_restore, spec 4.8).
    let allocated = 0;
    for (let j = 0; j < n; j++) {
      const p = this.tm.read(this.block[j], BlockKind.Bitmap);
      const covered = this.covered(j);
      const free = this.core.x.bitmapCountFree(p, covered);
      this.nrFreeOf.push(free);
      this.nfb.push(free === 0 ? covered : this.core.x.bitmapFindFree(p, p, 0, covered));
      allocated += covered - free;
    }
    this.committedBlock = this.block.slice();
    this.allocated = allocated;
    this.committedAllocated = allocated;
  }

  count(d: number): number {
    this.check(d);
    const j = Math.floor(d / ENTRIES_PER_BITMAP);
    const v = this.core.x.bitmapGet(this.tm.read(this.block[j], BlockKind.Bitmap), d % ENTRIES_PER_BITMAP);
    if (v < 3) return v;
    const a = this.refTree.lookup(this.refRoot, d);
    if (a === 0) throw ThinpoolError.metadata('ECORRUPT', `data block ${d} has bitmap value 3 but no ref-count entry`, 'data ref-count tree', this.refRoot);
    return this.core.u32[a >>> 2];
  }

  private check(d: number): void {
    if (!(d >= 0 && d < this.nrBlocks)) {
      throw new ThinpoolError('ECORRUPT', `data block ${d} beyond the data device (${this.nrBlocks} blocks)`);
    }
  }

  private set(d: number, old: number, c: number): void {
    const j = Math.floor(d / ENTRIES_PER_BITMAP);
    const i = d % ENTRIES_PER_BITMAP;
    if (c >= 3) {
      this.core.u32[this.core.param >>> 2] = c;
      this.refRoot = this.refTree.insert(this.refRoot, d).root;
    } else if (old >= 3) {
      this.refRoot = this.refTree.remove(this.refRoot, d).root;
    }
    if (Math.min(old, 3) !== Math.min(c, 3)) {
      const s = this.tm.shadowBlock(this.block[j], BlockKind.Bitmap);
      this.block[j] = s.block;
      this.core.x.bitmapSet(s.addr, i, Math.min(c, 3));
      this.dirty.add(j);
    }
    if (old === 0 && c > 0) {
      this.allocated++;
      this.nrFreeOf[j]--;
      if (this.nfb[j] === i) this.nfb[j] = i + 1;
      this.dirty.add(j);
    } else if (old > 0 && c === 0) {
      this.allocated--;
      this.nrFreeOf[j]++;
      this.nfb[j] = Math.min(this.nfb[j], i);
      if (this.committedBlock[j] >= 0) this.pendingFree++;
      this.freed.push(d);
      this.dirty.add(j);
    }
  }

  inc(d: number): void {
    const old = this.count(d);
    this.set(d, old, old + 1);
  }

  dec(d: number): number {
    const old = this.count(d);
    if (old === 0) throw new ThinpoolError('ECORRUPT', `data block ${d} reference count underflow`);
    this.set(d, old, old - 1);
    return old - 1;
  }

  /** Allocate a data block with count 1, or throw ENOSPC_DATA. */
  alloc(): number {
    const n = this.block.length;
    if (n === 0) throw new ThinpoolError('ENOSPC_DATA', 'out of data space (the pool has no data blocks)');
    const startJ = Math.floor(this.cursor / ENTRIES_PER_BITMAP) % n;
    for (let step = 0; step <= n; step++) {
      const j = (startJ + step) % n;
      if (this.nrFreeOf[j] === 0) continue;
      const covered = this.covered(j);
      let from = this.nfb[j];
      if (step === 0 && j === startJ) from = Math.max(from, this.cursor % ENTRIES_PER_BITMAP);
      if (step === n) from = this.nfb[j];
      const i = this.tm.cache.op(() => {
        const cur = this.tm.read(this.block[j], BlockKind.Bitmap);
        const cb = this.committedBlock[j];
        const com = cb < 0 || cb === this.block[j] ? cur : this.tm.read(cb, BlockKind.Bitmap);
        return this.core.x.bitmapFindFree(cur, com, from, covered);
      });
      if (i < 0) continue;
      const d = j * ENTRIES_PER_BITMAP + i;
      this.set(d, 0, 1);
      this.cursor = d + 1 >= this.nrBlocks ? 0 : d + 1;
      return d;
    }
    throw new ThinpoolError('ENOSPC_DATA', `out of data space (${this.nrBlocks} blocks in use or freed in this transaction)`);
  }

  get nrAllocated(): number {
    return this.allocated;
  }

  get nrFree(): number {
    return this.nrBlocks - this.allocated;
  }

  /** Blocks freed since the last commit that can only be reused after it. */
  get freedInTransaction(): number {
    return this.pendingFree;
  }

  prepareCommit(): SpaceMapRoot {
    const { core } = this;
    for (const j of [...this.dirty].sort((a, b) => a - b)) {
      core.setU64(core.param, this.block[j]);
      core.u32[(core.param + 8) >>> 2] = this.nrFreeOf[j];
      core.u32[(core.param + 12) >>> 2] = this.nfb[j];
      this.indexRoot = this.indexTree.insert(this.indexRoot, j).root;
    }
    return { nrBlocks: this.nrBlocks, nrAllocated: this.allocated, bitmapRoot: this.indexRoot, refCountRoot: this.refRoot };
  }

  afterCommit(): void {
    this.committedBlock = this.block.slice();
    this.dirty.clear();
    this.committedAllocated = this.allocated;
    this.pendingFree = 0;
  }

  /** Blocks freed since the last call (to release from the data device after the commit that freed them). */
  takeFreed(): number[] {
    const f = this.freed;
    this.freed = [];
    return f;
  }

  get changed(): boolean {
    return this.dirty.size > 0;
  }
}
