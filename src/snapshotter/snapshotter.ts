/**
 * The containerd snapshotter: the snapshot model (store.ts) plus the mounts that make snapshots usable by the
 * kernel (exports.ts). What the gRPC service (grpc.ts) calls; usable in process too.
 *
 * Mounts: `{ type: 'ext4', source: FILE, options: ['loop', 'rw' | 'ro'] }` where FILE is the volume shown by
 * nbdfuse; containerd attaches the loop device itself. Views and committed snapshots mount read-only.
 *
 * Lifecycle of an export: made by Prepare / View / Mounts; after Commit it is torn down when nothing has it
 * mounted (within a second: the loop device's autoclear runs asynchronously; the volume is then sealed read-only
 * in the pool), else its filesystem is written out (`sync`: the committed volume holds what the mount shows)
 * and the export lives until Remove, Cleanup or shutdown; Remove tears it down before deleting the volume (refused with EBUSY while a loop device still uses
 * it after a grace period). Calls that change state run one at a time (a queue); Stat, List and Usage do not wait.
 */
import type { ThinPool } from '../thin/pool.js';
import { Exports, type ExportsOptions } from './exports.js';
import { SnapshotStore, type SnapshotInfo } from './store.js';

/** How long Commit waits for the loop device of an unmounted snapshot to detach (autoclear runs asynchronously). */
const COMMIT_RELEASE_WAIT_MS = 1000;

export interface Mount {
  type: string;
  source: string;
  target: string;
  options: string[];
}

export interface SnapshotterOptions extends ExportsOptions {
  /** Filesystem size of snapshots without a parent (bytes). */
  fsSize: number;
  /** Directory for the NBD socket and the nbdfuse mount points. */
  stateDir: string;
}

export class ContainerdSnapshotter {
  readonly pool: ThinPool;
  readonly store: SnapshotStore;
  readonly exports: Exports;
  private queue: Promise<unknown> = Promise.resolve();
  private closed: Promise<void> | null = null;
  private readonly log: (m: string) => void;

  constructor(pool: ThinPool, opts: SnapshotterOptions) {
    this.pool = pool;
    this.store = new SnapshotStore(pool, opts.fsSize);
    this.exports = new Exports(pool, opts.stateDir, opts);
    this.log = opts.log ?? (() => undefined);
  }

  /** Start the NBD side, after removing what a killed predecessor left; delete orphaned volumes. */
  async start(): Promise<void> {
    await this.exports.start();
    const o = this.store.deleteOrphans();
    if (o.length > 0) this.log(`deleted ${o.length} volume(s) no snapshot names (left by an interrupted run): ${o.join(', ')}`);
  }

  private serial<T>(fn: () => Promise<T> | T): Promise<T> {
    const p = this.queue.then(fn, fn);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private mount(file: string, readOnly: boolean): Mount[] {
    return [{ type: 'ext4', source: file, target: '', options: ['loop', readOnly ? 'ro' : 'rw'] }];
  }

  private async exportOf(key: string): Promise<Mount[]> {
    const info = this.store.stat(key);
    const volume = this.store.volumeOf(key);
    const readOnly = info.kind !== 'active';
    const file = await this.exports.ensure(volume, this.pool.volume(volume).readOnly);
    return this.mount(file, readOnly);
  }

  private create(kind: 'active' | 'view', key: string, parent: string, labels?: Record<string, string>): Promise<Mount[]> {
    return this.serial(async () => {
      if (parent === '') await this.store.ensureBase();
      this.store.create(kind, key, parent, labels);
      try {
        return await this.exportOf(key);
      } catch (e) {
        // No mounts, no snapshot: containerd retries the whole Prepare.
        await this.exports.teardown(this.store.volumeOf(key), { force: true, waitMs: 0 }).catch(() => undefined);
        this.store.remove(key);
        throw e;
      }
    });
  }

  prepare(key: string, parent: string, labels?: Record<string, string>): Promise<Mount[]> {
    return this.create('active', key, parent, labels);
  }

  view(key: string, parent: string, labels?: Record<string, string>): Promise<Mount[]> {
    return this.create('view', key, parent, labels);
  }

  mounts(key: string): Promise<Mount[]> {
    return this.serial(() => this.exportOf(key));
  }

  commit(name: string, key: string, labels?: Record<string, string>): Promise<void> {
    return this.serial(async () => {
      const volume = this.store.volumeOf(key);
      this.store.commit(name, key, labels);
      if (this.exports.has(volume) && !(await this.exports.waitReleased(volume, COMMIT_RELEASE_WAIT_MS))) {
        // Unmounted by the caller, yet the loop device stays: the filesystem lives on (a copy of the mount in
        // another mount namespace, e.g. of a process that unshared while it was mounted), so it was not shut
        // down and its latest changes may be in memory only. Write them out so the committed volume (and every
        // snapshot of it) holds what the mount shows; the export stays until nothing uses it.
        this.log(`snapshot ${JSON.stringify(name)} committed while its filesystem is still in use: writing it out (sync)`);
        await this.exports.syncFilesystems();
        return;
      }
      await this.release(volume);
    });
  }

  /** Tear down a committed snapshot's export when nothing uses it, and seal its volume. */
  private async release(volume: string): Promise<void> {
    if (this.exports.has(volume) && this.exports.inUse(volume)) return;
    await this.exports.teardown(volume, { waitMs: 0 }).catch(() => undefined);
    if (!this.exports.has(volume)) this.store.seal(volume);
  }

  remove(key: string): Promise<void> {
    return this.serial(async () => {
      this.store.checkRemove(key);
      await this.exports.teardown(this.store.volumeOf(key));
      this.store.remove(key);
    });
  }

  stat(key: string): SnapshotInfo {
    return this.store.stat(key);
  }

  update(name: string, labels: Record<string, string> | undefined, paths: readonly string[]): Promise<SnapshotInfo> {
    return this.serial(() => this.store.update(name, labels, paths));
  }

  usage(key: string): { size: number; inodes: number } {
    return this.store.usage(key);
  }

  list(filters: readonly string[]): SnapshotInfo[] {
    return this.store.list(filters);
  }

  /**
   * Release what nothing references: exports of committed snapshots nothing mounts (their volumes sealed),
   * exports of volumes no snapshot names, and volumes of ours no snapshot names.
   */
  cleanup(): Promise<void> {
    return this.serial(async () => {
      const byVolume = new Map(this.store.volumes().map((v) => [v.volume, v]));
      for (const e of this.exports.list()) {
        const s = byVolume.get(e.volume);
        if (!s) await this.exports.teardown(e.volume, { waitMs: 0 }).catch(() => undefined);
        else if (s.kind === 'committed') await this.release(e.volume);
      }
      for (const v of this.store.volumes()) if (v.kind === 'committed' && !this.exports.has(v.volume)) this.store.seal(v.volume);
      this.store.deleteOrphans();
    });
  }

  /** Tear down every export (lazily for those still mounted), stop the NBD server and commit. Idempotent. */
  close(): Promise<void> {
    this.closed ??= this.serial(async () => {
      await this.exports.close();
      if (!this.pool.isClosed && this.pool.mode === 'write') this.pool.commitSync();
    });
    return this.closed;
  }
}
