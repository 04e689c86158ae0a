// The contract between the WASM core and the host: every number both sides must agree on, written once.
// The host's copy (src/core/abi.ts) and the core's layout export (assembly/abi-layout.ts) are generated from
// this file by scripts/gen-abi.mjs, which `npm run build` runs before compiling either side.
//
// Rules of this file (the generator refuses anything else):
// - Top level: `export const NAME: type = literal;` (a number, decimal or hex), or `export namespace Name { ... }`
//   holding only such constants; a namespace becomes a const enum on the host side.
// - Order matters only to the layout check: the core exports every value in file order (abiField) and the host
//   compares them with its own at start-up, refusing a core built from another version of this file.
// - Bump ABI_VERSION when the meaning of a field changes without any value changing.

/** Version of this contract; the first field the host checks. */
export const ABI_VERSION: u32 = 1;

/** Status codes returned across the boundary (no exceptions cross it). */
export namespace Status {
  export const OK: i32 = 0;
  export const BAD_CHECKSUM: i32 = 1;
  export const BAD_BLOCKNR: i32 = 2;
  export const BAD_FLAGS: i32 = 3;
  export const BAD_MAX_ENTRIES: i32 = 4;
  export const BAD_NR_ENTRIES: i32 = 5;
  export const BAD_VALUE_SIZE: i32 = 6;
  export const KEYS_OUT_OF_ORDER: i32 = 7;
  export const TOO_DEEP: i32 = 8;
  /** A host import returned 0: the host holds the error. */
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
}

/** The four kinds of metadata block (spec 1.1), as the cache records them per slot. */
export namespace BlockKind {
  export const Superblock: u32 = 0;
  export const Node: u32 = 1;
  export const Bitmap: u32 = 2;
  export const Index: u32 = 3;
}

/** Checksum salt of each kind of metadata block (spec 1.1). */
export namespace Salt {
  export const Superblock: u32 = 160774;
  export const Node: u32 = 121107;
  export const Bitmap: u32 = 240779;
  export const Index: u32 = 160478;
}

/** What the leaf values of a tree reference (shadowing a shared leaf adds a reference to each). */
export namespace RefKind {
  export const None: u32 = 0;
  /** A value is the root block of a level-1 mapping tree (level 0 of the mapping tree). */
  export const Tree: u32 = 1;
  /** A value is a block-time: data block in its upper 40 bits (level 1 of the mapping tree). */
  export const Data: u32 = 2;
}

/** Walk bound of every btree walk: deeper is cyclic or corrupt metadata. */
export const MAX_DEPTH: i32 = 16;

/** 2-bit entries per space-map bitmap block (4080 payload bytes, spec 4.2). */
export const ENTRIES_PER_BITMAP: u32 = 16320;

/** Slot table entry: the leaf value size of a slot not validated as a btree node. */
export const NOT_NODE: u32 = 0xffffffff;

// Per metadata block flags (TXFLAGS).
/** The block's count changed in this transaction (it is on the touched list). */
export const TX_TOUCHED: u8 = 1;
/** The block was allocated in this transaction. */
export const TX_NEW: u8 = 2;

// State page fields (byte offsets into the 4 KiB page shared by both sides; the host touches them only between
// calls).
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
/** u64: the new root of an update, or the block of a new or shadowed block. */
export const S_RESULT: usize = 48;
/** u64: the block an error is about. */
export const S_ERR_BLOCK: usize = 56;
/** u32: nesting depth of inserts (frames of the value stack in use). */
export const S_VDEPTH: usize = 64;
/** u32: top of the tree deletion work stack. */
export const S_WORK_TOP: usize = 68;
// The data space map's summary (assembly/space-map-data.ts).
/** u64 */
export const S_D_NR_BLOCKS: usize = 72;
/** u64 */
export const S_D_ALLOCATED: usize = 80;
/** u64: where the next allocation search starts. */
export const S_D_CURSOR: usize = 88;
/** u64: freed in this transaction, still used by the committed state. */
export const S_D_PENDING_FREE: usize = 96;
/** u64 */
export const S_D_REF_ROOT: usize = 104;
/** u32 */
export const S_D_NR_BITMAPS: usize = 112;
/** u32: 1 once any table entry is dirty. */
export const S_D_CHANGED: usize = 116;
/** u8 per metadata space-map bitmap (at most 256): its on-disk form must be rewritten at commit. */
export const S_META_DIRTY_BITMAPS: usize = 1024;
/** VSTACK_FRAMES frames of 32 bytes: the values of nested inserts. */
export const S_VSTACK: usize = 2048;
export const VSTACK_FRAMES: u32 = 32;

// Data space map table: one entry per data bitmap.
export const DSM_ENTRY_BYTES: usize = 16;
/** u32: the bitmap's block now. */
export const DSM_E_BLOCK: usize = 0;
/** u32: the bitmap's block in the committed state (DSM_NO_BLOCK: new in this transaction). */
export const DSM_E_COMMITTED: usize = 4;
/** u16: free entries now. */
export const DSM_E_FREE: usize = 8;
/** u16: first-free hint (entries before it are in use now). */
export const DSM_E_HINT: usize = 10;
/** u8: the index entry must be rewritten at commit. */
export const DSM_E_DIRTY: usize = 12;
export const DSM_NO_BLOCK: u32 = 0xffffffff;
