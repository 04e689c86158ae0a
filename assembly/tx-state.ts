// Where the transaction's shared state lives, and the state page's fields. The host lays these areas out in
// the fixed memory (src/core/wasm.ts) and passes their addresses once through setTxLayout; both sides read and
// write the same bytes (field offsets mirrored in src/core/tx-state.ts).
import * as S from './status';

/** 4 KiB page of scalars shared with the host. */
export let STATE: usize = 0;
/** u32 reference count per metadata block. */
export let COUNTS: usize = 0;
/** u8 per metadata block: 1 when the block is used in the committed state. */
export let COMMITTED: usize = 0;
/** u8 per metadata block: TX_TOUCHED | TX_NEW. */
export let TXFLAGS: usize = 0;
/** u32 list of the blocks whose count changed in this transaction (length at S_NR_TOUCHED). */
export let TOUCHED: usize = 0;
/** Per cache slot: u8 dirty flag, u8 block kind, u32 op mark (pinned while equal to the epoch in an op). */
export let DIRTY: usize = 0;
export let KINDS: usize = 0;
export let MARKS: usize = 0;
/** The 4 KiB scratch block: an overwritten or removed value is copied to its start. */
export let SCRATCH: usize = 0;
/** Work stack of tree deletions: [WORK, WORK_END). */
export let WORK: usize = 0;
export let WORK_END: usize = 0;

export const TX_TOUCHED: u8 = 1;
export const TX_NEW: u8 = 2;

// State page fields (byte offsets).
export const S_EPOCH: usize = 0;
export const S_NR_META: usize = 4;
export const S_ALLOCATED: usize = 8;
export const S_COMMITTED_ALLOCATED: usize = 12;
export const S_TX_ALLOCS: usize = 16;
export const S_CURSOR: usize = 20;
export const S_IN_COMMIT: usize = 24;
export const S_USE_RESERVE: usize = 28;
export const S_REF_DIRTY: usize = 32;
export const S_NR_TOUCHED: usize = 36;
export const S_NR_DIRTY: usize = 40;
export const S_HIT: usize = 44;
export const S_RESULT: usize = 48; // u64: new root of an update, or the block of a new/shadowed block
export const S_ERR_BLOCK: usize = 56; // u64: the block an error is about
export const S_VDEPTH: usize = 64;
export const S_WORK_TOP: usize = 68;
export const S_META_DIRTY_BITMAPS: usize = 1024; // u8 x 256
export const S_VSTACK: usize = 2048; // 32 frames x 32 bytes: values of nested inserts
export const VSTACK_FRAMES: u32 = 32;

export function setTxLayout(
  state: usize, counts: usize, committed: usize, txflags: usize, touched: usize,
  dirty: usize, kinds: usize, marks: usize, scratch: usize, work: usize, workBytes: usize,
): void {
  STATE = state;
  COUNTS = counts;
  COMMITTED = committed;
  TXFLAGS = txflags;
  TOUCHED = touched;
  DIRTY = dirty;
  KINDS = kinds;
  MARKS = marks;
  SCRATCH = scratch;
  WORK = work;
  WORK_END = work + workBytes;
}

/** Status of the current export; exports clear it on entry and every step returns early once it is set. */
export let err: i32 = 0;

/** Start of an export: no error yet. */
export function clearErr(): void {
  err = S.OK;
}

export function fail(status: i32, block: u64): void {
  if (err != S.OK) return;
  err = status;
  store<u64>(STATE + S_ERR_BLOCK, block);
}

/** Forget a failed transaction's in-flight nesting (the host aborts to the last commit). */
export function txReset(): void {
  err = S.OK;
  store<u32>(STATE + S_VDEPTH, 0);
  store<u32>(STATE + S_WORK_TOP, 0);
}
