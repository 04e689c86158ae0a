/**
 * The dm-thin superblock (spec 2): codec between block 0's bytes and a plain object. Validation on read:
 * checksum (salt 160774), magic, self block number 0, no incompatible features; `version` is not checked.
 * `readSuperblock` checks the checksum of raw bytes itself; `sealSuperblockAt` encodes into a block of the
 * core's memory and stores its checksum, ready to write.
 */
import { Salt } from '../core/abi.js';
import { TWO32 } from '../core/u64.js';
import { Core } from '../core/wasm.js';
import { ThinpoolError } from '../errors.js';
import type { SpaceMapRoot } from '../pd/space-map-metadata.js';

export const SUPERBLOCK_MAGIC = 27022010;
export const SUPERBLOCK_SALT = Salt.Superblock;
export const NEEDS_CHECK = 1;

export interface Superblock {
  flags: number;
  blocknr: number;
  uuid: Uint8Array;
  version: number;
  time: number;
  transactionId: number;
  heldRoot: number;
  dataSm: SpaceMapRoot;
  metadataSm: SpaceMapRoot;
  dataMappingRoot: number;
  deviceDetailsRoot: number;
  /** In 512-byte sectors. */
  dataBlockSectors: number;
  metadataBlockSectors: number;
  metadataNrBlocks: number;
  compatFlags: number;
  compatRoFlags: number;
  incompatFlags: number;
}

function u64(dv: DataView, o: number): number {
  return dv.getUint32(o, true) + dv.getUint32(o + 4, true) * TWO32;
}

function setU64(dv: DataView, o: number, v: number): void {
  dv.setUint32(o, v >>> 0, true);
  dv.setUint32(o + 4, Math.floor(v / TWO32), true);
}

function readSm(dv: DataView, o: number): SpaceMapRoot {
  return { nrBlocks: u64(dv, o), nrAllocated: u64(dv, o + 8), bitmapRoot: u64(dv, o + 16), refCountRoot: u64(dv, o + 24) };
}

function writeSm(dv: DataView, o: number, r: SpaceMapRoot): void {
  setU64(dv, o, r.nrBlocks);
  setU64(dv, o + 8, r.nrAllocated);
  setU64(dv, o + 16, r.bitmapRoot);
  setU64(dv, o + 24, r.refCountRoot);
}

/** Decode block bytes; `checksumOk` says whether the stored checksum matched (computed by the caller in WASM). */
export function decodeSuperblock(b: Uint8Array, checksumOk: boolean, where = 0): Superblock {
  const structure = where === 0 ? 'superblock' : 'metadata snapshot superblock';
  if (!checksumOk) {
    if (b.every((x) => x === 0))
      throw ThinpoolError.metadata('EBADSUPER', 'no superblock (all zeros: not a dm-thin metadata device)', structure, where);
    throw ThinpoolError.metadata('EBADCSUM', 'bad checksum', structure, where);
  }
  const dv = new DataView(b.buffer, b.byteOffset, 4096);
  const sb: Superblock = {
    flags: dv.getUint32(4, true),
    blocknr: u64(dv, 8),
    uuid: b.slice(16, 32),
    version: dv.getUint32(40, true),
    time: dv.getUint32(44, true),
    transactionId: u64(dv, 48),
    heldRoot: u64(dv, 56),
    dataSm: readSm(dv, 64),
    metadataSm: readSm(dv, 192),
    dataMappingRoot: u64(dv, 320),
    deviceDetailsRoot: u64(dv, 328),
    dataBlockSectors: dv.getUint32(336, true),
    metadataBlockSectors: dv.getUint32(340, true),
    metadataNrBlocks: u64(dv, 344),
    compatFlags: dv.getUint32(352, true),
    compatRoFlags: dv.getUint32(356, true),
    incompatFlags: dv.getUint32(360, true),
  };
  if (u64(dv, 32) !== SUPERBLOCK_MAGIC) throw ThinpoolError.metadata('EBADSUPER', 'bad magic', structure, where);
  if (sb.blocknr !== where) throw ThinpoolError.metadata('EBADBLOCKNR', 'bad block nr', structure, where);
  if (sb.incompatFlags !== 0)
    throw ThinpoolError.metadata('EBADSUPER', `unsupported incompat features 0x${sb.incompatFlags.toString(16)}`, structure, where);
  if (where === 0 && !(sb.dataBlockSectors >= 128 && sb.dataBlockSectors <= 2097152 && sb.dataBlockSectors % 128 === 0)) {
    throw ThinpoolError.metadata(
      'EBADSUPER',
      `bad data block size ${sb.dataBlockSectors} sectors (128..2097152, a multiple of 128)`,
      structure,
      where,
    );
  }
  if (sb.metadataBlockSectors !== 8)
    throw ThinpoolError.metadata('EBADSUPER', `metadata block size ${sb.metadataBlockSectors} sectors (must be 8)`, structure, where);
  return sb;
}

/** Encode into b (4096 bytes, zeroed first); the caller stores the checksum. */
export function encodeSuperblock(sb: Superblock, b: Uint8Array): void {
  b.fill(0);
  const dv = new DataView(b.buffer, b.byteOffset, 4096);
  dv.setUint32(4, sb.flags, true);
  setU64(dv, 8, sb.blocknr);
  b.set(sb.uuid.subarray(0, 16), 16);
  setU64(dv, 32, SUPERBLOCK_MAGIC);
  dv.setUint32(40, sb.version, true);
  dv.setUint32(44, sb.time, true);
  setU64(dv, 48, sb.transactionId);
  setU64(dv, 56, sb.heldRoot);
  writeSm(dv, 64, sb.dataSm);
  writeSm(dv, 192, sb.metadataSm);
  setU64(dv, 320, sb.dataMappingRoot);
  setU64(dv, 328, sb.deviceDetailsRoot);
  dv.setUint32(336, sb.dataBlockSectors, true);
  dv.setUint32(340, sb.metadataBlockSectors, true);
  setU64(dv, 344, sb.metadataNrBlocks);
  dv.setUint32(352, sb.compatFlags, true);
  dv.setUint32(356, sb.compatRoFlags, true);
  dv.setUint32(360, sb.incompatFlags, true);
}

/** A one-slot core that computes superblock checksums of raw bytes (made once per process). */
let probe: Core | undefined;

/** Check the checksum of raw block bytes (4096) and decode them (a superblock at block `where`). */
export function readSuperblock(raw: Uint8Array, where = 0): Superblock {
  const core = (probe ??= new Core(1, 0));
  core.u8.set(raw.subarray(0, 4096), core.scratch);
  const stored = new DataView(raw.buffer, raw.byteOffset, 4096).getUint32(0, true);
  return decodeSuperblock(raw, core.x.blockChecksum(core.scratch, SUPERBLOCK_SALT) >>> 0 === stored, where);
}

/** Encode sb into the 4 KiB block at byte address a of core's memory and store its checksum; its bytes. */
export function sealSuperblockAt(core: Core, a: number, sb: Superblock): Uint8Array {
  const b = core.u8.subarray(a, a + 4096);
  encodeSuperblock(sb, b);
  core.x.blockPrepare(a, SUPERBLOCK_SALT);
  return b;
}
