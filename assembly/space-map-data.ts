// The data space map (spec 4.6, dm-space-map-disk.c): a reference count per data block, kept in 2-bit
// bitmaps (metadata blocks shadowed through the transaction manager) with counts >= 3 in the data ref-count
// btree. This module owns the counts and their in-core summary; the host loads the summary from the index tree
// on open (dsmLoad, dsmLoadBitmap) and writes the dirty index entries back at commit.
//
// Contract:
// - Counts change in this transaction's copies of the bitmaps; the committed bitmaps stay readable, and an
//   allocation hands out a block only when it is free both now and in the committed state: a block freed in
//   this transaction is never reused before the commit (its data may still be what the last commit maps).
// - Per bitmap j the table holds its current and committed block, its free count and a first-free hint
//   (entries before the hint are in use now). `allocated` counts blocks with a count > 0 now: freed blocks count
//   as free at once, as the kernel reports them, though they are reusable only after the commit.
// - Every block whose count falls to 0 is reported to the host (host.dataFreed: discard passdown after the
//   commit); that import cannot fail.
// - Level-1 mapping values reference data blocks: dataInc/dataDec are what shadowing a shared leaf and deleting
//   a tree call for them.
import {
  Status as S, BlockKind, RefKind, ENTRIES_PER_BITMAP, S_D_NR_BLOCKS, S_D_ALLOCATED, S_D_CURSOR, S_D_PENDING_FREE,
  S_D_REF_ROOT, S_D_NR_BITMAPS, S_D_CHANGED, DSM_E_BLOCK, DSM_E_COMMITTED, DSM_E_FREE, DSM_E_HINT, DSM_E_DIRTY,
  DSM_ENTRY_BYTES, DSM_NO_BLOCK,
} from './abi';
import { STATE, err, setErr } from './tx-state';
import { bitmapGet, bitmapSet, bitmapFindFree, bitmapCountFree } from './bitmap';
import { getBlock } from './block-access';
import { newBlock, shadowBlock, shadowed } from './transaction-manager';
import { insertKey, removeKey } from './btree-update';
import { lookupValue } from './btree-lookup';

// @ts-ignore: decorator
@external("host", "dataFreed")
declare function hostDataFreed(blockLo: u32, blockHi: u32, unused: u32, unused2: u32): usize; // one signature for all host imports (block-access.ts)

let TABLE: usize = 0;
let CAPACITY: u32 = 0;

const countBuf = memory.data(8);

export function setDataSpaceMapLayout(table: usize, capacity: u32): void {
  TABLE = table;
  CAPACITY = capacity;
}

// @ts-ignore: decorator
@inline function entry(j: u32): usize { return TABLE + <usize>j * DSM_ENTRY_BYTES; }
// @ts-ignore: decorator
@inline function nrBlocks(): u64 { return load<u64>(STATE + S_D_NR_BLOCKS); }
// @ts-ignore: decorator
@inline function nrBitmaps(): u32 { return load<u32>(STATE + S_D_NR_BITMAPS); }
// @ts-ignore: decorator
@inline function refRoot(): u64 { return load<u64>(STATE + S_D_REF_ROOT); }
// @ts-ignore: decorator
@inline function bump(field: usize, delta: i64): void { store<u64>(STATE + field, load<u64>(STATE + field) + delta); }

function markDirty(e: usize): void {
  store<u8>(e + DSM_E_DIRTY, 1);
  store<u32>(STATE + S_D_CHANGED, 1);
}

/** Entries of bitmap j that name data blocks (the last bitmap is partly beyond the device). */
function covered(j: u32): u32 {
  const left = nrBlocks() - <u64>j * ENTRIES_PER_BITMAP;
  return left < <u64>ENTRIES_PER_BITMAP ? <u32>left : ENTRIES_PER_BITMAP;
}

/** Reference count of data block d (0 with err set on failure). */
export function dataCount(d: u64): u32 {
  if (d >= nrBlocks()) {
    setErr(S.DATA_BEYOND, d);
    return 0;
  }
  const e = entry(<u32>(d / ENTRIES_PER_BITMAP));
  const p = getBlock(<u64>load<u32>(e + DSM_E_BLOCK), BlockKind.Bitmap);
  if (p == 0) return 0;
  const v = bitmapGet(p, <u32>(d % ENTRIES_PER_BITMAP));
  if (v < 3) return v;
  const a = lookupValue(refRoot(), d, 4);
  if (a == 0) {
    setErr(S.DATA_REF_MISSING, d);
    return 0;
  }
  return load<u32>(a);
}

/** Change d's count from old to c: bitmap entry, ref-count tree and the table's summary. */
function setCount(d: u64, old: u32, c: u32): void {
  const j = <u32>(d / ENTRIES_PER_BITMAP);
  const i = <u32>(d % ENTRIES_PER_BITMAP);
  const e = entry(j);
  if (c >= 3) {
    store<u32>(countBuf, c);
    const r = insertKey(refRoot(), d, countBuf, 4, RefKind.None);
    if (err != S.OK) return;
    store<u64>(STATE + S_D_REF_ROOT, r);
  } else if (old >= 3) {
    const r = removeKey(refRoot(), d, 4, RefKind.None);
    if (err != S.OK) return;
    store<u64>(STATE + S_D_REF_ROOT, r);
  }
  const o3 = old < 3 ? old : 3;
  const c3 = c < 3 ? c : 3;
  if (o3 != c3) {
    const p = shadowBlock(<u64>load<u32>(e + DSM_E_BLOCK), BlockKind.Bitmap);
    if (p == 0) return;
    store<u32>(e + DSM_E_BLOCK, <u32>shadowed);
    bitmapSet(p, i, c3);
    markDirty(e);
  }
  if (old == 0 && c > 0) {
    bump(S_D_ALLOCATED, 1);
    store<u16>(e + DSM_E_FREE, load<u16>(e + DSM_E_FREE) - 1);
    if (<u32>load<u16>(e + DSM_E_HINT) == i) store<u16>(e + DSM_E_HINT, <u16>(i + 1));
    markDirty(e);
  } else if (old > 0 && c == 0) {
    bump(S_D_ALLOCATED, -1);
    store<u16>(e + DSM_E_FREE, load<u16>(e + DSM_E_FREE) + 1);
    if (<u32>load<u16>(e + DSM_E_HINT) > i) store<u16>(e + DSM_E_HINT, <u16>i);
    if (load<u32>(e + DSM_E_COMMITTED) != DSM_NO_BLOCK) bump(S_D_PENDING_FREE, 1);
    hostDataFreed(<u32>d, <u32>(d >> 32), 0, 0);
    markDirty(e);
  }
}

export function dataInc(d: u64): void {
  const old = dataCount(d);
  if (err != S.OK) return;
  setCount(d, old, old + 1);
}

/** Drop one reference to d; returns the new count (0 with err set on failure). */
export function dataDec(d: u64): u32 {
  const old = dataCount(d);
  if (err != S.OK) return 0;
  if (old == 0) {
    setErr(S.DATA_REF_UNDERFLOW, d);
    return 0;
  }
  setCount(d, old, old - 1);
  return old - 1;
}

/** A data block with count 1, free now and in the committed state; u64 max with err set when none is. */
export function dataAlloc(): u64 {
  const n = nrBitmaps();
  const cursor = load<u64>(STATE + S_D_CURSOR);
  const startJ = n == 0 ? 0 : <u32>(cursor / ENTRIES_PER_BITMAP) % n;
  for (let step: u32 = 0; step <= n && n > 0; step++) {
    const j = (startJ + step) % n;
    const e = entry(j);
    if (load<u16>(e + DSM_E_FREE) == 0) continue;
    let from = <u32>load<u16>(e + DSM_E_HINT);
    if (step == 0) {
      const c = <u32>(cursor % ENTRIES_PER_BITMAP);
      if (c > from) from = c;
    }
    const cur = getBlock(<u64>load<u32>(e + DSM_E_BLOCK), BlockKind.Bitmap);
    if (cur == 0) return u64.MAX_VALUE;
    const cb = load<u32>(e + DSM_E_COMMITTED);
    let com = cur;
    if (cb != DSM_NO_BLOCK && cb != load<u32>(e + DSM_E_BLOCK)) {
      com = getBlock(<u64>cb, BlockKind.Bitmap);
      if (com == 0) return u64.MAX_VALUE;
    }
    const i = bitmapFindFree(cur, com, from, covered(j));
    if (i < 0) continue;
    const d = <u64>j * ENTRIES_PER_BITMAP + <u64>i;
    setCount(d, 0, 1);
    if (err != S.OK) return u64.MAX_VALUE;
    store<u64>(STATE + S_D_CURSOR, d + 1 >= nrBlocks() ? 0 : d + 1);
    return d;
  }
  setErr(S.NO_DATA_SPACE, 0);
  return u64.MAX_VALUE;
}

/** Grow to nr blocks: new zeroed bitmaps (allocated in this transaction) and the summary of the grown ones. */
export function dataExtend(nr: u64): void {
  const prev = nrBlocks();
  if (nr < prev) {
    setErr(S.DATA_SHRINK, nr);
    return;
  }
  const oldN = nrBitmaps();
  const n64 = (nr + ENTRIES_PER_BITMAP - 1) / ENTRIES_PER_BITMAP;
  if (n64 > <u64>CAPACITY) {
    setErr(S.DATA_MAP_TOO_BIG, nr);
    return;
  }
  const n = <u32>n64;
  for (let j = oldN; j < n; j++) {
    if (newBlock(BlockKind.Bitmap) == 0) return;
    const e = entry(j);
    store<u32>(e + DSM_E_BLOCK, <u32>shadowed);
    store<u32>(e + DSM_E_COMMITTED, DSM_NO_BLOCK);
    store<u16>(e + DSM_E_FREE, 0);
    store<u16>(e + DSM_E_HINT, 0);
    store<u8>(e + DSM_E_DIRTY, 0);
    store<u32>(STATE + S_D_NR_BITMAPS, j + 1);
  }
  store<u64>(STATE + S_D_NR_BLOCKS, nr);
  for (let j = <u32>(prev / ENTRIES_PER_BITMAP); j < n; j++) {
    const e = entry(j);
    let before: u32 = 0;
    if (j < oldN) {
      const left = prev - <u64>j * ENTRIES_PER_BITMAP;
      before = left < <u64>ENTRIES_PER_BITMAP ? <u32>left : ENTRIES_PER_BITMAP;
    }
    const free = <u32>load<u16>(e + DSM_E_FREE) + covered(j) - before;
    store<u16>(e + DSM_E_FREE, <u16>free);
    // Entries [before, covered) are new and free: the hint can be no later than the first of them.
    if (<u32>load<u16>(e + DSM_E_HINT) > before) store<u16>(e + DSM_E_HINT, <u16>before);
    markDirty(e);
  }
}

/** Start loading a committed map: the table is refilled by dataLoadBitmap for j = 0 .. bitmaps - 1. */
export function dataLoad(nr: u64, refRootBlock: u64): i32 {
  const n64 = (nr + ENTRIES_PER_BITMAP - 1) / ENTRIES_PER_BITMAP;
  if (n64 > <u64>CAPACITY) {
    setErr(S.DATA_MAP_TOO_BIG, nr);
    return 0;
  }
  store<u64>(STATE + S_D_NR_BLOCKS, nr);
  store<u32>(STATE + S_D_NR_BITMAPS, <u32>n64);
  store<u64>(STATE + S_D_REF_ROOT, refRootBlock);
  store<u64>(STATE + S_D_ALLOCATED, 0);
  store<u64>(STATE + S_D_PENDING_FREE, 0);
  store<u32>(STATE + S_D_CHANGED, 0);
  if (load<u64>(STATE + S_D_CURSOR) >= nr) store<u64>(STATE + S_D_CURSOR, 0);
  return <i32>n64;
}

/** Bitmap j of a committed map is at block b: its free count and hint are recomputed from its bits (the
 *  stored ones may be stale: thin_restore writes none, spec 4.8). */
export function dataLoadBitmap(j: u32, b: u64): void {
  if (j >= nrBitmaps()) {
    setErr(S.DATA_MAP_TOO_BIG, nrBlocks());
    return;
  }
  const p = getBlock(b, BlockKind.Bitmap);
  if (p == 0) return;
  const c = covered(j);
  const free = bitmapCountFree(p, c);
  const e = entry(j);
  store<u32>(e + DSM_E_BLOCK, <u32>b);
  store<u32>(e + DSM_E_COMMITTED, <u32>b);
  store<u16>(e + DSM_E_FREE, <u16>free);
  store<u16>(e + DSM_E_HINT, <u16>(free == 0 ? c : <u32>bitmapFindFree(p, p, 0, c)));
  store<u8>(e + DSM_E_DIRTY, 0);
  bump(S_D_ALLOCATED, <i64>(c - free));
}

/** The transaction committed: this state is now the committed one. */
export function dsmAfterCommit(): void {
  const n = nrBitmaps();
  for (let j: u32 = 0; j < n; j++) {
    const e = entry(j);
    store<u32>(e + DSM_E_COMMITTED, load<u32>(e + DSM_E_BLOCK));
    store<u8>(e + DSM_E_DIRTY, 0);
  }
  store<u64>(STATE + S_D_PENDING_FREE, 0);
  store<u32>(STATE + S_D_CHANGED, 0);
}
