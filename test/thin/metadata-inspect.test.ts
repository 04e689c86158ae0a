// The read-only inspection door (src/thin/metadata-inspect.ts) on metadata the engine wrote: a leaf read with
// readNode holds exactly its entries (keys and decoded values, as the tree's own walk gives them), and the index of
// a metadata space map of two bitmaps reads each entry where dm-thin puts it, so every bitmap it names is read back
// with the free count and first free entry the entry states, and the bitmaps together count the blocks in use.
import { expect, test } from 'vitest';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { ENTRIES_PER_BITMAP } from '../../src/pd/space-map-metadata.js';
import { BLOCK_TIME } from '../../src/thin/block-time.js';
import { ThinMetadata } from '../../src/thin/metadata.js';

const MiB = 1024 * 1024;

test('readNode of a leaf gives its nr keys and nr values, those the tree holds', () => {
  const md = ThinMetadata.format(new MemoryDevice(8 * MiB), { nrDataBlocks: 100, dataBlockSectors: 128 });
  md.createThin(1);
  for (let v = 0; v < 5; v++) md.insertMapping(1, v * 10, md.allocDataBlock());
  md.commit();
  const ins = md.inspect();
  const leaf = ins.readNode(md.rootOf(1), BLOCK_TIME);
  expect([leaf.internal, leaf.nr]).toEqual([false, 5]);
  expect(leaf.children.length).toBe(0);
  const want = ins.l1.entries(md.rootOf(1));
  expect([...leaf.keys]).toEqual(want.map((e) => e[0]));
  expect(leaf.values).toEqual(want.map((e) => e[1]));
});

test('the index of a two-bitmap metadata space map: each entry names its bitmap, its free count and first free entry', () => {
  const nrMeta = ENTRIES_PER_BITMAP + 2000; // 2 bitmaps, the second partial
  const md = ThinMetadata.format(new MemoryDevice(nrMeta * 4096), { nrDataBlocks: 1000, dataBlockSectors: 128 });
  md.createThin(1);
  for (let v = 0; v < 600; v++) md.insertMapping(1, v, md.allocDataBlock());
  md.commit();
  const ins = md.inspect();
  expect(ins.nrMetadataBlocks).toBe(nrMeta);
  const index = ins.readMetadataIndex(ins.superblock.metadataSm.bitmapRoot, 2);
  expect(index[1].block).not.toBe(index[0].block);
  let used = 0;
  index.forEach((e, j) => {
    const covered = Math.min(ENTRIES_PER_BITMAP, nrMeta - j * ENTRIES_PER_BITMAP);
    const vals = ins.readBitmap(e.block, covered);
    const free = vals.filter((v) => v === 0).length;
    expect(e.nrFree, `nr_free of bitmap ${j}`).toBe(free);
    expect(e.noneFreeBefore, `none_free_before of bitmap ${j}`).toBe(vals.indexOf(0));
    used += covered - free;
    for (let i = 0; i < covered; i += 97) {
      expect(vals[i], `bitmap ${j} entry ${i}`).toBe(Math.min(3, ins.metadataCount(j * ENTRIES_PER_BITMAP + i)));
    }
  });
  expect(used).toBe(ins.metadataAllocated);
});
