// Minimal reproductions of engine bugs found by the metadata fuzzer, now regression tests of the fixes (they were
// test.fails while open). Each builds a small pool, damages one field with the checksum recomputed, and expects a ThinpoolError
// naming the structure and the metadata block. THINPOOL_FIGURES_DIR=<dir>: the tests that passed go to
// <dir>/crash-suites.json as 'fuzz-regressions' (recordSuite of scripts/figures-crash-suites.mjs), rendered into
// docs/crash-safety.md by scripts/render-figures.mjs.
import { expect, test } from 'vitest';
import { Core } from '../../src/core/wasm.js';
import { isThinpoolError } from '../../src/errors.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { ThinPool, type PoolStorage } from '../../src/thin/pool.js';
import { keepOpen } from '../support/model.js';
import { recordSuiteFigures } from '../support/suite-figures.js';

const BS = 64 * 1024;
const SUPERBLOCK_SALT = 160774;
const NODE_SALT = 121107;

recordSuiteFigures('fuzz-regressions', undefined, { passedNames: true });

function smallPool() {
  const meta = new MemoryDevice(1024 * 1024);
  const data = new MemoryDevice(16 * BS);
  const catalog = new MemoryCatalogStore();
  const storage: PoolStorage = { metadata: keepOpen(meta), data: keepOpen(data), catalog };
  const pool = ThinPool.formatStorage(storage, { size: 16 * BS, blockSize: BS });
  const v = pool.createThinSync('v', { size: 2 * BS });
  v.writeSync(new Uint8Array(1000).fill(5), 0);
  const leaf = pool.metadata.deviceDetails(v.id).root;
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
 * FIXED BUG 3a (fuzz mutant 4248, seed 777: superblock field @336 := 0, checksum recomputed).
 * Was: the superblock's data_block_size was not validated on open: 0 sectors was accepted, the pool's block size
 * was 0, and a read computed NaN offsets (EINVAL "bad byte range: offset NaN" from the data device). Fixed: open
 * validates data_block_size (dm-thin: 128..2097152 sectors, a multiple of 128) and refuses with EBADSUPER
 * naming the superblock, block 0.
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
 * FIXED BUG 3b (fuzz mutant 11664, seed 777: a level-1 leaf value := 0xffffffff in its low word, checksum
 * recomputed). Was: a mapping to a data block past the end of the data device was used as is — the read
 * silently returned zeros from past the end (or EINVAL "bad byte range" for huge values), and a write would
 * have grown the data file. Fixed: reads and writes check dblock < nr data blocks and throw ECORRUPT naming the
 * mapping tree and its root block (ThinPool.badMapping).
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
 * FIXED BUG 4 (fuzz mutant 16752, seed 777: superblock field @336 := 256, checksum recomputed). Was: openStorage's
 * check that the data device holds nr_data_blocks x block size threw EBADSUPER without `structure` and `mblock`.
 * Fixed: the error names the superblock, block 0.
 */
test('FIXED BUG 4: the data-device size mismatch names the superblock', () => {
  const { meta, open } = smallPool();
  patch(meta, 0, SUPERBLOCK_SALT, (dv) => dv.setUint32(336, 256, true));
  expectNamedError(() => open(), /superblock/);
});
