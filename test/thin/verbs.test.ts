// rename, rollback, read-only and in-use claims through the library: rollback gives the snapshot's content in
// constant time (no data block copied but a partial tail), keeps id, name, size and labels, frees what only the
// volume held and keeps both sides copy-on-write; size mismatches both ways; refusals leave the pool as it was;
// read-only volumes refuse every write path and are exported read-only over NBD; a served volume is not rolled
// back; the metadata passes every checker.
import { afterEach, describe, expect, test } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import { OWNER_LABEL, ThinPool } from '../../src/thin/pool.js';
import { fill } from '../support/model.js';
import { verifyMetadataDevice } from '../support/pool-check.js';
import { RawClient } from '../nbd/raw-client.js';
import { serveTcp } from '../nbd/support.js';

const BS = 64 * 1024;
const pools: ThinPool[] = [];

function memPool(): ThinPool {
  const p = ThinPool.memory({ size: 256 * BS, blockSize: BS });
  pools.push(p);
  return p;
}

afterEach(() => {
  for (const p of pools.splice(0)) if (!p.isClosed) p.closeSync();
});

function bytesOf(p: ThinPool, name: string): Buffer {
  const v = p.volume(name);
  const b = Buffer.alloc(v.sizeBytes);
  v.readSync(b, 0);
  return b;
}

function check(p: ThinPool): void {
  p.commitSync();
  verifyMetadataDevice(p.storage.metadata);
}

function expectCode(fn: () => unknown, code: string, re?: RegExp): void {
  try {
    fn();
  } catch (e) {
    expect(isThinpoolError(e) ? e.code : String(e), String(e)).toBe(code);
    if (re) expect((e as Error).message).toMatch(re);
    return;
  }
  throw new Error(`expected ${code}`);
}

describe('rollback', () => {
  test('content, identity, freed blocks, copy-on-write on both sides afterwards', () => {
    const p = memPool();
    const v = p.createThinSync('vm', { size: 8 * BS, labels: { env: 'x' } });
    v.writeSync(fill(8 * BS, 1), 0);
    p.snapshotSync('vm', 'snap', { readOnly: true });
    const want = bytesOf(p, 'snap');
    v.writeSync(fill(3 * BS, 2), BS); // three blocks only vm holds
    p.commitSync();
    const used = p.status().dataBlocks.used;
    const reads: number[] = [];
    const writes: number[] = [];
    const dev = p.storage.data;
    const r0 = dev.read.bind(dev);
    const w0 = dev.write.bind(dev);
    dev.read = (b, o) => {
      reads.push(o);
      r0(b, o);
    };
    dev.write = (b, o) => {
      writes.push(o);
      w0(b, o);
    };
    p.rollbackSync('vm', 'snap');
    expect([reads, writes]).toEqual([[], []]); // constant time: no data block read or written
    dev.read = r0;
    dev.write = w0;
    expect(bytesOf(p, 'vm').equals(want)).toBe(true);
    const info = p.list().find((x) => x.name === 'vm')!;
    expect(info).toMatchObject({ id: v.id, sizeBytes: 8 * BS, labels: { env: 'x' }, readOnly: false, exclusiveBytes: 0 });
    p.commitSync();
    expect(p.status().dataBlocks.used).toBe(used - 3);
    v.writeSync(Buffer.from('after'), 10);
    expect(bytesOf(p, 'snap').equals(want)).toBe(true);
    expect(p.volume('snap').readOnly).toBe(true);
    check(p);
  });

  test('a volume grown past a snapshot that ends inside a block: the rest of that block reads zeros', () => {
    const p = memPool();
    const v = p.createThinSync('vm', { size: 4 * BS });
    v.writeSync(fill(4 * BS, 3), 0);
    p.snapshotSync('vm', 'snap');
    p.resizeSync('snap', 2 * BS + 1024); // snap's block 2 still holds vm's bytes past 1024
    p.resizeSync('vm', 6 * BS);
    p.rollbackSync('vm', 'snap');
    const want = Buffer.alloc(6 * BS);
    bytesOf(p, 'snap').copy(want);
    expect(p.volume('vm').sizeBytes).toBe(6 * BS);
    expect(bytesOf(p, 'vm').equals(want)).toBe(true);
    check(p);
  });

  test("a volume smaller than its snapshot: the snapshot's blocks past the end are not kept", () => {
    const p = memPool();
    const v = p.createThinSync('vm', { size: 6 * BS });
    v.writeSync(fill(6 * BS, 4), 0);
    p.snapshotSync('vm', 'snap');
    p.resizeSync('vm', 2 * BS + 512);
    p.rollbackSync('vm', 'snap');
    expect(bytesOf(p, 'vm').equals(bytesOf(p, 'snap').subarray(0, 2 * BS + 512))).toBe(true);
    expect(
      p
        .volume('vm')
        .map()
        .reduce((n, e) => n + e.lengthBytes, 0),
    ).toBe(3 * BS);
    p.resizeSync('vm', 6 * BS); // growing again shows zeros, not the snapshot's old blocks
    expect(
      bytesOf(p, 'vm')
        .subarray(2 * BS + 512)
        .every((b) => b === 0),
    ).toBe(true);
    check(p);
  });

  test('refusals change nothing: itself, unrelated, origin, read-only, owned, in use', async () => {
    const p = memPool();
    const v = p.createThinSync('vm', { size: 2 * BS });
    v.writeSync(fill(BS, 5), 0);
    p.snapshotSync('vm', 'snap');
    p.createThinSync('other', { size: 2 * BS });
    p.snapshotSync('vm', 'ro', { readOnly: true });
    p.snapshotSync('ro', 'ro-child');
    p.createThinSync('layer', { size: 2 * BS, labels: { [OWNER_LABEL]: 'images' } });
    p.snapshotSync('layer', 'layer-snap');
    p.commitSync();
    const before = JSON.stringify(p.list());
    const tx = p.status();
    expectCode(() => p.rollbackSync('vm', 'vm'), 'EINVAL', /itself/);
    expectCode(() => p.rollbackSync('vm', 'other'), 'EINVAL', /not a snapshot of vm/);
    expectCode(() => p.rollbackSync('snap', 'vm'), 'EINVAL', /not a snapshot of snap/);
    expectCode(() => p.rollbackSync('ro', 'ro-child'), 'EROFS', /read-only/);
    expectCode(() => p.rollbackSync('layer', 'layer-snap'), 'EBUSY', /belongs to images/);
    expectCode(() => p.rollbackSync('nope', 'snap'), 'ENOENT');
    const served = await serveTcp(p, { exports: ['vm'] });
    try {
      expect(p.usersOf('vm')).toEqual(['an NBD server']);
      expectCode(() => p.rollbackSync('vm', 'snap'), 'EBUSY', /in use by an NBD server/);
    } finally {
      await served.server.close();
    }
    expect(p.usersOf('vm')).toEqual([]);
    expect(JSON.stringify(p.list())).toBe(before);
    expect(p.status()).toEqual(tx);
    // The owner may.
    p.rollbackSync('layer', 'layer-snap', { owner: 'images' });
    p.rollbackSync('vm', 'snap');
    check(p);
  });
});

describe('rename and read-only', () => {
  test('rename keeps id and data; a taken or bad name is refused', () => {
    const p = memPool();
    const v = p.createThinSync('a', { size: BS });
    v.writeSync(fill(100, 6), 0);
    p.snapshotSync('a', 'a-snap');
    p.createThinSync('b', { size: BS });
    p.renameSync('a', 'c');
    expect(p.volume('c').id).toBe(v.id);
    expect(p.list().find((x) => x.name === 'a-snap')!.originName).toBe('c');
    expectCode(() => p.renameSync('c', 'b'), 'EEXIST');
    expectCode(() => p.renameSync('c', 'x/y'), 'EINVAL');
    expect(p.has('a')).toBe(false);
    check(p);
  });

  test('a read-only volume refuses writes, discards and resizes, and is exported read-only over NBD', async () => {
    const p = memPool();
    const v = p.createThinSync('v', { size: 2 * BS });
    v.writeSync(fill(10, 7), 0);
    p.updateSync('v', { readOnly: true });
    expectCode(() => v.writeSync(Buffer.from('x'), 0), 'EROFS');
    expectCode(() => v.discardSync(0, BS), 'EROFS');
    expectCode(() => p.resizeSync('v', 4 * BS), 'EROFS');
    const s = p.snapshotSync('v', 'ro-snap', { readOnly: true });
    expectCode(() => s.writeSync(Buffer.from('x'), 0), 'EROFS');
    const served = await serveTcp(p);
    try {
      const c = await RawClient.connect({ port: served.port });
      const { flags } = await c.negotiate('ro-snap');
      expect(flags & (1 << 1)).toBe(1 << 1); // NBD_FLAG_READ_ONLY
      c.close();
      const w = await RawClient.connect({ port: served.port });
      p.createThinSync('rw', { size: BS });
      expect((await w.negotiate('rw')).flags & (1 << 1)).toBe(0);
      w.close();
    } finally {
      await served.server.close();
    }
    p.updateSync('v', { readOnly: false });
    v.writeSync(Buffer.from('x'), 0);
    check(p);
  });
});
