// Metadata full: the changes that free space (delete, rollback, discard) still work when the metadata device is
// full and make room again, a metadata threshold is reported however the use grew, and a metadata device running
// short never lets a commit find a block allocated and not yet mapped (FIXED BUGS 2, 7, 8). The out-of-space
// situations themselves (ENOSPC_DATA / ENOSPC_METADATA, low-water mark, auto-extend) are in out-of-space.test.ts.
// THINPOOL_FIGURES_DIR=<dir>: the counts go to <dir>/crash-suites.json as 'metadata-full' (recordSuite of
// scripts/figures-crash-suites.mjs), rendered into docs/crash-safety.md by scripts/render-figures.mjs.
import { expect, test } from 'vitest';
import type { BlockDevice } from '../../src/io/block-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { checkMetadataDevice } from '../../src/thin/check.js';
import { ThinPool } from '../../src/thin/pool.js';
import { fill, keepOpen } from '../support/model.js';
import { verifyMetadataDevice } from '../support/pool-check.js';
import { BS, type Ev, expectBytes, expectHealthy, fullMetadataPool, newPool, read } from './space-harness.js';
import { codeOf } from '../support/thrown.js';
import { recordSuiteFigures } from '../support/suite-figures.js';

/** What the tests did with the metadata device full (or short), counted as they did it. */
const did = {
  deletes: 0,
  rollbacks: 0,
  rollbackBlocksFreed: 0,
  discards: 0,
  discardBlocksFreed: 0,
  creates: 0,
  thresholdEventsFromCreates: 0,
  commitsChecked: 0,
};
recordSuiteFigures('metadata-full', () => did);

/**
 * FIXED BUG 2 (engine, src/thin/pool.ts change() / ensureMetadataHeadroom). Was: once fewer than
 * OP_METADATA_MARGIN (64) metadata blocks were free, every metadata change was refused with ENOSPC_METADATA —
 * deleteSync included — so deleting volumes (which the error message advises) could not make room. Fixed:
 * operations that free space (delete, discard, shrink) skip the headroom check and may dip into the metadata
 * space map's reserve (change(fn, freeing = true)).
 */
test('FIXED BUG 2: deleting volumes when metadata is full makes room again', () => {
  const { pool, names, want, err } = fullMetadataPool();
  expect(err).toBe('ENOSPC_METADATA');
  pool.commitSync();
  for (const n of names.splice(names.length - Math.ceil(names.length / 3))) {
    pool.deleteSync(n); // threw ENOSPC_METADATA before the fix
    did.deletes++;
    want.delete(n);
  }
  pool.commitSync();
  pool.snapshotSync('v0', 'snap');
  want.set('snap', want.get('v0')!.slice());
  const d = fill(10, 3);
  pool.volume('v9').writeSync(d, 0);
  want.get('v9')!.set(d, 0);
  pool.createThinSync('fresh', { size: BS });
  want.set('fresh', new Uint8Array(BS));
  expectHealthy(pool, 'after deleting volumes');
  for (const [n, b] of want) expectBytes(pool, n, b, 'after making room');
});

test('a rollback when metadata is full works: it frees the blocks the volume wrote since its snapshot', () => {
  const { pool, meta, reopen } = newPool(64, 160 * 4096);
  const r = pool.createThinSync('r', { size: 2 * BS });
  r.writeSync(fill(2 * BS, 1), 0);
  pool.snapshotSync('r', 'rs');
  r.writeSync(fill(2 * BS, 2), 0); // both blocks copied: r's own now
  pool.commitSync();
  let err = 'ok';
  for (let i = 0; err === 'ok'; i++) err = codeOf(() => pool.createThinSync(`f${i}`, { size: BS }));
  expect(err).toBe('ENOSPC_METADATA');
  pool.commitSync();
  const used = pool.status().dataBlocks.used;
  pool.rollbackSync('r', 'rs');
  did.rollbacks++;
  did.rollbackBlocksFreed += used - pool.status().dataBlocks.used;
  expect(pool.status().dataBlocks.used).toBe(used - 2);
  expectBytes(pool, 'r', fill(2 * BS, 1), 'after the rollback');
  pool.closeSync();
  const again = reopen();
  expectBytes(again, 'r', fill(2 * BS, 1), 'after the rollback, reopened');
  again.closeSync();
  verifyMetadataDevice(meta);
});

test('discarding blocks when metadata is full unmaps them: a freeing change, like a delete', () => {
  const { pool, names, want, err, reopen } = fullMetadataPool();
  expect(err).toBe('ENOSPC_METADATA');
  pool.commitSync();
  const used = pool.status().dataBlocks.used;
  for (const n of names.slice(0, 8)) {
    pool.volume(n).discardSync(0, BS); // a whole mapped block: unmapped, not refused
    did.discards++;
    want.set(n, new Uint8Array(BS));
    expect(pool.volume(n).map()).toEqual([]);
  }
  did.discardBlocksFreed += used - pool.status().dataBlocks.used;
  expect(pool.status().dataBlocks.used).toBe(used - 8);
  pool.commitSync();
  expectHealthy(pool, 'after discarding when metadata is full');
  pool.closeSync();
  const again = reopen();
  for (const [n, b] of want) expectBytes(again, n, b, 'after discarding, reopened');
  again.closeSync();
});

/**
 * FIXED BUG 7 (checkSpace now runs after every successful change; engine, src/thin/pool.ts checkSpace): threshold crossings are only checked in allocDataBlock, so
 * metadata use grown by operations that allocate no data block (creates, snapshots, deletes) never fires the
 * 'threshold' event, even though status().lowWater.metadata reports the level: here 72 creates take the
 * metadata device from 0 % to over 50 % with no event at all. The check belongs after every metadata change
 * (or at least every commit).
 */
test('FIXED BUG 7: a metadata threshold crossed by creates alone is reported', () => {
  const { pool } = newPool(64, 160 * 4096);
  pool.configureSpace({ thresholds: { data: [99], metadata: [20, 40] } });
  const ev: Ev[] = [];
  pool.on('threshold', (e) => ev.push(e));
  for (let i = 0; i < 400 && codeOf(() => pool.createThinSync(`v${i}`, { size: BS })) === 'ok'; i++) {
    did.creates++;
    if (i % 10 === 9) pool.commitSync();
  }
  expect(pool.status().lowWater.metadata, 'status shows the level').toBe(40);
  expect(ev.map((e) => `${e.resource} ${e.threshold}`)).toEqual(['metadata 20', 'metadata 40']);
  did.thresholdEventsFromCreates += ev.length;
});

/**
 * FIXED BUG 8 (engine, src/thin/data-path.ts / commit.ts continueChange). Was: with 64 metadata blocks free, a
 * new block's allocation passed the headroom check, used a metadata block, and the change mapping it committed
 * to reclaim room: a committed data block no mapping referenced. Fixed: the mapping is the same operation.
 */
test('FIXED BUG 8: metadata short: no commit ever finds a block allocated and not yet mapped', () => {
  // Every metadata flush is a commit's: the device as it is then must pass the checker (no block counted in
  // the data space map that no mapping references).
  const meta = new MemoryDevice(200 * 4096);
  const data = new MemoryDevice(64 * BS);
  const found: string[] = [];
  let flushes = 0;
  let checking = false;
  const metadata: BlockDevice = {
    ...keepOpen(meta),
    get sizeBytes() {
      return meta.sizeBytes;
    },
    flush: () => {
      meta.flush();
      flushes++;
      if (checking) {
        for (const e of checkMetadataDevice(meta.snapshot()).errors) found.push(e.message);
        did.commitsChecked++;
      }
    },
  };
  const pool = ThinPool.formatStorage(
    { metadata, data: keepOpen(data), catalog: new MemoryCatalogStore() },
    { size: 64 * BS, blockSize: BS },
  );
  const w = pool.createThinSync('w', { size: 40 * BS });
  pool.commitSync();
  // Fill the metadata device with empty volumes (one block each) until 64 blocks are free: less than the
  // headroom a run of new blocks asks for (twice the 64-block margin of one operation).
  for (let i = 0; pool.status().metadataBlocks.free > 64; i++) {
    pool.createThinSync(`v${i}`, { size: BS });
    pool.commitSync();
  }
  expect(pool.status().metadataBlocks.free).toBe(64);
  flushes = 0;
  checking = true;
  w.writeSync(fill(20 * BS, 1), 0);
  pool.commitSync();
  expect(flushes, 'commits happened during the write').toBeGreaterThan(1);
  expect(found).toEqual([]);
  expect(Buffer.compare(read(pool, 'w').subarray(0, 20 * BS), fill(20 * BS, 1))).toBe(0);
  pool.closeSync();
});
