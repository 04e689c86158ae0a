// Growing a pool and giving freed space back to the host, at their edges: growing to the same size does
// nothing, shrinking either device is refused, a read-only pool cannot grow, 'extended' events carry the sizes;
// freed blocks go back to the data device as coalesced runs only after the commit and only while no volume
// holds them; a device that cannot punch holes is reported once; trim reports progress; blocks written but
// never committed are released below the high-water mark only. All in memory, through the pool's interface.
import { expect, test } from 'vitest';
import type { BlockDevice } from '../../src/io/block-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { MemoryHighWaterStore } from '../../src/thin/high-water.js';
import { ThinPool, type PoolStorage } from '../../src/thin/pool.js';
import { fill, keepOpen } from '../support/model.js';
import { typedError } from '../support/thrown.js';

const BS = 64 * 1024;

/** A data device that records the discards asked of it (in blocks), and can refuse them. */
function recordingData(blocks: number, canPunch = true) {
  const dev = new MemoryDevice(blocks * BS);
  const discards: Array<[number, number]> = [];
  const wrapped: BlockDevice = {
    ...keepOpen(dev),
    get sizeBytes() {
      return dev.sizeBytes;
    },
    discard: (o, l) => {
      discards.push([o / BS, l / BS]);
      return canPunch ? dev.discard(o, l) : false;
    },
  };
  return { dev, wrapped, discards };
}

function newPool(dataBlocks: number, opts: { canPunch?: boolean; metaBytes?: number } = {}) {
  const meta = new MemoryDevice(opts.metaBytes ?? 1024 * 1024);
  const data = recordingData(dataBlocks, opts.canPunch ?? true);
  const catalog = new MemoryCatalogStore();
  const highWater = new MemoryHighWaterStore(0);
  const storage: PoolStorage = { metadata: keepOpen(meta), data: data.wrapped, catalog, highWater };
  const pool = ThinPool.formatStorage(storage, { size: dataBlocks * BS, blockSize: BS });
  const reopen = (more: Partial<PoolStorage> = {}, readOnly = false) =>
    ThinPool.openStorage({ metadata: keepOpen(meta), data: data.wrapped, catalog, highWater, ...more }, { readOnly });
  return { pool, meta, data, reopen };
}

test('extend: the same size changes nothing, a smaller one is EINVAL naming both sizes, a larger one grows and says so', () => {
  const { pool, reopen } = newPool(16);
  const events: unknown[] = [];
  pool.on('extended', (e) => events.push(e));
  const txBefore = pool.status();
  pool.extendSync({ size: 16 * BS + BS - 1, metadataSize: 1024 * 1024 + 4095 }); // rounds down to the same sizes
  expect(events).toEqual([]);
  expect(pool.status()).toEqual(txBefore);

  expect(typedError(() => pool.extendSync({ size: 15 * BS }))).toEqual({
    code: 'EINVAL',
    message: 'shrinking the data device (16 -> 15 blocks) is not supported',
  });
  expect(typedError(() => pool.extendSync({ metadataSize: 1024 * 1024 - 4096 }))).toEqual({
    code: 'EINVAL',
    message: 'shrinking the metadata device (256 -> 255 blocks) is not supported',
  });
  expect(pool.mode, 'a refused shrink leaves the pool writable').toBe('write');

  pool.extendSync({ size: 20 * BS });
  pool.extendSync({ metadataSize: 2 * 1024 * 1024 });
  expect(events).toEqual([
    { resource: 'data', fromBlocks: 16, toBlocks: 20, auto: false },
    { resource: 'metadata', fromBlocks: 256, toBlocks: 512, auto: false },
  ]);
  const st = pool.status();
  expect(st.dataBlocks.total).toBe(20);
  expect(st.metadataBlocks.total).toBe(512);
  const v = pool.createThinSync('v', { size: 20 * BS });
  for (let b = 0; b < 20; b++) v.writeSync(fill(100, b), b * BS);
  expect(pool.status().dataBlocks).toEqual({ used: 20, total: 20, free: 0 });
  pool.closeSync();
  const again = reopen();
  expect(again.status().dataBlocks.total, 'growth is committed').toBe(20);
  expect(again.status().metadataBlocks.total).toBe(512);
  again.closeSync();
});

test('extend: a read-only pool cannot grow (EROFS), and nothing changes', () => {
  const { pool, reopen } = newPool(8);
  pool.closeSync();
  const p = reopen({}, true);
  const r = typedError(() => p.extendSync({ size: 16 * BS }));
  expect(r.code).toBe('EROFS');
  expect(r.message).toMatch(/cannot grow/);
  expect(p.status().dataBlocks.total).toBe(8);
  p.closeSync();
});

test('auto-extend grows by its percentage, at least one block, and stops at its maximum', () => {
  const { pool } = newPool(4);
  // 10 % of 4 blocks is 0.4: at least one block each time.
  pool.configureSpace({ autoExtend: { enabled: true, atPercent: 100, percent: 10, maxBytes: 6 * BS + BS - 1 } });
  const grown: Array<{ fromBlocks: number; toBlocks: number; auto: boolean }> = [];
  pool.on('extended', (e) => grown.push({ fromBlocks: e.fromBlocks, toBlocks: e.toBlocks, auto: e.auto }));
  const v = pool.createThinSync('v', { size: 16 * BS });
  let written = 0;
  for (; written < 16; written++) {
    const r = typedError(() => v.writeSync(fill(10, written), written * BS));
    if (r.code !== 'ok') {
      expect(r.code).toBe('ENOSPC_DATA');
      expect(r.message).toBe(`pool is full: all 6 data blocks (${6 * BS} bytes) are in use; delete volumes or extend the pool`);
      break;
    }
  }
  expect(written).toBe(6);
  expect(grown).toEqual([
    { fromBlocks: 4, toBlocks: 5, auto: true },
    { fromBlocks: 5, toBlocks: 6, auto: true },
  ]);
  expect(pool.mode).toBe('write');
});

test('passdown: freed blocks go back to the device after the commit, in coalesced runs, only those no volume holds', () => {
  const { pool, data } = newPool(32);
  const a = pool.createThinSync('a', { size: 16 * BS });
  for (let b = 0; b < 10; b++) a.writeSync(fill(BS, b), b * BS); // data blocks 0..9
  pool.commitSync();
  pool.snapshotSync('a', 's');
  a.writeSync(fill(BS, 50), 2 * BS); // block 2 was shared: a gets a copy (data block 10), s keeps data block 2
  pool.commitSync();
  data.discards.length = 0;
  a.discardSync(0, 3 * BS); // data 0, 1 still held by s; a's copy (10) freed
  pool.commitSync();
  expect(data.discards, 'only the block no volume holds').toEqual([[10, 1]]);
  data.discards.length = 0;
  pool.deleteSync('s'); // frees data 0, 1, 2 (a keeps 3..9)
  expect(data.discards, 'nothing released before the commit').toEqual([]);
  pool.commitSync();
  expect(data.discards, 'one run').toEqual([[0, 3]]);
  // With passdown off, nothing is released; trim then finds every unused block, in runs, reporting progress.
  pool.configureSpace({ discardPassdown: false });
  pool.commitSync();
  data.discards.length = 0;
  a.discardSync(4 * BS, 3 * BS);
  pool.commitSync();
  expect(data.discards).toEqual([]);
  const progress: Array<[number, number]> = [];
  const total = pool.trimSync((done, of) => progress.push([done, of]));
  expect(total).toBe(32 - 4);
  expect(progress).toEqual([
    [3, 28],
    [6, 28],
    [28, 28],
  ]);
  expect(data.discards).toEqual([
    [0, 3],
    [4, 3],
    [10, 22],
  ]);
});

test('a device that cannot punch holes is reported once, and trim says it released nothing', () => {
  const { pool, data } = newPool(16, { canPunch: false });
  const warnings: string[] = [];
  pool.on('warning', (w) => warnings.push(w.code));
  const a = pool.createThinSync('a', { size: 8 * BS });
  for (let b = 0; b < 8; b++) a.writeSync(fill(10, b), b * BS);
  pool.commitSync();
  a.discardSync(0, 2 * BS);
  a.discardSync(4 * BS, 2 * BS);
  pool.commitSync();
  expect(warnings).toEqual(['NO_PUNCH_HOLE']);
  expect(data.discards, 'the first refusal ends that release').toEqual([[0, 2]]);
  a.discardSync(6 * BS, 2 * BS);
  pool.commitSync();
  expect(pool.trimSync()).toBe(0);
  expect(warnings, 'reported once').toEqual(['NO_PUNCH_HOLE']);
  expect(pool.mode).toBe('write');
});

test('passdown sorts the freed blocks before coalescing: blocks freed in descending order are released as one run', () => {
  const { pool, data } = newPool(16);
  const a = pool.createThinSync('a', { size: 8 * BS });
  const keep = pool.createThinSync('keep', { size: BS });
  keep.writeSync(fill(10, 9), 0); // data block 0
  // Written last block first: virtual block 5 gets data block 1, ..., virtual block 0 data block 6. Deleting
  // 'a' frees them in virtual-block order, so the data blocks come out descending.
  for (let b = 5; b >= 0; b--) a.writeSync(fill(10, b), b * BS);
  pool.commitSync();
  expect(data.discards).toEqual([]);
  pool.deleteSync('a');
  pool.commitSync();
  expect(data.discards).toEqual([[1, 6]]);
  const got = new Uint8Array(10);
  keep.readSync(got, 0);
  expect(Buffer.compare(got, fill(10, 9))).toBe(0);
});

test('the warning for a device that cannot punch holes says what it means', () => {
  const { pool } = newPool(8, { canPunch: false });
  const warnings: { code: string; message: string }[] = [];
  pool.on('warning', (w) => warnings.push(w));
  const a = pool.createThinSync('a', { size: 2 * BS });
  a.writeSync(fill(10, 1), 0);
  pool.commitSync();
  pool.deleteSync('a');
  pool.commitSync();
  expect(warnings).toEqual([
    {
      code: 'NO_PUNCH_HOLE',
      message: 'the data device cannot release space (no hole punching here): freed blocks stay allocated in the data file',
    },
  ]);
});

test('after an unclean stop, blocks free in the committed state are released up to the high-water mark, not past it', () => {
  // Nothing ever written: the mark is 0 and nothing is released.
  const fresh = newPool(64);
  fresh.pool.createThinSync('a', { size: 32 * BS });
  fresh.pool.commitSync();
  fresh.pool.closeSync({ commit: false });
  fresh.data.discards.length = 0;
  const f = fresh.reopen({ uncleanStop: true });
  expect(f.releasedOnOpen).toBe(0);
  expect(fresh.data.discards).toEqual([]);
  f.closeSync();

  // Written: the mark is raised in steps past the device's end, so every free block is released.
  const { pool, data, reopen } = newPool(64);
  const a = pool.createThinSync('a', { size: 32 * BS });
  for (let b = 0; b < 4; b++) a.writeSync(fill(10, b), b * BS); // data 0..3, committed
  pool.commitSync();
  for (let b = 4; b < 10; b++) a.writeSync(fill(10, b), b * BS); // data 4..9, never committed
  pool.closeSync({ commit: false });
  data.discards.length = 0;
  const p = reopen({ uncleanStop: true });
  expect(p.releasedOnOpen).toBe(60);
  expect(data.discards).toEqual([[4, 60]]);
  const got = new Uint8Array(10);
  for (let b = 0; b < 4; b++) {
    p.volume('a').readSync(got, b * BS);
    expect(Buffer.compare(got, fill(10, b))).toBe(0);
  }
  p.volume('a').readSync(got, 5 * BS);
  expect(got.every((x) => x === 0)).toBe(true);
  // Refused with uncommitted changes.
  p.volume('a').writeSync(fill(10, 99), 20 * BS);
  expect(typedError(() => p.releaseUncommittedSync()).code).toBe('EBUSY');
  p.closeSync();
});
