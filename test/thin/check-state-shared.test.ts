/**
 * The checker's state (src/thin/check-state.ts) where trees share nodes, through `checkMetadata` /
 * `checkMetadataDevice`: a damaged node shared by two devices is reported once; a subtree shared with another
 * device is validated and counted once, then fitted where it sits by its first and last keys (two and three
 * levels); a tree reached again although the space map counts it once; a node used by two kinds of tree names
 * the kind that read it first.
 */
import { describe, expect, test } from 'vitest';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { BLOCK_TIME } from '../../src/thin/block-time.js';
import { checkMetadata, checkMetadataDevice } from '../../src/thin/check.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { SUPERBLOCK_SALT } from '../../src/thin/superblock.js';
import { pool } from '../support/check-pool.js';
import { NODE_SALT, patchBlock, readBlock, setU64, valueOffset } from '../support/metadata-patch.js';

const MiB = 1024 * 1024;
const L1 = 'mapping tree (level 1)';

describe('a damaged node shared by two devices', () => {
  /** Device 1 over several leaves; device 2 its snapshot with one write, so the roots differ and the leaves are shared. */
  function sharedLeaves(): { dev: MemoryDevice; md: ThinMetadata; shared: number; root1: number; root2: number } {
    const { dev, md, leaves } = pool(1500);
    md.createSnapshot(2, 1);
    md.insertMapping(2, 0, md.allocDataBlock());
    md.commit();
    const root1 = md.rootOf(1);
    const root2 = md.rootOf(2);
    expect(root2).not.toBe(root1);
    const kids2 = md.inspect().readNode(root2, BLOCK_TIME).children;
    expect(kids2[2]).toBe(leaves[2]);
    expect(checkMetadata(md).errors).toEqual([]);
    return { dev, md, shared: leaves[2], root1, root2 };
  }

  test('an unreadable shared leaf is reported once, by the first device that reaches it', () => {
    const { dev, shared } = sharedLeaves();
    const b = readBlock(dev, shared);
    b[40] ^= 1; // a key byte: the checksum no longer matches
    dev.write(b, shared * 4096);
    const r = checkMetadataDevice(dev);
    const bad = r.errors.filter((e) => e.mblock === shared);
    expect(bad.length, JSON.stringify(r.errors.slice(0, 4))).toBe(1);
    expect(bad[0].code).toBe('EBADCSUM');
    expect(bad[0].structure).toBe('btree node');
    expect(bad[0].message.startsWith(`${L1} of thin device 1: `)).toBe(true);
  });

  test('a shared leaf that fails its checks is reported once, and neither device is counted', () => {
    const { dev, md, shared } = sharedLeaves();
    const leaf = md.inspect().readNode(shared, BLOCK_TIME);
    const min = Math.floor(leaf.max / 3);
    patchBlock(md, dev, shared, NODE_SALT, (buf) => new DataView(buf.buffer, buf.byteOffset).setUint32(16, min - 1, true));
    const r = checkMetadataDevice(dev);
    const few = r.errors.filter((e) => e.message.startsWith('too few entries'));
    expect(few).toEqual([
      {
        code: 'EBADNODE',
        structure: L1,
        mblock: shared,
        message: `too few entries in btree_node: ${min - 1}, expected at least ${min} (block ${shared}, max_entries = ${leaf.max})`,
      },
    ]);
    // The damaged subtree makes each device's tree damaged: no mapped_blocks comparison, no mappings counted.
    expect(r.errors.some((e) => e.message.includes('has mapped_blocks'))).toBe(false);
    expect(r.stats.mappings).toBe(0);
  });
});

describe('a subtree shared with another device is fitted where it sits', () => {
  /** Device 1 over many leaves; snapshot 2 writes its first and last virtual blocks: two own leaves, the rest shared. */
  function snapshotPool(): { dev: MemoryDevice; md: ThinMetadata; own: number[]; shared: number[] } {
    const { dev, md, leaves } = pool(1500);
    md.createSnapshot(2, 1);
    md.insertMapping(2, 0, md.allocDataBlock());
    md.insertMapping(2, 1499, md.allocDataBlock());
    md.commit();
    const kids = [...md.inspect().readNode(md.rootOf(2), BLOCK_TIME).children];
    expect(kids.length).toBe(leaves.length);
    expect(kids.slice(1, -1)).toEqual(leaves.slice(1, -1));
    expect(kids[0]).not.toBe(leaves[0]);
    expect(kids[kids.length - 1]).not.toBe(leaves[leaves.length - 1]);
    expect(checkMetadata(md).errors).toEqual([]);
    return { dev, md, own: [kids[0], kids[kids.length - 1]], shared: kids.slice(1, -1) };
  }

  function lastKey(md: ThinMetadata, b: number): number {
    const n = md.inspect().readNode(b, BLOCK_TIME);
    return n.keys[n.nr - 1];
  }

  test("a shared leaf whose first key is not above the last key of the device's own leaf before it", () => {
    const { dev, md, own, shared } = snapshotPool();
    const first = md.inspect().readNode(shared[0], BLOCK_TIME).keys[0];
    const nr = md.inspect().readNode(own[0], BLOCK_TIME).nr;
    patchBlock(md, dev, own[0], NODE_SALT, (buf) => setU64(buf, 32 + 8 * (nr - 1), first));
    const r = checkMetadataDevice(dev);
    expect(r.errors.filter((e) => e.message.startsWith('the last key of the previous leaf'))).toEqual([
      {
        code: 'EBADNODE',
        structure: L1,
        mblock: shared[0],
        message: `the last key of the previous leaf was ${first} and the first key of this leaf is ${first} (block ${shared[0]})`,
      },
    ]);
    // The shared leaves were validated and counted once, by device 1; device 2 only fits them where they sit, so
    // its tree stays whole: both devices' entries are counted and no other finding is made.
    expect(r.stats.mappings).toBe(3000);
    expect(r.errors.length).toBe(1);
  });

  test("the device's own leaf after shared leaves is ordered against the last shared leaf's last key", () => {
    const { dev, md, own, shared } = snapshotPool();
    const prev = lastKey(md, shared[shared.length - 1]);
    patchBlock(md, dev, own[1], NODE_SALT, (buf) => setU64(buf, 32, prev));
    const r = checkMetadataDevice(dev);
    expect(r.errors.filter((e) => e.message.startsWith('the last key of the previous leaf'))).toEqual([
      {
        code: 'EBADNODE',
        structure: L1,
        mblock: own[1],
        message: `the last key of the previous leaf was ${prev} and the first key of this leaf is ${prev} (block ${own[1]})`,
      },
    ]);
  });
});

describe('a tree reached again although the space map counts it once', () => {
  test("device 2's entry pointing at device 1's tree: its root is counted twice, its nodes and data blocks once", () => {
    const { dev, md, root, leaves } = pool(1500, 2000);
    md.createThin(2);
    for (let v = 0; v < 3; v++) md.insertMapping(2, v, md.allocDataBlock());
    md.commit();
    const old2 = md.rootOf(2);
    const own2 = [0, 1, 2].map((v) => md.lookup(2, v)!.dblock);
    const l0 = md.superblock.dataMappingRoot;
    patchBlock(md, dev, l0, NODE_SALT, (buf) => setU64(buf, valueOffset(buf, 1, 8), root));
    const want = [
      `thin device 2 has mapped_blocks 3, but its mapping tree has 1500 entries`,
      `metadata reference counts differ for block ${root}, expected 2, but got 1`,
      `metadata reference counts differ for block ${old2}, expected 0, but got 1`,
      ...own2.map((d) => `data reference counts differ for block ${d}, expected 0, but got 1`),
    ];
    for (const w of [100, 1000, undefined]) {
      const r = checkMetadataDevice(dev, w === undefined ? {} : { windowBlocks: w });
      expect(r.errors.map((e) => e.message).sort(), `window ${w}`).toEqual([...want].sort());
      expect(r.stats.mappings, `window ${w}`).toBe(3000);
    }
    expect(leaves.length).toBeGreaterThan(2);
  });
});

describe('a node counted once by the space map, reached again where it does not fit', () => {
  /** Device 1 maps 0..1499 (pool), device 2 maps `n` blocks from virtual block 10000: an internal root. */
  function twoTrees(n: number): { dev: MemoryDevice; md: ThinMetadata; root1: number; leaves1: number[]; root2: number } {
    const { dev, md, root, leaves } = pool(1500, n + 1600);
    md.createThin(2);
    for (let v = 0; v < n; v++) md.insertMapping(2, 10000 + v, md.allocDataBlock());
    md.commit();
    const root2 = md.rootOf(2);
    expect(md.inspect().readNode(root2, BLOCK_TIME).internal).toBe(true);
    return { dev, md, root1: root, leaves1: leaves, root2 };
  }

  test("device 1's leaf as a child of device 2's root is read again and validated there: device 2 is damaged", () => {
    const { dev, md, leaves1, root2 } = twoTrees(1500);
    const parent = md.inspect().readNode(root2, BLOCK_TIME).keys[1];
    const low = md.inspect().readNode(leaves1[1], BLOCK_TIME).keys[0];
    patchBlock(md, dev, root2, NODE_SALT, (buf) => setU64(buf, valueOffset(buf, 1, 8), leaves1[1]));
    const r = checkMetadataDevice(dev);
    expect(r.errors).toContainEqual({
      code: 'EBADNODE',
      structure: L1,
      mblock: leaves1[1],
      message: `parent key mismatch: parent was ${parent}, but lowest in node was ${low} (block ${leaves1[1]})`,
    });
    expect(r.stats.mappings).toBe(1500); // device 1 only
  });

  test("device 2's tree (a root over leaves) as the last child of device 1's root: leaves at different depths", () => {
    const { dev, md, root1, root2 } = twoTrees(12000);
    const top = md.inspect().readNode(root1, BLOCK_TIME);
    patchBlock(md, dev, root1, NODE_SALT, (buf) => setU64(buf, valueOffset(buf, top.nr - 1, 8), root2));
    const r = checkMetadataDevice(dev);
    expect(r.errors.filter((e) => e.mblock === root1 && e.code === 'EBADNODE').map((e) => e.message)).toEqual([
      `leaves at different depths below internal node of ${L1} of thin device 1 (block ${root1})`,
    ]);
  });
});

describe('a node used by two kinds of tree names the kind that read it first', () => {
  /** Offsets in the superblock: the data space map's index and ref-count roots, the metadata space map's ref-count root. */
  const DATA_INDEX_ROOT = 80;
  const DATA_REF_ROOT = 88;
  const META_REF_ROOT = 216;

  function twoDevices(): { dev: MemoryDevice; md: ThinMetadata; root2: number } {
    const { dev, md } = pool(1500);
    md.createThin(2);
    for (let v = 0; v < 3; v++) md.insertMapping(2, v, md.allocDataBlock());
    md.commit();
    return { dev, md, root2: md.rootOf(2) };
  }

  function kindErrors(dev: MemoryDevice): string[] {
    return checkMetadataDevice(dev)
      .errors.filter((e) => e.message.includes(' is used by the '))
      .map((e) => `${e.code} ${e.structure} ${e.mblock}: ${e.message}`);
  }

  test("a level-0 node as a device's level-1 root", () => {
    const { dev, md } = twoDevices();
    const l0 = md.superblock.dataMappingRoot;
    patchBlock(md, dev, l0, NODE_SALT, (buf) => setU64(buf, valueOffset(buf, 1, 8), l0));
    expect(kindErrors(dev)).toEqual([`ECORRUPT ${L1} ${l0}: block ${l0} is used by the ${L1} of thin device 2 and by a l0 tree`]);
  });

  test('a level-1 leaf as the data ref-count root', () => {
    const { dev, md, root2 } = twoDevices();
    patchBlock(md, dev, 0, SUPERBLOCK_SALT, (buf) => setU64(buf, DATA_REF_ROOT, root2));
    const t = 'data ref-count tree';
    expect(kindErrors(dev)).toEqual([`ECORRUPT ${t} ${root2}: block ${root2} is used by the ${t} and by a l1 tree`]);
  });

  test('the data index root as the data ref-count root, the data ref-count root as the metadata ref-count root', () => {
    for (const [off, at, kind, t] of [
      [DATA_INDEX_ROOT, DATA_REF_ROOT, 'data-index', 'data ref-count tree'],
      [DATA_REF_ROOT, META_REF_ROOT, 'data-ref', 'metadata ref-count tree'],
    ] as const) {
      const { dev, md } = twoDevices();
      const b = new DataView(readBlock(dev, 0).buffer).getUint32(off, true);
      patchBlock(md, dev, 0, SUPERBLOCK_SALT, (buf) => setU64(buf, at, b));
      expect(kindErrors(dev)).toEqual([`ECORRUPT ${t} ${b}: block ${b} is used by the ${t} and by a ${kind} tree`]);
    }
  });
});

describe('three-level trees', () => {
  /** Device 1 maps virtual blocks 0..49999: a root over internal nodes over leaves. */
  function threeLevels(): { dev: MemoryDevice; md: ThinMetadata } {
    const dev = new MemoryDevice(16 * MiB);
    const md = ThinMetadata.format(dev, { nrDataBlocks: 60000, dataBlockSectors: 128 });
    md.createThin(1);
    for (let v = 0; v < 50000; v++) md.insertMapping(1, v, md.allocDataBlock());
    md.commit();
    return { dev, md };
  }

  test('leaves at different depths make the tree damaged: the device is not counted', () => {
    const { dev, md } = threeLevels();
    md.createThin(2);
    for (let v = 100000; v < 100200; v++) md.insertMapping(2, v, md.allocDataBlock()); // one leaf, over a third full
    md.commit();
    const root = md.rootOf(1);
    const top = md.inspect().readNode(root, BLOCK_TIME);
    // The root's last child becomes device 2's leaf (keys from 100000, above every key of device 1).
    patchBlock(md, dev, root, NODE_SALT, (buf) => setU64(buf, valueOffset(buf, top.nr - 1, 8), md.rootOf(2)));
    const r = checkMetadataDevice(dev);
    expect(r.errors.filter((e) => e.code === 'EBADNODE').map((e) => e.message)).toEqual([
      `leaves at different depths below internal node of ${L1} of thin device 1 (block ${root})`,
    ]);
    expect(r.stats.mappings).toBe(200);
  });

  test('a shared subtree is fitted by its first and last keys, those of its leaves', () => {
    const { dev, md } = threeLevels();
    const ins = md.inspect();
    const mids = [...ins.readNode(md.rootOf(1), BLOCK_TIME).children];
    expect(mids.length).toBeGreaterThanOrEqual(3);
    const leavesOf = (b: number): number[] => [...ins.readNode(b, BLOCK_TIME).children];
    const keysOf = (b: number): number[] => [...ins.readNode(b, BLOCK_TIME).keys];
    const mid0Last = leavesOf(mids[0]).at(-1)!;
    const mid1Leaves = leavesOf(mids[1]);
    const first1 = keysOf(mid1Leaves[0])[0]; // the lowest key below mids[1]
    const last1 = keysOf(mid1Leaves.at(-1)!).at(-1)!; // its highest
    const mid2First = keysOf(leavesOf(mids[2])[0])[0];
    // Snapshot 2 writes the last leaf below mids[0] and the first below mids[2]: mids[1] stays shared.
    md.createSnapshot(2, 1);
    md.insertMapping(2, keysOf(mid0Last).at(-1)!, md.allocDataBlock());
    md.insertMapping(2, mid2First, md.allocDataBlock());
    md.commit();
    const mids2 = [...md.inspect().readNode(md.rootOf(2), BLOCK_TIME).children];
    expect(mids2[1]).toBe(mids[1]);
    const own0 = leavesOf(mids2[0]).at(-1)!;
    const own2 = leavesOf(mids2[2])[0];
    expect([own0, own2].some((b) => b === mid0Last)).toBe(false);
    expect(checkMetadata(md).errors).toEqual([]);
    // The leaf before the shared subtree ends at its first key; the leaf after it starts at its last key.
    const nr0 = ins.readNode(own0, BLOCK_TIME).nr;
    patchBlock(md, dev, own0, NODE_SALT, (buf) => setU64(buf, 32 + 8 * (nr0 - 1), first1));
    patchBlock(md, dev, own2, NODE_SALT, (buf) => setU64(buf, 32, last1));
    const r = checkMetadataDevice(dev);
    expect(r.errors.filter((e) => e.message.startsWith('the last key of the previous leaf'))).toEqual([
      {
        code: 'EBADNODE',
        structure: L1,
        mblock: mids[1],
        message: `the last key of the previous leaf was ${first1} and the first key of this leaf is ${first1} (block ${mids[1]})`,
      },
      {
        code: 'EBADNODE',
        structure: L1,
        mblock: own2,
        message: `the last key of the previous leaf was ${last1} and the first key of this leaf is ${last1} (block ${own2})`,
      },
    ]);
  });
});
