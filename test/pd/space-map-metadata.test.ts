// The metadata space map's host door (src/pd/space-map-metadata.ts) on a bare stack (core, block cache,
// transaction manager, the ref-count btree): a map of three bitmaps (the last one partial) written at commit
// loads back with the same counts and the index entries dm-thin expects; a commit writes no block the previous
// commit references; growing and loading refuse sizes past the core's arrays; allocation stops at the reserve.
import { expect, test } from 'vitest';
import { Core } from '../../src/core/wasm.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { BlockKind } from '../../src/pd/block-kinds.js';
import { ENTRIES_PER_BITMAP, MetadataSpaceMap } from '../../src/pd/space-map-metadata.js';
import { NR, commit, counts, stack, watchedDevice } from '../support/space-map-stack.js';
import { codeOrUntyped } from '../support/thrown.js';

test('three bitmaps: counts (1, 2, 3 and past 3) load back, and each index entry holds its bitmap, nr_free and first free', () => {
  const dev = new MemoryDevice(NR * 4096);
  const s = stack(dev);
  s.sm.initEmpty();
  s.sm.inc(0);
  const got: number[] = [];
  for (let i = 0; i < ENTRIES_PER_BITMAP + 500; i++) got.push(s.sm.alloc());
  expect(new Set(got).size).toBe(got.length);
  const last = NR - 5; // a block in the partial third bitmap
  s.sm.inc(last);
  s.sm.inc(got[10]);
  for (let i = 0; i < 4; i++) s.sm.inc(got[20]); // count 5: the ref-count tree
  s.sm.inc(got[30]);
  s.sm.inc(got[30]); // count 3
  const root = commit(s);
  expect(root.nrBlocks).toBe(NR);
  const want = counts(s.sm);
  expect([want[last], want[got[10]], want[got[20]], want[got[30]]]).toEqual([1, 2, 5, 3]);
  const used = want.filter((c) => c > 0).length;
  expect(root.nrAllocated).toBe(used);

  const t = stack(dev);
  t.sm.load(root, t.cache, t.codec);
  expect(counts(t.sm)).toEqual(want);
  expect(t.sm.nrAllocated).toBe(used);
  expect(t.sm.nrBitmaps).toBe(3);

  // The index block as dm-thin lays it out: entry j at 16 + 16 j: bitmap block u64, nr_free u32, none_free_before u32.
  const idx = t.cache.get(root.bitmapRoot, BlockKind.Index);
  for (let j = 0; j < 3; j++) {
    const e = idx + 16 + 16 * j;
    const block = t.core.u32[e >>> 2] + t.core.u32[(e + 4) >>> 2] * 2 ** 32;
    const base = j * ENTRIES_PER_BITMAP;
    const covered = Math.min(ENTRIES_PER_BITMAP, NR - base);
    const mine = want.slice(base, base + covered);
    const free = mine.filter((c) => c === 0).length;
    expect(t.core.u32[(e + 8) >>> 2], `nr_free of bitmap ${j}`).toBe(free);
    if (free > 0) expect(t.core.u32[(e + 12) >>> 2], `first free of bitmap ${j}`).toBe(mine.indexOf(0));
    expect(want[block], `bitmap ${j} at block ${block} is counted`).toBe(1);
  }
});

test('a commit writes no block the previous commit references, so the previous map still loads until the new root is used', () => {
  const { dev, mem, written } = watchedDevice(NR * 4096);
  const s = stack(dev);
  s.sm.initEmpty();
  s.sm.inc(0);
  const got: number[] = [];
  for (let i = 0; i < ENTRIES_PER_BITMAP + 200; i++) got.push(s.sm.alloc());
  s.sm.inc(got[5]);
  s.sm.inc(got[5]);
  const root1 = commit(s);
  const before = counts(s.sm);
  for (let round = 0; round < 3; round++) {
    written.clear();
    s.sm.dec(got[ENTRIES_PER_BITMAP + round]); // a block of the second bitmap
    s.sm.dec(got[100 + round]); // and of the first
    if (round === 1) s.sm.dec(got[5]); // a count of 3 falls to 2: the ref-count tree changes
    commit(s);
    expect(written.size).toBeGreaterThan(0);
    for (const b of written) expect(before[b], `block ${b} of the last commit written in round ${round}`).toBe(0);
    if (round === 0) {
      const t = stack(mem);
      t.sm.load(root1, t.cache, t.codec);
      expect(counts(t.sm)).toEqual(before);
    }
    before.splice(0, before.length, ...counts(s.sm));
  }
});

test('blocks freed in a transaction are handed out only after its commit; allocation stops at the reserve, which a commit may use', () => {
  const s = stack(new MemoryDevice(ENTRIES_PER_BITMAP * 4096), 2000, 2000);
  s.sm.initEmpty();
  s.sm.inc(0);
  const a = s.sm.alloc();
  commit(s);
  expect(s.sm.dec(a)).toBe(0);
  const free = s.sm.freeBlocks();
  const got = new Set<number>();
  expect(
    codeOrUntyped(() => {
      for (;;) got.add(s.sm.alloc());
    }),
  ).toBe('ENOSPC_METADATA');
  expect(got.has(a)).toBe(false);
  expect(got.size).toBe(free);
  expect(s.sm.freeBlocks()).toBeLessThanOrEqual(0);
  commit(s); // the map's own bitmap and index come from the reserve
  s.sm.useReserve++;
  const more = new Set<number>();
  expect(
    codeOrUntyped(() => {
      for (;;) more.add(s.sm.alloc());
    }),
  ).toBe('ENOSPC_METADATA');
  s.sm.useReserve--;
  expect(more.has(a)).toBe(true); // freed before the last commit: now free to hand out
  expect(s.sm.dec(a)).toBe(0);
  expect(codeOrUntyped(() => s.sm.dec(a))).toBe('ECORRUPT');
  expect(codeOrUntyped(() => s.sm.inc(5000))).toBe('EBADBLOCKNR');
});

test('growing keeps every count and adds bitmaps at the commit; shrinking or growing past the core arrays is refused, as is a map larger than them', () => {
  const dev = new MemoryDevice(NR * 4096);
  const s = stack(dev, ENTRIES_PER_BITMAP + 10, NR);
  s.sm.initEmpty();
  s.sm.inc(0);
  for (let i = 0; i < 50; i++) s.sm.alloc();
  commit(s);
  expect(codeOrUntyped(() => s.sm.extend(ENTRIES_PER_BITMAP))).toBe('EINVAL');
  expect(codeOrUntyped(() => s.sm.extend(NR + 1))).toBe('EINVAL');
  s.sm.extend(NR);
  expect([s.sm.nrBlocks, s.sm.nrBitmaps]).toEqual([NR, 3]);
  const root = commit(s);
  const t = stack(dev);
  t.sm.load(root, t.cache, t.codec);
  expect(t.sm.nrBlocks).toBe(NR);
  const all = counts(t.sm);
  expect(all).toEqual(counts(s.sm));
  const idx = t.cache.get(root.bitmapRoot, BlockKind.Index);
  for (let j = 0; j < 3; j++) {
    const mine = all.slice(j * ENTRIES_PER_BITMAP, Math.min(NR, (j + 1) * ENTRIES_PER_BITMAP));
    expect(t.core.u32[(idx + 16 + 16 * j + 8) >>> 2], `nr_free of bitmap ${j}`).toBe(mine.filter((c) => c === 0).length);
  }
  expect(codeOrUntyped(() => new MetadataSpaceMap(new Core(64, 100), 101))).toBe('EINVAL');
  const u = stack(new MemoryDevice(NR * 4096), 100, 100);
  expect(codeOrUntyped(() => u.sm.load({ ...root, nrBlocks: 101 }, u.cache, u.codec))).toBe('EINVAL');
});
