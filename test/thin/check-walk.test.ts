/**
 * The checker's tree walk and reporting (src/thin/check-state.ts) on deliberately damaged trees: pointers past
 * the metadata device or to the superblock, a node used by two kinds of tree, too few entries, parent keys and
 * leaf keys out of order, leaves at different depths, unreadable nodes; and the cap on listed errors and
 * warnings. Each finding is worded and placed (structure, block) exactly.
 */
import { describe, expect, test } from 'vitest';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { checkMetadata, checkMetadataDevice, MAX_REPORTED } from '../../src/thin/check.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { BLOCK_TIME } from '../../src/thin/block-time.js';
import { BITMAP_SALT, NODE_SALT, patchBlock, readBlock, setU64, u64, valueOffset } from '../support/metadata-patch.js';

const MiB = 1024 * 1024;
const L1 = 'mapping tree (level 1)';

/** Device 1 with a two-level mapping tree (an internal root over leaves), device 2 a single leaf; committed. */
function pool(): { dev: MemoryDevice; md: ThinMetadata; root: number; leaves: number[]; keys: number[] } {
  const dev = new MemoryDevice(8 * MiB);
  const md = ThinMetadata.format(dev, { nrDataBlocks: 4000, dataBlockSectors: 128 });
  md.createThin(1);
  for (let v = 0; v < 1500; v++) md.insertMapping(1, v, md.allocDataBlock());
  md.createThin(2);
  for (let v = 0; v < 3; v++) md.insertMapping(2, v, md.allocDataBlock());
  md.commit();
  expect(checkMetadata(md).errors).toEqual([]);
  const root = md.rootOf(1);
  const node = md.inspect().readNode(root, BLOCK_TIME);
  expect(node.internal).toBe(true);
  expect(node.nr).toBeGreaterThanOrEqual(3);
  expect(md.inspect().readNode(node.children[0], BLOCK_TIME).internal).toBe(false);
  return { dev, md, root, leaves: [...node.children], keys: [...node.keys] };
}

/** Offset of child pointer i of an internal node. */
function childAt(buf: Uint8Array, i: number): number {
  return valueOffset(buf, i, 8);
}

describe('pointers', () => {
  test('a child past the end of the metadata device', () => {
    const { dev, md, root } = pool();
    const nrMeta = md.inspect().nrMetadataBlocks;
    patchBlock(md, dev, root, NODE_SALT, (buf) => setU64(buf, childAt(buf, 1), nrMeta + 7));
    const r = checkMetadataDevice(dev);
    expect(r.errors).toContainEqual({
      code: 'EBADBLOCKNR',
      structure: `${L1} of thin device 1 (internal node ${root})`,
      mblock: nrMeta + 7,
      message: `reference to block ${nrMeta + 7} beyond the metadata device (${nrMeta} blocks) from ${L1} of thin device 1 (internal node ${root})`,
    });
    expect(r.errors).toContainEqual({
      code: 'EBADBLOCKNR',
      structure: L1,
      mblock: nrMeta + 7,
      message: `${L1} of thin device 1 points to block ${nrMeta + 7}, beyond the metadata device (${nrMeta} blocks)`,
    });
  });

  test('a child pointing at the superblock', () => {
    const { dev, md, root } = pool();
    patchBlock(md, dev, root, NODE_SALT, (buf) => setU64(buf, childAt(buf, 1), 0));
    const r = checkMetadataDevice(dev);
    expect(r.errors).toContainEqual({
      code: 'EBADBLOCKNR',
      structure: `${L1} of thin device 1 (internal node ${root})`,
      mblock: 0,
      message: `reference to the superblock (block 0) from ${L1} of thin device 1 (internal node ${root})`,
    });
    expect(r.errors.some((e) => e.mblock === 0 && e.message.includes('points to block 0'))).toBe(true);
    // The superblock itself is still counted once (by the check), so no count error names block 0.
    expect(r.errors.some((e) => e.message.startsWith('metadata reference counts differ for block 0,'))).toBe(false);
  });

  test('a node used by two kinds of tree', () => {
    const { dev, md } = pool();
    const sb = md.superblock;
    // Device 2's level-1 root becomes the device details tree's root.
    const l0 = sb.dataMappingRoot;
    patchBlock(md, dev, l0, NODE_SALT, (buf) => setU64(buf, valueOffset(buf, 1, 8), sb.deviceDetailsRoot));
    const r = checkMetadataDevice(dev);
    expect(r.errors).toContainEqual({
      code: 'ECORRUPT',
      structure: L1,
      mblock: sb.deviceDetailsRoot,
      message: `block ${sb.deviceDetailsRoot} is used by the ${L1} of thin device 2 and by a details tree`,
    });
    expect(r.ok).toBe(false);
  });

  test('an unreadable node is reported with its tree, once, and its subtree skipped', () => {
    const { dev, md, leaves } = pool();
    const nr = md.inspect().readNode(leaves[1], BLOCK_TIME).nr;
    const b = readBlock(dev, leaves[1]);
    b[40] ^= 1; // a key byte: the checksum no longer matches
    dev.write(b, leaves[1] * 4096);
    const r = checkMetadataDevice(dev);
    const bad = r.errors.filter((e) => e.mblock === leaves[1] && e.code === 'EBADCSUM');
    expect(bad.length, JSON.stringify(r.errors)).toBe(1);
    expect(bad[0]!.message.startsWith(`${L1} of thin device 1: `)).toBe(true);
    // Its mappings are not counted: each data block it holds is expected 0 times and counted once.
    expect(r.errors.filter((e) => / expected 0, but got 1$/.test(e.message)).length).toBe(nr);
  });
});

describe('node shape and key order', () => {
  test('too few entries in a leaf below the root', () => {
    const { dev, md, leaves } = pool();
    const leaf = md.inspect().readNode(leaves[1], BLOCK_TIME);
    const min = Math.floor(leaf.max / 3);
    patchBlock(md, dev, leaves[1], NODE_SALT, (buf) => new DataView(buf.buffer, buf.byteOffset).setUint32(16, min - 1, true));
    const r = checkMetadataDevice(dev);
    expect(r.errors).toContainEqual({
      code: 'EBADNODE',
      structure: L1,
      mblock: leaves[1],
      message: `too few entries in btree_node: ${min - 1}, expected at least ${min} (block ${leaves[1]}, max_entries = ${leaf.max})`,
    });
    // Exactly the minimum is enough.
    patchBlock(md, dev, leaves[1], NODE_SALT, (buf) => new DataView(buf.buffer, buf.byteOffset).setUint32(16, min, true));
    expect(checkMetadataDevice(dev).errors.some((e) => e.code === 'EBADNODE')).toBe(false);
  });

  test('a parent key above the lowest key of its child', () => {
    const { dev, md, root, leaves, keys } = pool();
    patchBlock(md, dev, root, NODE_SALT, (buf) => setU64(buf, 32 + 8 * 1, keys[1]! + 1));
    const r = checkMetadataDevice(dev);
    expect(r.errors).toContainEqual({
      code: 'EBADNODE',
      structure: L1,
      mblock: leaves[1],
      message: `parent key mismatch: parent was ${keys[1]! + 1}, but lowest in node was ${keys[1]} (block ${leaves[1]})`,
    });
    // A parent key equal to the child's lowest key is right (it is what the tree stores).
    patchBlock(md, dev, root, NODE_SALT, (buf) => setU64(buf, 32 + 8 * 1, keys[1]!));
    expect(checkMetadataDevice(dev).errors).toEqual([]);
  });

  test('leaf keys that do not increase from one leaf to the next', () => {
    const { dev, md, leaves, keys } = pool();
    const first = md.inspect().readNode(leaves[0], BLOCK_TIME);
    // The first leaf's last key becomes the second leaf's first key.
    patchBlock(md, dev, leaves[0], NODE_SALT, (buf) => setU64(buf, 32 + 8 * (first.nr - 1), keys[1]!));
    const r = checkMetadataDevice(dev);
    expect(r.errors).toContainEqual({
      code: 'EBADNODE',
      structure: L1,
      mblock: leaves[1],
      message: `the last key of the previous leaf was ${keys[1]} and the first key of this leaf is ${keys[1]} (block ${leaves[1]})`,
    });
  });

  test('leaves at different depths', () => {
    const dev = new MemoryDevice(16 * MiB);
    const md = ThinMetadata.format(dev, { nrDataBlocks: 60000, dataBlockSectors: 128 });
    md.createThin(1);
    for (let v = 0; v < 50000; v++) md.insertMapping(1, v, md.allocDataBlock());
    md.createThin(2);
    for (let v = 100000; v < 100200; v++) md.insertMapping(2, v, md.allocDataBlock()); // one leaf, more than a third full
    md.commit();
    const root = md.rootOf(1);
    const top = md.inspect().readNode(root, BLOCK_TIME);
    expect(md.inspect().readNode(top.children[0], BLOCK_TIME).internal).toBe(true); // three levels
    // The root's last child becomes device 2's leaf (its keys, from 100000, are above every key of device 1).
    patchBlock(md, dev, root, NODE_SALT, (buf) => setU64(buf, childAt(buf, top.nr - 1), md.rootOf(2)));
    const r = checkMetadataDevice(dev);
    expect(r.errors).toContainEqual({
      code: 'EBADNODE',
      structure: L1,
      mblock: root,
      message: `leaves at different depths below internal node of ${L1} of thin device 1 (block ${root})`,
    });
  });
});

describe('the number of findings listed', () => {
  test(`at most ${MAX_REPORTED} errors are listed, then one entry with the rest`, () => {
    const dev = new MemoryDevice(4 * MiB);
    const md = ThinMetadata.format(dev, { nrDataBlocks: 2000, dataBlockSectors: 128 });
    md.createThin(1);
    md.commit();
    const leaf = readBlock(dev, md.superblock.dataSm.bitmapRoot);
    const bitmap = u64(leaf, valueOffset(leaf, 0, 16));
    // 1100 free data blocks marked used: 1100 count errors.
    patchBlock(md, dev, bitmap, BITMAP_SALT, (_buf, core, addr) => {
      for (let d = 0; d < 1100; d++) core.x.bitmapSet(addr, d, 1);
    });
    const r = checkMetadataDevice(dev);
    expect(r.ok).toBe(false);
    expect(r.errors.length).toBe(MAX_REPORTED + 1);
    expect(r.errors[MAX_REPORTED - 1]!.message).toBe(`data reference counts differ for block ${MAX_REPORTED - 1}, expected 0, but got 1`);
    expect(r.errors[MAX_REPORTED]).toEqual({ code: 'ECORRUPT', structure: 'check', message: '... and 100 more errors' });
  });

  test(`at most ${MAX_REPORTED} warnings are listed, then one entry with the rest`, () => {
    const dev = new MemoryDevice(16 * MiB);
    const md = ThinMetadata.format(dev, { nrDataBlocks: 100, dataBlockSectors: 128 });
    for (let id = 1; id <= MAX_REPORTED + 3; id++) {
      md.createThin(id);
      md.setDeviceDetails(id, { transactionId: 0, creationTime: 1, snapshottedTime: 0 });
    }
    md.commit();
    const r = checkMetadata(md);
    expect(r.errors).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.warnings.length).toBe(MAX_REPORTED + 1);
    expect(r.warnings[MAX_REPORTED]).toEqual({ code: 'ECORRUPT', structure: 'check', message: '... and 3 more warnings' });
  });

  test(`exactly ${MAX_REPORTED} findings are listed without a summary`, () => {
    const dev = new MemoryDevice(16 * MiB);
    const md = ThinMetadata.format(dev, { nrDataBlocks: 100, dataBlockSectors: 128 });
    for (let id = 1; id <= MAX_REPORTED; id++) {
      md.createThin(id);
      md.setDeviceDetails(id, { transactionId: 0, creationTime: 1, snapshottedTime: 0 });
    }
    md.commit();
    const r = checkMetadata(md);
    expect(r.warnings.length).toBe(MAX_REPORTED);
    expect(r.warnings.every((w) => w.structure === 'device details tree')).toBe(true);
  });
});
