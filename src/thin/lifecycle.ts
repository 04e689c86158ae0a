/**
 * Pool lifecycle below the ThinPool class: the geometry rules, the storage of a file pool (a directory holding
 * `metadata`, `data`, `catalog.json`, `data.hwm`), of a pool in Ceph RADOS (`rados://CEPH_POOL/NAME`,
 * rados-pool.ts) or of a memory pool, formatting and opening the metadata with its catalog, reconciling the
 * catalog, closing.
 *
 * Contract:
 * - Block sizes are multiples of 64 KiB in [64 KiB, 1 GiB]; the metadata device defaults to dm-thin's 48 bytes
 *   per data block, clamped to [2 MiB, 16 GiB].
 * - A file pool is formatted only into a directory that holds none of its files (EEXIST), and opened only where
 *   `metadata` exists (ENOENT). The pool's lock (lock.ts; for RADOS a cls_lock, rados-pool.ts) is taken before
 *   any file is created or opened, and released (with every device opened so far closed) when formatting or
 *   opening fails.
 * - Opening writable recovers the catalog against the superblock on disk (a staged catalog whose fingerprint
 *   matches is published, catalog.ts); opening read-only reads the published catalog and changes nothing.
 * - The data device must hold the blocks the superblock describes (EBADSUPER otherwise).
 * - Catalog entries for devices the metadata no longer has are dropped when a pool is opened (reconcile).
 * - An unclean stop (the lock was taken over from a holder that died, or the `unclean` marker a read-only
 *   opener left after such a takeover) is reported in `storage.uncleanStop` to a writable opener, which
 *   releases the uncommitted blocks and then removes the marker (pool.ts).
 * - A read-only open of a RADOS pool takes no lock and reads one commit (rados-reader.ts): when the writer
 *   commits while it is being opened, the open starts over (up to OPEN_ATTEMPTS times).
 */
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ThinpoolError } from '../errors.js';
import type { BlockDevice } from '../io/block-device.js';
import { FileDevice } from '../io/file-device.js';
import { MemoryDevice } from '../io/memory-device.js';
import { ReadAheadDevice } from '../io/read-ahead-device.js';
import { MAX_METADATA_BLOCKS } from '../pd/space-map-metadata.js';
import { catalogAt, FileCatalogStore, MemoryCatalogStore, recoverCatalog, type CatalogData } from './catalog.js';
import { superblockFingerprint } from './commit.js';
import { FileHighWaterStore, MemoryHighWaterStore } from './high-water.js';
import { lockPool } from './lock.js';
import type { CacheBlocks } from './metadata-engine.js';
import { ThinMetadata } from './metadata.js';
import type { PoolState, PoolStorage } from './pool-state.js';
import { type CephOptions, formatRadosStorage, isRadosAddress, openRadosStorage } from './rados-pool.js';
import { OPEN_ATTEMPTS } from './rados-reader.js';

export const MIN_BLOCK_SIZE = 64 * 1024;
export const MAX_BLOCK_SIZE = 1024 * 1024 * 1024;
const MIN_METADATA_BYTES = 2 * 1024 * 1024;
const MAX_METADATA_BYTES = MAX_METADATA_BLOCKS * 4096;

export interface PoolFormatOptions {
  /** Data device size in bytes (rounded down to whole blocks). */
  size: number;
  /** Data block size in bytes: 64 KiB to 1 GiB, a multiple of 64 KiB. Default 64 KiB. */
  blockSize?: number;
  /** Metadata device size in bytes; default 48 x size / blockSize, clamped to [2 MiB, 16 GiB]. */
  metadataSize?: number;
  cacheBlocks?: number;
  /** Entries of the read lookup cache (default 32768 = 1 MiB; 0 turns it off). */
  mappingCacheEntries?: number;
  /** For a `rados://CEPH_POOL/NAME` pool: the cluster, client and data object size. */
  ceph?: CephOptions;
}

export interface PoolOpenOptions {
  /** Metadata cache size in 4 KiB blocks, or a rule from the data blocks the superblock describes (CacheBlocks). */
  cacheBlocks?: CacheBlocks;
  /** Entries of the read lookup cache (default 32768 = 1 MiB; 0 turns it off). */
  mappingCacheEntries?: number;
  readOnly?: boolean;
  /**
   * Read-only opens of a file pool only (ignored otherwise): read the metadata through a `ReadAheadDevice` of
   * this window in bytes, for a reader that walks the metadata about once in file order (`thinpool ls`).
   */
  readAheadBytes?: number;
  /** For a `rados://CEPH_POOL/NAME` pool: the cluster and client. */
  ceph?: CephOptions;
}

/** The dm-thin rule: 48 bytes per data block, clamped to [2 MiB, 16 GiB], in whole 4 KiB blocks. */
export function defaultMetadataSize(size: number, blockSize: number): number {
  const raw = Math.ceil((48 * size) / blockSize);
  const clamped = Math.min(MAX_METADATA_BYTES, Math.max(MIN_METADATA_BYTES, raw));
  return Math.ceil(clamped / 4096) * 4096;
}

function checkBlockSize(bs: number): void {
  if (!Number.isSafeInteger(bs) || bs < MIN_BLOCK_SIZE || bs > MAX_BLOCK_SIZE || bs % MIN_BLOCK_SIZE !== 0) {
    throw new ThinpoolError('EINVAL', `block size ${bs} must be a multiple of 64 KiB between 64 KiB and 1 GiB`);
  }
}

/**
 * Create the files (or RADOS objects) of a new pool at dir under its lock and hand their storage to format
 * (which owns it then).
 */
export function createFileStorage<T>(
  dir: string,
  opts: PoolFormatOptions,
  format: (storage: PoolStorage, opts: PoolFormatOptions) => T,
): T {
  const bs = opts.blockSize ?? MIN_BLOCK_SIZE;
  checkBlockSize(bs);
  const nrData = Math.floor(opts.size / bs);
  if (!(nrData >= 1)) throw new ThinpoolError('EINVAL', `pool size ${opts.size} is smaller than one block (${bs} bytes)`);
  const metaSize = opts.metadataSize ?? defaultMetadataSize(opts.size, bs);
  if (metaSize < 64 * 1024) throw new ThinpoolError('EINVAL', `metadata size ${metaSize} is below 64 KiB`);
  if (isRadosAddress(dir)) {
    const storage = formatRadosStorage(dir, { dataSize: nrData * bs, metadataSize: Math.min(metaSize, MAX_METADATA_BYTES) }, opts.ceph);
    try {
      const pool = format(storage, { ...opts, blockSize: bs });
      storage.finish();
      return pool;
    } catch (e) {
      storage.release();
      throw e;
    }
  }
  mkdirSync(dir, { recursive: true });
  for (const f of ['metadata', 'data', 'catalog.json']) {
    if (existsSync(join(dir, f))) throw new ThinpoolError('EEXIST', `${join(dir, f)} exists: ${dir} already holds a pool`);
  }
  const lock = lockPool(dir);
  try {
    const metadata = FileDevice.create(join(dir, 'metadata'), Math.min(metaSize, MAX_METADATA_BYTES));
    const data = FileDevice.create(join(dir, 'data'), nrData * bs);
    const highWater = new FileHighWaterStore(dir);
    highWater.write(0);
    const storage: PoolStorage = { metadata, data, catalog: new FileCatalogStore(dir), release: () => lock.release(), dir, highWater };
    return format(storage, { ...opts, blockSize: bs });
  } catch (e) {
    lock.release();
    throw e;
  }
}

/** Open the files (or RADOS objects) of the pool at dir under its lock and hand their storage to open (which owns it then). */
export function openFileStorage<T>(dir: string, opts: PoolOpenOptions, open: (storage: PoolStorage) => T): T {
  if (isRadosAddress(dir)) {
    for (let attempt = 1; ; attempt++) {
      const storage = openRadosStorage(dir, { ...opts.ceph, readOnly: opts.readOnly });
      try {
        const pool = open(storage);
        storage.settle?.();
        return pool;
      } catch (e) {
        storage.release();
        // A read-only open reads one commit: the writer committed while it was being read, so read the next.
        if ((e as ThinpoolError).code === 'ESTALE' && attempt < OPEN_ATTEMPTS) continue;
        throw e;
      }
    }
  }
  if (!existsSync(join(dir, 'metadata'))) {
    throw new ThinpoolError('ENOENT', `${dir} is not a thinpool pool (no metadata file)`);
  }
  const lock = lockPool(dir, { readOnly: opts.readOnly });
  const marker = join(dir, UNCLEAN_MARKER);
  let uncleanStop = false;
  if (opts.readOnly) {
    // A reader cannot release the dead writer's blocks: leave word for the next writer.
    if (lock.tookOverStale) {
      try {
        writeFileSync(marker, 'the last writer stopped without closing the pool\n');
      } catch {
        /* a read-only directory: the next writer cannot know */
      }
    }
  } else {
    uncleanStop = lock.tookOverStale || existsSync(marker);
  }
  try {
    const metadata = readAhead(FileDevice.open(join(dir, 'metadata'), { readOnly: opts.readOnly }), opts);
    let data: BlockDevice;
    try {
      data = FileDevice.open(join(dir, 'data'), { readOnly: opts.readOnly });
    } catch (e) {
      metadata.close();
      throw e;
    }
    const storage: PoolStorage = {
      metadata,
      data,
      catalog: new FileCatalogStore(dir),
      release: () => lock.release(),
      dir,
      highWater: new FileHighWaterStore(dir),
      uncleanStop,
    };
    try {
      return open(storage);
    } catch (e) {
      metadata.close();
      data.close();
      throw e;
    }
  } catch (e) {
    lock.release();
    throw e;
  }
}

/** dev as is, or (a read-only open asking for it) a read-ahead view of it, which closes dev when closed. */
export function readAhead(dev: BlockDevice, opts: Pick<PoolOpenOptions, 'readOnly' | 'readAheadBytes'>): BlockDevice {
  return opts.readOnly === true && opts.readAheadBytes !== undefined ? new ReadAheadDevice(dev, opts.readAheadBytes) : dev;
}

/** File a read-only opener leaves when it took over the lock of a writer that died (see openFileStorage). */
export const UNCLEAN_MARKER = 'unclean';

/** The writer released what the dead writer left: forget the marker. */
export function clearUncleanMarker(storage: PoolStorage): void {
  if (storage.dir !== undefined) rmSync(join(storage.dir, UNCLEAN_MARKER), { force: true });
  storage.uncleanStop = false;
}

/** Sparse memory devices for an in-memory pool. */
export function memoryStorage(opts: PoolFormatOptions): PoolStorage {
  const bs = opts.blockSize ?? MIN_BLOCK_SIZE;
  checkBlockSize(bs);
  const metaSize = opts.metadataSize ?? defaultMetadataSize(opts.size, bs);
  return {
    metadata: new MemoryDevice(metaSize),
    data: new MemoryDevice(Math.floor(opts.size / bs) * bs),
    catalog: new MemoryCatalogStore(),
    highWater: new MemoryHighWaterStore(0),
  };
}

/** Format the metadata of a pool on given devices (the metadata device's size is used as is). */
export function formatMetadata(storage: PoolStorage, opts: PoolFormatOptions): ThinMetadata {
  const bs = opts.blockSize ?? MIN_BLOCK_SIZE;
  checkBlockSize(bs);
  const nrData = Math.floor(opts.size / bs);
  if (storage.data.sizeBytes < nrData * bs) {
    storage.data.resize(nrData * bs);
    // The size must be durable before a superblock claims it: the pool's commits flush data only after writes.
    storage.data.flush();
  }
  return ThinMetadata.format(storage.metadata, {
    nrDataBlocks: nrData,
    dataBlockSectors: bs / 512,
    cacheBlocks: opts.cacheBlocks,
    mappingCacheEntries: opts.mappingCacheEntries,
  });
}

/** Open the metadata of a pool and its catalog (recovered against the superblock unless read-only). */
export function openMetadata(storage: PoolStorage, opts: PoolOpenOptions): { md: ThinMetadata; catalog: CatalogData } {
  const md = ThinMetadata.open(storage.metadata, {
    cacheBlocks: opts.cacheBlocks,
    mappingCacheEntries: opts.mappingCacheEntries,
    readOnly: opts.readOnly,
  });
  const bs = md.dataBlockSectors * 512;
  if (storage.data.sizeBytes < md.nrDataBlocks * bs) {
    throw new ThinpoolError(
      'EBADSUPER',
      `data device is ${storage.data.sizeBytes} bytes but the superblock (block 0) describes ${md.nrDataBlocks} blocks of ${bs} bytes`,
      { structure: 'superblock', mblock: 0 },
    );
  }
  const fingerprint = superblockFingerprint(storage.metadata);
  const catalog = opts.readOnly ? catalogAt(storage.catalog, fingerprint) : recoverCatalog(storage.catalog, fingerprint);
  return { md, catalog };
}

/** Drop catalog entries for devices that no longer exist (e.g. deleted by another tool). */
export function reconcile(s: PoolState): void {
  const before = s.catalog.volumes.length;
  s.catalog.volumes = s.catalog.volumes.filter((v) => s.md.hasDevice(v.id));
  if (s.catalog.volumes.length !== before) s.catalogDirty = true;
}

/** Close the devices and release the storage (the caller commits first when it should). */
export function closeStorage(s: PoolState): void {
  s.closed = true;
  try {
    s.storage.metadata.close();
    s.storage.data.close();
  } finally {
    s.storage.release?.();
  }
}

/** Does dir look like a pool? */
export function isPoolDir(dir: string): boolean {
  try {
    return readdirSync(dir).includes('metadata');
  } catch {
    return false;
  }
}
