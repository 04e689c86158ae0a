/**
 * Persistent, reference-counted btrees on 4 KiB nodes (spec 3, dm-btree.c / dm-btree-remove.c).
 *
 * Contract:
 * - Keys are u64 (JS numbers, exact below 2^53); values are `vt.size` bytes passed through `core.param` (read
 *   once on entry: nested updates may reuse it) and returned at addresses valid until the next cache call.
 * - Every update shadows the root-to-leaf path through the transaction manager and returns the new root; the
 *   caller stores it. Trees keep the invariants thin_check enforces (3.3): strictly increasing keys, parent key
 *   <= first key of its child, every non-root node at least max/3 full, all leaves at one depth.
 * - Insert splits full nodes on the way down (root: split beneath, so the root block keeps its number; others
 *   one -> two). Remove rebalances the child it enters with a sibling when the child is at its minimum
 *   (merge when both fit in one node, else redistribute), and collapses a single-entry internal root.
 * - Walks are bounded: depth <= MAX_DEPTH, so cyclic metadata raises ECYCLE instead of hanging.
 * - The btree never adjusts references of values it removes or overwrites: the caller does, with the old value
 *   copied to `core.scratch`.
 */
import type { Core } from '../core/wasm.js';
import { ThinpoolError } from '../errors.js';
import { Status, statusText } from '../core/status.js';
import { BlockKind } from './block-kinds.js';
import { INTERNAL, LEAF, type TransactionManager } from './transaction-manager.js';

export const MAX_DEPTH = 16;

/** Nesting depth of insert() calls (a value stack slot each). */
let insertDepth = 0;

/** How a tree's leaf values reference other things (for shadowing shared leaves and freeing subtrees). */
export interface ValueType {
  readonly size: number;
  /** The values of a shared leaf gained a referrer (its copy). Called with the value's first 8 bytes. */
  inc?(lo: number, hi: number): void;
  /** A leaf holding this value was freed. */
  dec?(lo: number, hi: number): void;
}

export interface UpdateResult {
  root: number;
  /** insert: the key existed (old value at core.scratch); remove: the key was present and removed. */
  hit: boolean;
}

const TWO32 = 4294967296;

export class BTree {
  readonly tm: TransactionManager;
  readonly core: Core;
  readonly vt: ValueType;
  /** Name used in errors ("mapping tree", "device details tree", ...). */
  readonly name: string;
  private readonly incValue?: (lo: number, hi: number) => void;

  constructor(tm: TransactionManager, vt: ValueType, name: string) {
    this.tm = tm;
    this.core = tm.core;
    this.vt = vt;
    this.name = name;
    this.incValue = vt.inc?.bind(vt);
  }

  // ---- node accessors ----
  nr(a: number): number { return this.core.u32[(a + 16) >>> 2]; }
  max(a: number): number { return this.core.u32[(a + 20) >>> 2]; }
  isLeaf(a: number): boolean { return this.core.u32[(a + 4) >>> 2] === LEAF; }
  key(a: number, i: number): number { return this.core.u64(a + 32 + 8 * i); }
  setKey(a: number, i: number, k: number): void { this.core.setU64(a + 32 + 8 * i, k); }
  valueAddr(a: number, i: number): number {
    return a + 32 + 8 * this.max(a) + this.core.u32[(a + 24) >>> 2] * i;
  }
  child(a: number, i: number): number { return this.core.u64(this.valueAddr(a, i)); }

  emptyRoot(): number {
    return this.tm.newNode(LEAF, this.vt.size).block;
  }

  private read(b: number): number {
    return this.tm.read(b, BlockKind.Node, this.vt.size);
  }

  private shadow(b: number) {
    return this.tm.shadowNode(b, this.vt.size, this.incValue);
  }

  /** Address of the value for key, or 0. One crossing into WASM for the whole walk. */
  lookup(root: number, key: number): number {
    const r = this.core.x.btreeLookup(root >>> 0, Math.floor(root / TWO32), key >>> 0, Math.floor(key / TWO32), this.vt.size);
    if (r >= 0) return r;
    if (-r === Status.HOST_ERROR) {
      const e = this.tm.cache.lastError;
      this.tm.cache.lastError = undefined;
      throw e instanceof Error ? e : new ThinpoolError('EFAILED', `lookup failed in ${this.name}`);
    }
    throw new ThinpoolError('ECYCLE', `${statusText(-r)} in ${this.name} (root block ${root})`, { structure: this.name, mblock: root });
  }

  /** Insert or overwrite key with the value bytes at core.param. */
  insert(root: number, key: number): UpdateResult {
    return this.tm.cache.op(() => {
      const { core } = this;
      const klo = key >>> 0;
      const khi = Math.floor(key / TWO32);
      // Shadowing below may run nested tree updates (reference counts) that reuse core.param: keep the value in
      // this call's slot of a small stack in the scratch block (bytes 3072..4095; nesting is a few levels deep).
      if (insertDepth >= 32) throw new ThinpoolError('EFAILED', 'btree inserts nested too deeply');
      const value = core.scratch + 3072 + 32 * insertDepth++;
      core.u8.copyWithin(value, core.param, core.param + this.vt.size);
      try {
        return this.insertFrom(root, key, klo, khi, value);
      } finally {
        insertDepth--;
      }
    });
  }

  private insertFrom(root: number, key: number, klo: number, khi: number, value: number): UpdateResult {
    const { core } = this;
    const x = core.x;
    const size = this.vt.size;
    const r = this.shadow(root);
    if (this.nr(r.addr) === this.max(r.addr)) this.splitBeneath(r.block, r.addr);
    let a = r.addr;
    for (let depth = 0; depth < MAX_DEPTH; depth++) {
      let i = x.nodeLowerBound(a, klo, khi);
      if (this.isLeaf(a)) {
        if (i >= 0 && this.key(a, i) === key) {
          const v = this.valueAddr(a, i);
          core.u8.copyWithin(core.scratch, v, v + size);
          core.u8.copyWithin(v, value, value + size);
          return { root: r.block, hit: true };
        }
        x.nodeInsertAt(a, i + 1, klo, khi, value);
        return { root: r.block, hit: false };
      }
      if (i < 0) {
        i = 0;
        this.setKey(a, 0, key);
      }
      const c = this.shadow(this.child(a, i));
      core.setU64(this.valueAddr(a, i), c.block);
      let next = c.addr;
      if (this.nr(c.addr) === this.max(c.addr)) {
        const s = this.tm.newNode(core.u32[(c.addr + 4) >>> 2], core.u32[(c.addr + 24) >>> 2], this.vt.size);
        x.nodeSplitInto(c.addr, s.addr, this.nr(c.addr) >>> 1);
        const sk = this.key(s.addr, 0);
        core.setU64(core.scratch + 2048, s.block);
        x.nodeInsertAt(a, i + 1, sk >>> 0, Math.floor(sk / TWO32), core.scratch + 2048);
        if (key >= sk) next = s.addr;
      }
      a = next;
    }
    throw new ThinpoolError('ECYCLE', `${this.name} deeper than ${MAX_DEPTH} levels (root block ${root})`);
  }

  /** Full root: move its entries into two new children; the root block becomes their internal parent. */
  private splitBeneath(rb: number, ra: number): void {
    const { core } = this;
    const x = core.x;
    const flags = core.u32[(ra + 4) >>> 2];
    const vs = core.u32[(ra + 24) >>> 2];
    const left = this.tm.newNode(flags, vs, this.vt.size);
    const right = this.tm.newNode(flags, vs, this.vt.size);
    core.u8.copyWithin(left.addr, ra, ra + 4096);
    core.setU64(left.addr + 8, left.block);
    x.nodeSplitInto(left.addr, right.addr, this.nr(left.addr) >>> 1);
    x.nodeInit(ra, rb >>> 0, Math.floor(rb / TWO32), INTERNAL, 8);
    for (const c of [left, right]) {
      const k = this.key(c.addr, 0);
      core.setU64(core.scratch + 2048, c.block);
      x.nodeInsertAt(ra, this.nr(ra), k >>> 0, Math.floor(k / TWO32), core.scratch + 2048);
    }
  }

  /** Remove key if present; the old value is copied to core.scratch. */
  remove(root: number, key: number): UpdateResult {
    if (this.lookup(root, key) === 0) return { root, hit: false };
    return this.tm.cache.op(() => {
      const { core } = this;
      const x = core.x;
      const klo = key >>> 0;
      const khi = Math.floor(key / TWO32);
      const r = this.shadow(root);
      let a = r.addr;
      for (let depth = 0; ; depth++) {
        if (depth >= MAX_DEPTH) throw new ThinpoolError('ECYCLE', `${this.name} deeper than ${MAX_DEPTH} levels`);
        const i = x.nodeLowerBound(a, klo, khi);
        if (this.isLeaf(a)) {
          const v = this.valueAddr(a, i);
          core.u8.copyWithin(core.scratch, v, v + this.vt.size);
          x.nodeRemoveAt(a, i);
          break;
        }
        a = this.rebalanceChild(a, i, key);
      }
      let rootBlock = r.block;
      let ra = r.addr;
      while (!this.isLeaf(ra) && this.nr(ra) === 1) {
        const only = this.child(ra, 0);
        this.tm.dec(rootBlock);
        rootBlock = only;
        ra = this.read(only);
      }
      return { root: rootBlock, hit: true };
    });
  }

  /** Make child i of internal node pa writable and able to lose one entry; returns the node to descend into. */
  private rebalanceChild(pa: number, i: number, key: number): number {
    const { core } = this;
    const x = core.x;
    const c = this.shadow(this.child(pa, i));
    core.setU64(this.valueAddr(pa, i), c.block);
    if (this.nr(c.addr) > Math.floor(this.max(c.addr) / 3) || this.nr(pa) === 1) return c.addr;
    const li = i > 0 ? i - 1 : i;
    const sib = this.shadow(this.child(pa, li === i ? i + 1 : li));
    core.setU64(this.valueAddr(pa, li === i ? i + 1 : li), sib.block);
    const L = li === i ? c : sib;
    const R = li === i ? sib : c;
    const total = this.nr(L.addr) + this.nr(R.addr);
    if (total <= this.max(L.addr)) {
      x.nodeMergeInto(L.addr, R.addr);
      x.nodeRemoveAt(pa, li + 1);
      this.tm.dec(R.block);
      return L.addr;
    }
    x.nodeRedistribute(L.addr, R.addr, total >>> 1);
    const rk = this.key(R.addr, 0);
    this.setKey(pa, li + 1, rk);
    return key >= rk ? R.addr : L.addr;
  }

  /**
   * Visit every node (pre-order) and every leaf entry in key order. Bounded by MAX_DEPTH. Addresses are valid
   * only during the callback; callbacks must not modify metadata.
   */
  walk(
    root: number,
    onEntry: ((key: number, valueAddr: number) => void) | null,
    onNode?: (mblock: number, addr: number, depth: number) => void,
  ): void {
    const visit = (b: number, depth: number, lowKey: number): void => {
      if (depth >= MAX_DEPTH) {
        throw new ThinpoolError('ECYCLE', `${this.name} deeper than ${MAX_DEPTH} levels at block ${b} (cycle?)`, { structure: this.name, mblock: b });
      }
      let a = this.read(b);
      onNode?.(b, a, depth);
      a = this.read(b);
      const n = this.nr(a);
      if (depth > 0 && n < Math.floor(this.max(a) / 3)) {
        throw ThinpoolError.metadata('EBADNODE', `too few entries (${n})`, this.name, b);
      }
      if (n > 0 && this.key(a, 0) < lowKey) {
        throw ThinpoolError.metadata('EBADNODE', 'parent key mismatch', this.name, b);
      }
      if (this.isLeaf(a)) {
        if (onEntry) for (let i = 0; i < n; i++) onEntry(this.key(a, i), this.valueAddr(this.read(b), i));
        return;
      }
      const kids: number[] = [];
      const keys: number[] = [];
      for (let i = 0; i < n; i++) {
        kids.push(this.child(a, i));
        keys.push(this.key(a, i));
      }
      for (let i = 0; i < n; i++) visit(kids[i], depth + 1, keys[i]);
    };
    visit(root, 0, 0);
  }

  /**
   * Visit the leaf entries with lo <= key < hi in key order, reading only the nodes that can hold such keys.
   * Bounded by MAX_DEPTH; addresses are valid only during the callback.
   */
  walkRange(root: number, lo: number, hi: number, onEntry: (key: number, valueAddr: number) => void): void {
    const visit = (b: number, depth: number): void => {
      if (depth >= MAX_DEPTH) {
        throw new ThinpoolError('ECYCLE', `${this.name} deeper than ${MAX_DEPTH} levels at block ${b} (cycle?)`, { structure: this.name, mblock: b });
      }
      const a = this.read(b);
      const n = this.nr(a);
      if (this.isLeaf(a)) {
        for (let i = 0; i < n; i++) {
          const k = this.key(a, i);
          if (k >= hi) break;
          if (k >= lo) onEntry(k, this.valueAddr(this.read(b), i));
        }
        return;
      }
      const kids: number[] = [];
      for (let i = 0; i < n; i++) {
        if (this.key(a, i) >= hi) break;
        if (i + 1 < n && this.key(a, i + 1) <= lo) continue;
        kids.push(this.child(a, i));
      }
      for (const k of kids) visit(k, depth + 1);
    };
    visit(root, 0);
  }

  /** Every (key, value u64) of the tree, in order (for 8-byte value trees). */
  entries64(root: number): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    this.walk(root, (k, v) => out.push([k, this.core.u64(v)]));
    return out;
  }

  /**
   * Drop one reference to the tree at root; nodes reaching count 0 are freed and their children (or, for
   * leaves, their values through vt.dec) lose a reference in turn. Bounded walk.
   */
  del(root: number): void {
    const stack: Array<[number, number]> = [[root, 0]];
    while (stack.length) {
      const [b, depth] = stack.pop()!;
      if (depth >= MAX_DEPTH) throw new ThinpoolError('ECYCLE', `${this.name} deeper than ${MAX_DEPTH} levels at block ${b}`);
      if (this.tm.sm.count(b) > 1) {
        this.tm.dec(b);
        continue;
      }
      const a = this.read(b);
      const n = this.nr(a);
      const leaf = this.isLeaf(a);
      const vals = new Float64Array(2 * n);
      for (let i = 0; i < n; i++) {
        const v = this.valueAddr(a, i);
        vals[2 * i] = this.core.u32[v >>> 2];
        vals[2 * i + 1] = this.core.u32[(v >>> 2) + 1];
      }
      this.tm.dec(b);
      if (leaf) {
        if (this.vt.dec) for (let i = 0; i < n; i++) this.vt.dec(vals[2 * i], vals[2 * i + 1]);
      } else {
        for (let i = n - 1; i >= 0; i--) stack.push([vals[2 * i] + vals[2 * i + 1] * TWO32, depth + 1]);
      }
    }
  }

  /**
   * Build a tree from sorted keys (spec 8.2); `writeValue(i, addr)` writes value i. Every node is new.
   */
  build(keys: ArrayLike<number>, writeValue: (i: number, addr: number) => void): number {
    const { core } = this;
    const n = keys.length;
    const leafMax = core.x.maxEntriesFor(this.vt.size);
    if (n === 0) return this.emptyRoot();
    let level: Array<[number, number]> = [];
    const leaves = Math.ceil(n / leafMax);
    let at = 0;
    for (let l = 0; l < leaves; l++) {
      const cnt = Math.floor(n / leaves) + (l < n % leaves ? 1 : 0);
      const s = this.tm.newNode(LEAF, this.vt.size);
      for (let i = 0; i < cnt; i++, at++) {
        writeValue(at, core.param);
        const k = keys[at];
        core.x.nodeInsertAt(s.addr, i, k >>> 0, Math.floor(k / TWO32), core.param);
      }
      level.push([keys[at - cnt], s.block]);
    }
    while (level.length > 1) {
      const next: Array<[number, number]> = [];
      const groups = Math.ceil(level.length / 252);
      let j = 0;
      for (let g = 0; g < groups; g++) {
        const cnt = Math.floor(level.length / groups) + (g < level.length % groups ? 1 : 0);
        const s = this.tm.newNode(INTERNAL, 8, this.vt.size);
        for (let i = 0; i < cnt; i++, j++) {
          core.setU64(core.param, level[j][1]);
          core.x.nodeInsertAt(s.addr, i, level[j][0] >>> 0, Math.floor(level[j][0] / TWO32), core.param);
        }
        next.push([level[j - cnt][0], s.block]);
      }
      level = next;
    }
    return level[0][1];
  }
}
