// Property test: random sequences of create, snapshot, write, discard, delete, resize, commit and
// close/reopen against a plain in-memory model of each volume's bytes.
import { test } from 'vitest';
import fc from 'fast-check';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { ThinPool, type PoolStorage } from '../../src/thin/pool.js';
import { PoolModel, applyToModel, applyToPool, expectPoolEquals, keepOpen, mulberry32, randomOp } from '../support/model.js';
import { verifyMetadataDevice } from '../support/pool-check.js';

const BS = 64 * 1024;

test('random operation sequences match the model (fast-check)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.integer({ min: 20, max: 120 }), (seed, steps) => {
      const rng = mulberry32(seed);
      const storage: PoolStorage = { metadata: keepOpen(new MemoryDevice(1 << 20)), data: keepOpen(new MemoryDevice(256 * BS)), catalog: new MemoryCatalogStore() };
      let pool = ThinPool.formatStorage(storage, { size: 256 * BS, blockSize: BS });
      const model = new PoolModel();
      for (let i = 0; i < steps; i++) {
        if (rng() < 0.05) {
          pool.closeSync();
          pool = ThinPool.openStorage(storage);
          expectPoolEquals(pool, model);
        }
        const op = randomOp(rng, model, BS);
        applyToPool(pool, op);
        applyToModel(model, op);
      }
      expectPoolEquals(pool, model);
      pool.commitSync();
      verifyMetadataDevice(storage.metadata);
    }),
    { numRuns: 25 },
  );
});
