/**
 * GENERATED from assembly/abi.ts by scripts/gen-abi.mjs (run by `npm run build`): do not edit; change
 * assembly/abi.ts and rebuild. The numbers the host shares with the WASM core; the core exports the same values in
 * the same order (abiField), compared with ABI_FIELDS when the host instantiates it (src/core/abi-check.ts).
 */

/** Version of this contract; the first field the host checks. */
export const ABI_VERSION = 1;

/** Status codes returned across the boundary (no exceptions cross it). */
export const enum Status {
  OK = 0,
  BAD_CHECKSUM = 1,
  BAD_BLOCKNR = 2,
  BAD_FLAGS = 3,
  BAD_MAX_ENTRIES = 4,
  BAD_NR_ENTRIES = 5,
  BAD_VALUE_SIZE = 6,
  KEYS_OUT_OF_ORDER = 7,
  TOO_DEEP = 8,
  /** A host import returned 0: the host holds the error. */
  HOST_ERROR = 9,
  /** Ordinary allocation would dip into the blocks kept back for commits. */
  NO_METADATA_SPACE = 10,
  /** Every metadata block is in use now or in the committed state. */
  METADATA_FULL = 11,
  REF_UNDERFLOW = 12,
  /** A reference to a block beyond the metadata device. */
  REF_BEYOND = 13,
  NESTED_TOO_DEEP = 14,
  WORK_OVERFLOW = 15,
  /** A data block beyond the data device (a mapping or a count asked for it). */
  DATA_BEYOND = 16,
  /** A data bitmap entry says 3 (count >= 3) but the data ref-count tree has no entry. */
  DATA_REF_MISSING = 17,
  DATA_REF_UNDERFLOW = 18,
  /** Every data block is in use now or in the committed state. */
  NO_DATA_SPACE = 19,
  DATA_SHRINK = 20,
  /** The data device needs more bitmaps than the metadata device can hold. */
  DATA_MAP_TOO_BIG = 21,
}

/** The four kinds of metadata block (spec 1.1), as the cache records them per slot. */
export const enum BlockKind {
  Superblock = 0,
  Node = 1,
  Bitmap = 2,
  Index = 3,
}

/** Checksum salt of each kind of metadata block (spec 1.1). */
export const enum Salt {
  Superblock = 160774,
  Node = 121107,
  Bitmap = 240779,
  Index = 160478,
}

/** What the leaf values of a tree reference (shadowing a shared leaf adds a reference to each). */
export const enum RefKind {
  None = 0,
  /** A value is the root block of a level-1 mapping tree (level 0 of the mapping tree). */
  Tree = 1,
  /** A value is a block-time: data block in its upper 40 bits (level 1 of the mapping tree). */
  Data = 2,
}

/** Walk bound of every btree walk: deeper is cyclic or corrupt metadata. */
export const MAX_DEPTH = 16;

/** 2-bit entries per space-map bitmap block (4080 payload bytes, spec 4.2). */
export const ENTRIES_PER_BITMAP = 16320;

/** Slot table entry: the leaf value size of a slot not validated as a btree node. */
export const NOT_NODE = 0xffffffff;

// Per metadata block flags (TXFLAGS).
/** The block's count changed in this transaction (it is on the touched list). */
export const TX_TOUCHED = 1;

/** The block was allocated in this transaction. */
export const TX_NEW = 2;

// State page fields (byte offsets into the 4 KiB page shared by both sides; the host touches them only between
// calls).
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

/** u32: nesting depth of inserts (frames of the value stack in use). */
export const S_VDEPTH = 64;

/** u32: top of the tree deletion work stack. */
export const S_WORK_TOP = 68;

// The data space map's summary (assembly/space-map-data.ts).
/** u64 */
export const S_D_NR_BLOCKS = 72;

/** u64 */
export const S_D_ALLOCATED = 80;

/** u64: where the next allocation search starts. */
export const S_D_CURSOR = 88;

/** u64: freed in this transaction, still used by the committed state. */
export const S_D_PENDING_FREE = 96;

/** u64 */
export const S_D_REF_ROOT = 104;

/** u32 */
export const S_D_NR_BITMAPS = 112;

/** u32: 1 once any table entry is dirty. */
export const S_D_CHANGED = 116;

/** u8 per metadata space-map bitmap (at most 256): its on-disk form must be rewritten at commit. */
export const S_META_DIRTY_BITMAPS = 1024;

/** VSTACK_FRAMES frames of 32 bytes: the values of nested inserts. */
export const S_VSTACK = 2048;

export const VSTACK_FRAMES = 32;

// Data space map table: one entry per data bitmap.
export const DSM_ENTRY_BYTES = 16;

/** u32: the bitmap's block now. */
export const DSM_E_BLOCK = 0;

/** u32: the bitmap's block in the committed state (DSM_NO_BLOCK: new in this transaction). */
export const DSM_E_COMMITTED = 4;

/** u16: free entries now. */
export const DSM_E_FREE = 8;

/** u16: first-free hint (entries before it are in use now). */
export const DSM_E_HINT = 10;

/** u8: the index entry must be rewritten at commit. */
export const DSM_E_DIRTY = 12;

export const DSM_NO_BLOCK = 0xffffffff;

/** Every field of the contract in the core's order: [name, value]. */
export const ABI_FIELDS: readonly (readonly [string, number])[] = [
  ['ABI_VERSION', ABI_VERSION],
  ['Status.OK', Status.OK],
  ['Status.BAD_CHECKSUM', Status.BAD_CHECKSUM],
  ['Status.BAD_BLOCKNR', Status.BAD_BLOCKNR],
  ['Status.BAD_FLAGS', Status.BAD_FLAGS],
  ['Status.BAD_MAX_ENTRIES', Status.BAD_MAX_ENTRIES],
  ['Status.BAD_NR_ENTRIES', Status.BAD_NR_ENTRIES],
  ['Status.BAD_VALUE_SIZE', Status.BAD_VALUE_SIZE],
  ['Status.KEYS_OUT_OF_ORDER', Status.KEYS_OUT_OF_ORDER],
  ['Status.TOO_DEEP', Status.TOO_DEEP],
  ['Status.HOST_ERROR', Status.HOST_ERROR],
  ['Status.NO_METADATA_SPACE', Status.NO_METADATA_SPACE],
  ['Status.METADATA_FULL', Status.METADATA_FULL],
  ['Status.REF_UNDERFLOW', Status.REF_UNDERFLOW],
  ['Status.REF_BEYOND', Status.REF_BEYOND],
  ['Status.NESTED_TOO_DEEP', Status.NESTED_TOO_DEEP],
  ['Status.WORK_OVERFLOW', Status.WORK_OVERFLOW],
  ['Status.DATA_BEYOND', Status.DATA_BEYOND],
  ['Status.DATA_REF_MISSING', Status.DATA_REF_MISSING],
  ['Status.DATA_REF_UNDERFLOW', Status.DATA_REF_UNDERFLOW],
  ['Status.NO_DATA_SPACE', Status.NO_DATA_SPACE],
  ['Status.DATA_SHRINK', Status.DATA_SHRINK],
  ['Status.DATA_MAP_TOO_BIG', Status.DATA_MAP_TOO_BIG],
  ['BlockKind.Superblock', BlockKind.Superblock],
  ['BlockKind.Node', BlockKind.Node],
  ['BlockKind.Bitmap', BlockKind.Bitmap],
  ['BlockKind.Index', BlockKind.Index],
  ['Salt.Superblock', Salt.Superblock],
  ['Salt.Node', Salt.Node],
  ['Salt.Bitmap', Salt.Bitmap],
  ['Salt.Index', Salt.Index],
  ['RefKind.None', RefKind.None],
  ['RefKind.Tree', RefKind.Tree],
  ['RefKind.Data', RefKind.Data],
  ['MAX_DEPTH', MAX_DEPTH],
  ['ENTRIES_PER_BITMAP', ENTRIES_PER_BITMAP],
  ['NOT_NODE', NOT_NODE],
  ['TX_TOUCHED', TX_TOUCHED],
  ['TX_NEW', TX_NEW],
  ['S_EPOCH', S_EPOCH],
  ['S_NR_META', S_NR_META],
  ['S_ALLOCATED', S_ALLOCATED],
  ['S_COMMITTED_ALLOCATED', S_COMMITTED_ALLOCATED],
  ['S_TX_ALLOCS', S_TX_ALLOCS],
  ['S_CURSOR', S_CURSOR],
  ['S_IN_COMMIT', S_IN_COMMIT],
  ['S_USE_RESERVE', S_USE_RESERVE],
  ['S_REF_DIRTY', S_REF_DIRTY],
  ['S_NR_TOUCHED', S_NR_TOUCHED],
  ['S_NR_DIRTY', S_NR_DIRTY],
  ['S_HIT', S_HIT],
  ['S_RESULT', S_RESULT],
  ['S_ERR_BLOCK', S_ERR_BLOCK],
  ['S_VDEPTH', S_VDEPTH],
  ['S_WORK_TOP', S_WORK_TOP],
  ['S_D_NR_BLOCKS', S_D_NR_BLOCKS],
  ['S_D_ALLOCATED', S_D_ALLOCATED],
  ['S_D_CURSOR', S_D_CURSOR],
  ['S_D_PENDING_FREE', S_D_PENDING_FREE],
  ['S_D_REF_ROOT', S_D_REF_ROOT],
  ['S_D_NR_BITMAPS', S_D_NR_BITMAPS],
  ['S_D_CHANGED', S_D_CHANGED],
  ['S_META_DIRTY_BITMAPS', S_META_DIRTY_BITMAPS],
  ['S_VSTACK', S_VSTACK],
  ['VSTACK_FRAMES', VSTACK_FRAMES],
  ['DSM_ENTRY_BYTES', DSM_ENTRY_BYTES],
  ['DSM_E_BLOCK', DSM_E_BLOCK],
  ['DSM_E_COMMITTED', DSM_E_COMMITTED],
  ['DSM_E_FREE', DSM_E_FREE],
  ['DSM_E_HINT', DSM_E_HINT],
  ['DSM_E_DIRTY', DSM_E_DIRTY],
  ['DSM_NO_BLOCK', DSM_NO_BLOCK],
];
