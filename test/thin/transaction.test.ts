// The transaction of an open pool (commit.ts) through the pool's interface: errors raised before a change
// starts leave the transaction as it was and the pool writable; a failed commit aborts to the last commit
// (metadata and catalog), sets needs_check on disk and leaves the pool read-only with an error that says so;
// commits flush the data device exactly when data was written; a catalog-only change is committed too; and
// volume records stay right when the list of volumes is replaced (delete, abort).
import { expect, test } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import type { BlockDevice } from '../../src/io/block-device.js';
import { FaultDevice } from '../../src/io/fault-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { OWNER_LABEL, ThinPool } from '../../src/thin/pool.js';
import { fill, keepOpen } from '../support/model.js';

const BS = 64 * 1024;

function counting(dev: BlockDevice) {
  const c = { flushes: 0 };
  const d: BlockDevice = {
    ...keepOpen(dev),
    get sizeBytes() {
      return dev.sizeBytes;
    },
    flush: () => {
      c.flushes++;
      dev.flush();
    },
  };
  return { d, c };
}

function newPool(dataBlocks = 32) {
  const meta = new MemoryDevice(1024 * 1024);
  const data = new MemoryDevice(dataBlocks * BS);
  const catalog = new MemoryCatalogStore();
  const fault = new FaultDevice(keepOpen(meta));
  const flushes = counting(data);
  const pool = ThinPool.formatStorage({ metadata: fault, data: flushes.d, catalog }, { size: dataBlocks * BS, blockSize: BS });
  const reopen = (readOnly = false) => ThinPool.openStorage({ metadata: keepOpen(meta), data: flushes.d, catalog }, { readOnly });
  return { pool, fault, flushes: flushes.c, reopen };
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (!isThinpoolError(e)) throw e;
    return e.code;
  }
  return 'ok';
}

function bytes(p: ThinPool, name: string, off: number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  p.volume(name).readSync(b, off);
  return b;
}

async function codeOfAsync(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
  } catch (e) {
    if (!isThinpoolError(e)) throw e;
    return e.code;
  }
  return 'ok';
}

test('refusals, inside a metadata change or before it, keep the uncommitted work and the pool writable', async () => {
  const { pool, reopen } = newPool();
  const a = pool.createThinSync('a', { size: 4 * BS });
  a.writeSync(fill(100, 1), 0);
  // Nothing committed yet: each refusal below must leave 'a' and its data in the transaction.
  expect(await codeOfAsync(() => pool.setTransactionId(5, 6)), 'compare-and-set on the wrong id').toBe('EINVAL');
  expect(await codeOfAsync(() => pool.releaseMetadataSnap()), 'no snapshot held').toBe('EINVAL');
  expect(codeOf(() => pool.createThinSync('a', { size: BS }))).toBe('EEXIST');
  expect(codeOf(() => pool.deleteSync('nope'))).toBe('ENOENT');
  expect(codeOf(() => pool.createThinSync('b', { size: 100 }))).toBe('EINVAL');
  const c = pool.createThinSync('c', { size: BS, labels: { [OWNER_LABEL]: 'images' } });
  expect(codeOf(() => pool.deleteSync('c'))).toBe('EBUSY');
  expect(pool.mode).toBe('write');
  expect(pool.status().needsCheck).toBe(false);
  c.writeSync(fill(10, 2), 0);
  pool.createThinSync('d', { size: BS });
  await pool.reserveMetadataSnap(); // commits
  pool.createThinSync('e', { size: BS });
  expect(await codeOfAsync(() => pool.reserveMetadataSnap()), 'one held snapshot at a time').toBe('EBUSY');
  expect(pool.mode).toBe('write');
  pool.closeSync();
  const again = reopen();
  expect(
    again
      .list()
      .map((v) => v.name)
      .sort(),
  ).toEqual(['a', 'c', 'd', 'e']);
  expect(again.transactionId).toBe(0);
  expect(Buffer.compare(bytes(again, 'a', 0, 100), fill(100, 1))).toBe(0);
  again.closeSync();
});

test('a failed commit aborts to the last commit, sets needs_check on disk and leaves the pool read-only', () => {
  const { pool, fault, reopen } = newPool();
  const a = pool.createThinSync('a', { size: 4 * BS });
  a.writeSync(fill(100, 1), 0);
  pool.commitSync();
  pool.createThinSync('b', { size: BS });
  a.writeSync(fill(100, 2), BS);
  fault.failAt({ write: fault.writes }); // the next metadata write fails: inside the commit
  const err = codeOf(() => pool.commitSync());
  expect(err).toBe('EIO');
  expect(pool.mode).toBe('read-only');
  expect(pool.status().needsCheck).toBe(true);
  // The catalog went back with the metadata: 'b' is gone, 'a' is as committed.
  expect(pool.list().map((v) => v.name)).toEqual(['a']);
  expect(bytes(pool, 'a', BS, 100).every((x) => x === 0)).toBe(true);
  // Metadata changes are refused with an error that says why.
  let message = '';
  try {
    pool.createThinSync('c', { size: BS });
  } catch (e) {
    expect(isThinpoolError(e, 'EROFS')).toBe(true);
    message = (e as Error).message;
  }
  expect(message).toMatch(/needs_check is set after a failed metadata operation/);
  pool.closeSync();
  const again = reopen(true);
  expect(again.status().needsCheck, 'needs_check is on disk').toBe(true);
  expect(again.list().map((v) => v.name)).toEqual(['a']);
  again.closeSync();
});

test('a pool opened read-only refuses changes as read-only, and its commit still flushes in-place data', () => {
  const { pool, flushes, reopen } = newPool();
  const a = pool.createThinSync('a', { size: 4 * BS });
  a.writeSync(fill(100, 1), 0);
  pool.closeSync();
  const ro = reopen(true);
  let message = '';
  try {
    ro.createThinSync('x', { size: BS });
  } catch (e) {
    expect(isThinpoolError(e, 'EROFS')).toBe(true);
    message = (e as Error).message;
  }
  expect(message).toBe('pool is read-only');
  const before = flushes.flushes;
  ro.commitSync();
  expect(flushes.flushes, 'nothing written: no flush').toBe(before);
  ro.volume('a').writeSync(fill(100, 3), 0); // mapped and unshared: written in place even read-only
  ro.commitSync();
  expect(flushes.flushes, 'in-place data is flushed').toBe(before + 1);
  ro.commitSync();
  expect(flushes.flushes, 'once').toBe(before + 1);
  ro.closeSync();
  const again = reopen();
  expect(Buffer.compare(bytes(again, 'a', 0, 100), fill(100, 3))).toBe(0);
  again.closeSync();
});

test('commits flush the data device when data was written, and commit a change of the catalog alone', () => {
  const { pool, flushes, reopen } = newPool();
  const a = pool.createThinSync('a', { size: 4 * BS });
  a.writeSync(fill(100, 1), 0);
  pool.commitSync();
  let f = flushes.flushes;
  pool.commitSync();
  expect(flushes.flushes, 'nothing to commit: no flush').toBe(f);
  a.writeSync(fill(100, 2), 0); // in place: no metadata change
  pool.commitSync();
  expect(flushes.flushes).toBe(f + 1);
  f = flushes.flushes;
  pool.renameSync('a', 'renamed'); // the catalog alone
  pool.commitSync();
  pool.closeSync({ commit: false });
  const again = reopen();
  expect(again.list().map((v) => v.name)).toEqual(['renamed']);
  expect(Buffer.compare(bytes(again, 'renamed', 0, 100), fill(100, 2))).toBe(0);
  again.closeSync();
});

test('volume records stay right when the list of volumes is replaced', () => {
  const { pool, fault } = newPool();
  const a = pool.createThinSync('a', { size: 2 * BS });
  expect(a.sizeBytes).toBe(2 * BS);
  pool.deleteSync('a');
  const b = pool.createThinSync('b', { size: 3 * BS }); // a list of the same length, another array
  expect(pool.volume('b').sizeBytes).toBe(3 * BS);
  expect(b.name).toBe('b');
  pool.commitSync();
  const c = pool.createThinSync('c', { size: 5 * BS });
  expect(c.sizeBytes).toBe(5 * BS);
  pool.deleteSync('b');
  const d = pool.createThinSync('d', { size: 7 * BS });
  expect(d.sizeBytes).toBe(7 * BS);
  fault.failAt({ write: fault.writes });
  expect(codeOf(() => pool.commitSync())).toBe('EIO');
  // Aborted to the commit holding 'b' alone: its record is back.
  expect(pool.list().map((v) => v.name)).toEqual(['b']);
  expect(pool.volume('b').sizeBytes).toBe(3 * BS);
  expect(pool.has('d')).toBe(false);
  pool.closeSync();
});
