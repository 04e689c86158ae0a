// Minimal reproductions of engine bugs found by the crash, I/O-error, fuzz and out-of-space suites. FIXED BUG n:
// a regression test of the fix. OPEN BUG n: `test.fails` documenting a bug still open — when the engine is
// fixed it starts "failing" (it passes), and the mark must be removed so it guards the fix. FIXED BUGS 2, 7 and 8
// live in metadata-full.test.ts, FIXED BUGS 3-4 in test/fuzz/fuzz-regressions.test.ts; docs/crash-safety.md lists
// them all. THINPOOL_FIGURES_DIR=<dir>: the tests that passed go to <dir>/crash-suites.json as 'regressions'
// (recordSuite of scripts/figures-crash-suites.mjs), rendered into docs/crash-safety.md by scripts/render-figures.mjs.
import { expect, test } from 'vitest';
import { CrashClock, CrashDevice } from '../../src/io/crash-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { ThinPool } from '../../src/thin/pool.js';
import { recordSuiteFigures } from '../support/suite-figures.js';

const BS = 64 * 1024;

recordSuiteFigures('regressions', undefined, { passedNames: true });

/**
 * FIXED BUG 1 — found by crash-points (workload seed 20240605, cut at I/O call 31).
 * Was: commitSync() returned early when neither the metadata nor the catalog was dirty, without flushing the
 * data device, so a commit after only in-place writes (to provisioned, unshared blocks) was acknowledged while
 * the writes were still in the device's volatile cache; a crash lost them. Fixed: the pool tracks data written
 * since the last commit (dataDirty) and every commit flushes the data device when it is set, as dm-thin passes
 * a flush down even when the metadata did not change. The crash suite no longer tolerates this case.
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

/**
 * FIXED BUG 5 — found by crash-points (workload seed 20240602, cut 43, before the generator was told to commit
 * before every reserve-snap). ThinMetadata.reserveMetadataSnap() commits the metadata itself (this.commit(),
 * twice) instead of going through ThinPool.commitSync()/stageThenCommit, so the catalog changes made since the
 * last commit (names, labels, sizes, records of new volumes) are neither staged nor published with it. The
 * metadata commit is durable when reserveMetadataSnap() resolves, the catalog is not: a crash before the next
 * commit leaves metadata and catalog out of step (a rename undone while the metadata moved on; a volume
 * created before the reserve has no catalog record at all).
 */
test('FIXED BUG 5: reserveMetadataSnap commits the catalog with the metadata', async () => {
  const clock = new CrashClock();
  const meta = new CrashDevice(clock, 1024 * 1024);
  const data = new CrashDevice(clock, 16 * BS);
  const catalog = new MemoryCatalogStore();
  const pool = ThinPool.formatStorage({ metadata: meta, data, catalog }, { size: 16 * BS, blockSize: BS });
  pool.createThinSync('a', { size: BS });
  pool.commitSync();
  pool.updateSync('a', { name: 'b' }); // catalog-only change
  pool.createThinSync('c', { size: BS }); // metadata + catalog change
  await pool.reserveMetadataSnap(); // commits the metadata (c exists on disk)
  clock.crash(() => 0.99); // keep no unflushed write
  const after = ThinPool.openStorage({ metadata: meta.afterCrash(), data: data.afterCrash(), catalog });
  const names = after.list().map((v) => v.name);
  // Today: ['a', undefined] — c is in the metadata without a catalog record, and the rename is lost.
  expect(names.sort()).toEqual(['b', 'c']);
});

/**
 * FIXED BUG 6 (shrinking now only unmaps whole blocks past the new end; bytes past the end of a partial last
 * block are zeroed when the volume grows again, so nothing allocates or commits inside a shrink) — found by crash-points on the auto-extend template (workload seed 20240615, cut 68).
 * resizeSync() shrinking a volume removes the mappings past the new end first, then zeroes the partial tail
 * block through the write path. When that tail block is shared (a snapshot), the copy-on-write allocates, and
 * the allocation may commit inside the resize: auto-extend (extendSync commits) or, on a full pool, the
 * allocator's commit to reuse blocks freed in this transaction (the removed mappings). That commit lands with
 * the tail mappings gone but the old size in the catalog (the size is set after the zeroing): after a crash the
 * volume has its old size and reads zeros where acknowledged data was — neither the state before the resize
 * nor after it. Fix: set the catalog size before anything that may commit, or zero the tail before unmapping
 * and grow before the change (as allocDataBlock's comment intends).
 */
test('FIXED BUG 6: a commit inside a shrinking resize (auto-extend) never shows old size with the tail gone', () => {
  const clock = new CrashClock();
  const meta = new CrashDevice(clock, 1024 * 1024);
  const data = new CrashDevice(clock, 8 * BS);
  const catalog = new MemoryCatalogStore();
  const pool = ThinPool.formatStorage({ metadata: meta, data, catalog }, { size: 8 * BS, blockSize: BS });
  pool.configureSpace({ autoExtend: { enabled: true, atPercent: 60, percent: 50, maxBytes: 64 * BS } });
  const v = pool.createThinSync('v', { size: 3 * BS });
  const bytes = new Uint8Array(3 * BS).fill(9);
  v.writeSync(bytes, 0);
  pool.createThinSync('w', { size: BS }).writeSync(new Uint8Array(BS).fill(1), 0); // 4 of 8 blocks used
  pool.snapshotSync('v', 's');
  pool.commitSync();
  const allocated = pool.status().dataBlocks.used;
  pool.resizeSync('s', BS + BS / 2); // fixed: shrinking only unmaps (block 2); the shared tail block is not copied
  expect(pool.status().dataBlocks.total, 'nothing grew (or committed) inside the resize').toBe(8);
  expect(pool.status().dataBlocks.used, 'no block was allocated by the shrink').toBe(allocated);
  clock.crash(() => 0.99);
  const after = ThinPool.openStorage({ metadata: meta.afterCrash(), data: data.afterCrash(), catalog });
  const s = after.volume('s');
  const got = new Uint8Array(s.sizeBytes);
  s.readSync(got, 0);
  if (s.sizeBytes === 3 * BS) expect(Buffer.compare(got, bytes), 'old size: the old bytes').toBe(0);
  else expect(s.sizeBytes).toBe(BS + BS / 2);
});
