// Whole root-to-leaf lookups, one boundary crossing per lookup. Resident nodes are found in the shared slot
// table without leaving WASM; on a miss the host (which owns residency) supplies the validated node.
import { nodeLowerBound64, keyAt, valueAt, INTERNAL } from './node';
import { Status as S, MAX_DEPTH } from './abi';
import { err, setErr, clearErr } from './tx-state';
import { getNode } from './block-access';

/** Address of the value of key in the tree at root, or 0 when absent or on failure (err set). */
export function lookupValue(root: u64, key: u64, leafVs: u32): usize {
  let b = root;
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    const p = getNode(b, leafVs);
    if (p == 0) return 0;
    const i = nodeLowerBound64(p, key);
    if (i < 0) return 0;
    if (load<u32>(p, 4) != INTERNAL) return load<u64>(keyAt(p, <u32>i)) == key ? valueAt(p, <u32>i) : 0;
    b = load<u64>(valueAt(p, <u32>i));
  }
  setErr(S.TOO_DEEP, root);
  return 0;
}

/**
 * Find `key` in the tree rooted at `root`. Returns the address of the value (> 0), 0 when absent, or
 * -status on error (-HOST_ERROR when the host failed to supply a node, -TOO_DEEP on a cycle).
 */
export function btreeLookup(rootLo: u32, rootHi: u32, keyLo: u32, keyHi: u32, leafValueSize: u32): i32 {
  clearErr();
  const p = lookupValue((<u64>rootHi << 32) | <u64>rootLo, (<u64>keyHi << 32) | <u64>keyLo, leafValueSize);
  return err != S.OK ? -err : <i32>p;
}
