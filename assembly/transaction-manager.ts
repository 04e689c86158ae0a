// The transaction manager (dm-transaction-manager.h): the one gate for writable metadata blocks.
//
// Contract:
// - A block reachable from the committed superblock is never written: shadowing returns a writable copy in a
//   newly allocated block, unless the block was allocated in this transaction and its count is <= 1, in which
//   case it is modified in place (spec 6.3).
// - Shadowing a shared node (count > 1 before the copy) adds a reference to everything it points to: children
//   of internal nodes, and for leaves what the tree's value kind says its values reference.
// - New blocks start with count 1 in a zeroed, dirty slot. The block number of the last new or shadowed block
//   is `shadowed` (read it before the next transaction call).
import { Status as S, BlockKind, RefKind } from './abi';
import { err } from './tx-state';
import { metaAlloc, metaDec, metaInc, metaCount, metaIsTxNew } from './space-map-metadata';
import { getNode, getBlock, createBlock, markDirty, forgetBlock } from './block-access';
import { nodeInit, valueAt, INTERNAL } from './node';
import { dataInc } from './space-map-data';

export let shadowed: u64 = 0;

/** A new, empty node (count 1); 0 on failure. */
export function newNode(flags: u32, vs: u32, leafVs: u32): usize {
  const b = metaAlloc();
  if (err != S.OK) return 0;
  const p = createBlock(b, BlockKind.Node, leafVs);
  if (p == 0) return 0;
  nodeInit(p, <u32>b, <u32>(b >> 32), flags, vs);
  shadowed = b;
  return p;
}

/** A new non-node block (count 1, zeroed); 0 on failure. */
export function newBlock(kind: u32): usize {
  const b = metaAlloc();
  if (err != S.OK) return 0;
  const p = createBlock(b, kind, 0);
  if (p == 0) return 0;
  store<u64>(p + 8, b);
  shadowed = b;
  return p;
}

function addRefs(p: usize, ref: u32): void {
  const internal = load<u32>(p, 4) == INTERNAL;
  if (!internal && ref == RefKind.None) return;
  const n = load<u32>(p, 16);
  for (let i: u32 = 0; i < n && err == S.OK; i++) {
    const v = load<u64>(valueAt(p, i));
    if (internal || ref == RefKind.Tree) metaInc(v);
    else dataInc(v >> 24);
  }
}

/** Copy resident block b (at old) into a newly allocated block, which takes over b's reference from the
 *  caller; the copy's address (shadowed = its block), or 0 on failure. */
function copyOut(b: u64, old: usize, kind: u32, leafVs: u32): usize {
  const nb = metaAlloc();
  if (err != S.OK) return 0;
  const p = createBlock(nb, kind, leafVs);
  if (p == 0) return 0;
  memory.copy(p, old, 4096);
  store<u64>(p + 8, nb);
  metaDec(b);
  if (err != S.OK) return 0;
  shadowed = nb;
  return p;
}

/** Writable version of node b; 0 on failure. */
export function shadowNode(b: u64, leafVs: u32, ref: u32): usize {
  const c = metaCount(b);
  if (metaIsTxNew(b) && c <= 1) {
    const p = getNode(b, leafVs);
    if (p == 0) return 0;
    markDirty(b, BlockKind.Node, leafVs);
    shadowed = b;
    return p;
  }
  const old = getNode(b, leafVs);
  if (old == 0) return 0;
  const p = copyOut(b, old, BlockKind.Node, leafVs);
  if (p == 0) return 0;
  const nb = shadowed;
  if (c > 1) addRefs(p, ref);
  if (err != S.OK) return 0;
  shadowed = nb;
  return p;
}

/** Writable version of a non-node block (a space-map bitmap: exactly one reference); 0 on failure. */
export function shadowBlock(b: u64, kind: u32): usize {
  if (metaIsTxNew(b) && metaCount(b) <= 1) {
    const p = getBlock(b, kind);
    if (p == 0) return 0;
    markDirty(b, kind, 0);
    shadowed = b;
    return p;
  }
  const old = getBlock(b, kind);
  if (old == 0) return 0;
  return copyOut(b, old, kind, 0);
}

/** Drop one reference without recursion; a block reaching 0 leaves the cache. Returns the new count. */
export function tmDec(b: u64): u32 {
  const c = metaDec(b);
  if (err == S.OK && c == 0) forgetBlock(b);
  return c;
}
