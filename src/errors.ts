/**
 * Typed errors. Every error thrown by thinpool is a `ThinpoolError` with a stable `code`; errors about metadata
 * name the structure and the metadata block (`mblock`) like thin_check does ("bad checksum in btree node
 * (block 5)").
 */
export type ErrorCode =
  | 'EIO' // an I/O call of a device failed
  | 'EBADCSUM' // a metadata block failed its checksum
  | 'EBADBLOCKNR' // a metadata block does not carry its own block number
  | 'EBADNODE' // a btree node breaks a structural rule (flags, bounds, key order, value size)
  | 'EBADSUPER' // the superblock is not a dm-thin superblock or uses unsupported features
  | 'ECYCLE' // a walk exceeded its bound (cyclic or absurdly deep metadata)
  | 'ECORRUPT' // other inconsistency found by a check
  | 'ENOSPC_DATA' // no free data block
  | 'ENOSPC_METADATA' // no free metadata block
  | 'EEXIST' // a volume name or device id already exists
  | 'ENOENT' // no such volume, device or pool
  | 'EINVAL' // bad argument
  | 'EBUSY' // the pool is open elsewhere, or a volume is in use / has children
  | 'EROFS' // the pool or volume is read-only (needs_check, failed, committed snapshot)
  | 'ECLOSED' // the pool or device is closed
  | 'EFENCED' // this client was fenced off a shared pool (its lock was broken): nothing it writes lands
  | 'ESTALE' // a read-only open of a shared pool whose writer committed past what it reads: open it again
  | 'EFAILED' // the pool failed (a WASM trap or an unrecoverable I/O error) and refuses further work
  | 'EABI' // the WASM core is missing, or was built from another version of the host's contract (assembly/abi.ts)
  | 'EXML' // malformed thin_dump XML
  | 'ESTREAM'; // a send/receive stream (rbd diff format) that is truncated or malformed

export interface ErrorDetail {
  /** The metadata structure concerned, e.g. "btree node", "superblock", "space map bitmap". */
  structure?: string;
  /** The metadata block number concerned. */
  mblock?: number;
  cause?: unknown;
}

export class ThinpoolError extends Error {
  readonly code: ErrorCode;
  readonly structure?: string;
  readonly mblock?: number;
  constructor(code: ErrorCode, message: string, detail: ErrorDetail = {}) {
    super(message, detail.cause === undefined ? undefined : { cause: detail.cause });
    this.name = 'ThinpoolError';
    this.code = code;
    this.structure = detail.structure;
    this.mblock = detail.mblock;
  }

  /** An error about one metadata block, worded like thin_check: "bad checksum in btree node (block 5)". */
  static metadata(code: ErrorCode, what: string, structure: string, mblock: number): ThinpoolError {
    return new ThinpoolError(code, `${what} in ${structure} (block ${mblock})`, { structure, mblock });
  }
}

export function isThinpoolError(e: unknown, code?: ErrorCode): e is ThinpoolError {
  return e instanceof ThinpoolError && (code === undefined || e.code === code);
}
