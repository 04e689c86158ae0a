// The pool's data path (src/thin/data-path.ts) seen from the data device: what reaches the device for reads,
// writes, copies and discards. Runs of virtual blocks on consecutive data blocks are one device call (read, or
// in-place write when unshared); breaking sharing copies the whole block through the device's copyWithin when
// it has one; a device taking asynchronous requests gets the reads and the in-place writes in flight, with the
// same bytes as the synchronous path; a full pool whose transaction freed blocks commits and goes on. All in
// memory, through the pool's interface.
import { expect, test } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import { fill, readBytes as read } from '../support/model.js';
import { recordingPool, type RecordingOptions } from '../support/recording-pool.js';

const BS = 64 * 1024;

const newPool = (blocks: number, opts: RecordingOptions = {}) => recordingPool(blocks, BS, opts);

const blocksOf = (calls: Array<[number, number]>) => calls.map(([o, l]) => [o / BS, l / BS]);

test('a run of virtual blocks on consecutive data blocks is one device read, and one in-place write while unshared', () => {
  const { pool, data } = newPool(16);
  const v = pool.createThinSync('v', { size: 12 * BS });
  const content = fill(4 * BS, 1);
  v.writeSync(content, 2 * BS); // virtual 2..5 on data blocks d..d+3: provisioned together, one device write
  const d = v.map()[0]!.dblock;
  expect(v.map()).toEqual([{ offsetBytes: 2 * BS, lengthBytes: 4 * BS, dblock: d }]);
  expect(blocksOf(data.calls.writes)).toEqual([[d, 4]]);

  // Reading from the middle of the first block to the middle of the last: one device read for the run.
  data.clear();
  const got = read(v, 2 * BS + 100, 4 * BS - 200);
  expect(Buffer.compare(got, content.subarray(100, 4 * BS - 100))).toBe(0);
  expect(data.calls.reads).toEqual([[d * BS + 100, 4 * BS - 200]]);
  // Unmapped blocks around the run read as zeros and cost no device read.
  data.clear();
  const wide = read(v, BS, 6 * BS);
  expect(wide.subarray(0, BS).every((x) => x === 0) && wide.subarray(5 * BS).every((x) => x === 0)).toBe(true);
  expect(Buffer.compare(wide.subarray(BS, 5 * BS), content)).toBe(0);
  expect(data.calls.reads).toEqual([[d * BS, 4 * BS]]);

  // Overwriting the run in place is one device write, and allocates nothing.
  data.clear();
  const used = pool.status().dataBlocks.used;
  const next = fill(3 * BS, 2);
  v.writeSync(next, 3 * BS - 10);
  expect(data.calls.writes).toEqual([[(d + 1) * BS - 10, 3 * BS]]);
  expect(pool.status().dataBlocks.used).toBe(used);
  expect(Buffer.compare(read(v, 3 * BS - 10, 3 * BS), next)).toBe(0);

  // Another volume's block between two blocks of v ends v's run there.
  const w = pool.createThinSync('w', { size: BS });
  w.writeSync(fill(10, 3), 0); // data block d + 4
  v.writeSync(fill(BS, 4), 7 * BS); // v's virtual 7 on d + 5
  v.writeSync(fill(BS, 5), 6 * BS); // v's virtual 6 on d + 6: after 5 (on d + 3) but not consecutive
  data.clear();
  const all = read(v, 2 * BS, 6 * BS);
  expect(blocksOf(data.calls.reads)).toEqual([
    [d, 4],
    [d + 6, 1],
    [d + 5, 1],
  ]);
  expect(Buffer.compare(all.subarray(4 * BS, 5 * BS), fill(BS, 5))).toBe(0);
  expect(Buffer.compare(all.subarray(5 * BS), fill(BS, 4))).toBe(0);
  pool.closeSync();
});

test('a write into shared blocks copies each whole block to a new one first, and writes nothing in place', () => {
  const { pool, data } = newPool(16, { copy: true });
  const v = pool.createThinSync('v', { size: 4 * BS });
  const before = fill(3 * BS, 1);
  v.writeSync(before, 0);
  const d = v.map()[0]!.dblock;
  pool.snapshotSync('v', 's');
  data.clear();
  // Partial blocks at both ends of a three-block write: the ends are copied (through copyWithin), the middle
  // is written whole without a copy.
  const part = fill(BS + 200, 2);
  v.writeSync(part, BS - 100);
  expect(
    v.map().every((e) => e.dblock >= d + 3),
    'every written block moved off the shared ones',
  ).toBe(true);
  expect(data.calls.copies.length).toBe(2);
  for (const [src, dst, len] of data.calls.copies) {
    expect(len).toBe(BS);
    expect(src % BS).toBe(0);
    expect(dst % BS).toBe(0);
    expect([d, d + 1, d + 2]).toContain(src / BS);
  }
  expect(
    data.calls.writes.some(([o]) => o >= d * BS && o < (d + 3) * BS),
    'no write lands on a shared block',
  ).toBe(false);
  // The volume reads the old bytes around the write and the new ones inside it; the snapshot still reads the old.
  const want = before.slice();
  want.set(part, BS - 100);
  expect(Buffer.compare(read(v, 0, 3 * BS), want)).toBe(0);
  expect(Buffer.compare(read(pool.volume('s'), 0, 3 * BS), before)).toBe(0);
  expect(pool.status().dataBlocks.used).toBe(6);
  // The copies are the volume's now: writing them again is in place.
  data.clear();
  v.writeSync(fill(10, 3), 5);
  expect(data.calls.copies).toEqual([]);
  expect(pool.status().dataBlocks.used).toBe(6);
  pool.closeSync();
});

test('on a device without copyWithin, breaking sharing copies the block through memory with the same result', () => {
  const { pool, data } = newPool(8);
  const v = pool.createThinSync('v', { size: 2 * BS });
  const before = fill(2 * BS, 1);
  v.writeSync(before, 0);
  pool.snapshotSync('v', 's');
  data.clear();
  v.writeSync(fill(10, 2), BS + 7);
  const want = before.slice();
  want.set(fill(10, 2), BS + 7);
  expect(Buffer.compare(read(v, 0, 2 * BS), want)).toBe(0);
  expect(Buffer.compare(read(pool.volume('s'), 0, 2 * BS), before)).toBe(0);
  pool.closeSync();
});

test('on an asynchronous device, reads and in-place writes are requests in flight; new blocks are written synchronously', async () => {
  const { pool, data } = newPool(16, { async: true });
  const v = pool.createThinSync('v', { size: 8 * BS });
  const first = fill(3 * BS, 1);
  await v.write(first, 0); // provisioning: synchronous writes of new blocks
  expect(data.calls.asyncWrites).toEqual([]);
  expect(data.calls.writes.length).toBe(3);
  const d = v.map()[0]!.dblock;

  data.clear();
  const got = new Uint8Array(5 * BS);
  await v.read(got, 0); // a run of three mapped blocks, then two unmapped ones
  expect(data.calls.reads).toEqual([]);
  expect(blocksOf(data.calls.asyncReads)).toEqual([[d, 3]]);
  expect(Buffer.compare(got.subarray(0, 3 * BS), first)).toBe(0);
  expect(got.subarray(3 * BS).every((x) => x === 0)).toBe(true);

  data.clear();
  const next = fill(2 * BS, 2);
  await v.write(next, BS / 2); // in place over three mapped blocks: one request per block, in flight
  expect(data.calls.writes).toEqual([]);
  expect(data.calls.asyncWrites).toEqual([
    [d * BS + BS / 2, BS / 2],
    [(d + 1) * BS, BS],
    [(d + 2) * BS, BS / 2],
  ]);
  const want = first.slice();
  want.set(next, BS / 2);
  const after = new Uint8Array(3 * BS);
  await v.read(after, 0);
  expect(Buffer.compare(after, want)).toBe(0);

  // A snapshot makes the blocks shared: the write copies synchronously, the snapshot keeps the old bytes.
  pool.snapshotSync('v', 's');
  data.clear();
  await v.write(fill(10, 3), 4);
  expect(data.calls.asyncWrites).toEqual([]);
  const snap = new Uint8Array(3 * BS);
  await pool.volume('s').read(snap, 0);
  expect(Buffer.compare(snap, want)).toBe(0);
  pool.closeSync();
});

test('a full pool whose transaction freed blocks commits and allocates them again; without freed blocks it is ENOSPC_DATA', () => {
  const { pool, crashCopy } = newPool(4);
  const v = pool.createThinSync('v', { size: 8 * BS });
  v.writeSync(fill(4 * BS, 1), 0);
  pool.commitSync();
  expect(pool.status().dataBlocks.free).toBe(0);
  let err: unknown;
  try {
    v.writeSync(fill(10, 2), 4 * BS);
  } catch (e) {
    err = e;
  }
  expect(isThinpoolError(err, 'ENOSPC_DATA')).toBe(true);
  expect(pool.mode).toBe('write');

  // Discarding two blocks frees them in this transaction only: they cannot be reused before a commit.
  v.discardSync(0, 2 * BS);
  v.writeSync(fill(2 * BS, 3), 4 * BS);
  expect(pool.status().dataBlocks).toEqual({ used: 4, total: 4, free: 0 });
  expect(Buffer.compare(read(v, 4 * BS, 2 * BS), fill(2 * BS, 3))).toBe(0);
  expect(Buffer.compare(read(v, 2 * BS, 2 * BS), fill(4 * BS, 1).subarray(2 * BS))).toBe(0);
  expect(read(v, 0, 2 * BS).every((x) => x === 0)).toBe(true);
  // The write committed the discard before reusing the blocks; its own mappings are not committed yet.
  const copy = crashCopy();
  expect(
    copy
      .volume('v')
      .map()
      .map((e) => [e.offsetBytes / BS, e.lengthBytes / BS]),
  ).toEqual([[2, 2]]);
  copy.closeSync();
  pool.closeSync();
});

test('discard unmaps exactly the whole blocks of its range, found by lookup or by walking the mappings', () => {
  const { pool } = newPool(16);
  const v = pool.createThinSync('v', { size: 64 * BS });
  for (const b of [0, 1, 2, 10, 40, 63]) v.writeSync(fill(BS, b), b * BS);
  const mapped = () => v.map().flatMap((e) => Array.from({ length: e.lengthBytes / BS }, (_, i) => e.offsetBytes / BS + i));
  // A short range (fewer blocks than the volume maps): looked up block by block.
  v.discardSync(BS + 5, 2 * BS); // whole block 2 only; block 1 from byte 5 and block 3's first 5 bytes zeroed
  expect(mapped()).toEqual([0, 1, 10, 40, 63]);
  expect(Buffer.compare(read(v, BS, 5), fill(BS, 1).subarray(0, 5))).toBe(0);
  expect(read(v, BS + 5, BS - 5).every((x) => x === 0)).toBe(true);
  // A long range (more blocks than the volume maps): the mappings are walked; blocks at both ends of the range stay.
  v.discardSync(10 * BS, 30 * BS); // blocks 10..39
  expect(mapped()).toEqual([0, 1, 40, 63]);
  expect(Buffer.compare(read(v, 40 * BS, BS), fill(BS, 40))).toBe(0);
  v.discardSync(41 * BS, 23 * BS); // up to the end: 63 goes
  expect(mapped()).toEqual([0, 1, 40]);
  // Inside one block: zeroed, still mapped.
  v.discardSync(40 * BS + 1, 10);
  expect(mapped()).toEqual([0, 1, 40]);
  const want = fill(BS, 40);
  want.fill(0, 1, 11);
  expect(Buffer.compare(read(v, 40 * BS, BS), want)).toBe(0);
  expect(pool.status().dataBlocks.used).toBe(3);
  pool.closeSync();
});

test('asynchronous reads settle to nothing, on a synchronous data device and on an asynchronous one, over mapped and unprovisioned blocks', async () => {
  for (const opts of [{}, { async: true }]) {
    const { pool, data } = newPool(8, opts);
    const v = pool.createThinSync('v', { size: 4 * BS });
    const bytes = new Uint8Array(BS).fill(7);
    v.writeSync(bytes, 0);
    const mapped = new Uint8Array(BS);
    const hole = new Uint8Array(BS).fill(1);
    data.clear();
    // The pool's own door to the data path, and the volume's.
    await expect(pool.readDataAsync(v.id, mapped, 0)).resolves.toBeUndefined();
    await expect(pool.readDataAsync(v.id, hole, 2 * BS)).resolves.toBeUndefined(); // no device request at all
    await expect(v.read(new Uint8Array(BS), 3 * BS)).resolves.toBeUndefined();
    expect(mapped).toEqual(bytes);
    expect(hole).toEqual(new Uint8Array(BS));
    expect(data.calls.asyncReads.length + data.calls.reads.length).toBe(1); // only the mapped block was read
    pool.closeSync();
  }
});
