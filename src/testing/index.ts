/**
 * thinpool/testing: copy-on-write test disks. Load a golden image once, give every test its own writable fork
 * in constant time, and let it vanish afterwards. Runner-agnostic (node:test, mocha, jest, plain scripts); the
 * vitest fixture is in `thinpool/vitest`.
 */
export {
  GoldenStore,
  Golden,
  Fork,
  exportVolume,
  exportVolumeSync,
  isAllZero,
  volumeOf,
  DEFAULT_POOL_BYTES,
  type GoldenStoreOptions,
  type TempStoreOptions,
  type LoadImageOptions,
  type ForkOptions,
  type StoreUsage,
  type VolumeLike,
} from './store.js';
export { GoldenSuite, goldenSuite, volumeDigest, type GoldenSuiteOptions } from './suite.js';
export {
  createVolumeReadStream,
  createVolumeWriteStream,
  type VolumeReadStreamOptions,
  type VolumeWriteStreamOptions,
} from './streams.js';
export { VolumeRandomAccess, randomAccess } from './random-access.js';
export { VolumeDisk, type VolumeDiskOptions } from './disk.js';
