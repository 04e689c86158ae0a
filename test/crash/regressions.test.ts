// Minimal reproductions of engine bugs found by the crash, I/O-error, fuzz and out-of-space suites. A test
// marked `test.fails` documents a bug that is still open: when the engine is fixed it starts "failing" (it
// passes), and the mark must be removed so it guards the fix. KNOWN BUG 2 lives in out-of-space.test.ts,
// KNOWN BUGS 3-4 in test/fuzz/fuzz-regressions.test.ts; docs/crash-safety.md lists them all.
import { expect, test } from 'vitest';
import { CrashClock, CrashDevice } from '../../src/io/crash-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { ThinPool } from '../../src/thin/pool.js';

const BS = 64 * 1024;

/**
 * KNOWN BUG 1 — found by crash-points (workload seed 20240605, cut at I/O call 31).
 * commitSync() returns early when neither the metadata nor the catalog is dirty, without flushing the data
 * device. In-place writes (to provisioned, unshared blocks) dirty neither, so a commit after only such writes
 * is acknowledged while the writes are still in the device's volatile cache; a crash then loses them (the
 * volume shows the previous commit's bytes). dm-thin passes a flush down to the data device even when the
 * metadata did not change; Volume.flush() promises durability.
 */
test('FIXED BUG 1: a commit after only in-place writes flushes the data device', () => {
  const clock = new CrashClock();
  const meta = new CrashDevice(clock, 1024 * 1024);
  const data = new CrashDevice(clock, 16 * BS);
  const catalog = new MemoryCatalogStore();
  const pool = ThinPool.formatStorage({ metadata: meta, data, catalog }, { size: 16 * BS, blockSize: BS });
  const v = pool.createThinSync('v', { size: BS });
  v.writeSync(new Uint8Array(512).fill(1), 0);
  pool.commitSync(); // block 0 provisioned and committed
  v.writeSync(new Uint8Array(512).fill(2), 0); // in place: the block is not shared
  pool.commitSync(); // acknowledged
  expect(data.unflushed, 'the in-place write is still unflushed after an acknowledged commit').toBe(0);
  clock.crash(() => 0.99); // keep none of the unflushed writes
  const after = ThinPool.openStorage({ metadata: meta.afterCrash(), data: data.afterCrash(), catalog });
  const got = new Uint8Array(512);
  after.volume('v').readSync(got, 0);
  expect(got[0], 'the acknowledged write survives the crash').toBe(2);
});

test('sanity: an in-place write followed by a metadata change is durable after commit', () => {
  const clock = new CrashClock();
  const meta = new CrashDevice(clock, 1024 * 1024);
  const data = new CrashDevice(clock, 16 * BS);
  const catalog = new MemoryCatalogStore();
  const pool = ThinPool.formatStorage({ metadata: meta, data, catalog }, { size: 16 * BS, blockSize: BS });
  const v = pool.createThinSync('v', { size: 2 * BS });
  v.writeSync(new Uint8Array(512).fill(1), 0);
  pool.commitSync();
  v.writeSync(new Uint8Array(512).fill(2), 0);
  v.writeSync(new Uint8Array(512).fill(3), BS); // provisions block 1: metadata dirty
  pool.commitSync();
  clock.crash(() => 0.99);
  const after = ThinPool.openStorage({ metadata: meta.afterCrash(), data: data.afterCrash(), catalog });
  const got = new Uint8Array(512);
  after.volume('v').readSync(got, 0);
  expect(got[0]).toBe(2);
});
