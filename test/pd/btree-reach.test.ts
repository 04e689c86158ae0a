// The mapping btrees at their reach, through the pool: keys past 2^32 (virtual blocks of a volume larger than
// 256 TiB at 64 KiB blocks; the key crosses into WASM as two 32-bit halves) stay apart from keys with the same
// low 32 bits, for lookup, insert and remove; and a range walk over a tree of several levels visits exactly
// the entries of its range, whatever leaves the range starts and ends in; a pool with more volumes than a leaf
// holds is walked through internal nodes when it opens.
import { expect, test } from 'vitest';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { ThinPool } from '../../src/thin/pool.js';
import { fill, keepOpen } from '../support/model.js';

const BS = 64 * 1024;
const TWO32 = 2 ** 32;

test('virtual blocks past 2^32 map, read, list and discard apart from those with the same low 32 bits', () => {
  const pool = ThinPool.memory({ size: 64 * BS, blockSize: BS });
  const v = pool.createThinSync('huge', { size: (TWO32 + 64) * BS });
  const low = 7;
  const high = TWO32 + 7;
  v.writeSync(fill(100, 1), low * BS);
  v.writeSync(fill(100, 2), high * BS);
  v.writeSync(fill(100, 3), (TWO32 + 9) * BS);
  expect(pool.status().dataBlocks.used, 'three blocks, not two').toBe(3);
  const got = new Uint8Array(100);
  v.readSync(got, low * BS);
  expect(Buffer.compare(got, fill(100, 1))).toBe(0);
  v.readSync(got, high * BS);
  expect(Buffer.compare(got, fill(100, 2))).toBe(0);
  expect(v.map().map((e) => e.offsetBytes / BS)).toEqual([low, high, TWO32 + 9]);
  expect(v.extents(high * BS, BS).map((e) => e.offsetBytes / BS)).toEqual([high]);

  // Discarding the high block leaves the low one, and the other way round.
  v.discardSync(high * BS, BS);
  v.readSync(got, low * BS);
  expect(Buffer.compare(got, fill(100, 1))).toBe(0);
  v.readSync(got, high * BS);
  expect(got.every((x) => x === 0)).toBe(true);
  v.writeSync(fill(100, 4), high * BS);
  v.discardSync(low * BS, BS);
  v.readSync(got, high * BS);
  expect(Buffer.compare(got, fill(100, 4))).toBe(0);
  expect(v.map().map((e) => e.offsetBytes / BS)).toEqual([high, TWO32 + 9]);
  pool.commitSync();
  pool.closeSync();
});

test('range walks over a mapping tree of several levels visit exactly the range', () => {
  const pool = ThinPool.memory({ size: 4096 * BS, blockSize: BS });
  const n = 3000; // a leaf holds at most 254 mappings: the tree has an internal level
  const v = pool.createThinSync('v', { size: 2 * n * BS });
  const mapped: number[] = [];
  // Every other virtual block, so that no two mapped blocks coalesce into one extent.
  for (let i = 0; i < n; i++) {
    v.writeSync(fill(8, i), 2 * i * BS);
    mapped.push(2 * i);
  }
  pool.commitSync();
  const starts = (off: number, len: number) => v.extents(off * BS, len * BS).map((e) => e.offsetBytes / BS);
  for (const [first, len] of [
    [0, 1],
    [1, 1],
    [500, 1000],
    [1999, 2],
    [2 * n - 300, 300],
    [777, 3001],
    [0, 2 * n],
    [2 * n - 1, 1],
  ]) {
    expect(starts(first, len), `blocks ${first}..${first + len}`).toEqual(mapped.filter((b) => b >= first && b < first + len));
  }
  expect(v.map().length).toBe(n);
  pool.closeSync();
});

test('a pool of more volumes than a leaf holds reopens with every volume: tree walks go through internal nodes', () => {
  const meta = new MemoryDevice(8 * 1024 * 1024);
  const data = new MemoryDevice(1024 * BS);
  const catalog = new MemoryCatalogStore();
  const storage = () => ({ metadata: keepOpen(meta), data: keepOpen(data), catalog });
  const pool = ThinPool.formatStorage(storage(), { size: 1024 * BS, blockSize: BS });
  const n = 600; // the device tree and the details tree each need more than two leaves
  for (let i = 0; i < n; i++) {
    const v = pool.createThinSync(`v${i}`, { size: 4 * BS });
    v.writeSync(fill(8, i), (i % 4) * BS);
  }
  pool.closeSync();
  const again = ThinPool.openStorage(storage());
  expect(again.list().length).toBe(n);
  const got = new Uint8Array(8);
  for (const i of [0, 253, 254, 255, 400, n - 1]) {
    again.volume(`v${i}`).readSync(got, (i % 4) * BS);
    expect(Buffer.compare(got, fill(8, i)), `v${i}`).toBe(0);
  }
  expect(again.status().dataBlocks.used).toBe(n);
  again.closeSync();
});
