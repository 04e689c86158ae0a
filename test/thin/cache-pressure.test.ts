// Metadata larger than the metadata cache: a transaction that dirties more blocks than there are slots must
// write shadow blocks back early and still commit a consistent pool.
import { expect, test } from 'vitest';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { ThinPool, type PoolStorage } from '../../src/thin/pool.js';
import { keepOpen, mulberry32 } from '../support/model.js';
import { verifyMetadataDevice } from '../support/pool-check.js';

test('a 64-slot cache handles a transaction touching thousands of metadata blocks', () => {
  const BS = 64 * 1024;
  const storage: PoolStorage = {
    metadata: keepOpen(new MemoryDevice(16 << 20)),
    data: keepOpen(new MemoryDevice(0)),
    catalog: new MemoryCatalogStore(),
  };
  const pool = ThinPool.formatStorage(storage, { size: 200_000 * BS, blockSize: BS, cacheBlocks: 64 });
  const v = pool.createThinSync('v', { size: 200_000 * BS });
  const rng = mulberry32(9);
  const written = new Map<number, number>();
  const one = new Uint8Array(1);
  for (let i = 0; i < 60_000; i++) {
    const vb = Math.floor(rng() * 200_000);
    one[0] = (i % 250) + 1;
    v.writeSync(one, vb * BS + 7);
    written.set(vb, one[0]);
    if (i === 30_000) pool.snapshotSync('v', 's');
  }
  pool.commitSync();
  expect(pool.metadata.cacheIo.writes).toBeGreaterThan(0);
  expect(pool.status().metadataBlocks.used).toBeGreaterThan(64 * 4);
  pool.closeSync();
  const again = ThinPool.openStorage(storage, { cacheBlocks: 64 });
  const v2 = again.volume('v');
  for (const [vb, b] of written) {
    v2.readSync(one, vb * BS + 7);
    if (one[0] !== b) expect.fail(`block ${vb}: ${one[0]} != ${b}`);
  }
  again.closeSync();
  verifyMetadataDevice(storage.metadata);
}, 120_000);
