// Updates of persistent, reference-counted btrees on 4 KiB nodes (spec 3, dm-btree.c, dm-btree-remove.c).
//
// Contract:
// - Every update shadows the root-to-leaf path through the transaction manager and returns the new root; the
//   caller stores it. Trees keep the invariants thin_check enforces (3.3): strictly increasing keys, parent
//   key <= first key of its child, every non-root node at least max/3 full, all leaves at one depth.
// - Insert splits full nodes on the way down (the root splits beneath itself, so the root block keeps its
//   number; other nodes one into two). Remove rebalances the child it enters with a sibling when the child is
//   at its minimum (merge when both fit in one node, else redistribute) and collapses a single-entry
//   internal root.
// - The value being inserted is copied into a frame of the value stack first: shadowing a shared leaf adds
//   references, which may run nested updates of other trees (the data space map's ref-count tree).
// - An update never adjusts the references of a value it overwrites or removes: the caller does, with the old
//   value copied to the start of the scratch block. `hit` says whether the key was present.
// - Walks are bounded by MAX_DEPTH: cyclic metadata fails with TOO_DEEP instead of hanging.
import { Status as S, RefKind, MAX_DEPTH, S_VDEPTH, S_VSTACK, S_WORK_TOP, VSTACK_FRAMES } from './abi';
import { STATE, SCRATCH, WORK, WORK_END, err, setErr } from './tx-state';
import {
  nodeInit, nodeLowerBound64, nodeInsertAt64, nodeRemoveAt, nodeSplitInto, nodeMergeInto, nodeRedistribute,
  keyAt, valueAt, INTERNAL,
} from './node';
import { newNode, shadowNode, tmDec, shadowed } from './transaction-manager';
import { getNode } from './block-access';
import { lookupValue } from './btree-lookup';
import { metaCount } from './space-map-metadata';
import { dataDec } from './space-map-data';

export let hit: bool = false;

const childBuf = memory.data(8);

// @ts-ignore: decorator
@inline function nr(p: usize): u32 { return load<u32>(p, 16); }
// @ts-ignore: decorator
@inline function maxOf(p: usize): u32 { return load<u32>(p, 20); }
// @ts-ignore: decorator
@inline function isInternal(p: usize): bool { return load<u32>(p, 4) == INTERNAL; }
// @ts-ignore: decorator
@inline function keyOf(p: usize, i: u32): u64 { return load<u64>(keyAt(p, i)); }
// @ts-ignore: decorator
@inline function childOf(p: usize, i: u32): u64 { return load<u64>(valueAt(p, i)); }

function insertChild(p: usize, i: u32, key: u64, child: u64): void {
  store<u64>(childBuf, child);
  nodeInsertAt64(p, i, key, childBuf);
}

/** Full root: move its entries into two new children; the root block becomes their internal parent. */
function splitBeneath(rootBlock: u64, ra: usize, leafVs: u32): void {
  const flags = load<u32>(ra, 4);
  const vs = load<u32>(ra, 24);
  const left = newNode(flags, vs, leafVs);
  if (left == 0) return;
  const lb = shadowedBlock();
  const right = newNode(flags, vs, leafVs);
  if (right == 0) return;
  const rb = shadowedBlock();
  memory.copy(left, ra, 4096);
  store<u64>(left + 8, lb);
  nodeSplitInto(left, right, nr(left) >> 1);
  nodeInit(ra, <u32>rootBlock, <u32>(rootBlock >> 32), INTERNAL, 8);
  insertChild(ra, 0, keyOf(left, 0), lb);
  insertChild(ra, 1, keyOf(right, 0), rb);
}

// @ts-ignore: decorator
@inline function shadowedBlock(): u64 { return shadowed; }

function insertWalk(root: u64, key: u64, value: usize, leafVs: u32, ref: u32): u64 {
  let a = shadowNode(root, leafVs, ref);
  if (a == 0) return 0;
  const rootBlock = shadowedBlock();
  if (nr(a) == maxOf(a)) {
    splitBeneath(rootBlock, a, leafVs);
    if (err != S.OK) return 0;
  }
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    let i = nodeLowerBound64(a, key);
    if (!isInternal(a)) {
      if (i >= 0 && keyOf(a, <u32>i) == key) {
        const v = valueAt(a, <u32>i);
        memory.copy(SCRATCH, v, leafVs);
        memory.copy(v, value, leafVs);
        hit = true;
      } else {
        nodeInsertAt64(a, <u32>(i + 1), key, value);
        hit = false;
      }
      return rootBlock;
    }
    if (i < 0) {
      i = 0;
      store<u64>(keyAt(a, 0), key);
    }
    const c = shadowNode(childOf(a, <u32>i), leafVs, ref);
    if (c == 0) return 0;
    store<u64>(valueAt(a, <u32>i), shadowedBlock());
    let next = c;
    if (nr(c) == maxOf(c)) {
      const s = newNode(load<u32>(c, 4), load<u32>(c, 24), leafVs);
      if (s == 0) return 0;
      const sb = shadowedBlock();
      nodeSplitInto(c, s, nr(c) >> 1);
      const sk = keyOf(s, 0);
      insertChild(a, <u32>i + 1, sk, sb);
      if (key >= sk) next = s;
    }
    a = next;
  }
  setErr(S.TOO_DEEP, root);
  return 0;
}

/** Insert or overwrite key with the leafVs value bytes at src; returns the new root (0 on failure). */
export function insertKey(root: u64, key: u64, src: usize, leafVs: u32, ref: u32): u64 {
  const d = load<u32>(STATE, S_VDEPTH);
  if (d >= VSTACK_FRAMES || leafVs > 32) {
    setErr(S.NESTED_TOO_DEEP, root);
    return 0;
  }
  const value = STATE + S_VSTACK + (<usize>d << 5);
  memory.copy(value, src, leafVs);
  store<u32>(STATE, d + 1, S_VDEPTH);
  const r = insertWalk(root, key, value, leafVs, ref);
  store<u32>(STATE, d, S_VDEPTH);
  return r;
}

/** Make child i of internal node pa writable and able to lose one entry; returns the node to descend into. */
function rebalanceChild(pa: usize, i: u32, key: u64, leafVs: u32, ref: u32): usize {
  const c = shadowNode(childOf(pa, i), leafVs, ref);
  if (c == 0) return 0;
  const cb = shadowedBlock();
  store<u64>(valueAt(pa, i), cb);
  if (nr(c) > maxOf(c) / 3 || nr(pa) == 1) return c;
  const fromLeft = i > 0;
  const si = fromLeft ? i - 1 : i + 1;
  const sib = shadowNode(childOf(pa, si), leafVs, ref);
  if (sib == 0) return 0;
  const sb = shadowedBlock();
  store<u64>(valueAt(pa, si), sb);
  const L = fromLeft ? sib : c;
  const R = fromLeft ? c : sib;
  const rBlock = fromLeft ? cb : sb;
  const li = fromLeft ? i - 1 : i;
  const total = nr(L) + nr(R);
  if (total <= maxOf(L)) {
    nodeMergeInto(L, R);
    nodeRemoveAt(pa, li + 1);
    tmDec(rBlock);
    return err == S.OK ? L : 0;
  }
  nodeRedistribute(L, R, total >> 1);
  const rk = keyOf(R, 0);
  store<u64>(keyAt(pa, li + 1), rk);
  return key >= rk ? R : L;
}

/** Remove key if present (old value to the scratch block, hit set); returns the new root (0 on failure). */
export function removeKey(root: u64, key: u64, leafVs: u32, ref: u32): u64 {
  if (lookupValue(root, key, leafVs) == 0) {
    hit = false;
    return err == S.OK ? root : 0;
  }
  const ra = shadowNode(root, leafVs, ref);
  if (ra == 0) return 0;
  let rootBlock = shadowedBlock();
  let a = ra;
  for (let depth = 0; ; depth++) {
    if (depth >= MAX_DEPTH) {
      setErr(S.TOO_DEEP, root);
      return 0;
    }
    const i = nodeLowerBound64(a, key);
    if (!isInternal(a)) {
      memory.copy(SCRATCH, valueAt(a, <u32>i), leafVs);
      nodeRemoveAt(a, <u32>i);
      break;
    }
    a = rebalanceChild(a, <u32>i, key, leafVs, ref);
    if (a == 0) return 0;
  }
  let p = ra;
  while (isInternal(p) && nr(p) == 1) {
    const only = childOf(p, 0);
    tmDec(rootBlock);
    if (err != S.OK) return 0;
    rootBlock = only;
    p = getNode(only, leafVs);
    if (p == 0) return 0;
  }
  hit = true;
  return rootBlock;
}

// Deletion work stack entries: block u64, depth u32, pad.
// @ts-ignore: decorator
@inline function workTop(): usize { return WORK + <usize>load<u32>(STATE, S_WORK_TOP); }
// @ts-ignore: decorator
@inline function setWorkTop(p: usize): void { store<u32>(STATE, <u32>(p - WORK), S_WORK_TOP); }

/**
 * Drop one reference to the tree at root: nodes reaching count 0 are freed and their children (for leaves,
 * what the values reference) lose a reference in turn. Iterative with an explicit, bounded stack shared by
 * nested deletions (a level-0 leaf deletes level-1 trees above its own entries).
 */
export function delTree(root: u64, leafVs: u32, ref: u32): void {
  const base = workTop();
  let top = base;
  store<u64>(top, root);
  store<u32>(top + 8, 0);
  top += 16;
  while (top > base && err == S.OK) {
    top -= 16;
    const b = load<u64>(top);
    const depth = load<u32>(top + 8);
    if (depth >= <u32>MAX_DEPTH) {
      setErr(S.TOO_DEEP, b);
      break;
    }
    if (metaCount(b) > 1) {
      tmDec(b);
      continue;
    }
    const p = getNode(b, leafVs);
    if (p == 0) break;
    const n = nr(p);
    if (isInternal(p)) {
      if (top + (<usize>n << 4) > WORK_END) {
        setErr(S.WORK_OVERFLOW, b);
        break;
      }
      for (let i = <i32>n - 1; i >= 0; i--) {
        store<u64>(top, childOf(p, <u32>i));
        store<u32>(top + 8, depth + 1);
        top += 16;
      }
    } else if (ref != RefKind.None) {
      setWorkTop(top);
      for (let i: u32 = 0; i < n && err == S.OK; i++) {
        const v = load<u64>(valueAt(p, i));
        if (ref == RefKind.Tree) delTree(v, 8, RefKind.Data);
        else dataDec(v >> 24);
      }
    }
    tmDec(b);
  }
  setWorkTop(base);
}
