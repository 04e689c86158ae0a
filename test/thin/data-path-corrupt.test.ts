// The data path (src/thin/data-path.ts) on metadata that maps blocks past the end of the data device, and on a
// failed pool: a mapping at or past the data device's last block is corruption (ECORRUPT naming the device,
// the virtual and the data block and the mapping tree's root), reported by every entry point that meets it
// (a read inside one block, a read over several, a run that reaches the last data block, a write in place, a
// run of writes in place, a write inside such a block, and the same through the asynchronous calls), and never
// followed: the data device gets no call at or past its end. A failed pool takes no asynchronous in-place write
// either. The damage is made as thin_check would meet it: a leaf value rewritten with a valid checksum.
import { expect, test } from 'vitest';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { ThinPool } from '../../src/thin/pool.js';
import { NODE_SALT, patchBlock, setU64, u32, valueOffset } from '../support/metadata-patch.js';
import { fill, keepOpen, readBytes as read } from '../support/model.js';
import { recordingPool } from '../support/recording-pool.js';
import { caught } from '../support/thrown.js';

const BS = 64 * 1024;
const NR = 8;

/**
 * A pool of NR data blocks whose volume v (id 1, 4 blocks, each written) maps, after the damage:
 * v0 -> its own block, v1 -> NR (the first block past the device), v2 -> NR - 1 (the last block: in range),
 * v3 -> NR (right after v2's: a run that would cross the end).
 */
function damaged(opts: { async?: boolean } = {}) {
  const r = recordingPool(NR, BS, opts);
  const v = r.pool.createThinSync('v', { size: 4 * BS });
  v.writeSync(fill(4 * BS, 1), 0);
  r.pool.commitSync();
  r.pool.closeSync();
  const meta = keepOpen(r.meta);
  const md = ThinMetadata.open(meta);
  const root = md.rootOf(1);
  patchBlock(md, meta, root, NODE_SALT, (buf) => {
    expect(u32(buf, 16), 'one leaf holds the four mappings').toBe(4);
    setU64(buf, valueOffset(buf, 1, 8), NR * 2 ** 24);
    setU64(buf, valueOffset(buf, 2, 8), (NR - 1) * 2 ** 24);
    setU64(buf, valueOffset(buf, 3, 8), NR * 2 ** 24);
  });
  const pool = ThinPool.openStorage({ metadata: meta, data: r.data.wrapped, catalog: r.catalog });
  r.data.clear();
  const calls = r.data.calls;
  /** Every device call so far stayed inside the device. */
  const inside = () => {
    for (const [o, l] of [...calls.reads, ...calls.writes, ...calls.asyncReads, ...calls.asyncWrites])
      expect(o + l).toBeLessThanOrEqual(NR * BS);
  };
  return { pool, v: pool.volume('v'), root, calls, inside };
}

function corruption(root: number, vblock: number) {
  return expect.objectContaining({
    code: 'ECORRUPT',
    structure: 'mapping tree',
    mblock: root,
    message: `mapping tree of thin device 1 maps block ${vblock} to data block ${NR}, beyond the data device (${NR} blocks) (root block ${root})`,
  });
}

test('reads that meet a mapping past the data device fail as corruption and read nothing past it', () => {
  const { pool, v, root, calls, inside } = damaged();
  expect(
    caught(() => read(v, BS + 100, 200)),
    'inside one block',
  ).toEqual(corruption(root, 1));
  expect(
    caught(() => read(v, BS, BS)),
    'the whole block',
  ).toEqual(corruption(root, 1));
  expect(
    caught(() => read(v, 0, 2 * BS)),
    'from the block before it',
  ).toEqual(corruption(root, 1));
  // v2 is on the last data block and v3 would be the next one: the run stops at the device's end.
  expect(
    caught(() => read(v, 2 * BS, 2 * BS)),
    'a run up to the last data block',
  ).toEqual(corruption(root, 3));
  expect(calls.reads.length, 'only blocks before the damaged ones were read').toBeLessThanOrEqual(2);
  inside();
  // The blocks in range still read.
  const two = new Uint8Array(BS);
  v.readSync(two, 2 * BS);
  expect(calls.reads.at(-1)).toEqual([(NR - 1) * BS, BS]);
  pool.closeSync();
});

test('writes that meet a mapping past the data device fail as corruption and write nothing past it', () => {
  const { pool, v, root, calls, inside } = damaged();
  expect(
    caught(() => v.writeSync(fill(300, 2), BS + 10)),
    'inside the block',
  ).toEqual(corruption(root, 1));
  expect(
    caught(() => v.writeSync(fill(BS, 2), BS)),
    'the whole block',
  ).toEqual(corruption(root, 1));
  expect(
    caught(() => v.writeSync(fill(2 * BS, 2), BS)),
    'the first of two blocks',
  ).toEqual(corruption(root, 1));
  // In place from v2 (the last data block) on: the run stops there, v2 is written, v3 is refused.
  expect(
    caught(() => v.writeSync(fill(2 * BS, 3), 2 * BS)),
    'a run of in-place writes',
  ).toEqual(corruption(root, 3));
  expect(calls.writes).toEqual([[(NR - 1) * BS, BS]]);
  inside();
  expect(pool.mode, 'corruption met by I/O does not change the mode by itself').toBe('write');
  pool.closeSync();
});

test('the asynchronous calls report the same corruption and send nothing past the device', async () => {
  const { pool, v, root, calls, inside } = damaged({ async: true });
  await expect(v.read(new Uint8Array(2 * BS), 2 * BS)).rejects.toEqual(corruption(root, 3));
  await expect(v.read(new Uint8Array(100), BS + 5)).rejects.toEqual(corruption(root, 1));
  await expect(v.write(fill(4096, 4), BS)).rejects.toEqual(corruption(root, 1));
  await expect(v.write(fill(2 * BS, 4), 2 * BS)).rejects.toEqual(corruption(root, 3));
  inside();
  expect(calls.asyncWrites, 'v2 in place, in flight').toEqual([[(NR - 1) * BS, BS]]);
  pool.closeSync();
});

test('a failed pool takes no asynchronous in-place write: refused with its error, nothing sent', async () => {
  const r = recordingPool(NR, BS, { async: true });
  const v = r.pool.createThinSync('v', { size: 2 * BS });
  v.writeSync(fill(2 * BS, 1), 0);
  r.pool.commitSync();
  // A metadata device that refuses every write from now on: setting needs_check cannot land, the pool fails.
  r.meta.write = () => {
    throw new Error('metadata device gone');
  };
  r.pool.metadata.setNeedsCheck();
  expect(r.pool.mode).toBe('fail');
  r.data.clear();
  await expect(v.write(fill(4096, 2), 0)).rejects.toMatchObject({ code: 'EROFS' });
  await expect(v.write(fill(2 * BS, 2), 0)).rejects.toMatchObject({ code: 'EROFS' });
  expect(r.data.calls.asyncWrites).toEqual([]);
  expect(r.data.calls.writes).toEqual([]);
  const back = new Uint8Array(2 * BS);
  await v.read(back, 0);
  expect(Buffer.compare(back, fill(2 * BS, 1))).toBe(0);
  r.pool.closeSync();
});
