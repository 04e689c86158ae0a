/**
 * Field offsets (bytes) of the transaction state page shared with the WASM core (mirror of
 * assembly/tx-state.ts). Both sides read and write these fields; the host touches them only between calls.
 */
export const S_EPOCH = 0;
export const S_NR_META = 4;
export const S_ALLOCATED = 8;
export const S_COMMITTED_ALLOCATED = 12;
export const S_TX_ALLOCS = 16;
export const S_CURSOR = 20;
export const S_IN_COMMIT = 24;
export const S_USE_RESERVE = 28;
export const S_REF_DIRTY = 32;
export const S_NR_TOUCHED = 36;
export const S_NR_DIRTY = 40;
export const S_HIT = 44;
/** u64: the new root of an update, or the block of a new or shadowed block. */
export const S_RESULT = 48;
/** u64: the block an error is about. */
export const S_ERR_BLOCK = 56;
export const S_META_DIRTY_BITMAPS = 1024;
// The data space map's summary (assembly/space-map-data.ts).
export const S_D_NR_BLOCKS = 72; // u64
export const S_D_ALLOCATED = 80; // u64
export const S_D_CURSOR = 88; // u64
export const S_D_PENDING_FREE = 96; // u64
export const S_D_REF_ROOT = 104; // u64
export const S_D_NR_BITMAPS = 112; // u32
export const S_D_CHANGED = 116; // u32

/** Data space map table: 16 bytes per bitmap (block u32, committed block u32, free u16, hint u16, dirty u8). */
export const DSM_ENTRY_BYTES = 16;
export const DSM_E_BLOCK = 0;
export const DSM_E_FREE = 8;
export const DSM_E_HINT = 10;
export const DSM_E_DIRTY = 12;
export const DSM_NO_BLOCK = 0xffffffff;

/** Per metadata block flags (TXFLAGS). */
export const TX_TOUCHED = 1;
export const TX_NEW = 2;

/** What the leaf values of a tree reference (assembly/transaction-manager.ts). */
export const enum RefKind {
  None = 0,
  /** The root of a level-1 mapping tree. */
  Tree = 1,
  /** A block-time naming a data block. */
  Data = 2,
}

/** Bytes of the work stack of tree deletions (16 per entry; 16 levels x 252 children per nested tree). */
export const WORK_BYTES = 256 * 1024;
