// A bare stack for the metadata space map's tests (test/pd/space-map-metadata*.test.ts): the WASM core, a block
// cache over a device, the map, a transaction manager and the ref-count btree behind the map's RefTreeCodec,
// plus a commit as the pool makes it (prepare, write the dirty blocks, afterCommit) and readers for the counts
// and the index block's entries.
import { Core } from '../../src/core/wasm.js';
import type { BlockDevice } from '../../src/io/block-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { BlockCache } from '../../src/pd/block-cache.js';
import { BlockKind } from '../../src/pd/block-kinds.js';
import { BTree } from '../../src/pd/btree.js';
import { ENTRIES_PER_BITMAP, MetadataSpaceMap, type RefTreeCodec, type SpaceMapRoot } from '../../src/pd/space-map-metadata.js';
import { TransactionManager } from '../../src/pd/transaction-manager.js';
import { U32 } from '../../src/pd/value-types.js';

/** Three bitmaps, the last one partial. */
export const NR = 2 * ENTRIES_PER_BITMAP + 100;

export interface Stack {
  core: Core;
  cache: BlockCache;
  sm: MetadataSpaceMap;
  codec: RefTreeCodec;
}

export function stack(dev: BlockDevice, nrBlocks = NR, capacity = NR): Stack {
  const core = new Core(256, capacity);
  const cache = new BlockCache(core, dev);
  const sm = new MetadataSpaceMap(core, nrBlocks);
  const tm = new TransactionManager(core, cache, sm);
  const tree = new BTree(tm, U32, 'metadata ref-count tree');
  const codec: RefTreeCodec = {
    read: (root, onEntry, onNode) => tree.walk(root, onEntry, (b) => onNode(b)),
    build: (entries) =>
      tree.build(
        entries.map((e) => e[0]),
        (i) => entries[i][1],
      ),
  };
  return { core, cache, sm, codec };
}

export function commit(s: Stack): SpaceMapRoot {
  const root = s.sm.prepareCommit(s.cache, s.codec);
  s.cache.writeDirty();
  s.sm.afterCommit();
  return root;
}

/** Drop the transaction and load the committed map again, as the pool's abort does. */
export function abort(s: Stack, root: SpaceMapRoot): void {
  s.cache.drop();
  s.sm.load(root, s.cache, s.codec);
}

export function counts(sm: MetadataSpaceMap, n = NR): number[] {
  const out: number[] = [];
  for (let b = 0; b < n; b++) out.push(sm.countOf(b));
  return out;
}

export interface IndexEntry {
  block: number;
  nrFree: number;
  noneFreeBefore: number;
}

/** The first n entries of the index block at root.bitmapRoot (dm-thin's layout: entry j at 16 + 16 j). */
export function indexEntries(s: Stack, root: SpaceMapRoot, n: number): IndexEntry[] {
  const idx = s.cache.get(root.bitmapRoot, BlockKind.Index);
  const out: IndexEntry[] = [];
  for (let j = 0; j < n; j++) {
    const e = idx + 16 + 16 * j;
    out.push({
      block: s.core.u32[e >>> 2] + s.core.u32[(e + 4) >>> 2] * 2 ** 32,
      nrFree: s.core.u32[(e + 8) >>> 2],
      noneFreeBefore: s.core.u32[(e + 12) >>> 2],
    });
  }
  return out;
}

/** A MemoryDevice that records the block numbers written to it since the last `written.clear()`. */
export function watchedDevice(sizeBytes: number): { dev: BlockDevice; mem: MemoryDevice; written: Set<number> } {
  const mem = new MemoryDevice(sizeBytes);
  const written = new Set<number>();
  const dev: BlockDevice = {
    get sizeBytes() {
      return mem.sizeBytes;
    },
    read: (buf, off) => mem.read(buf, off),
    write: (buf, off) => {
      written.add(off / 4096);
      mem.write(buf, off);
    },
    flush: () => mem.flush(),
    resize: (n) => mem.resize(n),
    discard: (off, len) => mem.discard(off, len),
    close: () => mem.close(),
  };
  return { dev, mem, written };
}
