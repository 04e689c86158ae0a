// Minimal reproductions of engine bugs found by the metadata fuzzer (test.fails while open; remove the mark when
// fixed). Each builds a small pool, damages one field with the checksum recomputed, and expects a ThinpoolError
// naming the structure and the metadata block.
import { expect, test } from 'vitest';
import { Core } from '../../src/core/wasm.js';
import { isThinpoolError } from '../../src/errors.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { ThinPool, type PoolStorage } from '../../src/thin/pool.js';
import { keepOpen } from '../support/model.js';

const BS = 64 * 1024;
const SUPERBLOCK_SALT = 160774;
const NODE_SALT = 121107;

function smallPool() {
  const meta = new MemoryDevice(1024 * 1024);
  const data = new MemoryDevice(16 * BS);
  const catalog = new MemoryCatalogStore();
  const storage: PoolStorage = { metadata: keepOpen(meta), data: keepOpen(data), catalog };
  const pool = ThinPool.formatStorage(storage, { size: 16 * BS, blockSize: BS });
  const v = pool.createThinSync('v', { size: 2 * BS });
  v.writeSync(new Uint8Array(1000).fill(5), 0);
  const leaf = pool.metadata.details0(v.id).root;
  pool.closeSync();
  const open = () => ThinPool.openStorage({ metadata: keepOpen(meta), data: keepOpen(data), catalog }, { readOnly: true });
  return { meta, data, leaf, open };
}

const core = new Core(1, 0);
/** Edit metadata block b and recompute its checksum (WASM blockPrepare), as the fuzzer's resealed mutants do. */
function patch(meta: MemoryDevice, b: number, salt: number, edit: (dv: DataView) => void): void {
  const buf = new Uint8Array(4096);
  meta.read(buf, b * 4096);
  edit(new DataView(buf.buffer));
  core.u8.set(buf, core.scratch);
  core.x.blockPrepare(core.scratch, salt);
  meta.write(core.u8.slice(core.scratch, core.scratch + 4096), b * 4096);
}

function expectNamedError(fn: () => void, structure: RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(isThinpoolError(thrown), `a ThinpoolError, got ${String(thrown)}`).toBe(true);
  const e = thrown as { code: string; structure?: string; mblock?: number; message: string };
  expect(e.structure ?? '', `structure named by "${e.code}: ${e.message}"`).toMatch(structure);
  expect(typeof e.mblock, `metadata block named by "${e.code}: ${e.message}"`).toBe('number');
}

/**
 * KNOWN BUG 3a (fuzz mutant 4248, seed 777: superblock field @336 := 0, checksum recomputed).
 * The superblock's data_block_size is not validated on open: 0 sectors is accepted, the pool's block size is 0,
 * and a read computes NaN offsets: the data device throws EINVAL "bad byte range: offset NaN" instead of a
 * metadata error (EBADSUPER, superblock, block 0). dm-thin requires 128..2097152 sectors, a multiple of 128.
 */
test('FIXED BUG 3a: data_block_size 0 in the superblock is refused at open', () => {
  const { meta, open } = smallPool();
  patch(meta, 0, SUPERBLOCK_SALT, (dv) => dv.setUint32(336, 0, true));
  expectNamedError(() => {
    const p = open();
    p.volume('v').readSync(new Uint8Array(BS), 0);
  }, /superblock/);
});

/**
 * KNOWN BUG 3b (fuzz mutant 11664, seed 777: a level-1 leaf value := 0xffffffff in its low word, checksum
 * recomputed). A mapping to a data block past the end of the data device is used as is. Here (data block 255
 * of a 16-block device) the read silently returns zeros from past the end of the device and no error at all;
 * in the fuzz mutant (a larger high word) the offset is beyond 2^53 and the device throws EINVAL "bad byte
 * range". A write to such a block would go in place past the end and grow the data file. Expected: ECORRUPT
 * naming the mapping tree leaf. Lookups (and in-place writes) must check dblock < nr data blocks; note our
 * checker does report such a mapping ("mapping(s) beyond the end of the data device").
 */
test('FIXED BUG 3b: a mapping past the end of the data device is reported, not followed', () => {
  const { meta, leaf, open } = smallPool();
  // Level-1 leaf: header 32 bytes, keys at 32 (max_entries x 8), values after; value 0 low word := 0xffffffff.
  patch(meta, leaf, NODE_SALT, (dv) => {
    const max = dv.getUint32(20, true);
    dv.setUint32(32 + 8 * max, 0xffffffff, true);
  });
  expectNamedError(() => {
    const p = open();
    p.volume('v').readSync(new Uint8Array(BS), 0);
  }, /mapping/);
});

/**
 * KNOWN BUG 4 (fuzz mutant 16752, seed 777: superblock field @336 := 256, checksum recomputed). openStorage's
 * check that the data device holds nr_data_blocks x block size throws EBADSUPER without `structure` and
 * `mblock` ("data device is 1048576 bytes but the metadata maps 16 blocks of 131072 bytes"); every metadata
 * error should name its structure and block (superblock, block 0).
 */
test('FIXED BUG 4: the data-device size mismatch names the superblock', () => {
  const { meta, open } = smallPool();
  patch(meta, 0, SUPERBLOCK_SALT, (dv) => dv.setUint32(336, 256, true));
  expectNamedError(() => open(), /superblock/);
});
