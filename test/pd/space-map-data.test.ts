/**
 * The data space map as the engine uses it (assembly/space-map-data.ts behind src/pd/space-map-data.ts):
 * counts through the bitmap and the ref-count tree, the rule that a block freed in a transaction is not reused
 * before the commit, growth across bitmaps, and corrupt counts named by structure and block. Every committed
 * state is checked with the full checker (every reference count).
 */
import { describe, expect, test } from 'vitest';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { isThinpoolError } from '../../src/errors.js';
import { checkMetadataDevice } from '../../src/thin/check.js';
import { ThinMetadata } from '../../src/thin/metadata.js';

const MiB = 1024 * 1024;
const NODE_SALT = 121107;

function expectClean(dev: MemoryDevice): void {
  const r = checkMetadataDevice(dev);
  expect(r.errors.map((e) => e.message)).toEqual([]);
}

function expectCode(fn: () => unknown, code: string, message?: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(isThinpoolError(caught, code as never), `expected ${code}, got ${String(caught)}`).toBe(true);
  if (message) expect((caught as Error).message).toMatch(message);
}

/** Device 1 maps vblocks 0..9; devices 2..4 are snapshots of it that each broke sharing of the leaf. */
function sharedPool(nrDataBlocks: number): { dev: MemoryDevice; md: ThinMetadata; d: number[] } {
  const dev = new MemoryDevice(8 * MiB);
  const md = ThinMetadata.format(dev, { nrDataBlocks, dataBlockSectors: 128 });
  md.createThin(1);
  const d: number[] = [];
  for (let v = 0; v < 10; v++) {
    d.push(md.allocDataBlock());
    md.insertMapping(1, v, d[v]);
  }
  md.commit();
  for (const id of [2, 3, 4]) md.createSnapshot(id, 1);
  for (const id of [2, 3, 4]) md.insertMapping(id, 100, md.allocDataBlock());
  md.commit();
  return { dev, md, d };
}

describe('data space map', () => {
  test('shadowing shared leaves counts each data block once per tree, past 2 into the ref-count tree', () => {
    const { dev, md, d } = sharedPool(1000);
    for (const b of d) expect(md.dataBlockCount(b)).toBe(4);
    expect(md.dataUsedBlocks).toBe(13);
    expectClean(dev);
    md.deleteDevice(2);
    md.deleteDevice(3);
    for (const b of d) expect(md.dataBlockCount(b)).toBe(2);
    md.commit();
    expectClean(dev);
  });

  test('counts of many blocks at once equal their counts one by one (0, 1, 2 and from the ref-count tree); a block past the device is refused', () => {
    const { md, d } = sharedPool(1000);
    md.deleteDevice(4); // d: count 3 (ref-count tree entries)
    md.createThin(9);
    md.insertMappingRaw(9, 0, d[0], 0); // d[0]: 4
    const look = md.inspect();
    const blocks = new Float64Array([...d, 10, 11, 12, 500, 999, d[0]]);
    const out = new Uint32Array(blocks.length).fill(77);
    look.dataCounts(blocks, blocks.length - 1, out); // the last is left out
    expect([...out.subarray(0, blocks.length - 1)]).toEqual([...blocks.subarray(0, blocks.length - 1)].map((b) => md.dataBlockCount(b)));
    expect(out[blocks.length - 1]).toBe(77);
    expect(out[0]).toBe(4);
    expect(out[1]).toBe(3);
    expect([...out.subarray(10, 15)]).toEqual([1, 1, 0, 0, 0]);
    expectCode(
      () => look.dataCounts(new Float64Array([0, 1000]), 2, new Uint32Array(2)),
      'ECORRUPT',
      /data block 1000 beyond the data device \(1000 blocks\) in data space map/,
    );
  });

  test('blocks freed in a transaction count as free at once but are reused only after the commit', () => {
    const { dev, md, d } = sharedPool(20);
    md.takeFreedDataBlocks();
    for (const id of [1, 2, 3, 4]) md.deleteDevice(id);
    expect(md.dataUsedBlocks).toBe(0);
    expect(md.dataFreeBlocks).toBe(20);
    expect(md.dataFreedInTransaction).toBe(13);
    const freed = md.takeFreedDataBlocks();
    expect(freed.length).toBe(13);
    expect(new Set(freed)).toEqual(new Set([...d, ...freed.filter((b) => !d.includes(b))]));
    const fresh: number[] = [];
    for (let i = 0; i < 7; i++) fresh.push(md.allocDataBlock());
    for (const b of fresh) expect(freed).not.toContain(b);
    expectCode(() => md.allocDataBlock(), 'ENOSPC_DATA', /out of data space/);
    md.createThin(9);
    fresh.forEach((b, v) => {
      md.insertMapping(9, v, b);
    });
    md.commit();
    expectClean(dev);
    expect(md.dataFreedInTransaction).toBe(0);
    const again = new Set<number>();
    for (let i = 0; i < 13; i++) again.add(md.allocDataBlock());
    expect(again).toEqual(new Set(freed));
    [...again].forEach((b, v) => {
      md.insertMapping(9, 100 + v, b);
    });
    md.commit();
    expectClean(dev);
  });

  test('growing the data device across bitmaps keeps counts; shrinking is refused', () => {
    const dev = new MemoryDevice(8 * MiB);
    const md = ThinMetadata.format(dev, { nrDataBlocks: 16000, dataBlockSectors: 128 });
    md.createThin(1);
    for (let v = 0; v < 16000; v++) md.insertMapping(1, v, md.allocDataBlock());
    expectCode(() => md.allocDataBlock(), 'ENOSPC_DATA');
    md.extendData(40000);
    const more: number[] = [];
    for (let v = 0; v < 24000; v++) more.push(md.allocDataBlock());
    expect(Math.min(...more)).toBe(16000);
    expect(Math.max(...more)).toBe(39999);
    more.forEach((b, i) => {
      md.insertMapping(1, 16000 + i, b);
    });
    md.commit();
    expectClean(dev);
    expectCode(() => md.extendData(100), 'EINVAL', /cannot shrink/);
    const re = ThinMetadata.open(dev);
    expect(re.nrDataBlocks).toBe(40000);
    expect(re.dataUsedBlocks).toBe(40000);
    expect(re.dataBlockCount(39999)).toBe(1);
    expectCode(() => re.dataBlockCount(40000), 'ECORRUPT', /data block 40000 beyond the data device \(40000 blocks\)/);
  });

  test('a bitmap entry of 3 without a ref-count entry is refused, naming the data block and the tree', () => {
    const { dev, md, d } = sharedPool(1000);
    const refRoot = md.superblock.dataSm.refCountRoot;
    // The ref-count tree is one leaf holding d's counts (all 4): empty it, with a valid checksum.
    const core = ThinMetadata.internals(md).core;
    const buf = new Uint8Array(4096);
    dev.read(buf, refRoot * 4096);
    core.u8.set(buf, core.scratch);
    core.u32[(core.scratch + 16) >>> 2] = 0;
    core.x.blockPrepare(core.scratch, NODE_SALT);
    dev.write(core.u8.slice(core.scratch, core.scratch + 4096), refRoot * 4096);
    const re = ThinMetadata.open(dev);
    expectCode(
      () => re.dataBlockCount(d[0]),
      'ECORRUPT',
      new RegExp(`data block ${d[0]} has bitmap value 3 but no ref-count entry in data ref-count tree \\(block ${refRoot}\\)`),
    );
    const r = checkMetadataDevice(dev);
    expect(r.ok).toBe(false);
  });
});
