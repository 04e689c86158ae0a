// assembly/node.ts through the core's exports: the btree node codec (spec 3.1-3.3) and its primitives, checked
// against a model list of [key, value] entries; every primitive keeps the slots past nr_entries zero.
import { describe, expect, test } from 'vitest';
import { Salt, Status } from '../../src/core/abi.js';
import { Core } from '../../src/core/wasm.js';
import { TWO32 } from '../../src/core/u64.js';
import { seededRng } from '../support/rng.js';

const INTERNAL = 1;
const LEAF = 2;

const core = new Core(16, 64);
const dv = core.dv;
const nr = (p: number) => dv.getUint32(p + 16, true);
const max = (p: number) => dv.getUint32(p + 20, true);
const vsOf = (p: number) => dv.getUint32(p + 24, true);
const keyAt = (p: number, i: number) => dv.getUint32(p + 32 + 8 * i, true) + dv.getUint32(p + 36 + 8 * i, true) * TWO32;
const valueAddr = (p: number, i: number) => p + 32 + 8 * max(p) + i * vsOf(p);

/** The node's entries as [key, first value u32]. */
function entries(p: number): [number, number][] {
  return Array.from({ length: nr(p) }, (_, i) => [keyAt(p, i), dv.getUint32(valueAddr(p, i), true)]);
}

/** Every key and value slot past nr_entries is zero. */
function tailIsZero(p: number): boolean {
  const keysEnd = p + 32 + 8 * max(p);
  for (let a = p + 32 + 8 * nr(p); a < keysEnd; a++) if (core.u8[a] !== 0) return false;
  for (let a = valueAddr(p, nr(p)); a < valueAddr(p, max(p)); a++) if (core.u8[a] !== 0) return false;
  return true;
}

function insert(p: number, i: number, key: number, value: number): void {
  dv.setUint32(core.param, value, true);
  for (let b = 4; b < vsOf(p); b++) core.u8[core.param + b] = 0;
  core.x.nodeInsertAt(p, i, key >>> 0, Math.floor(key / TWO32), core.param);
}

function fill(p: number, list: [number, number][]): void {
  list.forEach(([k, v], i) => {
    insert(p, i, k, v);
  });
}

describe('btree node primitives', () => {
  const a = core.slotAddr(0);
  const b = core.slotAddr(1);

  test("maxEntriesFor is the kernel's 3 * floor(floor(4064 / (8 + vs)) / 3)", () => {
    expect([4, 8, 16, 24].map((vs) => core.x.maxEntriesFor(vs))).toEqual([336, 252, 168, 126]);
  });

  test('nodeInit writes the header and zeroes the rest', () => {
    core.u8.fill(0xaa, a, a + 4096);
    core.x.nodeInit(a, 5, 1, LEAF, 24);
    expect([dv.getUint32(a + 4, true), dv.getUint32(a + 8, true), dv.getUint32(a + 12, true), nr(a), max(a), vsOf(a)]).toEqual([
      LEAF,
      5,
      1,
      0,
      126,
      24,
    ]);
    expect(tailIsZero(a)).toBe(true);
    expect(core.u8[a + 4095]).toBe(0);
  });

  test('insertAt / removeAt / lowerBound against a model, with 64-bit keys', () => {
    const rnd = seededRng(7);
    core.x.nodeInit(a, 9, 0, LEAF, 8);
    const model: [number, number][] = [];
    for (let step = 0; step < 2000; step++) {
      if (model.length < 252 && (model.length === 0 || rnd() < 0.6)) {
        const key = Math.floor(rnd() * 2 ** 40);
        let i = model.findIndex(([k]) => k >= key);
        if (i >= 0 && model[i][0] === key) continue;
        if (i < 0) i = model.length;
        const value = Math.floor(rnd() * TWO32);
        model.splice(i, 0, [key, value]);
        insert(a, i, key, value);
      } else {
        const i = Math.floor(rnd() * model.length);
        model.splice(i, 1);
        core.x.nodeRemoveAt(a, i);
      }
      const probe = Math.floor(rnd() * 2 ** 40);
      let want = -1;
      for (let i = 0; i < model.length; i++) if (model[i][0] <= probe) want = i;
      expect(core.x.nodeLowerBound(a, probe >>> 0, Math.floor(probe / TWO32)), `step ${step}`).toBe(want);
    }
    expect(entries(a)).toEqual(model);
    expect(tailIsZero(a)).toBe(true);
  });

  test('splitInto keeps the first entries and moves the rest to the empty node', () => {
    const list: [number, number][] = Array.from({ length: 100 }, (_, i) => [i * 10, i + 1000]);
    core.x.nodeInit(a, 1, 0, LEAF, 8);
    core.x.nodeInit(b, 2, 0, LEAF, 8);
    fill(a, list);
    core.x.nodeSplitInto(a, b, 40);
    expect(entries(a)).toEqual(list.slice(0, 40));
    expect(entries(b)).toEqual(list.slice(40));
    expect(tailIsZero(a) && tailIsZero(b)).toBe(true);
  });

  test('mergeInto appends every entry and empties the source', () => {
    const list: [number, number][] = Array.from({ length: 90 }, (_, i) => [i * 3, i]);
    core.x.nodeInit(a, 1, 0, LEAF, 8);
    core.x.nodeInit(b, 2, 0, LEAF, 8);
    fill(a, list.slice(0, 50));
    fill(b, list.slice(50));
    core.x.nodeMergeInto(a, b);
    expect(entries(a)).toEqual(list);
    expect(nr(b)).toBe(0);
    expect(tailIsZero(a) && tailIsZero(b)).toBe(true);
  });

  test('redistribute moves entries either way so the left node holds the target', () => {
    const list: [number, number][] = Array.from({ length: 120 }, (_, i) => [i * 2 + 1, i * 7]);
    for (const [split, target] of [
      [100, 60],
      [20, 60],
      [60, 60],
    ]) {
      core.x.nodeInit(a, 1, 0, LEAF, 8);
      core.x.nodeInit(b, 2, 0, LEAF, 8);
      fill(a, list.slice(0, split));
      fill(b, list.slice(split));
      core.x.nodeRedistribute(a, b, target);
      expect(entries(a), `split ${split} target ${target}`).toEqual(list.slice(0, target));
      expect(entries(b)).toEqual(list.slice(target));
      expect(tailIsZero(a) && tailIsZero(b)).toBe(true);
    }
  });
});

describe('nodeCheck', () => {
  const p = core.slotAddr(2);

  function valid(flags = LEAF, vs = 8): void {
    core.x.nodeInit(p, 12, 0, flags, vs);
    fill(p, [
      [1, 1],
      [5, 2],
      [9, 3],
    ]);
    core.x.blockPrepare(p, Salt.Node);
  }

  test('a prepared node passes; each broken rule gives its own status', () => {
    valid();
    expect(core.x.nodeCheck(p, 12, 0, 8)).toBe(Status.OK);
    expect(core.x.nodeCheck(p, 13, 0, 8)).toBe(Status.BAD_BLOCKNR);
    expect(core.x.nodeCheck(p, 12, 0, 16)).toBe(Status.BAD_VALUE_SIZE);
    const broken: [string, () => void, number][] = [
      [
        'flipped payload byte',
        () => {
          core.u8[p + 100] ^= 1;
        },
        Status.BAD_CHECKSUM,
      ],
      ['flags 3', () => dv.setUint32(p + 4, 3, true), Status.BAD_FLAGS],
      ['max_entries not a multiple of 3', () => dv.setUint32(p + 20, 251, true), Status.BAD_MAX_ENTRIES],
      ['max_entries beyond the block', () => dv.setUint32(p + 20, 255, true), Status.BAD_MAX_ENTRIES],
      ['nr_entries > max_entries', () => dv.setUint32(p + 16, 253, true), Status.BAD_NR_ENTRIES],
      ['keys out of order', () => dv.setUint32(p + 40, 1, true), Status.KEYS_OUT_OF_ORDER],
    ];
    for (const [what, breakIt, status] of broken) {
      valid();
      breakIt();
      if (status !== Status.BAD_CHECKSUM) core.x.blockPrepare(p, Salt.Node);
      expect(core.x.nodeCheck(p, 12, 0, 8), what).toBe(status);
    }
  });

  test('an internal node must hold 8-byte values and at least one entry', () => {
    valid(INTERNAL, 8);
    expect(core.x.nodeCheck(p, 12, 0, 24)).toBe(Status.OK);
    core.x.nodeInit(p, 12, 0, INTERNAL, 8);
    core.x.blockPrepare(p, Salt.Node);
    expect(core.x.nodeCheck(p, 12, 0, 24)).toBe(Status.BAD_NR_ENTRIES);
  });
});
