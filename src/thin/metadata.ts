/**
 * Thin metadata (dm-thin-metadata.c): devices, their two-level mapping tree, the device-details tree and both
 * space maps, over one metadata block device, with the kernel's transaction and commit protocol. This file
 * formats and opens it and makes every change of a transaction; the device table, the reads and the commit are
 * MetadataDevices (metadata-devices.ts), the parts MetadataEngine (metadata-engine.ts). Layer: thin metadata.
 *
 * Contract:
 * - Every change happens in the current transaction; `commit()` makes it durable and atomic: dirty metadata
 *   blocks are written and flushed, then block 0 is written and flushed (spec 7.1). The caller must have
 *   flushed the data device first (data before mappings).
 * - `abort()` drops the transaction and reloads the last committed state.
 * - Each device's current level-1 root is kept in core; level 0 and the details tree are brought up to date at
 *   commit. Before a device's level-1 tree is first modified in a transaction its level-0 path is shadowed, so
 *   copies of shared level-0 leaves (a held metadata snapshot) take their references first (top-down, as the
 *   kernel does).
 * - Mapping values are (data block << 24) | time (spec 5.2); `shared` follows the time rule (5.4).
 * - Reads look up through a MappingCache (mapping-cache.ts): every change to a device's mappings or sharing
 *   gives it a fresh generation before the tree changes, and a reload (open, abort) gives every device one.
 */
import type { BlockDevice } from '../io/block-device.js';
import { ThinpoolError } from '../errors.js';
import { BlockKind } from '../pd/block-kinds.js';
import { MAX_METADATA_BLOCKS } from '../pd/space-map-metadata.js';
import { blockOf } from './block-time.js';
import type { DeviceDetails } from './device-details.js';
import { cacheBlocksFor, type EngineOptions, type MetadataOpenOptions } from './metadata-engine.js';
import { type DeviceState, MetadataDevices } from './metadata-devices.js';
import { decodeSuperblock, encodeSuperblock, NEEDS_CHECK, readSuperblock, type Superblock } from './superblock.js';

export type { Mapping } from './block-time.js';
export type { DeviceDetails } from './device-details.js';
export { DEFAULT_CACHE_BLOCKS, type MetadataInternals, type MetadataMode, type MetadataOpenOptions } from './metadata-engine.js';

export const MAX_DEVICE_ID = 0xffffff;
export const MAX_TIME = 0xffffff;

export interface FormatOptions extends MetadataOpenOptions {
  nrDataBlocks: number;
  dataBlockSectors: number;
}

export class ThinMetadata extends MetadataDevices {
  /** capacity: metadata blocks the count arrays are sized for (>= the space map's nr_blocks). */
  private constructor(dev: BlockDevice, capacity: number, opts: EngineOptions) {
    super(dev, capacity, opts);
  }

  /** Write a new, empty pool's metadata to dev (its size fixes the number of metadata blocks). */
  static format(dev: BlockDevice, opts: FormatOptions): ThinMetadata {
    const nrMeta = Math.min(Math.floor(dev.sizeBytes / 4096), MAX_METADATA_BLOCKS);
    if (nrMeta < 16) throw new ThinpoolError('EINVAL', `metadata device too small (${dev.sizeBytes} bytes; at least 64 KiB)`);
    // Invalidate any earlier pool first: a crash during format must not bring an old superblock back.
    dev.write(new Uint8Array(4096), 0);
    dev.flush();
    const md = new ThinMetadata(dev, nrMeta, { ...opts, cacheBlocks: cacheBlocksFor(opts.cacheBlocks, opts.nrDataBlocks) });
    md.msm.initEmpty();
    md.msm.inc(0);
    md.sb = {
      flags: 0,
      blocknr: 0,
      uuid: new Uint8Array(16),
      version: 2,
      time: 0,
      transactionId: 0,
      heldRoot: 0,
      dataSm: { nrBlocks: 0, nrAllocated: 0, bitmapRoot: 0, refCountRoot: 0 },
      metadataSm: { nrBlocks: nrMeta, nrAllocated: 0, bitmapRoot: 0, refCountRoot: 0 },
      dataMappingRoot: 0,
      deviceDetailsRoot: 0,
      dataBlockSectors: opts.dataBlockSectors,
      metadataBlockSectors: 8,
      metadataNrBlocks: nrMeta,
      compatFlags: 0,
      compatRoFlags: 0,
      incompatFlags: 0,
    };
    md.sb.deviceDetailsRoot = md.details.emptyRoot();
    md.sb.dataMappingRoot = md.l0.emptyRoot();
    md.dsm.format(opts.nrDataBlocks);
    md.sbDirty = true;
    md.commit();
    return md;
  }

  static open(dev: BlockDevice, opts: MetadataOpenOptions = {}): ThinMetadata {
    const raw = new Uint8Array(4096);
    dev.read(raw, 0);
    // The superblock is checked before its sizes are trusted to lay out the pool's own core.
    const sb = readSuperblock(raw);
    const nrMeta = sb.metadataSm.nrBlocks;
    if (nrMeta > MAX_METADATA_BLOCKS || nrMeta * 4096 > dev.sizeBytes) {
      throw ThinpoolError.metadata(
        'EBADSUPER',
        `metadata space map claims ${nrMeta} blocks but the device has ${Math.floor(dev.sizeBytes / 4096)}`,
        'superblock',
        0,
      );
    }
    const growTo = opts.growTo ?? nrMeta;
    if (growTo < nrMeta || growTo > MAX_METADATA_BLOCKS || growTo * 4096 > dev.sizeBytes) {
      throw new ThinpoolError(
        'EINVAL',
        `cannot grow the metadata space map from ${nrMeta} to ${growTo} blocks (device holds ${Math.floor(dev.sizeBytes / 4096)}, limit ${MAX_METADATA_BLOCKS})`,
      );
    }
    const md = new ThinMetadata(dev, growTo, { ...opts, cacheBlocks: cacheBlocksFor(opts.cacheBlocks, sb.dataSm.nrBlocks) });
    md.load(sb);
    if (sb.flags & NEEDS_CHECK) md.mode = 'read-only';
    if (growTo > nrMeta) {
      md.writable();
      md.msm.extend(growTo);
      md.sb.metadataNrBlocks = growTo;
      md.sbDirty = true;
    }
    return md;
  }

  // ---- changes ----
  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id > MAX_DEVICE_ID)
      throw new ThinpoolError('EINVAL', `thin device id ${id} out of range 0..${MAX_DEVICE_ID}`);
  }

  createThin(id: number): void {
    this.writable();
    this.checkId(id);
    if (this.devices.has(id)) throw new ThinpoolError('EEXIST', `thin device ${id} already exists`);
    const root = this.l1.emptyRoot();
    this.sb.dataMappingRoot = this.l0.insert(this.sb.dataMappingRoot, id, root).root;
    const t = this.sb.time;
    this.devices.set(id, {
      id,
      root,
      storedRoot: root,
      mappedBlocks: 0,
      transactionId: this.sb.transactionId,
      creationTime: t,
      snapshottedTime: t,
      detailsDirty: true,
      l0Shadowed: true,
      gen: this.mcache.fresh(),
    });
  }

  createSnapshot(id: number, originId: number): void {
    this.writable();
    this.checkId(id);
    if (this.devices.has(id)) throw new ThinpoolError('EEXIST', `thin device ${id} already exists`);
    const o = this.device(originId);
    if (this.sb.time >= MAX_TIME) throw new ThinpoolError('EINVAL', 'pool time exhausted (2^24 snapshots)');
    o.gen = this.mcache.fresh();
    this.tm.inc(o.root);
    this.sb.dataMappingRoot = this.l0.insert(this.sb.dataMappingRoot, id, o.root).root;
    const t = ++this.sb.time;
    this.sbDirty = true;
    o.snapshottedTime = t;
    o.detailsDirty = true;
    this.devices.set(id, {
      id,
      root: o.root,
      storedRoot: o.root,
      mappedBlocks: o.mappedBlocks,
      transactionId: this.sb.transactionId,
      creationTime: t,
      snapshottedTime: t,
      detailsDirty: true,
      l0Shadowed: true,
      gen: this.mcache.fresh(),
    });
  }

  /**
   * Rollback: device id takes a new reference to origin's mapping tree (constant time, like a snapshot) and
   * drops its own, so data blocks only id mapped lose their last reference (freed at the commit). The device
   * keeps its id and creation time; both devices get a new snapshotted time, so a later write to either side
   * copies the blocks they now share (the time rule, spec 5.4).
   */
  rollbackDevice(id: number, originId: number): void {
    this.writable();
    if (id === originId) throw new ThinpoolError('EINVAL', `thin device ${id} cannot be rolled back to itself`);
    const d = this.device(id);
    const o = this.device(originId);
    if (this.sb.time >= MAX_TIME) throw new ThinpoolError('EINVAL', 'pool time exhausted (2^24 snapshots)');
    d.gen = this.mcache.fresh();
    o.gen = this.mcache.fresh();
    this.tm.inc(o.root);
    this.sb.dataMappingRoot = this.l0.insert(this.sb.dataMappingRoot, id, o.root).root;
    const old = d.root;
    const t = ++this.sb.time;
    this.sbDirty = true;
    o.snapshottedTime = t;
    o.detailsDirty = true;
    d.root = o.root;
    d.storedRoot = o.root;
    d.l0Shadowed = true;
    d.mappedBlocks = o.mappedBlocks;
    d.snapshottedTime = t;
    d.detailsDirty = true;
    this.l1.del(old);
  }

  deleteDevice(id: number): void {
    this.writable();
    const d = this.device(id);
    this.sb.deviceDetailsRoot = this.details.remove(this.sb.deviceDetailsRoot, id).root;
    this.sb.dataMappingRoot = this.l0.remove(this.sb.dataMappingRoot, id).root;
    this.devices.delete(id);
    this.l1.del(d.root);
  }

  /** Shadow the level-0 path of d once per transaction, before its level-1 tree changes. */
  private prepareL1(d: DeviceState): void {
    if (d.l0Shadowed) return;
    this.sb.dataMappingRoot = this.l0.insert(this.sb.dataMappingRoot, d.id, d.storedRoot).root;
    d.l0Shadowed = true;
  }

  /** Map vblock to dblock (stamped with the current time); the previous data block, if any, loses a reference. */
  insertMapping(id: number, vblock: number, dblock: number): void {
    this.writable();
    const d = this.device(id);
    d.gen = this.mcache.fresh();
    this.prepareL1(d);
    const r = this.l1.insert(d.root, vblock, { dblock, time: this.sb.time });
    d.root = r.root;
    d.detailsDirty = true;
    if (r.old !== undefined) {
      if (r.old.dblock !== dblock) this.dsm.dec(r.old.dblock);
    } else {
      d.mappedBlocks++;
    }
  }

  /** Unmap vblock; returns the data block it was mapped to (now one reference fewer) or -1. */
  removeMapping(id: number, vblock: number): number {
    this.writable();
    const d = this.device(id);
    if (this.l1.lookupPart(d.root, vblock, blockOf, -1) < 0) return -1;
    d.gen = this.mcache.fresh();
    this.prepareL1(d);
    const r = this.l1.remove(d.root, vblock);
    d.root = r.root;
    if (r.old === undefined) return -1;
    const old = r.old.dblock;
    this.dsm.dec(old);
    d.mappedBlocks--;
    d.detailsDirty = true;
    return old;
  }

  /**
   * Restore-style insert (thin_restore): map vblock to dblock with an explicit time, adding one reference to
   * dblock (which need not be free). The device's mapped count follows.
   */
  insertMappingRaw(id: number, vblock: number, dblock: number, time: number): void {
    this.writable();
    const d = this.device(id);
    if (!(Number.isSafeInteger(vblock) && vblock >= 0)) throw new ThinpoolError('EINVAL', `virtual block ${vblock} out of range`);
    if (!(dblock >= 0 && dblock < this.dsm.nrBlocks)) {
      throw new ThinpoolError('EINVAL', `mapping beyond end of data device (${dblock} >= ${this.dsm.nrBlocks})`);
    }
    if (!Number.isInteger(dblock)) throw new ThinpoolError('EINVAL', `data block ${dblock} is not a whole number`);
    if (!(Number.isInteger(time) && time >= 0 && time <= MAX_TIME)) throw new ThinpoolError('EINVAL', `mapping time ${time} out of range`);
    d.gen = this.mcache.fresh();
    this.prepareL1(d);
    this.dsm.inc(dblock);
    const r = this.l1.insert(d.root, vblock, { dblock, time });
    d.root = r.root;
    d.detailsDirty = true;
    if (r.old !== undefined) this.dsm.dec(r.old.dblock);
    else d.mappedBlocks++;
  }

  /** Overwrite a device's details (restore). mappedBlocks is kept as counted. */
  setDeviceDetails(id: number, det: Omit<DeviceDetails, 'mappedBlocks'>): void {
    this.writable();
    const d = this.device(id);
    d.gen = this.mcache.fresh();
    d.transactionId = det.transactionId;
    d.creationTime = det.creationTime;
    d.snapshottedTime = det.snapshottedTime;
    d.detailsDirty = true;
    // Dirty on its own: the next commit writes the details (and so a new details root), even with nothing else.
    this.sbDirty = true;
  }

  /**
   * Set superblock fields directly (restore): a transaction id >= 0, time, flags and version u32 (as the format
   * stores them and thin_restore accepts; a time past MAX_TIME only refuses further snapshots).
   */
  setSuperblockFields(f: { time?: number; transactionId?: number; flags?: number; version?: number }): void {
    this.writable();
    const bad = (name: string, v: number | undefined, max: number): void => {
      if (v !== undefined && !(Number.isSafeInteger(v) && v >= 0 && v <= max)) {
        throw new ThinpoolError('EINVAL', `superblock ${name} ${v} out of range (0 to ${max})`);
      }
    };
    bad('time', f.time, 0xffffffff);
    bad('transaction id', f.transactionId, Number.MAX_SAFE_INTEGER);
    bad('flags', f.flags, 0xffffffff);
    bad('version', f.version, 0xffffffff);
    if (f.time !== undefined) this.sb.time = f.time;
    if (f.transactionId !== undefined) this.sb.transactionId = f.transactionId;
    if (f.flags !== undefined) this.sb.flags = f.flags;
    if (f.version !== undefined) this.sb.version = f.version;
    this.sbDirty = true;
  }

  setTransactionId(oldId: number, newId: number): void {
    this.writable();
    if (oldId !== this.sb.transactionId) {
      throw new ThinpoolError('EINVAL', `transaction id is ${this.sb.transactionId}, not ${oldId}`);
    }
    if (!Number.isSafeInteger(newId) || newId < 0) throw new ThinpoolError('EINVAL', `bad transaction id ${newId}`);
    this.sb.transactionId = newId;
    this.sbDirty = true;
  }

  /** Take the held metadata snapshot (spec 7.7): commits first; the caller commits after. */
  reserveMetadataSnap(): number {
    this.writable();
    if (this.sb.heldRoot !== 0) throw new ThinpoolError('EBUSY', `a metadata snapshot is already held (block ${this.sb.heldRoot})`);
    this.commit(); // the snapshot copies the committed superblock (a pool commits its catalog first: ThinPool)
    const s = this.tm.newBlock(BlockKind.Superblock);
    const copy: Superblock = {
      ...this.committedSb,
      blocknr: s.block,
      heldRoot: 0,
      dataSm: { nrBlocks: 0, nrAllocated: 0, bitmapRoot: 0, refCountRoot: 0 },
      metadataSm: { nrBlocks: 0, nrAllocated: 0, bitmapRoot: 0, refCountRoot: 0 },
    };
    encodeSuperblock(copy, this.core.u8.subarray(s.addr, s.addr + 4096));
    this.tm.inc(copy.dataMappingRoot);
    this.tm.inc(copy.deviceDetailsRoot);
    this.sb.heldRoot = s.block;
    this.sbDirty = true;
    return s.block;
  }

  releaseMetadataSnap(): void {
    this.writable();
    const h = this.sb.heldRoot;
    if (h === 0) throw new ThinpoolError('EINVAL', 'no metadata snapshot is held');
    const a = this.tm.read(h, BlockKind.Superblock);
    const held = decodeSuperblock(this.core.u8.slice(a, a + 4096), true, h);
    this.sb.heldRoot = 0;
    this.sbDirty = true;
    this.l0.del(held.dataMappingRoot);
    this.details.del(held.deviceDetailsRoot);
    this.tm.dec(h);
  }
}
