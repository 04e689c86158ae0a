// Every byte written to the data device since its last flush is flushed by the next commit (in read-only mode
// too), in the corners of the deferred copy-on-write (src/thin/pending-copies.ts), where a block's bytes reach the
// device after the write that made it: a commit made by a 'threshold' listener right after a write of whole
// granules into a shared block (events reach listeners when the operation that raised them ends:
// src/thin/event-gate.ts; before FIXED BUG 9 they came in its middle, between the mapping of the new block and the
// record of what it owes), so that the copy and the held granules, or the block written whole by later writes,
// must be flushed by a later commit; and an owed copy that fails, the transaction then aborted (the copy dropped),
// with in-place writes still unflushed. Each case crashes the devices after the commit, losing every unflushed
// write, and reopens them. A crash right after the listener's own commit: test/thin/event-gate.test.ts.
import { expect, test } from 'vitest';
import { CrashClock, CrashDevice } from '../../src/io/crash-device.js';
import { FaultDevice } from '../../src/io/fault-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { ThinPool } from '../../src/thin/pool.js';
import type { Volume } from '../../src/thin/volume.js';
import { fill, keepOpen, sameBytes } from '../support/model.js';
import { codeOf } from '../support/thrown.js';

const BS = 64 * 1024;
const G = 4096;
const BLOCKS = 4;

/** Crash devices for a pool of 16 data blocks holding volume v (BLOCKS blocks written) and its snapshot s, committed. */
function sharedPool(metadataThreshold: number) {
  const clock = new CrashClock();
  const meta = new CrashDevice(clock, new MemoryDevice(1 << 20));
  const data = new CrashDevice(clock, new MemoryDevice(16 * BS));
  const catalog = new MemoryCatalogStore();
  const pool = ThinPool.formatStorage({ metadata: meta, data, catalog }, { size: 16 * BS, blockSize: BS });
  const v = pool.createThinSync('v', { size: BLOCKS * BS });
  const before = fill(BLOCKS * BS, 1);
  v.writeSync(before, 0);
  pool.snapshotSync('v', 's');
  pool.configureSpace({ thresholds: { data: [100], metadata: [metadataThreshold] } });
  pool.commitSync();
  /** Crash now (every unflushed write lost) and open the devices as the crash left them. */
  const crashAndReopen = () => {
    clock.crash(() => 0.99);
    return ThinPool.openStorage({ metadata: meta.afterCrash(), data: data.afterCrash(), catalog: catalog.clone() });
  };
  return { pool, v, before, crashAndReopen };
}

/** The data block that block `b` of v maps (extents are whole blocks, coalesced over consecutive data blocks). */
function dblockOf(v: Volume, b: number): number {
  const [e] = v.extents(b * BS, BS);
  return e!.dblock + (b * BS - e!.offsetBytes) / BS;
}

/** All of v's bytes. */
function readAll(v: Volume): Uint8Array {
  const b = new Uint8Array(BLOCKS * BS);
  v.readSync(b, 0);
  return b;
}

/**
 * A pool in which a listener commits at the metadata threshold crossed while a 4 KiB write into granule 1 of a
 * shared block maps its new block: the threshold is searched for (the first one crossed by a mapping rather than
 * by an allocation), as the metadata layout decides where it lies. Returns the pool and the block written.
 */
function committedByListener() {
  for (let t = 0.5; t <= 50; t += 0.5) {
    const p = sharedPool(t);
    const { pool, v } = p;
    const old = Array.from({ length: BLOCKS }, (_, b) => dblockOf(v, b));
    let block = -1;
    let mapped = false;
    pool.on('threshold', (e) => {
      if (e.resource !== 'metadata') return;
      // Where the write stands: its block already mapped to the new data block, or only allocated.
      mapped = dblockOf(v, block) !== old[block];
      pool.commitSync();
    });
    for (block = 0; block < BLOCKS; block++) {
      v.writeSync(fill(G, 2), block * BS + G);
      if (mapped) return { ...p, block };
    }
    pool.closeSync();
  }
  throw new Error('no metadata threshold is crossed by the mapping of a deferred copy-on-write write');
}

test('a listener commits after a deferred copy-on-write maps its block: the next commit flushes the copy and the held bytes', () => {
  const { pool, v, before, block, crashAndReopen } = committedByListener();
  const want = before.slice();
  for (let b = 0; b <= block; b++) want.set(fill(G, 2), b * BS + G);
  pool.commitSync(); // settles the block: its copy, then the held granule
  expect(sameBytes(readAll(v), want), 'the volume after the commit').toBe(true);
  const after = crashAndReopen();
  expect(sameBytes(readAll(after.volume('v')), want), 'the volume after the commit and a crash').toBe(true);
  expect(sameBytes(readAll(after.volume('s')), before), 'the snapshot after the commit and a crash').toBe(true);
  after.closeSync();
});

test('a listener commits after a deferred copy-on-write maps its block, later writes fill the block: the next commit flushes the block written whole', () => {
  const { pool, v, before, block, crashAndReopen } = committedByListener();
  const want = before.slice();
  for (let b = 0; b < block; b++) want.set(fill(G, 2), b * BS + G);
  // The rest of the block in whole granules, in place: held until the last one, then the block is written whole.
  const rest = fill(BS, 3);
  for (const g of [0, ...Array.from({ length: BS / G - 2 }, (_, i) => i + 2)])
    v.writeSync(rest.subarray(g * G, (g + 1) * G), block * BS + g * G);
  want.set(rest, block * BS);
  want.set(fill(G, 2), block * BS + G);
  pool.commitSync();
  const after = crashAndReopen();
  expect(sameBytes(readAll(after.volume('v')), want), 'the volume after the commit and a crash').toBe(true);
  expect(sameBytes(readAll(after.volume('s')), before), 'the snapshot after the commit and a crash').toBe(true);
  after.closeSync();
});

test('a copy owed by a held write fails, then the transaction aborts: the read-only close still flushes the in-place writes made before', () => {
  const clock = new CrashClock();
  const meta = new CrashDevice(clock, new MemoryDevice(1 << 20));
  const data = new CrashDevice(clock, new MemoryDevice(16 * BS));
  const catalog = new MemoryCatalogStore();
  const first = ThinPool.formatStorage({ metadata: keepOpen(meta), data: keepOpen(data), catalog }, { size: 16 * BS, blockSize: BS });
  const before = fill(BLOCKS * BS, 1);
  first.createThinSync('v', { size: BLOCKS * BS }).writeSync(before, 0);
  first.snapshotSync('v', 's');
  first.createThinSync('w', { size: BS }).writeSync(fill(BS, 4), 0);
  first.createThinSync('x', { size: BS }).writeSync(fill(BS, 5), 0);
  first.closeSync();
  // Reopened with a cold metadata cache (deleting x reads its mapping tree inside the change), through devices
  // that fail chosen calls; the data device copies through reads and writes (no copyWithin).
  const metaFaults = new FaultDevice(keepOpen(meta));
  const dataFaults = new FaultDevice(keepOpen(data));
  const pool = ThinPool.openStorage({ metadata: metaFaults, data: dataFaults, catalog: catalog.clone() });
  const inPlace = fill(BS, 6);
  pool.volume('w').writeSync(inPlace, 0); // in place, unflushed
  const v = pool.volume('v');
  v.writeSync(fill(G, 2), G); // held: the new block owes its copy
  // Reading the block makes it: the copy (a read and a write) fails at its write.
  dataFaults.failAt({ write: dataFaults.writes });
  expect(codeOf(() => v.readSync(new Uint8Array(BS), 0))).toBe('EIO');
  metaFaults.failAt({ read: metaFaults.reads });
  expect(codeOf(() => pool.deleteSync('x'))).toBe('EIO');
  expect([pool.mode, pool.status().needsCheck]).toEqual(['read-only', true]);
  pool.closeSync(); // commits: in read-only mode, only the data flush
  clock.crash(() => 0.99);
  const after = ThinPool.openStorage(
    { metadata: meta.afterCrash(), data: data.afterCrash(), catalog: catalog.clone() },
    { readOnly: true },
  );
  const got = new Uint8Array(BS);
  after.volume('w').readSync(got, 0);
  expect(sameBytes(got, inPlace), 'the in-place write after the close and a crash').toBe(true);
  expect(sameBytes(readAll(after.volume('v')), before), 'v as last committed').toBe(true);
  after.closeSync();
});
