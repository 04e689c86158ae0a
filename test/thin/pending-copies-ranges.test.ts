// Deferred copy-on-write (src/thin/pending-copies.ts) as the data path (src/thin/data-path.ts) drives it, seen
// from a recording data device: a read, or an in-place write over a run of blocks, makes real exactly the
// blocks it covers (the block after the run stays held, and so does the one before it); a write that must copy
// a block still to be copied (a write of less than a granule into it, once a snapshot shares it) makes it whole
// first; a freed block allocated again by a single-block write is settled or dropped as by a run.
import { expect, test } from 'vitest';
import { fill, readBytes as read, sameBytes as same } from '../support/model.js';
import { recordingPool } from '../support/recording-pool.js';

const BS = 64 * 1024;
const G = 4096;

/**
 * Volume v of four blocks (seed 1) and its snapshot s, committed; then one granule (seeds 10..13) written into
 * each of v's blocks, all four held (nothing copied yet). `old[i]`: the data block v's block i shared with s.
 */
function fourHeld() {
  const { pool, data } = recordingPool(16, BS, { copy: true });
  const v = pool.createThinSync('v', { size: 4 * BS });
  const before = fill(4 * BS, 1);
  v.writeSync(before, 0);
  pool.snapshotSync('v', 's');
  pool.commitSync();
  const old = v.map().flatMap((e) => Array.from({ length: e.lengthBytes / BS }, (_, i) => e.dblock + i));
  expect(old).toHaveLength(4);
  const want = before.slice();
  for (let b = 0; b < 4; b++) {
    v.writeSync(fill(G, 10 + b), b * BS + G);
    want.set(fill(G, 10 + b), b * BS + G);
  }
  expect(data.calls.copies, 'the four writes are held').toEqual([]);
  return { pool, v, before, want, old, copies: data.calls.copies };
}

test('a read makes real exactly the blocks it reads: not the next one nor the one before', () => {
  const { pool, v, want, old, copies } = fourHeld();
  expect(same(read(v, BS, 2 * BS), want.subarray(BS, 3 * BS))).toBe(true);
  expect(copies.map(([src]) => src / BS)).toEqual([old[1], old[2]]);
  // The others are still held, and made when read.
  expect(same(read(v, 3 * BS, BS), want.subarray(3 * BS))).toBe(true);
  expect(copies.map(([src]) => src / BS)).toEqual([old[1], old[2], old[3]]);
  expect(same(read(v, 0, 4 * BS), want)).toBe(true);
  expect(copies).toHaveLength(4);
  pool.closeSync();
});

test('an in-place write over a run of blocks makes real exactly the blocks of the run first', () => {
  const { pool, v, want, old, copies } = fourHeld();
  const over = fill(2 * BS + 100, 30); // v1, v2 and the start of v3: a run of two whole blocks, then part of v3
  v.writeSync(over.subarray(0, 2 * BS), BS);
  expect(
    copies.map(([src]) => src / BS),
    'v1 and v2 only',
  ).toEqual([old[1], old[2]]);
  want.set(over.subarray(0, 2 * BS), BS);
  expect(same(read(v, 0, 4 * BS), want)).toBe(true);
  expect(copies).toHaveLength(4);
  pool.commitSync();
  expect(same(read(pool.volume('s'), 0, 4 * BS), fill(4 * BS, 1))).toBe(true);
  pool.closeSync();
});

test('a write of less than a granule into a block still to be copied, once a snapshot shares it, copies it whole', () => {
  const { pool, data } = recordingPool(8, BS, { copy: true });
  const v = pool.createThinSync('v', { size: BS });
  const before = fill(BS, 1);
  v.writeSync(before, 0);
  pool.snapshotSync('v', 's');
  pool.commitSync();
  v.writeSync(fill(G, 2), 3 * G); // held: v's new block is to be copied from s's
  pool.snapshotSync('v', 's2'); // s2 shares the block still to be copied
  expect(data.calls.copies).toEqual([]);
  v.writeSync(fill(100, 3), 10); // not whole granules: v's block is copied at once, from the one s2 shares
  const at2 = before.slice();
  at2.set(fill(G, 2), 3 * G);
  const now = at2.slice();
  now.set(fill(100, 3), 10);
  expect(same(read(v, 0, BS), now)).toBe(true);
  expect(same(read(pool.volume('s2'), 0, BS), at2)).toBe(true);
  expect(same(read(pool.volume('s'), 0, BS), before)).toBe(true);
  pool.commitSync();
  expect(same(read(v, 0, BS), now)).toBe(true);
  expect(same(read(pool.volume('s2'), 0, BS), at2)).toBe(true);
  pool.closeSync();
});
