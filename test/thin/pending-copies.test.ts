// Deferred copy-on-write (src/thin/pending-copies.ts) through the pool's interface, seen from a recording data
// device: a write of whole 4 KiB granules into a shared block neither copies nor writes at once (the bytes are
// held); the block is copied, and the held bytes written over it, when something reads or copies the block,
// when its old block is written in place, or by the commit, and never when later writes fill the block (it is
// then written whole). Every case checks the bytes of the volume, of its snapshot, and of a pool opened on the
// devices as a crash would leave them.
import { expect, test } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import { FaultDevice } from '../../src/io/fault-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { PendingCopies } from '../../src/thin/pending-copies.js';
import { ThinPool } from '../../src/thin/pool.js';
import { restoreMetadata } from '../../src/thin/restore.js';
import { parseThinXml } from '../../src/thin/thin-xml.js';
import { fill, keepOpen, readBytes as read, sameBytes as same } from '../support/model.js';
import { recordingPool } from '../support/recording-pool.js';

const BS = 64 * 1024;
const G = 4096;

/** A recording pool (test/support/recording-pool.ts) whose data device copies inside itself; its calls by name. */
function newPool(blocks: number, opts: { async?: boolean } = {}) {
  const { pool, meta, catalog, data, crashCopy } = recordingPool(blocks, BS, { copy: true, async: opts.async });
  const { copies, reads, writes } = data.calls;
  return { pool, dev: data.dev, meta, data: data.wrapped, catalog, copies, reads, writes, crashCopy, failNextCopies: data.failNextCopies };
}

/** A pool with volume v of `blocks` written blocks (seed 1), snapshot s, committed. */
function shared(blocks: number, opts: { async?: boolean } = {}) {
  const p = newPool(4 * blocks + 4, opts);
  const v = p.pool.createThinSync('v', { size: blocks * BS });
  const before = fill(blocks * BS, 1);
  v.writeSync(before, 0);
  p.pool.snapshotSync('v', 's');
  p.pool.commitSync();
  p.copies.length = 0;
  p.writes.length = 0;
  return { ...p, v, before };
}

test('a 4 KiB write into a shared block copies and writes nothing until the block is read; the read gets the old bytes around it', () => {
  const { pool, v, before, copies, writes } = shared(1);
  const old = v.map()[0]!.dblock; // (extents settle first: nothing is held yet)
  const piece = Buffer.from(fill(G, 2)); // a Buffer: its slice() is a view, not a copy
  v.writeSync(piece, 2 * G);
  piece.fill(0); // the pool holds a copy of the caller's bytes
  expect([copies, writes], 'no copy, no write at the write').toEqual([[], []]);
  expect(pool.status().dataBlocks.used, 'the new block is allocated').toBe(2);
  const want = before.slice();
  want.set(fill(G, 2), 2 * G);
  expect(same(read(v, 0, BS), want)).toBe(true);
  // The read made the block: the old block copied whole, then the held granule written over it.
  const nu = v.map()[0]!.dblock;
  expect(copies).toEqual([[old * BS, nu * BS, BS]]);
  expect(writes).toEqual([[nu * BS + 2 * G, G]]);
  expect(same(read(pool.volume('s'), 0, BS), before)).toBe(true);
  // Settled: reading again copies nothing more.
  read(v, 0, BS);
  expect(copies.length).toBe(1);
  pool.closeSync();
});

test('a shared block filled by whole-granule writes is never copied: it is written whole, once', () => {
  const { pool, v, before, copies, writes, crashCopy } = shared(2);
  const want = before.slice();
  // Block 1 written in 16 pieces, out of order; block 0 gets two pieces, then a 3-granule write across the rest.
  for (const g of [5, 0, 15, 9, 1, 5, 2, 3, 4, 6, 7, 8, 10, 11, 12, 13, 14]) {
    const piece = fill(G, 10 + g);
    v.writeSync(piece, BS + g * G);
    want.set(piece, BS + g * G);
  }
  expect(copies).toEqual([]);
  const filled = v.map()[1]!.dblock;
  expect(writes, 'one write of the whole block, when its last granule came').toEqual([[filled * BS, BS]]);
  const head = fill(2 * G, 3);
  v.writeSync(head, 0);
  want.set(head, 0);
  pool.commitSync();
  // Block 0 held granules 0-1 at the commit: copied whole, then the two granules written over it.
  expect(copies.map(([, , n]) => n)).toEqual([BS]);
  expect(same(read(v, 0, 2 * BS), want)).toBe(true);
  expect(same(read(pool.volume('s'), 0, 2 * BS), before)).toBe(true);
  const after = crashCopy();
  expect(same(read(after.volume('v'), 0, 2 * BS), want)).toBe(true);
  expect(same(read(after.volume('s'), 0, 2 * BS), before)).toBe(true);
  after.closeSync();
  pool.closeSync();
});

test('the commit copies what is owed before the mapping lands; a crash before it keeps the old mapping', () => {
  const { pool, v, before, copies, crashCopy } = shared(1);
  const piece = fill(G, 4);
  v.writeSync(piece, 8 * G);
  const early = crashCopy(); // crashed before the commit: the old mapping, the old bytes
  expect(same(read(early.volume('v'), 0, BS), before)).toBe(true);
  early.closeSync();
  pool.commitSync();
  expect(copies.length).toBe(1);
  const want = before.slice();
  want.set(piece, 8 * G);
  const late = crashCopy(); // crashed right after the commit: the new mapping, whole
  expect(same(read(late.volume('v'), 0, BS), want)).toBe(true);
  expect(same(read(late.volume('s'), 0, BS), before)).toBe(true);
  late.closeSync();
  pool.closeSync();
});

test('writing the old block in place first makes every block to be copied from it', () => {
  // Three devices map data block 0; by the kernel's time rule devices 1 and 3 see it shared and device 2 does
  // not (its mapping is as new as its snapshot time), so device 2 writes it in place, as dm-thin would.
  const meta = keepOpen(new MemoryDevice(1 << 20));
  const dev = new MemoryDevice(8 * BS);
  const before = fill(BS, 1);
  dev.write(before, 0);
  restoreMetadata(
    meta,
    parseThinXml(`<superblock uuid="" time="1" transaction="1" flags="0" version="2" data_block_size="128" nr_data_blocks="8">
  <device dev_id="1" mapped_blocks="1" transaction="0" creation_time="0" snap_time="1">
    <single_mapping origin_block="0" data_block="0" time="0"/>
  </device>
  <device dev_id="2" mapped_blocks="1" transaction="0" creation_time="1" snap_time="1">
    <single_mapping origin_block="0" data_block="0" time="1"/>
  </device>
  <device dev_id="3" mapped_blocks="1" transaction="0" creation_time="0" snap_time="1">
    <single_mapping origin_block="0" data_block="0" time="0"/>
  </device>
</superblock>`),
  );
  const pool = ThinPool.openStorage({ metadata: meta, data: keepOpen(dev), catalog: new MemoryCatalogStore() });
  const [one, two, three] = [pool.volume(1), pool.volume(2), pool.volume(3)];
  const piece = fill(G, 5);
  one.writeSync(piece, 0); // device 1's new block is to be copied from data block 0
  three.writeSync(piece, 4 * G); // and device 3's
  const newer = fill(BS, 6);
  two.writeSync(newer, 0); // in place into data block 0
  const want = before.slice();
  want.set(piece, 0);
  expect(same(read(one, 0, BS), want), "device 1 keeps block 0's bytes from before device 2 wrote").toBe(true);
  const want3 = before.slice();
  want3.set(piece, 4 * G);
  expect(same(read(three, 0, BS), want3), 'and device 3').toBe(true);
  expect(same(read(two, 0, BS), newer)).toBe(true);
  expect(two.map()[0]!.dblock, 'device 2 wrote in place').toBe(0);
  pool.closeSync();
});

test('a block that still owes bytes, shared by a new snapshot, is settled before it is copied again', () => {
  const { pool, v, before } = shared(1);
  const one = fill(G, 7);
  v.writeSync(one, 4 * G); // owes from the first snapshot's block
  pool.snapshotSync('v', 's2'); // s2 shares the block that owes
  const two = fill(G, 8);
  v.writeSync(two, 12 * G); // a second copy-on-write, from the block that owes
  const at1 = before.slice();
  at1.set(one, 4 * G);
  const at2 = at1.slice();
  at2.set(two, 12 * G);
  expect(same(read(pool.volume('s2'), 0, BS), at1)).toBe(true);
  expect(same(read(v, 0, BS), at2)).toBe(true);
  expect(same(read(pool.volume('s'), 0, BS), before)).toBe(true);
  pool.closeSync();
});

test('an in-place write into a block still to be copied: whole granules are held, anything else settles first', () => {
  const { pool, v, before, copies, writes, crashCopy } = shared(1);
  const want = before.slice();
  const put = (data: Uint8Array, at: number) => {
    v.writeSync(data, at);
    want.set(data, at);
  };
  put(fill(G, 9), 8 * G); // deferred
  put(fill(2 * G, 10), 0); // in place, whole granules 0-1: held, no copy, no write
  expect([copies, writes]).toEqual([[], []]);
  put(fill(10, 11), 5 * G + 7); // in place, part of granule 5: the block is made first, then the write
  const d = v.map()[0]!.dblock;
  expect(copies.map(([, , n]) => n)).toEqual([BS]);
  expect(writes).toEqual([
    [d * BS, 2 * G],
    [d * BS + 8 * G, G],
    [d * BS + 5 * G + 7, 10],
  ]);
  pool.commitSync();
  expect(copies.length, 'nothing more to copy at the commit').toBe(1);
  expect(same(read(v, 0, BS), want)).toBe(true);
  const after = crashCopy();
  expect(same(read(after.volume('v'), 0, BS), want)).toBe(true);
  after.closeSync();
  pool.closeSync();
});

test('data block numbers handed out (extents) point at whole blocks', () => {
  const { pool, v, before, dev } = shared(1);
  const piece = fill(G, 12);
  v.writeSync(piece, 3 * G);
  const [e] = v.map(); // settles
  const raw = new Uint8Array(BS);
  dev.read(raw, e!.dblock * BS);
  const want = before.slice();
  want.set(piece, 3 * G);
  expect(same(raw, want)).toBe(true);
  pool.closeSync();
});

test('deleting the snapshot that holds the old block: the old bytes stay until the commit copies them', () => {
  const { pool, v, before, crashCopy } = shared(1);
  const piece = fill(G, 13);
  v.writeSync(piece, 15 * G);
  pool.deleteSync('s'); // the old block is freed in this transaction: not reused, not released before the commit
  const w = pool.createThinSync('w', { size: BS });
  w.writeSync(fill(BS, 14), 0); // takes another block
  pool.commitSync();
  const want = before.slice();
  want.set(piece, 15 * G);
  expect(same(read(v, 0, BS), want)).toBe(true);
  const after = crashCopy();
  expect(same(read(after.volume('v'), 0, BS), want)).toBe(true);
  expect(same(read(after.volume('w'), 0, BS), fill(BS, 14))).toBe(true);
  after.closeSync();
  pool.closeSync();
});

test('on an asynchronous device, in-flight writes and reads of a block that owes see the same bytes', async () => {
  const { pool, v, before } = shared(2, { async: true });
  const want = before.slice();
  const a = fill(G, 15);
  await v.write(a, BS + 4 * G); // deferred
  want.set(a, BS + 4 * G);
  const b = fill(3 * G, 16);
  await v.write(b, BS + 8 * G); // in place, in flight, whole granules
  want.set(b, BS + 8 * G);
  const c = fill(100, 17);
  await v.write(c, BS + 13 * G + 1); // in place, in flight, part of a granule: settles first
  want.set(c, BS + 13 * G + 1);
  const got = new Uint8Array(2 * BS);
  await v.read(got, 0);
  expect(same(got, want)).toBe(true);
  const snap = new Uint8Array(2 * BS);
  await pool.volume('s').read(snap, 0);
  expect(same(snap, before)).toBe(true);
  pool.closeSync();
});

test('a commit whose copy fails is a data error: the transaction and what it owes stay, the next commit copies', () => {
  const { pool, v, before, copies, failNextCopies, crashCopy } = shared(1);
  const piece = fill(G, 18);
  v.writeSync(piece, 6 * G);
  failNextCopies(1);
  let err: unknown;
  try {
    pool.commitSync();
  } catch (e) {
    err = e;
  }
  expect(isThinpoolError(err, 'EIO')).toBe(true);
  expect([pool.mode, pool.status().needsCheck], 'still writable, no needs_check').toEqual(['write', false]);
  expect(copies.length).toBe(1);
  const early = crashCopy(); // nothing of the transaction was committed
  expect(same(read(early.volume('v'), 0, BS), before)).toBe(true);
  early.closeSync();
  pool.commitSync();
  expect(copies.length, 'copied again').toBe(2);
  const want = before.slice();
  want.set(piece, 6 * G);
  const late = crashCopy();
  expect(same(read(late.volume('v'), 0, BS), want)).toBe(true);
  late.closeSync();
  pool.closeSync();
});

test('a transaction dropped by a failed metadata change owes nothing afterwards', () => {
  const p = newPool(16);
  const v = p.pool.createThinSync('v', { size: BS });
  const before = fill(BS, 1);
  v.writeSync(before, 0);
  p.pool.createThinSync('x', { size: 4 * BS }).writeSync(fill(4 * BS, 2), 0);
  p.pool.snapshotSync('v', 's');
  p.pool.closeSync();
  // Reopened with a cold metadata cache: resizing x reads its mapping tree inside the change.
  const fault = new FaultDevice(keepOpen(p.meta));
  const pool = ThinPool.openStorage({ metadata: fault, data: p.data, catalog: p.catalog });
  pool.volume('v').writeSync(fill(G, 3), 0); // owes granules 1-15
  p.copies.length = 0;
  fault.failAt({ read: fault.reads });
  expect(() => pool.resizeSync('x', BS)).toThrow(expect.objectContaining({ code: 'EIO' }));
  expect([pool.mode, pool.status().needsCheck]).toEqual(['read-only', true]);
  expect(same(read(pool.volume('v'), 0, BS), before), 'the old mapping is back').toBe(true);
  pool.volume('v').map();
  pool.commitSync(); // read-only: flushes in-place writes only
  expect(p.copies, 'nothing copied for the dropped transaction').toEqual([]);
  pool.closeSync();
});

test('blocks over 1 MiB are copied at once, as before', () => {
  const big = 2 * 1024 * 1024;
  const { pool, data } = recordingPool(4, big, { copy: true });
  const v = pool.createThinSync('v', { size: big });
  v.writeSync(fill(G, 1), 0);
  pool.snapshotSync('v', 's');
  v.writeSync(fill(G, 2), G);
  const copied = data.calls.copies.reduce((sum, [, , n]) => sum + n, 0);
  expect(copied, 'the whole block, at the write').toBe(big);
  pool.closeSync();
});

test('held bytes are bounded: past the bound every entry is made real first (PendingCopies on its own)', () => {
  const calls: string[] = [];
  const io = {
    copy: (src: number, dst: number, n: number) => calls.push(`copy ${src / BS}->${dst / BS} ${n / G}`),
    write: (b: Uint8Array, o: number) => calls.push(`write ${Math.floor(o / BS)}+${(o % BS) / G} ${b.length / G}:${b[0]}`),
  };
  const p = new PendingCopies(BS, io, 3 * G);
  expect(p.canDefer(G, G) && !p.canDefer(1, G) && !p.canDefer(0, 100) && !p.canDefer(0, BS) && !p.canDefer(0, 0)).toBe(true);
  p.add(10, 1, 0, new Uint8Array(G).fill(7));
  p.add(11, 1, G, new Uint8Array(2 * G).fill(8)); // 3 granules held: at the bound
  expect([p.size, calls]).toEqual([2, []]);
  p.add(12, 2, 0, new Uint8Array(G).fill(9)); // past it: the two before are made real first
  expect(calls).toEqual(['copy 1->10 16', 'write 10+0 1:7', 'copy 1->11 16', 'write 11+1 2:8']);
  expect(p.size).toBe(1);
  calls.length = 0;
  expect(p.takeWrite(12, 2 * G, new Uint8Array(3 * G).fill(5)), 'held, past the bound: made real at once').toBe(true);
  expect(calls).toEqual(['copy 2->12 16', 'write 12+0 1:9', 'write 12+2 3:5']);
  expect(p.size).toBe(0);
  expect(p.takeWrite(12, 0, new Uint8Array(G)), 'no entry: the caller writes').toBe(false);
  p.add(13, 3, 0, new Uint8Array(G));
  expect(() => p.add(13, 4, G, new Uint8Array(G))).toThrow(expect.objectContaining({ code: 'ECORRUPT' }));
});

test('a block freed in the transaction that made it may be allocated again: what it held, or what was to be copied from it, is settled or dropped first', () => {
  // Target freed and reused: v's new block (holding a granule) is freed with v, and w's write may get it.
  const a = shared(1);
  a.v.writeSync(fill(G, 20), 0);
  a.pool.deleteSync('v');
  const free = a.pool.status().dataBlocks.free; // every free block, the one v's write took among them
  const w = a.pool.createThinSync('w', { size: free * BS });
  w.writeSync(fill(free * BS, 21), 0);
  expect(a.pool.status().dataBlocks.free).toBe(0);
  a.pool.commitSync();
  expect(same(read(w, 0, free * BS), fill(free * BS, 21))).toBe(true);
  const after = a.crashCopy();
  expect(same(read(after.volume('w'), 0, free * BS), fill(free * BS, 21))).toBe(true);
  expect(same(read(after.volume('s'), 0, BS), a.before)).toBe(true);
  after.closeSync();
  a.pool.closeSync();

  // Source freed and reused: x is made, snapshotted and written in this transaction; then x's and its
  // snapshot's hold on the old block go, and the block may be allocated for y before x's copy is made.
  const b = newPool(16);
  b.pool.commitSync();
  const x = b.pool.createThinSync('x', { size: BS });
  x.writeSync(fill(BS, 22), 0); // block allocated in this transaction
  b.pool.snapshotSync('x', 'xs');
  x.writeSync(fill(G, 23), 5 * G); // deferred: x's new block is to be copied from the old one
  b.pool.deleteSync('xs'); // the old block is free again (its count went 1 -> 0 in this transaction)
  const room = b.pool.status().dataBlocks.free; // the old block among them
  const y = b.pool.createThinSync('y', { size: room * BS });
  y.writeSync(fill(room * BS, 24), 0);
  expect(b.pool.status().dataBlocks.free).toBe(0);
  const want = fill(BS, 22);
  want.set(fill(G, 23), 5 * G);
  expect(same(read(x, 0, BS), want), "x has the old block's bytes from before y was written").toBe(true);
  expect(same(read(y, 0, room * BS), fill(room * BS, 24))).toBe(true);
  b.pool.commitSync();
  const again = b.crashCopy();
  expect(same(read(again.volume('x'), 0, BS), want)).toBe(true);
  expect(same(read(again.volume('y'), 0, room * BS), fill(room * BS, 24))).toBe(true);
  again.closeSync();
  b.pool.closeSync();
});

test('an in-place write over a run of blocks makes each block of the run that is still to be copied first', () => {
  const { pool, v, before, crashCopy } = shared(3);
  const want = before.slice();
  const put = (data: Uint8Array, at: number) => {
    v.writeSync(data, at);
    want.set(data, at);
  };
  put(fill(BS, 30), 0); // whole blocks: new blocks, nothing to copy
  put(fill(G, 31), BS + 7 * G); // block 1: deferred
  put(fill(BS, 32), 2 * BS); // (extents would make block 1 real: the layout is checked after the write)
  // One write from inside block 0 to inside block 2: a run of three mapped, unshared blocks in place.
  put(fill(2 * BS, 39), BS / 2);
  expect(v.map().length, 'three consecutive data blocks: the write was one run').toBe(1);
  pool.commitSync();
  expect(same(read(v, 0, 3 * BS), want)).toBe(true);
  const after = crashCopy();
  expect(same(read(after.volume('v'), 0, 3 * BS), want)).toBe(true);
  after.closeSync();
  pool.closeSync();
});

test('PendingCopies on its own: what counts as whole granules, the 1 MiB limit, and the error for a block allocated twice', () => {
  const calls: string[] = [];
  const io = { copy: () => calls.push('copy'), write: () => calls.push('write') };
  expect(new PendingCopies(1024 * 1024, io).canDefer(0, G), '1 MiB blocks defer').toBe(true);
  expect(new PendingCopies(2 * 1024 * 1024, io).canDefer(0, G), 'larger ones do not').toBe(false);
  const p = new PendingCopies(BS, io);
  p.add(1, 0, 0, new Uint8Array(G));
  expect(p.takeWrite(1, 4 * G, new Uint8Array(10)), 'aligned offset, part of a granule').toBe(false);
  expect(calls).toEqual(['copy', 'write']);
  p.add(2, 0, 0, new Uint8Array(G));
  expect(p.takeWrite(2, 4 * G + 512, new Uint8Array(G)), 'a granule off the grid').toBe(false);
  expect(calls.length).toBe(4);
  p.add(3, 0, 0, new Uint8Array(G));
  let err: unknown;
  try {
    p.add(3, 0, G, new Uint8Array(G));
  } catch (e) {
    err = e;
  }
  expect(err).toMatchObject({
    code: 'ECORRUPT',
    structure: 'data space map',
    message: 'data block 3 was allocated twice in one transaction (it is still to be copied)',
  });
  // Held bytes exactly at the bound stay held.
  const q = new PendingCopies(BS, io, 2 * G);
  calls.length = 0;
  q.add(5, 0, 0, new Uint8Array(G));
  expect(q.takeWrite(5, G, new Uint8Array(G))).toBe(true);
  expect([q.size, calls]).toEqual([1, []]);
});

test("a rollback to a snapshot whose partial last block is still to be copied copies that block's whole bytes", () => {
  const { pool, v, before, crashCopy } = shared(2); // v: 2 blocks; s: its snapshot
  pool.resizeSync('s', BS + BS / 2); // s ends half-way through block 1 (v stays larger)
  const piece = fill(G, 40);
  pool.volume('s').writeSync(piece, BS + G); // s's block 1: deferred
  pool.rollbackSync('v', 's'); // v takes s's blocks; the part of block 1 past s's end reads as zeros
  const want = new Uint8Array(2 * BS);
  want.set(before.subarray(0, BS + BS / 2));
  want.set(piece, BS + G);
  expect(same(read(v, 0, 2 * BS), want)).toBe(true);
  pool.commitSync();
  const after = crashCopy();
  expect(same(read(after.volume('v'), 0, 2 * BS), want)).toBe(true);
  after.closeSync();
  pool.closeSync();
});
