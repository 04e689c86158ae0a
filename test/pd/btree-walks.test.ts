// The btree door's read-only walks and bulk build (src/pd/btree.ts) at their edges, on a bare stack: every walk
// (walk, walkWhere, leaves, walkRange) of cyclic metadata stops with ECYCLE at depth MAX_DEPTH, naming the block
// there; a node with too few entries or a first key below its parent's is EBADNODE; walk without an entry
// callback lists the nodes in pre-order with their depths; walkWhere reads no node it was told to skip; leaves
// hand out values; build spreads uneven key counts over leaves and internal nodes, keys past 2^32 included;
// an update that runs out of metadata space raises the core's error instead of returning a root.
// Corrupt trees are made by changing a resident node in place, as a bad write on disk would after validation.
import { describe, expect, test } from 'vitest';
import { Core } from '../../src/core/wasm.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { BlockCache } from '../../src/pd/block-cache.js';
import { BlockKind } from '../../src/pd/block-kinds.js';
import { BTree, MAX_DEPTH } from '../../src/pd/btree.js';
import { MetadataSpaceMap } from '../../src/pd/space-map-metadata.js';
import { TransactionManager } from '../../src/pd/transaction-manager.js';
import { U64 } from '../../src/pd/value-types.js';
import { refusal } from '../support/thrown.js';

const TWO32 = 2 ** 32;

function stack(nrMeta = 4096, slots = 1024) {
  const core = new Core(slots, nrMeta);
  const cache = new BlockCache(core, new MemoryDevice(nrMeta * 4096));
  const sm = new MetadataSpaceMap(core, nrMeta);
  sm.initEmpty();
  sm.inc(0);
  const tm = new TransactionManager(core, cache, sm);
  const tree = new BTree(tm, U64, 'test tree');
  /** A resident node's header and entries, in the on-disk layout (spec 3.3): changed in place to corrupt it. */
  const node = (b: number) => {
    const a = tm.read(b, BlockKind.Node, 8);
    const max = core.u32[(a + 20) >>> 2];
    return {
      nr: () => core.u32[(a + 16) >>> 2],
      setNr: (n: number) => {
        core.u32[(a + 16) >>> 2] = n;
      },
      key: (i: number) => core.u64(a + 32 + 8 * i),
      setKey: (i: number, k: number) => core.setU64(a + 32 + 8 * i, k),
      child: (i: number) => core.u64(a + 32 + 8 * max + 8 * i),
      setChild: (i: number, c: number) => core.setU64(a + 32 + 8 * max + 8 * i, c),
    };
  };
  return { core, sm, tm, tree, node };
}

/** A two-level tree: a root with `leaves` full leaves below it (enough children to pass the too-few check). */
function twoLevels(s: ReturnType<typeof stack>, leaves = 90, first = 0) {
  const leafMax = s.core.x.maxEntriesFor(8);
  const keys = Array.from({ length: leaves * leafMax }, (_, i) => first + 3 * i);
  const root = s.tree.build(keys, (i) => keys[i] + 1);
  return { root, keys };
}

describe('btree walks', () => {
  test('every walk of cyclic metadata stops with ECYCLE at depth MAX_DEPTH, naming the block met there', () => {
    const s = stack();
    // Two roots with the same keys, each one's first child made the other: A, B, A, B, ... without end.
    const a = twoLevels(s).root;
    const b = twoLevels(s).root;
    s.node(a).setChild(0, b);
    s.node(b).setChild(0, a);
    const at = MAX_DEPTH % 2 === 0 ? a : b; // depth 0 is a
    const want = {
      code: 'ECYCLE',
      message: `test tree deeper than ${MAX_DEPTH} levels at block ${at} (cycle?)`,
      structure: 'test tree',
      mblock: at,
    };
    const nodes: number[] = [];
    expect(refusal(() => s.tree.walk(a, null, (_b, d) => nodes.push(d)))).toEqual(want);
    expect(nodes, 'one node per level above MAX_DEPTH').toEqual(Array.from({ length: MAX_DEPTH }, (_, d) => d));
    expect(refusal(() => s.tree.entries(a))).toEqual(want);
    const entered: number[] = [];
    expect(
      refusal(() =>
        s.tree.walkWhere(
          a,
          (blk) => entered.push(blk) > 0,
          () => undefined,
        ),
      ),
    ).toEqual(want);
    expect(entered.length).toBe(MAX_DEPTH + 1);
    expect(refusal(() => [...s.tree.leaves(a)])).toEqual(want);
    expect(refusal(() => s.tree.walkRange(a, 0, 1, () => undefined))).toEqual(want);
  });

  test('a node with too few entries, or a first key below its parent key, is EBADNODE for walk and leaves', () => {
    for (const fault of ['few', 'key'] as const) {
      const s = stack();
      const { root } = twoLevels(s);
      const r = s.node(root);
      const leaf = r.child(5);
      if (fault === 'few') s.node(leaf).setNr(3);
      else s.node(leaf).setKey(0, r.key(5) - 1);
      const message = fault === 'few' ? 'too few entries (3)' : 'parent key mismatch';
      for (const walk of [() => s.tree.entries(root), () => [...s.tree.leaves(root)]]) {
        const e = refusal(walk);
        expect([e.code, e.structure, e.mblock], fault).toEqual(['EBADNODE', 'test tree', leaf]);
        expect(e.message, fault).toContain(message);
      }
    }
  });

  test('walk with no entry callback lists the nodes in pre-order with their depths', () => {
    const s = stack();
    const { root } = twoLevels(s, 90);
    const nodes: [number, number][] = [];
    s.tree.walk(root, null, (b, d) => nodes.push([b, d]));
    const r = s.node(root);
    expect(r.nr()).toBe(90);
    expect(nodes).toEqual([[root, 0], ...Array.from({ length: 90 }, (_, i) => [r.child(i), 1])]);
  });

  test('walkWhere reads only the nodes it is let into, and hands out the entries below them in key order', () => {
    const s = stack();
    const { root, keys } = twoLevels(s, 90);
    const r = s.node(root);
    const skipped = new Set([r.child(0), r.child(7), r.child(89)]);
    const got: number[] = [];
    let wrongValues = 0;
    s.tree.walkWhere(
      root,
      (b) => !skipped.has(b),
      (k, v) => {
        if (v !== k + 1) wrongValues++;
        got.push(k);
      },
    );
    const leafMax = s.core.x.maxEntriesFor(8);
    const want = keys.filter((_, i) => ![0, 7, 89].includes(Math.floor(i / leafMax)));
    expect(got).toEqual(want);
    expect(wrongValues).toBe(0);
    const none: number[] = [];
    s.tree.walkWhere(
      root,
      (b) => b !== root,
      (k) => none.push(k),
    );
    expect(none).toEqual([]);
  });

  test("walkPartsWhere hands out each leaf's values read by the part, only below the nodes it is let into", () => {
    const s = stack();
    const { root, keys } = twoLevels(s, 90, TWO32 - 500); // keys on both sides of 2^32
    const r = s.node(root);
    const skipped = new Set([r.child(1), r.child(50)]);
    const got: number[] = [];
    const sizes = new Set<number>();
    s.tree.walkPartsWhere(
      root,
      (b) => !skipped.has(b),
      (mem, a) => mem[a >>> 2] + mem[(a + 4) >>> 2] * TWO32, // the whole u64 value
      (parts, n) => {
        sizes.add(n);
        for (let i = 0; i < n; i++) got.push(parts[i]);
      },
    );
    const leafMax = s.core.x.maxEntriesFor(8);
    const want = keys.filter((_, i) => ![1, 50].includes(Math.floor(i / leafMax))).map((k) => k + 1);
    expect(got).toEqual(want);
    expect([...sizes]).toEqual([leafMax]); // a leaf at a time
    let calls = 0;
    s.tree.walkPartsWhere(
      root,
      (b) => b !== root,
      () => 0,
      () => calls++,
    );
    expect(calls).toBe(0);
  });

  test('lastKey is the largest key (past 2^32 too), -1 for an empty tree; a cycle down the right side is ECYCLE', () => {
    const s = stack();
    expect(s.tree.lastKey(s.tree.build([], () => 0))).toBe(-1);
    expect(s.tree.lastKey(s.tree.build([7, 9, 12], (i) => i))).toBe(12);
    const { root, keys } = twoLevels(s, 90, TWO32 - 500);
    expect(s.tree.lastKey(root)).toBe(keys[keys.length - 1]);
    expect(keys[keys.length - 1]).toBeGreaterThan(TWO32);
    const a = twoLevels(s).root;
    const b = twoLevels(s).root;
    s.node(a).setChild(89, b);
    s.node(b).setChild(89, a);
    const at = MAX_DEPTH % 2 === 0 ? a : b;
    expect(refusal(() => s.tree.lastKey(a))).toEqual({
      code: 'ECYCLE',
      message: `test tree deeper than ${MAX_DEPTH} levels at block ${at} (cycle?)`,
      structure: 'test tree',
      mblock: at,
    });
    // An empty node below the root is damage, not an empty tree.
    const c = twoLevels(s).root;
    const last = s.node(c).child(89);
    s.node(last).setNr(0);
    expect(refusal(() => s.tree.lastKey(c))).toMatchObject({ code: 'EBADNODE', structure: 'test tree', mblock: last });
  });

  test('leaves hand out the values with the keys', () => {
    const s = stack();
    const { root, keys } = twoLevels(s, 3);
    const got: [number, number][] = [];
    for (const leaf of s.tree.leaves(root)) for (let i = 0; i < leaf.nr; i++) got.push([leaf.key(i), leaf.value(i)]);
    expect(got).toEqual(keys.map((k) => [k, k + 1]));
  });

  test('build spreads an uneven number of keys, past 2^32, over leaves and over more than one internal node', () => {
    const s = stack(4096, 2048);
    const leafMax = s.core.x.maxEntriesFor(8);
    const n = 260 * leafMax + 7; // 261 leaves: two internal nodes under the root, counts uneven at both levels
    const keys = Array.from({ length: n }, (_, i) => 5 * TWO32 + 2 * i);
    const root = s.tree.build(keys, (i) => i);
    const got = s.tree.entries(root);
    expect(got.length).toBe(n);
    expect(got.every(([k, v], i) => k === keys[i] && v === i)).toBe(true);
    for (const i of [0, leafMax - 1, leafMax, 130 * leafMax, n - 1]) expect(s.tree.lookup(root, keys[i])).toBe(i);
    expect(s.tree.lookup(root, keys[10] + 1)).toBeUndefined();
    expect(s.tree.lookup(root, keys[10] - 5 * TWO32)).toBeUndefined();
    const depths = new Map<number, number>();
    s.tree.walk(root, null, (_b, d) => depths.set(d, (depths.get(d) ?? 0) + 1));
    expect([...depths]).toEqual([
      [0, 1],
      [1, 2],
      [2, 261],
    ]);
    const range: number[] = [];
    s.tree.walkRange(root, keys[1000], keys[1010], (k) => range.push(k));
    expect(range).toEqual(keys.slice(1000, 1010));
  });

  test('an insert with no metadata block left raises the core error: no root is returned', () => {
    const s = stack(64, 64);
    let root = s.tree.emptyRoot();
    let err = { code: 'ok', message: '' };
    let k = 0;
    for (; k < 100000 && err.code === 'ok'; k++) {
      err = refusal(() => {
        root = s.tree.insert(root, k * 11, k).root;
      });
    }
    expect(err.code).toBe('ENOSPC_METADATA');
    expect(k).toBeGreaterThan(1000);
  });
});
