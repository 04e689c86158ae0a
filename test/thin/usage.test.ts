// deviceUsage (src/thin/usage.ts, thin_ls's MAPPED / EXCLUSIVE / SHARED) counted without walking what snapshots
// share, on metadata whose data blocks spread over many space-map bitmaps: reopened with a metadata cache that
// holds every bitmap (lookups in walk order) and with one too small for them (each batch sorted first), the same
// counts, equal to a count made here from the mappings themselves.
import { expect, test } from 'vitest';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { ENTRIES_PER_BITMAP } from '../../src/pd/space-map-metadata.js';
import { DEFAULT_CACHE_BLOCKS, ThinMetadata } from '../../src/thin/metadata.js';
import { deviceUsage, usageCacheBlocks } from '../../src/thin/usage.js';

const MiB = 1024 * 1024;
const NR_DATA = 40 * ENTRIES_PER_BITMAP; // 40 bitmaps: more than half of the smallest cache (64 blocks)

/** Device 1 maps 3,000 blocks spread over every bitmap; 2 is its snapshot with every 7th block rewritten; 3 maps 50 blocks twice. */
function build() {
  const dev = new MemoryDevice(64 * MiB);
  const md = ThinMetadata.format(dev, { nrDataBlocks: NR_DATA, dataBlockSectors: 128 });
  md.createThin(1);
  const stride = Math.floor(NR_DATA / 3000);
  for (let v = 0; v < 3000; v++) md.insertMappingRaw(1, v, (v * 7919 * stride) % NR_DATA, 0);
  md.commit();
  md.createSnapshot(2, 1);
  let fresh = 0;
  for (let v = 0; v < 3000; v += 7) {
    while (md.dataBlockCount(fresh) !== 0) fresh++;
    md.insertMappingRaw(2, v, fresh, 1);
  }
  md.createThin(3);
  for (let v = 0; v < 50; v++) {
    while (md.dataBlockCount(fresh) !== 0) fresh++;
    md.insertMappingRaw(3, v, fresh, 1);
    md.insertMappingRaw(3, v + 1000, fresh, 1); // mapped twice by one device: shared (thin_ls)
  }
  md.commit();
  return { dev, md };
}

/** MAPPED / EXCLUSIVE / SHARED from the mappings: a block is exclusive when it is mapped exactly once in the pool. */
function expected(md: ThinMetadata): Map<number, { mappedBlocks: number; exclusiveBlocks: number; sharedBlocks: number }> {
  const times = new Map<number, number>();
  const byDevice = new Map<number, number[]>();
  for (const id of [1, 2, 3]) {
    const ds: number[] = [];
    md.forEachMapping(id, (_v, d) => {
      ds.push(d);
      times.set(d, (times.get(d) ?? 0) + 1);
    });
    byDevice.set(id, ds);
  }
  const out = new Map();
  for (const [id, ds] of byDevice) {
    const excl = ds.filter((d) => times.get(d) === 1).length;
    out.set(id, { mappedBlocks: ds.length, exclusiveBlocks: excl, sharedBlocks: ds.length - excl });
  }
  return out;
}

test('usage over 40 bitmaps: the same counts with every bitmap resident and with a cache too small for them', () => {
  const { dev, md } = build();
  const want = expected(md);
  expect(deviceUsage(md)).toEqual(want);
  for (const cacheBlocks of [4096, 64, usageCacheBlocks(NR_DATA)]) {
    const again = ThinMetadata.open(dev, { readOnly: true, cacheBlocks });
    expect(again.cacheBlocks).toBe(cacheBlocks);
    expect(deviceUsage(again)).toEqual(want);
  }
  // The shape of the pool: the snapshot's rewritten blocks and the origin's blocks under them are exclusive.
  const rewritten = Math.ceil(3000 / 7);
  expect(want.get(1)).toEqual({ mappedBlocks: 3000, exclusiveBlocks: rewritten, sharedBlocks: 3000 - rewritten });
  expect(want.get(2)).toEqual({ mappedBlocks: 3000, exclusiveBlocks: rewritten, sharedBlocks: 3000 - rewritten });
  expect(want.get(3)).toEqual({ mappedBlocks: 100, exclusiveBlocks: 0, sharedBlocks: 100 });
});

test('usageCacheBlocks: every bitmap twice over plus the leaves of one batch, within [512, DEFAULT_CACHE_BLOCKS]', () => {
  expect(usageCacheBlocks(0)).toBe(512);
  expect(usageCacheBlocks(1)).toBe(514);
  expect(usageCacheBlocks(NR_DATA)).toBe(2 * 40 + 512);
  // The thinpool ls benchmark's pools: 600,000 data blocks (1 M mappings), 3,000,000 (5 M).
  expect(usageCacheBlocks(600_000)).toBe(2 * Math.ceil(600_000 / ENTRIES_PER_BITMAP) + 512);
  expect(usageCacheBlocks(3_000_000)).toBe(2 * Math.ceil(3_000_000 / ENTRIES_PER_BITMAP) + 512);
  expect(usageCacheBlocks(2 ** 40)).toBe(DEFAULT_CACHE_BLOCKS);
  for (let n = 0; n < 200 * ENTRIES_PER_BITMAP; n += 7919) {
    // Holds every bitmap in half of itself: unsharedEntries looks batches up unsorted.
    expect(Math.ceil(n / ENTRIES_PER_BITMAP)).toBeLessThanOrEqual(usageCacheBlocks(n) / 2);
  }
});
