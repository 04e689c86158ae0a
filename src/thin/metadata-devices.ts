/**
 * The in-core device table of thin metadata (dm-thin-metadata.c's `struct dm_thin_device` list): each device's
 * details and current level-1 root, loaded from the committed level-0 and details trees, read through (lookups,
 * walks, the mapping cache), and written back into those trees by the commit. Layer: thin metadata, between
 * MetadataEngine (metadata-engine.ts, the parts) and ThinMetadata (metadata.ts, the changes).
 *
 * Contract:
 * - Loading (open, abort) checks that the two trees name the same devices (else ECORRUPT) and gives every
 *   device a fresh generation in the mapping cache (mapping-cache.ts), so no read sees an older state's entries.
 * - A device's level-1 root and details may be ahead of level 0 and the details tree until `commit()`, which
 *   writes them (devices by increasing id), both space maps and every dirty block, flushes, then writes and
 *   flushes block 0 (spec 7.1). The caller must have flushed the data device first (data before mappings).
 * - `abort()` drops the transaction and reloads the last committed state; if that reload fails the metadata is
 *   marked failed (mode 'fail') and every later commit refuses with EFAILED.
 * - Reads never change state: `lookup` applies the kernel's time rule for `shared` (spec 5.4); `lookupData` goes
 *   through the mapping cache, keyed by the device's generation.
 */
import type { BlockDevice } from '../io/block-device.js';
import { ThinpoolError } from '../errors.js';
import { blockOf, type Mapping } from './block-time.js';
import type { DeviceDetails } from './device-details.js';
import { DEFAULT_MAPPING_CACHE_ENTRIES, MappingCache } from './mapping-cache.js';
import { type EngineOptions, MetadataEngine } from './metadata-engine.js';
import { sealSuperblockAt, type Superblock } from './superblock.js';

export interface DeviceState extends DeviceDetails {
  id: number;
  /** Current level-1 root (may be ahead of level 0 until commit). */
  root: number;
  /** Level-1 root as stored in level 0 (undefined: not inserted yet). */
  storedRoot: number;
  detailsDirty: boolean;
  l0Shadowed: boolean;
  /** The device's generation in the mapping cache (fresh on every change to its mappings or sharing). */
  gen: number;
}

export abstract class MetadataDevices extends MetadataEngine {
  protected readonly devices = new Map<number, DeviceState>();
  protected readonly mcache: MappingCache;
  private readonly walkL1 = (root: number, vblock: number): number => this.l1.lookupPart(root, vblock, blockOf, -1);

  /** capacity: metadata blocks the count arrays are sized for (>= the space map's nr_blocks). */
  protected constructor(dev: BlockDevice, capacity: number, opts: EngineOptions) {
    super(dev, capacity, opts);
    this.mcache = new MappingCache(opts.mappingCacheEntries ?? DEFAULT_MAPPING_CACHE_ENTRIES);
  }

  /** (Re)load the committed state described by sb. */
  protected load(sb: Superblock): void {
    this.core.x.txReset();
    this.cache.drop();
    this.sb = { ...sb, dataSm: { ...sb.dataSm }, metadataSm: { ...sb.metadataSm } };
    this.committedSb = sb;
    this.msm.load(sb.metadataSm, this.cache, this.refCodec);
    this.msm.afterCommit();
    this.dsm.load(sb.dataSm);
    this.devices.clear();
    const detail = new Map<number, DeviceDetails>(this.details.entries(sb.deviceDetailsRoot));
    for (const [id, root] of this.l0.entries(sb.dataMappingRoot)) {
      const d = detail.get(id);
      if (!d)
        throw ThinpoolError.metadata(
          'ECORRUPT',
          `thin device ${id} has mappings but no details`,
          'device details tree',
          sb.deviceDetailsRoot,
        );
      this.devices.set(id, { id, root, storedRoot: root, detailsDirty: false, l0Shadowed: false, gen: this.mcache.fresh(), ...d });
    }
    for (const id of detail.keys()) {
      if (!this.devices.has(id))
        throw ThinpoolError.metadata(
          'ECORRUPT',
          `thin device ${id} has details but no mapping tree`,
          'mapping tree (level 0)',
          sb.dataMappingRoot,
        );
    }
    this.sbDirty = false;
  }

  // ---- queries ----
  get superblock(): Readonly<Superblock> {
    return this.sb;
  }

  get dataBlockSectors(): number {
    return this.sb.dataBlockSectors;
  }

  get transactionId(): number {
    return this.sb.transactionId;
  }

  get time(): number {
    return this.sb.time;
  }

  get heldRoot(): number {
    return this.sb.heldRoot;
  }

  deviceIds(): number[] {
    return [...this.devices.keys()].sort((a, b) => a - b);
  }

  hasDevice(id: number): boolean {
    return this.devices.has(id);
  }

  /** The live (in-core) details of device id and the root of its level-1 tree. */
  deviceDetails(id: number): DeviceDetails & { root: number } {
    const d = this.device(id);
    return {
      mappedBlocks: d.mappedBlocks,
      transactionId: d.transactionId,
      creationTime: d.creationTime,
      snapshottedTime: d.snapshottedTime,
      root: d.root,
    };
  }

  protected device(id: number): DeviceState {
    const d = this.devices.get(id);
    if (!d) throw new ThinpoolError('ENOENT', `no thin device ${id}`);
    return d;
  }

  /** Mapping of vblock in device id, or null. `shared` is the kernel's time rule. */
  lookup(id: number, vblock: number): (Mapping & { shared: boolean }) | null {
    const d = this.device(id);
    const m = this.l1.lookup(d.root, vblock);
    if (m === undefined) return null;
    return { dblock: m.dblock, time: m.time, shared: m.time < d.snapshottedTime };
  }

  /**
   * Fast path for data reads: the data block of vblock in the level-1 tree at root, or -1. Resolving the
   * device once (rootOf) and calling this per block avoids the Map lookup.
   */
  lookupDblock(root: number, vblock: number): number {
    return this.l1.lookupPart(root, vblock, blockOf, -1);
  }

  /** The data block of vblock in device id, or -1, for reads: through the mapping cache. */
  lookupData(id: number, vblock: number): number {
    const d = this.device(id);
    return this.mcache.get(d.gen, vblock, d.root, this.walkL1);
  }

  /** Entries of the read lookup cache (0: off). */
  get mappingCacheEntries(): number {
    return this.mcache.entries;
  }

  rootOf(id: number): number {
    return this.device(id).root;
  }

  /** Visit mappings of a device in vblock order. */
  forEachMapping(id: number, fn: (vblock: number, dblock: number, time: number) => void): void {
    const d = this.device(id);
    this.l1.walk(d.root, (k, m) => fn(k, m.dblock, m.time));
  }

  /** The device's highest mapped virtual block, or -1 when it maps none (reads one path of its tree). */
  lastMapped(id: number): number {
    return this.l1.lastKey(this.device(id).root);
  }

  /** Visit the mappings of a device with vbegin <= vblock < vend, in vblock order. */
  forEachMappingIn(id: number, vbegin: number, vend: number, fn: (vblock: number, dblock: number, time: number) => void): void {
    const d = this.device(id);
    this.l1.walkRange(d.root, vbegin, vend, (k, m) => fn(k, m.dblock, m.time));
  }

  /** Anything to commit? */
  get dirty(): boolean {
    return this.sbDirty || !this.msm.clean || this.dsm.changed;
  }

  /**
   * Make the current transaction durable (spec 7.1 steps b-f). The data device must already be flushed.
   * `beforeSuperblock` runs after every other block is written and flushed, with the new superblock's bytes,
   * just before they are written (the catalog is staged there).
   */
  commit(beforeSuperblock?: (superblock: Uint8Array) => void): void {
    if (this.mode === 'fail') throw new ThinpoolError('EFAILED', 'pool has failed; reopen it');
    if (!this.dirty) return;
    if (this.mode !== 'write') throw new ThinpoolError('EROFS', 'pool metadata is read-only');
    const { core } = this;
    // Writing the device table is part of the commit: like the space maps it may use the metadata reserve.
    this.usingMetadataReserve(() => {
      for (const d of [...this.devices.values()].sort((a, b) => a.id - b.id)) {
        if (d.detailsDirty) {
          this.sb.deviceDetailsRoot = this.details.insert(this.sb.deviceDetailsRoot, d.id, d).root;
        }
        if (d.root !== d.storedRoot) {
          this.sb.dataMappingRoot = this.l0.insert(this.sb.dataMappingRoot, d.id, d.root).root;
        }
      }
    });
    this.sb.dataSm = this.dsm.prepareCommit();
    this.sb.metadataSm = this.msm.prepareCommit(this.cache, this.refCodec);
    this.cache.writeDirty();
    this.dev.flush();
    const b = sealSuperblockAt(core, core.scratch, this.sb);
    beforeSuperblock?.(b);
    this.dev.write(b, 0);
    this.dev.flush();
    this.committedSb = { ...this.sb, dataSm: { ...this.sb.dataSm }, metadataSm: { ...this.sb.metadataSm } };
    this.msm.afterCommit();
    this.dsm.afterCommit();
    for (const d of this.devices.values()) {
      d.storedRoot = d.root;
      d.detailsDirty = false;
      d.l0Shadowed = false;
    }
    this.sbDirty = false;
  }

  /** Drop the transaction and return to the last committed state. */
  abort(): void {
    try {
      this.load(this.committedSb);
    } catch (e) {
      this.mode = 'fail';
      throw e;
    }
  }
}
