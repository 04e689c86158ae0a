/**
 * The transaction manager: the one gate for writable metadata blocks (dm-transaction-manager.h). The rules
 * live in the WASM core (assembly/transaction-manager.ts): shadowing, where a block reachable from the committed
 * superblock is never written (spec 6.3), runs there, inside the btree and space-map updates that need it. This
 * class is the host's door to the same code for the blocks the host itself builds (bulk-built trees, the
 * metadata snapshot's superblock copy) and for references it adds or drops directly.
 *
 * Contract:
 * - `newNode`/`newBlock` allocate a block (count 1) and return a zeroed slot; nothing else on the host side
 *   creates writable blocks (the metadata space map's commit-time bitmaps and index are created through the
 *   cache by that map, from blocks it allocates itself). The superblock is written by the thin-metadata commit
 *   alone.
 * - Returned addresses stay valid until the next cache call (or the end of the enclosing cache op).
 */
import type { Core } from '../core/wasm.js';
import type { BlockCache } from './block-cache.js';
import type { MetadataSpaceMap } from './space-map-metadata.js';
import type { BlockKind } from './block-kinds.js';
import { TWO32 } from '../core/u64.js';

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

  private shadowed(r: number, structure: string): Shadowed {
    if (r <= 0) this.core.throwStatus(-r, structure);
    return { block: this.core.result, addr: r };
  }

  newBlock(kind: BlockKind): Shadowed {
    return this.cache.op(() => this.shadowed(this.core.x.tmNewBlock(kind), 'space map'));
  }

  /** A new, empty node; `leafVs` is the leaf value size of its tree (defaults to the node's own). */
  newNode(flags: number, valueSize: number, leafVs = valueSize): Shadowed {
    return this.cache.op(() => this.shadowed(this.core.x.tmNewNode(flags, valueSize, leafVs), 'btree node'));
  }

  /** Drop a reference without recursion; a block reaching 0 leaves the cache. Returns the new count. */
  dec(mblock: number): number {
    const c = this.core.x.tmDecRef(mblock >>> 0, Math.floor(mblock / TWO32));
    if (c < 0) this.core.throwStatus(-c, 'space map');
    return c;
  }

  inc(mblock: number): void {
    this.sm.inc(mblock);
  }
}
