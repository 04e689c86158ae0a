/**
 * Deliberate damage to metadata on a device, for the checker's tests: read a block, edit it, and write it back
 * with a checksum the block cache accepts (computed by the WASM core), so the damage is structural, not a bad
 * checksum. Node layout (dm-thin): a 32-byte header (flags at 4, nr_entries at 16, max_entries at 20), then
 * max_entries u64 keys, then max_entries values.
 */
import type { BlockDevice } from '../../src/io/block-device.js';
import { ThinMetadata } from '../../src/thin/metadata.js';

/** Checksum salts of btree nodes and space-map bitmaps. */
export const NODE_SALT = 121107;
export const BITMAP_SALT = 240779;

export function readBlock(dev: BlockDevice, b: number): Uint8Array {
  const buf = new Uint8Array(4096);
  dev.read(buf, b * 4096);
  return buf;
}

export function u32(buf: Uint8Array, off: number): number {
  return new DataView(buf.buffer, buf.byteOffset).getUint32(off, true);
}

export function u64(buf: Uint8Array, off: number): number {
  const dv = new DataView(buf.buffer, buf.byteOffset);
  return dv.getUint32(off, true) + dv.getUint32(off + 4, true) * 4294967296;
}

export function setU64(buf: Uint8Array, off: number, v: number): void {
  const dv = new DataView(buf.buffer, buf.byteOffset);
  dv.setUint32(off, v >>> 0, true);
  dv.setUint32(off + 4, Math.floor(v / 4294967296), true);
}

/** Byte offset of value i of a node whose values are `valueSize` bytes (max_entries read from the node). */
export function valueOffset(node: Uint8Array, i: number, valueSize: number): number {
  return 32 + 8 * u32(node, 20) + valueSize * i;
}

/** Rewrite block b after `edit` changed it, with a correct checksum for `salt` (computed by the WASM core). */
export function patchBlock(
  md: ThinMetadata,
  dev: BlockDevice,
  b: number,
  salt: number,
  edit: (buf: Uint8Array, core: ThinMetadata['core'], addr: number) => void,
): void {
  const core = ThinMetadata.internals(md).core;
  const addr = core.scratch;
  core.u8.set(readBlock(dev, b), addr);
  edit(core.u8.subarray(addr, addr + 4096), core, addr);
  core.x.blockPrepare(addr, salt);
  dev.write(core.u8.slice(addr, addr + 4096), b * 4096);
}
