// Growing a pool (src/thin/extend.ts) where the order and the answer matter, through the pool's interface: a data
// device grown by extend() is flushed after its resize and before the superblock that claims the new size (with
// nothing written since the last commit, that flush comes from the growth alone); and auto-extend asked at the
// full-pool refusal says it grew, so the allocation is retried on the new blocks instead of failing with
// ENOSPC_DATA. The latter needs the pool to fill up between the auto-extend asked before an allocation and the
// allocation itself: an 'extended' listener that writes (events are synchronous) does that.
import { expect, test } from 'vitest';
import type { BlockDevice } from '../../src/io/block-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { ThinPool } from '../../src/thin/pool.js';
import { checkMetadataDevice } from '../../src/thin/check.js';
import { fill, keepOpen, readBytes, sameBytes } from '../support/model.js';

const BS = 64 * 1024;

/** A view of dev that logs its resizes, flushes and (for the metadata) writes of the superblock, in one list. */
function logged(dev: BlockDevice, name: string, log: string[]): BlockDevice {
  return {
    ...keepOpen(dev),
    get sizeBytes() {
      return dev.sizeBytes;
    },
    write: (b, o) => {
      if (o === 0) log.push(`${name} superblock`);
      dev.write(b, o);
    },
    flush: () => {
      log.push(`${name} flush`);
      dev.flush();
    },
    resize: (s) => {
      log.push(`${name} resize ${s / BS}`);
      dev.resize(s);
    },
  };
}

test('extend: the data device is flushed after its resize and before the superblock that records the new size', () => {
  const log: string[] = [];
  const meta = new MemoryDevice(1 << 20);
  const data = new MemoryDevice(8 * BS);
  const pool = ThinPool.formatStorage(
    { metadata: logged(meta, 'meta', log), data: logged(data, 'data', log), catalog: new MemoryCatalogStore() },
    { size: 8 * BS, blockSize: BS },
  );
  const v = pool.createThinSync('v', { size: 4 * BS });
  v.writeSync(fill(BS, 1), 0);
  pool.commitSync(); // nothing written since this commit: the growth alone must make the data device dirty
  log.length = 0;
  pool.extendSync({ size: 12 * BS });
  const resized = log.indexOf('data resize 12');
  const flushed = log.indexOf('data flush', resized);
  const claimed = log.indexOf('meta superblock', resized);
  expect(resized, log.join(', ')).toBeGreaterThanOrEqual(0);
  expect(flushed, `the data device is flushed after its resize: ${log.join(', ')}`).toBeGreaterThan(resized);
  expect(claimed).toBeGreaterThan(flushed);
  expect(pool.status().dataBlocks.total).toBe(12);
  // A metadata growth alone has no data to flush.
  log.length = 0;
  pool.extendSync({ metadataSize: 2 << 20 });
  expect(log).not.toContain('data flush');
  expect(pool.status().metadataBlocks.total).toBe(512);
  pool.closeSync();
});

test("an 'extended' listener runs once the write that grew the pool has mapped its block; growth its own writes make is heard after them", () => {
  const pool = ThinPool.memory({ size: 4 * BS, blockSize: BS });
  // One block a growth, up to 8 blocks.
  pool.configureSpace({ autoExtend: { enabled: true, atPercent: 100, percent: 1, maxBytes: 8 * BS } });
  const v = pool.createThinSync('v', { size: 16 * BS });
  const w = pool.createThinSync('w', { size: 16 * BS });
  for (let b = 0; b < 3; b++) v.writeSync(fill(BS, b), b * BS);
  const heard: string[] = [];
  let armed = true;
  pool.on('extended', (e) => {
    // What the listener sees: the write that grew the pool is whole (its block mapped and written).
    heard.push(
      `${e.fromBlocks} -> ${e.toBlocks}: v block 3 ${sameBytes(readBytes(v, 3 * BS, BS), fill(BS, 3)) ? 'written' : 'not yet written'}`,
    );
    if (!armed) return;
    armed = false;
    // Another writer takes blocks now: each write grows the pool again (heard when that write is done).
    w.writeSync(fill(BS, 100), 0);
    w.writeSync(fill(BS, 101), BS);
  });
  v.writeSync(fill(BS, 3), 3 * BS); // the pool's last free block: auto-extend first (4 -> 5)
  expect(heard).toEqual(['4 -> 5: v block 3 written', '5 -> 6: v block 3 written', '6 -> 7: v block 3 written']);
  expect(pool.status().dataBlocks).toEqual({ used: 6, total: 7, free: 1 });
  for (let b = 0; b < 4; b++) expect(sameBytes(readBytes(v, b * BS, BS), fill(BS, b)), `v block ${b}`).toBe(true);
  expect(sameBytes(readBytes(w, 0, BS), fill(BS, 100))).toBe(true);
  expect(sameBytes(readBytes(w, BS, BS), fill(BS, 101))).toBe(true);
  pool.commitSync();
  expect(checkMetadataDevice(pool.storage.metadata).errors).toEqual([]);
  expect(pool.mode).toBe('write');
});
