// The state an open pool shares between its parts (src/thin/pool-state.ts), through the pool's interface: a
// closed pool refuses every call with ECLOSED even when its devices would still answer; a device that no
// catalog record describes (made by another tool, or a catalog lost) is as large as its last mapped block; and
// a pool whose catalog nobody changed writes nothing to its catalog store, to its metadata or to its data when
// it commits or closes.
import { expect, test } from 'vitest';
import type { BlockDevice } from '../../src/io/block-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { type CatalogData, type CatalogStore, MemoryCatalogStore } from '../../src/thin/catalog.js';
import { ThinPool } from '../../src/thin/pool.js';
import { fill, keepOpen } from '../support/model.js';
import { typedError } from '../support/thrown.js';

const BS = 64 * 1024;

/** Counts what reaches a device: writes and flushes. */
function countingDevice(dev: BlockDevice) {
  const c = { writes: 0, flushes: 0 };
  const d: BlockDevice = {
    ...keepOpen(dev),
    get sizeBytes() {
      return dev.sizeBytes;
    },
    write: (b, o) => {
      c.writes++;
      dev.write(b, o);
    },
    flush: () => {
      c.flushes++;
      dev.flush();
    },
  };
  return { d, c };
}

/** Counts the catalog versions a pool stages and publishes. */
function countingCatalog(inner: MemoryCatalogStore) {
  const c = { staged: 0, published: 0 };
  const store: CatalogStore = {
    readPublished: () => inner.readPublished(),
    readStaged: () => inner.readStaged(),
    stage: (catalog: CatalogData, fingerprint: string) => {
      c.staged++;
      inner.stage(catalog, fingerprint);
    },
    publish: () => {
      c.published++;
      inner.publish();
    },
    discardStaged: () => inner.discardStaged(),
  };
  return { store, c };
}

function devices(dataBlocks = 32) {
  return { meta: new MemoryDevice(1024 * 1024), data: new MemoryDevice(dataBlocks * BS), catalog: new MemoryCatalogStore() };
}

test('a closed pool refuses every call with ECLOSED, though its devices are still open', () => {
  const { meta, data, catalog } = devices();
  const pool = ThinPool.formatStorage({ metadata: keepOpen(meta), data: keepOpen(data), catalog }, { size: 32 * BS, blockSize: BS });
  const a = pool.createThinSync('a', { size: 4 * BS });
  a.writeSync(fill(100, 1), 0);
  pool.closeSync();
  expect(pool.isClosed).toBe(true);
  const calls: [string, () => unknown][] = [
    ['createThin', () => pool.createThinSync('b', { size: BS })],
    ['snapshot', () => pool.snapshotSync('a', 's')],
    ['delete', () => pool.deleteSync('a')],
    ['list', () => pool.list()],
    ['commit', () => pool.commitSync()],
    ['extend', () => pool.extendSync({ size: 64 * BS })],
    ['trim', () => pool.trimSync()],
    ['read', () => a.readSync(new Uint8Array(100), 0)],
    ['write', () => a.writeSync(fill(100, 2), BS)],
  ];
  for (const [name, call] of calls) {
    expect(typedError(call), name).toEqual({ code: 'ECLOSED', message: 'pool is closed' });
  }
  pool.closeSync(); // closing twice is no error
  const again = ThinPool.openStorage({ metadata: keepOpen(meta), data: keepOpen(data), catalog });
  expect(again.list().map((v) => v.name)).toEqual(['a']);
  const back = new Uint8Array(BS);
  again.volume('a').readSync(back, 0);
  expect(Buffer.compare(back.subarray(0, 100), fill(100, 1))).toBe(0);
  expect(back.subarray(100).every((x) => x === 0)).toBe(true);
  again.closeSync();
});

test('a device no catalog record describes is as large as its last mapped block; an unknown id is ENOENT', () => {
  const { meta, data, catalog } = devices();
  const pool = ThinPool.formatStorage({ metadata: keepOpen(meta), data: keepOpen(data), catalog }, { size: 32 * BS, blockSize: BS });
  const a = pool.createThinSync('a', { size: 8 * BS });
  a.writeSync(fill(100, 1), 5 * BS + 7); // inside block 5
  a.writeSync(fill(BS, 2), 2 * BS);
  const b = pool.createThinSync('b', { size: 4 * BS }); // nothing mapped
  const c = pool.createThinSync('c', { size: 4 * BS });
  c.writeSync(fill(10, 3), 0); // block 0 alone
  const ids = { a: a.id, b: b.id, c: c.id };
  pool.closeSync();
  // The same metadata and data with an empty catalog: the devices are there, their records are not.
  const bare = ThinPool.openStorage({ metadata: keepOpen(meta), data: keepOpen(data), catalog: new MemoryCatalogStore() });
  expect(bare.recordOf(ids.a)).toBeUndefined();
  expect(bare.sizeOf(ids.a)).toBe(6 * BS);
  expect(bare.sizeOf(ids.b)).toBe(0);
  expect(bare.sizeOf(ids.c)).toBe(BS);
  expect(
    bare
      .list()
      .map((v) => [v.id, v.name, v.sizeBytes])
      .sort((x, y) => Number(x[0]) - Number(y[0])),
  ).toEqual([
    [ids.a, undefined, 6 * BS],
    [ids.b, undefined, 0],
    [ids.c, undefined, BS],
  ]);
  const va = bare.volume(`#${ids.a}`);
  expect(va.sizeBytes).toBe(6 * BS);
  const back = new Uint8Array(100);
  va.readSync(back, 5 * BS + 7);
  expect(Buffer.compare(back, fill(100, 1))).toBe(0);
  expect(typedError(() => va.readSync(new Uint8Array(1), 6 * BS)).code, 'past the last mapped block').toBe('EINVAL');
  const unknown = Math.max(ids.a, ids.b, ids.c) + 1;
  expect(typedError(() => bare.sizeOf(unknown))).toEqual({ code: 'ENOENT', message: `no volume with device id ${unknown}` });
  bare.closeSync();
});

test('a pool nobody changed writes nothing when it commits or closes: no catalog, no metadata, no data flush', () => {
  const { meta, data, catalog } = devices();
  const first = ThinPool.formatStorage({ metadata: keepOpen(meta), data: keepOpen(data), catalog }, { size: 32 * BS, blockSize: BS });
  first.createThinSync('a', { size: 4 * BS }).writeSync(fill(100, 1), 0);
  first.closeSync();
  const m = countingDevice(meta);
  const d = countingDevice(data);
  const cat = countingCatalog(catalog);
  const pool = ThinPool.openStorage({ metadata: m.d, data: d.d, catalog: cat.store });
  const back = new Uint8Array(100);
  pool.volume('a').readSync(back, 0);
  expect(pool.list().map((v) => v.name)).toEqual(['a']);
  pool.commitSync();
  pool.closeSync();
  expect({ ...cat.c, metaWrites: m.c.writes, dataWrites: d.c.writes, dataFlushes: d.c.flushes }).toEqual({
    staged: 0,
    published: 0,
    metaWrites: 0,
    dataWrites: 0,
    dataFlushes: 0,
  });
  // A change of the catalog alone is staged and published once.
  const again = ThinPool.openStorage({ metadata: m.d, data: d.d, catalog: cat.store });
  again.renameSync('a', 'b');
  again.commitSync();
  again.commitSync(); // nothing changed since the last commit: nothing staged
  again.closeSync();
  expect(cat.c).toEqual({ staged: 1, published: 1 });
});
