// Whole root-to-leaf lookups, one boundary crossing per lookup. Resident nodes are found in the shared slot
// table without leaving WASM; on a miss `hostNode` (the host owns residency) returns the address of the
// validated node in WASM memory, or 0 after recording an error on the host side.
import { nrEntries, nodeLowerBound, keyAt, valueAt, INTERNAL } from './node';
import * as S from './status';
import { residentNode } from './slot-table';

// @ts-ignore: decorator
@external("host", "node")
declare function hostNode(blockLo: u32, blockHi: u32, leafValueSize: u32): usize;

/** Lookup bound: a walk deeper than this is cyclic or corrupt. */
export const MAX_DEPTH: i32 = 16;

/**
 * Find `key` in the tree rooted at `root`. Returns the address of the value (> 0), 0 when absent, or
 * -status on error (-HOST_ERROR when the host failed to supply a node, -TOO_DEEP on a cycle).
 */
export function btreeLookup(rootLo: u32, rootHi: u32, keyLo: u32, keyHi: u32, leafValueSize: u32): i32 {
  let blo = rootLo;
  let bhi = rootHi;
  const key = (<u64>keyHi << 32) | <u64>keyLo;
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    let p = residentNode(blo, bhi, leafValueSize);
    if (p == 0) p = hostNode(blo, bhi, leafValueSize);
    if (p == 0) return -S.HOST_ERROR;
    const i = nodeLowerBound(p, keyLo, keyHi);
    if (i < 0) return 0;
    if (load<u32>(p, 4) != INTERNAL) {
      return load<u64>(keyAt(p, <u32>i)) == key ? <i32>valueAt(p, <u32>i) : 0;
    }
    const child = load<u64>(valueAt(p, <u32>i));
    blo = <u32>child;
    bhi = <u32>(child >> 32);
  }
  return -S.TOO_DEEP;
}

/** Address of entry count of the node for the host's convenience (kept for symmetry with keyAt). */
export function nodeEntries(p: usize): u32 {
  return nrEntries(p);
}
