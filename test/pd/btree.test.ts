// The btree door (src/pd/btree.ts over assembly/btree-update.ts and btree-lookup.ts) on a bare stack (core,
// block cache, metadata space map, transaction manager), against a Map model: insert, overwrite and remove
// report hits and hand back old values (values are arguments and results); lookup, walk, walkRange and leaves agree with the model; updates of a
// shared tree leave the old root intact (copy-on-write); deleting every tree returns every block; build makes
// the same tree as the inserts.
import { describe, expect, test } from 'vitest';
import { Core } from '../../src/core/wasm.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { BlockCache } from '../../src/pd/block-cache.js';
import { BTree } from '../../src/pd/btree.js';
import { MetadataSpaceMap } from '../../src/pd/space-map-metadata.js';
import { TransactionManager } from '../../src/pd/transaction-manager.js';
import { U64 } from '../../src/pd/value-types.js';
import { seededRng } from '../support/rng.js';

const NR_META = 4096;

function stack(): { tm: TransactionManager; sm: MetadataSpaceMap; tree: BTree<number> } {
  const core = new Core(256, NR_META);
  const cache = new BlockCache(core, new MemoryDevice(NR_META * 4096));
  const sm = new MetadataSpaceMap(core, NR_META);
  sm.initEmpty();
  sm.inc(0); // the superblock's
  const tm = new TransactionManager(core, cache, sm);
  return { tm, sm, tree: new BTree(tm, U64, 'test tree') };
}

/** Insert key -> value (8-byte values) through the door; the new root and whether the key was there. */
function put(t: BTree<number>, root: number, key: number, value: number): { root: number; hit: boolean; old: number } {
  const r = t.insert(root, key, value);
  return { root: r.root, hit: r.old !== undefined, old: r.old ?? -1 };
}

function drop(t: BTree<number>, root: number, key: number): { root: number; hit: boolean; old: number } {
  const r = t.remove(root, key);
  return { root: r.root, hit: r.old !== undefined, old: r.old ?? -1 };
}

function get(t: BTree<number>, root: number, key: number): number | undefined {
  return t.lookup(root, key);
}

function sorted(m: Map<number, number>): [number, number][] {
  return [...m].sort((a, b) => a[0] - b[0]);
}

describe('BTree door', () => {
  test('random inserts, overwrites and removes agree with a Map (hits, old values, lookups, walk, range, leaves)', () => {
    const { tree } = stack();
    const rnd = seededRng(11);
    const model = new Map<number, number>();
    let root = tree.emptyRoot();
    const keyOf = () => (rnd() < 0.5 ? Math.floor(rnd() * 5000) : Math.floor(rnd() * 2 ** 50));
    const keys: number[] = [];
    for (let step = 0; step < 6000; step++) {
      const existing = keys.length > 0 && rnd() < 0.4 ? keys[Math.floor(rnd() * keys.length)] : undefined;
      const key = existing ?? keyOf();
      if (rnd() < 0.7) {
        const value = Math.floor(rnd() * 2 ** 52);
        const r = put(tree, root, key, value);
        expect(r.hit, `insert ${key}`).toBe(model.has(key));
        if (r.hit) expect(r.old).toBe(model.get(key));
        model.set(key, value);
        keys.push(key);
        root = r.root;
      } else {
        const r = drop(tree, root, key);
        expect(r.hit, `remove ${key}`).toBe(model.has(key));
        if (r.hit) expect(r.old).toBe(model.get(key));
        model.delete(key);
        root = r.root;
      }
    }
    expect(model.size).toBeGreaterThan(1000);
    for (const [k, v] of model) expect(get(tree, root, k), `key ${k}`).toBe(v);
    for (let i = 0; i < 200; i++) {
      const k = keyOf();
      expect(get(tree, root, k)).toBe(model.get(k));
    }
    const want = sorted(model);
    expect(tree.entries(root)).toEqual(want);
    const [lo, hi] = [1000, 3000];
    const inRange: [number, number][] = [];
    tree.walkRange(root, lo, hi, (k, v) => inRange.push([k, v]));
    expect(inRange).toEqual(want.filter(([k]) => k >= lo && k < hi));
    const fromLeaves: number[] = [];
    for (const leaf of tree.leaves(root)) for (let i = 0; i < leaf.nr; i++) fromLeaves.push(leaf.key(i));
    expect(fromLeaves).toEqual(want.map(([k]) => k));
  });

  test('a shared tree is copied on write: the old root keeps its entries; deleting both returns every block', () => {
    const { tm, sm, tree } = stack();
    const base = sm.nrAllocated;
    let root = tree.emptyRoot();
    const model = new Map<number, number>();
    for (let k = 0; k < 3000; k++) {
      root = put(tree, root, k * 7, k).root;
      model.set(k * 7, k);
    }
    const old = root;
    tm.inc(old); // a second holder, as a snapshot is
    let next = old;
    for (let k = 0; k < 3000; k += 3) next = drop(tree, next, k * 7).root;
    next = put(tree, next, 1, 99).root;
    expect(next).not.toBe(old);
    expect(tree.entries(old)).toEqual(sorted(model));
    expect(get(tree, next, 1)).toBe(99);
    expect(get(tree, next, 0)).toBeUndefined();
    expect(get(tree, next, 7)).toBe(1);
    tree.del(old);
    expect(tree.entries(next).length).toBe(2000 + 1);
    tree.del(next);
    expect(sm.nrAllocated).toBe(base);
  });

  test('build from sorted keys makes a valid tree with the same entries as inserting them', () => {
    const { tree } = stack();
    const keys = Array.from({ length: 5000 }, (_, i) => i * 3 + (i % 5));
    const root = tree.build(keys, (i) => keys[i] * 2);
    expect(tree.entries(root)).toEqual(keys.map((k) => [k, k * 2]));
    for (const k of [keys[0], keys[2500], keys[4999]]) expect(get(tree, root, k)).toBe(k * 2);
    expect(get(tree, root, 1)).toBeUndefined();
  });
});
