// Images and containers on thin snapshots (see docs/images.md).
export {
  ImageStore,
  IMAGES_EXTENSION,
  type ImageRecord,
  type ContainerRecord,
  type ImportResult,
  type HistoryRow,
} from './images.js';
export type { Change } from './changes.js';
export {
  Snapshotter,
  EXTENSION as SNAPSHOTTER_EXTENSION,
  OWNER_LABEL,
  type SnapshotInfo,
  type Kind,
  type Usage,
  type WalkFilter,
  type SnapshotterOptions,
} from './snapshotter.js';
export { FsSession, FsError, withFs, type FsStat, type PutEntry } from './fs-worker.js';
export { applyLayer, cleanPath, type ApplyResult } from './layer.js';
export { readSource, chainIds, type ImageSource, type ImageConfig, type HistoryEntry, type LayerSource } from './source.js';
export { formatExt4 } from './mkfs.js';
export { setInodeTimes, patchInodes, type InodeChanges } from './ext4-inodes.js';
