// The block cache's edges (src/pd/block-cache.ts), past the basics of block-cache.test.ts: block numbers past 2^32
// through the WASM host imports, a resident block re-checked only when asked for as another kind or tree, a
// node's tree recorded by create and markDirty, slot reuse (zeroing, second chance, clean evictions write
// nothing), write-back in block order, pins released by the outermost op only, and forget inside an op.
import { describe, expect, test } from 'vitest';
import { NOT_NODE, Salt, Status } from '../../src/core/abi.js';
import { Core } from '../../src/core/wasm.js';
import { isThinpoolError } from '../../src/errors.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { BlockCache } from '../../src/pd/block-cache.js';
import { BlockKind } from '../../src/pd/block-kinds.js';
import { thrown } from '../support/thrown.js';

const NR_META = 512;
const TWO32 = 2 ** 32;

/** A memory device that records the byte offset of every write. */
class RecordingDevice extends MemoryDevice {
  writesAt: number[] = [];
  override write(buf: Uint8Array, offsetBytes: number): void {
    this.writesAt.push(offsetBytes);
    super.write(buf, offsetBytes);
  }
}

function setup(slots = 16, bytes = NR_META * 4096): { core: Core; dev: RecordingDevice; cache: BlockCache } {
  const core = new Core(slots, NR_META);
  const dev = new RecordingDevice(bytes);
  return { core, dev, cache: new BlockCache(core, dev) };
}

function stamp(core: Core, addr: number, b: number, seed: number): void {
  core.dv.setUint32(addr + 8, b % TWO32, true);
  core.dv.setUint32(addr + 12, Math.floor(b / TWO32), true);
  for (let i = 16; i < 4096; i += 4) core.dv.setUint32(addr + i, (b * 2654435761 + i * seed) >>> 0, true);
}

function stamped(core: Core, addr: number, b: number, seed: number): boolean {
  for (let i = 16; i < 4096; i += 4) if (core.dv.getUint32(addr + i, true) !== (b * 2654435761 + i * seed) >>> 0) return false;
  return core.dv.getUint32(addr + 8, true) === b % TWO32 && core.dv.getUint32(addr + 12, true) === Math.floor(b / TWO32);
}

/** Is the block on the device valid with this salt? */
function validOnDisk(core: Core, dev: MemoryDevice, b: number, salt: number): boolean {
  const onDisk = new Uint8Array(4096);
  dev.read(onDisk, b * 4096);
  core.u8.set(onDisk, core.param);
  return core.x.blockCheck(core.param, salt, b >>> 0, Math.floor(b / TWO32)) === Status.OK;
}

describe('BlockCache edges', () => {
  test('the host imports carry block numbers past 2^32 (lo + hi * 2^32) and report failures through hostError', () => {
    const big = TWO32 + 5;
    const { core, dev, cache } = setup(16, 2 ** 46);
    expect(cache.device).toBe(dev);
    stamp(core, cache.create(big, BlockKind.Bitmap), big, 4);
    cache.writeDirty();
    expect(validOnDisk(core, dev, big, Salt.Bitmap)).toBe(true);
    cache.drop();
    const a = core.host.block(5, 1, BlockKind.Bitmap);
    expect(a).not.toBe(0);
    expect(stamped(core, a, big, 4)).toBe(true);
    expect(cache.has(big)).toBe(true);
    expect(cache.has(5)).toBe(false);
    core.host.forget(5, 1);
    expect(cache.has(big)).toBe(false);
    // A node that is not there (zeros): 0 and the error names the block.
    expect(core.host.node(7, 1, 8)).toBe(0);
    expect(core.hostError).toMatchObject({ code: 'EBADCSUM', mblock: TWO32 + 7 });
    expect(core.host.block(9, 1, BlockKind.Index)).toBe(0);
    expect(core.hostError).toMatchObject({ code: 'EBADCSUM', mblock: TWO32 + 9 });
    // A node created through the host is registered for its tree (vs) or for none (NOT_NODE).
    const n = core.host.create(11, 1, BlockKind.Node, 8);
    expect(n).not.toBe(0);
    expect(cache.has(TWO32 + 11)).toBe(true);
    expect(core.host.create(12, 1, BlockKind.Node, NOT_NODE)).not.toBe(0);
    cache.writeDirty(); // zeroed nodes: checksummed, but no node structure and no block number
    expect(cache.get(TWO32 + 11, BlockKind.Node, 8)).toBe(n);
    expect(thrown(() => cache.get(TWO32 + 12, BlockKind.Node, 8))).toMatchObject({ mblock: TWO32 + 12 });
    // With every slot pinned, create fails through hostError too.
    cache.op(() => {
      for (let b = 1; b <= 16; b++) cache.create(b, BlockKind.Bitmap);
      expect(core.host.create(13, 1, BlockKind.Bitmap, NOT_NODE)).toBe(0);
      expect(core.hostError).toMatchObject({ code: 'EFAILED' });
    });
  });

  test('a resident clean block is not re-checked when asked for as the same kind and tree, and is when asked for as another', () => {
    const { core, cache } = setup();
    // Zeroed blocks written back: checksummed with their salt, but their block number field says 0.
    const bm = cache.create(6, BlockKind.Bitmap);
    const node = cache.create(5, BlockKind.Node, 8);
    cache.create(4, BlockKind.Node);
    cache.writeDirty();
    expect(cache.dirtyCount).toBe(0);
    expect(cache.get(6, BlockKind.Bitmap)).toBe(bm);
    expect(cache.get(5, BlockKind.Node, 8)).toBe(node);
    expect(thrown(() => cache.get(6, BlockKind.Index))).toMatchObject({ code: 'EBADCSUM', mblock: 6 });
    expect(thrown(() => cache.get(5, BlockKind.Node, 16))).toMatchObject({ mblock: 5 });
    expect(thrown(() => cache.get(4, BlockKind.Node, 0))).toMatchObject({ mblock: 4 });
    // A good block read once is trusted while resident: a change to its bytes in memory is not re-checked.
    const good = cache.create(20, BlockKind.Index);
    stamp(core, good, 20, 1);
    const goodNode = cache.create(21, BlockKind.Node, 8);
    core.x.nodeInit(goodNode, 21, 0, 2, 8);
    cache.writeDirty();
    cache.drop();
    const again = cache.get(20, BlockKind.Index);
    core.u8[again + 2000] ^= 1;
    expect(cache.get(20, BlockKind.Index)).toBe(again);
    const nodeAgain = cache.get(21, BlockKind.Node, 8);
    core.u8[nodeAgain + 2000] ^= 1;
    expect(cache.get(21, BlockKind.Node, 8)).toBe(nodeAgain);
    expect(thrown(() => cache.get(21, BlockKind.Node, 16))).toMatchObject({ mblock: 21 });
  });

  test('a node read from disk is checked as a node (structure) and its tree is remembered', () => {
    const { core, cache } = setup();
    const a = cache.create(5, BlockKind.Node, 8);
    core.dv.setUint32(a + 8, 5, true);
    cache.writeDirty();
    cache.drop();
    const e = thrown(() => cache.get(5, BlockKind.Node, 8));
    expect(isThinpoolError(e, 'EBADNODE'), String(e)).toBe(true);
    expect(e).toMatchObject({ structure: 'btree node', mblock: 5 });
    expect(cache.has(5)).toBe(false);
  });

  test('the superblock is block 0; other blocks there and past the device are out of range, with a message', () => {
    const { cache } = setup();
    cache.create(0, BlockKind.Superblock);
    cache.writeDirty();
    cache.drop();
    expect(cache.get(0, BlockKind.Superblock)).toBeGreaterThan(0);
    const e = thrown(() => cache.get(NR_META, BlockKind.Index));
    expect(String((e as Error).message)).toMatch(/block number 512 out of range/);
  });

  test('create of a resident block reuses its slot and zeroes it; a recycled slot is zeroed too', () => {
    const { core, cache } = setup();
    const a = cache.create(1, BlockKind.Bitmap);
    expect(cache.has(1)).toBe(true);
    stamp(core, a, 1, 3);
    expect(cache.create(1, BlockKind.Bitmap)).toBe(a);
    expect(cache.dirtyCount).toBe(1);
    expect(core.u8.subarray(a, a + 4096).every((x) => x === 0)).toBe(true);
    stamp(core, a, 1, 3);
    cache.writeDirty();
    cache.drop();
    const b = cache.create(2, BlockKind.Bitmap);
    expect(core.u8.subarray(b, b + 4096).every((x) => x === 0)).toBe(true);
  });

  test('markDirty: only resident blocks; the kind given decides the salt and a node its tree; marking twice counts once', () => {
    const { core, dev, cache } = setup();
    expect(thrown(() => cache.markDirty(3, BlockKind.Bitmap))).toMatchObject({ code: 'EFAILED' });
    expect(String(thrown(() => cache.markDirty(3, BlockKind.Bitmap)))).toMatch(/block 3 marked dirty while not resident/);
    const a = cache.create(1, BlockKind.Bitmap);
    stamp(core, a, 1, 2);
    cache.writeDirty();
    cache.markDirty(1, BlockKind.Index);
    cache.markDirty(1, BlockKind.Index);
    expect(cache.dirtyCount).toBe(1);
    cache.writeDirty();
    expect(cache.dirtyCount).toBe(0);
    expect(validOnDisk(core, dev, 1, Salt.Index)).toBe(true);
    // A zeroed node marked for tree 8 is trusted for tree 8 only; marked for no tree, it is re-checked.
    cache.create(2, BlockKind.Bitmap);
    cache.create(3, BlockKind.Bitmap);
    cache.writeDirty();
    cache.markDirty(2, BlockKind.Node, 8);
    cache.markDirty(3, BlockKind.Node);
    cache.writeDirty();
    expect(cache.get(2, BlockKind.Node, 8)).toBeGreaterThan(0);
    expect(thrown(() => cache.get(2, BlockKind.Node, 16))).toMatchObject({ mblock: 2 });
    expect(thrown(() => cache.get(3, BlockKind.Node, 0))).toMatchObject({ mblock: 3 });
  });

  test('eviction gives a referenced slot a second chance, prefers an empty slot, and writes nothing for clean blocks', () => {
    const { core, dev, cache } = setup(16);
    for (let b = 1; b <= 16; b++) stamp(core, cache.create(b, BlockKind.Bitmap), b, 1);
    cache.writeDirty();
    expect(cache.writes).toBe(16);
    expect(cache.slots).toBe(16);
    cache.create(17, BlockKind.Bitmap); // every slot referenced: one sweep clears them, block 1 goes
    expect(cache.has(1)).toBe(false);
    expect(cache.has(2)).toBe(true);
    cache.get(2, BlockKind.Bitmap); // referenced again, and next under the hand: it gets a second chance
    cache.create(18, BlockKind.Bitmap);
    expect(cache.has(2)).toBe(true);
    expect(cache.has(3)).toBe(false);
    cache.get(4, BlockKind.Bitmap); // next under the hand, referenced, then forgotten: an empty slot
    cache.forget(4);
    cache.create(19, BlockKind.Bitmap); // takes the empty slot; block 5 after it stays
    expect(cache.has(5)).toBe(true);
    expect(cache.writes).toBe(16);
    expect(dev.writesAt.length).toBe(16);
    for (let b = 4; b <= 16; b++) expect(stamped(core, cache.get(b, BlockKind.Bitmap), b, 1)).toBe(true);
    for (let b = 1; b <= 3; b++) expect(stamped(core, cache.get(b, BlockKind.Bitmap), b, 1)).toBe(true);
    // Only the three dirty blocks (17..19) were written when evicted, once each.
    expect(cache.writes - 16 + cache.dirtyCount).toBe(3);
  });

  test('writeDirty writes in block order', () => {
    const { dev, cache } = setup();
    for (const b of [9, 3, 12, 1, 7]) cache.create(b, BlockKind.Bitmap);
    cache.writeDirty();
    expect(dev.writesAt).toEqual([1, 3, 7, 9, 12].map((b) => b * 4096));
  });

  test('pins last until the outermost op returns, and no longer: the next op may evict them', () => {
    const { core, cache } = setup(16);
    for (let b = 1; b <= 40; b++) stamp(core, cache.create(b, BlockKind.Bitmap), b, 2);
    cache.writeDirty();
    cache.drop();
    cache.op(() => {
      for (let b = 1; b <= 8; b++) cache.get(b, BlockKind.Bitmap);
      cache.op(() => cache.get(9, BlockKind.Bitmap));
      for (let b = 10; b <= 16; b++) cache.get(b, BlockKind.Bitmap);
      expect(thrown(() => cache.get(17, BlockKind.Bitmap))).toMatchObject({ code: 'EFAILED' });
    });
    for (let round = 0; round < 3; round++) {
      cache.op(() => {
        for (let b = 17; b <= 32; b++) expect(stamped(core, cache.get(b + round, BlockKind.Bitmap), b + round, 2)).toBe(true);
      });
    }
  });

  test('forget leaves a block pinned by the running op alone, and forgetting a clean block changes no count', () => {
    const { cache } = setup();
    cache.create(1, BlockKind.Bitmap);
    cache.create(2, BlockKind.Bitmap);
    cache.writeDirty();
    cache.forget(1);
    expect(cache.has(1)).toBe(false);
    expect(cache.dirtyCount).toBe(0);
    cache.forget(99);
    expect(cache.dirtyCount).toBe(0);
    cache.op(() => {
      cache.create(3, BlockKind.Bitmap);
      cache.forget(3);
      expect(cache.has(3)).toBe(true);
      expect(cache.dirtyCount).toBe(1);
    });
    cache.forget(3);
    expect(cache.has(3)).toBe(false);
    expect(cache.dirtyCount).toBe(0);
    cache.writeDirty();
    expect(cache.writes).toBe(2);
  });
});
