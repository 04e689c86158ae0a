/**
 * The checker's state (src/thin/check-state.ts) where reads fail and references are refused, through
 * `checkMetadata` / `checkMetadataDevice`: a metadata read failing with a typed error that names no structure
 * (reported under "metadata", prefixed by what was being read, in a tree walk and when a later window reads a
 * level-1 leaf again; a validated leaf whose read fails when another tree reaches it again keeps its state, so
 * later windows still count it), a read failing with anything else (a bug: it propagates); a data space map
 * index entry that points at the superblock (refused, its bitmap not read); and an empty leaf shared with other
 * devices, reached inside a tree between two leaves (the next leaf is still ordered against the leaf before it).
 */
import { describe, expect, test } from 'vitest';
import { ThinpoolError } from '../../src/errors.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { BLOCK_TIME } from '../../src/thin/block-time.js';
import { checkMetadata, checkMetadataDevice } from '../../src/thin/check.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { BlockReadsDevice } from '../support/block-reads.js';
import { pool } from '../support/check-pool.js';
import { NODE_SALT, patchBlock, readBlock, setU64, u64, valueOffset } from '../support/metadata-patch.js';

const MiB = 1024 * 1024;
const L1 = 'mapping tree (level 1)';

describe('reads that fail during a check', () => {
  test('a typed error naming no structure is reported under "metadata", prefixed by the tree being walked', () => {
    const { dev, leaves } = pool(1500);
    const failing = new BlockReadsDevice(dev).failReadOf(leaves[1], new ThinpoolError('EIO', 'read failed'));
    const r = checkMetadataDevice(failing);
    expect(failing.reads.get(leaves[1])).toBe(1);
    expect(r.errors.filter((e) => e.code === 'EIO')).toStrictEqual([
      { code: 'EIO', structure: 'metadata', message: `${L1} of thin device 1: read failed` },
    ]);
    // The leaf's tree is damaged: the device is not counted.
    expect(r.stats.mappings).toBe(0);
  });

  test('an error that is not a ThinpoolError is a bug: it propagates out of the check, not reported', () => {
    const { dev, leaves } = pool(1500);
    const bug = new TypeError('device bug');
    const failing = new BlockReadsDevice(dev).failReadOf(leaves[1], bug);
    let thrown: unknown;
    try {
      checkMetadataDevice(failing);
    } catch (e) {
      thrown = e;
    }
    expect(failing.reads.get(leaves[1])).toBe(1);
    expect(thrown).toBe(bug);
  });

  test('a level-1 leaf that fails when read again for a later window is reported with its block; the rest is checked', () => {
    // 160 leaves: a 64-block cache no longer holds the first when the second window reads the counted leaves again.
    const { dev, leaves } = pool(20000);
    const failing = new BlockReadsDevice(dev).failReadOf(leaves[0], new ThinpoolError('EIO', 'read failed'), 1);
    const r = checkMetadataDevice(failing, { cacheBlocks: 64, windowBlocks: 10050 });
    expect(failing.reads.get(leaves[0])).toBe(2);
    // Its data blocks (0..125) lie in the first window, counted during the walk: no count differs.
    expect(r.errors).toStrictEqual([{ code: 'EIO', structure: 'metadata', message: `${L1} leaf ${leaves[0]}: read failed` }]);
    expect(r.stats.mappings).toBe(20000);
  });

  test('a validated leaf whose read fails when another tree reaches it again keeps its state: later windows count it', () => {
    // Device 2's level-0 entry points at device 1's tree (counted once): device 2's walk reads it all again. The
    // leaf chosen maps data blocks of the second window, counted there by reading the counted leaves again.
    const { dev, md, root, leaves } = pool(20000, 20200);
    md.createThin(2);
    for (let v = 0; v < 3; v++) md.insertMapping(2, v, md.allocDataBlock());
    md.commit();
    const own2 = [0, 1, 2].map((v) => md.lookup(2, v)!.dblock);
    const leaf = leaves[120];
    const blocks = md
      .inspect()
      .readNode(leaf, BLOCK_TIME)
      .values.map((m) => m.dblock);
    expect(blocks[0]).toBeGreaterThanOrEqual(10050);
    expect(blocks.at(-1)).toBeLessThan(20100);
    const l0 = md.superblock.dataMappingRoot;
    patchBlock(md, dev, l0, NODE_SALT, (buf) => setU64(buf, valueOffset(buf, 1, 8), root));
    const failing = new BlockReadsDevice(dev).failReadOf(leaf, new ThinpoolError('EIO', 'read failed'), 1);
    const r = checkMetadataDevice(failing, { cacheBlocks: 64, windowBlocks: 10050 });
    expect(failing.reads.get(leaf)).toBeGreaterThanOrEqual(3);
    expect(r.errors.filter((e) => e.code === 'EIO')).toStrictEqual([
      { code: 'EIO', structure: 'metadata', message: `${L1} of thin device 2: read failed` },
    ]);
    // Only device 2's own blocks, which nothing references now, differ: the leaf's are counted in their window.
    expect(r.errors.filter((e) => e.structure === 'data space map').map((e) => e.message)).toEqual(
      own2.map((d) => `data reference counts differ for block ${d}, expected 0, but got 1`),
    );
    expect(r.stats.mappings).toBe(20000); // device 1 only: device 2's tree is damaged
  });
});

describe('a space map index entry pointing at the superblock', () => {
  test('a data space map index entry damaged to block 0 after the open is refused, and no bitmap is read at block 0', () => {
    // The open loads every data bitmap (block 0 would be refused there), so the entry is damaged after it, in a
    // pool of 160 leaves: the walks push the index root out of a 64-block cache before the check reads it.
    const { dev, md } = pool(20000);
    const ro = ThinMetadata.open(dev, { readOnly: true, cacheBlocks: 64 });
    const root = md.superblock.dataSm.bitmapRoot;
    const bitmap = u64(readBlock(dev, root), valueOffset(readBlock(dev, root), 0, 16));
    patchBlock(md, dev, root, NODE_SALT, (buf) => setU64(buf, valueOffset(buf, 0, 16), 0));
    const r = checkMetadata(ro);
    expect(r.errors).toStrictEqual([
      {
        code: 'EBADBLOCKNR',
        structure: 'data space map index entry 0',
        mblock: 0,
        message: 'reference to the superblock (block 0) from data space map index entry 0',
      },
      // The bitmap the entry pointed at before is referenced by nothing now.
      {
        code: 'ECORRUPT',
        structure: 'metadata space map',
        mblock: bitmap,
        message: `metadata reference counts differ for block ${bitmap}, expected 0, but got 1`,
      },
    ]);
  });
});

describe('an empty leaf shared with other devices', () => {
  test('reached between two leaves of another tree: the next leaf is ordered against the leaf before it', () => {
    // Device 1 empty (a leaf root of no entries), snapshot 2 shares that root (counted twice), device 3 maps
    // 0..1499: device 1's walk validates the empty leaf as a root and keeps its summary (shared).
    const dev = new MemoryDevice(16 * MiB);
    const md = ThinMetadata.format(dev, { nrDataBlocks: 2000, dataBlockSectors: 128 });
    md.createThin(1);
    md.createSnapshot(2, 1);
    md.createThin(3);
    for (let v = 0; v < 1500; v++) md.insertMapping(3, v, md.allocDataBlock());
    md.commit();
    const empty = md.rootOf(1);
    expect(md.rootOf(2)).toBe(empty);
    expect(md.inspect().metadataCount(empty)).toBe(2);
    expect(checkMetadata(md).errors).toEqual([]);
    const root = md.rootOf(3);
    const top = md.inspect().readNode(root, BLOCK_TIME);
    const [leaf0, , leaf2] = top.children;
    const nr0 = md.inspect().readNode(leaf0, BLOCK_TIME).nr;
    const max = md.inspect().readNode(empty, BLOCK_TIME).max;
    const next = md.inspect().readNode(leaf2, BLOCK_TIME).keys[0];
    // Device 3's second child becomes the empty leaf; its first leaf now ends at the third leaf's first key.
    patchBlock(md, dev, root, NODE_SALT, (buf) => setU64(buf, valueOffset(buf, 1, 8), empty));
    patchBlock(md, dev, leaf0, NODE_SALT, (buf) => setU64(buf, 32 + 8 * (nr0 - 1), next));
    const r = checkMetadataDevice(dev);
    expect(r.errors.filter((e) => e.code === 'EBADNODE')).toStrictEqual([
      {
        code: 'EBADNODE',
        structure: L1,
        mblock: empty,
        message: `too few entries in btree_node: 0, expected at least ${Math.floor(max / 3)} (block ${empty}, max_entries = ${max})`,
      },
      {
        code: 'EBADNODE',
        structure: L1,
        mblock: leaf2,
        message: `the last key of the previous leaf was ${next} and the first key of this leaf is ${next} (block ${leaf2})`,
      },
    ]);
  });
});
