// The metadata space map's in-core counts (spec 4.5, 4.9): a u32 reference count per metadata block, one
// "used in the committed state" flag, and this transaction's bookkeeping (blocks touched, blocks allocated,
// bitmaps whose on-disk form must be rewritten at commit). The host writes the on-disk form at commit
// (src/pd/space-map-metadata.ts) from the same arrays.
//
// Allocation rule: a block is handed out only when its count is 0 now AND it is unused in the committed state,
// so nothing the last commit can reach is overwritten. Ordinary allocations keep `reserve` blocks back so a
// commit (or an operation that frees space) can always complete.
import {
  Status as S, ENTRIES_PER_BITMAP, TX_TOUCHED, TX_NEW,
  S_NR_META, S_ALLOCATED, S_COMMITTED_ALLOCATED, S_TX_ALLOCS, S_CURSOR, S_IN_COMMIT, S_USE_RESERVE, S_REF_DIRTY,
  S_NR_TOUCHED, S_META_DIRTY_BITMAPS,
} from './abi';
import { STATE, COUNTS, COMMITTED, TXFLAGS, TOUCHED, setErr } from './tx-state';

// @ts-ignore: decorator
@inline function nrMeta(): u32 { return load<u32>(STATE, S_NR_META); }

// @ts-ignore: decorator
@inline export function metaCount(b: u64): u32 {
  return b < <u64>nrMeta() ? load<u32>(COUNTS + (<usize>b << 2)) : 0;
}

// @ts-ignore: decorator
@inline export function metaIsTxNew(b: u64): bool {
  return b < <u64>nrMeta() && (load<u8>(TXFLAGS + <usize>b) & TX_NEW) != 0;
}

/** Blocks kept back from ordinary allocations (spec 12). */
export function smReserve(): u32 {
  const r = nrMeta() / 10;
  return r < 8 ? 8 : r > 4096 ? 4096 : r;
}

function change(b: u32, c: u32): void {
  const at = COUNTS + (<usize>b << 2);
  const old = load<u32>(at);
  if (old >= 3 || c >= 3) store<u32>(STATE, 1, S_REF_DIRTY);
  if (old == 0 && c > 0) store<u32>(STATE, load<u32>(STATE, S_ALLOCATED) + 1, S_ALLOCATED);
  if (old > 0 && c == 0) store<u32>(STATE, load<u32>(STATE, S_ALLOCATED) - 1, S_ALLOCATED);
  store<u32>(at, c);
  store<u8>(STATE + S_META_DIRTY_BITMAPS + <usize>(b / ENTRIES_PER_BITMAP), 1);
  const f = TXFLAGS + <usize>b;
  const flags = load<u8>(f);
  if ((flags & TX_TOUCHED) == 0) {
    store<u8>(f, flags | TX_TOUCHED);
    const n = load<u32>(STATE, S_NR_TOUCHED);
    store<u32>(TOUCHED + (<usize>n << 2), b);
    store<u32>(STATE, n + 1, S_NR_TOUCHED);
  }
}

export function metaInc(b: u64): void {
  if (b >= <u64>nrMeta()) {
    setErr(S.REF_BEYOND, b);
    return;
  }
  change(<u32>b, load<u32>(COUNTS + (<usize>b << 2)) + 1);
}

/** Drop one reference; returns the new count (0 on error, err set). */
export function metaDec(b: u64): u32 {
  if (b >= <u64>nrMeta()) {
    setErr(S.REF_BEYOND, b);
    return 0;
  }
  const c = load<u32>(COUNTS + (<usize>b << 2));
  if (c == 0) {
    setErr(S.REF_UNDERFLOW, b);
    return 0;
  }
  change(<u32>b, c - 1);
  return c - 1;
}

/** Free blocks as reported to users: committed free, minus this transaction's allocations and the reserve. */
export function smFreeBlocks(): i32 {
  return <i32>nrMeta() - <i32>load<u32>(STATE, S_COMMITTED_ALLOCATED) - <i32>load<u32>(STATE, S_TX_ALLOCS) - <i32>smReserve();
}

function findFree(from: u32, to: u32): i32 {
  for (let i = from; i < to; i++) {
    if (load<u32>(COUNTS + (<usize>i << 2)) == 0 && load<u8>(COMMITTED + <usize>i) == 0) return <i32>i;
  }
  return -1;
}

/** Allocate a block with count 1; returns it (u64 max on error, err set). */
export function metaAlloc(): u64 {
  const nr = nrMeta();
  if (load<u32>(STATE, S_IN_COMMIT) == 0 && load<u32>(STATE, S_USE_RESERVE) == 0 && smFreeBlocks() <= 0) {
    setErr(S.NO_METADATA_SPACE, 0);
    return u64.MAX_VALUE;
  }
  let cursor = load<u32>(STATE, S_CURSOR);
  if (cursor >= nr) cursor = 0;
  let b = findFree(cursor, nr);
  if (b < 0) b = findFree(0, cursor);
  if (b < 0) {
    setErr(S.METADATA_FULL, 0);
    return u64.MAX_VALUE;
  }
  store<u32>(STATE, <u32>b + 1 >= nr ? 0 : <u32>b + 1, S_CURSOR);
  change(<u32>b, 1);
  const f = TXFLAGS + <usize>b;
  store<u8>(f, load<u8>(f) | TX_NEW);
  store<u32>(STATE, load<u32>(STATE, S_TX_ALLOCS) + 1, S_TX_ALLOCS);
  return <u64>b;
}
