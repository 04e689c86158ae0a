/**
 * The data space map (spec 4.6, dm-space-map-disk.c): a reference count per data block, kept on disk as
 * 2-bit bitmaps indexed by a btree of 16-byte index entries, with counts >= 3 in a ref-count btree.
 *
 * The counts, the allocator and the per-bitmap summary (current and committed bitmap block, free count,
 * first-free hint) live in the WASM core (assembly/space-map-data.ts), where the btree updates that add and
 * drop data references run. This class is the host's door to it: it loads the summary from the index tree on
 * open, writes the dirty index entries at commit, and collects the blocks freed in the transaction.
 *
 * Contract (enforced in the core):
 * - Counts change in the current transaction's copies of the bitmaps (shadowed through the transaction
 *   manager); the committed bitmaps stay readable, and `alloc` hands out a block only when it is free both now
 *   and in the committed state (a block freed in this transaction is never reused before the commit).
 * - Freed blocks count as free at once in `nrFree` (what the kernel reports), though reusable only later.
 */
import type { Core } from '../core/wasm.js';
import {
  DSM_ENTRY_BYTES,
  DSM_E_BLOCK,
  DSM_E_DIRTY,
  DSM_E_FREE,
  DSM_E_HINT,
  S_D_ALLOCATED,
  S_D_CHANGED,
  S_D_NR_BITMAPS,
  S_D_NR_BLOCKS,
  S_D_PENDING_FREE,
  S_D_REF_ROOT,
} from '../core/abi.js';
import { ThinpoolError } from '../errors.js';
import type { BTree } from './btree.js';
import type { TransactionManager } from './transaction-manager.js';
import type { SpaceMapRoot } from './space-map-metadata.js';
import type { IndexEntry } from './value-types.js';
import { TWO32 } from '../core/u64.js';

export class DataSpaceMap {
  private readonly tm: TransactionManager;
  private readonly core: Core;
  private readonly indexTree: BTree<IndexEntry>;
  private readonly refTree: BTree<number>;
  private indexRoot = 0;
  /** Blocks whose count fell to 0 in this transaction (discard passdown candidates once committed). */
  private freed: number[] = [];

  constructor(tm: TransactionManager, indexTree: BTree<IndexEntry>, refTree: BTree<number>) {
    this.tm = tm;
    this.core = tm.core;
    this.indexTree = indexTree;
    this.refTree = refTree;
    this.core.host.dataFreed = (lo, hi) => {
      this.freed.push(lo + hi * TWO32);
    };
  }

  private run(status: number, structure = 'data space map'): void {
    if (status !== 0) this.core.throwStatus(status, structure);
  }

  /** A new, empty map of nrBlocks (bitmaps and trees allocated in the current transaction). */
  format(nrBlocks: number): void {
    this.indexRoot = this.indexTree.emptyRoot();
    const refRoot = this.refTree.emptyRoot();
    const n = this.core.x.dsmLoad(0, 0, refRoot >>> 0, Math.floor(refRoot / TWO32));
    if (n < 0) this.core.throwStatus(-n, 'data space map');
    this.freed = [];
    this.extend(nrBlocks);
  }

  /** Grow to nrBlocks: new zeroed bitmaps, each counted once in the metadata map (spec 7.8). */
  extend(nrBlocks: number): void {
    this.tm.cache.op(() => this.run(this.core.x.dsmExtend(nrBlocks >>> 0, Math.floor(nrBlocks / TWO32))));
  }

  load(root: SpaceMapRoot): void {
    const { core } = this;
    this.freed = [];
    this.indexRoot = root.bitmapRoot;
    const n = core.x.dsmLoad(
      root.nrBlocks >>> 0,
      Math.floor(root.nrBlocks / TWO32),
      root.refCountRoot >>> 0,
      Math.floor(root.refCountRoot / TWO32),
    );
    if (n < 0) {
      // The only failure: more bitmaps than the metadata device has blocks, so the count itself is corrupt.
      throw ThinpoolError.metadata(
        'ECORRUPT',
        `data space map of ${root.nrBlocks} blocks needs more bitmaps than the metadata device has blocks`,
        'superblock',
        0,
      );
    }
    let j = 0;
    this.indexTree.walk(this.indexRoot, (key, entry) => {
      if (key !== j) {
        throw ThinpoolError.metadata('ECORRUPT', `data space map index is missing bitmap ${j}`, 'data space map index', this.indexRoot);
      }
      if (j >= n) {
        throw ThinpoolError.metadata(
          'ECORRUPT',
          `data space map index has more than the ${n} bitmaps ${root.nrBlocks} blocks need`,
          'data space map index',
          this.indexRoot,
        );
      }
      const b = entry.block;
      this.tm.cache.op(() => this.run(core.x.dsmLoadBitmap(j, b >>> 0, Math.floor(b / TWO32)), 'data space map bitmap'));
      j++;
    });
    if (j !== n) {
      throw ThinpoolError.metadata(
        'ECORRUPT',
        `data space map index has ${j} bitmaps, expected ${n}`,
        'data space map index',
        this.indexRoot,
      );
    }
  }

  count(d: number): number {
    const c = this.tm.cache.op(() => this.core.x.dsmCount(d >>> 0, Math.floor(d / TWO32)));
    if (c < 0) this.core.throwStatus(-c, 'data space map');
    return c;
  }

  /**
   * count() of blocks[0..n) into out[0..n) (for walks over many mappings). One cache operation per block, as
   * count() (an operation pins every block it touches until it returns, so one for a whole batch could pin
   * more bitmaps than the cache holds), through one closure made once, not one per block.
   */
  counts(blocks: Float64Array, n: number, out: Uint32Array): void {
    const x = this.core.x;
    let d = 0;
    const one = (): number => x.dsmCount(d >>> 0, Math.floor(d / TWO32));
    for (let i = 0; i < n; i++) {
      d = blocks[i];
      const c = this.tm.cache.op(one);
      if (c < 0) this.core.throwStatus(-c, 'data space map');
      out[i] = c;
    }
  }

  inc(d: number): void {
    this.tm.cache.op(() => this.run(this.core.x.dsmInc(d >>> 0, Math.floor(d / TWO32))));
  }

  dec(d: number): number {
    const c = this.tm.cache.op(() => this.core.x.dsmDec(d >>> 0, Math.floor(d / TWO32)));
    if (c < 0) this.core.throwStatus(-c, 'data space map');
    return c;
  }

  /** Allocate a data block with count 1, or throw ENOSPC_DATA. */
  alloc(): number {
    this.tm.cache.op(() => this.run(this.core.x.dsmAlloc()));
    return this.core.result;
  }

  get nrBlocks(): number {
    return this.core.u64(this.core.state + S_D_NR_BLOCKS);
  }

  get nrAllocated(): number {
    return this.core.u64(this.core.state + S_D_ALLOCATED);
  }

  get nrFree(): number {
    return this.nrBlocks - this.nrAllocated;
  }

  /** Blocks freed since the last commit that can only be reused after it. */
  get freedInTransaction(): number {
    return this.core.u64(this.core.state + S_D_PENDING_FREE);
  }

  /** Write the index entries of the bitmaps changed in this transaction; the roots for the superblock. */
  prepareCommit(): SpaceMapRoot {
    const { core } = this;
    const n = core.u32[(core.state + S_D_NR_BITMAPS) >>> 2];
    for (let j = 0; j < n; j++) {
      const e = core.dsmTableBase + j * DSM_ENTRY_BYTES;
      if (core.u8[e + DSM_E_DIRTY] === 0) continue;
      this.indexRoot = this.indexTree.insert(this.indexRoot, j, {
        block: core.u32[(e + DSM_E_BLOCK) >>> 2],
        nrFree: core.dv.getUint16(e + DSM_E_FREE, true),
        noneFreeBefore: core.dv.getUint16(e + DSM_E_HINT, true),
      }).root;
    }
    return {
      nrBlocks: this.nrBlocks,
      nrAllocated: this.nrAllocated,
      bitmapRoot: this.indexRoot,
      refCountRoot: core.u64(core.state + S_D_REF_ROOT),
    };
  }

  afterCommit(): void {
    this.core.x.dsmAfterCommit();
  }

  /** Blocks freed since the last call (to release from the data device after the commit that freed them). */
  takeFreed(): number[] {
    const f = this.freed;
    this.freed = [];
    return f;
  }

  get changed(): boolean {
    return this.core.u32[(this.core.state + S_D_CHANGED) >>> 2] !== 0;
  }
}
