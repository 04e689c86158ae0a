/**
 * Setting file times the tar carries: libext2fs's JS binding has no utimes, so after a layer is applied (and the
 * filesystem unmounted) the access and modification times are written into the inodes directly, and the inode
 * checksum (metadata_csum: crc32c seeded from the filesystem UUID, the inode number and generation) is redone.
 *
 * Contract: only i_atime and i_mtime (seconds, and the nanosecond extra fields when the inode has them) and the
 * checksum change; `e2fsck -fn` stays clean. Times past 2038 use the extra epoch bits.
 */
import { ThinpoolError } from '../errors.js';
import type { Volume } from '../thin/volume.js';

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** crc32c as ext4 uses it (no pre/post inversion: the caller passes the seed). */
function crc32cRaw(crc: number, b: Uint8Array): number {
  let c = crc >>> 0;
  for (let i = 0; i < b.length; i++) c = TABLE[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return c >>> 0;
}

interface Geometry {
  blockSize: number;
  inodesPerGroup: number;
  inodeSize: number;
  descSize: number;
  is64: boolean;
  csum: boolean;
  seed: number;
  gdtOffset: number;
}

function geometry(v: Volume): Geometry {
  const sb = Buffer.alloc(1024);
  v.readSync(sb, 1024);
  if (sb.readUInt16LE(0x38) !== 0xef53) throw new ThinpoolError('EINVAL', `volume ${v.label} holds no ext4 filesystem`);
  const blockSize = 1024 << sb.readUInt32LE(0x18);
  const incompat = sb.readUInt32LE(0x60);
  const roCompat = sb.readUInt32LE(0x64);
  const is64 = (incompat & 0x80) !== 0;
  const csum = (roCompat & 0x400) !== 0;
  let seed = 0;
  if (csum) seed = (incompat & 0x2000) !== 0 ? sb.readUInt32LE(0x270) : crc32cRaw(0xffffffff, sb.subarray(0x68, 0x78));
  return {
    blockSize,
    inodesPerGroup: sb.readUInt32LE(0x28),
    inodeSize: sb.readUInt16LE(0x58),
    descSize: is64 ? Math.max(32, sb.readUInt16LE(0xfe)) : 32,
    is64,
    csum,
    seed,
    gdtOffset: (blockSize === 1024 ? 2 : 1) * blockSize,
  };
}

/** Set atime and mtime (milliseconds since the epoch) of inodes, by inode number. */
export function setInodeTimes(v: Volume, times: Map<number, number>): void {
  if (times.size === 0) return;
  const g = geometry(v);
  const desc = Buffer.alloc(g.descSize);
  const tables = new Map<number, number>();
  const inode = Buffer.alloc(g.inodeSize);
  const le = Buffer.alloc(4);
  for (const [ino, ms] of [...times].sort((a, b) => a[0] - b[0])) {
    const group = Math.floor((ino - 1) / g.inodesPerGroup);
    let table = tables.get(group);
    if (table === undefined) {
      v.readSync(desc, g.gdtOffset + group * g.descSize);
      table = desc.readUInt32LE(0x08) + (g.is64 ? desc.readUInt32LE(0x28) * 2 ** 32 : 0);
      tables.set(group, table);
    }
    const pos = table * g.blockSize + ((ino - 1) % g.inodesPerGroup) * g.inodeSize;
    v.readSync(inode, pos);
    const secs = Math.floor(ms / 1000);
    const nsec = (ms - secs * 1000) * 1e6;
    const lo = secs >>> 0;
    const epoch = Math.floor((secs - (secs | 0)) / 2 ** 32) & 3;
    inode.writeUInt32LE(lo, 0x08); // atime
    inode.writeUInt32LE(lo, 0x10); // mtime
    const extra = g.inodeSize > 128 ? inode.readUInt16LE(0x80) : 0;
    const extraVal = ((nsec << 2) | epoch) >>> 0;
    if (128 + extra >= 0x8c) inode.writeUInt32LE(extraVal, 0x88); // mtime_extra
    if (128 + extra >= 0x90) inode.writeUInt32LE(extraVal, 0x8c); // atime_extra
    if (g.csum) {
      const hasHi = 128 + extra >= 0x84;
      inode.writeUInt16LE(0, 0x7c);
      if (hasHi) inode.writeUInt16LE(0, 0x82);
      le.writeUInt32LE(ino, 0);
      let c = crc32cRaw(g.seed, le);
      c = crc32cRaw(c, inode.subarray(0x64, 0x68)); // i_generation
      c = crc32cRaw(c, inode);
      inode.writeUInt16LE(c & 0xffff, 0x7c);
      if (hasHi) inode.writeUInt16LE(c >>> 16, 0x82);
    }
    v.writeSync(inode, pos);
  }
}
