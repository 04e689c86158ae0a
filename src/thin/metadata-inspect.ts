/**
 * The read-only inspection door of thin metadata, for the tools that read committed metadata whole: the checker
 * (check*.ts), dump.ts and usage.ts. `ThinMetadata.inspect()` hands it out; the pool files never use it.
 *
 * Contract:
 * - Nothing here changes metadata: the trees are offered only through their read operations (lookups and
 *   walks), nodes, bitmaps and index blocks are read through the block cache (validated: checksum, block
 *   number, node shape) and copied out, so what is returned stays valid after later reads.
 * - Counts are the space maps' current counts (for a freshly opened or just committed ThinMetadata, the
 *   committed ones).
 */
import type { BlockCache } from '../pd/block-cache.js';
import { BlockKind } from '../pd/block-kinds.js';
import type { BTree } from '../pd/btree.js';
import type { DataSpaceMap } from '../pd/space-map-data.js';
import type { MetadataSpaceMap } from '../pd/space-map-metadata.js';
import { INTERNAL } from '../pd/transaction-manager.js';
import { INDEX_ENTRY, readU64, type IndexEntry, type ValueType } from '../pd/value-types.js';
import type { Core } from '../core/wasm.js';
import type { Mapping } from './block-time.js';
import type { DeviceDetails } from './device-details.js';
import type { Superblock } from './superblock.js';

/** A tree offered for reading only. */
export type ReadonlyTree<V> = Pick<
  BTree<V>,
  'name' | 'lookup' | 'walk' | 'walkRange' | 'walkWhere' | 'walkPartsWhere' | 'leaves' | 'entries'
>;

/** One btree node, copied out of the cache. */
export interface NodeView<V> {
  internal: boolean;
  nr: number;
  max: number;
  /** The value size the node's header states. */
  valueSize: number;
  keys: Float64Array;
  /** Internal node: the child block numbers (else empty). */
  children: Float64Array;
  /** Leaf: the values, decoded by the tree's value type (else empty, and empty when read undecoded). */
  values: V[];
  /**
   * Leaf read undecoded (`readNode(b, vt, false)`): the values' bytes as little-endian u32 words, value i at
   * byte address i * valueSize (so a value type's read(words, i * valueSize) decodes it); else empty.
   */
  words: Uint32Array;
}

const NO_WORDS = new Uint32Array(0);

/** The parts of an open ThinMetadata the inspection reads (ThinMetadata keeps them private). */
export interface InspectedParts {
  core: Core;
  cache: BlockCache;
  msm: MetadataSpaceMap;
  dsm: DataSpaceMap;
  l0: BTree<number>;
  l1: BTree<Mapping>;
  details: BTree<DeviceDetails>;
  superblock(): Readonly<Superblock>;
  heldSuperblock(): Superblock | null;
}

export class MetadataInspection {
  /** Level 0 of the mapping tree: device id -> level-1 root. */
  readonly l0: ReadonlyTree<number>;
  /** Level 1: virtual block -> mapping. */
  readonly l1: ReadonlyTree<Mapping>;
  readonly details: ReadonlyTree<DeviceDetails>;
  private readonly p: InspectedParts;

  constructor(parts: InspectedParts) {
    this.p = parts;
    this.l0 = parts.l0;
    this.l1 = parts.l1;
    this.details = parts.details;
  }

  get superblock(): Readonly<Superblock> {
    return this.p.superblock();
  }

  /** The held metadata snapshot's superblock, or null. */
  heldSuperblock(): Superblock | null {
    return this.p.heldSuperblock();
  }

  get nrMetadataBlocks(): number {
    return this.p.msm.nrBlocks;
  }

  get nrDataBlocks(): number {
    return this.p.dsm.nrBlocks;
  }

  /** Metadata blocks in use (the metadata space map's count). */
  get metadataAllocated(): number {
    return this.p.msm.nrAllocated;
  }

  /** Data blocks in use (the data space map's count). */
  get dataAllocated(): number {
    return this.p.dsm.nrAllocated;
  }

  /** Reference count of metadata block b. */
  metadataCount(b: number): number {
    return this.p.msm.countOf(b);
  }

  /** Reference count of data block d (throws for a block beyond the data device or an unreadable bitmap). */
  dataCount(d: number): number {
    return this.p.dsm.count(d);
  }

  /** dataCount of blocks[0..n) into out[0..n) (sorted blocks read each bitmap once). */
  dataCounts(blocks: Float64Array, n: number, out: Uint32Array): void {
    this.p.dsm.counts(blocks, n, out);
  }

  /**
   * Read and validate node b of a tree whose leaves hold `vt` values; its content, copied out. `decode` false:
   * a leaf's values are left as words (NodeView.words), for walks over many entries (no object per value).
   */
  readNode<V>(b: number, vt: ValueType<V>, decode = true): NodeView<V> {
    const { core } = this.p;
    const a = this.p.cache.get(b, BlockKind.Node, vt.size);
    const u32 = core.u32;
    const internal = u32[(a + 4) >>> 2] === INTERNAL;
    const nr = u32[(a + 16) >>> 2];
    const max = u32[(a + 20) >>> 2];
    const valueSize = u32[(a + 24) >>> 2];
    const keys = new Float64Array(nr);
    for (let i = 0; i < nr; i++) keys[i] = readU64(u32, a + 32 + 8 * i);
    const vbase = a + 32 + 8 * max;
    const children = new Float64Array(internal ? nr : 0);
    const values: V[] = [];
    let words = NO_WORDS;
    if (internal) for (let i = 0; i < nr; i++) children[i] = readU64(u32, vbase + 8 * i);
    else if (decode) for (let i = 0; i < nr; i++) values.push(vt.read(u32, vbase + valueSize * i));
    else words = u32.slice(vbase >>> 2, (vbase + valueSize * nr + 3) >>> 2);
    return { internal, nr, max, valueSize, keys, children, values, words };
  }

  /** The first n 2-bit values of bitmap block b. */
  readBitmap(b: number, n: number): Uint8Array {
    const p = this.p.cache.get(b, BlockKind.Bitmap);
    const out = new Uint8Array(n);
    // The core's bitmapGet (assembly/bitmap.ts), read here rather than called per entry: entry i is bits 2i
    // (high) and 2i + 1 (low) of the little-endian bytes after the 16-byte header.
    const u8 = this.p.core.u8;
    const base = p + 16;
    for (let i = 0; i < n; i++) {
      const byte = u8[base + (i >>> 2)] >>> ((i & 3) << 1);
      out[i] = ((byte & 1) << 1) | ((byte >>> 1) & 1);
    }
    return out;
  }

  /** The first n entries of the metadata space map's index block b. */
  readMetadataIndex(b: number, n: number): IndexEntry[] {
    const a = this.p.cache.get(b, BlockKind.Index);
    const u32 = this.p.core.u32;
    const out: IndexEntry[] = [];
    for (let j = 0; j < n; j++) out.push(INDEX_ENTRY.read(u32, a + 16 + 16 * j));
    return out;
  }
}
