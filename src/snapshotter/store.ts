/**
 * containerd's snapshot model on thin volumes: keys, parents, kinds, labels and times, kept in the pool's catalog.
 *
 * Semantics (containerd 1.6 `snapshots/storage`, which its own snapshotters use):
 * - `prepare(key, parent)`: an active snapshot; `view(key, parent)`: a read-only one. The parent, when given,
 *   must exist (else ENOENT) and be committed (else EINVAL); no parent means a fresh empty filesystem (a thin
 *   snapshot of the hidden base volume for the configured size). A key already used is EEXIST.
 * - `commit(name, key, labels)`: the active snapshot `key` becomes committed `name`; its labels are REPLACED by
 *   the commit's labels; created = updated = now. Not active: EBUSY (gRPC FailedPrecondition). Only metadata
 *   changes: the volume keeps its blocks and a kernel that still has it mounted keeps writing to it.
 * - `remove(key)`: refused with EBUSY while a snapshot names it as parent; the volume is deleted.
 * - `update(info, paths)`: labels only (`labels` replaces all, `labels.KEY` one; empty values delete); any other
 *   path is EINVAL; without paths the labels are replaced. updated = now.
 * - Times are nanoseconds since the epoch (decimal strings), strictly increasing within a process.
 *
 * Storage: one JSON object under the catalog extension `containerd`, set and committed by the same
 * pool.commitSync() that writes the block maps, so after a crash the snapshots and their volumes agree. A
 * commit the pool makes on its own between a volume's creation and the state's (for space) can leave a volume
 * the state does not name: `orphans()` finds those; `cleanup` deletes them. Volumes carry the pool's owner
 * label `containerd`: plain `thinpool delete` refuses them.
 */
import { ThinpoolError } from '../errors.js';
import { OWNER_LABEL, type ThinPool } from '../thin/pool.js';
import type { Volume } from '../thin/volume.js';
import { writeBaseFilesystem } from './base.js';
import { compileFilters } from './filters.js';

export type Kind = 'active' | 'view' | 'committed';

export interface SnapshotInfo {
  name: string;
  kind: Kind;
  /** "" when the snapshot has no parent. */
  parent: string;
  labels: Record<string, string>;
  /** Nanoseconds since the epoch. */
  created: bigint;
  updated: bigint;
}

interface Rec {
  kind: Kind;
  parent?: string;
  labels: Record<string, string>;
  created: string;
  updated: string;
  volume: string;
}

interface State {
  version: 1;
  next: number;
  /** Base volumes by filesystem size in bytes. */
  bases: Record<string, string>;
  snapshots: Record<string, Rec>;
}

export const EXTENSION = 'containerd';
export const OWNER = 'containerd';
const KEY_LABEL = 'thinpool.containerd/key';

let lastNs = 0n;
/** Wall-clock nanoseconds (microsecond accuracy), strictly increasing within this process. */
function nowNs(): bigint {
  const us = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000));
  let ns = us * 1000n;
  if (ns <= lastNs) ns = lastNs + 1n;
  lastNs = ns;
  return ns;
}

function copyLabels(l: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(l ?? {})) if (v !== '') out[k] = v;
  return out;
}

function notFound(key: string): ThinpoolError {
  return new ThinpoolError('ENOENT', `snapshot ${JSON.stringify(key)} does not exist`);
}

export class SnapshotStore {
  readonly pool: ThinPool;
  /** Filesystem size of snapshots without a parent. */
  readonly fsSize: number;
  private state: State;

  constructor(pool: ThinPool, fsSize: number) {
    this.pool = pool;
    this.fsSize = fsSize;
    const s = pool.getExtension<State>(EXTENSION);
    this.state = s ? (JSON.parse(JSON.stringify(s)) as State) : { version: 1, next: 1, bases: {}, snapshots: {} };
  }

  private save(): void {
    this.pool.setExtension(EXTENSION, JSON.parse(JSON.stringify(this.state)));
    this.pool.commitSync();
  }

  private rec(key: string): Rec {
    const r = Object.hasOwn(this.state.snapshots, key) ? this.state.snapshots[key] : undefined;
    if (!r) throw notFound(key);
    return r;
  }

  private info(name: string, r: Rec): SnapshotInfo {
    return { name, kind: r.kind, parent: r.parent ?? '', labels: { ...r.labels }, created: BigInt(r.created), updated: BigInt(r.updated) };
  }

  has(key: string): boolean {
    return Object.hasOwn(this.state.snapshots, key);
  }

  /** The pool volume holding a snapshot. */
  volumeOf(key: string): string {
    return this.rec(key).volume;
  }

  /** Is the volume one of this store's snapshots (not a base), and which key holds it. */
  keyOfVolume(volume: string): string | undefined {
    return Object.entries(this.state.snapshots).find(([, r]) => r.volume === volume)?.[0];
  }

  /** The base volume for the configured size, made (mkfs) on first use. Call before prepare/view without parent. */
  async ensureBase(): Promise<string> {
    const have = this.state.bases[String(this.fsSize)];
    if (have && this.pool.has(have)) return have;
    const name = `ctrd-base-${this.fsSize}`;
    if (this.pool.has(name)) this.pool.deleteSync(name, { owner: OWNER });
    const v = this.pool.createThinSync(name, { size: this.fsSize, labels: { [OWNER_LABEL]: OWNER, 'thinpool.containerd/role': 'base' } });
    try {
      await writeBaseFilesystem(v);
    } catch (e) {
      this.pool.deleteSync(name, { owner: OWNER });
      this.pool.commitSync();
      throw e;
    }
    this.pool.updateSync(name, { readOnly: true });
    this.state.bases[String(this.fsSize)] = name;
    this.save();
    return name;
  }

  private newVolumeName(): string {
    for (;;) {
      const n = `ctrd-${this.state.next++}`;
      if (!this.pool.has(n)) return n;
    }
  }

  /** A new active (writable) or view (read-only) snapshot. Returns the volume name. */
  create(kind: 'active' | 'view', key: string, parent: string, labels: Record<string, string> | undefined): SnapshotInfo {
    if (typeof key !== 'string' || key === '') throw new ThinpoolError('EINVAL', 'a snapshot key must not be empty');
    if (this.has(key)) throw new ThinpoolError('EEXIST', `snapshot ${JSON.stringify(key)} already exists`);
    let origin: string;
    if (parent !== '') {
      const p = this.state.snapshots[parent];
      if (!p || !this.has(parent)) throw new ThinpoolError('ENOENT', `parent snapshot ${JSON.stringify(parent)} does not exist`);
      if (p.kind !== 'committed')
        throw new ThinpoolError('EINVAL', `parent ${JSON.stringify(parent)} is not a committed snapshot (it is ${p.kind})`);
      origin = p.volume;
    } else {
      const base = this.state.bases[String(this.fsSize)];
      if (!base || !this.pool.has(base)) throw new ThinpoolError('ENOENT', 'no base filesystem yet: ensureBase() first');
      origin = base;
    }
    const volume = this.newVolumeName();
    this.pool.snapshotSync(origin, volume, { readOnly: kind === 'view', labels: { [OWNER_LABEL]: OWNER, [KEY_LABEL]: key.slice(0, 512) } });
    const now = nowNs().toString();
    const rec: Rec = { kind, ...(parent !== '' ? { parent } : {}), labels: copyLabels(labels), created: now, updated: now, volume };
    this.state.snapshots[key] = rec;
    this.save();
    return this.info(key, rec);
  }

  commit(name: string, key: string, labels: Record<string, string> | undefined): SnapshotInfo {
    if (typeof name !== 'string' || name === '') throw new ThinpoolError('EINVAL', 'a committed snapshot needs a name');
    const r = this.rec(key);
    if (r.kind !== 'active')
      throw new ThinpoolError(
        'EBUSY',
        `snapshot ${JSON.stringify(key)} is ${r.kind}, not active: only an active snapshot can be committed`,
      );
    if (this.has(name)) throw new ThinpoolError('EEXIST', `snapshot ${JSON.stringify(name)} already exists`);
    const now = nowNs().toString();
    const rec: Rec = { ...r, kind: 'committed', labels: copyLabels(labels), created: now, updated: now };
    delete this.state.snapshots[key];
    this.state.snapshots[name] = rec;
    const vrec = this.pool.list().find((v) => v.name === r.volume);
    this.pool.updateSync(r.volume, { labels: { ...(vrec?.labels ?? {}), [KEY_LABEL]: name.slice(0, 512) } }, { owner: OWNER });
    this.save();
    return this.info(name, rec);
  }

  /** Throws unless remove(key) would succeed. */
  checkRemove(key: string): void {
    this.rec(key);
    const kids = Object.entries(this.state.snapshots)
      .filter(([, r]) => r.parent === key)
      .map(([k]) => k);
    if (kids.length > 0) {
      throw new ThinpoolError(
        'EBUSY',
        `cannot remove snapshot ${JSON.stringify(key)}: it is the parent of ${kids.length} snapshot(s) (${kids
          .slice(0, 3)
          .map((k) => JSON.stringify(k))
          .join(', ')}); remove them first`,
      );
    }
  }

  /** Delete a snapshot and its volume (its exclusive blocks go back to the pool). */
  remove(key: string): void {
    this.checkRemove(key);
    const r = this.rec(key);
    if (this.pool.has(r.volume)) this.pool.deleteSync(r.volume, { owner: OWNER });
    delete this.state.snapshots[key];
    this.save();
  }

  stat(key: string): SnapshotInfo {
    return this.info(key, this.rec(key));
  }

  update(name: string, labels: Record<string, string> | undefined, paths: readonly string[]): SnapshotInfo {
    const r = this.rec(name);
    let next = paths.length === 0 ? copyLabels(labels) : { ...r.labels };
    for (const p of paths) {
      if (p === 'labels') next = copyLabels(labels);
      else if (p.startsWith('labels.')) {
        const k = p.slice(7);
        const v = labels?.[k];
        if (v === undefined || v === '') delete next[k];
        else next[k] = v;
      } else
        throw new ThinpoolError(
          'EINVAL',
          `cannot update field ${JSON.stringify(p)} of snapshot ${JSON.stringify(name)}: only labels can change`,
        );
    }
    r.labels = next;
    r.updated = nowNs().toString();
    this.save();
    return this.info(name, r);
  }

  /** Every snapshot matching containerd filters (see filters.ts), in key order. */
  list(filters: readonly string[] = []): SnapshotInfo[] {
    const pred = compileFilters(filters);
    return Object.keys(this.state.snapshots)
      .sort()
      .map((k) => this.info(k, this.state.snapshots[k]))
      .filter((i) => pred(i));
  }

  /** The volume a snapshot was made from: its parent's, or the base. */
  private originVolume(r: Rec): string | undefined {
    if (r.parent !== undefined) return this.state.snapshots[r.parent]?.volume;
    return this.state.bases[String(this.pool.volume(r.volume).sizeBytes)];
  }

  /**
   * A snapshot's own changes: bytes of the blocks that differ from what it was made from, and inodes in use
   * beyond its origin's (from the ext4 superblocks: exact once the filesystem is unmounted, as containerd
   * commits; a mounted filesystem updates them lazily).
   */
  usage(key: string): { size: number; inodes: number } {
    const r = this.rec(key);
    const origin = this.originVolume(r);
    const bs = this.pool.blockSize;
    let blocks = 0;
    if (origin && this.pool.has(origin)) {
      for (const d of this.pool.diff(origin, r.volume)) if (d.kind === 'different' || d.kind === 'right_only') blocks += d.length;
    } else {
      blocks = this.pool.list().find((v) => v.name === r.volume)!.mappedBytes / bs;
    }
    const own = inodesUsed(this.pool.volume(r.volume));
    const base = origin && this.pool.has(origin) ? inodesUsed(this.pool.volume(origin)) : 0;
    return { size: blocks * bs, inodes: Math.max(0, own - base) };
  }

  /** Volumes labelled as this store's that it does not name (left by a crash between two commits). */
  orphans(): string[] {
    const named = new Set([...Object.values(this.state.snapshots).map((r) => r.volume), ...Object.values(this.state.bases)]);
    return this.pool
      .list()
      .filter((v) => v.name !== undefined && v.labels[OWNER_LABEL] === OWNER && !named.has(v.name))
      .map((v) => v.name!);
  }

  /** Delete the orphans (children first) and commit. Returns their names. */
  deleteOrphans(): string[] {
    const o = this.orphans();
    for (const n of [...o].reverse()) this.pool.deleteSync(n, { owner: OWNER });
    if (o.length > 0) this.pool.commitSync();
    return o;
  }

  /** Mark a committed snapshot's volume read-only in the pool (once nothing has it mounted). */
  seal(volume: string): void {
    if (!this.pool.has(volume)) return;
    const v = this.pool.volume(volume);
    if (v.readOnly) return;
    this.pool.updateSync(volume, { readOnly: true });
    this.pool.commitSync();
  }

  /** Every snapshot's volume, with its key and kind. */
  volumes(): { key: string; kind: Kind; volume: string }[] {
    return Object.entries(this.state.snapshots).map(([key, r]) => ({ key, kind: r.kind, volume: r.volume }));
  }
}

/** Inodes in use in an ext4 filesystem, from its superblock (0 when the volume holds no ext4). */
function inodesUsed(v: Volume): number {
  const sb = Buffer.alloc(1024);
  v.readSync(sb, 1024);
  if (sb.readUInt16LE(56) !== 0xef53) return 0;
  return sb.readUInt32LE(0) - sb.readUInt32LE(16);
}
