/**
 * Images and containers on thin snapshots: the devicemapper storage driver, in userspace.
 *
 * - An image is a stack of committed snapshots, one per layer, named by chain id (as containerd names them):
 *   importing an image whose bottom layers are already in the pool reuses those snapshots.
 * - A container is an active snapshot of its image's top layer (`container/NAME`): creating one is constant
 *   time, whatever the image's size. Removing it frees exactly its exclusive blocks.
 * - State: the image and container records live in the pool's catalog under the extension key `images`, the
 *   snapshots under `snapshotter`; both are set together and written by one pool commit. An import runs as one
 *   snapshotter transaction: on any error the layer volumes it made are deleted and no image is recorded.
 */
import { createHash } from 'node:crypto';
import { BULK_WRITE_BEHIND } from '../io/block-device.js';
import { ThinpoolError } from '../errors.js';
import { q } from '../messages.js';
import type { ThinPool } from '../thin/pool.js';
import type { Volume } from '../thin/volume.js';
import { type Change, changesDigest, treeChanges } from './changes.js';
import { FsSession, withFs } from './fs-worker.js';
import { applyLayer } from './layer.js';
import { patchInodes } from './ext4-inodes.js';
import { checkContainerName, checkImageName, quoteName } from './names.js';
import { chainIds, fileDigest, readSource, type HistoryEntry, type ImageConfig } from './source.js';
import { Snapshotter, type SnapshotterOptions } from './snapshotter.js';

export const IMAGES_EXTENSION = 'images';

export interface ImageRecord {
  name: string;
  /** Image id: the config digest. */
  id: string;
  diffIds: string[];
  chainIds: string[];
  created?: string;
  history: HistoryEntry[];
  config?: Record<string, unknown>;
  importedAt: string;
}

export interface ContainerRecord {
  name: string;
  image: string;
  imageId: string;
  key: string;
  created: string;
}

interface State {
  version: 1;
  images: Record<string, ImageRecord>;
  containers: Record<string, ContainerRecord>;
}

export interface ImportResult {
  image: ImageRecord;
  /** Layers applied by this import, and layers found already in the pool. */
  applied: number;
  reused: number;
  bytes: number;
}

export interface HistoryRow {
  /** Chain id of the layer, or "<missing>" for a history entry that made no layer. */
  layer: string;
  created?: string;
  createdBy?: string;
  comment?: string;
  /** Bytes this layer adds: blocks it maps that its parent does not map to the same data block. */
  size: number;
}

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

export class ImageStore {
  readonly pool: ThinPool;
  readonly snapshotter: Snapshotter;
  private state: State;

  constructor(pool: ThinPool, opts: SnapshotterOptions = {}) {
    this.pool = pool;
    this.snapshotter = new Snapshotter(pool, opts);
    const s = pool.getExtension<State>(IMAGES_EXTENSION);
    this.state = s ? clone(s) : { version: 1, images: {}, containers: {} };
  }

  private save(): void {
    this.pool.setExtension(IMAGES_EXTENSION, clone(this.state));
  }

  /** Run fn in one snapshotter transaction; the images state is put back too on failure. */
  private async tx<T>(fn: () => Promise<T> | T): Promise<T> {
    const saved = clone(this.state);
    try {
      return await this.snapshotter.transaction(async () => {
        const r = await fn();
        this.save();
        return r;
      });
    } catch (e) {
      this.state = saved;
      this.save();
      throw e;
    }
  }

  // ---- images ----
  images(): ImageRecord[] {
    return Object.values(this.state.images)
      .sort((a, b) => a.name.localeCompare(b.name))
      .map(clone);
  }

  image(name: string): ImageRecord {
    const im = this.state.images[name];
    if (!im) throw new ThinpoolError('ENOENT', `no image named ${quoteName(name)}: list them with "thinpool image ls POOL"`);
    return clone(im);
  }

  /**
   * Import an image from an OCI layout, an OCI/docker-save archive, or layer tarballs (bottom first).
   * `checkpoint` is awaited often while layers are applied; when it throws, the import stops and is undone.
   */
  async import(
    name: string,
    sources: string[],
    opts: { onLayer?: (i: number, total: number, reused: boolean) => void; checkpoint?: () => Promise<void> } = {},
  ): Promise<ImportResult> {
    checkImageName(name);
    if (this.state.images[name]) throw new ThinpoolError('EEXIST', `an image named ${quoteName(name)} already exists`);
    FsSession.prestart(); // its start overlaps reading the sources and preparing the first layer
    const src = await readSource(sources);
    this.snapshotter.collectOrphans();
    // Layers are bulk writes: the disk writes while they are applied, and the commit's flush waits for little.
    const data = this.pool.storage.data;
    const before = data.writeBehind?.(BULK_WRITE_BEHIND);
    try {
      return await this.tx(async () => {
        const diffIds: string[] = [];
        const chains: string[] = [];
        let applied = 0;
        let reused = 0;
        let bytes = 0;
        let parent: string | undefined;
        for (const [i, layer] of src.layers.entries()) {
          // A tarball's diff id is read before applying only where it could name a layer already here: that
          // layer's key is its chain id, and its parent is this layer's parent. Otherwise the apply computes it.
          const known = layer.diffId ?? (layer.digest && this.reusableOn(parent) ? await layer.digest() : undefined);
          const chain = known ? chainIds([...diffIds, known])[diffIds.length] : undefined;
          if (chain && this.snapshotter.has(chain)) {
            diffIds.push(known!);
            chains.push(chain);
            parent = chain;
            reused++;
            opts.onLayer?.(i, src.layers.length, true);
            continue;
          }
          if (layer.blobDigest && (await fileDigest(layer.path)) !== layer.blobDigest) {
            throw new ThinpoolError(
              'EINVAL',
              `layer ${layer.label}: the blob does not match its digest ${layer.blobDigest} (corrupt or tampered)`,
            );
          }
          const key = `import/${name}/${i}/${Date.now()}`;
          this.snapshotter.prepare(key, parent);
          const vol = this.snapshotter.volume(key);
          const res = await withFs(vol, async (fs) =>
            applyLayer(fs, await layer.open(), { label: layer.label, expectDiffId: known, checkpoint: opts.checkpoint }),
          );
          patchInodes(vol, res);
          bytes += res.bytes;
          diffIds.push(res.diffId);
          const c = chainIds(diffIds)[diffIds.length - 1];
          chains.push(c);
          if (this.snapshotter.has(c))
            this.snapshotter.remove(key); // same content under another name: keep the old
          else this.snapshotter.commit(c, key, { 'containerd.io/snapshot/layer.diffid': res.diffId });
          parent = c;
          applied++;
          opts.onLayer?.(i, src.layers.length, false);
        }
        const { config, configDigest } = src.configFor ? src.configFor(diffIds) : src;
        const image: ImageRecord = {
          name,
          id: configDigest,
          diffIds,
          chainIds: chains,
          ...(config.created ? { created: config.created } : {}),
          history: config.history ?? [],
          ...(config.config ? { config: config.config } : {}),
          importedAt: new Date().toISOString(),
        };
        this.state.images[name] = image;
        return { image: clone(image), applied, reused, bytes };
      });
    } finally {
      if (before !== undefined) data.writeBehind!(before);
      src.cleanup();
    }
  }

  /** Whether a committed layer on `parent` (undefined: a bottom layer) exists: only then can a layer be reused. */
  private reusableOn(parent: string | undefined): boolean {
    return this.snapshotter.walk().some((s) => s.kind === 'committed' && s.parent === parent);
  }

  /** Remove an image and the layers no other image or container uses. Returns the bytes freed. */
  async removeImage(name: string): Promise<number> {
    const im = this.image(name);
    const users = Object.values(this.state.containers)
      .filter((c) => c.image === name)
      .map((c) => c.name);
    if (users.length)
      throw new ThinpoolError(
        'EBUSY',
        `image ${q(name)} is used by container${users.length > 1 ? 's' : ''} ${users.join(', ')}: remove ${users.length > 1 ? 'them' : 'it'} first`,
      );
    return this.tx(() => {
      delete this.state.images[name];
      const used = new Set(Object.values(this.state.images).flatMap((i) => i.chainIds));
      let freed = 0;
      for (const c of [...im.chainIds].reverse()) {
        if (used.has(c) || !this.snapshotter.has(c)) continue;
        if (this.snapshotter.walk((s) => s.parent === c).length) continue;
        freed += this.snapshotter.remove(c);
      }
      return freed;
    });
  }

  private topVolume(im: ImageRecord): Volume {
    return this.snapshotter.volume(im.chainIds[im.chainIds.length - 1]);
  }

  /** The volume of an image's top layer (read-only): its whole filesystem. */
  imageVolume(name: string): Volume {
    return this.topVolume(this.image(name));
  }

  /** Bytes each layer adds (bottom first): blocks it maps that its parent does not map to the same data block. */
  layerSizes(im: ImageRecord): number[] {
    const bs = this.pool.blockSize;
    return im.chainIds.map((c, i) => {
      const v = this.snapshotter.volume(c);
      if (i === 0) return v.map().reduce((n, e) => n + e.lengthBytes, 0);
      const p = this.snapshotter.volume(im.chainIds[i - 1]);
      return (
        this.pool
          .diff(p.id, v.id)
          .filter((r) => r.kind === 'right_only' || r.kind === 'different')
          .reduce((n, r) => n + r.length, 0) * bs
      );
    });
  }

  /** docker history: newest first; entries that made no layer show as "<missing>" with size 0. */
  history(name: string): HistoryRow[] {
    const im = this.image(name);
    const sizes = this.layerSizes(im);
    const rows: HistoryRow[] = [];
    let li = 0;
    const hist = im.history.length ? im.history : im.chainIds.map(() => ({}) as HistoryEntry);
    for (const h of hist) {
      if (h.empty_layer) {
        rows.push({ layer: '<missing>', created: h.created, createdBy: h.created_by, comment: h.comment, size: 0 });
        continue;
      }
      if (li >= im.chainIds.length) break;
      rows.push({ layer: im.chainIds[li], created: h.created, createdBy: h.created_by, comment: h.comment, size: sizes[li] });
      li++;
    }
    for (; li < im.chainIds.length; li++) rows.push({ layer: im.chainIds[li], size: sizes[li] });
    return rows.reverse();
  }

  // ---- containers ----
  containers(): ContainerRecord[] {
    return Object.values(this.state.containers)
      .sort((a, b) => a.name.localeCompare(b.name))
      .map(clone);
  }

  container(name: string): ContainerRecord {
    const c = this.state.containers[name];
    if (!c) throw new ThinpoolError('ENOENT', `no container named ${quoteName(name)}: list them with "thinpool container ls POOL"`);
    return clone(c);
  }

  /** A writable snapshot of the image's top layer: constant time. */
  async createContainer(image: string, name: string): Promise<ContainerRecord> {
    checkContainerName(name);
    if (this.state.containers[name]) throw new ThinpoolError('EEXIST', `a container named ${quoteName(name)} already exists`);
    const im = this.image(image);
    return this.tx(() => {
      const key = `container/${name}`;
      this.snapshotter.prepare(key, im.chainIds[im.chainIds.length - 1], { 'thinpool.images/container': name });
      const rec: ContainerRecord = { name, image, imageId: im.id, key, created: new Date().toISOString() };
      this.state.containers[name] = rec;
      return clone(rec);
    });
  }

  containerVolume(name: string): Volume {
    return this.snapshotter.volume(this.container(name).key);
  }

  /** Usage of a container: its exclusive bytes. */
  containerUsage(name: string): number {
    return this.snapshotter.usage(this.container(name).key).size;
  }

  /** Remove a container; returns the bytes freed (its exclusive blocks). */
  async removeContainer(name: string): Promise<number> {
    const c = this.container(name);
    return this.tx(() => {
      const freed = this.snapshotter.remove(c.key);
      delete this.state.containers[name];
      return freed;
    });
  }

  /** Paths added (A), changed (C) and deleted (D) in a container against its image, as `docker diff` prints them. */
  async diff(name: string): Promise<Change[]> {
    const c = this.container(name);
    const im = this.image(c.image);
    const top = this.topVolume(im);
    const vol = this.containerVolume(name);
    if (this.pool.diff(top.id, vol.id).every((r) => r.kind === 'same')) return [];
    return withFs(top, (a) => withFs(vol, (b) => treeChanges(a, b, Date.parse(c.created) - 2000), { readOnly: true }));
  }

  /**
   * A container becomes the top layer of a new image: its volume is snapshotted (constant time) as a committed
   * layer; the layer's diff id is the digest of the tar of its changes (as `docker commit` makes it).
   */
  async commitContainer(name: string, image: string, opts: { createdBy?: string; comment?: string } = {}): Promise<ImageRecord> {
    checkImageName(image);
    if (this.state.images[image]) throw new ThinpoolError('EEXIST', `an image named ${quoteName(image)} already exists`);
    const c = this.container(name);
    const base = this.image(c.image);
    const top = this.topVolume(base);
    const vol = this.containerVolume(name);
    const diffId = await withFs(top, (a) =>
      withFs(
        vol,
        async (b) => {
          const changes = await treeChanges(a, b, Date.parse(c.created) - 2000);
          return changesDigest(b, changes);
        },
        { readOnly: true },
      ),
    );
    const diffIds = [...base.diffIds, diffId];
    const chain = chainIds(diffIds)[diffIds.length - 1];
    const now = new Date().toISOString();
    const history: HistoryEntry[] = [
      ...base.history,
      {
        created: now,
        created_by: opts.createdBy ?? `thinpool container commit ${name}`,
        ...(opts.comment ? { comment: opts.comment } : {}),
      },
    ];
    const config: ImageConfig = {
      created: now,
      architecture: 'amd64',
      os: 'linux',
      ...(base.config ? { config: base.config } : {}),
      rootfs: { type: 'layers', diff_ids: diffIds },
      history,
    };
    const id = `sha256:${createHash('sha256').update(JSON.stringify(config)).digest('hex')}`;
    return this.tx(() => {
      if (!this.snapshotter.has(chain)) this.snapshotter.commitCopy(chain, c.key, { 'containerd.io/snapshot/layer.diffid': diffId });
      const rec: ImageRecord = {
        name: image,
        id,
        diffIds,
        chainIds: [...base.chainIds, chain],
        created: now,
        history,
        ...(base.config ? { config: base.config } : {}),
        importedAt: now,
      };
      this.state.images[image] = rec;
      return clone(rec);
    });
  }

  // ---- resolving volumes for fs commands ----
  /** A container name, an image name (its top layer), a snapshot key, or a pool volume name. */
  resolveVolume(ref: string): Volume {
    if (this.state.containers[ref]) return this.containerVolume(ref);
    if (this.state.images[ref]) return this.topVolume(this.state.images[ref]);
    if (this.snapshotter.has(ref)) return this.snapshotter.volume(ref);
    return this.pool.volume(ref);
  }
}
