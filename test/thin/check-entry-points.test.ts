/**
 * The checker's entry points and run order (src/thin/check.ts), where the other check tests do not look:
 * - a live superblock root the open does not read (the data space map's ref-count root) that lies past the
 *   metadata device, or is block 0, is named as that root;
 * - the held snapshot's device details and level-0 trees are compared only when both were walked whole (a damaged
 *   one reports its damage, not every device of the other as missing);
 * - an error that is not a ThinpoolError, thrown while checking, propagates out of `checkMetadata` (a bug, not a
 *   finding);
 * - `checkMetadataDevice` opens with `CHECK_CACHE_BLOCKS` unless `cacheBlocks` says otherwise (seen in the reads the
 *   device gets: a cache smaller than the metadata read reads blocks again, one that holds it all reads each once);
 * - an error thrown by the open itself that names no structure or block is the report's only error, under
 *   "metadata" and without a block.
 */
import { describe, expect, test } from 'vitest';
import { ThinpoolError } from '../../src/errors.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { CHECK_CACHE_BLOCKS, checkMetadata, checkMetadataDevice } from '../../src/thin/check.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { SUPERBLOCK_SALT } from '../../src/thin/superblock.js';
import { heldSnapshot, pool } from '../support/check-pool.js';
import { patchBlock, setU64 } from '../support/metadata-patch.js';
import { BlockReadsDevice } from '../support/block-reads.js';

const MiB = 1024 * 1024;

describe('the live superblock', () => {
  // The open reads the other roots (device details, level 0, the data space map index, the metadata space map's
  // index block and ref-count tree) and refuses such a root itself; the data ref-count tree only the check walks.
  test.each([
    [5000, 'reference to block 5000 beyond the metadata device (1024 blocks)'],
    [0, 'reference to the superblock (block 0)'],
  ])('a data space map ref-count root of %i is named as the superblock data space map ref-count root', (root, what) => {
    const dev = new MemoryDevice(4 * MiB);
    const md = ThinMetadata.format(dev, { nrDataBlocks: 1000, dataBlockSectors: 128 });
    md.createThin(1);
    for (let v = 0; v < 10; v++) md.insertMapping(1, v, md.allocDataBlock());
    md.commit();
    patchBlock(md, dev, 0, SUPERBLOCK_SALT, (buf) => setU64(buf, 64 + 24, root)); // data space map root: ref_count_root
    const r = checkMetadataDevice(dev);
    expect(r.errors[0]).toStrictEqual({
      code: 'EBADBLOCKNR',
      structure: 'superblock data space map ref-count root',
      mblock: root,
      message: `${what} from superblock data space map ref-count root`,
    });
    expect(r.ok).toBe(false);
  });
});

describe('the held snapshot: details and level 0 are compared only when both were walked', () => {
  test('a damaged details tree is reported; the devices of its level-0 tree are not called "mappings but no details"', () => {
    const { dev, held } = heldSnapshot();
    dev.write(new Uint8Array(4096), held.deviceDetailsRoot * 4096); // zeros: not a node any more
    const r = checkMetadataDevice(dev);
    // Its level-0 tree (walked whole: devices 1 and 2) is not compared with the details it could not read.
    expect(r.errors).toStrictEqual([
      {
        code: 'EBADCSUM',
        structure: 'btree node',
        mblock: held.deviceDetailsRoot,
        message: `device details tree of the metadata snapshot: bad checksum in btree node (block ${held.deviceDetailsRoot})`,
      },
    ]);
    expect(r.ok).toBe(false);
    expect(r.stats).toMatchObject({ devices: 2, mappings: 15 });
  });
});

describe('checkMetadata', () => {
  test('an error that is not a ThinpoolError, thrown by a read during the check, propagates', () => {
    const { dev, leaves } = pool(1500);
    const counting = new BlockReadsDevice(dev);
    const md = ThinMetadata.open(counting, { readOnly: true, cacheBlocks: 64 });
    const bug = new TypeError('device bug');
    counting.failing = { block: leaves[1], at: 0, error: bug };
    let thrown: unknown;
    try {
      checkMetadata(md);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBe(bug);
    expect(counting.reads.get(leaves[1])).toBe(1);
  });
});

describe('checkMetadataDevice', () => {
  test(`opens with CHECK_CACHE_BLOCKS (${CHECK_CACHE_BLOCKS}) unless cacheBlocks says otherwise`, () => {
    // 40,000 mappings: about 320 level-1 leaves, more than CHECK_CACHE_BLOCKS; two windows of data blocks, so the
    // second window reads the counted leaves again (through the cache when it still holds them).
    const { dev } = pool(40000);
    const counting = new BlockReadsDevice(dev);
    const windowBlocks = 20050;
    const clean = (r: { errors: unknown[] }) => expect(r.errors).toEqual([]);
    clean(checkMetadataDevice(counting, { windowBlocks }));
    const byDefault = counting.take();
    clean(checkMetadataDevice(counting, { windowBlocks, cacheBlocks: CHECK_CACHE_BLOCKS }));
    const withCheckCache = counting.take();
    clean(checkMetadataDevice(counting, { windowBlocks, cacheBlocks: dev.sizeBytes / 4096 }));
    const withWholeCache = counting.take();
    const total = (m: Map<number, number>) => [...m.values()].reduce((a, b) => a + b, 0);
    expect(byDefault).toEqual(withCheckCache);
    // A cache the size of the device reads each block once.
    expect([...withWholeCache].filter(([, n]) => n !== 1)).toEqual([]);
    // CHECK_CACHE_BLOCKS is smaller than what this check reads: blocks are read again.
    expect(withCheckCache.size).toBe(withWholeCache.size);
    expect(total(withCheckCache)).toBeGreaterThan(total(withWholeCache) + 100);
  });

  test('an error the open throws with no structure or block is the only error, under "metadata", without a block', () => {
    const { dev } = pool(1500);
    const counting = new BlockReadsDevice(dev);
    counting.failing = { block: 0, at: 0, error: new ThinpoolError('EIO', 'read failed') };
    expect(checkMetadataDevice(counting)).toStrictEqual({
      ok: false,
      errors: [{ code: 'EIO', structure: 'metadata', message: 'read failed' }],
      warnings: [],
      stats: { devices: 0, mappings: 0, metadataBlocksUsed: 0, dataBlocksUsed: 0 },
    });
    // Not a ThinpoolError: a bug, thrown on.
    const bug = new RangeError('device bug');
    counting.failing = { block: 0, at: 0, error: bug };
    expect(() => checkMetadataDevice(counting)).toThrow(bug);
    // The failure was the read's only: the same device checks clean.
    expect(checkMetadataDevice(counting).errors).toEqual([]);
  });
});
