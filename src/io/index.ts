/** The block-device layer: the interface and its implementations. */
export type { BlockDevice } from './block-device.js';
export { FileDevice, allocatedBytes, holePunchPath, PUNCH_MIN_BYTES, type FileDeviceOptions, type HolePunchPath } from './file-device.js';
export { MemoryDevice, MEMORY_CHUNK_BYTES, checkRange, checkSize } from './memory-device.js';
export { CrashClock, CrashDevice, SECTOR_BYTES } from './crash-device.js';
export { FaultDevice, type FaultPlan } from './fault-device.js';
export { RecordingDevice, type RecordedEvent } from './recording-device.js';
export { ReadAheadDevice, READ_AHEAD_BYTES } from './read-ahead-device.js';
export { RadosCluster, RadosIoctx, type RadosConnectOptions, type Locker } from './librados.js';
export { RadosDevice, DEFAULT_OBJECT_BYTES, objectName, type RadosDeviceOptions } from './rados-device.js';
