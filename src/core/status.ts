/** Status codes returned by the WASM core (mirror of assembly/status.ts). */
export const enum Status {
  OK = 0,
  BAD_CHECKSUM = 1,
  BAD_BLOCKNR = 2,
  BAD_FLAGS = 3,
  BAD_MAX_ENTRIES = 4,
  BAD_NR_ENTRIES = 5,
  BAD_VALUE_SIZE = 6,
  KEYS_OUT_OF_ORDER = 7,
  TOO_DEEP = 8,
  HOST_ERROR = 9,
  NO_METADATA_SPACE = 10,
  METADATA_FULL = 11,
  REF_UNDERFLOW = 12,
  REF_BEYOND = 13,
  NESTED_TOO_DEEP = 14,
  WORK_OVERFLOW = 15,
  DATA_BEYOND = 16,
  DATA_REF_MISSING = 17,
  DATA_REF_UNDERFLOW = 18,
  NO_DATA_SPACE = 19,
  DATA_SHRINK = 20,
  DATA_MAP_TOO_BIG = 21,
}

/** thin_check-like wording for a status. */
export function statusText(s: number): string {
  switch (s) {
    case Status.BAD_CHECKSUM: return 'bad checksum';
    case Status.BAD_BLOCKNR: return 'bad block nr';
    case Status.BAD_FLAGS: return 'bad flags';
    case Status.BAD_MAX_ENTRIES: return 'bad max_entries';
    case Status.BAD_NR_ENTRIES: return 'bad nr_entries';
    case Status.BAD_VALUE_SIZE: return 'value size mismatch';
    case Status.KEYS_OUT_OF_ORDER: return 'keys are out of order';
    case Status.TOO_DEEP: return 'walk exceeded its depth bound (cycle?)';
    case Status.NO_METADATA_SPACE: return 'out of metadata space';
    case Status.METADATA_FULL: return 'every metadata block is in use';
    case Status.REF_UNDERFLOW: return 'reference count underflow';
    case Status.REF_BEYOND: return 'reference to a block beyond the metadata device';
    case Status.NESTED_TOO_DEEP: return 'btree updates nested too deeply';
    case Status.WORK_OVERFLOW: return 'tree deletion stack overflow';
    case Status.DATA_BEYOND: return 'data block beyond the data device';
    case Status.DATA_REF_MISSING: return 'data bitmap entry 3 without a ref-count entry';
    case Status.DATA_REF_UNDERFLOW: return 'data block reference count underflow';
    case Status.NO_DATA_SPACE: return 'out of data space';
    case Status.DATA_SHRINK: return 'the data space map cannot shrink';
    case Status.DATA_MAP_TOO_BIG: return 'the data device needs more space-map bitmaps than the metadata device has blocks';
    default: return `status ${s}`;
  }
}
