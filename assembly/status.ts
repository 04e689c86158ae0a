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
