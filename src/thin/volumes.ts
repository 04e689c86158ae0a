/**
 * Volume management of an open pool: create, snapshot, delete, resize, rename and relabel thin devices, keep
 * their catalog records (names, sizes, owners, labels), list them with their usage.
 *
 * Contract:
 * - A volume is named by its name, its device id (number), or "#id" / a decimal string that names no volume.
 * - Names follow names.ts and are unique in the pool; sizes are positive multiples of 512 bytes.
 * - Each change runs as one metadata change (commit.ts) and marks the catalog dirty: it is durable with the next
 *   commit. Checks that can fail (name, size, owner, read-only) run before anything changes.
 * - A volume labelled OWNER_LABEL (e.g. an image layer) is deleted, resized, renamed, relabelled or made
 *   writable only by a caller naming that owner (EBUSY otherwise).
 * - Shrinking only unmaps blocks past the new end (a freeing change); growing over a partial last block zeroes
 *   the bytes past the old end first. Deleting a volume makes its snapshots stand alone (origin dropped).
 * - Rollback swaps a volume's mapping tree for a new reference to one of its snapshots' (constant time); it is
 *   refused for read-only and owned volumes and for volumes claimed in use in this process (claim()).
 */
import { ThinpoolError } from '../errors.js';
import { change, commit } from './commit.js';
import type { DataPath } from './data-path.js';
import { MAX_DEVICE_ID } from './metadata.js';
import { VOLUME_NAME_RULE, volumeNameProblem } from './names.js';
import { OP_METADATA_MARGIN, type PoolState } from './pool-state.js';
import { deviceUsage } from './usage.js';
import { Volume, type VolumeIO, type VolumePool } from './volume.js';

/** The label that marks a volume as owned by a layer above the pool (see checkOwner). */
export const OWNER_LABEL = 'thinpool.owner';

/**
 * The owner of a volume being received (src/stream/receive.ts): such a volume is incomplete until its owner
 * label is removed in the commit that ends the receive; one found on a writable open is dropped.
 */
export const RECEIVING_OWNER = 'receive';

export interface OwnerOptions {
  /** The owner a caller acts for (matches the volume's `thinpool.owner` label). */
  owner?: string;
}

export interface CreateOptions {
  size: number;
  labels?: Record<string, string>;
  readOnly?: boolean;
}

export interface SnapshotOptions {
  labels?: Record<string, string>;
  readOnly?: boolean;
}

export interface VolumeInfo {
  id: number;
  name?: string;
  sizeBytes: number;
  origin?: number;
  originName?: string;
  createdAt?: string;
  creationTime: number;
  snapshottedTime: number;
  mappedBytes: number;
  exclusiveBytes: number;
  sharedBytes: number;
  readOnly: boolean;
  labels: Record<string, string>;
}

export class Volumes {
  private readonly s: PoolState;
  private readonly data: DataPath;
  private readonly pool: VolumePool;
  private readonly io: VolumeIO;
  /** Volumes in use in this process (see claim): device id -> holders. */
  private readonly users = new Map<number, Map<symbol, string>>();

  /** Volumes made here belong to pool and do their I/O through io. */
  constructor(s: PoolState, data: DataPath, pool: VolumePool, io: VolumeIO) {
    this.s = s;
    this.data = data;
    this.pool = pool;
    this.io = io;
  }

  /** Resolve a volume by name, by id (number), or by "#id" / a decimal string naming no volume. */
  idOf(ref: string | number): number {
    const s = this.s;
    s.alive();
    if (typeof ref === 'number') {
      if (!s.md.hasDevice(ref)) throw new ThinpoolError('ENOENT', `no volume with device id ${ref}`);
      return ref;
    }
    const rec = s.catalog.volumes.find((v) => v.name === ref);
    if (rec) return rec.id;
    const m = /^#?(\d+)$/.exec(ref);
    if (m && s.md.hasDevice(Number(m[1]))) return Number(m[1]);
    throw new ThinpoolError('ENOENT', `no volume named "${ref}"`);
  }

  volume(id: number): Volume {
    return new Volume(this.pool, this.io, id);
  }

  private checkName(name: string): void {
    const problem = volumeNameProblem(name);
    if (problem !== null) throw new ThinpoolError('EINVAL', `bad volume name ${JSON.stringify(name)}: ${problem} (${VOLUME_NAME_RULE})`);
    if (this.s.catalog.volumes.some((v) => v.name === name)) throw new ThinpoolError('EEXIST', `a volume named "${name}" already exists`);
  }

  private checkSize(size: number): void {
    if (!Number.isSafeInteger(size) || size <= 0 || size % 512 !== 0) {
      throw new ThinpoolError('EINVAL', `volume size ${size} must be a positive multiple of 512 bytes`);
    }
  }

  private nextId(): number {
    const ids = this.s.md.deviceIds();
    const used = new Set(ids);
    let id = ids.length === 0 ? 1 : ids[ids.length - 1] + 1;
    if (id <= MAX_DEVICE_ID) return id;
    for (id = 1; id <= MAX_DEVICE_ID; id++) if (!used.has(id)) return id;
    throw new ThinpoolError('ENOSPC_METADATA', 'no free thin device id');
  }

  /**
   * A volume labelled `thinpool.owner` (e.g. an image layer, owned by the images layer) is deleted, resized or
   * unsealed only by a caller naming that owner: plain pool users cannot pull layers from under an image.
   */
  private checkOwner(id: number, opts: OwnerOptions, what: string): void {
    const owner = this.s.recordOf(id)?.labels[OWNER_LABEL];
    if (owner !== undefined && owner !== opts.owner) {
      throw new ThinpoolError(
        'EBUSY',
        `volume ${this.s.recordOf(id)!.name} belongs to ${owner}: it cannot be ${what} directly (use the ${owner} commands, e.g. "thinpool image rm" or "thinpool container rm")`,
      );
    }
  }

  create(name: string, opts: CreateOptions): Volume {
    const s = this.s;
    s.alive();
    this.checkName(name);
    this.checkSize(opts.size);
    return change(s, () => {
      const id = this.nextId();
      s.md.createThin(id);
      s.catalog.volumes.push({
        id,
        name,
        sizeBytes: opts.size,
        createdAt: new Date().toISOString(),
        labels: { ...(opts.labels ?? {}) },
        ...(opts.readOnly ? { readOnly: true } : {}),
      });
      s.catalogDirty = true;
      return this.volume(id);
    });
  }

  /** A snapshot of origin (itself possibly a snapshot): constant time, it shares the origin's whole tree. */
  snapshot(origin: string | number, name: string, opts: SnapshotOptions): Volume {
    const s = this.s;
    const oid = this.idOf(origin);
    this.checkName(name);
    return change(s, () => {
      const id = this.nextId();
      s.md.createSnapshot(id, oid);
      s.catalog.volumes.push({
        id,
        name,
        sizeBytes: s.sizeOf(oid),
        origin: oid,
        createdAt: new Date().toISOString(),
        labels: { ...(opts.labels ?? {}) },
        ...(opts.readOnly ? { readOnly: true } : {}),
      });
      s.catalogDirty = true;
      return this.volume(id);
    });
  }

  delete(ref: string | number, opts: OwnerOptions): void {
    const s = this.s;
    const id = this.idOf(ref);
    this.checkOwner(id, opts, 'deleted');
    change(
      s,
      () => {
        s.md.deleteDevice(id);
        s.catalog.volumes = s.catalog.volumes.filter((v) => v.id !== id);
        for (const v of s.catalog.volumes) if (v.origin === id) delete v.origin;
        s.catalogDirty = true;
      },
      true,
    );
  }

  /** Grow or shrink the virtual size; shrinking unmaps the blocks past the new end and zeroes a partial tail. */
  resize(ref: string | number, size: number, opts: OwnerOptions): void {
    const s = this.s;
    const id = this.idOf(ref);
    this.checkOwner(id, opts, 'resized');
    this.checkSize(size);
    if (s.recordOf(id)?.readOnly) throw new ThinpoolError('EROFS', `volume ${s.recordOf(id)!.name} is read-only: it cannot be resized`);
    change(s, () => {
      const bs = s.blockSize;
      const old = s.sizeOf(id);
      // Shrinking only unmaps (no allocation, so nothing can commit half-way); bytes past the end of a partial
      // last block are invisible until the volume grows again, and growing zeroes them first.
      if (size < old) {
        const firstGone = Math.ceil(size / bs);
        const doomed: number[] = [];
        s.md.forEachMappingIn(id, firstGone, Number.MAX_SAFE_INTEGER, (v) => {
          doomed.push(v);
        });
        for (const v of doomed) s.md.removeMapping(id, v);
      } else if (size > old && old % bs !== 0) {
        this.data.zeroRange(id, old, Math.min(size, Math.ceil(old / bs) * bs) - old);
      }
      const rec = s.recordOf(id);
      if (rec) rec.sizeBytes = size;
      else s.catalog.volumes.push({ id, name: `thin${id}`, sizeBytes: size, createdAt: new Date().toISOString(), labels: {} });
      s.catalogDirty = true;
    });
  }

  /** Rename a volume or change its labels / read-only flag (committed with the next commit). */
  update(ref: string | number, patch: { name?: string; labels?: Record<string, string>; readOnly?: boolean }, opts: OwnerOptions): void {
    const s = this.s;
    const id = this.idOf(ref);
    if (
      patch.readOnly === false ||
      patch.name !== undefined ||
      (patch.labels !== undefined && patch.labels[OWNER_LABEL] !== s.recordOf(id)?.labels[OWNER_LABEL])
    ) {
      this.checkOwner(id, opts, 'renamed, relabelled or made writable');
    }
    let rec = s.recordOf(id);
    if (patch.name !== undefined && patch.name !== rec?.name) this.checkName(patch.name);
    if (!rec) {
      rec = { id, name: patch.name ?? `thin${id}`, sizeBytes: s.sizeOf(id), createdAt: new Date().toISOString(), labels: {} };
      s.catalog.volumes.push(rec);
    }
    if (patch.name !== undefined) rec.name = patch.name;
    if (patch.labels !== undefined) rec.labels = { ...patch.labels };
    if (patch.readOnly !== undefined) {
      if (patch.readOnly) rec.readOnly = true;
      else delete rec.readOnly;
    }
    s.catalogDirty = true;
  }

  /** Delete the volumes a crash left half-received (owner RECEIVING_OWNER); returns their names. */
  dropIncomplete(): string[] {
    const s = this.s;
    const doomed = s.catalog.volumes.filter((v) => v.labels[OWNER_LABEL] === RECEIVING_OWNER && s.md.hasDevice(v.id));
    for (const v of doomed) this.delete(v.id, { owner: RECEIVING_OWNER });
    return doomed.map((v) => v.name);
  }

  /** Is `snap` a snapshot of `of`, directly or through snapshots of snapshots (the catalog's origins)? */
  isSnapshotOf(snap: number, of: number): boolean {
    const seen = new Set<number>();
    for (let cur = this.s.recordOf(snap)?.origin; cur !== undefined && !seen.has(cur); cur = this.s.recordOf(cur)?.origin) {
      if (cur === of) return true;
      seen.add(cur);
    }
    return false;
  }

  /**
   * Mark a volume in use by `who` in this process (an NBD export, ...); returns the release function. A volume
   * in use is not rolled back.
   */
  claim(id: number, who: string): () => void {
    const key = Symbol(who);
    let m = this.users.get(id);
    if (!m) this.users.set(id, (m = new Map()));
    m.set(key, who);
    return () => {
      const cur = this.users.get(id);
      cur?.delete(key);
      if (cur?.size === 0) this.users.delete(id);
    };
  }

  usersOf(id: number): string[] {
    return [...(this.users.get(id)?.values() ?? [])];
  }

  /**
   * Rollback: VOLUME's content becomes SNAPSHOT's in constant time (metadata.rollbackDevice). VOLUME keeps its
   * name, id, size, labels and origin. When VOLUME is larger and SNAPSHOT ends inside a mapped block, that
   * block is copied with its tail zeroed, before anything changes (nothing allocates, so nothing commits, once
   * the change has started). Refusals come first: see ThinPool.rollbackSync.
   */
  rollback(ref: string | number, snapshot: string | number, opts: OwnerOptions): void {
    const s = this.s;
    const id = this.idOf(ref);
    const sid = this.idOf(snapshot);
    const vname = s.recordOf(id)?.name ?? `#${id}`;
    const sname = s.recordOf(sid)?.name ?? `#${sid}`;
    if (id === sid) throw new ThinpoolError('EINVAL', `volume ${vname} cannot be rolled back to itself`);
    this.checkOwner(id, opts, 'rolled back');
    if (s.recordOf(id)?.readOnly)
      throw new ThinpoolError(
        'EROFS',
        `volume ${vname} is read-only: it cannot be rolled back (make it writable first: "thinpool set POOL ${vname} --writable")`,
      );
    const users = this.usersOf(id);
    if (users.length > 0)
      throw new ThinpoolError('EBUSY', `volume ${vname} is in use by ${users.join(', ')}: stop that first, then roll back`);
    if (!this.isSnapshotOf(sid, id))
      throw new ThinpoolError(
        'EINVAL',
        `${sname} is not a snapshot of ${vname}: a volume rolls back only to its own snapshots (see "thinpool ls POOL --tree")`,
      );
    const bs = s.blockSize;
    const volSize = s.sizeOf(id);
    const snapSize = s.sizeOf(sid);
    const tailBlock = Math.floor(snapSize / bs);
    const tail = volSize > snapSize && snapSize % bs !== 0 ? s.md.lookup(sid, tailBlock) : null;
    // Room for the whole change now (a commit here is still before it).
    if (s.md.mode === 'write' && s.md.metadataFreeBlocks < 2 * OP_METADATA_MARGIN && s.md.dirty) commit(s);
    // One operation (event-gate.ts): the tail's copy and the change that maps it, with no listener between.
    s.gate.operation(() => {
      const fresh = tail !== null ? this.data.headCopy(tail.dblock, snapSize - tailBlock * bs) : -1;
      try {
        change(
          s,
          () => {
            s.md.rollbackDevice(id, sid);
            if (fresh >= 0) s.md.insertMapping(id, tailBlock, fresh);
            if (volSize < snapSize) {
              const doomed: number[] = [];
              s.md.forEachMappingIn(id, Math.ceil(volSize / bs), Number.MAX_SAFE_INTEGER, (v) => {
                doomed.push(v);
              });
              for (const v of doomed) s.md.removeMapping(id, v);
            }
            s.catalogDirty = true;
          },
          true,
        );
      } catch (e) {
        // A clean refusal leaves the transaction as it was: give the copy's block back.
        if (fresh >= 0 && s.md.mode === 'write') change(s, () => s.md.releaseDataBlock(fresh), true);
        throw e;
      }
    });
  }

  list(): VolumeInfo[] {
    const s = this.s;
    s.alive();
    const usage = deviceUsage(s.md);
    const bs = s.blockSize;
    return s.md.deviceIds().map((id) => {
      const rec = s.recordOf(id);
      const det = s.md.deviceDetails(id);
      const u = usage.get(id) ?? { mappedBlocks: 0, exclusiveBlocks: 0, sharedBlocks: 0 };
      return {
        id,
        name: rec?.name,
        sizeBytes: s.sizeOf(id),
        origin: rec?.origin,
        originName: rec?.origin !== undefined ? s.recordOf(rec.origin)?.name : undefined,
        createdAt: rec?.createdAt,
        creationTime: det.creationTime,
        snapshottedTime: det.snapshottedTime,
        mappedBytes: u.mappedBlocks * bs,
        exclusiveBytes: u.exclusiveBlocks * bs,
        sharedBytes: u.sharedBlocks * bs,
        readOnly: rec?.readOnly === true,
        labels: { ...(rec?.labels ?? {}) },
      };
    });
  }
}
