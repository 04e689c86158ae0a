/**
 * The checker's metadata space map (src/thin/check-space-maps.ts) on a metadata device of two bitmaps: clean as
 * written; each bitmap's values placed at its own blocks; a ref-count entry whose bitmap value is not 3, or that
 * holds less than 3; index hints, an index entry past the device, an unreadable index or bitmap (after the open,
 * which validates them); the superblock's nr_allocated and metadata_nr_blocks. Each finding worded and placed.
 */
import { expect, test } from 'vitest';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { ENTRIES_PER_BITMAP } from '../../src/pd/space-map-metadata.js';
import { U32 } from '../../src/pd/value-types.js';
import { checkMetadata, checkMetadataDevice } from '../../src/thin/check.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { BITMAP_SALT, NODE_SALT, patchBlock, readBlock, setU64, u32, u64, valueOffset } from '../support/metadata-patch.js';

const E = ENTRIES_PER_BITMAP;
const NR_META = E + 2000; // two bitmaps, the second partial and unused
const MSM = 'metadata space map';
const META_REF = 'metadata ref-count tree';
const INDEX_SALT = 160478;
const SUPERBLOCK_SALT = 160774;

/**
 * Device 1 maps 16000 blocks (enough leaves to push the space map's blocks out of a 64-block cache); devices 2
 * and 3 are its snapshots, so its root has count 3 (a metadata ref-count tree entry). Committed and clean.
 */
function pool(): { dev: MemoryDevice; md: ThinMetadata; shared: number } {
  const dev = new MemoryDevice(NR_META * 4096);
  const md = ThinMetadata.format(dev, { nrDataBlocks: 17000, dataBlockSectors: 128 });
  md.createThin(1);
  for (let v = 0; v < 16000; v++) md.insertMapping(1, v, md.allocDataBlock());
  md.createSnapshot(2, 1);
  md.createSnapshot(3, 1);
  md.commit();
  const shared = md.rootOf(1);
  expect(md.inspect().metadataCount(shared)).toBe(3);
  return { dev, md, shared };
}

function indexEntry(dev: MemoryDevice, md: ThinMetadata, j: number): { block: number; nrFree: number; nfb: number } {
  const idx = readBlock(dev, md.superblock.metadataSm.bitmapRoot);
  const e = 16 + 16 * j;
  return { block: u64(idx, e), nrFree: u32(idx, e + 8), nfb: u32(idx, e + 12) };
}

/** Open read-only with a small cache, damage, then check (damage before the open would fail the open). */
function openThenDamage(damage: (dev: MemoryDevice, md: ThinMetadata) => void): ReturnType<typeof checkMetadata> {
  const { dev, md } = pool();
  const ro = ThinMetadata.open(dev, { readOnly: true, cacheBlocks: 64 });
  damage(dev, md);
  return checkMetadata(ro);
}

test('a two-bitmap metadata space map as written is clean; a value 3 in the second bitmap is placed at its block', () => {
  const { dev, md } = pool();
  const clean = checkMetadataDevice(dev);
  expect(clean.errors).toEqual([]);
  expect(clean.warnings).toEqual([]);
  const victim = E + 5;
  patchBlock(md, dev, indexEntry(dev, md, 1).block, BITMAP_SALT, (_b, core, addr) => core.x.bitmapSet(addr, 5, 3));
  const r = checkMetadataDevice(dev);
  expect(r.errors).toContainEqual({
    code: 'ECORRUPT',
    structure: MSM,
    mblock: victim,
    message: `metadata block ${victim} has bitmap value 3 but no ref-count tree entry`,
  });
  expect(r.errors).toContainEqual({
    code: 'ECORRUPT',
    structure: MSM,
    mblock: victim,
    message: `metadata reference counts differ for block ${victim}, expected 0, but got 3`,
  });
});

test('a metadata ref-count entry whose bitmap value is not 3, and one that holds less than 3', () => {
  const { dev, md, shared } = pool();
  const refRoot = md.superblock.metadataSm.refCountRoot;
  patchBlock(md, dev, indexEntry(dev, md, 0).block, BITMAP_SALT, (_b, core, addr) => core.x.bitmapSet(addr, shared, 2));
  expect(checkMetadataDevice(dev).errors).toContainEqual({
    code: 'ECORRUPT',
    structure: META_REF,
    mblock: refRoot,
    message: `${META_REF} has an entry for metadata block ${shared}, but its bitmap value is 2`,
  });

  const again = pool();
  const root2 = again.md.superblock.metadataSm.refCountRoot;
  patchBlock(again.md, again.dev, root2, NODE_SALT, (buf) => {
    expect(u32(buf, 16)).toBe(1); // one entry: the shared root
    new DataView(buf.buffer, buf.byteOffset).setUint32(valueOffset(buf, 0, U32.size), 2, true);
  });
  expect(checkMetadataDevice(again.dev).errors).toContainEqual({
    code: 'ECORRUPT',
    structure: META_REF,
    mblock: root2,
    message: `${META_REF} entry for metadata block ${again.shared} holds 2 (< 3)`,
  });
});

test('index hints: none_free_before past the first free entry of a bitmap whose entry 0 is free', () => {
  const { dev, md } = pool();
  const e1 = indexEntry(dev, md, 1);
  expect([e1.nrFree, e1.nfb]).toEqual([2000, 0]);
  patchBlock(md, dev, md.superblock.metadataSm.bitmapRoot, INDEX_SALT, (buf) => {
    new DataView(buf.buffer, buf.byteOffset).setUint32(16 + 16 + 12, 1, true);
  });
  const r = checkMetadataDevice(dev);
  expect(r.errors).toEqual([]);
  expect(r.warnings).toEqual([
    {
      code: 'ECORRUPT',
      structure: MSM,
      mblock: e1.block,
      message: `index entry 1: none_free_before 1, but entry 0 of bitmap block ${e1.block} is free`,
    },
  ]);
});

test('an index entry past the metadata device, and an unreadable index', () => {
  let old = 0;
  const r = openThenDamage((dev, md) => {
    old = indexEntry(dev, md, 1).block;
    patchBlock(md, dev, md.superblock.metadataSm.bitmapRoot, INDEX_SALT, (buf) => setU64(buf, 16 + 16, NR_META + 5));
  });
  const where = 'metadata space map index entry 1';
  expect(r.errors).toContainEqual({
    code: 'EBADBLOCKNR',
    structure: where,
    mblock: NR_META + 5,
    message: `reference to block ${NR_META + 5} beyond the metadata device (${NR_META} blocks) from ${where}`,
  });
  expect(r.errors.map((e) => e.message)).toContain(`metadata reference counts differ for block ${old}, expected 0, but got 1`);
  expect(r.warnings).toEqual([]);

  let index = 0;
  const u = openThenDamage((dev, md) => {
    index = md.superblock.metadataSm.bitmapRoot;
    const b = readBlock(dev, index);
    b[100] ^= 1;
    dev.write(b, index * 4096);
  });
  const bad = u.errors.filter((e) => e.message.startsWith('metadata space map index: '));
  expect(bad.map((e) => e.mblock)).toEqual([index]);
  expect(
    u.errors.filter((e) => e.structure.startsWith('metadata space map index entry')),
    'no entry is read from it',
  ).toEqual([]);
  expect(u.warnings).toEqual([]);
});

test('an unreadable first bitmap: reported once, the second still read, nr_allocated not judged', () => {
  let first = 0;
  const r = openThenDamage((dev, md) => {
    first = indexEntry(dev, md, 0).block;
    const b = readBlock(dev, first);
    b[100] ^= 1;
    dev.write(b, first * 4096);
    patchBlock(md, dev, indexEntry(dev, md, 1).block, BITMAP_SALT, (_b, core, addr) => core.x.bitmapSet(addr, 7, 3));
  });
  expect(r.errors.filter((e) => e.message.startsWith(`${MSM} bitmap 0: `)).map((e) => e.mblock)).toEqual([first]);
  expect(r.errors).toContainEqual({
    code: 'ECORRUPT',
    structure: MSM,
    mblock: E + 7,
    message: `metadata block ${E + 7} has bitmap value 3 but no ref-count tree entry`,
  });
  expect(r.warnings.filter((w) => w.message.startsWith('nr_allocated'))).toEqual([]);
});

test("the superblock's nr_allocated and metadata_nr_blocks that disagree with the map are warnings", () => {
  const { dev, md } = pool();
  const used = md.superblock.metadataSm.nrAllocated;
  patchBlock(md, dev, 0, SUPERBLOCK_SALT, (buf) => setU64(buf, 192 + 8, used + 1));
  const r = checkMetadataDevice(dev);
  expect(r.errors).toEqual([]);
  expect(r.warnings).toEqual([
    { code: 'ECORRUPT', structure: MSM, message: `nr_allocated is ${used + 1}, but the bitmaps count ${used} blocks in use` },
  ]);

  patchBlock(md, dev, 0, SUPERBLOCK_SALT, (buf) => {
    setU64(buf, 192 + 8, used);
    setU64(buf, 344, NR_META - 1);
  });
  const u = checkMetadataDevice(dev);
  expect(u.errors).toEqual([]);
  expect(u.warnings).toEqual([
    {
      code: 'ECORRUPT',
      structure: 'superblock',
      mblock: 0,
      message: `metadata_nr_blocks is ${NR_META - 1}, but the metadata space map has ${NR_META} blocks`,
    },
  ]);
});
