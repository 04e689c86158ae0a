// The read path's mapping cache (src/thin/mapping-cache.ts): it answers repeated lookups without walking the
// tree, and every path that changes a mapping or its sharing makes the cached answers of that device stale:
// provisioning write, copy-on-write break of sharing, discard, resize, delete (and an id used again), snapshot,
// rollback, restore-style inserts, abort, reopen and the metadata reopen of an extend. Each case reads first
// (filling the cache through the one-block fast path), changes, and reads again. A lockstep property test runs
// the same random operations on a pool with the default cache, one with a four-entry cache (constant
// collisions) and one without, and compares every read with the model's bytes.
import { expect, test } from 'vitest';
import fc from 'fast-check';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { MappingCache } from '../../src/thin/mapping-cache.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { ThinPool, type PoolStorage } from '../../src/thin/pool.js';
import type { Volume } from '../../src/thin/volume.js';
import { PoolModel, applyToModel, applyToPool, expectPoolEquals, keepOpen, mulberry32, randomOp } from '../support/model.js';

const BS = 64 * 1024;

function memoryPool(blocks: number, mappingCacheEntries?: number): { storage: PoolStorage; pool: ThinPool } {
  const storage: PoolStorage = {
    metadata: keepOpen(new MemoryDevice(1 << 20)),
    data: keepOpen(new MemoryDevice(blocks * BS)),
    catalog: new MemoryCatalogStore(),
  };
  return { storage, pool: ThinPool.formatStorage(storage, { size: blocks * BS, blockSize: BS, mappingCacheEntries }) };
}

/** 4 KiB at the start of each of the first n blocks, read one block at a time (the cached fast path). */
function heads(v: Volume, n: number): number[] {
  const out: number[] = [];
  const b = new Uint8Array(4096);
  for (let i = 0; i < n; i++) {
    v.readSync(b, i * BS);
    out.push(b[0]);
  }
  return out;
}

function writeBlock(v: Volume, block: number, value: number): void {
  v.writeSync(new Uint8Array(4096).fill(value), block * BS);
}

test('MappingCache: a repeated lookup does not walk; a new generation, a colliding key or capacity 0 does', () => {
  let walks = 0;
  const walk = (root: number, vblock: number): number => {
    walks++;
    return root * 1000 + vblock;
  };
  const c = new MappingCache(8);
  expect(c.entries).toBe(8);
  const g = c.fresh();
  expect(c.get(g, 5, 1, walk)).toBe(1005);
  expect(c.get(g, 5, 1, walk)).toBe(1005);
  expect(walks).toBe(1);
  const g2 = c.fresh();
  expect(g2).not.toBe(g);
  expect(c.get(g2, 5, 2, walk)).toBe(2005); // the old generation's entry does not answer
  expect(walks).toBe(2);
  for (let v = 0; v < 64; v++) c.get(g2, v, 2, walk); // evicts everything of 8 slots
  walks = 0;
  for (let v = 0; v < 64; v++) expect(c.get(g2, v, 2, walk)).toBe(2000 + v);
  expect(walks).toBeGreaterThan(0);
  const off = new MappingCache(0);
  walks = 0;
  off.get(off.fresh(), 1, 1, walk);
  off.get(1, 1, 1, walk);
  expect(walks).toBe(2);
  expect(new MappingCache(100).entries).toBe(64);
});

test('MappingCache: every one of its slots holds an entry; 1 entry is a cache, 0 or less is off', () => {
  let walks = 0;
  const walk = (root: number, vblock: number): number => {
    walks++;
    return root * 1000 + vblock;
  };
  for (const n of [1, 2, 4, 8, 16]) {
    const c = new MappingCache(n);
    expect(c.entries).toBe(n);
    const g = c.fresh();
    // n consecutive vblocks of one generation hash to n different slots (the hash xors vblock into its low bits).
    for (let v = 0; v < n; v++) c.get(g, v, 3, walk);
    walks = 0;
    for (let v = 0; v < n; v++) expect(c.get(g, v, 3, walk)).toBe(3000 + v);
    expect(walks, `${n} entries`).toBe(0);
  }
  for (const n of [0, -1, -100]) {
    const c = new MappingCache(n);
    expect(c.entries, `${n} entries`).toBe(0);
    walks = 0;
    expect(c.get(c.fresh(), 2, 1, walk)).toBe(1002);
    expect(c.get(1, 2, 1, walk)).toBe(1002);
    expect(walks).toBe(2);
  }
});

test('a provisioning write, a CoW break, a discard and a resize make cached reads stale', () => {
  const { pool } = memoryPool(64);
  const a = pool.createThinSync('a', { size: 8 * BS });
  expect(heads(a, 4)).toEqual([0, 0, 0, 0]); // unmapped answers cached
  writeBlock(a, 1, 7); // provision
  expect(heads(a, 4)).toEqual([0, 7, 0, 0]);
  const s = pool.snapshotSync('a', 's');
  expect(heads(s, 4)).toEqual([0, 7, 0, 0]);
  writeBlock(a, 1, 8); // break sharing: a moves to a new block, s keeps the old one
  expect(heads(a, 4)).toEqual([0, 8, 0, 0]);
  expect(heads(s, 4)).toEqual([0, 7, 0, 0]);
  writeBlock(s, 1, 9); // and from the snapshot's side
  expect(heads(s, 4)).toEqual([0, 9, 0, 0]);
  expect(heads(a, 4)).toEqual([0, 8, 0, 0]);
  a.discardSync(BS, BS);
  expect(heads(a, 4)).toEqual([0, 0, 0, 0]);
  writeBlock(a, 3, 3);
  pool.commitSync();
  expect(heads(a, 4)).toEqual([0, 0, 0, 3]);
  pool.resizeSync('a', 2 * BS); // unmaps block 3
  pool.resizeSync('a', 8 * BS);
  expect(heads(a, 4)).toEqual([0, 0, 0, 0]);
});

test('a snapshot, then writes to its origin, and a rollback make cached reads stale', () => {
  const { pool } = memoryPool(64);
  const a = pool.createThinSync('a', { size: 4 * BS });
  writeBlock(a, 0, 1);
  writeBlock(a, 2, 2);
  expect(heads(a, 3)).toEqual([1, 0, 2]);
  const s = pool.snapshotSync('a', 's');
  expect(heads(s, 3)).toEqual([1, 0, 2]);
  writeBlock(a, 0, 5); // shared since the snapshot: copied, never written in place
  writeBlock(a, 1, 6);
  expect(heads(a, 3)).toEqual([5, 6, 2]);
  expect(heads(s, 3)).toEqual([1, 0, 2]);
  pool.rollbackSync('a', 's');
  expect(heads(a, 3)).toEqual([1, 0, 2]);
  writeBlock(s, 2, 4); // shared again after the rollback
  expect(heads(a, 3)).toEqual([1, 0, 2]);
  expect(heads(s, 3)).toEqual([1, 0, 4]);
});

test('a deleted device id used again by a new volume reads zeros, not the old mappings', () => {
  const { pool } = memoryPool(64);
  const a = pool.createThinSync('a', { size: 4 * BS });
  writeBlock(a, 0, 1);
  expect(heads(a, 2)).toEqual([1, 0]);
  const id = a.id;
  pool.deleteSync('a');
  const b = pool.createThinSync('b', { size: 4 * BS });
  expect(b.id).toBe(id);
  expect(heads(b, 2)).toEqual([0, 0]);
});

test('dropped changes (close without commit, then open) and an extend of the metadata read the committed state', () => {
  const { storage, pool } = memoryPool(64);
  const a = pool.createThinSync('a', { size: 4 * BS });
  writeBlock(a, 0, 1);
  pool.commitSync();
  a.discardSync(0, BS); // unmaps (an in-place overwrite would stay: data is not transactional)
  writeBlock(a, 1, 3);
  expect(heads(a, 2)).toEqual([0, 3]);
  pool.closeSync({ commit: false });
  const again = ThinPool.openStorage(storage);
  const a2 = again.volume('a');
  expect(heads(a2, 2)).toEqual([1, 0]);
  again.extendSync({ metadataSize: 2 << 20 }); // the metadata is opened again inside the pool
  expect(heads(a2, 2)).toEqual([1, 0]);
  writeBlock(a2, 1, 4);
  expect(heads(a2, 2)).toEqual([1, 4]);
  expect(again.metadata.mappingCacheEntries).toBeGreaterThan(0);
});

test('metadata: abort, a restore-style insert and new details make cached lookups stale', () => {
  const md = ThinMetadata.format(new MemoryDevice(1 << 20), { nrDataBlocks: 64, dataBlockSectors: BS / 512 });
  md.createThin(1);
  md.insertMapping(1, 0, md.allocDataBlock());
  md.commit();
  const committed = md.lookupData(1, 0);
  expect(committed).toBeGreaterThanOrEqual(0);
  expect(md.lookupData(1, 1)).toBe(-1);
  md.insertMapping(1, 1, md.allocDataBlock());
  const fresh = md.lookupData(1, 1);
  expect(fresh).toBeGreaterThanOrEqual(0);
  md.removeMapping(1, 0);
  expect(md.lookupData(1, 0)).toBe(-1);
  md.abort();
  expect(md.lookupData(1, 0)).toBe(committed);
  expect(md.lookupData(1, 1)).toBe(-1);
  md.insertMappingRaw(1, 1, 9, 0);
  expect(md.lookupData(1, 1)).toBe(9);
  md.insertMappingRaw(1, 1, 10, 0);
  expect(md.lookupData(1, 1)).toBe(10);
});

test('random operations: reads with the default cache, a four-entry cache and no cache all equal the model (fast-check)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.integer({ min: 20, max: 100 }), (seed, steps) => {
      const rng = mulberry32(seed);
      const caches = [undefined, 4, 0];
      const pools = caches.map((n) => memoryPool(256, n));
      const model = new PoolModel(BS);
      const buf = new Uint8Array(4096);
      for (let i = 0; i < steps; i++) {
        if (rng() < 0.05) {
          pools.forEach((p, k) => {
            p.pool.closeSync();
            p.pool = ThinPool.openStorage(p.storage, { mappingCacheEntries: caches[k] });
          });
        }
        const op = randomOp(rng, model, BS);
        for (const p of pools) applyToPool(p.pool, op);
        applyToModel(model, op);
        if (op.op === 'commit') continue;
        // Random one-block reads of every volume (the cached fast path), before and after the next change.
        for (const [name, bytes] of model.volumes) {
          for (let k = 0; k < 6 && bytes.length >= buf.length; k++) {
            const off = Math.floor(rng() * (bytes.length - buf.length + 1));
            for (const p of pools) {
              p.pool.volume(name).readSync(buf, off);
              if (Buffer.compare(buf, bytes.subarray(off, off + buf.length)) !== 0) {
                expect.fail(
                  `volume ${name} at ${off} (cache ${caches[pools.indexOf(p)] ?? 'default'}) differs from the model after ${op.op}`,
                );
              }
            }
          }
        }
      }
      for (const p of pools) expectPoolEquals(p.pool, model);
    }),
    { numRuns: Number(process.env.THINPOOL_MODEL_RUNS ?? 20) },
  );
}, 300_000);
