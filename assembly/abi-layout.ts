// GENERATED from assembly/abi.ts by scripts/gen-abi.mjs (run by `npm run build`): do not edit; change
// assembly/abi.ts and rebuild. Every field of the contract in file order, for the host to compare with its own
// copy (src/core/abi-check.ts) before it uses the core.
import {
  ABI_VERSION, Status, BlockKind, Salt, RefKind, MAX_DEPTH, ENTRIES_PER_BITMAP, NOT_NODE, TX_TOUCHED, TX_NEW,
  S_EPOCH, S_NR_META, S_ALLOCATED, S_COMMITTED_ALLOCATED, S_TX_ALLOCS, S_CURSOR, S_IN_COMMIT, S_USE_RESERVE,
  S_REF_DIRTY, S_NR_TOUCHED, S_NR_DIRTY, S_HIT, S_RESULT, S_ERR_BLOCK, S_VDEPTH, S_WORK_TOP, S_D_NR_BLOCKS,
  S_D_ALLOCATED, S_D_CURSOR, S_D_PENDING_FREE, S_D_REF_ROOT, S_D_NR_BITMAPS, S_D_CHANGED, S_META_DIRTY_BITMAPS,
  S_VSTACK, VSTACK_FRAMES, DSM_ENTRY_BYTES, DSM_E_BLOCK, DSM_E_COMMITTED, DSM_E_FREE, DSM_E_HINT, DSM_E_DIRTY,
  DSM_NO_BLOCK,
} from './abi';

/** Number of fields of the contract. */
export function abiFieldCount(): u32 {
  return 72;
}

/** Value of field i (file order of assembly/abi.ts); 0 beyond the last. */
export function abiField(i: u32): u32 {
  switch (i) {
    case 0: return <u32>ABI_VERSION;
    case 1: return <u32>Status.OK;
    case 2: return <u32>Status.BAD_CHECKSUM;
    case 3: return <u32>Status.BAD_BLOCKNR;
    case 4: return <u32>Status.BAD_FLAGS;
    case 5: return <u32>Status.BAD_MAX_ENTRIES;
    case 6: return <u32>Status.BAD_NR_ENTRIES;
    case 7: return <u32>Status.BAD_VALUE_SIZE;
    case 8: return <u32>Status.KEYS_OUT_OF_ORDER;
    case 9: return <u32>Status.TOO_DEEP;
    case 10: return <u32>Status.HOST_ERROR;
    case 11: return <u32>Status.NO_METADATA_SPACE;
    case 12: return <u32>Status.METADATA_FULL;
    case 13: return <u32>Status.REF_UNDERFLOW;
    case 14: return <u32>Status.REF_BEYOND;
    case 15: return <u32>Status.NESTED_TOO_DEEP;
    case 16: return <u32>Status.WORK_OVERFLOW;
    case 17: return <u32>Status.DATA_BEYOND;
    case 18: return <u32>Status.DATA_REF_MISSING;
    case 19: return <u32>Status.DATA_REF_UNDERFLOW;
    case 20: return <u32>Status.NO_DATA_SPACE;
    case 21: return <u32>Status.DATA_SHRINK;
    case 22: return <u32>Status.DATA_MAP_TOO_BIG;
    case 23: return <u32>BlockKind.Superblock;
    case 24: return <u32>BlockKind.Node;
    case 25: return <u32>BlockKind.Bitmap;
    case 26: return <u32>BlockKind.Index;
    case 27: return <u32>Salt.Superblock;
    case 28: return <u32>Salt.Node;
    case 29: return <u32>Salt.Bitmap;
    case 30: return <u32>Salt.Index;
    case 31: return <u32>RefKind.None;
    case 32: return <u32>RefKind.Tree;
    case 33: return <u32>RefKind.Data;
    case 34: return <u32>MAX_DEPTH;
    case 35: return <u32>ENTRIES_PER_BITMAP;
    case 36: return <u32>NOT_NODE;
    case 37: return <u32>TX_TOUCHED;
    case 38: return <u32>TX_NEW;
    case 39: return <u32>S_EPOCH;
    case 40: return <u32>S_NR_META;
    case 41: return <u32>S_ALLOCATED;
    case 42: return <u32>S_COMMITTED_ALLOCATED;
    case 43: return <u32>S_TX_ALLOCS;
    case 44: return <u32>S_CURSOR;
    case 45: return <u32>S_IN_COMMIT;
    case 46: return <u32>S_USE_RESERVE;
    case 47: return <u32>S_REF_DIRTY;
    case 48: return <u32>S_NR_TOUCHED;
    case 49: return <u32>S_NR_DIRTY;
    case 50: return <u32>S_HIT;
    case 51: return <u32>S_RESULT;
    case 52: return <u32>S_ERR_BLOCK;
    case 53: return <u32>S_VDEPTH;
    case 54: return <u32>S_WORK_TOP;
    case 55: return <u32>S_D_NR_BLOCKS;
    case 56: return <u32>S_D_ALLOCATED;
    case 57: return <u32>S_D_CURSOR;
    case 58: return <u32>S_D_PENDING_FREE;
    case 59: return <u32>S_D_REF_ROOT;
    case 60: return <u32>S_D_NR_BITMAPS;
    case 61: return <u32>S_D_CHANGED;
    case 62: return <u32>S_META_DIRTY_BITMAPS;
    case 63: return <u32>S_VSTACK;
    case 64: return <u32>VSTACK_FRAMES;
    case 65: return <u32>DSM_ENTRY_BYTES;
    case 66: return <u32>DSM_E_BLOCK;
    case 67: return <u32>DSM_E_COMMITTED;
    case 68: return <u32>DSM_E_FREE;
    case 69: return <u32>DSM_E_HINT;
    case 70: return <u32>DSM_E_DIRTY;
    case 71: return <u32>DSM_NO_BLOCK;
  }
  return 0;
}
