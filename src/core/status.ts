/** How a status code of the WASM core (src/core/abi.ts) reads in thin_check's words. */
import { Status } from './abi.js';

/** thin_check-like wording for a status. */
export function statusText(s: number): string {
  switch (s) {
    case Status.BAD_CHECKSUM:
      return 'bad checksum';
    case Status.BAD_BLOCKNR:
      return 'bad block nr';
    case Status.BAD_FLAGS:
      return 'bad flags';
    case Status.BAD_MAX_ENTRIES:
      return 'bad max_entries';
    case Status.BAD_NR_ENTRIES:
      return 'bad nr_entries';
    case Status.BAD_VALUE_SIZE:
      return 'value size mismatch';
    case Status.KEYS_OUT_OF_ORDER:
      return 'keys are out of order';
    case Status.TOO_DEEP:
      return 'walk exceeded its depth bound (cycle?)';
    case Status.NO_METADATA_SPACE:
      return 'out of metadata space';
    case Status.METADATA_FULL:
      return 'every metadata block is in use';
    case Status.REF_UNDERFLOW:
      return 'reference count underflow';
    case Status.REF_BEYOND:
      return 'reference to a block beyond the metadata device';
    case Status.NESTED_TOO_DEEP:
      return 'btree updates nested too deeply';
    case Status.WORK_OVERFLOW:
      return 'tree deletion stack overflow';
    case Status.DATA_BEYOND:
      return 'data block beyond the data device';
    case Status.DATA_REF_MISSING:
      return 'data bitmap entry 3 without a ref-count entry';
    case Status.DATA_REF_UNDERFLOW:
      return 'data block reference count underflow';
    case Status.NO_DATA_SPACE:
      return 'out of data space';
    case Status.DATA_SHRINK:
      return 'the data space map cannot shrink';
    case Status.DATA_MAP_TOO_BIG:
      return 'the data device needs more space-map bitmaps than the metadata device has blocks';
    default:
      return `status ${s}`;
  }
}
