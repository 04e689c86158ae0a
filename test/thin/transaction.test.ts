// The transaction of an open pool (commit.ts) through the pool's interface: errors raised before a change
// starts leave the transaction as it was and the pool writable; a failed commit aborts to the last commit
// (metadata and catalog), sets needs_check on disk and leaves the pool read-only with an error that says so;
// commits flush the data device exactly when data was written; a catalog-only change is committed too; and
// volume records stay right when the list of volumes is replaced (delete, abort); a read-only open never
// publishes its catalog; a metadata device that refuses writes for good fails the pool; and a crash between
// staging and publishing the catalog keeps the catalog that belongs to the superblock on disk; an I/O error
// inside a change aborts; under 64 free metadata blocks a change commits first, then refuses (ENOSPC_METADATA);
// and a file pool commits mappings alone without touching its catalog.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { ThinpoolError, isThinpoolError } from '../../src/errors.js';
import type { BlockDevice } from '../../src/io/block-device.js';
import { FaultDevice } from '../../src/io/fault-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { OWNER_LABEL, ThinPool } from '../../src/thin/pool.js';
import { fill, keepOpen } from '../support/model.js';
import { codeOf } from '../support/thrown.js';

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

test('a pool opened read-only writes nothing to its catalog, even when its space policy is changed', () => {
  const { pool, reopen } = newPool();
  pool.createThinSync('a', { size: 4 * BS });
  pool.closeSync();
  const ro = reopen(true);
  expect(ro.spaceSettings.discardPassdown).toBe(true);
  ro.configureSpace({ discardPassdown: false }); // in memory for this open only
  expect(ro.spaceSettings.discardPassdown).toBe(false);
  ro.commitSync();
  ro.closeSync();
  const again = reopen();
  expect(again.spaceSettings.discardPassdown, 'the read-only open did not publish its catalog').toBe(true);
  again.closeSync();
});

/** A device that refuses every write and flush once `broken` is set (a disk gone bad for good). */
function breakable(dev: BlockDevice) {
  const state = { broken: false };
  const refuse = () => {
    throw new ThinpoolError('EIO', 'the device refuses writes');
  };
  const d: BlockDevice = {
    ...keepOpen(dev),
    get sizeBytes() {
      return dev.sizeBytes;
    },
    write: (b, o) => (state.broken ? refuse() : dev.write(b, o)),
    flush: () => (state.broken ? refuse() : dev.flush()),
  };
  return { d, state };
}

test('a pool whose metadata device refuses writes for good fails: no change and no data write is taken any more', () => {
  const meta = new MemoryDevice(1024 * 1024);
  const data = new MemoryDevice(32 * BS);
  const catalog = new MemoryCatalogStore();
  const m = breakable(meta);
  const pool = ThinPool.formatStorage({ metadata: m.d, data: keepOpen(data), catalog }, { size: 32 * BS, blockSize: BS });
  const a = pool.createThinSync('a', { size: 4 * BS });
  a.writeSync(fill(3 * BS, 1), 0);
  pool.commitSync();
  pool.createThinSync('b', { size: BS });
  m.state.broken = true;
  expect(codeOf(() => pool.commitSync())).toBe('EIO');
  // Setting needs_check needs a write too: the pool cannot even record it, so it has failed.
  expect(pool.mode).toBe('fail');
  expect(pool.status().needsCheck).toBe(true);
  let message = '';
  try {
    pool.createThinSync('c', { size: BS });
  } catch (e) {
    expect(isThinpoolError(e, 'EROFS')).toBe(true);
    message = (e as Error).message;
  }
  expect(message).toMatch(/needs_check is set/);
  // Unlike a read-only pool, a failed one writes no data in place either: one block, a run, a partial block.
  expect(codeOf(() => a.writeSync(fill(BS, 2), 0))).toBe('EROFS');
  expect(codeOf(() => a.writeSync(fill(3 * BS, 2), 0))).toBe('EROFS');
  expect(codeOf(() => a.writeSync(fill(100, 2), BS + 5))).toBe('EROFS');
  expect(Buffer.compare(bytes(pool, 'a', 0, 3 * BS), fill(3 * BS, 1))).toBe(0);
  pool.closeSync();
  m.state.broken = false;
  const again = ThinPool.openStorage({ metadata: m.d, data: keepOpen(data), catalog }, { readOnly: true });
  expect(again.list().map((v) => v.name)).toEqual(['a']);
  expect(Buffer.compare(bytes(again, 'a', 0, 3 * BS), fill(3 * BS, 1))).toBe(0);
  again.closeSync();
});

/**
 * A catalog store that records what a crash at its stage() or publish() would leave: copies of the metadata
 * device and of the store at that moment.
 */
function crashRecordingCatalog(meta: MemoryDevice, inner: MemoryCatalogStore) {
  const at: { stage?: { meta: MemoryDevice; catalog: MemoryCatalogStore }; publish?: { meta: MemoryDevice; catalog: MemoryCatalogStore } } =
    {};
  const store = {
    readPublished: () => inner.readPublished(),
    readStaged: () => inner.readStaged(),
    stage: (c: Parameters<MemoryCatalogStore['stage']>[0], fp: string) => {
      inner.stage(c, fp);
      at.stage = { meta: meta.snapshot(), catalog: inner.clone() };
    },
    publish: () => {
      at.publish = { meta: meta.snapshot(), catalog: inner.clone() };
      inner.publish();
    },
    discardStaged: () => inner.discardStaged(),
  };
  const open = (w: { meta: MemoryDevice; catalog: MemoryCatalogStore }) =>
    ThinPool.openStorage({ metadata: w.meta, data: new MemoryDevice(32 * BS), catalog: w.catalog });
  return { store, at, open };
}

test('a crash between staging and publishing the catalog: before the superblock the old catalog, after it the new', () => {
  const meta = new MemoryDevice(1024 * 1024);
  const inner = new MemoryCatalogStore();
  const rec = crashRecordingCatalog(meta, inner);
  const pool = ThinPool.formatStorage(
    { metadata: keepOpen(meta), data: new MemoryDevice(32 * BS), catalog: rec.store },
    { size: 32 * BS, blockSize: BS },
  );
  pool.createThinSync('a', { size: 4 * BS });
  pool.commitSync();
  const names = (p: ThinPool) =>
    p
      .list()
      .map((v) => v.name ?? `#${v.id}`)
      .sort();
  // A metadata change with the catalog: staged before the superblock is written, published after.
  pool.createThinSync('b', { size: BS });
  pool.commitSync();
  const beforeSb = rec.open(rec.at.stage!);
  expect(names(beforeSb), 'crash before the superblock: the last commit').toEqual(['a']);
  beforeSb.closeSync();
  const afterSb = rec.open(rec.at.publish!);
  expect(names(afterSb), 'crash after the superblock: the new commit, catalog included').toEqual(['a', 'b']);
  afterSb.closeSync();
  // A change of the catalog alone: the superblock stays, so the staged catalog belongs to it once staged.
  pool.renameSync('b', 'c');
  pool.commitSync();
  for (const w of [rec.at.stage!, rec.at.publish!]) {
    const p = rec.open(w);
    expect(names(p)).toEqual(['a', 'c']);
    p.closeSync();
  }
  pool.closeSync();
});

test('a device error inside a metadata change aborts to the last commit, sets needs_check and leaves the pool read-only', () => {
  const meta = new MemoryDevice(1024 * 1024);
  const data = new MemoryDevice(32 * BS);
  const catalog = new MemoryCatalogStore();
  const first = ThinPool.formatStorage({ metadata: keepOpen(meta), data: keepOpen(data), catalog }, { size: 32 * BS, blockSize: BS });
  first.createThinSync('a', { size: 8 * BS }).writeSync(fill(4 * BS, 1), 0);
  first.snapshotSync('a', 's');
  first.closeSync();
  // Reopened with a cold metadata cache: shrinking 'a' reads its mapping tree inside the change.
  const fault = new FaultDevice(keepOpen(meta));
  const pool = ThinPool.openStorage({ metadata: fault, data: keepOpen(data), catalog });
  pool.createThinSync('b', { size: BS }); // uncommitted
  fault.failAt({ read: fault.reads });
  expect(codeOf(() => pool.resizeSync('a', 2 * BS))).toBe('EIO');
  expect(pool.mode).toBe('read-only');
  expect(pool.status().needsCheck).toBe(true);
  expect(pool.list().map((v) => [v.name, v.sizeBytes])).toEqual([
    ['a', 8 * BS],
    ['s', 8 * BS],
  ]);
  expect(Buffer.compare(bytes(pool, 'a', 0, 4 * BS), fill(4 * BS, 1))).toBe(0);
  pool.closeSync();
});

test('metadata headroom: under 64 free blocks a change first commits the open transaction, then refuses with ENOSPC_METADATA', () => {
  const meta = new MemoryDevice(160 * 4096);
  const data = new MemoryDevice(64 * BS);
  const catalog = new MemoryCatalogStore();
  const fault = new FaultDevice(keepOpen(meta));
  const pool = ThinPool.formatStorage({ metadata: fault, data: keepOpen(data), catalog }, { size: 64 * BS, blockSize: BS });
  const margin = 64; // OP_METADATA_MARGIN
  // Create volumes, never committing, until the metadata device is full. A commit flushes the metadata device.
  const steps: { free: number; dirty: boolean; committed: boolean }[] = [];
  let err = 'ok';
  let message = '';
  const names: string[] = [];
  for (let i = 0; i < 400 && err === 'ok'; i++) {
    const step = { free: pool.metadata.metadataFreeBlocks, dirty: pool.metadata.dirty, committed: false };
    const flushes = fault.flushes;
    try {
      pool.createThinSync(`v${i}`, { size: BS });
      names.push(`v${i}`);
    } catch (e) {
      if (!isThinpoolError(e)) throw e;
      err = e.code;
      message = e.message;
    }
    step.committed = fault.flushes !== flushes;
    steps.push(step);
  }
  expect(err).toBe('ENOSPC_METADATA');
  expect(message).toMatch(/^out of metadata space \(\d+ free blocks of 160\): delete volumes or grow the metadata device$/);
  expect(
    steps.some((s) => s.free === margin && s.dirty),
    'the sequence passes exactly 64 free blocks with a transaction open',
  ).toBe(true);
  for (const [i, s] of steps.entries()) {
    expect(s.committed, `step ${i}: ${s.free} free blocks, ${s.dirty ? 'uncommitted changes' : 'nothing uncommitted'}`).toBe(
      s.free < margin && s.dirty,
    );
  }
  // Full and committed: a refused change commits nothing, not even a pending change of the catalog alone.
  pool.commitSync();
  pool.renameSync('v0', 'renamed');
  expect(codeOf(() => pool.createThinSync('more', { size: BS }))).toBe('ENOSPC_METADATA');
  pool.closeSync({ commit: false });
  const again = ThinPool.openStorage({ metadata: keepOpen(meta), data: keepOpen(data), catalog });
  expect(again.has('v0') && !again.has('renamed')).toBe(true);
  // Deleting volumes frees metadata blocks for the next commit: the next change commits first and fits.
  for (const n of names.slice(-Math.ceil(names.length / 3))) again.deleteSync(n);
  again.createThinSync('fits', { size: BS });
  expect(again.has('fits')).toBe(true);
  again.closeSync();
});

test('a commit of new mappings alone (the catalog unchanged) on a file pool', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tp-commit-'));
  try {
    const pool = ThinPool.formatSync(join(dir, 'pool'), { size: 16 * BS, blockSize: BS });
    const a = pool.createThinSync('a', { size: 4 * BS });
    pool.commitSync();
    a.writeSync(fill(100, 1), 2 * BS); // a new mapping: metadata changes, the catalog does not
    expect(pool.metadata.dirty).toBe(true);
    pool.commitSync();
    expect(pool.metadata.dirty).toBe(false);
    pool.closeSync();
    const again = ThinPool.openSync(join(dir, 'pool'));
    expect(Buffer.compare(bytes(again, 'a', 2 * BS, 100), fill(100, 1))).toBe(0);
    again.closeSync();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
