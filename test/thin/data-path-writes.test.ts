// Writes into new blocks (src/thin/data-path.ts) seen from a recording data device: a part written into a new
// block that may hold old bytes is surrounded by one zeroing write on each side (in pieces of at most 1 MiB for
// larger blocks), a pristine block above the high-water mark gets the part alone; the next commit flushes the
// data device after a new block and after a rollback's copied tail.
import { expect, test } from 'vitest';
import { fill, readBytes as read, sameBytes as same } from '../support/model.js';
import { recordingPool } from '../support/recording-pool.js';

const BS = 64 * 1024;
const MiB = 1024 * 1024;

/** The data block (in bytes) of the block of v holding offset `at`. */
function blockAt(v: { map(): Array<{ offsetBytes: number; lengthBytes: number; dblock: number }> }, at: number, bs: number): number {
  const e = v.map().find((x) => x.offsetBytes <= at && at < x.offsetBytes + x.lengthBytes)!;
  return (e.dblock + Math.floor((at - e.offsetBytes) / bs)) * bs;
}

test('a part written into a new block that may hold old bytes: one zeroing write each side, then the part', () => {
  const { pool, data } = recordingPool(8, BS);
  const v = pool.createThinSync('v', { size: 4 * BS });
  v.writeSync(fill(100, 1), 1000);
  const a = blockAt(v, 0, BS);
  expect(data.calls.writes).toEqual([
    [a, 1000],
    [a + 1100, BS - 1100],
    [a + 1000, 100],
  ]);
  data.clear();
  v.writeSync(fill(100, 2), BS); // at the start of a block: nothing to zero before it
  const b = blockAt(v, BS, BS);
  expect(data.calls.writes).toEqual([
    [b + 100, BS - 100],
    [b, 100],
  ]);
  data.clear();
  v.writeSync(fill(100, 3), 3 * BS - 100); // at the end of a block: nothing after it
  const c = blockAt(v, 2 * BS, BS);
  expect(data.calls.writes).toEqual([
    [c, BS - 100],
    [c + BS - 100, 100],
  ]);
  const want = new Uint8Array(3 * BS);
  want.set(fill(100, 1), 1000);
  want.set(fill(100, 2), BS);
  want.set(fill(100, 3), 3 * BS - 100);
  expect(same(read(v, 0, 3 * BS), want)).toBe(true);
  pool.closeSync();
});

test('blocks over 1 MiB are zeroed in pieces of at most 1 MiB', () => {
  const bs = 2 * MiB;
  const { pool, data } = recordingPool(4, bs);
  const v = pool.createThinSync('v', { size: 2 * bs });
  v.writeSync(fill(100, 1), 1000);
  expect(data.calls.writes).toEqual([
    [0, 1000],
    [1100, MiB],
    [1100 + MiB, bs - 1100 - MiB],
    [1000, 100],
  ]);
  data.clear();
  v.writeSync(fill(MiB, 2), bs); // the first half of the next block: its second half zeroed in one piece
  expect(data.calls.writes).toEqual([
    [bs + MiB, MiB],
    [bs, MiB],
  ]);
  pool.closeSync();
});

test('a pristine block above the high-water mark is not zeroed: the part alone is written, the rest reads as zeros', () => {
  const { pool, data } = recordingPool(8, BS, { highWater: true });
  const v = pool.createThinSync('v', { size: 2 * BS });
  v.writeSync(fill(100, 1), 1000);
  expect(data.calls.writes).toEqual([[blockAt(v, 0, BS) + 1000, 100]]);
  const want = new Uint8Array(BS);
  want.set(fill(100, 1), 1000);
  expect(same(read(v, 0, BS), want)).toBe(true);
  pool.closeSync();
});

test("the commit flushes the data device after a new block and after a rollback's copied tail", () => {
  const { pool, data } = recordingPool(16, BS, { copy: true });
  const v = pool.createThinSync('v', { size: 3 * BS });
  pool.commitSync();
  data.clear();
  v.writeSync(fill(100, 1), 10); // a new block, in part
  pool.commitSync();
  expect(data.calls.flushes).toEqual([data.calls.writes.length]);
  v.writeSync(fill(3 * BS, 2), 0);
  pool.resizeSync('v', 2 * BS + BS / 2);
  pool.snapshotSync('v', 's');
  pool.resizeSync('v', 3 * BS);
  pool.commitSync();
  data.clear();
  pool.rollbackSync('v', 's'); // the tail block is copied and its end zeroed
  expect(data.calls.copies).toHaveLength(1);
  pool.commitSync();
  expect(data.calls.flushes).toEqual([data.calls.writes.length]);
  pool.closeSync();
});
