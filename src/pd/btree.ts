/**
 * Persistent, reference-counted btrees on 4 KiB nodes (spec 3, dm-btree.c / dm-btree-remove.c).
 *
 * Updates (insert, remove, delete) run whole in the WASM core (assembly/btree-update.ts: shadowing, splits,
 * rebalancing and reference counts included), one boundary crossing each; this class is their host-side
 * door plus the read-only walks used by load, dump and check, and the bulk build used at commit.
 *
 * Contract:
 * - Keys are u64 (JS numbers, exact below 2^53); values are `vt.size` bytes passed through `core.param` and
 *   returned at addresses valid until the next cache call.
 * - Every update shadows the root-to-leaf path through the transaction manager and returns the new root; the
 *   caller stores it. Trees keep the invariants thin_check enforces (3.3).
 * - Walks are bounded: depth <= MAX_DEPTH, so cyclic metadata raises ECYCLE instead of hanging.
 * - The btree never adjusts references of values it removes or overwrites: the caller does, with the old value
 *   copied to `core.scratch`. Shadowing a shared leaf and deleting a tree do adjust what values reference,
 *   as `vt.ref` says.
 */
import type { Core } from '../core/wasm.js';
import { ThinpoolError } from '../errors.js';
import { type RefKind, MAX_DEPTH } from '../core/abi.js';
import { BlockKind } from './block-kinds.js';
import { INTERNAL, LEAF, type TransactionManager } from './transaction-manager.js';
import { TWO32 } from '../core/u64.js';

export { MAX_DEPTH };

/** A tree's leaf values: their size, and what they reference (for shadowing shared leaves and deleting). */
export interface ValueType {
  readonly size: number;
  readonly ref: RefKind;
}

export interface UpdateResult {
  root: number;
  /** insert: the key existed (old value at core.scratch); remove: the key was present and removed. */
  hit: boolean;
}

export class BTree {
  readonly tm: TransactionManager;
  readonly core: Core;
  readonly vt: ValueType;
  /** Name used in errors ("mapping tree", "device details tree", ...). */
  readonly name: string;

  constructor(tm: TransactionManager, vt: ValueType, name: string) {
    this.tm = tm;
    this.core = tm.core;
    this.vt = vt;
    this.name = name;
  }

  // ---- node accessors ----
  nr(a: number): number { return this.core.u32[(a + 16) >>> 2]; }
  max(a: number): number { return this.core.u32[(a + 20) >>> 2]; }
  isLeaf(a: number): boolean { return this.core.u32[(a + 4) >>> 2] === LEAF; }
  key(a: number, i: number): number { return this.core.u64(a + 32 + 8 * i); }
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

  /** Address of the value for key, or 0. One crossing into WASM for the whole walk. */
  lookup(root: number, key: number): number {
    const r = this.core.x.btreeLookup(root >>> 0, Math.floor(root / TWO32), key >>> 0, Math.floor(key / TWO32), this.vt.size);
    if (r < 0) this.core.throwStatus(-r, this.name);
    return r;
  }

  private updated(status: number): UpdateResult {
    if (status !== 0) this.core.throwStatus(status, this.name);
    return { root: this.core.result, hit: this.core.hit };
  }

  /** Insert or overwrite key with the value bytes at core.param. */
  insert(root: number, key: number): UpdateResult {
    const { core } = this;
    return this.tm.cache.op(() => this.updated(core.x.btreeInsert(
      root >>> 0, Math.floor(root / TWO32), key >>> 0, Math.floor(key / TWO32), core.param, this.vt.size, this.vt.ref)));
  }

  /** Remove key if present; the old value is copied to core.scratch. */
  remove(root: number, key: number): UpdateResult {
    const { core } = this;
    return this.tm.cache.op(() => this.updated(core.x.btreeRemove(
      root >>> 0, Math.floor(root / TWO32), key >>> 0, Math.floor(key / TWO32), this.vt.size, this.vt.ref)));
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
   * The leaves of the tree at root, in key order, as node addresses: each is valid until the generator is
   * resumed (the caller reads its entries with nr / key / valueAddr before asking for the next). Checks as
   * `walk` does; holds one path of block numbers, never the tree.
   */
  *leaves(root: number): Generator<number, void, undefined> {
    yield* this.leavesBelow(root, 0, 0);
  }

  private *leavesBelow(b: number, depth: number, lowKey: number): Generator<number, void, undefined> {
    if (depth >= MAX_DEPTH) {
      throw new ThinpoolError('ECYCLE', `${this.name} deeper than ${MAX_DEPTH} levels at block ${b} (cycle?)`, { structure: this.name, mblock: b });
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
