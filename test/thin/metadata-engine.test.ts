/**
 * The engine below thin metadata (src/thin/metadata-engine.ts) through the metadata API: the size of the metadata
 * block cache (the option clamped to 64 .. metadata blocks + 8) and its I/O counters; the write-mode gate (EROFS
 * for read-only, needs_check and failed metadata, each worded); the metadata reserve (an ordinary allocation is
 * refused once only the reserve is left, a freeing operation may dip into it, and the reserve is in force again
 * afterwards, also after the operation threw); the held snapshot's superblock; setting and clearing needs_check
 * on disk (block 0 only); and the structure names that errors from damaged trees carry.
 */
import { describe, expect, test } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import { FaultDevice } from '../../src/io/fault-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { INDEX_ENTRY, TREE_ROOT, U32 } from '../../src/pd/value-types.js';
import { checkMetadataDevice } from '../../src/thin/check.js';
import { DEVICE_DETAILS } from '../../src/thin/device-details.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { BLOCK_TIME } from '../../src/thin/block-time.js';
import { readSuperblock } from '../../src/thin/superblock.js';
import { NODE_SALT, patchBlock, readBlock } from '../support/metadata-patch.js';

const KiB = 1024;
const MiB = 1024 * KiB;

function format(bytes = MiB, opts: { cacheBlocks?: number } = {}): { dev: MemoryDevice; md: ThinMetadata } {
  const dev = new MemoryDevice(bytes);
  const md = ThinMetadata.format(dev, { nrDataBlocks: 1000, dataBlockSectors: 128, ...opts });
  return { dev, md };
}

/** The code and message of the ThinpoolError fn throws ('ok' when it returns). */
function refusal(fn: () => unknown): { code: string; message: string; structure?: string } {
  try {
    fn();
  } catch (e) {
    if (!isThinpoolError(e)) throw e;
    return { code: e.code, message: e.message, structure: e.structure };
  }
  return { code: 'ok', message: '' };
}

describe('metadata block cache', () => {
  test('its size is the option clamped to at least 64 blocks and at most the metadata blocks + 8', () => {
    // 1 MiB: 256 metadata blocks.
    expect(format(MiB).md.cacheBlocks).toBe(264);
    expect(format(MiB, { cacheBlocks: 100 }).md.cacheBlocks).toBe(100);
    expect(format(MiB, { cacheBlocks: 10 }).md.cacheBlocks).toBe(64);
    expect(format(MiB, { cacheBlocks: 264 }).md.cacheBlocks).toBe(264);
    expect(format(MiB, { cacheBlocks: 265 }).md.cacheBlocks).toBe(264);
    // The default (8192) on a device larger than that.
    expect(format(40 * MiB).md.cacheBlocks).toBe(8192);
    const { dev } = format(MiB);
    expect(ThinMetadata.open(dev, { cacheBlocks: 5000 }).cacheBlocks).toBe(264);
    expect(ThinMetadata.open(dev, { cacheBlocks: 70 }).cacheBlocks).toBe(70);
  });

  test('cacheIo counts the blocks read on a miss and written back by a commit', () => {
    const { dev, md } = format();
    md.createThin(1);
    for (let v = 0; v < 20; v++) md.insertMapping(1, v, md.allocDataBlock());
    md.commit();
    const written = md.cacheIo.writes;
    expect(written).toBeGreaterThan(0);
    const ro = ThinMetadata.open(dev, { readOnly: true });
    const before = ro.cacheIo;
    expect(before.writes).toBe(0);
    expect(ro.lookup(1, 7)?.dblock).toBe(7);
    // The level-1 leaf was not in the fresh cache: one more read, no write; a second lookup is a hit.
    expect(ro.cacheIo).toEqual({ reads: before.reads + 1, writes: 0 });
    ro.lookup(1, 8);
    expect(ro.cacheIo).toEqual({ reads: before.reads + 1, writes: 0 });
    md.insertMapping(1, 30, md.allocDataBlock());
    md.commit();
    expect(md.cacheIo.writes).toBeGreaterThan(written);
  });
});

describe('write mode', () => {
  const changes: [string, (md: ThinMetadata) => unknown][] = [
    ['allocDataBlock', (md) => md.allocDataBlock()],
    ['releaseDataBlock', (md) => md.releaseDataBlock(0)],
    ['extendData', (md) => md.extendData(2000)],
    ['createThin', (md) => md.createThin(9)],
  ];

  test('read-only metadata refuses every change with EROFS and changes nothing', () => {
    const { dev, md } = format();
    md.createThin(1);
    md.insertMapping(1, 0, md.allocDataBlock());
    md.commit();
    const ro = ThinMetadata.open(dev, { readOnly: true });
    expect(ro.mode).toBe('read-only');
    for (const [what, change] of changes) {
      expect(
        refusal(() => change(ro)),
        what,
      ).toEqual({ code: 'EROFS', message: 'pool metadata is read-only', structure: undefined });
    }
    expect(ro.nrDataBlocks).toBe(1000);
    expect(ro.dataUsedBlocks).toBe(1);
    expect(ro.dataBlockCount(0)).toBe(1);
    expect(ro.deviceIds()).toEqual([1]);
    // A writable open of the same device does change.
    const rw = ThinMetadata.open(dev);
    rw.extendData(2000);
    expect(rw.nrDataBlocks).toBe(2000);
    expect(rw.allocDataBlock()).toBe(1);
  });

  test('with needs_check set the refusal says so, on this open and on the next', () => {
    const { dev, md } = format();
    md.setNeedsCheck();
    expect(md.needsCheck).toBe(true);
    expect(md.mode).toBe('read-only');
    const msg = 'pool metadata is read-only: needs_check is set (run a check/repair first)';
    for (const [what, change] of changes)
      expect(
        refusal(() => change(md)),
        what,
      ).toMatchObject({ code: 'EROFS', message: msg });
    const again = ThinMetadata.open(dev);
    expect(again.needsCheck).toBe(true);
    expect(again.mode).toBe('read-only');
    expect(refusal(() => again.createThin(1))).toMatchObject({ code: 'EROFS', message: msg });
  });

  test('failed metadata (its reload after an abort failed) refuses changes as failed', () => {
    const mem = new MemoryDevice(MiB);
    const dev = new FaultDevice(mem);
    const md = ThinMetadata.format(dev, { nrDataBlocks: 1000, dataBlockSectors: 128 });
    md.createThin(1);
    md.insertMapping(1, 0, md.allocDataBlock());
    dev.failAt({ read: dev.reads });
    expect(refusal(() => md.abort()).code).toBe('EIO');
    expect(md.mode).toBe('fail');
    expect(md.needsCheck).toBe(false);
    for (const [what, change] of changes) {
      expect(
        refusal(() => change(md)),
        what,
      ).toMatchObject({ code: 'EROFS', message: 'pool metadata is failed' });
    }
  });
});

describe('metadata reserve', () => {
  /** Metadata of 64 blocks (reserve 8) filled with thin devices, in one transaction, until a create is refused. */
  function full(): { dev: MemoryDevice; md: ThinMetadata; next: number } {
    const dev = new MemoryDevice(64 * 4096);
    const md = ThinMetadata.format(dev, { nrDataBlocks: 100, dataBlockSectors: 128 });
    expect(md.metadataReserve).toBe(8);
    let id = 0;
    for (;;) {
      const r = refusal(() => md.createThin(id));
      if (r.code !== 'ok') {
        expect(r.code).toBe('ENOSPC_METADATA');
        break;
      }
      id++;
      expect(id).toBeLessThan(64);
    }
    // The refused create changed nothing: each create takes one block (its empty level-1 root) and the level-0
    // leaf, shadowed by the first, has room.
    expect(md.hasDevice(id)).toBe(false);
    expect(md.metadataFreeBlocks).toBe(0);
    return { dev, md, next: id };
  }

  test('a freeing operation may allocate from the reserve; afterwards ordinary allocations are refused again', () => {
    const { md, next } = full();
    const result = md.usingMetadataReserve(() => {
      md.createThin(next);
      return 'done';
    });
    expect(result).toBe('done');
    expect(md.hasDevice(next)).toBe(true);
    expect(md.metadataFreeBlocks).toBe(0);
    expect(refusal(() => md.createThin(next + 1)).code).toBe('ENOSPC_METADATA');
    // The reserve is put back also when the operation throws.
    expect(() =>
      md.usingMetadataReserve(() => {
        throw new Error('inside');
      }),
    ).toThrow('inside');
    expect(refusal(() => md.createThin(next + 1)).code).toBe('ENOSPC_METADATA');
    expect(md.deviceIds()).toHaveLength(next + 1);
  });

  test('a commit with no free block left completes from the reserve, the device table included', () => {
    // Fixed bug: the commit wrote the changed device details (and level-0 roots) as ordinary allocations, before
    // the space maps' part of the commit may use the reserve, so with no free block it failed (ENOSPC_METADATA).
    const { dev, md, next } = full();
    md.commit();
    expect(md.dirty).toBe(false);
    expect(checkMetadataDevice(dev).errors).toEqual([]);
    const again = ThinMetadata.open(dev);
    expect(again.deviceIds()).toHaveLength(next);
    expect(again.deviceDetails(next - 1).mappedBlocks).toBe(0);
  });
});

describe('held snapshot superblock', () => {
  test('null while none is held; after reserving, the superblock as committed then; null after the release', () => {
    const { md } = format();
    expect(md.heldSuperblock()).toBeNull();
    md.createThin(1);
    md.insertMapping(1, 0, md.allocDataBlock());
    md.commit();
    const committed = { ...md.superblock };
    const held = md.reserveMetadataSnap();
    md.commit();
    const h = md.heldSuperblock();
    expect(h).not.toBeNull();
    expect(h!.blocknr).toBe(held);
    expect(h!.heldRoot).toBe(0);
    expect(h!.dataMappingRoot).toBe(committed.dataMappingRoot);
    expect(h!.deviceDetailsRoot).toBe(committed.deviceDetailsRoot);
    expect(h!.transactionId).toBe(committed.transactionId);
    md.insertMapping(1, 1, md.allocDataBlock());
    md.commit();
    expect(md.heldSuperblock()!.dataMappingRoot).toBe(committed.dataMappingRoot);
    md.releaseMetadataSnap();
    expect(md.heldSuperblock()).toBeNull();
  });
});

describe('needs_check', () => {
  test('set and cleared in block 0 alone, the rest of the committed superblock kept; clearing makes the metadata writable', () => {
    const { dev, md } = format();
    md.createThin(1);
    md.insertMapping(1, 0, md.allocDataBlock());
    md.setTransactionId(0, 5);
    md.commit();
    // An uncommitted change must not reach block 0 with the flag.
    md.insertMapping(1, 1, md.allocDataBlock());
    const sb0 = readSuperblock(readBlock(dev, 0));
    md.setNeedsCheck();
    const sb1 = readSuperblock(readBlock(dev, 0));
    expect(sb1.flags).toBe(1);
    expect({ ...sb1, flags: 0 }).toEqual(sb0);
    md.clearNeedsCheck();
    expect(md.needsCheck).toBe(false);
    expect(md.superblock.flags).toBe(0);
    expect(md.mode).toBe('write');
    expect(readSuperblock(readBlock(dev, 0))).toEqual(sb0);
    const again = ThinMetadata.open(dev);
    expect(again.needsCheck).toBe(false);
    expect(again.mode).toBe('write');
    expect(again.transactionId).toBe(5);
    expect(again.lookup(1, 1)).toBeNull();
    // Writable again here too: a change commits.
    md.abort();
    md.createThin(2);
    md.commit();
    expect(ThinMetadata.open(dev).deviceIds()).toEqual([1, 2]);
  });

  test('a device that refuses the write of block 0 leaves the metadata failed', () => {
    const dev = new FaultDevice(new MemoryDevice(MiB));
    const md = ThinMetadata.format(dev, { nrDataBlocks: 1000, dataBlockSectors: 128 });
    dev.failAt({ write: dev.writes });
    md.setNeedsCheck();
    expect(md.mode).toBe('fail');
    expect(md.needsCheck).toBe(true);
    expect(refusal(() => md.commit()).code).toBe('EFAILED');
  });
});

describe('structure names in errors from damaged trees', () => {
  /** 300 devices (two-level level-0 and details trees), device 1 with a two-level level-1 tree; committed. */
  function big(): { dev: MemoryDevice; md: ThinMetadata } {
    const dev = new MemoryDevice(8 * MiB);
    const md = ThinMetadata.format(dev, { nrDataBlocks: 4000, dataBlockSectors: 128 });
    for (let i = 0; i < 300; i++) md.createThin(i);
    for (let v = 0; v < 1500; v++) md.insertMapping(1, v, md.allocDataBlock());
    md.commit();
    return { dev, md };
  }

  /** Set nr_entries of node `child` to 1 (too few for a non-root node), with a valid checksum. */
  function starve(md: ThinMetadata, dev: MemoryDevice, child: number): number {
    patchBlock(md, dev, child, NODE_SALT, (buf) => new DataView(buf.buffer, buf.byteOffset).setUint32(16, 1, true));
    return child;
  }

  test('level 0, the details tree and level 1 are each named', () => {
    const { dev, md } = big();
    const sb = md.superblock;
    const l0 = md.inspect().readNode(sb.dataMappingRoot, TREE_ROOT);
    const det = md.inspect().readNode(sb.deviceDetailsRoot, DEVICE_DETAILS);
    const l1 = md.inspect().readNode(md.rootOf(1), BLOCK_TIME);
    expect([l0.internal, det.internal, l1.internal]).toEqual([true, true, true]);

    const l1Child = starve(md, dev, l1.children[1]);
    const opened = ThinMetadata.open(dev);
    expect(refusal(() => opened.forEachMapping(1, () => {}))).toEqual({
      code: 'EBADNODE',
      message: `too few entries (1) in mapping tree (level 1) (block ${l1Child})`,
      structure: 'mapping tree (level 1)',
    });

    const l0Child = starve(md, dev, l0.children[1]);
    expect(refusal(() => ThinMetadata.open(dev))).toEqual({
      code: 'EBADNODE',
      message: `too few entries (1) in mapping tree (level 0) (block ${l0Child})`,
      structure: 'mapping tree (level 0)',
    });

    const detChild = starve(md, dev, det.children[1]);
    expect(refusal(() => ThinMetadata.open(dev))).toEqual({
      code: 'EBADNODE',
      message: `too few entries (1) in device details tree (block ${detChild})`,
      structure: 'device details tree',
    });
  });

  test("the metadata space map's ref-count tree and the data space map's index are each named", () => {
    const dev = new MemoryDevice(8 * MiB);
    // 3,000,000 data blocks: 184 bitmaps, an index of two levels.
    const md = ThinMetadata.format(dev, { nrDataBlocks: 3_000_000, dataBlockSectors: 128 });
    // 400 level-1 roots shared by three devices each: 400 metadata blocks counted 3, a ref-count tree of two levels.
    for (let i = 0; i < 400; i++) {
      md.createThin(3 * i);
      md.createSnapshot(3 * i + 1, 3 * i);
      md.createSnapshot(3 * i + 2, 3 * i);
    }
    md.commit();
    const refs = md.inspect().readNode(md.superblock.metadataSm.refCountRoot, U32);
    const index = md.inspect().readNode(md.superblock.dataSm.bitmapRoot, INDEX_ENTRY);
    expect([refs.internal, index.internal]).toEqual([true, true]);

    const indexChild = starve(md, dev, index.children[1]);
    expect(refusal(() => ThinMetadata.open(dev))).toEqual({
      code: 'EBADNODE',
      message: `too few entries (1) in data space map index (block ${indexChild})`,
      structure: 'data space map index',
    });
    const refChild = starve(md, dev, refs.children[1]);
    expect(refusal(() => ThinMetadata.open(dev))).toEqual({
      code: 'EBADNODE',
      message: `too few entries (1) in metadata ref-count tree (block ${refChild})`,
      structure: 'metadata ref-count tree',
    });
  });
});

describe('mappings', () => {
  test('mapping a block again to the same data block keeps its one reference; to another moves it', () => {
    const { dev, md } = format();
    md.createThin(1);
    const a = md.allocDataBlock();
    md.insertMapping(1, 0, a);
    md.insertMapping(1, 0, a); // the same mapping again (its time renewed): no reference lost
    expect(md.deviceDetails(1).mappedBlocks).toBe(1);
    expect(md.dataUsedBlocks).toBe(1);
    md.commit();
    expect(checkMetadataDevice(dev).errors).toEqual([]);
    const b = md.allocDataBlock();
    md.insertMapping(1, 0, b); // a loses its reference, b has it
    expect(md.dataUsedBlocks).toBe(1);
    expect(md.lookup(1, 0)?.dblock).toBe(b);
    md.commit();
    expect(checkMetadataDevice(dev).errors).toEqual([]);
  });
});
