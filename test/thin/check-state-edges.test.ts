/**
 * The checker's state (src/thin/check-state.ts) at its edges, through `checkMetadata` / `checkMetadataDevice`:
 * the depth bound of a walk (a chain of distinct nodes deeper than MAX_DEPTH, no cycle), the window size
 * argument, the shape of each report entry (an entry names `mblock` only when there is one), expected data
 * counts of 1 to 5 in windows of every size, and node shape and position findings one at a time (a pointer to
 * the first block past the device, an empty leaf, keys of 0, a damaged tree's device left uncounted).
 */
import { describe, expect, test } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { BLOCK_TIME } from '../../src/thin/block-time.js';
import { checkMetadataDevice } from '../../src/thin/check.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { chainTo, pool } from '../support/check-pool.js';
import { BITMAP_SALT, NODE_SALT, patchBlock, readBlock, setU64, u64 as readU64, valueOffset } from '../support/metadata-patch.js';

const MiB = 1024 * 1024;
const L1 = 'mapping tree (level 1)';
const MAX_DEPTH = 16;

describe('a walk never goes deeper than MAX_DEPTH levels', () => {
  test('a chain of distinct internal nodes is cut at the node at depth MAX_DEPTH, named', () => {
    const { dev, md, leaves } = pool(6000);
    expect(leaves.length).toBeGreaterThan(MAX_DEPTH + 2);
    // root (depth 0) -> leaves[0] (depth 1) -> leaves[1] -> ... -> leaves[k] at depth k + 1.
    for (let i = 0; i < MAX_DEPTH + 1; i++) chainTo(md, dev, leaves[i], leaves[i + 1]);
    const r = checkMetadataDevice(dev);
    expect(r.ok).toBe(false);
    const deep = r.errors.filter((e) => e.message.includes('deeper than'));
    expect(deep).toEqual([
      {
        code: 'ECYCLE',
        structure: L1,
        mblock: leaves[MAX_DEPTH - 1],
        message: `${L1} of thin device 1 is deeper than ${MAX_DEPTH} levels at block ${leaves[MAX_DEPTH - 1]} (cycle?)`,
      },
    ]);
    // The root's second child is the chain's second node: reached twice within the walk.
    expect(r.errors).toContainEqual({
      code: 'ECYCLE',
      structure: L1,
      mblock: leaves[1],
      message: `${L1} of thin device 1 reaches block ${leaves[1]} twice (cycle or shared node within one tree)`,
    });
    // The chain one level shorter is deep, not too deep: its last node sits at depth MAX_DEPTH - 1.
    const short = pool(6000);
    for (let i = 0; i < MAX_DEPTH - 2; i++) chainTo(short.md, short.dev, short.leaves[i], short.leaves[i + 1]);
    const r2 = checkMetadataDevice(short.dev);
    expect(r2.ok).toBe(false); // nodes of one entry below the root, leaves reached twice
    expect(r2.errors.filter((e) => e.message.includes('deeper than'))).toEqual([]);
  });
});

describe('the window of expected data counts', () => {
  test('a window that is not a positive whole number of blocks is refused with EINVAL before anything is read', () => {
    const { dev } = pool(300);
    for (const w of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
      let thrown: unknown;
      try {
        checkMetadataDevice(dev, { windowBlocks: w });
      } catch (e) {
        thrown = e;
      }
      expect(isThinpoolError(thrown), `window ${w}`).toBe(true);
      expect((thrown as { code: string }).code).toBe('EINVAL');
      expect((thrown as Error).message).toBe(`bad check window ${w} (data blocks, > 0)`);
    }
    // The largest safe window and a small one are accepted.
    for (const w of [2 ** 53 - 1, 3]) expect(checkMetadataDevice(dev, { windowBlocks: w }).errors, `window ${w}`).toEqual([]);
  });
});

describe('report entries', () => {
  test('an entry names mblock only when the finding has a block', () => {
    const { dev, md, leaves } = pool(1500);
    md.setDeviceDetails(1, { transactionId: 0, creationTime: 1, snapshottedTime: 0 });
    md.commit();
    const nrData = md.nrDataBlocks;
    const leaf = md.inspect().readNode(leaves[1], BLOCK_TIME);
    const min = Math.floor(leaf.max / 3);
    // Leaf 0 maps one block past the end of the data device; leaf 1 keeps too few entries.
    patchBlock(md, dev, leaves[0], NODE_SALT, (buf) => setU64(buf, valueOffset(buf, 0, 8), nrData * 2 ** 24));
    patchBlock(md, dev, leaves[1], NODE_SALT, (buf) => new DataView(buf.buffer, buf.byteOffset).setUint32(16, min - 1, true));
    const r = checkMetadataDevice(dev);
    const beyond = r.errors.find((e) => e.message.includes('beyond the end of the data device'));
    expect(beyond).toStrictEqual({
      code: 'ECORRUPT',
      structure: L1,
      message: `1 mapping(s) beyond the end of the data device (${nrData} blocks), first: virtual block 0 of thin device 1 maps data block ${nrData} (leaf block ${leaves[0]})`,
    });
    const few = r.errors.find((e) => e.message.startsWith('too few entries'));
    expect(few).toStrictEqual({
      code: 'EBADNODE',
      structure: L1,
      mblock: leaves[1],
      message: `too few entries in btree_node: ${min - 1}, expected at least ${min} (block ${leaves[1]}, max_entries = ${leaf.max})`,
    });
    expect(r.warnings.find((w) => w.message.includes('creation_time'))).toStrictEqual({
      code: 'ECORRUPT',
      structure: 'device details tree',
      message: 'thin device 1: expected creation_time 1 <= snap_time 0 <= superblock time 0',
    });
    for (const e of [...r.errors, ...r.warnings]) expect('mblock' in e ? typeof e.mblock : 'none', e.message).not.toBe('undefined');
  });
});

describe('expected data counts, window by window', () => {
  /**
   * nrData 1005 (not a multiple of 4): device 1 maps virtual blocks 0..999 to data blocks 0..999; snapshots 2..5
   * each write virtual block 1 (four more copies of the first leaf: its other blocks count 5) and snapshot 6
   * writes virtual block 999 (the last leaf copied once: count 2). The last data block, 1004, is snapshot 6's.
   */
  function countsPool(): { dev: MemoryDevice; md: ThinMetadata; bitmap: number } {
    const dev = new MemoryDevice(8 * MiB);
    const md = ThinMetadata.format(dev, { nrDataBlocks: 1005, dataBlockSectors: 128 });
    md.createThin(1);
    for (let v = 0; v < 1000; v++) md.insertMapping(1, v, md.allocDataBlock());
    for (const id of [2, 3, 4, 5]) {
      md.createSnapshot(id, 1);
      md.insertMapping(id, 1, md.allocDataBlock());
    }
    md.createSnapshot(6, 1);
    md.insertMapping(6, 999, md.allocDataBlock());
    md.commit();
    const ro = ThinMetadata.open(dev, { readOnly: true });
    expect([0, 1, 2, 998, 999, 1000, 1004].map((d) => ro.dataBlockCount(d))).toEqual([5, 1, 5, 2, 1, 1, 1]);
    expect(ro.lookup(6, 999)!.dblock).toBe(1004);
    const leaf = readBlock(dev, ro.superblock.dataSm.bitmapRoot);
    return { dev, md: ro, bitmap: readU64(leaf, valueOffset(leaf, 0, 16)) };
  }

  const WINDOWS = [5, 7, 64, 1004, 1005, 1006, undefined];

  test('a clean pool checks clean at every window size, counts 1 to 5 and the last data block included', () => {
    const { dev } = countsPool();
    const whole = checkMetadataDevice(dev);
    expect(whole.errors).toEqual([]);
    for (const w of WINDOWS) {
      const r = checkMetadataDevice(dev, w === undefined ? {} : { windowBlocks: w });
      expect(r.errors, `window ${w}`).toEqual([]);
      expect(r.stats, `window ${w}`).toEqual(whole.stats);
    }
  });

  test('wrong counts are found in every window: above 3, at 1 and at the last data block', () => {
    const { dev, md, bitmap } = countsPool();
    patchBlock(md, dev, bitmap, BITMAP_SALT, (_buf, core, addr) => {
      core.x.bitmapSet(addr, 2, 2); // expected 5
      core.x.bitmapSet(addr, 998, 1); // expected 2
      core.x.bitmapSet(addr, 1000, 2); // expected 1
      core.x.bitmapSet(addr, 1004, 0); // expected 1: the last block
    });
    for (const w of WINDOWS) {
      const r = checkMetadataDevice(dev, w === undefined ? {} : { windowBlocks: w });
      expect(
        r.errors.filter((e) => e.structure === 'data space map').map((e) => e.message),
        `window ${w}`,
      ).toEqual([
        'data reference counts differ for block 2, expected 5, but got 2',
        'data reference counts differ for block 998, expected 2, but got 1',
        'data reference counts differ for block 1000, expected 1, but got 2',
        'data reference counts differ for block 1004, expected 1, but got 0',
      ]);
    }
  });
});

describe('node shape and position, one finding each', () => {
  test('a pointer to exactly the first block past the metadata device', () => {
    const { dev, md, root } = pool(1500);
    const nrMeta = md.inspect().nrMetadataBlocks;
    patchBlock(md, dev, root, NODE_SALT, (buf) => setU64(buf, valueOffset(buf, 1, 8), nrMeta));
    const r = checkMetadataDevice(dev);
    expect(r.errors.filter((e) => e.mblock === nrMeta)).toEqual([
      {
        code: 'EBADBLOCKNR',
        structure: `${L1} of thin device 1 (internal node ${root})`,
        mblock: nrMeta,
        message: `reference to block ${nrMeta} beyond the metadata device (${nrMeta} blocks) from ${L1} of thin device 1 (internal node ${root})`,
      },
      {
        code: 'EBADBLOCKNR',
        structure: L1,
        mblock: nrMeta,
        message: `${L1} of thin device 1 points to block ${nrMeta}, beyond the metadata device (${nrMeta} blocks)`,
      },
    ]);
  });

  test('an empty leaf below the root is too small, and nothing else: its keys are neither low nor out of order', () => {
    const { dev, md, root, leaves } = pool(1500);
    const max = md.inspect().readNode(leaves[1], BLOCK_TIME).max;
    expect(md.inspect().readNode(root, BLOCK_TIME).keys[1]).toBeGreaterThan(1);
    patchBlock(md, dev, leaves[1], NODE_SALT, (buf) => new DataView(buf.buffer, buf.byteOffset).setUint32(16, 0, true));
    const r = checkMetadataDevice(dev);
    expect(r.errors.filter((e) => e.mblock === leaves[1])).toEqual([
      {
        code: 'EBADNODE',
        structure: L1,
        mblock: leaves[1],
        message: `too few entries in btree_node: 0, expected at least ${Math.floor(max / 3)} (block ${leaves[1]}, max_entries = ${max})`,
      },
    ]);
    expect(r.stats.mappings).toBe(0);
  });

  test('an empty leaf between two leaves: the next leaf is still ordered against the leaf before it', () => {
    const { dev, md, leaves } = pool(1500);
    const before = md.inspect().readNode(leaves[0], BLOCK_TIME);
    const last0 = before.keys[before.nr - 1];
    patchBlock(md, dev, leaves[1], NODE_SALT, (buf) => new DataView(buf.buffer, buf.byteOffset).setUint32(16, 0, true));
    patchBlock(md, dev, leaves[2], NODE_SALT, (buf) => setU64(buf, 32, last0));
    const r = checkMetadataDevice(dev);
    expect(r.errors.filter((e) => e.mblock === leaves[2]).map((e) => e.message)).toContain(
      `the last key of the previous leaf was ${last0} and the first key of this leaf is ${last0} (block ${leaves[2]})`,
    );
  });

  test('a first key of 0 is checked like any other: below its parent key, and not above the previous leaf', () => {
    const { dev, md, root, leaves } = pool(1500);
    // The root's first key becomes 5, above its first leaf's lowest key (0).
    patchBlock(md, dev, root, NODE_SALT, (buf) => setU64(buf, 32, 5));
    const r = checkMetadataDevice(dev);
    expect(r.errors).toEqual([
      {
        code: 'EBADNODE',
        structure: L1,
        mblock: leaves[0],
        message: `parent key mismatch: parent was 5, but lowest in node was 0 (block ${leaves[0]})`,
      },
    ]);
    expect(r.stats.mappings).toBe(0);
    // Fresh pool: the first leaf keeps key 0 only; the second leaf's first key becomes 0 (below its parent key too).
    const p = pool(1500);
    patchBlock(p.md, p.dev, p.leaves[0], NODE_SALT, (buf) => new DataView(buf.buffer, buf.byteOffset).setUint32(16, 1, true));
    patchBlock(p.md, p.dev, p.leaves[1], NODE_SALT, (buf) => setU64(buf, 32, 0));
    const r2 = checkMetadataDevice(p.dev);
    expect(r2.errors.filter((e) => e.mblock === p.leaves[1]).map((e) => e.message)).toEqual([
      `parent key mismatch: parent was 126, but lowest in node was 0 (block ${p.leaves[1]})`,
      `the last key of the previous leaf was 0 and the first key of this leaf is 0 (block ${p.leaves[1]})`,
    ]);
  });

  test('a leaf out of order makes its tree damaged: the device is not counted', () => {
    const { dev, md, leaves } = pool(1500);
    const first = md.inspect().readNode(leaves[0], BLOCK_TIME);
    const next = md.inspect().readNode(leaves[1], BLOCK_TIME).keys[0];
    patchBlock(md, dev, leaves[0], NODE_SALT, (buf) => setU64(buf, 32 + 8 * (first.nr - 1), next));
    const r = checkMetadataDevice(dev);
    expect(r.errors.filter((e) => e.code === 'EBADNODE').map((e) => e.message)).toEqual([
      `the last key of the previous leaf was ${next} and the first key of this leaf is ${next} (block ${leaves[1]})`,
    ]);
    expect(r.stats.mappings).toBe(0);
    expect(r.errors.some((e) => e.message.includes('has mapped_blocks'))).toBe(false);
  });

  test('a parent key above its child makes the tree damaged: the device is not counted', () => {
    const { dev, md, root, leaves } = pool(1500);
    const k = md.inspect().readNode(leaves[2], BLOCK_TIME).keys[0];
    patchBlock(md, dev, root, NODE_SALT, (buf) => setU64(buf, 32 + 8 * 2, k + 1));
    const r = checkMetadataDevice(dev);
    expect(r.errors.filter((e) => e.code === 'EBADNODE').map((e) => e.message)).toEqual([
      `parent key mismatch: parent was ${k + 1}, but lowest in node was ${k} (block ${leaves[2]})`,
    ]);
    expect(r.stats.mappings).toBe(0);
  });
});
