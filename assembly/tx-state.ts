// Where the transaction's shared state lives. The host lays these areas out in the fixed memory
// (src/core/wasm.ts) and passes their addresses once through setTxLayout; both sides read and write the same
// bytes (the state page's field offsets are in assembly/abi.ts, the contract shared with the host).
import { Status as S, S_ERR_BLOCK, S_VDEPTH, S_WORK_TOP } from './abi';

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

/** Record the status of the running export and the block it is about; the first status recorded wins. */
export function setErr(status: i32, block: u64): void {
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
