// Space-map bitmaps (spec 4.2): 2-bit entries after a 16-byte header; entry i uses bits 2i (weight 2) and
// 2i+1 (weight 1) of the little-endian payload.
import { ENTRIES_PER_BITMAP } from './abi';

export function bitmapGet(p: usize, i: u32): u32 {
  const byte = <u32>load<u8>(p + 16 + (<usize>i >> 2));
  const s = (i & 3) << 1;
  return (((byte >> s) & 1) << 1) | ((byte >> (s + 1)) & 1);
}

export function bitmapSet(p: usize, i: u32, v: u32): void {
  const at = p + 16 + (<usize>i >> 2);
  const s = (i & 3) << 1;
  let byte = <u32>load<u8>(at) & ~(<u32>3 << s);
  byte |= ((v >> 1) & 1) << s;
  byte |= (v & 1) << (s + 1);
  store<u8>(at, <u8>byte);
}

// @ts-ignore: decorator
@inline function freeMask(w: u64): u64 {
  // bit 2i of the result is set when entry i of the word is 0.
  return ~(w | (w >> 1)) & 0x5555555555555555;
}

/**
 * First entry i in [from, to) that is free (0) in `cur` and in `com` (the committed copy of the same bitmap;
 * pass cur twice when there is none), or -1. 32 entries per 64-bit word.
 */
export function bitmapFindFree(cur: usize, com: usize, from: u32, to: u32): i32 {
  if (from >= to) return -1;
  let w = from >> 5;
  const last = (to - 1) >> 5;
  while (w <= last) {
    let m = freeMask(load<u64>(cur + 16 + (<usize>w << 3))) & freeMask(load<u64>(com + 16 + (<usize>w << 3)));
    if (w == (from >> 5)) m &= ~(<u64>0) << (<u64>(from & 31) << 1);
    if (w == last && (to & 31) != 0) m &= (<u64>1 << (<u64>(to & 31) << 1)) - 1;
    if (m != 0) return <i32>((w << 5) + (<u32>ctz(m) >> 1));
    w++;
  }
  return -1;
}

/** Number of free entries among the first n. */
export function bitmapCountFree(p: usize, n: u32): u32 {
  let free: u32 = 0;
  const words = n >> 5;
  for (let w: u32 = 0; w < words; w++) free += <u32>popcnt(freeMask(load<u64>(p + 16 + (<usize>w << 3))));
  for (let i = words << 5; i < n; i++) if (bitmapGet(p, i) == 0) free++;
  return free;
}

/** Write entries [0, n) of bitmap p from min(counts[base + i], 3); entries >= n are zeroed. */
export function bitmapFillFromCounts(p: usize, counts: usize, base: u32, n: u32): void {
  memory.fill(p + 16, 0, 4080);
  for (let i: u32 = 0; i < n; i++) {
    let c = load<u32>(counts + (<usize>(base + i) << 2));
    if (c != 0) bitmapSet(p, i, c > 3 ? 3 : c);
  }
}
