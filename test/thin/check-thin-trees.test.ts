/**
 * The checker's findings in the thin trees (src/thin/check.ts): device details against the level-0 tree,
 * mapped_blocks against the level-1 entries, mappings past the data device or above the superblock time, odd
 * device times, and the same in the held metadata snapshot, each worded and counted exactly; the stats count
 * the live devices only.
 */
import { describe, expect, test } from 'vitest';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { checkMetadata, checkMetadataDevice } from '../../src/thin/check.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { isThinpoolError } from '../../src/errors.js';
import { SUPERBLOCK_SALT } from '../../src/thin/superblock.js';
import { NODE_SALT, patchBlock, readBlock, setU64, u32, u64, valueOffset } from '../support/metadata-patch.js';
import { heldSnapshot, twoDevices } from '../support/check-pool.js';

const MiB = 1024 * 1024;
const NR_DATA = 1000;
/** Sizes of the values of a device details leaf and of a level-1 leaf. */
const DETAILS_VS = 24;
const MAPPING_VS = 8;

/** Devices 1 (mappings 0..9) and 2 (mappings 0..4), committed; both level-1 trees are single leaves. */

function messages(r: { errors: { message: string }[] }): string[] {
  return r.errors.map((e) => e.message);
}

describe('device details against the mapping trees', () => {
  // The live trees are compared when the metadata is opened (which refuses such a mismatch); the held
  // snapshot's only by the checker.
  test('in the held snapshot, a details entry whose id has no mapping tree, and a mapping tree whose id has no details, are both named', () => {
    const { dev, md, held } = heldSnapshot(NR_DATA);
    const leaf = readBlock(dev, held.deviceDetailsRoot);
    expect([u32(leaf, 4), u32(leaf, 16)]).toEqual([2, 2]); // a leaf with two entries
    expect(u64(leaf, 32 + 8)).toBe(2);
    patchBlock(md, dev, held.deviceDetailsRoot, NODE_SALT, (buf) => setU64(buf, 32 + 8, 3)); // device 2's details now say 3
    const r = checkMetadataDevice(dev);
    expect(r.ok).toBe(false);
    expect(r.errors).toEqual([
      {
        code: 'ECORRUPT',
        structure: 'mapping tree (level 0)',
        mblock: held.dataMappingRoot,
        message: 'metadata snapshot thin device 3 has details but no mapping tree',
      },
      {
        code: 'ECORRUPT',
        structure: 'device details tree',
        mblock: held.deviceDetailsRoot,
        message: 'metadata snapshot thin device 2 has mappings but no details',
      },
    ]);
    expect(r.stats.devices).toBe(2);
    expect(r.stats.mappings).toBe(15);
  });

  test('mapped_blocks that differs from the level-1 entries is an error naming both counts', () => {
    const { dev, md } = twoDevices(NR_DATA);
    const sb = md.superblock;
    patchBlock(md, dev, sb.deviceDetailsRoot, NODE_SALT, (buf) => setU64(buf, valueOffset(buf, 0, DETAILS_VS), 11));
    const r = checkMetadataDevice(dev);
    expect(r.errors).toEqual([
      {
        code: 'ECORRUPT',
        structure: 'device details tree',
        mblock: sb.deviceDetailsRoot,
        message: 'thin device 1 has mapped_blocks 11, but its mapping tree has 10 entries',
      },
    ]);
  });

  test('device times out of order are warnings, not errors', () => {
    const { md } = twoDevices(NR_DATA);
    md.setSuperblockFields({ time: 4 });
    md.setDeviceDetails(1, { transactionId: 0, creationTime: 3, snapshottedTime: 2 });
    md.setDeviceDetails(2, { transactionId: 0, creationTime: 1, snapshottedTime: 5 });
    md.commit();
    const r = checkMetadata(md);
    expect(r.errors).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.warnings).toEqual([
      {
        code: 'ECORRUPT',
        structure: 'device details tree',
        message: 'thin device 1: expected creation_time 3 <= snap_time 2 <= superblock time 4',
      },
      {
        code: 'ECORRUPT',
        structure: 'device details tree',
        message: 'thin device 2: expected creation_time 1 <= snap_time 5 <= superblock time 4',
      },
    ]);
    // Equal times are in order.
    md.setDeviceDetails(1, { transactionId: 0, creationTime: 4, snapshottedTime: 4 });
    md.setDeviceDetails(2, { transactionId: 0, creationTime: 0, snapshottedTime: 0 });
    md.commit();
    expect(checkMetadata(md).warnings).toEqual([]);
  });
});

describe('mapping values', () => {
  test('mappings at or past the end of the data device are one error with their count and the first one', () => {
    const { dev, md } = twoDevices(NR_DATA);
    const root = md.rootOf(1);
    const d9 = md.lookup(1, 9)!.dblock;
    patchBlock(md, dev, root, NODE_SALT, (buf) => {
      expect(u32(buf, 16)).toBe(10);
      setU64(buf, valueOffset(buf, 3, MAPPING_VS), NR_DATA * 2 ** 24); // data block NR_DATA, time 0
      setU64(buf, valueOffset(buf, 7, MAPPING_VS), (NR_DATA + 5) * 2 ** 24);
      setU64(buf, valueOffset(buf, 9, MAPPING_VS), (NR_DATA - 1) * 2 ** 24); // the last block: in range
    });
    const r = checkMetadataDevice(dev);
    const beyond = r.errors.filter((e) => e.structure === 'mapping tree (level 1)');
    expect(beyond).toEqual([
      {
        code: 'ECORRUPT',
        structure: 'mapping tree (level 1)',
        message: `2 mapping(s) beyond the end of the data device (${NR_DATA} blocks), first: virtual block 3 of thin device 1 maps data block ${NR_DATA} (leaf block ${root})`,
      },
    ]);
    // The block in range is counted as referenced (expected 1, the space map says 0); the old ones lost theirs.
    const msgs = messages(r);
    expect(msgs).toContain(`data reference counts differ for block ${NR_DATA - 1}, expected 1, but got 0`);
    expect(msgs).toContain(`data reference counts differ for block ${d9}, expected 0, but got 1`);
    expect(msgs.filter((m) => m.startsWith('data reference counts differ')).length).toBe(4);
  });

  test('mappings with a time above the superblock time are one error with their count and the first one', () => {
    const { md } = twoDevices(NR_DATA);
    md.setSuperblockFields({ time: 4 });
    md.insertMappingRaw(2, 20, 500, 4); // the superblock time itself: in order
    md.insertMappingRaw(2, 30, 501, 5);
    md.insertMappingRaw(2, 40, 502, 9);
    md.commit();
    const r = checkMetadata(md);
    expect(r.errors).toEqual([
      {
        code: 'ECORRUPT',
        structure: 'mapping tree (level 1)',
        message: `2 mapping(s) with a time above the superblock time 4, first: virtual block 30 of thin device 2 has time 5 (leaf block ${md.rootOf(2)})`,
      },
    ]);
    expect(r.stats.mappings).toBe(18);
  });
});

describe('the held metadata snapshot', () => {
  test('its trees are checked with their own superblock time, worded as the snapshot, and left out of the stats', () => {
    const { md } = twoDevices(NR_DATA);
    md.insertMappingRaw(1, 0, md.lookup(1, 0)!.dblock, 9); // time 9 above the superblock time 0
    md.setDeviceDetails(1, { transactionId: 0, creationTime: 0, snapshottedTime: 5 });
    md.reserveMetadataSnap();
    md.commit();
    const heldLeaf = md.rootOf(1);
    // The live device drops the bad mapping (its leaf is copied) and gets sound times; device 2 goes.
    md.removeMapping(1, 0);
    md.setDeviceDetails(1, { transactionId: 0, creationTime: 0, snapshottedTime: 0 });
    md.deleteDevice(2);
    md.commit();
    expect(md.rootOf(1)).not.toBe(heldLeaf);
    const r = checkMetadata(md);
    expect(r.errors).toEqual([
      {
        code: 'ECORRUPT',
        structure: 'mapping tree (level 1)',
        message: `1 mapping(s) with a time above the metadata snapshot superblock time 0, first: virtual block 0 of metadata snapshot thin device 1 has time 9 (leaf block ${heldLeaf})`,
      },
    ]);
    expect(r.warnings).toEqual([
      {
        code: 'ECORRUPT',
        structure: 'device details tree',
        message: 'metadata snapshot thin device 1: expected creation_time 0 <= snap_time 5 <= superblock time 0',
      },
    ]);
    expect(r.stats.devices).toBe(1);
    expect(r.stats.mappings).toBe(9);
  });

  test('a live and a held error of the same kind are counted apart', () => {
    const { md } = twoDevices(NR_DATA);
    md.insertMappingRaw(1, 0, md.lookup(1, 0)!.dblock, 9);
    md.reserveMetadataSnap();
    md.commit();
    md.insertMappingRaw(1, 1, md.lookup(1, 1)!.dblock, 8); // the live leaf is copied: a second bad time there
    md.commit();
    const r = checkMetadata(md);
    expect(messages(r)).toEqual([
      `2 mapping(s) with a time above the superblock time 0, first: virtual block 0 of thin device 1 has time 9 (leaf block ${md.rootOf(1)})`,
      expect.stringMatching(
        /^1 mapping\(s\) with a time above the metadata snapshot superblock time 0, first: virtual block 0 of metadata snapshot thin device 1 has time 9 /,
      ),
    ]);
  });

  test('an unreadable snapshot superblock is reported as the snapshot', () => {
    const { dev, md } = twoDevices(NR_DATA);
    const held = md.reserveMetadataSnap();
    md.commit();
    const b = readBlock(dev, held);
    b[200] ^= 1;
    dev.write(b, held * 4096);
    const r = checkMetadataDevice(dev);
    expect(r.ok).toBe(false);
    const e = r.errors.find((x) => x.mblock === held && x.message.startsWith('metadata snapshot: '));
    expect(e, JSON.stringify(r.errors)).toBeDefined();
    expect(e!.code).toBe('EBADCSUM');
  });
});

describe('the held snapshot superblock and its trees', () => {
  /** A held snapshot whose device 1 no longer shares its trees with the live one; returns the held block. */
  function heldApart(): { dev: MemoryDevice; md: ThinMetadata; held: number } {
    const { dev, md } = twoDevices(NR_DATA);
    const held = md.reserveMetadataSnap();
    md.commit();
    md.insertMapping(1, 50, md.allocDataBlock()); // live trees copied
    md.commit();
    return { dev, md, held };
  }

  test("roots past the metadata device are named as the snapshot's", () => {
    const { dev, md, held } = heldApart();
    const nrMeta = md.inspect().nrMetadataBlocks;
    patchBlock(md, dev, held, SUPERBLOCK_SALT, (buf) => {
      setU64(buf, 320, nrMeta + 1); // data_mapping_root
      setU64(buf, 328, nrMeta + 2); // device_details_root
    });
    const msgs = messages(checkMetadataDevice(dev));
    expect(msgs).toContain(
      `reference to block ${nrMeta + 2} beyond the metadata device (${nrMeta} blocks) from metadata snapshot device_details_root`,
    );
    expect(msgs).toContain(
      `reference to block ${nrMeta + 1} beyond the metadata device (${nrMeta} blocks) from metadata snapshot data_mapping_root`,
    );
    expect(msgs).toContain(
      `device details tree of the metadata snapshot points to block ${nrMeta + 2}, beyond the metadata device (${nrMeta} blocks)`,
    );
    expect(msgs).toContain(
      `mapping tree (level 0) of the metadata snapshot points to block ${nrMeta + 1}, beyond the metadata device (${nrMeta} blocks)`,
    );
  });

  test("a held level-0 entry past the metadata device is named with the snapshot's device", () => {
    const { dev, md, held } = heldApart();
    const nrMeta = md.inspect().nrMetadataBlocks;
    const l0 = md.heldSuperblock()!.dataMappingRoot;
    expect(l0).not.toBe(md.superblock.dataMappingRoot);
    patchBlock(md, dev, l0, NODE_SALT, (buf) => setU64(buf, valueOffset(buf, 1, 8), nrMeta + 3));
    const msgs = messages(checkMetadataDevice(dev));
    expect(msgs).toContain(
      `reference to block ${nrMeta + 3} beyond the metadata device (${nrMeta} blocks) from metadata snapshot mapping tree (level 0) entry for thin device 2`,
    );
    expect(msgs).toContain(
      `mapping tree (level 1) of metadata snapshot thin device 2 points to block ${nrMeta + 3}, beyond the metadata device (${nrMeta} blocks)`,
    );
    expect(held).toBeGreaterThan(0);
  });

  test('a held_root past the metadata device', () => {
    const { dev, md } = twoDevices(NR_DATA);
    const nrMeta = md.inspect().nrMetadataBlocks;
    patchBlock(md, dev, 0, SUPERBLOCK_SALT, (buf) => setU64(buf, 56, nrMeta + 4));
    const r = checkMetadataDevice(dev);
    expect(messages(r)).toContain(
      `reference to block ${nrMeta + 4} beyond the metadata device (${nrMeta} blocks) from superblock held_root`,
    );
    expect(r.errors.some((e) => e.message.startsWith('metadata snapshot'))).toBe(false);
  });
});

describe('checkMetadata and checkMetadataDevice', () => {
  test('an uncommitted state is refused with EBUSY', () => {
    const { md } = twoDevices(NR_DATA);
    md.createThin(3);
    let err: unknown;
    try {
      checkMetadata(md);
    } catch (e) {
      err = e;
    }
    expect(isThinpoolError(err, 'EBUSY'), String(err)).toBe(true);
  });

  test("an error that is not the pool's own passes through", () => {
    const dev = new MemoryDevice(MiB);
    ThinMetadata.format(dev, { nrDataBlocks: 100, dataBlockSectors: 128 });
    const failing = new MemoryDevice(MiB);
    failing.read = () => {
      throw new Error('the disk is gone');
    };
    expect(() => checkMetadataDevice(failing)).toThrow('the disk is gone');
  });

  test('the clean report of a committed pool', () => {
    const { dev } = twoDevices(NR_DATA);
    const r = checkMetadataDevice(dev, { cacheBlocks: 64 });
    expect(r.ok).toBe(true);
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(r.stats).toMatchObject({ devices: 2, mappings: 15, dataBlocksUsed: 15 });
  });
});

describe('engine regression found by these tests', () => {
  // setDeviceDetails marked the device's details for the next commit but not the metadata dirty, so a commit
  // with nothing else to write returned at once and the change was lost.
  test('a details change on its own is committed', () => {
    const { dev, md } = twoDevices(NR_DATA);
    md.setDeviceDetails(2, { transactionId: 6, creationTime: 0, snapshottedTime: 0 });
    expect(md.dirty).toBe(true);
    md.commit();
    expect(ThinMetadata.open(dev, { readOnly: true }).deviceDetails(2).transactionId).toBe(6);
  });
});
