/**
 * The checker's space-map half (src/thin/check-space-maps.ts) on deliberately damaged maps: index hints
 * (warnings), bitmap values of 3 against ref-count tree entries, ref-count entries that are too small or past
 * the map, missing or extra index entries, unreadable bitmaps (reported once, their blocks skipped), each
 * worded and placed exactly.
 */
import { describe, expect, test } from 'vitest';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { checkMetadata, checkMetadataDevice } from '../../src/thin/check.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { ENTRIES_PER_BITMAP } from '../../src/pd/space-map-metadata.js';
import { INDEX_ENTRY, U32 } from '../../src/pd/value-types.js';
import { BITMAP_SALT, NODE_SALT, patchBlock, readBlock, setU64, u64, valueOffset } from '../support/metadata-patch.js';

const MiB = 1024 * 1024;
const DSM = 'data space map';

/** Device 1 maps virtual blocks 0..9 to data blocks 0..9; snapshots 2, 3 and 4 share them (count 4). */
function pool(nrData = 1000): { dev: MemoryDevice; md: ThinMetadata } {
  const dev = new MemoryDevice(4 * MiB);
  const md = ThinMetadata.format(dev, { nrDataBlocks: nrData, dataBlockSectors: 128 });
  md.createThin(1);
  for (let v = 0; v < 10; v++) md.insertMapping(1, v, md.allocDataBlock());
  md.createThin(9);
  for (const id of [2, 3, 4]) {
    md.createThin(id + 10);
    for (let v = 0; v < 10; v++) md.insertMappingRaw(id + 10, v, v, 0); // data blocks 0..9 now count 4
  }
  md.commit();
  expect(checkMetadata(md).errors).toEqual([]);
  expect(md.dataBlockCount(3)).toBe(4);
  return { dev, md };
}

/** The data space map's index leaf (the root) and its first bitmap block. */
function dataIndex(dev: MemoryDevice, md: ThinMetadata): { leaf: number; bitmap: number } {
  const leaf = md.superblock.dataSm.bitmapRoot;
  const buf = readBlock(dev, leaf);
  return { leaf, bitmap: u64(buf, valueOffset(buf, 0, INDEX_ENTRY.size)) };
}

describe('index hints are warnings', () => {
  test('nr_free and none_free_before that disagree with the bitmap', () => {
    const { dev, md } = pool();
    const { leaf, bitmap } = dataIndex(dev, md);
    // Blocks 0..9 are used: 990 free, the first free entry is 10.
    patchBlock(md, dev, leaf, NODE_SALT, (buf) => {
      const off = valueOffset(buf, 0, INDEX_ENTRY.size);
      const dv = new DataView(buf.buffer, buf.byteOffset);
      expect([dv.getUint32(off + 8, true), dv.getUint32(off + 12, true)]).toEqual([990, 10]);
      dv.setUint32(off + 8, 995, true);
      dv.setUint32(off + 12, 11, true);
    });
    const r = checkMetadataDevice(dev);
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([
      {
        code: 'ECORRUPT',
        structure: DSM,
        mblock: bitmap,
        message: `index entry 0: nr_free 995, but bitmap block ${bitmap} has 990 free entries`,
      },
      {
        code: 'ECORRUPT',
        structure: DSM,
        mblock: bitmap,
        message: `index entry 0: none_free_before 11, but entry 10 of bitmap block ${bitmap} is free`,
      },
    ]);
    // none_free_before below the first free entry is only a weaker hint.
    patchBlock(md, dev, leaf, NODE_SALT, (buf) => {
      const off = valueOffset(buf, 0, INDEX_ENTRY.size);
      const dv = new DataView(buf.buffer, buf.byteOffset);
      dv.setUint32(off + 8, 990, true);
      dv.setUint32(off + 12, 3, true);
    });
    expect(checkMetadataDevice(dev).warnings).toEqual([]);
  });

  test('a full bitmap: none_free_before may be its length', () => {
    const { dev, md } = pool(10);
    expect(md.dataFreeBlocks).toBe(0);
    const r = checkMetadataDevice(dev);
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(r.stats.dataBlocksUsed).toBe(10);
  });

  test('a block marked used that nothing maps: an error for its count, a warning for nr_allocated', () => {
    const { dev, md } = pool();
    const { bitmap } = dataIndex(dev, md);
    patchBlock(md, dev, bitmap, BITMAP_SALT, (_b, core, addr) => core.x.bitmapSet(addr, 500, 1));
    const r = checkMetadataDevice(dev);
    expect(r.errors).toEqual([
      { code: 'ECORRUPT', structure: DSM, message: 'data reference counts differ for block 500, expected 0, but got 1' },
    ]);
    expect(r.warnings).toContainEqual({
      code: 'ECORRUPT',
      structure: DSM,
      message: 'nr_allocated is 10, but the bitmaps count 11 data blocks in use',
    });
  });
});

describe('bitmap value 3 and the ref-count tree', () => {
  test('a data block with bitmap value 3 but no ref-count tree entry', () => {
    const { dev, md } = pool();
    const { bitmap } = dataIndex(dev, md);
    patchBlock(md, dev, bitmap, BITMAP_SALT, (_b, core, addr) => core.x.bitmapSet(addr, 600, 3));
    const r = checkMetadataDevice(dev);
    expect(r.errors).toContainEqual({
      code: 'ECORRUPT',
      structure: DSM,
      message: 'data block 600 has bitmap value 3 but no ref-count tree entry',
    });
    // Its count cannot be read either: reported for that block, the others compared as usual.
    expect(r.errors.some((e) => e.message.startsWith('data block 600: '))).toBe(true);
    expect(r.errors.length).toBe(2);
  });

  test('a ref-count tree entry whose bitmap value is not 3', () => {
    const { dev, md } = pool();
    const { bitmap } = dataIndex(dev, md);
    patchBlock(md, dev, bitmap, BITMAP_SALT, (_b, core, addr) => core.x.bitmapSet(addr, 3, 2));
    const r = checkMetadataDevice(dev);
    const root = md.superblock.dataSm.refCountRoot;
    expect(r.errors).toContainEqual({
      code: 'ECORRUPT',
      structure: 'data ref-count tree',
      mblock: root,
      message: 'data ref-count tree has an entry for data block 3, but its bitmap value is 2',
    });
    expect(r.errors.map((e) => e.message)).toContain('data reference counts differ for block 3, expected 4, but got 2');
  });

  test('ref-count tree entries below 3 or past the data device', () => {
    const { dev, md } = pool();
    const root = md.superblock.dataSm.refCountRoot;
    patchBlock(md, dev, root, NODE_SALT, (buf) => {
      const dv = new DataView(buf.buffer, buf.byteOffset);
      expect(dv.getUint32(16, true)).toBe(10); // blocks 0..9
      dv.setUint32(valueOffset(buf, 2, U32.size), 2, true); // block 2 holds 2
      setU64(buf, 32 + 8 * 9, 1000); // block 9's entry now names block 1000
    });
    const r = checkMetadataDevice(dev);
    expect(r.errors).toContainEqual({
      code: 'ECORRUPT',
      structure: 'data ref-count tree',
      mblock: root,
      message: 'data ref-count tree entry for data block 2 holds 2 (< 3)',
    });
    expect(r.errors).toContainEqual({
      code: 'ECORRUPT',
      structure: 'data ref-count tree',
      mblock: root,
      message: 'data ref-count tree has an entry for data block 1000, beyond the space map (1000 blocks)',
    });
    expect(r.errors).toContainEqual({
      code: 'ECORRUPT',
      structure: DSM,
      message: 'data block 9 has bitmap value 3 but no ref-count tree entry',
    });
  });

  test('a metadata block with bitmap value 3 but no ref-count tree entry', () => {
    const { dev, md } = pool();
    const index = readBlock(dev, md.superblock.metadataSm.bitmapRoot);
    const bitmap = u64(index, 16);
    const victim = md.superblock.deviceDetailsRoot;
    patchBlock(md, dev, bitmap, BITMAP_SALT, (_b, core, addr) => core.x.bitmapSet(addr, victim, 3));
    const r = checkMetadataDevice(dev);
    expect(r.errors).toContainEqual({
      code: 'ECORRUPT',
      structure: 'metadata space map',
      mblock: victim,
      message: `metadata block ${victim} has bitmap value 3 but no ref-count tree entry`,
    });
  });
});

/**
 * The data space map's index and bitmaps are validated when the metadata is opened, so damage to them reaches
 * the checker only when it comes after the open: a pool of two bitmaps with enough mapping leaves (device 5) to
 * push the space map's blocks out of a small block cache, opened, then damaged, then checked. Device 5 maps
 * blocks of both bitmaps; devices 6 and 7 share its block ENTRIES_PER_BITMAP, the first of bitmap 1 (count 3: a
 * ref-count tree entry in each bitmap).
 */
function openThenDamage(damage: (dev: MemoryDevice, md: ThinMetadata) => void, nrData = TWO): ReturnType<typeof checkMetadata> {
  const { dev, md } = pool(nrData);
  md.createThin(5);
  for (let v = 0; v < 16400; v++) md.insertMapping(5, v, md.allocDataBlock());
  for (const id of [6, 7]) {
    md.createThin(id);
    md.insertMappingRaw(id, 0, ENTRIES_PER_BITMAP, 0);
  }
  md.commit();
  expect(md.dataBlockCount(ENTRIES_PER_BITMAP)).toBe(3);
  const ro = ThinMetadata.open(dev, { readOnly: true, cacheBlocks: 64 });
  damage(dev, md);
  return checkMetadata(ro);
}

/** Two bitmaps' worth of data blocks. */
const TWO = ENTRIES_PER_BITMAP + 100;

describe('the data space map index', () => {
  test('a missing entry and an entry past the bitmaps the data device needs', () => {
    let leaf = 0;
    const r = openThenDamage((dev, md) => {
      leaf = dataIndex(dev, md).leaf;
      patchBlock(md, dev, leaf, NODE_SALT, (buf) => {
        expect(new DataView(buf.buffer, buf.byteOffset).getUint32(16, true)).toBe(2);
        setU64(buf, 32 + 8, 2); // the entry for bitmap 1 now says 2
      });
    });
    expect(r.errors).toContainEqual({
      code: 'ECORRUPT',
      structure: 'data space map index tree',
      mblock: leaf,
      message: `data space map index has an entry for bitmap 2, but ${TWO} data blocks need 2`,
    });
    expect(r.errors).toContainEqual({
      code: 'ECORRUPT',
      structure: 'data space map index tree',
      mblock: leaf,
      message: 'data space map index has no entry for bitmap 1',
    });
    // Bitmap 1 unread: no count of its blocks is compared, and nr_allocated is not judged.
    expect(r.errors.some((e) => e.message.startsWith('data reference counts differ'))).toBe(false);
    expect(r.warnings).toEqual([]);
  });

  test('an unreadable bitmap is reported once and its blocks skipped; the other bitmap is still compared', () => {
    let second = 0;
    const r = openThenDamage((dev, md) => {
      const leafBuf = readBlock(dev, md.superblock.dataSm.bitmapRoot);
      const first = u64(leafBuf, valueOffset(leafBuf, 0, INDEX_ENTRY.size));
      second = u64(leafBuf, valueOffset(leafBuf, 1, INDEX_ENTRY.size));
      patchBlock(md, dev, first, BITMAP_SALT, (_b, core, addr) => core.x.bitmapSet(addr, 16100, 2));
      const b = readBlock(dev, second);
      b[100] ^= 1;
      dev.write(b, second * 4096);
    });
    const bad = r.errors.filter((e) => e.message.startsWith(`${DSM} bitmap 1: `));
    expect(bad.length, JSON.stringify(r.errors)).toBe(1);
    expect(bad[0]!.mblock).toBe(second);
    expect(r.errors.map((e) => e.message)).toContain('data reference counts differ for block 16100, expected 1, but got 2');
    expect(r.errors.length).toBe(2);
    expect(r.warnings.some((w) => w.message.startsWith('nr_allocated'))).toBe(false);
  });

  test('ref-count entries in both bitmaps are each checked against their own bitmap, also past an unreadable one', () => {
    const clean = openThenDamage(() => undefined);
    expect(clean.errors).toEqual([]);
    expect(clean.warnings).toEqual([]);
    let first = 0;
    const r = openThenDamage((dev, md) => {
      const leafBuf = readBlock(dev, md.superblock.dataSm.bitmapRoot);
      first = u64(leafBuf, valueOffset(leafBuf, 0, INDEX_ENTRY.size));
      const second = u64(leafBuf, valueOffset(leafBuf, 1, INDEX_ENTRY.size));
      patchBlock(md, dev, second, BITMAP_SALT, (_b, core, addr) => core.x.bitmapSet(addr, 0, 2));
      const b = readBlock(dev, first);
      b[100] ^= 1;
      dev.write(b, first * 4096);
    });
    const root = r.errors.find((e) => e.structure === 'data ref-count tree')?.mblock;
    expect(r.errors.filter((e) => e.structure === 'data ref-count tree')).toEqual([
      {
        code: 'ECORRUPT',
        structure: 'data ref-count tree',
        mblock: root,
        message: `data ref-count tree has an entry for data block ${ENTRIES_PER_BITMAP}, but its bitmap value is 2`,
      },
    ]);
    expect(r.errors.filter((e) => e.message.startsWith(`${DSM} bitmap 0: `)).map((e) => e.mblock)).toEqual([first]);
    expect(r.errors).toContainEqual({
      code: 'ECORRUPT',
      structure: DSM,
      message: `data reference counts differ for block ${ENTRIES_PER_BITMAP}, expected 3, but got 2`,
    });
    expect(r.errors.length).toBe(3);
  });

  test('an index entry past the metadata device: reported, its bitmap skipped, nr_allocated not judged', () => {
    let nrMeta = 0;
    let second = 0;
    const r = openThenDamage((dev, md) => {
      nrMeta = md.inspect().nrMetadataBlocks;
      const leafBuf = readBlock(dev, md.superblock.dataSm.bitmapRoot);
      second = u64(leafBuf, valueOffset(leafBuf, 1, INDEX_ENTRY.size));
      patchBlock(md, dev, md.superblock.dataSm.bitmapRoot, NODE_SALT, (buf) =>
        setU64(buf, valueOffset(buf, 1, INDEX_ENTRY.size), nrMeta + 5),
      );
    });
    const where = 'data space map index entry 1';
    expect(r.errors).toEqual([
      {
        code: 'EBADBLOCKNR',
        structure: where,
        mblock: nrMeta + 5,
        message: `reference to block ${nrMeta + 5} beyond the metadata device (${nrMeta} blocks) from ${where}`,
      },
      {
        code: 'ECORRUPT',
        structure: 'metadata space map',
        mblock: second,
        message: `metadata reference counts differ for block ${second}, expected 0, but got 1`,
      },
    ]);
    expect(r.warnings).toEqual([]);
  });

  test('past an unreadable middle bitmap, the counts of the next bitmap are still compared', () => {
    const E = ENTRIES_PER_BITMAP;
    let second = 0;
    const r = openThenDamage(
      (dev, md) => {
        const leafBuf = readBlock(dev, md.superblock.dataSm.bitmapRoot);
        second = u64(leafBuf, valueOffset(leafBuf, 1, INDEX_ENTRY.size));
        const third = u64(leafBuf, valueOffset(leafBuf, 2, INDEX_ENTRY.size));
        patchBlock(md, dev, third, BITMAP_SALT, (_b, core, addr) => core.x.bitmapSet(addr, 5, 1));
        const b = readBlock(dev, second);
        b[100] ^= 1;
        dev.write(b, second * 4096);
      },
      2 * E + 100,
    );
    expect(r.errors.filter((e) => e.message.startsWith(`${DSM} bitmap 1: `)).map((e) => e.mblock)).toEqual([second]);
    expect(r.errors).toContainEqual({
      code: 'ECORRUPT',
      structure: DSM,
      message: `data reference counts differ for block ${2 * E + 5}, expected 0, but got 1`,
    });
    expect(r.errors.length).toBe(2);
  });
});
