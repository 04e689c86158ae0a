// The data path (src/thin/data-path.ts) seen from a recording data device, where its device calls are the
// contract: whole new blocks allocated in several runs of consecutive data blocks are written with one call per
// run (however many runs, wherever they start); a rollback's partial last block is copied and only its tail
// zeroed, and when that copy fails the rollback fails whole: the block it took is given back, the volume and the
// pool are as before and still writable; a discard in a read-only pool is refused only where something is mapped.
import { expect, test } from 'vitest';
import { ThinPool } from '../../src/thin/pool.js';
import { fill, keepOpen, readBytes as read, sameBytes as same } from '../support/model.js';
import { recordingPool } from '../support/recording-pool.js';

const BS = 64 * 1024;

test('whole new blocks allocated in separate runs of data blocks: one device write per run', () => {
  const { pool, data } = recordingPool(12, BS);
  const a = pool.createThinSync('a', { size: 6 * BS });
  a.writeSync(fill(6 * BS, 1), 0);
  const b = pool.createThinSync('b', { size: 6 * BS });
  b.writeSync(fill(6 * BS, 3), 0);
  pool.commitSync(); // every block in use
  a.discardSync(BS, BS);
  a.discardSync(3 * BS, 2 * BS);
  pool.commitSync(); // three free blocks: a's 1, and a's 3 and 4 (consecutive)
  data.clear();
  const w = pool.createThinSync('w', { size: 4 * BS });
  w.writeSync(fill(3 * BS, 2), 0);
  const runs = w.map();
  expect(
    runs.map((e) => e.lengthBytes / BS),
    'a run of one block, then a run of two',
  ).toEqual([1, 2]);
  expect(data.calls.writes).toEqual(runs.map((e) => [e.dblock * BS, e.lengthBytes]));
  expect(same(read(w, 0, 3 * BS), fill(3 * BS, 2))).toBe(true);
  expect(same(read(b, 0, 6 * BS), fill(6 * BS, 3))).toBe(true);
  pool.closeSync();
});

/** v of 3 blocks (seed 1) cut to 2.5 blocks, snapshot s, grown to 4 blocks and overwritten (seed 2). */
function rollbackCase() {
  const r = recordingPool(16, BS, { copy: true });
  const { pool } = r;
  const v = pool.createThinSync('v', { size: 3 * BS });
  v.writeSync(fill(3 * BS, 1), 0);
  pool.resizeSync('v', 2 * BS + BS / 4); // s will end a quarter into block 2
  pool.snapshotSync('v', 's');
  pool.resizeSync('v', 4 * BS);
  v.writeSync(fill(4 * BS, 2), 0);
  pool.commitSync();
  r.data.clear();
  return { ...r, v };
}

test('a rollback to a snapshot that ends inside a block copies that block and zeroes only the rest of it', () => {
  const { pool, data, v } = rollbackCase();
  pool.rollbackSync('v', 's');
  const tail = v.map().find((e) => e.offsetBytes + e.lengthBytes > 2 * BS)!;
  const to = tail.dblock + (2 * BS - tail.offsetBytes) / BS;
  expect(data.calls.copies.map(([, dst, len]) => [dst, len])).toEqual([[to * BS, BS]]);
  expect(data.calls.writes, 'the tail zeroed, nothing past the block').toEqual([[to * BS + BS / 4, BS - BS / 4]]);
  const got = read(v, 0, 4 * BS);
  expect(same(got.subarray(0, 2 * BS + BS / 4), fill(3 * BS, 1).subarray(0, 2 * BS + BS / 4))).toBe(true);
  expect(got.subarray(2 * BS + BS / 4).every((x) => x === 0)).toBe(true);
  pool.closeSync();
});

test('a rollback whose copy of the partial block fails fails whole: the block is given back, nothing changed', () => {
  const { pool, data, v, crashCopy } = rollbackCase();
  const used = pool.status().dataBlocks.used;
  const map = v.map();
  data.failNextCopies(1);
  expect(() => pool.rollbackSync('v', 's')).toThrow(expect.objectContaining({ code: 'EIO' }));
  expect(pool.status().dataBlocks.used, 'the block the copy was for is free again').toBe(used);
  expect(v.map()).toEqual(map);
  expect(v.sizeBytes).toBe(4 * BS);
  expect(same(read(v, 0, 4 * BS), fill(4 * BS, 2))).toBe(true);
  expect(pool.mode).toBe('write');
  pool.commitSync();
  const after = crashCopy();
  expect(after.status().dataBlocks.used).toBe(used);
  expect(same(read(after.volume('v'), 0, 4 * BS), fill(4 * BS, 2))).toBe(true);
  after.closeSync();
  // The same rollback works once the device does.
  pool.rollbackSync('v', 's');
  expect(same(read(v, 0, 2 * BS), fill(2 * BS, 1))).toBe(true);
  pool.closeSync();
});

test('discard in a read-only pool: a range with nothing mapped is no change and is not refused; a mapped block is', () => {
  const { pool, meta, catalog, data } = recordingPool(8, BS);
  const v = pool.createThinSync('v', { size: 4 * BS });
  v.writeSync(fill(2 * BS, 1), 2 * BS);
  pool.commitSync();
  pool.closeSync();
  const ro = ThinPool.openStorage({ metadata: keepOpen(meta), data: data.wrapped, catalog }, { readOnly: true });
  const rv = ro.volume('v');
  rv.discardSync(0, 2 * BS); // unmapped blocks only (as many as are mapped: each looked up)
  rv.discardSync(0, 2 * BS - 100); // and a partial one
  expect(() => rv.discardSync(BS, 2 * BS)).toThrow(expect.objectContaining({ code: 'EROFS' }));
  expect(rv.map()).toEqual([expect.objectContaining({ offsetBytes: 2 * BS, lengthBytes: 2 * BS })]);
  expect(same(read(rv, 2 * BS, 2 * BS), fill(2 * BS, 1))).toBe(true);
  ro.closeSync();
});

test('a read-only pool at its auto-extend threshold refuses a write to a new block as read-only, and does not grow', () => {
  const { pool, meta, catalog, data } = recordingPool(8, BS);
  pool.configureSpace({ autoExtend: { enabled: true, atPercent: 60, percent: 100, maxBytes: 16 * BS } });
  const v = pool.createThinSync('v', { size: 8 * BS });
  v.writeSync(fill(4 * BS, 1), 0); // 4 of 8 blocks used: the next allocation (5 of 8, past 60 %) would grow the pool
  pool.commitSync();
  expect(pool.status().dataBlocks.total).toBe(8);
  pool.closeSync();
  const ro = ThinPool.openStorage({ metadata: keepOpen(meta), data: data.wrapped, catalog }, { readOnly: true });
  expect(() => ro.volume('v').writeSync(fill(10, 2), 5 * BS)).toThrow(
    expect.objectContaining({ code: 'EROFS', message: 'pool is read-only' }),
  );
  expect(() => ro.volume('v').writeSync(fill(2 * BS, 2), 4 * BS)).toThrow(
    expect.objectContaining({ code: 'EROFS', message: 'pool is read-only' }),
  );
  expect(ro.status().dataBlocks.total).toBe(8);
  expect(data.dev.sizeBytes).toBe(8 * BS);
  ro.closeSync();
});
