// The Volume handle (src/thin/volume.ts) through the pool: range checks at both ends, read-only volumes, flush
// as a commit that a reopened copy sees, and extents coalesced over consecutive data blocks only.
import { expect, test } from 'vitest';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { ThinPool } from '../../src/thin/pool.js';
import { fill, keepOpen } from '../support/model.js';
import { recordingPool } from '../support/recording-pool.js';
import { codeOrUntyped } from '../support/thrown.js';

const BS = 64 * 1024;

function memoryPool(blocks = 16) {
  const meta = new MemoryDevice(1 << 20);
  const data = new MemoryDevice(blocks * BS);
  const catalog = new MemoryCatalogStore();
  const pool = ThinPool.formatStorage({ metadata: keepOpen(meta), data: keepOpen(data), catalog }, { size: blocks * BS, blockSize: BS });
  /** A second pool opened on copies of the devices as they are now (what a crash right now would leave). */
  const reopenCopy = () => ThinPool.openStorage({ metadata: meta.snapshot(), data: data.snapshot(), catalog: catalog.clone() });
  return { pool, reopenCopy };
}

test('ranges: up to the last byte is fine, one past it, negative, fractional or unsafe offsets and lengths are EINVAL', () => {
  const { pool } = memoryPool();
  const v = pool.createThinSync('v', { size: 2 * BS + 512 });
  const size = v.sizeBytes;
  expect(size).toBe(2 * BS + 512);
  expect(v.blockSize).toBe(BS);
  expect(v.name).toBe('v');
  expect(v.label).toBe('v');
  expect(codeOrUntyped(() => v.writeSync(fill(512, 1), size - 512))).toBe('ok');
  expect(codeOrUntyped(() => v.readSync(new Uint8Array(512), size - 512))).toBe('ok');
  expect(codeOrUntyped(() => v.discardSync(size - 512, 512))).toBe('ok');
  expect(codeOrUntyped(() => v.readSync(new Uint8Array(0), size))).toBe('ok');
  for (const [off, len] of [
    [size - 511, 512],
    [size, 1],
    [-1, 1],
    [0.5, 1],
    [Number.MAX_SAFE_INTEGER + 1, 0],
    [Number.NaN, 1],
  ] as const) {
    expect(
      codeOrUntyped(() => v.readSync(new Uint8Array(len), off)),
      `read ${off}+${len}`,
    ).toBe('EINVAL');
    expect(
      codeOrUntyped(() => v.writeSync(new Uint8Array(len), off)),
      `write ${off}+${len}`,
    ).toBe('EINVAL');
    expect(
      codeOrUntyped(() => v.discardSync(off, len)),
      `discard ${off}+${len}`,
    ).toBe('EINVAL');
  }
  for (const len of [-1, 1.5, Number.MAX_SAFE_INTEGER + 1])
    expect(
      codeOrUntyped(() => v.discardSync(0, len)),
      `discard length ${len}`,
    ).toBe('EINVAL');
  let msg = '';
  try {
    v.readSync(new Uint8Array(2), size - 1);
  } catch (e) {
    msg = (e as Error).message;
  }
  expect(msg).toBe(`range ${size - 1}+2 beyond the end of volume v (${size} bytes)`);
});

test('a read-only volume reads, and refuses writes and discards with EROFS naming it', async () => {
  const { pool } = memoryPool();
  const w = pool.createThinSync('w', { size: BS });
  expect(w.readOnly).toBe(false);
  w.writeSync(fill(100, 3), 0);
  const r = pool.snapshotSync('w', 'r', { readOnly: true });
  expect(r.readOnly).toBe(true);
  const got = new Uint8Array(100);
  await r.read(got, 0);
  expect(Buffer.compare(got, fill(100, 3))).toBe(0);
  expect(codeOrUntyped(() => r.writeSync(fill(1, 1), 0))).toBe('EROFS');
  expect(codeOrUntyped(() => r.discardSync(0, BS))).toBe('EROFS');
  await expect(r.write(fill(1, 1), 0)).rejects.toMatchObject({ code: 'EROFS', message: 'volume r is read-only' });
  await expect(r.discard(0, 1)).rejects.toMatchObject({ code: 'EROFS', message: 'volume r is read-only' });
  await w.discard(0, BS);
  const zero = new Uint8Array(100);
  w.readSync(got, 0);
  expect(Buffer.compare(got, zero)).toBe(0);
});

test('flush and flushSync commit: a copy of the devices taken right after shows the writes', async () => {
  const { pool, reopenCopy } = memoryPool();
  const v = pool.createThinSync('v', { size: 2 * BS });
  pool.commitSync();
  v.writeSync(fill(BS, 7), 0);
  expect(reopenCopy().volume('v').map(), 'nothing committed yet').toEqual([]);
  v.flushSync();
  const got = new Uint8Array(BS);
  reopenCopy().volume('v').readSync(got, 0);
  expect(Buffer.compare(got, fill(BS, 7))).toBe(0);
  await v.write(fill(BS, 8), BS);
  await v.flush();
  reopenCopy().volume('v').readSync(got, BS);
  expect(Buffer.compare(got, fill(BS, 8))).toBe(0);
});

test('extents coalesce consecutive virtual blocks on consecutive data blocks only, and cover the asked range in whole blocks', () => {
  const { pool } = memoryPool();
  const a = pool.createThinSync('a', { size: 8 * BS });
  const b = pool.createThinSync('b', { size: 8 * BS });
  a.writeSync(fill(2 * BS, 1), 0); // a: blocks 0, 1 on data blocks 0, 1
  b.writeSync(fill(10, 2), 0); // b: block 0 on data block 2
  a.writeSync(fill(10, 3), 2 * BS); // a: block 2 on data block 3 (not after 1: a new extent)
  a.writeSync(fill(10, 4), 3 * BS); // a: block 3 on data block 4 (after 3: same extent)
  a.writeSync(fill(10, 5), 6 * BS); // a: block 6 on data block 5 (virtual gap: a new extent)
  const d = (v: typeof a, i: number) => v.map()[i]!.dblock;
  const d0 = d(a, 0);
  expect(a.map()).toEqual([
    { offsetBytes: 0, lengthBytes: 2 * BS, dblock: d0 },
    { offsetBytes: 2 * BS, lengthBytes: 2 * BS, dblock: d0 + 3 },
    { offsetBytes: 6 * BS, lengthBytes: BS, dblock: d0 + 5 },
  ]);
  expect(b.map()).toEqual([{ offsetBytes: 0, lengthBytes: BS, dblock: d0 + 2 }]);
  expect(a.extents(BS + 1, 10)).toEqual([{ offsetBytes: BS, lengthBytes: BS, dblock: d0 + 1 }]);
  expect(a.extents(0, BS)).toEqual([{ offsetBytes: 0, lengthBytes: BS, dblock: d0 }]);
  expect(a.extents(0, BS + 1)).toEqual([{ offsetBytes: 0, lengthBytes: 2 * BS, dblock: d0 }]);
  expect(a.extents(3 * BS, 3 * BS)).toEqual([{ offsetBytes: 3 * BS, lengthBytes: BS, dblock: d0 + 4 }]);
  expect(a.extents(4 * BS, 2 * BS)).toEqual([]);
  expect(a.extents(4 * BS, 2 * BS + 1)).toEqual([{ offsetBytes: 6 * BS, lengthBytes: BS, dblock: d0 + 5 }]);
});

test('edges of the handle: an empty range is fine, a negative length is named; a deleted volume has no name nor flag; EROFS on an asynchronous device too', async () => {
  const { pool } = memoryPool();
  const v = pool.createThinSync('v', { size: BS });
  expect(codeOrUntyped(() => v.discardSync(0, 0))).toBe('ok');
  expect(codeOrUntyped(() => v.discardSync(BS, 0))).toBe('ok');
  expect(() => v.discardSync(0, -1)).toThrow(expect.objectContaining({ code: 'EINVAL', message: 'bad range: offset 0, length -1' }));
  const id = v.id;
  pool.deleteSync('v');
  expect(v.name).toBeUndefined();
  expect(v.readOnly).toBe(false);
  expect(v.label).toBe(`#${id}`);
  pool.closeSync();

  const { pool: p2, data } = recordingPool(8, BS, { async: true });
  const w = p2.createThinSync('w', { size: BS });
  w.writeSync(fill(BS, 1), 0);
  const r = p2.snapshotSync('w', 'r', { readOnly: true });
  data.clear();
  await expect(r.write(fill(4096, 2), 0)).rejects.toMatchObject({ code: 'EROFS', message: 'volume r is read-only' });
  expect([data.calls.asyncWrites, data.calls.writes]).toEqual([[], []]);
  p2.closeSync();
});
