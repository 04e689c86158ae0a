// thinpool's public API (the package's main entry): the pool, its volumes and their types, the typed errors.
// What is exported here is the supported surface; everything else under dist/ may change without notice.
export { ThinPool, isPoolDir } from './thin/pool.js';
export type {
  PoolStorage,
  PoolFormatOptions,
  PoolOpenOptions,
  PoolStatus,
  PoolMode,
  VolumeInfo,
  CreateOptions,
  SnapshotOptions,
} from './thin/pool.js';
export { Volume, type Extent } from './thin/volume.js';
export type { DiffRange } from './thin/usage.js';
export { ThinpoolError, isThinpoolError, type ErrorCode } from './errors.js';
export type { BlockDevice } from './io/block-device.js';
export { FileDevice } from './io/file-device.js';
export { MemoryDevice } from './io/memory-device.js';
export { MemoryCatalogStore, FileCatalogStore, type CatalogStore, type VolumeRecord } from './thin/catalog.js';
export { ThinMetadata } from './thin/metadata.js';
export { parseSize, formatSize } from './sizes.js';
export { NbdServer, type NbdServerOptions } from './nbd/server.js';
export { readPskFile, readCertificateDir, type NbdTlsOptions } from './nbd/tls.js';
// Send and receive: volumes as Ceph rbd export-diff streams.
export { sendStream, planSend, type SendOptions, type SendPlan } from './stream/send.js';
export { receive, dropIncompleteReceives, type ReceiveOptions, type ReceiveResult } from './stream/receive.js';
export { decodeDiff, DiffEncoder, type DiffRecord, type DiffVersion } from './stream/rbd-diff.js';
// Images and containers: import from 'thinpool/images'; the test store: 'thinpool/testing' and 'thinpool/vitest'.
