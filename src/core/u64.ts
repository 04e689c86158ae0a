/**
 * u64 values as JS numbers. Block numbers, keys and counts cross the WASM boundary and sit in metadata blocks as
 * (lo, hi) u32 halves; the host joins them as `lo + hi * TWO32`, exact below 2^53 (every block number and key
 * thinpool makes), and splits them with `v >>> 0` and `Math.floor(v / TWO32)`.
 */
export const TWO32 = 4294967296;
