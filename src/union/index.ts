// The userspace union driver (file-level copy-on-write, AUFS / overlay semantics).
export { Union, type UnionOptions, type OpenFlags, type UnionCounters } from './union.js';
export { UnionFile } from './file.js';
export { UnionError, type UnionErrorCode } from './errors.js';
export { WHITEOUT_PREFIX, OPAQUE_MARKER, whiteoutName, isMetaName } from './names.js';
