/**
 * The state one open pool shares between the files that implement it (lifecycle.ts, commit.ts, space.ts,
 * extend.ts, data-path.ts, volumes.ts; pool.ts holds the public class).
 *
 * Contract:
 * - One PoolState per open pool; it is not exported from the package. Every part reads `md` afresh on each
 *   use: growing the metadata device replaces the ThinMetadata instance (extend.ts).
 * - `catalogDirty` says the catalog must be staged and published with the next commit; `dataDirty` says data
 *   was written since the last commit, so the next commit must flush the data device first; `pending` holds
 *   the copy-on-write copies the data path deferred, which the commit settles before that flush.
 * - `recordOf` and `spaceSettings` are on the data path: both are cached and rebuilt only when the catalog
 *   value they were built from changes (a new volumes array or length; a new settings object).
 */
import type { EventEmitter } from 'node:events';
import { ThinpoolError } from '../errors.js';
import { copyInside, type BlockDevice } from '../io/block-device.js';
import type { CatalogData, CatalogStore, VolumeRecord } from './catalog.js';
import { HighWater, type HighWaterStore } from './high-water.js';
import type { ThinMetadata } from './metadata.js';
import { PendingCopies } from './pending-copies.js';
import { mergeSpaceSettings, ThresholdTracker, type SpaceSettings, type ThresholdEvent } from './space-policy.js';
import { EventGate } from './event-gate.js';

export interface PoolStorage {
  metadata: BlockDevice;
  data: BlockDevice;
  catalog: CatalogStore;
  /** Called by close() after the devices are closed. */
  release?(): void;
  /** Directory of a file pool. */
  dir?: string;
  /** Durable data high-water mark (see high-water.ts); absent: every new block is zeroed. */
  highWater?: HighWaterStore;
  /**
   * The last writer stopped without closing the pool (killed, power loss): blocks it wrote but never committed
   * may still hold host space. A writable open releases them (space.ts releaseUncommitted).
   */
  uncleanStop?: boolean;
  /** A pool in Ceph RADOS (rados-pool.ts): its address and I/O context. */
  rados?: { address: string; io: unknown };
}

export interface PoolEvents {
  /** Use of data or metadata crossed a low-water threshold (percent). */
  threshold: [ThresholdEvent];
  /** The pool grew (auto-extend or extend()). */
  extended: [{ resource: 'data' | 'metadata'; fromBlocks: number; toBlocks: number; auto: boolean }];
  /** Something worth telling a user that is not an error (e.g. space cannot be returned to the host). */
  warning: [{ code: string; message: string }];
}

/** Metadata blocks a single operation may need at most (shadowed paths of a few trees plus splits). */
export const OP_METADATA_MARGIN = 64;

export class PoolState {
  readonly storage: PoolStorage;
  /**
   * The pool's events (emitted on the pool object) go only through the gate: delivered when the operation that
   * raised them ends (event-gate.ts).
   */
  readonly gate: EventGate<PoolEvents>;
  md: ThinMetadata;
  readonly blockSize: number;
  catalog: CatalogData;
  catalogDirty = false;
  dataDirty = false;
  closed = false;
  readonly highWater: HighWater;
  readonly thresholds = new ThresholdTracker();
  /** Copy-on-write copies still owed in this transaction (pending-copies.ts): settled by commit, cleared by abort. */
  readonly pending: PendingCopies;
  warnedNoPunch = false;
  private settings: SpaceSettings | null = null;
  /** The catalog value `settings` was merged from (the data path reads the policy on every allocation). */
  private settingsOf: unknown = null;
  private recIndex: Map<number, VolumeRecord> | null = null;
  private recIndexOf: VolumeRecord[] | null = null;
  private recIndexLen = 0;

  constructor(storage: PoolStorage, md: ThinMetadata, catalog: CatalogData, events: EventEmitter<PoolEvents>) {
    this.storage = storage;
    this.md = md;
    this.blockSize = md.dataBlockSectors * 512;
    this.catalog = catalog;
    this.gate = new EventGate(events);
    this.highWater = new HighWater(storage.highWater);
    this.pending = new PendingCopies(this.blockSize, {
      copy: (src, dst, length) => {
        this.dataDirty = true;
        copyInside(storage.data, src, dst, length);
      },
      write: (buf, offset) => {
        this.dataDirty = true;
        storage.data.write(buf, offset);
      },
    });
  }

  alive(): void {
    if (this.closed) throw new ThinpoolError('ECLOSED', 'pool is closed');
  }

  /** The space policy: the catalog's settings merged over the defaults (merged once per catalog change). */
  get spaceSettings(): SpaceSettings {
    if (this.settingsOf !== this.catalog.settings.space) {
      this.settings = mergeSpaceSettings(this.catalog.settings.space);
      this.settingsOf = this.catalog.settings.space;
    }
    return this.settings!;
  }

  /** The catalog record of a device (indexed: this is on the data path through Volume.sizeBytes). */
  recordOf(id: number): VolumeRecord | undefined {
    if (this.recIndex === null || this.recIndexOf !== this.catalog.volumes || this.recIndexLen !== this.catalog.volumes.length) {
      this.recIndex = new Map(this.catalog.volumes.map((v) => [v.id, v]));
      this.recIndexOf = this.catalog.volumes;
      this.recIndexLen = this.catalog.volumes.length;
    }
    return this.recIndex.get(id);
  }

  /** Virtual size: from the catalog, or for devices made by other tools, up to the last mapped block. */
  sizeOf(id: number): number {
    const rec = this.recordOf(id);
    if (rec) return rec.sizeBytes;
    if (!this.md.hasDevice(id)) throw new ThinpoolError('ENOENT', `no volume with device id ${id}`);
    return (this.md.lastMapped(id) + 1) * this.blockSize;
  }
}
