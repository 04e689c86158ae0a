// The metadata space map's commit and load (src/pd/space-map-metadata.ts) past the plain round trip: an abort
// followed by a new transaction; a commit rewrites only what changed (the ref-count root, the bitmaps whose counts
// did not change) and frees what it replaced; a commit whose shadowing dirties other bitmaps shadows them too,
// never writing a block of the last commit; load reads no bitmap value past the map's size and no ref-count entry
// that disagrees with its bitmap; the largest map (255 bitmaps) commits and loads, and one bitmap more is refused.
import { expect, test } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { Core } from '../../src/core/wasm.js';
import { ENTRIES_PER_BITMAP, MAX_METADATA_BLOCKS, MetadataSpaceMap } from '../../src/pd/space-map-metadata.js';
import { NR, abort, commit, counts, indexEntries, stack, watchedDevice, type Stack } from '../support/space-map-stack.js';
import { codeOrUntyped } from '../support/thrown.js';

const E = ENTRIES_PER_BITMAP;

function allocMany(s: Stack, n: number): number[] {
  const got: number[] = [];
  for (let i = 0; i < n; i++) got.push(s.sm.alloc());
  return got;
}

/** Every (block, count) entry of the ref-count tree at root, and its node blocks. */
function refTree(s: Stack, root: number): { entries: Array<[number, number]>; nodes: number[] } {
  const entries: Array<[number, number]> = [];
  const nodes: number[] = [];
  s.codec.read(
    root,
    (b, c) => entries.push([b, c]),
    (b) => nodes.push(b),
  );
  return { entries, nodes };
}

/** The error f throws, as code and message (or undefined when it returns). */
function failure(f: () => unknown): { code: string; message: string; structure?: string } | undefined {
  try {
    f();
  } catch (e) {
    if (isThinpoolError(e)) return { code: e.code, message: e.message, structure: e.structure };
    throw e;
  }
  return undefined;
}

test('an abort returns to the last commit (clean, the same counts and free blocks), and the next transaction commits from there', () => {
  const dev = new MemoryDevice(NR * 4096);
  const s = stack(dev);
  s.sm.initEmpty();
  expect(s.sm.alloc()).toBe(0); // the first block of a fresh map is handed out (the superblock's, in a pool)
  const got = allocMany(s, 40);
  s.sm.inc(got[0]);
  s.sm.inc(got[0]); // count 3: an entry of the ref-count tree
  const root1 = commit(s);
  expect(s.sm.clean).toBe(true);
  const free1 = s.sm.freeBlocks();
  const counts1 = counts(s.sm);

  s.sm.dec(got[1]);
  const x = s.sm.alloc();
  s.sm.inc(got[0]); // count 4: the ref-count tree would change
  expect(s.sm.clean).toBe(false);
  expect(s.sm.freeBlocks()).toBe(free1 - 1);
  abort(s, root1);
  expect(s.sm.clean).toBe(true);
  expect(counts(s.sm)).toEqual(counts1);
  expect(s.sm.freeBlocks()).toBe(free1);
  expect(s.sm.nrAllocated).toBe(root1.nrAllocated);
  expect(s.sm.countOf(x)).toBe(0);

  s.sm.dec(got[2]); // a count of 1 falls to 0: no count of 3 or more changes
  const root2 = commit(s);
  expect(root2.refCountRoot, 'the ref-count tree is kept: the aborted change to it is gone').toBe(root1.refCountRoot);
  const t = stack(dev);
  t.sm.load(root2, t.cache, t.codec);
  expect(counts(t.sm)).toEqual(counts(s.sm));
  expect([t.sm.countOf(got[0]), t.sm.countOf(got[1]), t.sm.countOf(got[2])]).toEqual([3, 1, 0]);
});

test('a commit rewrites only what changed and frees what it replaced; a map loaded back keeps the index hints of the bitmaps it does not rewrite', () => {
  const dev = new MemoryDevice(NR * 4096);
  const s = stack(dev);
  s.sm.initEmpty();
  s.sm.inc(0);
  const got = allocMany(s, E + 500); // bitmap 0 full, bitmap 1 partly used
  s.sm.inc(NR - 5); // one block of bitmap 2
  s.sm.inc(got[10]);
  s.sm.inc(got[10]); // count 3
  for (let i = 0; i < 4; i++) s.sm.inc(got[20]); // count 5
  const root1 = commit(s);
  expect(refTree(s, root1.refCountRoot).entries, 'the ref-count tree holds exactly the counts >= 3').toEqual([
    [got[10], 3],
    [got[20], 5],
  ]);
  const idx1 = indexEntries(s, root1, 3);
  expect([idx1[0].nrFree, idx1[0].noneFreeBefore], 'a full bitmap: no free entry, none free before its end').toEqual([0, E]);
  expect([idx1[2].nrFree, idx1[2].noneFreeBefore]).toEqual([99, 0]);

  s.sm.dec(got[E + 100]); // a block of bitmap 1 only
  const root2 = commit(s);
  expect(root2.refCountRoot, 'no count >= 3 changed: the ref-count tree is kept').toBe(root1.refCountRoot);
  const idx2 = indexEntries(s, root2, 3);
  expect(idx2[0], 'bitmap 0 did not change').toEqual(idx1[0]);
  expect(idx2[2], 'bitmap 2 did not change').toEqual(idx1[2]);
  expect(idx2[1].block).not.toBe(idx1[1].block);
  expect(root2.bitmapRoot).not.toBe(root1.bitmapRoot);
  expect([s.sm.countOf(idx1[1].block), s.sm.countOf(root1.bitmapRoot)], 'the replaced bitmap and index are free').toEqual([0, 0]);

  const oldNodes = refTree(s, root2.refCountRoot).nodes;
  s.sm.inc(got[20]); // count 6: the tree is rebuilt
  const root3 = commit(s);
  expect(root3.refCountRoot).not.toBe(root2.refCountRoot);
  expect(refTree(s, root3.refCountRoot).entries).toEqual([
    [got[10], 3],
    [got[20], 6],
  ]);
  for (const b of oldNodes) expect(s.sm.countOf(b), `node ${b} of the replaced ref-count tree is free`).toBe(0);

  // Loaded back, a commit that rewrites bitmap 1 only writes the other entries from the hints it loaded.
  const idx3 = indexEntries(s, root3, 3);
  const t = stack(dev);
  t.sm.load(root3, t.cache, t.codec);
  t.sm.dec(got[E + 101]);
  const root4 = commit(t);
  const idx4 = indexEntries(t, root4, 3);
  expect([idx4[0], idx4[2]]).toEqual([idx3[0], idx3[2]]);
  expect(idx4[1].nrFree).toBe(idx3[1].nrFree + 1);
  expect(root4.refCountRoot).toBe(root3.refCountRoot);
});

test('a commit whose shadowing dirties another bitmap shadows it too: no block of the last commit is written, even when no count changed', () => {
  const { dev, mem, written } = watchedDevice(NR * 4096);
  const s = stack(dev);
  s.sm.initEmpty();
  s.sm.inc(0);
  allocMany(s, E + 200); // the cursor moves into bitmap 1: the map's own blocks go there
  const root1 = commit(s);
  const check = (what: string, before: number[]): void => {
    expect(written.size, what).toBeGreaterThan(0);
    for (const b of written) expect(before[b], `${what}: block ${b} of the last commit written`).toBe(0);
    written.clear();
  };

  // Only bitmap 2 changes; its new block and the index's come from bitmap 1, which the first round passed.
  let before = counts(s.sm);
  written.clear();
  s.sm.inc(NR - 5);
  const root2 = commit(s);
  check('a change in bitmap 2 only', before);
  expect(indexEntries(s, root2, 3)[1].block).not.toBe(indexEntries(s, root1, 3)[1].block);

  // No count changed: only the index moves, and the bitmap its move touches is shadowed.
  before = counts(s.sm);
  const root3 = commit(s);
  check('a commit with no change', before);
  expect(root3.bitmapRoot).not.toBe(root2.bitmapRoot);

  const t = stack(mem);
  t.sm.load(root3, t.cache, t.codec);
  expect(counts(t.sm)).toEqual(counts(s.sm));
});

test('load counts no bitmap value past the map size, and no ref-count entry whose bitmap value is not 3', () => {
  const dev = new MemoryDevice(NR * 4096);
  const s = stack(dev);
  s.sm.initEmpty();
  s.sm.inc(0);
  const got = allocMany(s, E + 300); // bitmap 1 in use past entry 100
  s.sm.inc(got[5]);
  s.sm.inc(got[5]); // count 3
  const root = commit(s);
  const all = counts(s.sm);

  // The same index read as a map of E + 100 blocks: bitmap 1 holds values past its 100 entries.
  const small = E + 100;
  expect(all[small], 'the first block past the smaller map is in use').toBe(1);
  const t = stack(dev);
  t.sm.load({ ...root, nrBlocks: small }, t.cache, t.codec);
  expect(t.sm.nrAllocated).toBe(all.slice(0, small).filter((c) => c > 0).length);
  expect(counts(t.sm, small)).toEqual(all.slice(0, small));
  for (let b = small; b < small + 300; b++) expect(t.sm.countOf(b), `block ${b} past the map`).toBe(0);

  // A ref-count tree that disagrees with the bitmaps: an entry for a block of count 1 is not taken.
  const a1 = got[7];
  const bad = s.codec.build([
    [got[5], 4],
    [a1, 9],
  ]);
  s.cache.writeDirty();
  const u = stack(dev);
  u.sm.load({ ...root, refCountRoot: bad }, u.cache, u.codec);
  expect([u.sm.countOf(got[5]), u.sm.countOf(a1)], 'only the entry for a bitmap value 3 is taken').toEqual([4, 1]);
});

test('blocks in use at the loaded commit are not handed out in the next transaction, even once freed in it', () => {
  const dev = new MemoryDevice(NR * 4096);
  const s = stack(dev, 3000, 3000);
  s.sm.initEmpty();
  s.sm.inc(0);
  const got = allocMany(s, 100);
  const root = commit(s);
  const t = stack(dev, 3000, 3000);
  t.sm.load(root, t.cache, t.codec);
  expect(t.sm.dec(got[0])).toBe(0); // the lowest block in use: the first a scan from 0 would meet
  const free = t.sm.freeBlocks();
  expect(free).toBe(3000 - t.sm.reserve - root.nrAllocated);
  const handed = new Set(allocMany(t, free));
  expect(handed.has(got[0])).toBe(false);
  for (const b of handed) expect(got.includes(b) || b === 0, `block ${b} was in use at the commit`).toBe(false);
});

test('growing, loading and counting outside the map are refused with errors that say what and where', () => {
  const dev = new MemoryDevice(NR * 4096);
  const s = stack(dev, E, NR);
  s.sm.initEmpty();
  s.sm.inc(0);
  const got = allocMany(s, 50);
  const root1 = commit(s);
  s.sm.extend(E); // the same size: nothing to do
  expect(s.sm.nrBlocks).toBe(E);
  expect(failure(() => s.sm.extend(E - 1))?.message).toMatch(/cannot shrink \(16320 -> 16319\)/);
  expect(failure(() => new MetadataSpaceMap(new Core(64, 100), 101))?.message).toMatch(/counts area too small/);
  const v = stack(dev, 100, 100);
  expect(failure(() => v.sm.load(root1, v.cache, v.codec))?.message).toMatch(/size mismatch/);
  expect(failure(() => s.sm.inc(NR + 1))).toMatchObject({ code: 'EBADBLOCKNR', structure: 'space map' });
  expect(failure(() => s.sm.dec(NR + 1))).toMatchObject({ code: 'EBADBLOCKNR', structure: 'space map' });

  // Loaded back, a growth by a bitmap keeps every count: the new bitmap is created, no old block is released.
  const t = stack(dev, E, NR);
  t.sm.load(root1, t.cache, t.codec);
  t.sm.extend(E + 10);
  const root2 = commit(t);
  const u = stack(dev, E, NR);
  u.sm.load(root2, u.cache, u.codec);
  expect(u.sm.nrBitmaps).toBe(2);
  expect([0, ...got].map((b) => u.sm.countOf(b))).toEqual(new Array(51).fill(1));
  // Grown without a load between: the blocks in use before keep their counts too.
  s.sm.extend(NR);
  commit(s);
  expect([0, ...got].map((b) => s.sm.countOf(b))).toEqual(new Array(51).fill(1));
});

test('255 bitmaps: the largest map commits and loads back; one bitmap more is refused by extend and by load', () => {
  const cap = MAX_METADATA_BLOCKS + E; // core arrays for 256 bitmaps
  const dev = new MemoryDevice(cap * 4096); // sparse: only the blocks written are kept
  const s = stack(dev, E, cap);
  s.sm.initEmpty();
  s.sm.inc(0);
  commit(s);
  expect(failure(() => s.sm.extend(MAX_METADATA_BLOCKS + 1))).toMatchObject({
    code: 'EINVAL',
    message: expect.stringMatching(/cannot grow to 4161601 blocks/),
  });
  s.sm.extend(MAX_METADATA_BLOCKS);
  expect(s.sm.nrBitmaps).toBe(255);
  s.sm.inc(MAX_METADATA_BLOCKS - 1); // the last block of the last bitmap
  const root = commit(s);
  const t = stack(dev, E, cap);
  t.sm.load(root, t.cache, t.codec);
  expect(t.sm.nrBitmaps).toBe(255);
  expect([t.sm.countOf(0), t.sm.countOf(MAX_METADATA_BLOCKS - 1), t.sm.countOf(MAX_METADATA_BLOCKS - 2)]).toEqual([1, 1, 0]);
  expect(t.sm.nrAllocated).toBe(root.nrAllocated);
  const last = indexEntries(t, root, 255)[254];
  expect([last.nrFree, last.noneFreeBefore]).toEqual([E - 1, 0]);
  expect(codeOrUntyped(() => t.sm.load({ ...root, nrBlocks: MAX_METADATA_BLOCKS + 1 }, t.cache, t.codec))).toBe('EBADSUPER');
  expect(failure(() => t.sm.load({ ...root, nrBlocks: MAX_METADATA_BLOCKS + 1 }, t.cache, t.codec))?.message).toMatch(
    /has 256 bitmaps \(max 255\)/,
  );
});

test('block 0 may hold the ref-count root, the index or a bitmap: it is released like any other block, and a block the commit allocated is not shadowed again in it', () => {
  const dev = new MemoryDevice(NR * 4096);
  const s = stack(dev);
  s.sm.initEmpty();
  const root1 = commit(s); // the ref-count tree is built first: it takes block 0
  expect(root1.refCountRoot).toBe(0);
  const x = s.sm.alloc();
  s.sm.inc(x);
  s.sm.inc(x); // count 3: the tree is rebuilt elsewhere
  const [y, z] = allocMany(s, 2);
  const root2 = commit(s);
  expect(root2.refCountRoot).not.toBe(0);
  expect(s.sm.countOf(0), 'the replaced ref-count root').toBe(0);

  // A fresh load searches from block 0: a commit with no change puts the index there.
  const t = stack(dev);
  t.sm.load(root2, t.cache, t.codec);
  const root3 = commit(t);
  expect(root3.bitmapRoot).toBe(0);
  const root4 = commit(t);
  expect(root4.bitmapRoot).not.toBe(0);
  expect(t.sm.countOf(0), 'the replaced index').toBe(0);

  // And a change in bitmap 0 puts that bitmap there.
  const u = stack(dev);
  u.sm.load(root4, u.cache, u.codec);
  u.sm.dec(y);
  const root5 = commit(u);
  expect(indexEntries(u, root5, 1)[0].block).toBe(0);
  u.sm.dec(z);
  const root6 = commit(u);
  expect(indexEntries(u, root6, 1)[0].block).not.toBe(0);
  expect(u.sm.countOf(0), 'the replaced bitmap').toBe(0);
  expect(root6.refCountRoot).toBe(root2.refCountRoot);
});

test('a commit needing three rounds of shadowing: the bitmap dirtied by the second round is shadowed too', () => {
  // The state is built so that a commit with no change moves the index within bitmap 2's range, shadowing bitmap 2
  // frees its old block in bitmap 0's range, and bitmap 0 (already passed by that round) needs a third round.
  // Allocations that are then aborted move the allocation cursor, which survives an abort.
  const { dev, written } = watchedDevice(NR * 4096);
  const s = stack(dev);
  const cursorTo = (root: ReturnType<typeof commit>, stop: (b: number) => boolean): void => {
    s.sm.useReserve++;
    while (!stop(s.sm.alloc()));
    s.sm.useReserve--;
    abort(s, root);
  };
  s.sm.initEmpty();
  s.sm.inc(0);
  const rootA = commit(s); // every part of the map in bitmap 0's range
  cursorTo(rootA, (b) => b >= E);
  s.sm.inc(NR - 5);
  const rootB1 = commit(s); // the bitmaps and the index move into bitmap 1's range
  cursorTo(rootB1, (b) => b === NR - 2);
  const rootB2 = commit(s); // the index takes the last block; the bitmaps wrap round into bitmap 0's range
  expect(rootB2.bitmapRoot).toBe(NR - 1);
  const bm2 = indexEntries(s, rootB2, 3)[2].block;
  expect(bm2).toBeLessThan(E);
  cursorTo(rootB2, (b) => b >= 2 * E);

  const before = counts(s.sm);
  written.clear();
  const rootC = commit(s);
  expect(written.size).toBeGreaterThan(0);
  for (const b of written) expect(before[b], `block ${b} of the last commit written`).toBe(0);
  const idx = indexEntries(s, rootC, 3);
  expect(idx[2].block).toBeGreaterThanOrEqual(2 * E);
  expect(idx[0].block, 'bitmap 0, dirtied by freeing the old bitmap 2, is shadowed').not.toBe(indexEntries(s, rootB2, 1)[0].block);
  expect(s.sm.countOf(bm2)).toBe(0);
});
