/**
 * A containerd-style snapshotter on thin snapshots (what containerd's devmapper snapshotter does with the
 * kernel, here in userspace).
 *
 * Semantics (containerd's):
 * - `prepare(key, parent?)`: an active, writable snapshot. Without a parent it holds a freshly formatted, empty
 *   ext4 filesystem (a snapshot of the pool's hidden base volume, formatted once per size: constant time).
 * - `view(key, parent)`: an active, read-only snapshot of a committed parent.
 * - `commit(name, key)`: the active snapshot `key` becomes the committed snapshot `name` (key is gone). Its
 *   volume is flagged read-only in the pool's catalog, so every write path (Volume.write/discard/resize, the
 *   CLI, NBD, this module) refuses it with EROFS.
 * - `remove(key)`: refused (EBUSY) while another snapshot names it as parent.
 * - `stat`, `update` (labels only), `usage` (exclusive bytes of this snapshot only), `walk(filter)`.
 * - Parents must be committed snapshots.
 *
 * Storage: the state is JSON in the pool's catalog under the extension key `snapshotter`, set with
 * pool.setExtension and written by the same pool.commitSync() that writes the block maps; so after a crash the
 * state and the volumes agree. Each call commits, except inside `transaction(fn)`, which commits once at the
 * end, or on failure deletes the volumes it created and puts the previous state back.
 */
import { OWNER_LABEL } from '../thin/pool.js';
import { ThinpoolError } from '../errors.js';
import type { ThinPool } from '../thin/pool.js';
import type { Volume } from '../thin/volume.js';
import { MIN_FS_SIZE, formatExt4 } from './mkfs.js';

export type Kind = 'active' | 'view' | 'committed';

export interface SnapshotInfo {
  key: string;
  kind: Kind;
  parent?: string;
  labels: Record<string, string>;
  created: string;
  updated: string;
  /** The pool volume holding this snapshot. */
  volume: string;
}

export interface Usage {
  /** Exclusive bytes: the blocks only this snapshot maps (freed by removing it). */
  size: number;
  /** Bytes this snapshot maps in all (shared included). */
  mapped: number;
}

interface State {
  version: 1;
  /** Counter for volume names. */
  next: number;
  /** Hidden formatted base volumes, by size in bytes. */
  bases: Record<string, string>;
  snapshots: Record<string, SnapshotInfo>;
}

export const EXTENSION = 'snapshotter';
/** Volumes of the snapshotter carry the pool's owner label with this value: plain pool calls cannot delete,
 * resize or unseal them (ThinPool.checkOwner). */
export const OWNER = 'images';
export { OWNER_LABEL };

export interface SnapshotterOptions {
  /** Filesystem size for snapshots without a parent. Default 1 GiB. */
  size?: number;
}

/** A filter: a predicate, or containerd-like strings `field==value` / `field!=value` / `field~=regex` (all must hold). */
export type WalkFilter = ((info: SnapshotInfo) => boolean) | string | string[];

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

export class Snapshotter {
  readonly pool: ThinPool;
  readonly size: number;
  private state: State;
  private txDepth = 0;
  private created: string[] = [];
  /** Volumes of snapshots that existed before the transaction and were committed (made read-only) in it. */
  private sealed: string[] = [];

  constructor(pool: ThinPool, opts: SnapshotterOptions = {}) {
    this.pool = pool;
    this.size = opts.size ?? 1024 ** 3;
    if (!Number.isSafeInteger(this.size) || this.size < MIN_FS_SIZE) {
      throw new ThinpoolError(
        'EINVAL',
        `filesystem size ${this.size} bytes is too small for an ext4 filesystem: use at least ${MIN_FS_SIZE} bytes (1 MiB)`,
      );
    }
    const s = pool.getExtension<State>(EXTENSION);
    this.state = s ? clone(s) : { version: 1, next: 1, bases: {}, snapshots: {} };
  }

  /** Record the state in the catalog and commit; inside a transaction, only at its end (a commit the pool makes
   * on its own mid-transaction, for space, then carries the state from before the transaction). */
  private save(): void {
    if (this.txDepth > 0) return;
    this.pool.setExtension(EXTENSION, clone(this.state));
    this.pool.commitSync();
  }

  /**
   * Run fn as one transaction: one commit at the end; on failure the volumes created inside are deleted and the
   * state is put back (nothing of it is committed).
   */
  async transaction<T>(fn: () => Promise<T> | T): Promise<T> {
    if (this.txDepth > 0) return fn();
    const saved = clone(this.state);
    const savedExt = this.pool.getExtension<unknown>(EXTENSION);
    this.txDepth++;
    this.created = [];
    this.sealed = [];
    try {
      const r = await fn();
      this.txDepth--;
      this.save();
      return r;
    } catch (e) {
      this.txDepth--;
      for (const name of this.created.reverse()) {
        try {
          if (this.pool.has(name)) this.pool.deleteSync(name, { owner: OWNER });
        } catch {
          /* best effort */
        }
      }
      for (const name of this.sealed) {
        try {
          if (this.pool.has(name)) this.pool.updateSync(name, { readOnly: false }, { owner: OWNER });
        } catch {
          /* best effort */
        }
      }
      this.state = saved;
      this.pool.setExtension(EXTENSION, savedExt === undefined ? undefined : clone(savedExt));
      throw e;
    } finally {
      this.created = [];
      this.sealed = [];
    }
  }

  private get(key: string): SnapshotInfo {
    const s = this.state.snapshots[key];
    if (!s) throw new ThinpoolError('ENOENT', `no snapshot ${JSON.stringify(key)}`);
    return s;
  }

  private newVolumeName(): string {
    for (;;) {
      const n = `sn-${this.state.next++}`;
      if (!this.pool.has(n)) return n;
    }
  }

  private track(name: string): void {
    if (this.txDepth > 0) this.created.push(name);
  }

  /** The hidden formatted base volume of a size (made on first use). */
  private base(size: number): string {
    const have = this.state.bases[String(size)];
    if (have && this.pool.has(have)) return have;
    const name = `sn-base-${size}`;
    if (this.pool.has(name)) this.pool.deleteSync(name, { owner: OWNER });
    const v = this.pool.createThinSync(name, { size, labels: { [OWNER_LABEL]: OWNER, 'thinpool.images/role': 'base' } });
    this.track(name);
    formatExt4(v);
    this.pool.updateSync(name, { readOnly: true });
    this.state.bases[String(size)] = name;
    return name;
  }

  private checkKey(key: string): void {
    if (typeof key !== 'string' || key.length === 0 || key.length > 1024)
      throw new ThinpoolError('EINVAL', `bad snapshot key ${JSON.stringify(key)}`);
    if (this.state.snapshots[key]) throw new ThinpoolError('EEXIST', `snapshot ${JSON.stringify(key)} already exists`);
  }

  private make(key: string, kind: Kind, parent: string | undefined, labels: Record<string, string> = {}): SnapshotInfo {
    this.checkKey(key);
    let origin: string;
    if (parent !== undefined && parent !== '') {
      const p = this.get(parent);
      if (p.kind !== 'committed') throw new ThinpoolError('EINVAL', `parent ${JSON.stringify(parent)} is not committed (it is ${p.kind})`);
      origin = p.volume;
    } else {
      if (kind === 'view') throw new ThinpoolError('EINVAL', 'a view needs a committed parent');
      origin = this.base(this.size);
    }
    const volume = this.newVolumeName();
    this.pool.snapshotSync(origin, volume, {
      readOnly: kind === 'view',
      labels: { [OWNER_LABEL]: OWNER, 'thinpool.images/key': key.slice(0, 200) },
    });
    this.track(volume);
    const now = new Date().toISOString();
    const info: SnapshotInfo = { key, kind, ...(parent ? { parent } : {}), labels: { ...labels }, created: now, updated: now, volume };
    this.state.snapshots[key] = info;
    this.save();
    return clone(info);
  }

  /** An active, writable snapshot on top of parent (or an empty filesystem). */
  prepare(key: string, parent?: string, labels?: Record<string, string>): SnapshotInfo {
    return this.make(key, 'active', parent, labels);
  }

  /** An active, read-only snapshot of parent. */
  view(key: string, parent: string, labels?: Record<string, string>): SnapshotInfo {
    return this.make(key, 'view', parent, labels);
  }

  /** The active snapshot key becomes the committed, immutable snapshot name. */
  commit(name: string, key: string, labels?: Record<string, string>): SnapshotInfo {
    const s = this.get(key);
    if (s.kind !== 'active')
      throw new ThinpoolError('EINVAL', `snapshot ${JSON.stringify(key)} is ${s.kind}: only an active snapshot can be committed`);
    if (name !== key) this.checkKey(name);
    if (Object.values(this.state.snapshots).some((o) => o.parent === key))
      throw new ThinpoolError('EBUSY', `snapshot ${JSON.stringify(key)} has children`);
    if (this.txDepth > 0 && !this.created.includes(s.volume)) this.sealed.push(s.volume);
    this.pool.updateSync(s.volume, {
      readOnly: true,
      labels: { ...(this.pool.recordOf(this.pool.volume(s.volume).id)?.labels ?? {}), 'thinpool.images/key': name.slice(0, 200) },
    });
    delete this.state.snapshots[key];
    const info: SnapshotInfo = {
      ...s,
      key: name,
      kind: 'committed',
      labels: { ...s.labels, ...(labels ?? {}) },
      updated: new Date().toISOString(),
    };
    this.state.snapshots[name] = info;
    this.save();
    return clone(info);
  }

  /**
   * Not in containerd: a committed copy of an active snapshot that stays active (constant time: a read-only
   * thin snapshot of its volume). `container commit` uses it; the copy's parent is the active one's parent.
   */
  commitCopy(name: string, key: string, labels?: Record<string, string>): SnapshotInfo {
    const s = this.get(key);
    if (s.kind !== 'active')
      throw new ThinpoolError('EINVAL', `snapshot ${JSON.stringify(key)} is ${s.kind}: only an active snapshot can be committed`);
    this.checkKey(name);
    const volume = this.newVolumeName();
    this.pool.snapshotSync(s.volume, volume, {
      readOnly: true,
      labels: { [OWNER_LABEL]: OWNER, 'thinpool.images/key': name.slice(0, 200) },
    });
    this.track(volume);
    const now = new Date().toISOString();
    const info: SnapshotInfo = {
      key: name,
      kind: 'committed',
      ...(s.parent ? { parent: s.parent } : {}),
      labels: { ...(labels ?? {}) },
      created: now,
      updated: now,
      volume,
    };
    this.state.snapshots[name] = info;
    this.save();
    return clone(info);
  }

  /** Remove a snapshot (refused while it has children). Returns the bytes freed. */
  remove(key: string): number {
    const s = this.get(key);
    const kids = Object.values(this.state.snapshots)
      .filter((o) => o.parent === key)
      .map((o) => o.key);
    if (kids.length)
      throw new ThinpoolError(
        'EBUSY',
        `snapshot ${JSON.stringify(key)} has children (${kids.slice(0, 3).join(', ')}${kids.length > 3 ? ', ...' : ''}): remove them first`,
      );
    let freed = 0;
    if (this.pool.has(s.volume)) {
      const before = this.pool.status().dataBlocks.used;
      this.pool.deleteSync(s.volume, { owner: OWNER });
      freed = (before - this.pool.status().dataBlocks.used) * this.pool.blockSize;
    }
    delete this.state.snapshots[key];
    this.save();
    return freed;
  }

  stat(key: string): SnapshotInfo {
    return clone(this.get(key));
  }

  has(key: string): boolean {
    return this.state.snapshots[key] !== undefined;
  }

  /** Change labels (the only mutable field, as in containerd). */
  update(key: string, labels: Record<string, string>): SnapshotInfo {
    const s = this.get(key);
    s.labels = { ...labels };
    s.updated = new Date().toISOString();
    this.save();
    return clone(s);
  }

  /** The bytes of this snapshot only (exclusive blocks), and all it maps. */
  usage(key: string): Usage {
    const s = this.get(key);
    const info = this.pool.list().find((v) => v.name === s.volume);
    if (!info) throw new ThinpoolError('ENOENT', `volume ${s.volume} of snapshot ${JSON.stringify(key)} is missing from the pool`);
    return { size: info.exclusiveBytes, mapped: info.mappedBytes };
  }

  /** Every snapshot that passes the filter, ordered by key. */
  walk(filter?: WalkFilter): SnapshotInfo[] {
    const pred = compileFilter(filter);
    return Object.values(this.state.snapshots)
      .filter(pred)
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      .map(clone);
  }

  /** The pool volume of a snapshot. */
  volume(key: string): Volume {
    return this.pool.volume(this.get(key).volume);
  }

  /**
   * Delete volumes labelled as the snapshotter's that its state does not name: what an interrupted transaction
   * left (a crash after the pool committed for space, before the state was recorded). Committed with the next
   * commit. Returns their names.
   */
  collectOrphans(): string[] {
    const owned = this.ownedVolumes();
    const orphans = this.pool
      .list()
      .filter((v) => v.name !== undefined && v.labels[OWNER_LABEL] === OWNER && !owned.has(v.name))
      .map((v) => v.name!);
    // Children first, so that no origin is deleted before its snapshots (not required by dm-thin, but tidy).
    for (const n of orphans.reverse()) this.pool.deleteSync(n, { owner: OWNER });
    return orphans;
  }

  /** Names of the pool volumes this snapshotter owns (snapshots and bases). */
  ownedVolumes(): Set<string> {
    return new Set([...Object.values(this.state.snapshots).map((s) => s.volume), ...Object.values(this.state.bases)]);
  }
}

function compileFilter(filter: WalkFilter | undefined): (s: SnapshotInfo) => boolean {
  if (filter === undefined) return () => true;
  if (typeof filter === 'function') return filter;
  const parts = (Array.isArray(filter) ? filter : [filter])
    .flatMap((f) => f.split(','))
    .map((f) => f.trim())
    .filter(Boolean);
  const tests = parts.map((p) => {
    const m = /^([a-zA-Z.]+|labels\."[^"]+"|labels\.[^=!~]+)\s*(==|!=|~=)\s*(.*)$/.exec(p);
    if (!m) throw new ThinpoolError('EINVAL', `bad filter ${JSON.stringify(p)}: use field==value, field!=value or field~=regex`);
    const [, field, op, raw] = m;
    const value = raw.replace(/^"(.*)"$/, '$1');
    const get = (s: SnapshotInfo): string | undefined => {
      if (field.startsWith('labels.')) return s.labels[field.slice(7).replace(/^"(.*)"$/, '$1')];
      if (field === 'name' || field === 'key') return s.key;
      if (field === 'kind') return s.kind;
      if (field === 'parent') return s.parent;
      throw new ThinpoolError('EINVAL', `bad filter field ${JSON.stringify(field)}: use name, kind, parent or labels."KEY"`);
    };
    const re = op === '~=' ? new RegExp(value) : null;
    return (s: SnapshotInfo): boolean => {
      const v = get(s);
      if (op === '==') return v === value;
      if (op === '!=') return v !== value;
      return v !== undefined && re!.test(v);
    };
  });
  return (s) => tests.every((t) => t(s));
}
