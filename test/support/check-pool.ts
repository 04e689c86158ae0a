/**
 * Small committed pools for the checker's tests (test/thin/check-*.test.ts), and one kind of damage: a leaf
 * turned into an internal node of one entry.
 */
import { expect } from 'vitest';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { BLOCK_TIME } from '../../src/thin/block-time.js';
import { checkMetadata } from '../../src/thin/check.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { NODE_SALT, patchBlock, setU64, valueOffset } from './metadata-patch.js';

const MiB = 1024 * 1024;

/** Device 1 with `n` mappings in an internal root over leaves; committed and clean. */
export function pool(n: number, nrDataBlocks = n + 100): { dev: MemoryDevice; md: ThinMetadata; root: number; leaves: number[] } {
  const dev = new MemoryDevice(16 * MiB);
  const md = ThinMetadata.format(dev, { nrDataBlocks, dataBlockSectors: 128 });
  md.createThin(1);
  for (let v = 0; v < n; v++) md.insertMapping(1, v, md.allocDataBlock());
  md.commit();
  expect(checkMetadata(md).errors).toEqual([]);
  const root = md.rootOf(1);
  const node = md.inspect().readNode(root, BLOCK_TIME);
  expect(node.internal).toBe(true);
  return { dev, md, root, leaves: [...node.children] };
}

/** Devices 1 (mappings 0..9) and 2 (mappings 0..4), committed and clean. */
export function twoDevices(nrDataBlocks = 1000): { dev: MemoryDevice; md: ThinMetadata } {
  const dev = new MemoryDevice(4 * MiB);
  const md = ThinMetadata.format(dev, { nrDataBlocks, dataBlockSectors: 128 });
  md.createThin(1);
  md.createThin(2);
  for (let v = 0; v < 10; v++) md.insertMapping(1, v, md.allocDataBlock());
  for (let v = 0; v < 5; v++) md.insertMapping(2, v, md.allocDataBlock());
  md.commit();
  expect(checkMetadata(md).errors).toEqual([]);
  return { dev, md };
}

/** twoDevices with a held metadata snapshot whose device details tree is its own (the live one was copied since). */
export function heldSnapshot(nrDataBlocks = 1000): {
  dev: MemoryDevice;
  md: ThinMetadata;
  held: NonNullable<ReturnType<ThinMetadata['heldSuperblock']>>;
} {
  const { dev, md } = twoDevices(nrDataBlocks);
  md.reserveMetadataSnap();
  md.commit();
  const held = md.heldSuperblock()!;
  md.setDeviceDetails(1, { transactionId: 7, creationTime: 0, snapshottedTime: 0 }); // the live details tree is copied
  md.commit();
  expect(md.superblock.deviceDetailsRoot).not.toBe(held.deviceDetailsRoot);
  return { dev, md, held };
}

/** Turn leaf b into an internal node with one entry (its first key) pointing at `child`. */
export function chainTo(md: ThinMetadata, dev: MemoryDevice, b: number, child: number): void {
  patchBlock(md, dev, b, NODE_SALT, (buf) => {
    const dv = new DataView(buf.buffer, buf.byteOffset);
    dv.setUint32(4, 1, true); // internal
    dv.setUint32(16, 1, true); // one entry
    setU64(buf, valueOffset(buf, 0, 8), child);
  });
}
