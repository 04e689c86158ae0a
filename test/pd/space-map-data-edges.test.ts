// The data space map's door (src/pd/space-map-data.ts) at its edges: a superblock or index that does not match
// the map's size is refused as corrupt, naming the structure; block numbers past 2^32 are carried whole (and
// refused), not cut to their low word; a commit rewrites only the index entries of changed bitmaps; `changed`
// says whether the transaction touched the map.
import { describe, expect, test } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { thrown } from '../support/thrown.js';

const MiB = 1024 * 1024;
const TWO32 = 2 ** 32;
const NODE_SALT = 121107;

function expectCode(fn: () => unknown, code: string, message?: RegExp): unknown {
  const e = thrown(fn);
  expect(isThinpoolError(e, code as never), `expected ${code}, got ${String(e)}`).toBe(true);
  if (message) expect((e as Error).message).toMatch(message);
  return e;
}

function pool(nrDataBlocks: number): { dev: MemoryDevice; md: ThinMetadata } {
  const dev = new MemoryDevice(8 * MiB);
  const md = ThinMetadata.format(dev, { nrDataBlocks, dataBlockSectors: 128 });
  md.createThin(1);
  for (let v = 0; v < 10; v++) md.insertMapping(1, v, md.allocDataBlock());
  md.commit();
  return { dev, md };
}

/** Rewrite a btree node on the device with a valid checksum after `edit`. */
function editNode(md: ThinMetadata, dev: MemoryDevice, block: number, edit: (dv: DataView) => void): void {
  const core = ThinMetadata.internals(md).core;
  const buf = new Uint8Array(4096);
  dev.read(buf, block * 4096);
  core.u8.set(buf, core.scratch);
  edit(new DataView(core.u8.buffer, core.scratch, 4096));
  core.x.blockPrepare(core.scratch, NODE_SALT);
  dev.write(core.u8.slice(core.scratch, core.scratch + 4096), block * 4096);
}

describe('data space map edges', () => {
  test('a size needing more bitmaps than the metadata device has blocks is a corrupt superblock, past 2^32 too', () => {
    const { md } = pool(1000);
    const { dsm } = ThinMetadata.internals(md);
    const root = md.superblock.dataSm;
    for (const nrBlocks of [TWO32 + 1000, 2 ** 40]) {
      const e = expectCode(() => dsm.load({ ...root, nrBlocks }), 'ECORRUPT', /needs more bitmaps than the metadata device has blocks/);
      expect(e).toMatchObject({ structure: 'superblock', mblock: 0 });
    }
  });

  test('an index with fewer or more bitmaps than the size needs is corrupt, naming the index', () => {
    const small = pool(1000);
    const sRoot = small.md.superblock.dataSm;
    const e1 = expectCode(
      () => ThinMetadata.internals(small.md).dsm.load({ ...sRoot, nrBlocks: 40000 }),
      'ECORRUPT',
      /data space map index has 1 bitmaps, expected 3/,
    );
    expect(e1).toMatchObject({ structure: 'data space map index', mblock: sRoot.bitmapRoot });
    const big = pool(40000);
    const bRoot = big.md.superblock.dataSm;
    const e2 = expectCode(
      () => ThinMetadata.internals(big.md).dsm.load({ ...bRoot, nrBlocks: 1000 }),
      'ECORRUPT',
      /data space map index has more than the 1 bitmaps 1000 blocks need/,
    );
    expect(e2).toMatchObject({ structure: 'data space map index', mblock: bRoot.bitmapRoot });
  });

  test('an index whose first key is not bitmap 0 is missing a bitmap', () => {
    const { dev, md } = pool(1000);
    const root = md.superblock.dataSm.bitmapRoot;
    editNode(md, dev, root, (dv) => dv.setUint32(32, 1, true));
    const e = expectCode(() => ThinMetadata.open(dev), 'ECORRUPT', /data space map index is missing bitmap 0/);
    expect(e).toMatchObject({ structure: 'data space map index', mblock: root });
  });

  test('a bitmap block number past 2^32 in the index is refused whole, not read as its low word', () => {
    const { dev, md } = pool(1000);
    const root = md.superblock.dataSm.bitmapRoot;
    editNode(md, dev, root, (dv) => {
      const maxEntries = dv.getUint32(20, true);
      dv.setUint32(32 + maxEntries * 8 + 4, 1, true);
    });
    const e = expectCode(() => ThinMetadata.open(dev), 'EBADBLOCKNR', /out of range/);
    expect((e as { mblock: number }).mblock).toBeGreaterThan(TWO32);
  });

  test('data block numbers past 2^32 are refused whole, by count, inc and dec', () => {
    const { md } = pool(1000);
    const { dsm } = ThinMetadata.internals(md);
    const d = TWO32 + 3;
    for (const [, fn] of [
      ['count', () => dsm.count(d)],
      ['inc', () => dsm.inc(d)],
      ['dec', () => dsm.dec(d)],
    ] as const) {
      expectCode(fn, 'ECORRUPT', new RegExp(`data block ${d} beyond the data device \\(1000 blocks\\) in data space map$`));
    }
    expect(dsm.count(3)).toBe(1);
    expect(dsm.nrFree).toBe(990);
    dsm.inc(3);
    expect(dsm.dec(3)).toBe(1);
    expect(dsm.dec(3)).toBe(0);
    expect(dsm.nrFree).toBe(991);
    expectCode(() => dsm.dec(3), 'ECORRUPT', /data block 3 reference count underflow in data space map$/);
  });

  test('a size of 0 data blocks with a bitmap in the index is an index with too many bitmaps', () => {
    const { md } = pool(1000);
    const root = md.superblock.dataSm;
    expectCode(
      () => ThinMetadata.internals(md).dsm.load({ ...root, nrBlocks: 0 }),
      'ECORRUPT',
      /has more than the 0 bitmaps 0 blocks need/,
    );
  });

  test('growing the data device past 2^32 blocks is refused whole, not taken as its low word', () => {
    const { md } = pool(1000);
    expect(thrown(() => md.extendData(TWO32 + 2000))).toBeDefined();
    expect(md.nrDataBlocks).toBe(1000);
  });

  test('freed blocks start empty after format and open; the index entries written hold the free count and hint', () => {
    const { dev, md } = pool(1000);
    expect(md.takeFreedDataBlocks()).toEqual([]);
    const re = ThinMetadata.open(dev);
    expect(re.takeFreedDataBlocks()).toEqual([]);
    const buf = new Uint8Array(4096);
    dev.read(buf, md.superblock.dataSm.bitmapRoot * 4096);
    const dv = new DataView(buf.buffer);
    const v = 32 + dv.getUint32(20, true) * 8;
    expect([dv.getUint32(v + 8, true), dv.getUint32(v + 12, true)]).toEqual([990, 10]);
  });

  test('the ref-count root is carried whole: one past 2^32 is not the committed tree', () => {
    const dev = new MemoryDevice(8 * MiB);
    const md = ThinMetadata.format(dev, { nrDataBlocks: 1000, dataBlockSectors: 128 });
    md.createThin(1);
    const b = md.allocDataBlock();
    md.insertMapping(1, 0, b);
    md.commit();
    for (const id of [2, 3, 4]) md.createSnapshot(id, 1);
    for (const id of [2, 3, 4]) md.insertMapping(id, 0, b);
    md.commit();
    const { dsm } = ThinMetadata.internals(md);
    expect(dsm.count(b)).toBeGreaterThanOrEqual(3);
    const root = md.superblock.dataSm;
    dsm.load({ ...root, refCountRoot: root.refCountRoot + TWO32 });
    expect(thrown(() => dsm.count(b))).toBeDefined();
  });

  test('changed follows the transaction; a commit that changes no count keeps the index root', () => {
    const { md } = pool(40000);
    const { dsm } = ThinMetadata.internals(md);
    expect(dsm.changed).toBe(false);
    const root = md.superblock.dataSm.bitmapRoot;
    md.createThin(2);
    md.commit();
    expect(md.superblock.dataSm.bitmapRoot).toBe(root);
    md.insertMapping(2, 0, md.allocDataBlock());
    expect(dsm.changed).toBe(true);
    md.commit();
    expect(dsm.changed).toBe(false);
  });

  test('a growth that was aborted leaves no index entry behind: the next commit writes the committed bitmaps only', () => {
    const { dev, md } = pool(1000);
    md.extendData(40000);
    md.abort();
    expect(md.nrDataBlocks).toBe(1000);
    md.insertMapping(1, 10, md.allocDataBlock());
    md.commit();
    const re = ThinMetadata.open(dev);
    expect(re.nrDataBlocks).toBe(1000);
    expect(re.dataUsedBlocks).toBe(11);
  });
});
