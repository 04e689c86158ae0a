// A trap in the WASM core during a metadata change (commit.ts): the core's state is unknown after one, so the
// change fails with EFAILED naming the trap (the RuntimeError as its cause), the pool fails (mode `fail`, every
// later change refused with "pool is failed", not the read-only message), needs_check is not set (the metadata
// on disk is the last commit's, untouched), and a reopen finds that commit whole. The trap is injected where the
// change calls the core (the metadata's createThin): a real one would be a defect in the core.
import { expect, test } from 'vitest';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { MemoryHighWaterStore } from '../../src/thin/high-water.js';
import { ThinPool } from '../../src/thin/pool.js';
import { fill, keepOpen } from '../support/model.js';
import { thrown } from '../support/thrown.js';

const BS = 64 * 1024;

test('a trap in the core fails the pool: EFAILED with its cause, later changes refused, the last commit intact', () => {
  const meta = new MemoryDevice(1 << 20);
  const data = new MemoryDevice(32 * BS);
  const catalog = new MemoryCatalogStore();
  const storage = () => ({
    metadata: keepOpen(meta),
    data: keepOpen(data),
    catalog,
    highWater: new MemoryHighWaterStore(32),
  });
  const pool = ThinPool.formatStorage(storage(), { size: 16 * BS, blockSize: BS });
  const v = pool.createThinSync('v', { size: 4 * BS });
  const bytes = fill(BS, 5);
  v.writeSync(bytes, 0);
  pool.commitSync();

  const trap = new WebAssembly.RuntimeError('unreachable');
  const md = pool.metadata as unknown as { createThin(id: number): void };
  md.createThin = () => {
    throw trap;
  };
  const e = thrown(() => pool.createThinSync('w', { size: BS })) as Error & { code?: string; cause?: unknown };
  expect(e.code).toBe('EFAILED');
  expect(e.message).toBe('the WASM core trapped (unreachable); the pool has failed: close and reopen it');
  expect(e.cause).toBe(trap);
  expect(pool.mode).toBe('fail');
  expect(pool.status().needsCheck).toBe(false);

  const later = thrown(() => pool.createThinSync('x', { size: BS })) as Error & { code?: string };
  expect(later.code).toBe('EROFS');
  expect(later.message).toBe('pool is failed');

  pool.closeSync({ commit: false });
  const again = ThinPool.openStorage(storage());
  try {
    expect(again.mode).toBe('write');
    expect(again.list().map((r) => r.name)).toEqual(['v']);
    const back = new Uint8Array(BS);
    again.volume('v').readSync(back, 0);
    expect(Buffer.from(back).equals(Buffer.from(bytes))).toBe(true);
  } finally {
    again.closeSync();
  }
});
