// Property test: random sequences of create, snapshot, write, discard, delete, resize, commit and
// close/reopen against a plain in-memory model of each volume's bytes and space (test/support/model.ts): after
// every step the pool's list() (mapped / exclusive / shared) and status() data blocks used equal the model's,
// and every model block stays on one data block for its life (an in-place overwrite never moves).
import { expect, test } from 'vitest';
import fc from 'fast-check';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { ThinPool, type PoolStorage } from '../../src/thin/pool.js';
import {
  PoolModel,
  applyToModel,
  applyToPool,
  expectPoolEquals,
  expectSpaceEquals,
  fill,
  keepOpen,
  mulberry32,
  randomOp,
} from '../support/model.js';
import { verifyMetadataDevice } from '../support/pool-check.js';

const BS = 64 * 1024;

function memoryPool(blocks: number): { storage: PoolStorage; pool: ThinPool } {
  const storage: PoolStorage = {
    metadata: keepOpen(new MemoryDevice(1 << 20)),
    data: keepOpen(new MemoryDevice(blocks * BS)),
    catalog: new MemoryCatalogStore(),
  };
  return { storage, pool: ThinPool.formatStorage(storage, { size: blocks * BS, blockSize: BS }) };
}

test('random operation sequences match the model, bytes and space, after every step (fast-check)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.integer({ min: 20, max: 120 }), (seed, steps) => {
      const rng = mulberry32(seed);
      const { storage, pool: first } = memoryPool(256);
      let pool = first;
      const model = new PoolModel(BS);
      for (let i = 0; i < steps; i++) {
        if (rng() < 0.05) {
          pool.closeSync();
          pool = ThinPool.openStorage(storage);
          expectPoolEquals(pool, model);
          expectSpaceEquals(pool, model);
        }
        const op = randomOp(rng, model, BS);
        applyToPool(pool, op);
        applyToModel(model, op);
        expectSpaceEquals(pool, model);
      }
      expectPoolEquals(pool, model);
      pool.commitSync();
      verifyMetadataDevice(storage.metadata);
    }),
    { numRuns: Number(process.env.THINPOOL_MODEL_RUNS ?? 25) }, // fewer under mutation testing (vitest.mutate.config.ts)
  );
}, 300_000); // 25 runs, each ending in the external checkers

test('overwriting an exclusive block allocates nothing, even in a full pool', () => {
  const { pool } = memoryPool(8);
  const v = pool.createThinSync('a', { size: 8 * BS });
  v.writeSync(fill(8 * BS, 1), 0);
  pool.commitSync();
  expect(pool.status().dataBlocks).toMatchObject({ used: 8, free: 0 });
  for (let b = 0; b < 8; b++) {
    v.writeSync(fill(100, 10 + b), b * BS + 7); // partial and whole-block overwrites of exclusive blocks
    v.writeSync(fill(BS, 20 + b), b * BS);
    expect(pool.status().dataBlocks.used).toBe(8);
  }
  const got = new Uint8Array(BS);
  v.readSync(got, 3 * BS);
  expect(Buffer.compare(got, fill(BS, 23))).toBe(0);
  expect(pool.list()[0]).toMatchObject({ mappedBytes: 8 * BS, exclusiveBytes: 8 * BS, sharedBytes: 0 });
});

test('the first write into a shared block allocates exactly one block, later writes none', () => {
  const { pool } = memoryPool(16);
  const a = pool.createThinSync('a', { size: 4 * BS });
  a.writeSync(fill(4 * BS, 1), 0);
  const s = pool.snapshotSync('a', 's');
  expect(pool.status().dataBlocks.used).toBe(4);
  let used = 4;
  for (const [vol, block] of [
    [a, 0],
    [s, 1],
    [a, 2],
  ] as const) {
    vol.writeSync(fill(10, block), block * BS + 5);
    expect(pool.status().dataBlocks.used, 'first write into a shared block').toBe(++used);
    vol.writeSync(fill(BS, block + 50), block * BS);
    vol.writeSync(fill(10, block + 60), block * BS + 100);
    expect(pool.status().dataBlocks.used, 'later writes into the copy').toBe(used);
  }
  const byName = Object.fromEntries(pool.list().map((i) => [i.name, i]));
  // a: blocks 0 and 2 copied, 1 and 3 shared; s: 1 and 2 copied, 0 and 3 shared. Block 1 of a and 0 of s were
  // shared before the copies and are now each mapped once: exclusive.
  expect(byName.a).toMatchObject({ mappedBytes: 4 * BS, exclusiveBytes: 3 * BS, sharedBytes: BS });
  expect(byName.s).toMatchObject({ mappedBytes: 4 * BS, exclusiveBytes: 3 * BS, sharedBytes: BS });
  // Filling the pool to the last block: the first write into the last shared block still finds its one block.
  const filler = pool.createThinSync('f', { size: 16 * BS });
  filler.writeSync(fill((pool.status().dataBlocks.free - 1) * BS, 9), 0);
  a.writeSync(fill(1, 1), 3 * BS);
  expect(pool.status().dataBlocks).toMatchObject({ used: 16, free: 0 });
});
