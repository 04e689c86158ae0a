/**
 * The catalog: what dm-thin metadata cannot hold (volume names, virtual sizes, origins, labels, pool settings),
 * keyed by dm-thin device id.
 *
 * Choice: a sidecar committed in two phases and tied to the metadata superblock, rather than a hidden thin
 * device. A hidden device would need a reserved device id (fixtures already use the top id 16777215) and would
 * show up in thin_ls/thin_dump of every pool; the sidecar keeps the metadata file exactly what the kernel would
 * write. Protocol, run by the pool's commit:
 *   1. stage(catalog, fingerprint of the NEW superblock)  -- durable before the superblock is written
 *   2. the metadata commit writes and flushes the superblock
 *   3. publish()                                           -- atomically replaces the published catalog
 * On open, a staged catalog whose fingerprint equals the superblock on disk is rolled forward (the crash came
 * between 2 and 3); any other staged catalog is discarded (the crash came before 2). So after a crash at any
 * point, the catalog and the metadata describe the same commit. Entries whose device no longer exists (or was
 * changed by another tool) are reconciled on open.
 */
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { syncDir, writeFileDurable } from '../io/durable-file.js';
import { dirname, join } from 'node:path';
import { ThinpoolError } from '../errors.js';

export interface VolumeRecord {
  id: number;
  name: string;
  sizeBytes: number;
  /** Device id of the origin this volume was snapshotted from. */
  origin?: number;
  createdAt: string;
  labels: Record<string, string>;
  /** Committed image layers and views: writes are refused through every path. */
  readOnly?: boolean;
}

export interface CatalogData {
  format: 'thinpool-catalog';
  version: 1;
  volumes: VolumeRecord[];
  /** Pool-level settings (low-water marks, policies) and data owned by layers above (images, snapshotter). */
  settings: Record<string, unknown>;
  extensions: Record<string, unknown>;
}

export function emptyCatalog(): CatalogData {
  return { format: 'thinpool-catalog', version: 1, volumes: [], settings: {}, extensions: {} };
}

/** A catalog as staged (and, in stores that copy rather than rename, as published): tied to a superblock. */
export interface Envelope {
  fingerprint: string;
  catalog: CatalogData;
}

/** Where a catalog lives. stage() and publish() must each be durable and atomic when they return. */
export interface CatalogStore {
  readPublished(): CatalogData | null;
  readStaged(): Envelope | null;
  stage(catalog: CatalogData, fingerprint: string): void;
  publish(): void;
  discardStaged(): void;
  /** Optional (stores readers share with a writer): record the catalog of a held metadata root, tagged. */
  hold?(catalog: CatalogData, tag: string): void;
  /** Optional: forget the catalog recorded by hold(). */
  dropHeld?(): void;
}

/** Parse a stored envelope; ECORRUPT (naming `what`) when it is not one. */
export function parseEnvelope(text: string, what: string): Envelope {
  try {
    const v = JSON.parse(text) as Envelope;
    if (v?.catalog?.format !== 'thinpool-catalog') throw new Error('not a thinpool catalog');
    return v;
  } catch (e) {
    throw new ThinpoolError('ECORRUPT', `${what} is not a valid thinpool catalog: ${(e as Error).message}`, { cause: e });
  }
}

export class FileCatalogStore implements CatalogStore {
  readonly published: string;
  readonly staged: string;
  constructor(dir: string) {
    this.published = join(dir, 'catalog.json');
    this.staged = join(dir, 'catalog.next.json');
  }
  readPublished(): CatalogData | null {
    if (!existsSync(this.published)) return null;
    return parseEnvelope(readFileSync(this.published, 'utf8'), this.published).catalog;
  }
  readStaged(): Envelope | null {
    if (!existsSync(this.staged)) return null;
    try {
      return parseEnvelope(readFileSync(this.staged, 'utf8'), this.staged);
    } catch {
      return null; // a torn staged file never reached its fsync: the commit did not happen
    }
  }
  stage(catalog: CatalogData, fingerprint: string): void {
    writeFileDurable(this.staged, JSON.stringify({ fingerprint, catalog } satisfies Envelope, null, 1));
  }
  publish(): void {
    renameSync(this.staged, this.published);
    syncDir(dirname(this.published));
  }
  discardStaged(): void {
    rmSync(this.staged, { force: true });
  }
}

export class MemoryCatalogStore implements CatalogStore {
  private published: string | null = null;
  private staged: string | null = null;
  readPublished(): CatalogData | null {
    return this.published === null ? null : (JSON.parse(this.published) as Envelope).catalog;
  }
  readStaged(): Envelope | null {
    return this.staged === null ? null : (JSON.parse(this.staged) as Envelope);
  }
  stage(catalog: CatalogData, fingerprint: string): void {
    this.staged = JSON.stringify({ fingerprint, catalog });
  }
  publish(): void {
    if (this.staged !== null) this.published = this.staged;
    this.staged = null;
  }
  discardStaged(): void {
    this.staged = null;
  }
  /** A copy, for crash tests (the store's state is what survives a crash). */
  clone(): MemoryCatalogStore {
    const c = new MemoryCatalogStore();
    c.published = this.published;
    c.staged = this.staged;
    return c;
  }
}

/**
 * The catalog of the superblock on disk, read without changing the store: what a read-only open sees. A staged
 * catalog tied to that superblock is the one its commit wrote (the crash, or the writer, is between steps 2 and
 * 3); the published one would name the volumes of the commit before.
 */
export function catalogAt(store: Pick<CatalogStore, 'readStaged' | 'readPublished'>, superblockFingerprint: string): CatalogData {
  const staged = store.readStaged();
  if (staged !== null && staged.fingerprint === superblockFingerprint) return staged.catalog;
  return store.readPublished() ?? emptyCatalog();
}

/** Bring the store to the state of the superblock on disk (see the protocol above). */
export function recoverCatalog(store: CatalogStore, superblockFingerprint: string): CatalogData {
  const staged = store.readStaged();
  if (staged) {
    if (staged.fingerprint === superblockFingerprint) store.publish();
    else store.discardStaged();
  }
  return store.readPublished() ?? emptyCatalog();
}
