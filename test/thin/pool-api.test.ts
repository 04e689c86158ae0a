// The ThinPool class (src/thin/pool.ts) as a caller sees it, on memory devices and a small file pool: every
// asynchronous method does what its synchronous twin does; status() reports each figure; the space policy,
// the catalog extensions and the transaction id are durable with a commit; the held metadata snapshot shows
// in status(); trim commits first; a writable open after an unclean stop releases uncommitted blocks and a
// read-only one does not; close with and without a commit.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { MemoryHighWaterStore } from '../../src/thin/high-water.js';
import { ThinPool } from '../../src/thin/pool.js';
import { fill, keepOpen } from '../support/model.js';

const BS = 64 * 1024;
const dirs: string[] = [];

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function devices(blocks = 32) {
  const d = { meta: new MemoryDevice(1 << 20), data: new MemoryDevice(blocks * BS), catalog: new MemoryCatalogStore() };
  const storage = (extra: { uncleanStop?: boolean } = {}) => ({
    metadata: keepOpen(d.meta),
    data: keepOpen(d.data),
    catalog: d.catalog,
    highWater: new MemoryHighWaterStore(blocks),
    ...extra,
  });
  return { ...d, storage };
}

async function rejection(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return isThinpoolError(e) ? e.code : `untyped: ${String(e)}`;
  }
  return 'ok';
}

/** A data device over `dev` that also takes asynchronous requests (as a RADOS device), counting them. */
function asyncDevice(dev: MemoryDevice, writeBackBytes = 0) {
  const calls = { reads: 0, writes: 0 };
  const data = {
    ...keepOpen(dev),
    get sizeBytes() {
      return dev.sizeBytes;
    },
    writeBackBytes,
    readAsync: async (b: Uint8Array, o: number) => {
      calls.reads++;
      dev.read(b, o);
    },
    writeAsync: async (b: Uint8Array, o: number) => {
      calls.writes++;
      dev.write(b, o);
    },
  };
  return { data, calls };
}

function read(p: ThinPool, name: string, offset: number, len: number): Uint8Array {
  const b = new Uint8Array(len);
  p.volume(name).readSync(b, offset);
  return b;
}

test('the asynchronous methods do what their synchronous twins do, on a file pool', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'thinpool-api-')), 'p');
  dirs.push(dir);
  const pool = await ThinPool.format(dir, { size: 16 * BS });
  const v = await pool.createThin('v', { size: 2 * BS });
  await v.write(fill(2 * BS, 1), 0);
  await pool.snapshot('v', 's');
  await pool.snapshot('v', 's2', { readOnly: true, labels: { k: 'x' } });
  await v.write(fill(BS, 2), 0);
  await pool.rename('s2', 't');
  await pool.resize('v', 3 * BS);
  await pool.commit();
  expect(pool.diff('s', 'v').some((r) => r.kind !== 'same')).toBe(true);
  await pool.rollback('v', 's');
  expect(pool.diff('s', 'v').every((r) => r.kind === 'same')).toBe(true);
  await pool.delete('s');
  await pool.extend({ size: 20 * BS });
  await pool.setTransactionId(0, 7);
  expect(await pool.trim()).toBeGreaterThanOrEqual(0);
  await pool.close();
  expect(pool.isClosed).toBe(true);
  await expect(ThinPool.open(join(dir, 'nothing'))).rejects.toMatchObject({ code: 'ENOENT' });
  const again = await ThinPool.open(dir);
  expect(again.list().map((x) => [x.name, x.sizeBytes, x.readOnly, x.labels])).toEqual([
    ['v', 3 * BS, false, {}],
    ['t', 2 * BS, true, { k: 'x' }],
  ]);
  expect(Buffer.compare(read(again, 'v', 0, 2 * BS), fill(2 * BS, 1))).toBe(0);
  expect(again.status()).toMatchObject({ transactionId: 7, dataBlocks: { total: 20 } });
  expect(again.transactionId).toBe(7);
  await again[Symbol.asyncDispose]();
  expect(again.isClosed).toBe(true);
  const ro = await ThinPool.open(dir, { readOnly: true });
  expect(ro.mode).toBe('read-only');
  expect(await rejection(ro.createThin('w', { size: BS }))).toBe('EROFS');
  await ro.close();
});

test('status reports each figure of the pool', () => {
  const d = devices(20);
  const pool = ThinPool.formatStorage(d.storage(), { size: 20 * BS, blockSize: BS });
  const fresh = pool.status();
  expect(fresh).toMatchObject({
    blockSize: BS,
    dataBlocks: { used: 0, total: 20, free: 20 },
    transactionId: 0,
    heldMetadataRoot: null,
    mode: 'write',
    needsCheck: false,
    volumes: 0,
    lowWater: { data: 0, metadata: 0 },
    discardPassdown: true,
  });
  expect(fresh.metadataBlocks.total).toBe(256);
  const v = pool.createThinSync('v', { size: 20 * BS });
  pool.createThinSync('w', { size: BS });
  v.writeSync(fill(17 * BS, 1), 0); // 85 %
  const st = pool.status();
  expect(st).toMatchObject({ dataBlocks: { used: 17, total: 20, free: 3 }, volumes: 2, lowWater: { data: 80, metadata: 0 } });
  expect(st.metadataBlocks.used).toBeGreaterThan(fresh.metadataBlocks.used);
  expect(st.time).toBe(pool.metadata.time);
  pool.configureSpace({ discardPassdown: false, thresholds: { data: [50, 84], metadata: [1] } });
  expect(pool.status()).toMatchObject({ discardPassdown: false, lowWater: { data: 84, metadata: 1 } });
  pool.closeSync();
});

test('the space policy, the extensions and the held snapshot are durable with a commit', async () => {
  const d = devices();
  const formatted = ThinPool.formatStorage(d.storage(), { size: 32 * BS, blockSize: BS });
  expect(d.catalog.readPublished()).toMatchObject({ volumes: [] });
  expect(formatted.spaceSettings.whenFull).toBe('error');
  const merged = formatted.configureSpace({ whenFull: 'wait', waitTimeoutMs: 5 });
  expect(merged).toMatchObject({ whenFull: 'wait', waitTimeoutMs: 5, discardPassdown: true });
  expect(formatted.spaceSettings).toEqual(merged);
  formatted.closeSync(); // the policy alone changed
  const reopened = ThinPool.openStorage(d.storage());
  expect(reopened.spaceSettings).toMatchObject({ whenFull: 'wait', waitTimeoutMs: 5 });
  expect(reopened.getExtension('images')).toBeUndefined();
  reopened.setExtension('images', { layers: 3 });
  reopened.closeSync(); // the extension alone changed
  const pool = ThinPool.openStorage(d.storage());
  pool.createThinSync('v', { size: BS }).writeSync(fill(BS, 1), 0);
  const held = await pool.reserveMetadataSnap();
  expect(held).toBeGreaterThan(0);
  expect(pool.status().heldMetadataRoot).toBe(held);
  pool.closeSync();
  const again = ThinPool.openStorage(d.storage());
  expect(again.spaceSettings).toMatchObject({ whenFull: 'wait', waitTimeoutMs: 5 });
  expect(again.getExtension('images')).toEqual({ layers: 3 });
  expect(again.status().heldMetadataRoot).toBe(held);
  await again.releaseMetadataSnap();
  expect(again.status().heldMetadataRoot).toBeNull();
  again.closeSync({ commit: false });
  const third = ThinPool.openStorage(d.storage());
  expect(third.status().heldMetadataRoot).toBeNull();
  third.closeSync();
});

test('close without a commit drops what was not committed; trim commits first', () => {
  const d = devices();
  const pool = ThinPool.formatStorage(d.storage(), { size: 32 * BS, blockSize: BS });
  pool.createThinSync('kept', { size: BS });
  pool.commitSync();
  pool.createThinSync('dropped', { size: BS });
  pool.closeSync({ commit: false });
  const again = ThinPool.openStorage(d.storage());
  expect(again.list().map((v) => v.name)).toEqual(['kept']);
  again.createThinSync('trimmed', { size: BS });
  expect(again.trimSync()).toBe(32); // every block is free, and the high-water store says all were written
  again.closeSync({ commit: false });
  const third = ThinPool.openStorage(d.storage());
  expect(third.list().map((v) => v.name)).toEqual(['kept', 'trimmed']);
  expect(third.has('kept')).toBe(true);
  expect(third.has('gone')).toBe(false);
  expect(third.has(99)).toBe(false);
  third.closeSync();
  expect(() => third.trimSync()).toThrow(expect.objectContaining({ code: 'ECLOSED' }));
  // A reader may not trim: it holds no lock, and a writer's new blocks are free in the committed state.
  const ro = ThinPool.openStorage(d.storage(), { readOnly: true });
  expect(() => ro.trimSync()).toThrow(
    expect.objectContaining({ code: 'EROFS', message: 'pool is read-only: trim releases blocks only from a pool open for writing' }),
  );
  ro.closeSync();
});

test('an unclean stop: a writable open releases the uncommitted blocks, a read-only one leaves them; release needs a clean transaction', () => {
  const d = devices();
  const pool = ThinPool.formatStorage(d.storage(), { size: 32 * BS, blockSize: BS });
  const v = pool.createThinSync('v', { size: 8 * BS });
  v.writeSync(fill(BS, 1), 0);
  pool.commitSync();
  v.writeSync(fill(3 * BS, 2), BS);
  pool.closeSync({ commit: false });
  const ro = ThinPool.openStorage(d.storage({ uncleanStop: true }), { readOnly: true });
  expect(ro.releasedOnOpen).toBe(0);
  ro.closeSync();
  const w = ThinPool.openStorage(d.storage({ uncleanStop: true }));
  expect(w.releasedOnOpen).toBe(31);
  expect(w.storage.uncleanStop).toBe(false);
  w.volume('v').writeSync(fill(10, 3), 5 * BS);
  expect(() => w.releaseUncommittedSync()).toThrow(
    expect.objectContaining({ code: 'EBUSY', message: 'the pool has uncommitted changes: commit or drop them first' }),
  );
  w.commitSync();
  expect(w.releaseUncommittedSync()).toBe(30);
  expect([w.asyncData, w.writeBackBytes], 'a plain data device: no asynchronous path, no write-back').toEqual([false, 0]);
  w.closeSync();
  const plain = ThinPool.openStorage(d.storage());
  expect(plain.releasedOnOpen).toBe(0);
  plain.closeSync();
});

test('a data device that takes asynchronous requests: volumes read and write through the asynchronous path; its write-back size', async () => {
  const d = devices();
  const { data, calls } = asyncDevice(d.data, 8 << 20);
  const pool = ThinPool.formatStorage({ ...d.storage(), data }, { size: 32 * BS, blockSize: BS });
  expect(pool.asyncData).toBe(true);
  expect(pool.writeBackBytes, 'what the device may answer before it has it').toBe(8 << 20);
  const v = pool.createThinSync('v', { size: 4 * BS });
  await v.write(fill(2 * BS, 1), BS);
  await v.write(fill(100, 2), BS + 10); // in place, in a mapped block
  const want = fill(2 * BS, 1);
  want.set(fill(100, 2), 10);
  const got = new Uint8Array(2 * BS);
  await v.read(got, BS);
  expect(Buffer.compare(got, want)).toBe(0);
  expect(calls.writes).toBeGreaterThan(0);
  expect(calls.reads).toBeGreaterThan(0);
  pool.closeSync();
});

test('opening drops half-received volumes only when writable; a pool that needs a check opens read-only and releases nothing', () => {
  const d = devices();
  const pool = ThinPool.formatStorage(d.storage(), { size: 32 * BS, blockSize: BS });
  pool.createThinSync('done', { size: BS });
  pool.createThinSync('half', { size: BS, labels: { 'thinpool.owner': 'receive' } });
  pool.closeSync();
  const reader = ThinPool.openStorage(d.storage(), { readOnly: true });
  expect(reader.list().map((v) => v.name)).toEqual(['done', 'half']);
  reader.closeSync();
  const writer = ThinPool.openStorage(d.storage());
  expect(writer.list().map((v) => v.name)).toEqual(['done']);
  writer.createThinSync('half2', { size: BS, labels: { 'thinpool.owner': 'receive' } });
  writer.metadata.setNeedsCheck();
  writer.closeSync();
  const checked = ThinPool.openStorage(d.storage({ uncleanStop: true }));
  expect(checked.mode).toBe('read-only');
  expect(checked.status().needsCheck).toBe(true);
  expect(checked.releasedOnOpen).toBe(0);
  expect(checked.storage.uncleanStop).toBe(true);
  checked.closeSync();
});

test('commit() makes the changes durable by itself; a reader closes without flushing anything', async () => {
  const d = devices();
  const pool = ThinPool.formatStorage(d.storage(), { size: 32 * BS, blockSize: BS });
  pool.createThinSync('v', { size: BS });
  await pool.commit();
  await pool.close({ commit: false });
  const flushes = { metadata: 0, data: 0 };
  const counted = (name: 'metadata' | 'data', dev: MemoryDevice) => ({
    ...keepOpen(dev),
    get sizeBytes() {
      return dev.sizeBytes;
    },
    flush: () => {
      flushes[name]++;
      dev.flush();
    },
  });
  const reader = ThinPool.openStorage(
    { ...d.storage(), metadata: counted('metadata', d.meta), data: counted('data', d.data) },
    { readOnly: true },
  );
  expect(reader.list().map((v) => v.name)).toEqual(['v']);
  reader.closeSync();
  expect(flushes).toEqual({ metadata: 0, data: 0 });
});

test('closing a pool gone read-only (needs_check) flushes the in-place writes it still took', () => {
  const d = devices();
  let dataFlushes = 0;
  const data = {
    ...keepOpen(d.data),
    get sizeBytes() {
      return d.data.sizeBytes;
    },
    flush: () => {
      dataFlushes++;
      d.data.flush();
    },
  };
  const pool = ThinPool.formatStorage({ ...d.storage(), data }, { size: 32 * BS, blockSize: BS });
  const v = pool.createThinSync('v', { size: 2 * BS });
  v.writeSync(fill(BS, 1), 0);
  pool.commitSync();
  pool.metadata.setNeedsCheck();
  expect(pool.mode).toBe('read-only');
  v.writeSync(fill(100, 2), 10); // an unshared mapped block: written in place even in read-only mode
  dataFlushes = 0;
  pool.closeSync();
  expect(dataFlushes).toBe(1);
});

test('closing a failed pool flushes nothing and does not throw', () => {
  const d = devices();
  let dataFlushes = 0;
  let metadataFails = false;
  const metadata = {
    ...keepOpen(d.meta),
    get sizeBytes() {
      return d.meta.sizeBytes;
    },
    write: (b: Uint8Array, o: number) => {
      if (metadataFails) throw new Error('metadata device gone');
      d.meta.write(b, o);
    },
  };
  const data = {
    ...keepOpen(d.data),
    get sizeBytes() {
      return d.data.sizeBytes;
    },
    flush: () => {
      dataFlushes++;
      d.data.flush();
    },
  };
  const pool = ThinPool.formatStorage({ ...d.storage(), metadata, data }, { size: 32 * BS, blockSize: BS });
  const v = pool.createThinSync('v', { size: 2 * BS });
  v.writeSync(fill(BS, 1), 0);
  pool.commitSync();
  v.writeSync(fill(100, 2), 10); // in place, not yet flushed
  metadataFails = true;
  pool.metadata.setNeedsCheck(); // cannot be written: the pool fails
  expect(pool.mode).toBe('fail');
  expect(() => pool.trimSync()).toThrow(
    expect.objectContaining({ code: 'EROFS', message: 'pool is failed: trim releases blocks only from a pool open for writing' }),
  );
  dataFlushes = 0;
  pool.closeSync();
  expect(dataFlushes).toBe(0);
  expect(pool.isClosed).toBe(true);
});

test('the async resize takes an owner as resizeSync does: an owned volume resizes for its owner only', async () => {
  const d = devices();
  const pool = ThinPool.formatStorage(d.storage(), { size: 32 * BS, blockSize: BS });
  pool.createThinSync('layer', { size: BS, labels: { 'thinpool.owner': 'images' } });
  await expect(pool.resize('layer', 2 * BS)).rejects.toMatchObject({ code: 'EBUSY' });
  await expect(pool.resize('layer', 2 * BS, { owner: 'someone' })).rejects.toMatchObject({ code: 'EBUSY' });
  expect(pool.volume('layer').sizeBytes).toBe(BS);
  await pool.resize('layer', 2 * BS, { owner: 'images' });
  expect(pool.volume('layer').sizeBytes).toBe(2 * BS);
  pool.closeSync();
});

test('volume.read and volume.write always answer with a promise: bytes on a plain and an asynchronous data device, errors as rejections', async () => {
  const d = devices();
  const { data: asyncData, calls: asyncCalls } = asyncDevice(d.data);
  for (const storage of [d.storage(), { ...devices().storage(), data: asyncData }]) {
    const pool = ThinPool.formatStorage(storage, { size: 32 * BS, blockSize: BS });
    const v = pool.createThinSync('v', { size: 3 * BS });
    const bytes = fill(BS + 1000, 7);
    const wrote = v.write(bytes, BS - 500);
    expect(wrote).toBeInstanceOf(Promise);
    await wrote;
    const got = new Uint8Array(bytes.length + 600); // 100 zeros before, 500 after
    const read = v.read(got, BS - 600);
    expect(read).toBeInstanceOf(Promise);
    await read;
    const want = new Uint8Array(got.length);
    want.set(bytes, 100);
    expect(Buffer.compare(got, want)).toBe(0);
    // Out of range: a rejected promise with the typed error, never a throw from the call itself.
    for (const [off, len] of [
      [3 * BS - 100, 512],
      [-1, 1],
      [0.5, 1],
    ]) {
      let p: Promise<void> | undefined;
      expect(() => {
        p = v.read(new Uint8Array(len), off);
      }).not.toThrow();
      await expect(p).rejects.toMatchObject({ code: 'EINVAL' });
    }
    await expect(v.read(new Uint8Array(1), -1)).rejects.toMatchObject({ message: 'bad range: offset -1, length 1' });
    await expect(v.write(new Uint8Array(512), 3 * BS - 100)).rejects.toMatchObject({
      code: 'EINVAL',
      message: `range ${3 * BS - 100}+512 beyond the end of volume v (${3 * BS} bytes)`,
    });
    // Nothing at the very end is a range of its own, not an error.
    await v.read(new Uint8Array(0), 3 * BS);
    await v.write(new Uint8Array(0), 3 * BS);
    pool.updateSync('v', { readOnly: true });
    await expect(v.write(new Uint8Array(512), 0)).rejects.toMatchObject({ code: 'EROFS', message: 'volume v is read-only' });
    pool.closeSync();
  }
  expect(asyncCalls.reads).toBeGreaterThan(0);
});

test('a device made by other tools (no catalog record): sized by its last mapped block, writable, named #id', async () => {
  const d = devices();
  const pool = ThinPool.formatStorage(d.storage(), { size: 32 * BS, blockSize: BS });
  const md = pool.metadata;
  md.createThin(7);
  expect(pool.volume(7).sizeBytes).toBe(0); // nothing mapped yet
  md.insertMappingRaw(7, 2, 5, 0);
  md.insertMappingRaw(7, 9, 6, 0);
  md.insertMappingRaw(7, 4, 7, 0);
  pool.commitSync();
  const v = pool.volume(7);
  expect(v.sizeBytes).toBe(10 * BS);
  expect(v.readOnly).toBe(false);
  expect(v.label).toBe('#7');
  await expect(v.read(new Uint8Array(1), 10 * BS)).rejects.toMatchObject({
    message: `range ${10 * BS}+1 beyond the end of volume #7 (${10 * BS} bytes)`,
  });
  v.writeSync(fill(BS, 3), 9 * BS);
  const got = new Uint8Array(BS);
  v.readSync(got, 9 * BS);
  expect(Buffer.compare(got, fill(BS, 3))).toBe(0);
  pool.closeSync();
});
