/**
 * Persistent, reference-counted btrees on 4 KiB nodes (spec 3, dm-btree.c / dm-btree-remove.c).
 *
 * Updates (insert, remove, delete) run whole in the WASM core (assembly/btree-update.ts: shadowing, splits,
 * rebalancing and reference counts included), one boundary crossing each; this class is their host-side
 * door plus the read-only walks used by load, dump and check, and the bulk build used at commit.
 *
 * Contract:
 * - Keys are u64 (JS numbers, exact below 2^53). Values are arguments and results of type V, encoded and
 *   decoded by the tree's `ValueType<V>` (value-types.ts and the thin codecs): callers never see the core's
 *   memory or the shared parameter blocks, which only this door uses to hand values to the WASM updates.
 * - Every update shadows the root-to-leaf path through the transaction manager and returns the new root; the
 *   caller stores it. Trees keep the invariants thin_check enforces (3.3).
 * - Walks are bounded: depth <= MAX_DEPTH, so cyclic metadata raises ECYCLE instead of hanging.
 * - The btree never adjusts references of values it removes or overwrites: the caller does, with the old value
 *   that insert and remove return. Shadowing a shared leaf and deleting a tree do adjust what values reference,
 *   as `vt.ref` says.
 */
import type { Core } from '../core/wasm.js';
import { ThinpoolError } from '../errors.js';
import { BlockKind } from './block-kinds.js';
import { INTERNAL, LEAF, type TransactionManager } from './transaction-manager.js';
import type { ValueType } from './value-types.js';
import { MAX_DEPTH } from '../core/abi.js';
import { TWO32 } from '../core/u64.js';

export type { ValueType } from './value-types.js';
export { MAX_DEPTH };

export interface UpdateResult<V> {
  root: number;
  /** insert: the value the key had (it was overwritten); remove: the value removed. Undefined: key absent. */
  old: V | undefined;
}

/** One leaf handed out by `BTree.leaves`: valid until the generator is resumed. */
export interface Leaf<V> {
  /** Number of entries. */
  readonly nr: number;
  key(i: number): number;
  value(i: number): V;
}

export class BTree<V> {
  private readonly tm: TransactionManager;
  private readonly core: Core;
  readonly vt: ValueType<V>;
  /** Name used in errors ("mapping tree", "device details tree", ...). */
  readonly name: string;

  constructor(tm: TransactionManager, vt: ValueType<V>, name: string) {
    this.tm = tm;
    this.core = tm.core;
    this.vt = vt;
    this.name = name;
  }

  /** The error of every walk that reaches MAX_DEPTH (a cycle, or damage deeper than any real tree). */
  private tooDeep(b: number): ThinpoolError {
    return new ThinpoolError('ECYCLE', `${this.name} deeper than ${MAX_DEPTH} levels at block ${b} (cycle?)`, {
      structure: this.name,
      mblock: b,
    });
  }

  // ---- node accessors (a resident node at byte address a) ----
  private nr(a: number): number {
    return this.core.u32[(a + 16) >>> 2];
  }
  private max(a: number): number {
    return this.core.u32[(a + 20) >>> 2];
  }
  private isLeaf(a: number): boolean {
    return this.core.u32[(a + 4) >>> 2] === LEAF;
  }
  private key(a: number, i: number): number {
    return this.core.u64(a + 32 + 8 * i);
  }
  private valueAddr(a: number, i: number): number {
    return a + 32 + 8 * this.max(a) + this.core.u32[(a + 24) >>> 2] * i;
  }
  private child(a: number, i: number): number {
    return this.core.u64(this.valueAddr(a, i));
  }
  private value(a: number): V {
    return this.vt.read(this.core.u32, a);
  }

  emptyRoot(): number {
    return this.tm.newNode(LEAF, this.vt.size).block;
  }

  private read(b: number): number {
    return this.tm.read(b, BlockKind.Node, this.vt.size);
  }

  /** Byte address of the value for key, or 0. One crossing into WASM for the whole walk. */
  private find(root: number, key: number): number {
    const r = this.core.x.btreeLookup(root >>> 0, Math.floor(root / TWO32), key >>> 0, Math.floor(key / TWO32), this.vt.size);
    if (r < 0) this.core.throwStatus(-r, this.name);
    return r;
  }

  /** The value of key, or undefined. */
  lookup(root: number, key: number): V | undefined {
    const a = this.find(root, key);
    return a === 0 ? undefined : this.value(a);
  }

  /**
   * One part of the value of key, read by `part` (a function of the tree's codec, e.g. the data block of a
   * block-time) without decoding the whole value; `missing` when the key is absent. For hot lookups.
   */
  lookupPart<R>(root: number, key: number, part: (mem: Uint32Array, a: number) => R, missing: R): R {
    const a = this.find(root, key);
    return a === 0 ? missing : part(this.core.u32, a);
  }

  private updated(status: number): UpdateResult<V> {
    const { core } = this;
    if (status !== 0) core.throwStatus(status, this.name);
    return { root: core.result, old: core.hit ? this.value(core.scratch) : undefined };
  }

  /** Insert key with value, or overwrite it (the old value is returned; its references are the caller's). */
  insert(root: number, key: number, value: V): UpdateResult<V> {
    const { core } = this;
    this.vt.write(core.u32, core.param, value);
    return this.tm.cache.op(() =>
      this.updated(
        core.x.btreeInsert(root >>> 0, Math.floor(root / TWO32), key >>> 0, Math.floor(key / TWO32), core.param, this.vt.size, this.vt.ref),
      ),
    );
  }

  /** Remove key if present, returning its value (whose references are the caller's). */
  remove(root: number, key: number): UpdateResult<V> {
    const { core } = this;
    return this.tm.cache.op(() =>
      this.updated(core.x.btreeRemove(root >>> 0, Math.floor(root / TWO32), key >>> 0, Math.floor(key / TWO32), this.vt.size, this.vt.ref)),
    );
  }

  /**
   * Drop one reference to the tree at root; nodes reaching count 0 are freed and their children (or, for
   * leaves, what their values reference) lose a reference in turn. Bounded walk.
   */
  del(root: number): void {
    const { core } = this;
    this.tm.cache.op(() => {
      const s = core.x.btreeDel(root >>> 0, Math.floor(root / TWO32), this.vt.size, this.vt.ref);
      if (s !== 0) core.throwStatus(s, this.name);
    });
  }

  /**
   * Visit every node (pre-order, by block number and depth) and every leaf entry in key order. Bounded by
   * MAX_DEPTH; callbacks must not modify metadata.
   */
  walk(root: number, onEntry: ((key: number, value: V) => void) | null, onNode?: (mblock: number, depth: number) => void): void {
    const visit = (b: number, depth: number, lowKey: number): void => {
      if (depth >= MAX_DEPTH) {
        throw this.tooDeep(b);
      }
      if (onNode) {
        this.read(b); // validated before the callback sees it
        onNode(b, depth);
      }
      const a = this.read(b);
      const n = this.nr(a);
      if (depth > 0 && n < Math.floor(this.max(a) / 3)) {
        throw ThinpoolError.metadata('EBADNODE', `too few entries (${n})`, this.name, b);
      }
      if (n > 0 && this.key(a, 0) < lowKey) {
        throw ThinpoolError.metadata('EBADNODE', 'parent key mismatch', this.name, b);
      }
      if (this.isLeaf(a)) {
        if (onEntry) for (let i = 0; i < n; i++) onEntry(this.key(a, i), this.value(this.valueAddr(this.read(b), i)));
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
   * The largest key in the tree at root, or -1 when the tree is empty: the rightmost path only (one node per
   * level; a node below the root is never empty). Bounded by MAX_DEPTH.
   */
  lastKey(root: number): number {
    let b = root;
    for (let depth = 0; ; depth++) {
      if (depth >= MAX_DEPTH) {
        throw this.tooDeep(b);
      }
      const a = this.read(b);
      const n = this.nr(a);
      if (n === 0) {
        if (depth > 0) throw ThinpoolError.metadata('EBADNODE', 'too few entries (0)', this.name, b);
        return -1;
      }
      if (this.isLeaf(a)) return this.key(a, n - 1);
      b = this.child(a, n - 1);
    }
  }

  /**
   * A pruned walk: the leaf entries, in key order, reached only through nodes for which `enter(block)` holds;
   * a node it refuses is neither read nor descended. Bounded by MAX_DEPTH; callbacks must not modify metadata.
   */
  walkWhere(root: number, enter: (mblock: number) => boolean, onEntry: (key: number, value: V) => void): void {
    this.leavesWhere(root, enter, (a, n) => {
      // Decoded before any callback runs (a callback may make resident addresses stale).
      const keys = new Float64Array(n);
      const values: V[] = [];
      for (let i = 0; i < n; i++) {
        keys[i] = this.key(a, i);
        values.push(this.value(this.valueAddr(a, i)));
      }
      for (let i = 0; i < n; i++) onEntry(keys[i], values[i]);
    });
  }

  /**
   * walkWhere for counting over many entries: each leaf's values are read by `part` (one number from the value
   * at byte address a of `mem`, no object made) into `parts`, handed to onLeaf(parts, n) a leaf at a time; the
   * first n entries of `parts` are valid only during that call. One cache lookup per leaf, not per entry.
   */
  walkPartsWhere(
    root: number,
    enter: (mblock: number) => boolean,
    part: (mem: Uint32Array, a: number) => number,
    onLeaf: (parts: Float64Array, n: number) => void,
  ): void {
    let parts = new Float64Array(0);
    this.leavesWhere(root, enter, (a, n) => {
      if (parts.length < n) parts = new Float64Array(n);
      const u32 = this.core.u32;
      const base = this.valueAddr(a, 0);
      const size = u32[(a + 24) >>> 2];
      for (let i = 0; i < n; i++) parts[i] = part(u32, base + size * i);
      onLeaf(parts, n);
    });
  }

  /** The pruned walk itself: onLeaf(a, n) for each leaf reached, its address valid until onLeaf calls the cache. */
  private leavesWhere(root: number, enter: (mblock: number) => boolean, onLeaf: (a: number, n: number) => void): void {
    const visit = (b: number, depth: number): void => {
      if (!enter(b)) return;
      if (depth >= MAX_DEPTH) {
        throw this.tooDeep(b);
      }
      const a = this.read(b);
      const n = this.nr(a);
      if (this.isLeaf(a)) {
        onLeaf(a, n);
        return;
      }
      const kids = new Float64Array(n);
      for (let i = 0; i < n; i++) kids[i] = this.child(a, i); // a is not valid once a child is read
      for (let i = 0; i < n; i++) visit(kids[i], depth + 1);
    };
    visit(root, 0);
  }

  /**
   * The leaves of the tree at root, in key order: each is readable (entry count, keys, values) until the
   * generator is resumed, so the caller reads its entries before asking for the next. Checks as `walk` does;
   * holds one path of block numbers, never the tree.
   */
  *leaves(root: number): Generator<Leaf<V>, void, undefined> {
    let a = 0;
    const leaf = {
      nr: 0,
      key: (i: number): number => this.key(a, i),
      value: (i: number): V => this.value(this.valueAddr(a, i)),
    };
    for (const at of this.leavesBelow(root, 0, 0)) {
      a = at;
      leaf.nr = this.nr(at);
      yield leaf;
    }
  }

  /** Node addresses of the leaves below b, each valid until resumed. */
  private *leavesBelow(b: number, depth: number, lowKey: number): Generator<number, void, undefined> {
    if (depth >= MAX_DEPTH) {
      throw this.tooDeep(b);
    }
    const a = this.read(b);
    const n = this.nr(a);
    if (depth > 0 && n < Math.floor(this.max(a) / 3)) {
      throw ThinpoolError.metadata('EBADNODE', `too few entries (${n})`, this.name, b);
    }
    if (n > 0 && this.key(a, 0) < lowKey) {
      throw ThinpoolError.metadata('EBADNODE', 'parent key mismatch', this.name, b);
    }
    if (this.isLeaf(a)) {
      yield a;
      return;
    }
    const kids = new Float64Array(n);
    const keys = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      kids[i] = this.child(a, i);
      keys[i] = this.key(a, i);
    }
    for (let i = 0; i < n; i++) yield* this.leavesBelow(kids[i], depth + 1, keys[i]);
  }

  /**
   * Visit the leaf entries with lo <= key < hi in key order, reading only the nodes that can hold such keys.
   * Bounded by MAX_DEPTH; callbacks must not modify metadata.
   */
  walkRange(root: number, lo: number, hi: number, onEntry: (key: number, value: V) => void): void {
    const visit = (b: number, depth: number): void => {
      if (depth >= MAX_DEPTH) {
        throw this.tooDeep(b);
      }
      const a = this.read(b);
      const n = this.nr(a);
      if (this.isLeaf(a)) {
        // The leaf's entries in range are decoded before any callback runs (a callback may make resident
        // addresses stale), with one cache lookup per leaf, not one per entry.
        const keys: number[] = [];
        const values: V[] = [];
        const base = this.valueAddr(a, 0);
        const size = this.core.u32[(a + 24) >>> 2];
        for (let i = 0; i < n; i++) {
          const k = this.key(a, i);
          if (k >= hi) break;
          if (k < lo) continue;
          keys.push(k);
          values.push(this.value(base + size * i));
        }
        for (let i = 0; i < keys.length; i++) onEntry(keys[i], values[i]);
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

  /** Every (key, value) of the tree, in key order. */
  entries(root: number): Array<[number, V]> {
    const out: Array<[number, V]> = [];
    this.walk(root, (k, v) => out.push([k, v]));
    return out;
  }

  /** Build a tree from sorted keys (spec 8.2); `valueOf(i)` is the value of keys[i]. Every node is new. */
  build(keys: ArrayLike<number>, valueOf: (i: number) => V): number {
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
        this.vt.write(core.u32, core.param, valueOf(at));
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
