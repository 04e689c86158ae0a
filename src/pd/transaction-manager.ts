/**
 * The transaction manager: the one gate for writable metadata blocks (dm-transaction-manager.h).
 *
 * Contract:
 * - A block reachable from the committed superblock is never written: `shadowNode`/`shadowBlock` return a
 *   writable copy in a newly allocated block unless the block was allocated in this transaction and its count
 *   is <= 1, in which case it is modified in place (spec 6.3).
 * - Shadowing a shared node (count > 1 before the copy) increments everything it points to: child nodes for
 *   internal nodes, and for leaves what the caller's `incValue` says the values reference.
 * - `newNode`/`newBlock` allocate a block (count 1) and return a zeroed slot; nothing else creates writable
 *   blocks. The superblock is written by the thin-metadata commit alone.
 */
import type { Core } from '../core/wasm.js';
import type { BlockCache } from './block-cache.js';
import type { MetadataSpaceMap } from './space-map-metadata.js';
import { BlockKind } from './block-kinds.js';

export const INTERNAL = 1;
export const LEAF = 2;

export interface Shadowed {
  block: number;
  addr: number;
}

export class TransactionManager {
  readonly core: Core;
  readonly cache: BlockCache;
  readonly sm: MetadataSpaceMap;

  constructor(core: Core, cache: BlockCache, sm: MetadataSpaceMap) {
    this.core = core;
    this.cache = cache;
    this.sm = sm;
  }

  read(mblock: number, kind: BlockKind, leafVs = 0): number {
    return this.cache.get(mblock, kind, leafVs);
  }

  newBlock(kind: BlockKind): Shadowed {
    const block = this.sm.alloc();
    return { block, addr: this.cache.create(block, kind) };
  }

  /** A new, empty node; `leafVs` is the leaf value size of its tree (defaults to the node's own). */
  newNode(flags: number, valueSize: number, leafVs = valueSize): Shadowed {
    const block = this.sm.alloc();
    const s = { block, addr: this.cache.create(block, BlockKind.Node, leafVs) };
    this.core.x.nodeInit(s.addr, s.block >>> 0, Math.floor(s.block / 4294967296), flags, valueSize);
    return s;
  }

  /**
   * Writable version of node `mblock`. `incValue` is called with each leaf value's first 8 bytes (lo, hi) when a
   * shared leaf is copied.
   */
  shadowNode(mblock: number, leafVs: number, incValue?: (lo: number, hi: number) => void): Shadowed {
    const { core, sm, cache } = this;
    if (sm.isTxNew(mblock) && sm.count(mblock) <= 1) {
      const addr = cache.get(mblock, BlockKind.Node, leafVs);
      cache.markDirty(mblock, BlockKind.Node, leafVs);
      return { block: mblock, addr };
    }
    const old = cache.get(mblock, BlockKind.Node, leafVs);
    const shared = sm.count(mblock) > 1;
    const block = sm.alloc();
    const addr = cache.create(block, BlockKind.Node, leafVs);
    core.u8.copyWithin(addr, old, old + 4096);
    core.setU64(addr + 8, block);
    sm.dec(mblock);
    if (shared) this.incChildren(addr, incValue);
    return { block, addr };
  }

  /** Increment everything a node points to (collected first: increments may move cache slots). */
  private incChildren(addr: number, incValue?: (lo: number, hi: number) => void): void {
    const { core } = this;
    const n = core.u32[(addr + 16) >>> 2];
    const max = core.u32[(addr + 20) >>> 2];
    const vs = core.u32[(addr + 24) >>> 2];
    const internal = core.u32[(addr + 4) >>> 2] === INTERNAL;
    if (!internal && !incValue) return;
    const vals = new Float64Array(2 * n);
    for (let i = 0; i < n; i++) {
      const v = addr + 32 + 8 * max + vs * i;
      vals[2 * i] = core.u32[v >>> 2];
      vals[2 * i + 1] = core.u32[(v >>> 2) + 1];
    }
    for (let i = 0; i < n; i++) {
      if (internal) this.sm.inc(vals[2 * i] + vals[2 * i + 1] * 4294967296);
      else incValue!(vals[2 * i], vals[2 * i + 1]);
    }
  }

  /** Writable version of a non-node block (a space-map bitmap); such blocks have exactly one reference. */
  shadowBlock(mblock: number, kind: BlockKind): Shadowed {
    const { core, sm, cache } = this;
    if (sm.isTxNew(mblock) && sm.count(mblock) <= 1) {
      const addr = cache.get(mblock, kind);
      cache.markDirty(mblock, kind);
      return { block: mblock, addr };
    }
    const old = cache.get(mblock, kind);
    const block = sm.alloc();
    const addr = cache.create(block, kind);
    core.u8.copyWithin(addr, old, old + 4096);
    core.setU64(addr + 8, block);
    sm.dec(mblock);
    return { block, addr };
  }

  /** Drop a reference without recursion; a block reaching 0 leaves the cache. Returns the new count. */
  dec(mblock: number): number {
    const c = this.sm.dec(mblock);
    if (c === 0) this.cache.forget(mblock);
    return c;
  }

  inc(mblock: number): void {
    this.sm.inc(mblock);
  }
}
