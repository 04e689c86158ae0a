// Rollback through the pool's interface (src/thin/volumes.ts): the refusals and what each names, what a rollback
// shares with its snapshot afterwards (also when the sizes differ or end inside a block), when it commits first
// (metadata space short), what a rollback refused part-way (the pool's time exhausted) gives back, also when its
// copy landed on data block 0, and that a failure inside its change that is no clean refusal reaches the caller.
import { expect, test } from 'vitest';
import { checkMetadataDevice } from '../../src/thin/check.js';
import { MAX_TIME } from '../../src/thin/metadata.js';
import { ThinPool } from '../../src/thin/pool.js';
import { restoreMetadata } from '../../src/thin/restore.js';
import { parseThinXml } from '../../src/thin/thin-xml.js';
import { BS, devices, memoryPool, readVolume } from '../support/memory-pools.js';
import { thrown, thrownError } from '../support/thrown.js';
import { fill, keepOpen } from '../support/model.js';

/** A thin device of `thin_dump` XML mapping `length` blocks from `dataBegin`, one range. */
const device = (id: number, length: number, dataBegin = 0): string => `
  <device dev_id="${id}" mapped_blocks="${length}" transaction="0" creation_time="0" snap_time="0">
    <range_mapping origin_begin="0" data_begin="${dataBegin}" length="${length}" time="0"/>
  </device>`;

/**
 * A pool (16 data blocks) restored from thin_dump XML whose time is one below its maximum (one more snapshot may
 * be made, then no rollback, which needs a new time), holding the devices given (no catalog records).
 */
function lastTimePool(devicesXml: string) {
  const d = devices(16);
  restoreMetadata(
    d.meta,
    parseThinXml(`<superblock uuid="" time="${MAX_TIME - 1}" transaction="1" flags="0" version="2" data_block_size="${BS / 512}" nr_data_blocks="16">${devicesXml}
</superblock>`),
  );
  return { d, pool: ThinPool.openStorage({ metadata: keepOpen(d.meta), data: keepOpen(d.data), catalog: d.catalog }) };
}

test('rollback: refusals name the volume; equal sizes ending inside a block share every block afterwards', () => {
  const { pool } = memoryPool();
  const v = pool.createThinSync('v', { size: 2 * BS + BS / 2 });
  v.writeSync(fill(2 * BS + BS / 2, 1), 0);
  pool.snapshotSync('v', 's');
  v.writeSync(fill(BS, 2), 0);
  expect(thrownError(() => pool.rollbackSync('v', 'v'))).toEqual({ code: 'EINVAL', message: 'volume v cannot be rolled back to itself' });
  pool.updateSync('v', { readOnly: true });
  expect(thrownError(() => pool.rollbackSync('v', 's'))).toEqual({
    code: 'EROFS',
    message: 'volume v is read-only: it cannot be rolled back (make it writable first: "thinpool set POOL v --writable")',
  });
  pool.updateSync('v', { readOnly: false });
  const used = pool.status().dataBlocks.used;
  pool.rollbackSync('v', 's');
  expect(pool.list().map((x) => [x.name, x.mappedBytes, x.exclusiveBytes, x.sharedBytes])).toEqual([
    ['v', 3 * BS, 0, 3 * BS],
    ['s', 3 * BS, 0, 3 * BS],
  ]);
  pool.commitSync();
  expect(pool.status().dataBlocks.used).toBe(used - 1);
  expect(Buffer.compare(readVolume(pool, 'v', 0, 2 * BS + BS / 2), fill(2 * BS + BS / 2, 1))).toBe(0);
  pool.closeSync();
});

/** v written with seed 1, snapshot s, committed; then v rewritten with seed 2 (not committed) and rolled back to s. */
function rollbackUncommitted(metadataBlocks?: number): ThinPool {
  const d = devices(32, (metadataBlocks ?? 256) * 4096);
  const storage = () => ({ metadata: keepOpen(d.meta), data: keepOpen(d.data), catalog: d.catalog });
  const pool = ThinPool.formatStorage(storage(), { size: 32 * BS, blockSize: BS });
  const v = pool.createThinSync('v', { size: 2 * BS });
  v.writeSync(fill(2 * BS, 1), 0);
  pool.snapshotSync('v', 's');
  pool.commitSync();
  v.writeSync(fill(2 * BS, 2), 0);
  pool.rollbackSync('v', 's');
  pool.closeSync({ commit: false });
  return ThinPool.openStorage(storage());
}

test('rollback commits first only when metadata space is short: otherwise an uncommitted write before it stays uncommitted', () => {
  const roomy = rollbackUncommitted();
  expect(Buffer.compare(readVolume(roomy, 'v', 0, 2 * BS), fill(2 * BS, 1))).toBe(0);
  expect(roomy.list().map((x) => x.name)).toEqual(['v', 's']);
  roomy.closeSync();
  const tight = rollbackUncommitted(100);
  expect(tight.status().metadataBlocks.total).toBe(100);
  expect(Buffer.compare(readVolume(tight, 'v', 0, 2 * BS), fill(2 * BS, 2))).toBe(0);
  tight.closeSync();
});

test("a rollback refused after its tail block was copied gives that block back (the pool's time exhausted)", () => {
  const { d, pool } = lastTimePool(device(1, 3));
  pool.resizeSync(1, 2 * BS + BS / 2); // the snapshot will end inside block 2
  pool.snapshotSync(1, 's');
  pool.resizeSync(1, 4 * BS);
  pool.commitSync();
  const used = pool.status().dataBlocks.used;
  expect(() => pool.rollbackSync(1, 's')).toThrow(
    expect.objectContaining({ code: 'EINVAL', message: 'pool time exhausted (2^24 snapshots)' }),
  );
  expect(pool.status().dataBlocks.used, 'the copy of the tail block was given back').toBe(used);
  expect(pool.mode).toBe('write');
  pool.commitSync();
  const again = ThinPool.openStorage({ metadata: keepOpen(d.meta), data: keepOpen(d.data), catalog: d.catalog });
  expect(again.status().dataBlocks.used).toBe(used);
  expect(checkMetadataDevice(keepOpen(d.meta)).errors).toEqual([]);
  again.closeSync();
  pool.closeSync();
});

test('a refused rollback gives its tail copy back when the copy landed on data block 0', () => {
  // Data block 0 held by device 2 and blocks 5-15 by device 3: volume 1 maps blocks 1-3, and block 4 is left for
  // the copy-on-write of the grow below.
  const { d, pool } = lastTimePool(device(1, 3, 1) + device(2, 1, 0) + device(3, 11, 5));
  pool.resizeSync(1, 2 * BS + BS / 2);
  pool.snapshotSync(1, 's');
  pool.resizeSync(1, 4 * BS);
  pool.deleteSync(2);
  pool.commitSync();
  expect(pool.status().dataBlocks.free, 'data block 0 is the only free block').toBe(1);
  expect(() => pool.rollbackSync(1, 's')).toThrow(
    expect.objectContaining({ code: 'EINVAL', message: 'pool time exhausted (2^24 snapshots)' }),
  );
  expect(pool.status().dataBlocks.free, 'the copy on data block 0 was given back').toBe(1);
  pool.commitSync();
  expect(checkMetadataDevice(keepOpen(d.meta)).errors).toEqual([]);
  pool.closeSync();
});

test('a rollback whose change fails after the tail copy reports that failure, not the give-back the failed pool refuses', () => {
  const { pool } = memoryPool();
  pool.createThinSync('v', { size: 3 * BS }).writeSync(fill(3 * BS, 1), 0);
  pool.resizeSync('v', 2 * BS + BS / 2); // the snapshot ends inside block 2: the rollback copies that block
  pool.snapshotSync('v', 's');
  pool.resizeSync('v', 4 * BS);
  pool.commitSync();
  // A failure inside the change that is no clean refusal (as an I/O error would be): the change aborts to the last
  // commit and the pool goes read-only, so the copy's block needs no giving back (and could not be given).
  const failure = new Error('injected failure inside the rollback');
  (pool.metadata as unknown as { rollbackDevice(id: number, sid: number): void }).rollbackDevice = () => {
    throw failure;
  };
  expect(thrown(() => pool.rollbackSync('v', 's'))).toBe(failure);
  expect(pool.mode).toBe('read-only');
  expect(pool.status().needsCheck).toBe(true);
  pool.closeSync({ commit: false });
});

test("a rollback whose tail block's copy lands on data block 0 maps it like any other", () => {
  const { pool } = memoryPool(6);
  pool.createThinSync('a', { size: BS }).writeSync(fill(BS, 1), 0); // data block 0
  const v = pool.createThinSync('v', { size: 3 * BS });
  v.writeSync(fill(3 * BS, 2), 0);
  pool.commitSync();
  pool.resizeSync('v', 2 * BS + BS / 2);
  pool.snapshotSync('v', 's');
  pool.resizeSync('v', 4 * BS);
  pool.createThinSync('b', { size: BS }).writeSync(fill(BS, 3), 0); // the pool's last free block
  pool.commitSync();
  pool.deleteSync('a');
  pool.commitSync(); // data block 0 is the only free block
  expect(pool.status().dataBlocks.free).toBe(1);
  pool.rollbackSync('v', 's');
  expect(v.map().find((e) => e.offsetBytes === 2 * BS)?.dblock).toBe(0);
  const want = new Uint8Array(4 * BS);
  want.set(fill(3 * BS, 2).subarray(0, 2 * BS + BS / 2));
  expect(Buffer.compare(readVolume(pool, 'v', 0, 4 * BS), want)).toBe(0);
  expect(pool.status().dataBlocks.free, "v's own copy of the tail block, from before the rollback, is free").toBe(1);
  pool.closeSync();
});

test('a rollback to a larger snapshot keeps the volume its size: nothing stays mapped past its end', () => {
  const { pool } = memoryPool();
  const v = pool.createThinSync('v', { size: 4 * BS });
  v.writeSync(fill(4 * BS, 1), 0);
  pool.snapshotSync('v', 's');
  pool.resizeSync('v', 2 * BS);
  pool.rollbackSync('v', 's');
  expect(v.sizeBytes).toBe(2 * BS);
  expect(v.map()).toEqual([expect.objectContaining({ offsetBytes: 0, lengthBytes: 2 * BS })]);
  expect(Buffer.compare(readVolume(pool, 'v', 0, 2 * BS), fill(2 * BS, 1))).toBe(0);
  pool.resizeSync('v', 4 * BS); // grown again: what lay past the end is gone
  expect(readVolume(pool, 'v', 2 * BS, 2 * BS).every((x) => x === 0)).toBe(true);
  expect(Buffer.compare(readVolume(pool, 's', 0, 4 * BS), fill(4 * BS, 1))).toBe(0);
  pool.closeSync();
});

test('a rollback refused with nothing copied (the pool time exhausted) changes nothing and keeps the error', () => {
  const { pool } = lastTimePool(device(1, 2));
  pool.snapshotSync(1, 's'); // the last time the pool has
  const used = pool.status().dataBlocks.used;
  expect(() => pool.rollbackSync(1, 's')).toThrow(
    expect.objectContaining({ code: 'EINVAL', message: 'pool time exhausted (2^24 snapshots)' }),
  );
  expect(pool.status().dataBlocks.used).toBe(used);
  expect(pool.mode).toBe('write');
  pool.closeSync();
});
