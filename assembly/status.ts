// Status codes returned across the WASM boundary (no exceptions cross it). Mirrored in src/core/status.ts.
export const OK: i32 = 0;
export const BAD_CHECKSUM: i32 = 1;
export const BAD_BLOCKNR: i32 = 2;
export const BAD_FLAGS: i32 = 3;
export const BAD_MAX_ENTRIES: i32 = 4;
export const BAD_NR_ENTRIES: i32 = 5;
export const BAD_VALUE_SIZE: i32 = 6;
export const KEYS_OUT_OF_ORDER: i32 = 7;
export const TOO_DEEP: i32 = 8;
export const HOST_ERROR: i32 = 9;
/** Ordinary allocation would dip into the blocks kept back for commits. */
export const NO_METADATA_SPACE: i32 = 10;
/** Every metadata block is in use now or in the committed state. */
export const METADATA_FULL: i32 = 11;
export const REF_UNDERFLOW: i32 = 12;
/** A reference to a block beyond the metadata device. */
export const REF_BEYOND: i32 = 13;
export const NESTED_TOO_DEEP: i32 = 14;
export const WORK_OVERFLOW: i32 = 15;
/** A data block beyond the data device (a mapping or a count asked for it). */
export const DATA_BEYOND: i32 = 16;
/** A data bitmap entry says 3 (count >= 3) but the data ref-count tree has no entry. */
export const DATA_REF_MISSING: i32 = 17;
export const DATA_REF_UNDERFLOW: i32 = 18;
/** Every data block is in use now or in the committed state. */
export const NO_DATA_SPACE: i32 = 19;
export const DATA_SHRINK: i32 = 20;
/** The data device needs more bitmaps than the metadata device can hold. */
export const DATA_MAP_TOO_BIG: i32 = 21;
