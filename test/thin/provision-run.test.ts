// Whole unmapped blocks written together (data-path.ts provisionRun): the bytes, the mappings and the space
// accounting are what block-by-block provisioning gives, consecutive data blocks go to the device in one write,
// a failed data write gives back every block of the run (the pool stays writable), and the edges (a nearly full
// pool, blocks freed in the same transaction) keep their per-block meaning.
import { expect, test } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import { FaultDevice } from '../../src/io/fault-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { ThinPool } from '../../src/thin/pool.js';
import { fill, keepOpen } from '../support/model.js';
import { verifyMetadataDevice } from '../support/pool-check.js';

const BS = 64 * 1024;

function newPool(dataBlocks: number) {
  const meta = new MemoryDevice(4 * 1024 * 1024);
  const data = new FaultDevice(keepOpen(new MemoryDevice(dataBlocks * BS)));
  const catalog = new MemoryCatalogStore();
  const pool = ThinPool.formatStorage(
    { metadata: keepOpen(meta), data: keepOpen(data), catalog },
    { size: dataBlocks * BS, blockSize: BS },
  );
  const reopen = () => ThinPool.openStorage({ metadata: keepOpen(meta), data: keepOpen(data), catalog }, {});
  return { pool, data, meta, reopen };
}

function read(p: ThinPool, name: string, off: number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  p.volume(name).readSync(b, off);
  return b;
}

function mapped(p: ThinPool, name: string): number[] {
  return p
    .volume(name)
    .map()
    .flatMap((e) => Array.from({ length: e.lengthBytes / BS }, (_, i) => e.offsetBytes / BS + i));
}

test('a write over unmapped, mapped and shared blocks: bytes, mappings and space as block by block, runs in one device write', () => {
  const { pool, data, meta, reopen } = newPool(64);
  const v = pool.createThinSync('v', { size: 32 * BS });
  v.writeSync(fill(BS, 1), 4 * BS); // mapped, will be shared with the snapshot
  v.writeSync(fill(BS, 2), 9 * BS); // mapped, will be written in place
  pool.snapshotSync('v', 's');
  v.writeSync(fill(BS, 3), 9 * BS); // breaks sharing of block 9 only
  const usedBefore = pool.status().dataBlocks.used;
  expect(usedBefore).toBe(3);
  // From the middle of block 1 to the middle of block 20: a partial edge, unmapped 2..3, shared 4, unmapped
  // 5..8, mapped 9, unmapped 10..19, a partial edge.
  const start = BS + 1000;
  const buf = fill(19 * BS, 7);
  const writes = data.writes;
  v.writeSync(buf, start);
  expect(read(pool, 'v', start, buf.length)).toEqual(buf);
  expect(read(pool, 'v', 0, start).every((x) => x === 0)).toBe(true);
  expect(read(pool, 'v', start + buf.length, 32 * BS - start - buf.length).every((x) => x === 0)).toBe(true);
  expect(read(pool, 's', 4 * BS, BS)).toEqual(fill(BS, 1)); // the snapshot keeps its block
  expect(read(pool, 's', 9 * BS, BS)).toEqual(fill(BS, 2));
  expect(mapped(pool, 'v')).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  // New blocks: 1 (edge), 2, 3, 4 (copy of the shared one), 5..8, 10..19, 20 (edge): 19, block 9 in place.
  expect(pool.status().dataBlocks.used).toBe(usedBefore + 19);
  // The runs 2..3, 5..8 and 10..19 go down as one device write each (their data blocks are consecutive on a
  // fresh pool), not one per block: far fewer writes than the 20 blocks touched.
  expect(data.writes - writes).toBeLessThan(10);
  pool.commitSync();
  pool.closeSync();
  const again = reopen();
  expect(read(again, 'v', start, buf.length)).toEqual(buf);
  expect(read(again, 's', 4 * BS, BS)).toEqual(fill(BS, 1));
  expect(again.status().dataBlocks.used).toBe(usedBefore + 19);
  again.closeSync();
  verifyMetadataDevice(meta);
});

test('a failed data write of a run gives back every block of it; the pool stays writable and consistent', () => {
  const { pool, data, meta, reopen } = newPool(64);
  const v = pool.createThinSync('v', { size: 16 * BS });
  v.writeSync(fill(BS, 1), 0);
  pool.commitSync();
  data.failAt({ write: data.writes });
  let code = 'ok';
  try {
    v.writeSync(fill(8 * BS, 2), 4 * BS);
  } catch (e) {
    if (!isThinpoolError(e)) throw e;
    code = e.code;
  }
  expect(code).toBe('EIO');
  expect(pool.mode).toBe('write');
  expect(pool.status().dataBlocks.used).toBe(1);
  expect(mapped(pool, 'v')).toEqual([0]);
  expect(read(pool, 'v', 4 * BS, 8 * BS).every((x) => x === 0)).toBe(true);
  v.writeSync(fill(8 * BS, 3), 4 * BS); // the same write again succeeds
  expect(read(pool, 'v', 4 * BS, 8 * BS)).toEqual(fill(8 * BS, 3));
  expect(pool.status().dataBlocks.used).toBe(9);
  pool.commitSync();
  pool.closeSync();
  const again = reopen();
  expect(again.status().dataBlocks.used).toBe(9);
  again.closeSync();
  verifyMetadataDevice(meta);
});

test('a nearly full pool: the blocks that fit are written and mapped, then ENOSPC_DATA with the pool writable', () => {
  const { pool, meta } = newPool(8);
  const v = pool.createThinSync('v', { size: 16 * BS });
  v.writeSync(fill(3 * BS, 1), 0);
  let code = 'ok';
  const buf = fill(8 * BS, 2);
  try {
    v.writeSync(buf, 4 * BS);
  } catch (e) {
    if (!isThinpoolError(e)) throw e;
    code = e.code;
  }
  expect(code).toBe('ENOSPC_DATA');
  expect(pool.mode).toBe('write');
  expect(pool.status().dataBlocks.used).toBe(8);
  expect(mapped(pool, 'v')).toEqual([0, 1, 2, 4, 5, 6, 7, 8]);
  expect(read(pool, 'v', 4 * BS, 5 * BS)).toEqual(buf.subarray(0, 5 * BS));
  pool.commitSync();
  pool.closeSync();
  verifyMetadataDevice(meta);
});

test('blocks freed in the same transaction are reused after the commit a full pool makes, as block by block', () => {
  const { pool, meta, reopen } = newPool(8);
  const a = pool.createThinSync('a', { size: 8 * BS });
  a.writeSync(fill(6 * BS, 1), 0);
  pool.commitSync();
  pool.deleteSync('a'); // 6 blocks freed, reusable only after a commit
  const b = pool.createThinSync('b', { size: 8 * BS });
  const buf = fill(8 * BS, 2);
  b.writeSync(buf, 0);
  expect(read(pool, 'b', 0, 8 * BS)).toEqual(buf);
  expect(pool.status().dataBlocks.used).toBe(8);
  pool.commitSync();
  pool.closeSync();
  const again = reopen();
  expect(read(again, 'b', 0, 8 * BS)).toEqual(buf);
  expect(again.has('a')).toBe(false);
  again.closeSync();
  verifyMetadataDevice(meta);
});
