// Btree node codec and primitives on 4 KiB nodes resident in WASM memory (spec 3.1-3.3).
// Layout: csum u32 @0, flags u32 @4, blocknr u64 @8, nr_entries u32 @16, max_entries u32 @20,
// value_size u32 @24, padding @28, keys u64[max] @32, values [max * value_size] after ALL key slots.
// Invariant kept by every primitive: slots >= nr_entries are zero.
import { blockChecksum } from './crc32c';
import { Status as S, Salt } from './abi';

export const INTERNAL: u32 = 1;
export const LEAF: u32 = 2;

// @ts-ignore: decorator
@inline export function nrEntries(p: usize): u32 { return load<u32>(p, 16); }
// @ts-ignore: decorator
@inline function maxEntries(p: usize): u32 { return load<u32>(p, 20); }
// @ts-ignore: decorator
@inline function valueSize(p: usize): u32 { return load<u32>(p, 24); }
// @ts-ignore: decorator
@inline export function keyAt(p: usize, i: u32): usize { return p + 32 + (<usize>i << 3); }
// @ts-ignore: decorator
@inline export function valueAt(p: usize, i: u32): usize {
  return p + 32 + (<usize>maxEntries(p) << 3) + <usize>i * <usize>valueSize(p);
}

export function maxEntriesFor(vs: u32): u32 {
  return 3 * ((4064 / (8 + vs)) / 3);
}

/** Format an empty node in place. */
export function nodeInit(p: usize, blockLo: u32, blockHi: u32, flags: u32, vs: u32): void {
  memory.fill(p, 0, 4096);
  store<u32>(p, flags, 4);
  store<u32>(p, blockLo, 8);
  store<u32>(p, blockHi, 12);
  store<u32>(p, maxEntriesFor(vs), 20);
  store<u32>(p, vs, 24);
}

/**
 * Structural check of a node read from disk: checksum, self block number, flags, max_entries rule,
 * nr_entries bound, value size (8 for internal nodes, `leafValueSize` for leaves) and strictly increasing keys.
 */
export function nodeCheck(p: usize, blockLo: u32, blockHi: u32, leafValueSize: u32): i32 {
  if (load<u32>(p) != blockChecksum(p, Salt.Node)) return S.BAD_CHECKSUM;
  if (load<u32>(p, 8) != blockLo || load<u32>(p, 12) != blockHi) return S.BAD_BLOCKNR;
  const flags = load<u32>(p, 4);
  if (flags != INTERNAL && flags != LEAF) return S.BAD_FLAGS;
  const max = maxEntries(p);
  const vs = valueSize(p);
  if (max % 3 != 0 || max == 0 || <u64>32 + <u64>max * (8 + <u64>vs) > 4096) return S.BAD_MAX_ENTRIES;
  const n = nrEntries(p);
  if (n > max) return S.BAD_NR_ENTRIES;
  if (vs != (flags == INTERNAL ? 8 : leafValueSize)) return S.BAD_VALUE_SIZE;
  if (flags == INTERNAL && n == 0) return S.BAD_NR_ENTRIES;
  for (let i: u32 = 1; i < n; i++) {
    if (load<u64>(keyAt(p, i - 1)) >= load<u64>(keyAt(p, i))) return S.KEYS_OUT_OF_ORDER;
  }
  return S.OK;
}

/** Greatest i with key[i] <= key, or -1. */
export function nodeLowerBound(p: usize, keyLo: u32, keyHi: u32): i32 {
  return nodeLowerBound64(p, (<u64>keyHi << 32) | <u64>keyLo);
}

export function nodeLowerBound64(p: usize, key: u64): i32 {
  let lo: i32 = -1;
  let hi: i32 = <i32>nrEntries(p);
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (load<u64>(keyAt(p, mid)) <= key) lo = mid; else hi = mid;
  }
  return lo;
}

/** Insert (key, value bytes at src) at index i; the node must not be full. */
export function nodeInsertAt(p: usize, i: u32, keyLo: u32, keyHi: u32, src: usize): void {
  nodeInsertAt64(p, i, (<u64>keyHi << 32) | <u64>keyLo, src);
}

export function nodeInsertAt64(p: usize, i: u32, key: u64, src: usize): void {
  const n = nrEntries(p);
  const vs = <usize>valueSize(p);
  memory.copy(keyAt(p, i + 1), keyAt(p, i), <usize>(n - i) << 3);
  memory.copy(valueAt(p, i + 1), valueAt(p, i), <usize>(n - i) * vs);
  store<u64>(keyAt(p, i), key);
  memory.copy(valueAt(p, i), src, vs);
  store<u32>(p, n + 1, 16);
}

/** Remove entry i, keeping slots >= nr zero. */
export function nodeRemoveAt(p: usize, i: u32): void {
  const n = nrEntries(p);
  const vs = <usize>valueSize(p);
  memory.copy(keyAt(p, i), keyAt(p, i + 1), <usize>(n - i - 1) << 3);
  memory.copy(valueAt(p, i), valueAt(p, i + 1), <usize>(n - i - 1) * vs);
  store<u64>(keyAt(p, n - 1), 0);
  memory.fill(valueAt(p, n - 1), 0, vs);
  store<u32>(p, n - 1, 16);
}

/** Move entries [keep, n) of src into the empty node dst (same kind). */
export function nodeSplitInto(src: usize, dst: usize, keep: u32): void {
  const n = nrEntries(src);
  const vs = <usize>valueSize(src);
  const moved = n - keep;
  memory.copy(keyAt(dst, 0), keyAt(src, keep), <usize>moved << 3);
  memory.copy(valueAt(dst, 0), valueAt(src, keep), <usize>moved * vs);
  memory.fill(keyAt(src, keep), 0, <usize>moved << 3);
  memory.fill(valueAt(src, keep), 0, <usize>moved * vs);
  store<u32>(src, keep, 16);
  store<u32>(dst, moved, 16);
}

/** Append every entry of src to dst (dst must have room); src becomes empty. */
export function nodeMergeInto(dst: usize, src: usize): void {
  const n = nrEntries(src);
  const d = nrEntries(dst);
  const vs = <usize>valueSize(src);
  memory.copy(keyAt(dst, d), keyAt(src, 0), <usize>n << 3);
  memory.copy(valueAt(dst, d), valueAt(src, 0), <usize>n * vs);
  memory.fill(keyAt(src, 0), 0, <usize>n << 3);
  memory.fill(valueAt(src, 0), 0, <usize>n * vs);
  store<u32>(dst, d + n, 16);
  store<u32>(src, 0, 16);
}

/** Move entries between adjacent siblings so that `left` holds `target` entries. */
export function nodeRedistribute(left: usize, right: usize, target: u32): void {
  const l = nrEntries(left);
  const r = nrEntries(right);
  const vs = <usize>valueSize(left);
  if (l > target) {
    const k = l - target;
    memory.copy(keyAt(right, k), keyAt(right, 0), <usize>r << 3);
    memory.copy(valueAt(right, k), valueAt(right, 0), <usize>r * vs);
    memory.copy(keyAt(right, 0), keyAt(left, target), <usize>k << 3);
    memory.copy(valueAt(right, 0), valueAt(left, target), <usize>k * vs);
    memory.fill(keyAt(left, target), 0, <usize>k << 3);
    memory.fill(valueAt(left, target), 0, <usize>k * vs);
    store<u32>(left, target, 16);
    store<u32>(right, r + k, 16);
  } else if (l < target) {
    const k = target - l;
    memory.copy(keyAt(left, l), keyAt(right, 0), <usize>k << 3);
    memory.copy(valueAt(left, l), valueAt(right, 0), <usize>k * vs);
    memory.copy(keyAt(right, 0), keyAt(right, k), <usize>(r - k) << 3);
    memory.copy(valueAt(right, 0), valueAt(right, k), <usize>(r - k) * vs);
    memory.fill(keyAt(right, r - k), 0, <usize>k << 3);
    memory.fill(valueAt(right, r - k), 0, <usize>k * vs);
    store<u32>(left, target, 16);
    store<u32>(right, r - k, 16);
  }
}
