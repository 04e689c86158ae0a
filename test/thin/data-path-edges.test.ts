// The pool's data path (src/thin/data-path.ts) at its edges, through the pool's interface: on a data device full
// of old bytes, a new block written in part reads as zeros around the write (blocks of 64 KiB and of 2 MiB,
// larger than the 1 MiB zero and copy buffers); unmapped blocks read as zeros into a buffer holding anything;
// a rollback to a snapshot that ends inside a block zeroes that block's tail; auto-extend grows the pool when
// an allocation reaches the threshold, for single blocks and for runs; an in-place run stops at a shared
// block; a run of new blocks stops at a mapped one and is written where each block was allocated; in-place
// runs are flushed by the next commit; the asynchronous entry points work on a synchronous device.
import { expect, test } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import type { BlockDevice } from '../../src/io/block-device.js';
import { FaultDevice } from '../../src/io/fault-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { ThinPool } from '../../src/thin/pool.js';
import { fill, keepOpen, readBytes as read } from '../support/model.js';

const BS = 64 * 1024;
const OLD = 0xa5;

/** A pool on a data device whose every byte holds OLD (a reused disk), recording data writes and flushes. */
function dirtyPool(blocks: number, bs = BS, opts: { canPunch?: boolean } = {}) {
  const meta = new MemoryDevice(1 << 20);
  const dev = new MemoryDevice(blocks * bs);
  const chunk = new Uint8Array(bs).fill(OLD);
  for (let b = 0; b < blocks; b++) dev.write(chunk, b * bs);
  const calls = { writes: [] as Array<[number, number]>, flushes: 0 };
  const data: BlockDevice = {
    ...keepOpen(dev),
    get sizeBytes() {
      return dev.sizeBytes;
    },
    write: (b, o) => {
      calls.writes.push([o / bs, b.length / bs]);
      dev.write(b, o);
    },
    flush: () => {
      calls.flushes++;
      dev.flush();
    },
    discard: (o, l) => (opts.canPunch === false ? false : dev.discard(o, l)),
  };
  const pool = ThinPool.formatStorage(
    { metadata: keepOpen(meta), data, catalog: new MemoryCatalogStore() },
    { size: blocks * bs, blockSize: bs },
  );
  calls.writes.length = 0;
  return { pool, calls };
}

const zeros = (b: Uint8Array) => b.every((x) => x === 0);

test('a new block written in part reads as zeros around the write, whatever the device held there', () => {
  for (const bs of [BS, 2 * 1024 * 1024]) {
    const { pool } = dirtyPool(8, bs);
    const v = pool.createThinSync('v', { size: 4 * bs });
    const mid = fill(100, 1);
    v.writeSync(mid, bs + 1000); // inside block 1: zeros before and after
    v.writeSync(fill(50, 2), 0); // the head of block 0: zeros after
    v.writeSync(fill(70, 3), 3 * bs - 70); // the tail of block 2: zeros before
    const got = read(v, 0, 3 * bs);
    const want = new Uint8Array(3 * bs);
    want.set(fill(50, 2), 0);
    want.set(mid, bs + 1000);
    want.set(fill(70, 3), 3 * bs - 70);
    expect(Buffer.compare(got, want), `block size ${bs}`).toBe(0);
    // Breaking sharing copies the whole block (through memory: the device has no copyWithin).
    const whole = fill(bs, 4);
    v.writeSync(whole, 3 * bs);
    pool.snapshotSync('v', 's');
    v.writeSync(fill(10, 5), 3 * bs + bs / 2);
    const after = whole.slice();
    after.set(fill(10, 5), bs / 2);
    expect(Buffer.compare(read(v, 3 * bs, bs), after)).toBe(0);
    expect(Buffer.compare(read(pool.volume('s'), 3 * bs, bs), whole)).toBe(0);
    pool.closeSync();
  }
});

test('unmapped blocks read as zeros into a buffer that held something else', () => {
  const { pool } = dirtyPool(8);
  const v = pool.createThinSync('v', { size: 4 * BS });
  v.writeSync(fill(BS, 1), BS);
  const b = new Uint8Array(3 * BS).fill(0xff);
  v.readSync(b, 0);
  expect(zeros(b.subarray(0, BS))).toBe(true);
  expect(Buffer.compare(b.subarray(BS, 2 * BS), fill(BS, 1))).toBe(0);
  expect(zeros(b.subarray(2 * BS))).toBe(true);
  const small = new Uint8Array(10).fill(0xff);
  v.readSync(small, 3 * BS + 5);
  expect(zeros(small)).toBe(true);
  pool.closeSync();
});

test('a rollback to a snapshot that ends inside a block keeps that block up to the end and zeroes its tail', () => {
  const { pool } = dirtyPool(16);
  const v = pool.createThinSync('v', { size: 3 * BS });
  const content = fill(3 * BS, 1);
  v.writeSync(content, 0);
  pool.resizeSync('v', 2 * BS + BS / 2); // block 2 still holds bytes past the new end
  pool.snapshotSync('v', 's'); // s ends inside block 2
  pool.resizeSync('v', 4 * BS);
  v.writeSync(fill(4 * BS, 2), 0);
  pool.rollbackSync('v', 's');
  expect(v.sizeBytes).toBe(4 * BS);
  const got = read(v, 0, 4 * BS);
  expect(Buffer.compare(got.subarray(0, 2 * BS + BS / 2), content.subarray(0, 2 * BS + BS / 2))).toBe(0);
  expect(zeros(got.subarray(2 * BS + BS / 2)), 'past the end of the snapshot').toBe(true);
  expect(Buffer.compare(read(pool.volume('s'), 0, 2 * BS + BS / 2), content.subarray(0, 2 * BS + BS / 2))).toBe(0);
  pool.closeSync();
});

test('auto-extend: the allocation that reaches the threshold grows the pool first, for single blocks and for runs', () => {
  // One block a write: at 50 % of 8 blocks the 4th allocation (3 used + 1) grows the pool to 16.
  const one = dirtyPool(8).pool;
  one.configureSpace({ autoExtend: { enabled: true, atPercent: 50, percent: 100, maxBytes: 16 * BS } });
  const v = one.createThinSync('v', { size: 12 * BS });
  const totals: number[] = [];
  for (let b = 0; b < 6; b++) {
    v.writeSync(fill(10, b), b * BS);
    totals.push(one.status().dataBlocks.total);
  }
  expect(totals).toEqual([8, 8, 8, 16, 16, 16]);
  one.closeSync();
  // Six whole blocks in one write: the run would cross the threshold, so it is not provisioned in one change
  // (which would never grow the pool): the pool grows on the way.
  const run = dirtyPool(8).pool;
  run.configureSpace({ autoExtend: { enabled: true, atPercent: 50, percent: 100, maxBytes: 16 * BS } });
  const w = run.createThinSync('w', { size: 12 * BS });
  w.writeSync(fill(6 * BS, 1), 0);
  expect(run.status().dataBlocks).toEqual({ used: 6, total: 16, free: 10 });
  expect(Buffer.compare(read(w, 0, 6 * BS), fill(6 * BS, 1))).toBe(0);
  run.closeSync();
  // Without auto-extend a run fills the pool past any threshold in one device write.
  const { pool, calls } = dirtyPool(8);
  const x = pool.createThinSync('x', { size: 8 * BS });
  x.writeSync(fill(7 * BS, 2), 0);
  expect(calls.writes).toEqual([[0, 7]]);
  expect(pool.status().dataBlocks.total).toBe(8);
  pool.closeSync();
});

test('an in-place run stops at a shared block: the snapshot keeps its bytes', () => {
  const { pool } = dirtyPool(4);
  const w = pool.createThinSync('w', { size: BS });
  w.writeSync(fill(BS, 9), 0); // data block 0
  const v = pool.createThinSync('v', { size: 2 * BS });
  v.writeSync(fill(BS, 1), BS); // v's block 1 on data block 1
  const x = pool.createThinSync('x', { size: 2 * BS });
  x.writeSync(fill(2 * BS, 8), 0); // data blocks 2 and 3: the pool is full
  pool.snapshotSync('v', 's'); // v's block 1 is shared now
  pool.deleteSync('w');
  pool.deleteSync('x');
  pool.commitSync();
  v.writeSync(fill(BS, 2), 0); // v's block 0, written after the snapshot: unshared
  // The case: an unshared block right before a shared one on the data device.
  expect(v.map().map((e) => [e.offsetBytes / BS, e.lengthBytes / BS, e.dblock])).toEqual([[0, 2, 0]]);
  const next = fill(2 * BS, 3);
  v.writeSync(next, 0);
  expect(Buffer.compare(read(v, 0, 2 * BS), next)).toBe(0);
  expect(Buffer.compare(read(pool.volume('s'), BS, BS), fill(BS, 1)), 'the shared block was not written in place').toBe(0);
  expect(v.map().find((e) => e.offsetBytes === BS)?.dblock, "v's block 1 moved off the shared one").not.toBe(1);
  pool.closeSync();
});

test('a run of new blocks stops at a mapped block, and each block lands where it was allocated', () => {
  const { pool, calls } = dirtyPool(12, BS, { canPunch: false });
  const v = pool.createThinSync('v', { size: 8 * BS });
  v.writeSync(fill(BS, 2), 2 * BS); // v's block 2 on data block 0
  const a = pool.createThinSync('a', { size: 8 * BS });
  const aBytes = fill(8 * BS, 1);
  a.writeSync(aBytes, 0); // data blocks 1..8
  const x = pool.createThinSync('x', { size: 3 * BS });
  x.writeSync(fill(3 * BS, 7), 0); // data blocks 9..11: the pool is full
  for (const b of [1, 3, 5, 7]) {
    a.discardSync(b * BS, BS); // data blocks 2, 4, 6, 8
    aBytes.fill(0, b * BS, (b + 1) * BS);
  }
  pool.deleteSync('x');
  pool.commitSync();
  calls.writes.length = 0;
  const used = pool.status().dataBlocks.used;
  const content = fill(6 * BS, 3);
  v.writeSync(content, 0); // blocks 0, 1 new; 2 mapped (in place); 3, 4, 5 new
  expect(pool.status().dataBlocks.used, 'five new blocks, block 2 overwritten in place').toBe(used + 5);
  expect(Buffer.compare(read(v, 0, 6 * BS), content)).toBe(0);
  expect(Buffer.compare(read(a, 0, 8 * BS), aBytes), "the other volume's blocks are untouched").toBe(0);
  const map = new Map(v.map().flatMap((e) => Array.from({ length: e.lengthBytes / BS }, (_, i) => [e.offsetBytes / BS + i, e.dblock + i])));
  expect(map.get(2)).toBe(0);
  const news = [0, 1, 3, 4, 5].map((b) => map.get(b)!);
  expect(
    news.some((d, i) => i > 0 && d !== news[i - 1] + 1),
    'the case: the new blocks are not all consecutive on the device',
  ).toBe(true);
  // One device write per run of consecutive data blocks, never one spanning a block it was not given.
  for (const [first, count] of calls.writes) {
    for (let i = 0; i < count; i++) expect([...news, 0]).toContain(first + i);
  }
  pool.closeSync();
});

test('a run of two or more whole new blocks is one device write, when auto-extend is far from its threshold too', () => {
  const { pool, calls } = dirtyPool(16);
  pool.configureSpace({ autoExtend: { enabled: true, atPercent: 90, percent: 100, maxBytes: 32 * BS } });
  const v = pool.createThinSync('v', { size: 8 * BS });
  v.writeSync(fill(2 * BS, 1), 0);
  expect(calls.writes).toEqual([[0, 2]]);
  calls.writes.length = 0;
  v.writeSync(fill(4 * BS, 2), 4 * BS);
  expect(calls.writes).toEqual([[2, 4]]);
  pool.closeSync();
  // A run that reaches the threshold exactly (4 of 8 blocks at 50 %) grows the pool on the way.
  const at = dirtyPool(8).pool;
  at.configureSpace({ autoExtend: { enabled: true, atPercent: 50, percent: 100, maxBytes: 16 * BS } });
  at.createThinSync('w', { size: 8 * BS }).writeSync(fill(4 * BS, 3), 0);
  expect(at.status().dataBlocks.total).toBe(16);
  at.closeSync();
});

test('a write starting and ending inside blocks, over new blocks, reads as zeros past its end', () => {
  const { pool } = dirtyPool(8);
  const v = pool.createThinSync('v', { size: 5 * BS });
  const content = fill(3 * BS, 1);
  v.writeSync(content, BS / 2); // half of block 0, blocks 1 and 2 whole, half of block 3
  const want = new Uint8Array(5 * BS);
  want.set(content, BS / 2);
  expect(Buffer.compare(read(v, 0, 5 * BS), want)).toBe(0);
  pool.closeSync();
});

test("zeroing and copying inside a new block never spill into the next data block, another volume's", () => {
  for (const bs of [BS, 2 * 1024 * 1024]) {
    const { pool } = dirtyPool(4, bs, { canPunch: false });
    const w = pool.createThinSync('w', { size: 4 * bs });
    const wBytes = fill(4 * bs, 9);
    w.writeSync(wBytes, 0); // data blocks 0..3: the pool is full
    w.discardSync(0, bs);
    w.discardSync(2 * bs, bs); // data blocks 0 and 2 free after the commit
    wBytes.fill(0, 0, bs);
    wBytes.fill(0, 2 * bs, 3 * bs);
    pool.commitSync();
    const v = pool.createThinSync('v', { size: bs });
    v.writeSync(fill(100, 1), 1000); // a new block, data block 0, zeroed around the write
    expect(v.map()[0]!.dblock, `the case (block size ${bs}): right before another volume's block`).toBe(0);
    pool.snapshotSync('v', 's');
    v.writeSync(fill(10, 2), 5000); // shared: copied to data block 2, right before another volume's block
    expect(v.map()[0]!.dblock).toBe(2);
    const vWant = new Uint8Array(bs);
    vWant.set(fill(100, 1), 1000);
    const sWant = vWant.slice();
    vWant.set(fill(10, 2), 5000);
    expect(Buffer.compare(read(v, 0, bs), vWant)).toBe(0);
    expect(Buffer.compare(read(pool.volume('s'), 0, bs), sWant)).toBe(0);
    expect(Buffer.compare(read(w, 0, 4 * bs), wBytes), `block size ${bs}: the other volume is intact`).toBe(0);
    pool.closeSync();
  }
});

test('an in-place run covers only consecutive blocks: a block mapped elsewhere is written where it is', () => {
  const { pool } = dirtyPool(8);
  const v = pool.createThinSync('v', { size: 3 * BS });
  v.writeSync(fill(2 * BS, 1), 0); // data blocks 0 and 1
  const w = pool.createThinSync('w', { size: BS });
  w.writeSync(fill(BS, 9), 0); // data block 2
  v.writeSync(fill(BS, 1), 2 * BS); // data block 3
  const next = fill(3 * BS, 2);
  v.writeSync(next, 0); // in place: a run of two, then one more
  expect(Buffer.compare(read(v, 0, 3 * BS), next)).toBe(0);
  expect(Buffer.compare(read(w, 0, BS), fill(BS, 9))).toBe(0);
  pool.closeSync();
});

test('a run mapped up to the end of the data device is one device read', () => {
  const meta = new MemoryDevice(1 << 20);
  const dev = new MemoryDevice(8 * BS);
  const reads: Array<[number, number]> = [];
  const data: BlockDevice = {
    ...keepOpen(dev),
    get sizeBytes() {
      return dev.sizeBytes;
    },
    read: (b, o) => {
      reads.push([o / BS, b.length / BS]);
      dev.read(b, o);
    },
  };
  const pool = ThinPool.formatStorage(
    { metadata: keepOpen(meta), data, catalog: new MemoryCatalogStore() },
    { size: 8 * BS, blockSize: BS },
  );
  pool.createThinSync('w', { size: 4 * BS }).writeSync(fill(4 * BS, 1), 0); // data blocks 0..3
  const v = pool.createThinSync('v', { size: 4 * BS });
  v.writeSync(fill(4 * BS, 2), 0); // data blocks 4..7, the last of the device
  reads.length = 0;
  expect(Buffer.compare(read(v, 0, 4 * BS), fill(4 * BS, 2))).toBe(0);
  expect(reads).toEqual([[4, 4]]);
  reads.length = 0;
  expect(Buffer.compare(read(v, BS, 3 * BS), fill(4 * BS, 2).subarray(BS))).toBe(0); // from the second block on
  expect(reads).toEqual([[5, 3]]);
  pool.closeSync();
});

test('a data write that fails gives back the blocks it took: nothing leaks and the pool stays writable', () => {
  const meta = new MemoryDevice(1 << 20);
  const fault = new FaultDevice(keepOpen(new MemoryDevice(8 * BS)));
  const pool = ThinPool.formatStorage(
    { metadata: keepOpen(meta), data: fault, catalog: new MemoryCatalogStore() },
    { size: 8 * BS, blockSize: BS },
  );
  const v = pool.createThinSync('v', { size: 8 * BS });
  const used = pool.status().dataBlocks.used;
  for (const [off, len] of [
    [100, 50], // one new block, in part
    [0, 3 * BS], // a run of new blocks
  ]) {
    fault.failAt({ write: fault.writes });
    let code = 'ok';
    try {
      v.writeSync(fill(len, 1), off);
    } catch (e) {
      code = isThinpoolError(e) ? e.code : String(e);
    }
    expect(code).toBe('EIO');
    expect(pool.status().dataBlocks.used, `after a failed write at ${off}`).toBe(used);
    expect(v.map()).toEqual([]);
    expect(pool.mode).toBe('write');
  }
  v.writeSync(fill(3 * BS, 2), 0);
  expect(Buffer.compare(read(v, 0, 3 * BS), fill(3 * BS, 2))).toBe(0);
  pool.closeSync();
});

test('an in-place overwrite of several blocks is flushed by the next commit', () => {
  const { pool, calls } = dirtyPool(8);
  const v = pool.createThinSync('v', { size: 4 * BS });
  v.writeSync(fill(3 * BS, 1), 0);
  pool.commitSync();
  const f = calls.flushes;
  v.writeSync(fill(3 * BS - 20, 2), 10); // mapped, unshared, consecutive: one in-place write
  expect(pool.metadata.dirty).toBe(false);
  pool.commitSync();
  expect(calls.flushes).toBe(f + 1);
  pool.closeSync();
});

test('discard zeroes the partial blocks at both ends of its range', () => {
  const { pool } = dirtyPool(8);
  const v = pool.createThinSync('v', { size: 4 * BS });
  v.writeSync(fill(4 * BS, 1), 0);
  v.discardSync(BS / 2, 2 * BS); // half of block 0, block 1 whole, half of block 2
  const got = read(v, 0, 4 * BS);
  const want = fill(4 * BS, 1);
  want.fill(0, BS / 2, BS / 2 + 2 * BS);
  expect(Buffer.compare(got, want)).toBe(0);
  expect(v.map().map((e) => [e.offsetBytes / BS, e.lengthBytes / BS])).toEqual([
    [0, 1],
    [2, 2],
  ]);
  // A range shorter than a block across a block boundary: the end of one block and the start of the next.
  v.discardSync(3 * BS - 100, 200);
  want.fill(0, 3 * BS - 100, 3 * BS + 100);
  expect(Buffer.compare(read(v, 0, 4 * BS), want)).toBe(0);
  pool.closeSync();
});

test("the pool's asynchronous data calls work on a synchronous device", async () => {
  const { pool } = dirtyPool(8);
  const v = pool.createThinSync('v', { size: 4 * BS });
  expect(pool.asyncData).toBe(false);
  await pool.writeDataAsync(v.id, fill(2 * BS, 1), 100); // new blocks
  await pool.writeDataAsync(v.id, fill(BS, 3), 200); // in place
  const want = fill(2 * BS, 1);
  want.set(fill(BS, 3), 100);
  const b = new Uint8Array(2 * BS);
  await pool.readDataAsync(v.id, b, 100);
  expect(Buffer.compare(b, want)).toBe(0);
  pool.closeSync();
});

test('a read starting inside a block crosses into a block that is elsewhere on the device, or unmapped', () => {
  const { pool } = dirtyPool(8);
  const w = pool.createThinSync('w', { size: BS });
  const v = pool.createThinSync('v', { size: 4 * BS });
  v.writeSync(fill(BS, 1), 0); // data block 0
  w.writeSync(fill(BS, 9), 0); // data block 1
  v.writeSync(fill(BS, 2), BS); // data block 2: not after v's block 0
  const want = new Uint8Array(4 * BS);
  want.set(fill(BS, 1), 0);
  want.set(fill(BS, 2), BS);
  expect(Buffer.compare(read(v, BS / 2, BS), want.subarray(BS / 2, BS / 2 + BS))).toBe(0);
  expect(Buffer.compare(read(v, BS + BS / 2, BS), want.subarray(BS + BS / 2, 2 * BS + BS / 2))).toBe(0);
  pool.closeSync();
});

test('on an asynchronous device, reads and in-place writes inside blocks land at the right bytes, and a commit flushes them', async () => {
  const meta = new MemoryDevice(1 << 20);
  const dev = new MemoryDevice(8 * BS);
  const calls = { flushes: 0, asyncWrites: 0 };
  const data = {
    ...keepOpen(dev),
    get sizeBytes() {
      return dev.sizeBytes;
    },
    flush: () => {
      calls.flushes++;
      dev.flush();
    },
    writeBackBytes: 0,
    readAsync: (b: Uint8Array, o: number) => {
      dev.read(b, o);
      return Promise.resolve();
    },
    writeAsync: (b: Uint8Array, o: number) => {
      calls.asyncWrites++;
      dev.write(b.slice(), o);
      return Promise.resolve();
    },
  };
  const pool = ThinPool.formatStorage(
    { metadata: keepOpen(meta), data, catalog: new MemoryCatalogStore() },
    { size: 8 * BS, blockSize: BS },
  );
  expect(pool.asyncData).toBe(true);
  const w = pool.createThinSync('w', { size: 2 * BS });
  await w.write(fill(2 * BS, 9), 0); // data blocks 0 and 1
  const v = pool.createThinSync('v', { size: 2 * BS });
  await v.write(fill(2 * BS, 1), 0); // data blocks 2 and 3
  pool.commitSync();
  const f = calls.flushes;
  const part = fill(300, 2);
  await v.write(part, BS + 100); // in place, inside v's block 1, as a request in flight
  expect(calls.asyncWrites).toBe(1);
  expect(pool.metadata.dirty).toBe(false);
  pool.commitSync();
  expect(calls.flushes, 'the in-flight write is flushed by the commit').toBe(f + 1);
  const want = fill(2 * BS, 1);
  want.set(part, BS + 100);
  const got = new Uint8Array(BS);
  await v.read(got, BS / 2);
  expect(Buffer.compare(got, want.subarray(BS / 2, BS / 2 + BS))).toBe(0);
  const wgot = new Uint8Array(2 * BS);
  await w.read(wgot, 0);
  expect(Buffer.compare(wgot, fill(2 * BS, 9))).toBe(0);
  pool.closeSync();
});
