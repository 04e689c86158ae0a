// The block cache (src/pd/block-cache.ts) on its own, over a memory device: blocks are validated on a miss and
// never cached when invalid; dirty blocks are written back with their kind's checksum (early when evicted, so a
// transaction may be larger than the cache); pinned blocks are never evicted inside an op; forget and drop
// discard dirty contents.
import { describe, expect, test } from 'vitest';
import { Salt, Status } from '../../src/core/abi.js';
import { Core } from '../../src/core/wasm.js';
import { isThinpoolError } from '../../src/errors.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { BlockCache } from '../../src/pd/block-cache.js';
import { BlockKind } from '../../src/pd/block-kinds.js';
import { thrown } from '../support/thrown.js';

const NR_META = 512;

function setup(slots = 16): { core: Core; dev: MemoryDevice; cache: BlockCache } {
  const core = new Core(slots, NR_META);
  const dev = new MemoryDevice(NR_META * 4096);
  return { core, dev, cache: new BlockCache(core, dev) };
}

/** Fill a fresh block's slot: its own block number at byte 8 and a pattern after byte 16. */
function stamp(core: Core, addr: number, b: number, seed: number): void {
  core.dv.setUint32(addr + 8, b, true);
  for (let i = 16; i < 4096; i += 4) core.dv.setUint32(addr + i, (b * 2654435761 + i * seed) >>> 0, true);
}

function stamped(core: Core, addr: number, b: number, seed: number): boolean {
  for (let i = 16; i < 4096; i += 4) if (core.dv.getUint32(addr + i, true) !== (b * 2654435761 + i * seed) >>> 0) return false;
  return core.dv.getUint32(addr + 8, true) === b;
}

describe('BlockCache', () => {
  test("create gives a zeroed dirty slot; writeDirty writes it with the kind's checksum; a re-read validates", () => {
    const { core, dev, cache } = setup();
    const a = cache.create(7, BlockKind.Bitmap);
    expect(core.u8.subarray(a, a + 4096).every((x) => x === 0)).toBe(true);
    stamp(core, a, 7, 3);
    expect(cache.dirtyCount).toBe(1);
    cache.writeDirty();
    expect(cache.dirtyCount).toBe(0);
    const onDisk = new Uint8Array(4096);
    dev.read(onDisk, 7 * 4096);
    core.u8.set(onDisk, core.param);
    expect(core.x.blockCheck(core.param, Salt.Bitmap, 7, 0)).toBe(Status.OK);
    cache.drop();
    expect(cache.has(7)).toBe(false);
    expect(stamped(core, cache.get(7, BlockKind.Bitmap), 7, 3)).toBe(true);
    expect(cache.reads).toBe(1);
  });

  test('an invalid block is refused with a typed error naming the structure and block, and is not cached', () => {
    const { core, dev, cache } = setup();
    stamp(core, cache.create(9, BlockKind.Index), 9, 1);
    cache.writeDirty();
    cache.drop();
    const cases: [string, () => void, string][] = [
      ['read as another kind (other salt)', () => cache.get(9, BlockKind.Bitmap), 'EBADCSUM'],
      ['read as a node', () => cache.get(9, BlockKind.Node, 8), 'EBADCSUM'],
    ];
    for (const [what, fn, code] of cases) {
      const e = thrown(fn);
      expect(isThinpoolError(e, code as never), `${what}: ${String(e)}`).toBe(true);
      expect(cache.has(9), what).toBe(false);
    }
    const bad = new Uint8Array(4096);
    dev.read(bad, 9 * 4096);
    bad[1000] ^= 1;
    dev.write(bad, 9 * 4096);
    const e = thrown(() => cache.get(9, BlockKind.Index));
    expect(e).toMatchObject({ code: 'EBADCSUM', structure: 'metadata index block', mblock: 9 });
    expect(cache.has(9)).toBe(false);
  });

  test('a block stored under another number is EBADBLOCKNR; block 0 (except the superblock) and blocks past the device are out of range', () => {
    const { core, dev, cache } = setup();
    const a = cache.create(11, BlockKind.Bitmap);
    stamp(core, a, 11, 1);
    cache.writeDirty();
    const copy = new Uint8Array(4096);
    dev.read(copy, 11 * 4096);
    dev.write(copy, 12 * 4096);
    const bitmap = { code: 'EBADBLOCKNR', structure: 'space map bitmap' };
    expect(thrown(() => cache.get(12, BlockKind.Bitmap))).toMatchObject({ ...bitmap, mblock: 12 });
    expect(thrown(() => cache.get(0, BlockKind.Bitmap))).toMatchObject({ ...bitmap, mblock: 0 });
    expect(thrown(() => cache.get(NR_META, BlockKind.Bitmap))).toMatchObject({ ...bitmap, mblock: NR_META });
  });

  test('a damaged superblock is refused naming the superblock; it is the one kind read at block 0', () => {
    const { core, dev, cache } = setup();
    stamp(core, cache.create(0, BlockKind.Superblock), 0, 4);
    cache.writeDirty();
    cache.drop();
    expect(stamped(core, cache.get(0, BlockKind.Superblock), 0, 4)).toBe(true);
    cache.drop();
    const bad = new Uint8Array(4096);
    dev.read(bad, 0);
    bad[2000] ^= 1;
    dev.write(bad, 0);
    expect(thrown(() => cache.get(0, BlockKind.Superblock))).toMatchObject({
      code: 'EBADCSUM',
      structure: 'superblock',
      mblock: 0,
    });
    expect(cache.has(0)).toBe(false);
  });

  test('more dirty blocks than slots: evicted ones are written back early and read back intact', () => {
    const { core, cache } = setup(16);
    for (let b = 1; b <= 200; b++) stamp(core, cache.create(b, BlockKind.Bitmap), b, 5);
    expect(cache.writes).toBeGreaterThanOrEqual(200 - 16);
    cache.writeDirty();
    expect(cache.writes).toBe(200);
    for (let b = 200; b >= 1; b--) expect(stamped(core, cache.get(b, BlockKind.Bitmap), b, 5), `block ${b}`).toBe(true);
  });

  test('inside an op every block touched stays resident at its address; past the slots the cache says so', () => {
    const { core, cache } = setup(16);
    for (let b = 1; b <= 40; b++) stamp(core, cache.create(b, BlockKind.Bitmap), b, 2);
    cache.writeDirty();
    cache.drop();
    cache.op(() => {
      const addrs = new Map<number, number>();
      for (let b = 1; b <= 16; b++) addrs.set(b, cache.get(b, BlockKind.Bitmap));
      for (const [b, a] of addrs) expect(stamped(core, a, b, 2) && cache.get(b, BlockKind.Bitmap) === a, `block ${b}`).toBe(true);
      const e = thrown(() => cache.get(17, BlockKind.Bitmap));
      expect(e).toMatchObject({ code: 'EFAILED' });
      expect(String(e)).toMatch(/all 16 slots pinned/);
    });
    expect(stamped(core, cache.get(17, BlockKind.Bitmap), 17, 2)).toBe(true);
  });

  test('forget and drop discard dirty contents: nothing is written', () => {
    const { core, dev, cache } = setup();
    stamp(core, cache.create(3, BlockKind.Bitmap), 3, 1);
    stamp(core, cache.create(4, BlockKind.Bitmap), 4, 1);
    cache.forget(3);
    expect(cache.has(3)).toBe(false);
    expect(cache.dirtyCount).toBe(1);
    cache.drop();
    expect(cache.dirtyCount).toBe(0);
    cache.writeDirty();
    expect(cache.writes).toBe(0);
    const onDisk = new Uint8Array(8192);
    dev.read(onDisk, 3 * 4096);
    expect(onDisk.every((x) => x === 0)).toBe(true);
  });
});
