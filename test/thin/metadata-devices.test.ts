/**
 * The in-core device table of thin metadata (src/thin/metadata-devices.ts) through the metadata API: loading
 * checks that level 0 and the details tree name the same devices (ECORRUPT, worded and placed); the queries
 * (superblock fields, device ids in numeric order, details, ENOENT for an unknown device); the time rule for
 * `shared`; the reads by root, through the mapping cache and over a range; what makes the metadata dirty; the
 * commit (nothing written when clean, refusals in read-only and failed mode, the superblock written last with the
 * bytes given to the callback, the device table written and its dirty marks cleared); and abort (back to the
 * last commit, or failed when that reload fails).
 */
import { describe, expect, test } from 'vitest';
import { FaultDevice } from '../../src/io/fault-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { checkMetadataDevice } from '../../src/thin/check.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { readSuperblock } from '../../src/thin/superblock.js';
import { NODE_SALT, patchBlock, readBlock } from '../support/metadata-patch.js';
import { refusal } from '../support/thrown.js';

const MiB = 1024 * 1024;

function format(): { dev: FaultDevice; md: ThinMetadata } {
  const dev = new FaultDevice(new MemoryDevice(MiB));
  const md = ThinMetadata.format(dev, { nrDataBlocks: 1000, dataBlockSectors: 256 });
  return { dev, md };
}

/** Lower nr_entries (offset 16) of the root leaf at b by one: its last entry is gone. */
function dropLastEntry(md: ThinMetadata, dev: FaultDevice, b: number): void {
  patchBlock(md, dev, b, NODE_SALT, (buf) => {
    const dv = new DataView(buf.buffer, buf.byteOffset);
    dv.setUint32(16, dv.getUint32(16, true) - 1, true);
  });
}

describe('load', () => {
  test('a device in the details tree but not in level 0, and the reverse, are ECORRUPT naming the tree', () => {
    const { dev, md } = format();
    for (const id of [1, 2, 3]) md.createThin(id);
    md.commit();
    const sb = md.superblock;
    dropLastEntry(md, dev, sb.dataMappingRoot);
    expect(refusal(() => ThinMetadata.open(dev))).toEqual({
      code: 'ECORRUPT',
      message: `thin device 3 has details but no mapping tree in mapping tree (level 0) (block ${sb.dataMappingRoot})`,
      structure: 'mapping tree (level 0)',
      mblock: sb.dataMappingRoot,
    });

    const other = format();
    for (const id of [1, 2, 3]) other.md.createThin(id);
    other.md.commit();
    const root = other.md.superblock.deviceDetailsRoot;
    dropLastEntry(other.md, other.dev, root);
    expect(refusal(() => ThinMetadata.open(other.dev))).toEqual({
      code: 'ECORRUPT',
      message: `thin device 3 has mappings but no details in device details tree (block ${root})`,
      structure: 'device details tree',
      mblock: root,
    });
  });
});

describe('queries', () => {
  test('superblock fields, device ids in numeric order, details, and ENOENT for an unknown device', () => {
    const { dev, md } = format();
    expect(md.dataBlockSectors).toBe(256);
    expect(md.time).toBe(0);
    expect(md.heldRoot).toBe(0);
    for (const id of [10, 9, 100]) md.createThin(id);
    expect(md.deviceIds()).toEqual([9, 10, 100]);
    expect(md.hasDevice(10)).toBe(true);
    expect(md.hasDevice(11)).toBe(false);
    md.insertMapping(10, 4, md.allocDataBlock());
    md.insertMapping(10, 5, md.allocDataBlock());
    md.setTransactionId(0, 3);
    md.commit();
    md.createSnapshot(11, 10);
    expect(md.time).toBe(1);
    expect(md.superblock.time).toBe(1);
    expect(md.transactionId).toBe(3);
    expect(md.deviceDetails(10)).toEqual({ mappedBlocks: 2, transactionId: 0, creationTime: 0, snapshottedTime: 1, root: md.rootOf(10) });
    expect(md.deviceDetails(11)).toEqual({ mappedBlocks: 2, transactionId: 3, creationTime: 1, snapshottedTime: 1, root: md.rootOf(10) });
    const held = md.reserveMetadataSnap();
    expect(md.heldRoot).toBe(held);
    expect(held).toBeGreaterThan(0);
    const none = { code: 'ENOENT', message: 'no thin device 7' };
    for (const read of [
      () => md.deviceDetails(7),
      () => md.rootOf(7),
      () => md.lookup(7, 0),
      () => md.lookupData(7, 0),
      () => md.forEachMapping(7, () => {}),
      () => md.forEachMappingIn(7, 0, 10, () => {}),
    ]) {
      expect(refusal(read)).toMatchObject(none);
    }
    md.commit();
    const again = ThinMetadata.open(dev);
    expect(again.deviceIds()).toEqual([9, 10, 11, 100]);
    expect(again.deviceDetails(11)).toEqual(md.deviceDetails(11));
    expect(again.heldRoot).toBe(held);
  });

  test('shared follows the time rule: a mapping older than the last snapshot is shared, one as new is not', () => {
    const { md } = format();
    md.createThin(1);
    md.insertMapping(1, 0, 100); // time 0
    md.createSnapshot(2, 1); // time 1: device 1's snapshotted time
    expect(md.lookup(1, 0)).toEqual({ dblock: 100, time: 0, shared: true });
    expect(md.lookup(2, 0)).toEqual({ dblock: 100, time: 0, shared: true });
    md.insertMapping(1, 1, 101); // time 1, not older than the snapshot
    expect(md.lookup(1, 1)).toEqual({ dblock: 101, time: 1, shared: false });
    expect(md.lookup(1, 2)).toBeNull();
    expect(md.lookup(2, 1)).toBeNull();
  });

  test('reads by level-1 root, through the mapping cache, and over a half-open range', () => {
    const { md } = format();
    md.createThin(1);
    for (const v of [2, 3, 5, 8]) md.insertMapping(1, v, 10 + v);
    md.commit();
    const root = md.rootOf(1);
    expect(md.lookupDblock(root, 5)).toBe(15);
    expect(md.lookupDblock(root, 4)).toBe(-1);
    expect(md.lookupData(1, 8)).toBe(18);
    expect(md.lookupData(1, 9)).toBe(-1);
    md.insertMapping(1, 9, 19);
    expect(md.lookupData(1, 9)).toBe(19);
    expect(md.lookupDblock(root, 9)).toBe(-1); // the committed root is kept; the device has a new one
    expect(md.lookupDblock(md.rootOf(1), 9)).toBe(19);
    const seen: number[][] = [];
    md.forEachMappingIn(1, 3, 8, (v, d, t) => seen.push([v, d, t]));
    expect(seen).toEqual([
      [3, 13, 0],
      [5, 15, 0],
    ]);
    const all: number[] = [];
    md.forEachMapping(1, (v) => all.push(v));
    expect(all).toEqual([2, 3, 5, 8, 9]);
  });

  test('mappingCacheEntries reports the option; 0 turns the cache off and reads stay right', () => {
    const dev = new MemoryDevice(MiB);
    const md = ThinMetadata.format(dev, { nrDataBlocks: 100, dataBlockSectors: 128, mappingCacheEntries: 0 });
    expect(md.mappingCacheEntries).toBe(0);
    md.createThin(1);
    md.insertMapping(1, 0, 7);
    expect(md.lookupData(1, 0)).toBe(7);
    md.commit();
    expect(ThinMetadata.open(dev, { mappingCacheEntries: 1024 }).mappingCacheEntries).toBe(1024);
  });
});

describe('dirty and commit', () => {
  test('clean after a commit; a superblock field, a data allocation or a metadata allocation each make it dirty', () => {
    const { md } = format();
    expect(md.dirty).toBe(false);
    md.setTransactionId(0, 1); // the superblock alone
    expect(md.dirty).toBe(true);
    md.commit();
    expect(md.dirty).toBe(false);
    md.allocDataBlock(); // the data space map alone
    expect(md.dirty).toBe(true);
    md.commit();
    expect(md.dirty).toBe(false);
    md.createThin(1); // metadata blocks
    expect(md.dirty).toBe(true);
    md.commit();
    expect(md.dirty).toBe(false);
  });

  test('a clean commit writes nothing and calls nothing; a dirty one writes block 0 last, with the bytes given', () => {
    const { dev, md } = format();
    const writes = dev.writes;
    const flushes = dev.flushes;
    let called = 0;
    md.commit(() => called++);
    expect([dev.writes, dev.flushes, called]).toEqual([writes, flushes, 0]);

    const before = readBlock(dev, 0);
    md.createThin(1);
    md.insertMapping(1, 0, md.allocDataBlock());
    let given: Uint8Array | undefined;
    md.commit((sb) => {
      // Every other block is written and flushed by now; block 0 still holds the previous superblock.
      expect(readBlock(dev, 0)).toEqual(before);
      expect(dev.flushes).toBeGreaterThan(flushes);
      given = sb.slice();
    });
    expect(given).toBeDefined();
    expect(readBlock(dev, 0)).toEqual(given);
    expect(readSuperblock(given!).transactionId).toBe(0);
    expect(ThinMetadata.open(dev).lookup(1, 0)?.dblock).toBe(0);
  });

  test('a callback that throws stops the commit before block 0: the previous commit stays on disk', () => {
    const { dev, md } = format();
    md.createThin(1);
    md.commit();
    md.createThin(2);
    expect(() =>
      md.commit(() => {
        throw new Error('stage failed');
      }),
    ).toThrow('stage failed');
    expect(ThinMetadata.open(dev).deviceIds()).toEqual([1]);
  });

  test('read-only metadata with changes refuses to commit (EROFS); without changes the commit is a no-op', () => {
    const { dev, md } = format();
    md.createThin(1);
    md.commit();
    const ro = ThinMetadata.open(dev, { readOnly: true });
    expect(refusal(() => ro.commit()).code).toBe('ok');
    md.createThin(2);
    md.setNeedsCheck(); // read-only now, with the create uncommitted
    expect(refusal(() => md.commit())).toMatchObject({ code: 'EROFS', message: 'pool metadata is read-only' });
  });

  test('the commit writes each changed device to level 0 and the details tree; the next transaction starts clean', () => {
    const { dev, md } = format();
    for (const id of [3, 1, 2]) md.createThin(id);
    md.commit();
    md.insertMapping(2, 0, md.allocDataBlock());
    md.insertMapping(3, 0, md.allocDataBlock());
    md.insertMapping(3, 1, md.allocDataBlock());
    md.commit();
    let again = ThinMetadata.open(dev);
    expect([1, 2, 3].map((id) => again.deviceDetails(id).mappedBlocks)).toEqual([0, 1, 2]);
    expect([1, 2, 3].map((id) => again.rootOf(id))).toEqual([1, 2, 3].map((id) => md.rootOf(id)));
    // A commit of a superblock field alone leaves both trees where they were: no device is written again.
    const trees = [md.superblock.dataMappingRoot, md.superblock.deviceDetailsRoot];
    md.setTransactionId(0, 1);
    md.commit();
    expect([md.superblock.dataMappingRoot, md.superblock.deviceDetailsRoot]).toEqual(trees);
    // Take the held snapshot (it shares level 0), then change device 3 again: level 0 must be shadowed first.
    md.reserveMetadataSnap();
    md.commit();
    md.insertMapping(3, 2, md.allocDataBlock());
    md.commit();
    expect(checkMetadataDevice(dev).errors).toEqual([]);
    again = ThinMetadata.open(dev);
    expect(again.deviceDetails(3).mappedBlocks).toBe(3);
    expect(again.heldSuperblock()!.dataMappingRoot).not.toBe(again.superblock.dataMappingRoot);
  });
  test('an open starts every device clean: a commit of a superblock field alone writes no device again', () => {
    const { dev, md } = format();
    for (const id of [1, 2]) md.createThin(id);
    md.insertMapping(1, 0, md.allocDataBlock());
    md.commit();
    const opened = ThinMetadata.open(dev);
    const trees = [opened.superblock.dataMappingRoot, opened.superblock.deviceDetailsRoot];
    opened.setTransactionId(0, 1);
    opened.commit();
    expect([opened.superblock.dataMappingRoot, opened.superblock.deviceDetailsRoot]).toEqual(trees);
  });

  test('after an open the first change under a held snapshot shadows level 0 first, so the counts stay right', () => {
    const { dev, md } = format();
    for (const id of [1, 2]) md.createThin(id);
    md.insertMapping(1, 0, md.allocDataBlock());
    md.commit();
    md.reserveMetadataSnap();
    md.commit();
    const opened = ThinMetadata.open(dev);
    const shared = opened.superblock.dataMappingRoot;
    opened.insertMapping(1, 1, opened.allocDataBlock());
    opened.commit();
    // Data block 0 is mapped by device 1's old level-1 root (still in the held snapshot) and by its copy.
    expect(opened.dataBlockCount(0)).toBe(2);
    expect(checkMetadataDevice(dev).errors).toEqual([]);
    const held = ThinMetadata.open(dev).heldSuperblock()!;
    expect(held.dataMappingRoot).toBe(shared);
    expect(opened.superblock.dataMappingRoot).not.toBe(shared);
    opened.releaseMetadataSnap();
    opened.commit();
    expect(opened.dataBlockCount(0)).toBe(1);
    expect(opened.lookup(1, 0)?.dblock).toBe(0);
    expect(checkMetadataDevice(dev).errors).toEqual([]);
  });
});

describe('abort', () => {
  test('returns to the last commit: devices, mappings, details, superblock fields and cached reads', () => {
    const { md } = format();
    md.createThin(1);
    md.insertMapping(1, 0, md.allocDataBlock());
    md.commit();
    const committed = { ...md.superblock };
    const details = md.deviceDetails(1);
    expect(md.lookupData(1, 0)).toBe(0);
    md.insertMapping(1, 0, md.allocDataBlock());
    md.insertMapping(1, 1, md.allocDataBlock());
    md.createSnapshot(2, 1);
    md.setTransactionId(0, 9);
    expect(md.lookupData(1, 0)).toBe(1);
    md.abort();
    expect(md.dirty).toBe(false);
    expect(md.deviceIds()).toEqual([1]);
    expect(md.deviceDetails(1)).toEqual(details);
    expect(md.lookupData(1, 0)).toBe(0);
    expect(md.lookup(1, 1)).toBeNull();
    expect(md.superblock).toEqual(committed);
    expect(md.dataUsedBlocks).toBe(1);
    // The reloaded state takes changes and commits them.
    md.createThin(2);
    md.commit();
    expect(md.deviceIds()).toEqual([1, 2]);
  });

  test('when the reload fails the metadata is failed: the error is raised and every later commit is EFAILED', () => {
    const { dev, md } = format();
    md.createThin(1);
    md.commit();
    md.createThin(2);
    dev.failAt({ read: dev.reads });
    expect(refusal(() => md.abort()).code).toBe('EIO');
    expect(md.mode).toBe('fail');
    expect(refusal(() => md.commit())).toMatchObject({ code: 'EFAILED', message: 'pool has failed; reopen it' });
    // Failed even with nothing to commit.
    expect(ThinMetadata.open(dev).deviceIds()).toEqual([1]);
  });
});
