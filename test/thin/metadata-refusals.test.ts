// What thin metadata (src/thin/metadata.ts) refuses, through the API the pool drives it by, and which of its
// changes reach the disk on their own. Every refusal is a ThinpoolError with a stable code and a message that
// names the fault, and leaves the transaction as it was: undersized metadata devices, superblocks claiming more
// metadata blocks than the device or the format holds, metadata growth past the device or MAX_METADATA_BLOCKS,
// device ids out of range or already taken, the pool's time exhausted (MAX_TIME), rollback onto itself, restore
// mappings past the data device or outside the time range, bad transaction ids, a second held metadata snapshot
// and the release of none. The changes: a new device, a rollback, a metadata growth and each superblock field
// set by restore are committed with nothing else changed and seen by a reopen; removing an unmapped block
// changes nothing (the commit after it writes no block). The last tests meet the pool-level refusals as a
// ThinPool user does: the pool stays writable and keeps its data.
import { expect, test } from 'vitest';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { RecordingDevice } from '../../src/io/recording-device.js';
import { MAX_METADATA_BLOCKS } from '../../src/pd/space-map-metadata.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { MAX_DEVICE_ID, MAX_TIME, ThinMetadata } from '../../src/thin/metadata.js';
import { ThinPool } from '../../src/thin/pool.js';
import { NEEDS_CHECK, SUPERBLOCK_SALT } from '../../src/thin/superblock.js';
import { patchBlock, setU64 } from '../support/metadata-patch.js';
import { fill, keepOpen } from '../support/model.js';
import { refusalOrUntyped } from '../support/thrown.js';

const MiB = 1024 * 1024;
const OPTS = { nrDataBlocks: 64, dataBlockSectors: 128 };

function formatted(metaBytes = MiB) {
  const dev = new MemoryDevice(metaBytes);
  return { dev, md: ThinMetadata.format(dev, OPTS) };
}

/** Writes of block 0 recorded so far. */
function superblockWrites(rec: RecordingDevice): number {
  return rec.events.filter((e) => e.kind === 'write' && e.offset === 0).length;
}

function sbFields(md: ThinMetadata) {
  const { time, transactionId, flags, version } = md.superblock;
  return { time, transactionId, flags, version };
}

test('format refuses a metadata device under 64 KiB (16 blocks) and takes one of exactly 16', () => {
  expect(refusalOrUntyped(() => ThinMetadata.format(new MemoryDevice(16 * 4096 - 1), OPTS))).toEqual({
    code: 'EINVAL',
    message: 'metadata device too small (65535 bytes; at least 64 KiB)',
  });
  expect(ThinMetadata.format(new MemoryDevice(16 * 4096), OPTS).metadataNrBlocks).toBe(16);
});

test('open refuses a superblock whose metadata space map is larger than the device, naming the superblock', () => {
  const { dev } = formatted(MiB);
  for (const size of [MiB / 2, MiB - 1]) {
    const shrunk = dev.snapshot();
    shrunk.resize(size);
    expect(refusalOrUntyped(() => ThinMetadata.open(shrunk))).toEqual({
      code: 'EBADSUPER',
      message: `metadata space map claims 256 blocks but the device has ${Math.floor(size / 4096)} in superblock (block 0)`,
      structure: 'superblock',
      mblock: 0,
    });
  }
  expect(ThinMetadata.open(dev).metadataNrBlocks).toBe(256);
});

test('open refuses a superblock claiming more metadata blocks than the format holds, even on a device that large', () => {
  const { dev, md } = formatted(MiB);
  patchBlock(md, dev, 0, SUPERBLOCK_SALT, (buf) => setU64(buf, 192, MAX_METADATA_BLOCKS + 1));
  dev.resize((MAX_METADATA_BLOCKS + 1) * 4096);
  expect(refusalOrUntyped(() => ThinMetadata.open(dev))).toEqual({
    code: 'EBADSUPER',
    message: `metadata space map claims ${MAX_METADATA_BLOCKS + 1} blocks but the device has ${MAX_METADATA_BLOCKS + 1} in superblock (block 0)`,
    structure: 'superblock',
    mblock: 0,
  });
});

test('metadata growth: never a shrink, never past the device, up to the size of the device', () => {
  const { dev } = formatted(MiB);
  const cannot = (to: number, holds: number) => ({
    code: 'EINVAL',
    message: `cannot grow the metadata space map from 256 to ${to} blocks (device holds ${holds}, limit ${MAX_METADATA_BLOCKS})`,
  });
  expect(refusalOrUntyped(() => ThinMetadata.open(dev, { growTo: 255 }))).toEqual(cannot(255, 256));
  expect(refusalOrUntyped(() => ThinMetadata.open(dev, { growTo: 257 }))).toEqual(cannot(257, 256));
  // The same size is no growth: nothing to commit.
  expect(ThinMetadata.open(dev, { growTo: 256 }).dirty).toBe(false);
  dev.resize(2 * MiB - 1);
  expect(refusalOrUntyped(() => ThinMetadata.open(dev, { growTo: 512 }))).toEqual(cannot(512, 511));
  const grown = ThinMetadata.open(dev, { growTo: 511 });
  expect(grown.metadataNrBlocks).toBe(511);
  expect(grown.superblock.metadataNrBlocks).toBe(511);
  expect(ThinMetadata.open(dev).metadataNrBlocks).toBe(256); // nothing on disk before the commit
});

test('a metadata growth alone is a change: its commit writes the superblock, and a reopen sees the new size', () => {
  const rec = new RecordingDevice(new MemoryDevice(MiB));
  ThinMetadata.format(rec, OPTS);
  rec.resize(2 * MiB);
  const before = superblockWrites(rec);
  const md = ThinMetadata.open(rec, { growTo: 512 });
  expect(md.dirty).toBe(true);
  md.commit();
  expect(superblockWrites(rec)).toBe(before + 1);
  const back = ThinMetadata.open(rec);
  expect(back.metadataNrBlocks).toBe(512);
  expect(back.superblock.metadataNrBlocks).toBe(512);
});

test('metadata grows to exactly MAX_METADATA_BLOCKS and opens at that size; one block more is refused', () => {
  const { dev } = formatted(MiB);
  dev.resize((MAX_METADATA_BLOCKS + 1) * 4096);
  const md = ThinMetadata.open(dev, { growTo: MAX_METADATA_BLOCKS });
  md.commit();
  expect(ThinMetadata.open(dev).metadataNrBlocks).toBe(MAX_METADATA_BLOCKS);
  expect(refusalOrUntyped(() => ThinMetadata.open(dev, { growTo: MAX_METADATA_BLOCKS + 1 }))).toEqual({
    code: 'EINVAL',
    message: `cannot grow the metadata space map from ${MAX_METADATA_BLOCKS} to ${MAX_METADATA_BLOCKS + 1} blocks (device holds ${MAX_METADATA_BLOCKS + 1}, limit ${MAX_METADATA_BLOCKS})`,
  });
});

test('device ids: integers 0..MAX_DEVICE_ID only, each once; a refusal changes nothing', () => {
  const { md } = formatted();
  md.createThin(0);
  md.commit();
  for (const id of [-1, 1.5, Number.NaN, MAX_DEVICE_ID + 1, 2 ** 32]) {
    const outOfRange = { code: 'EINVAL', message: `thin device id ${id} out of range 0..${MAX_DEVICE_ID}` };
    expect(refusalOrUntyped(() => md.createThin(id))).toEqual(outOfRange);
    expect(refusalOrUntyped(() => md.createSnapshot(id, 0))).toEqual(outOfRange);
  }
  expect(md.dirty).toBe(false);
  md.createThin(MAX_DEVICE_ID);
  expect(refusalOrUntyped(() => md.createThin(0))).toEqual({ code: 'EEXIST', message: 'thin device 0 already exists' });
  expect(refusalOrUntyped(() => md.createSnapshot(MAX_DEVICE_ID, 0))).toEqual({
    code: 'EEXIST',
    message: `thin device ${MAX_DEVICE_ID} already exists`,
  });
  expect(md.time).toBe(0);
  expect(md.deviceIds()).toEqual([0, MAX_DEVICE_ID]);
});

test('a new thin device and a new snapshot reach the disk with nothing mapped or changed besides', () => {
  const { dev, md } = formatted();
  md.createThin(3);
  md.commit();
  let back = ThinMetadata.open(dev);
  expect(back.deviceIds()).toEqual([3]);
  expect(back.deviceDetails(3)).toMatchObject({ mappedBlocks: 0, creationTime: 0, snapshottedTime: 0 });
  back.createSnapshot(4, 3);
  back.commit();
  back = ThinMetadata.open(dev);
  expect(back.deviceIds()).toEqual([3, 4]);
  expect(back.time).toBe(1);
  expect(back.deviceDetails(4)).toMatchObject({ mappedBlocks: 0, creationTime: 1, snapshottedTime: 1 });
  expect(back.deviceDetails(3)).toMatchObject({ creationTime: 0, snapshottedTime: 1 });
});

test('pool time: the last snapshot takes MAX_TIME, then snapshots and rollbacks are refused and change nothing', () => {
  const { dev, md } = formatted();
  md.createThin(0);
  md.insertMapping(0, 0, md.allocDataBlock());
  md.setSuperblockFields({ time: MAX_TIME - 1 });
  md.createSnapshot(1, 0);
  expect(md.time).toBe(MAX_TIME);
  expect(md.deviceDetails(1)).toMatchObject({ creationTime: MAX_TIME, snapshottedTime: MAX_TIME });
  md.commit();
  const exhausted = { code: 'EINVAL', message: 'pool time exhausted (2^24 snapshots)' };
  expect(refusalOrUntyped(() => md.createSnapshot(2, 0))).toEqual(exhausted);
  expect(refusalOrUntyped(() => md.rollbackDevice(0, 1))).toEqual(exhausted);
  expect(md.dirty).toBe(false);
  expect(md.time).toBe(MAX_TIME);
  expect(md.deviceIds()).toEqual([0, 1]);
  expect(md.deviceDetails(0).snapshottedTime).toBe(MAX_TIME);
  expect(ThinMetadata.open(dev).time).toBe(MAX_TIME);
});

test('a device cannot be rolled back to itself, whether or not it exists', () => {
  const { md } = formatted();
  md.createThin(5);
  for (const id of [5, 6]) {
    expect(refusalOrUntyped(() => md.rollbackDevice(id, id))).toEqual({
      code: 'EINVAL',
      message: `thin device ${id} cannot be rolled back to itself`,
    });
  }
  expect(md.time).toBe(0);
});

test('rollback advances the pool time by one; both devices take it, and their details reach the disk', () => {
  const { dev, md } = formatted();
  md.createThin(1);
  for (let v = 0; v < 4; v++) md.insertMapping(1, v, md.allocDataBlock());
  md.createSnapshot(2, 1); // time 1
  md.insertMapping(1, 4, md.allocDataBlock());
  md.insertMapping(1, 5, md.allocDataBlock());
  md.commit();
  expect(md.dataUsedBlocks).toBe(6);
  md.rollbackDevice(1, 2);
  expect(md.time).toBe(2);
  md.commit();
  const back = ThinMetadata.open(dev);
  expect(back.time).toBe(2);
  expect(back.deviceDetails(1)).toMatchObject({ mappedBlocks: 4, creationTime: 0, snapshottedTime: 2 });
  expect(back.deviceDetails(2)).toMatchObject({ mappedBlocks: 4, creationTime: 1, snapshottedTime: 2 });
  expect(back.lookup(1, 0)).toMatchObject({ dblock: 0, shared: true });
  expect(back.lookup(2, 0)).toMatchObject({ dblock: 0, shared: true });
  expect(back.lookup(1, 4)).toBeNull();
  expect(back.dataUsedBlocks).toBe(4);
});

test('removing an unmapped block returns -1 and changes nothing: the commit after it writes no block', () => {
  const rec = new RecordingDevice(new MemoryDevice(MiB));
  const md = ThinMetadata.format(rec, OPTS);
  md.createThin(1);
  md.insertMapping(1, 0, md.allocDataBlock());
  md.commit();
  const events = rec.events.length;
  expect(md.removeMapping(1, 7)).toBe(-1);
  expect(md.dirty).toBe(false);
  md.commit();
  expect(rec.events.length).toBe(events);
  expect(md.removeMapping(1, 0)).toBe(0);
  expect(md.deviceDetails(1).mappedBlocks).toBe(0);
});

test('restore mappings: data blocks inside the data device, times 0..MAX_TIME; a refusal changes nothing', () => {
  const { dev, md } = formatted();
  md.createThin(1);
  md.commit();
  for (const dblock of [-1, 64, 65, Number.NaN]) {
    expect(refusalOrUntyped(() => md.insertMappingRaw(1, 0, dblock, 0))).toEqual({
      code: 'EINVAL',
      message: `mapping beyond end of data device (${dblock} >= 64)`,
    });
  }
  for (const time of [-1, MAX_TIME + 1, Number.NaN]) {
    expect(refusalOrUntyped(() => md.insertMappingRaw(1, 0, 0, time))).toEqual({
      code: 'EINVAL',
      message: `mapping time ${time} out of range`,
    });
  }
  expect(refusalOrUntyped(() => md.insertMappingRaw(1, 0, 1.5, 0))).toEqual({
    code: 'EINVAL',
    message: 'data block 1.5 is not a whole number',
  });
  expect(refusalOrUntyped(() => md.insertMappingRaw(1, 0, 0, 0.5))).toEqual({ code: 'EINVAL', message: 'mapping time 0.5 out of range' });
  for (const vblock of [-1, 0.5, 2 ** 53, Number.NaN]) {
    expect(refusalOrUntyped(() => md.insertMappingRaw(1, vblock, 0, 0))).toEqual({
      code: 'EINVAL',
      message: `virtual block ${vblock} out of range`,
    });
  }
  expect(md.dirty).toBe(false);
  expect(md.dataUsedBlocks).toBe(0);
  md.insertMappingRaw(1, 0, 62, 0);
  expect(md.dataBlockCount(62)).toBe(1);
  md.insertMappingRaw(1, 0, 63, MAX_TIME); // the same virtual block again: the old data block loses its reference
  expect(md.dataBlockCount(62)).toBe(0);
  expect(md.deviceDetails(1).mappedBlocks).toBe(1);
  md.insertMappingRaw(1, 1, 0, 0);
  md.commit();
  const back = ThinMetadata.open(dev);
  expect(back.lookup(1, 0)).toMatchObject({ dblock: 63, time: MAX_TIME });
  expect(back.lookup(1, 1)).toMatchObject({ dblock: 0, time: 0 });
  expect(back.dataBlockCount(63)).toBe(1);
  expect(back.deviceDetails(1).mappedBlocks).toBe(2);
});

test('restore sets each superblock field alone; each is a change the next commit writes and a reopen sees', () => {
  const rec = new RecordingDevice(new MemoryDevice(MiB));
  const md = ThinMetadata.format(rec, OPTS);
  const want = sbFields(md);
  expect(want).toEqual({ time: 0, transactionId: 0, flags: 0, version: 2 });
  for (const patch of [{ time: 7 }, { transactionId: 9 }, { version: 1 }, { flags: NEEDS_CHECK }]) {
    Object.assign(want, patch);
    const writes = superblockWrites(rec);
    md.setSuperblockFields(patch);
    expect(sbFields(md)).toEqual(want);
    expect(md.dirty).toBe(true);
    md.commit();
    expect(superblockWrites(rec)).toBe(writes + 1);
    expect(sbFields(ThinMetadata.open(rec))).toEqual(want);
  }
  expect(ThinMetadata.open(rec).mode).toBe('read-only');
});

test('restore refuses superblock fields out of range, and a refusal changes nothing', () => {
  const { md } = formatted();
  const before = sbFields(md);
  for (const [patch, message] of [
    [{ time: 2 ** 32 }, `superblock time ${2 ** 32} out of range (0 to ${0xffffffff})`],
    [{ time: -1 }, `superblock time -1 out of range (0 to ${0xffffffff})`],
    [{ transactionId: 0.5 }, `superblock transaction id 0.5 out of range (0 to ${Number.MAX_SAFE_INTEGER})`],
    [{ flags: 2 ** 32 }, `superblock flags ${2 ** 32} out of range (0 to ${0xffffffff})`],
    [{ version: -1 }, `superblock version -1 out of range (0 to ${0xffffffff})`],
    [{ time: 3, version: Number.NaN }, `superblock version NaN out of range (0 to ${0xffffffff})`],
  ] as const) {
    expect(refusalOrUntyped(() => md.setSuperblockFields(patch))).toEqual({ code: 'EINVAL', message });
    expect(sbFields(md)).toEqual(before);
  }
  expect(md.dirty).toBe(false);
  md.setSuperblockFields({ time: 0xffffffff, transactionId: Number.MAX_SAFE_INTEGER, flags: 0xffffffff, version: 0xffffffff });
  expect(sbFields(md)).toEqual({ time: 0xffffffff, transactionId: Number.MAX_SAFE_INTEGER, flags: 0xffffffff, version: 0xffffffff });
  md.setSuperblockFields({ time: 0, transactionId: 0, flags: 0, version: 0 }); // both ends of every range
  expect(sbFields(md)).toEqual({ time: 0, transactionId: 0, flags: 0, version: 0 });
});

test('set_transaction_id: the old id must match, the new one be a safe integer >= 0; a refusal keeps the id', () => {
  const { dev, md } = formatted();
  md.setTransactionId(0, 5);
  for (const bad of [-1, 1.5, Number.NaN, 2 ** 53, Number.POSITIVE_INFINITY]) {
    expect(refusalOrUntyped(() => md.setTransactionId(5, bad))).toEqual({ code: 'EINVAL', message: `bad transaction id ${bad}` });
  }
  expect(refusalOrUntyped(() => md.setTransactionId(4, 6))).toEqual({ code: 'EINVAL', message: 'transaction id is 5, not 4' });
  expect(md.transactionId).toBe(5);
  md.setTransactionId(5, 0);
  expect(md.transactionId).toBe(0);
  md.setTransactionId(0, Number.MAX_SAFE_INTEGER);
  md.commit();
  expect(ThinMetadata.open(dev).transactionId).toBe(Number.MAX_SAFE_INTEGER);
});

test('one held metadata snapshot at a time, and no release without one, with messages saying so', () => {
  const { dev, md } = formatted();
  md.createThin(1);
  const held = md.reserveMetadataSnap();
  expect(held).toBeGreaterThan(0);
  expect(refusalOrUntyped(() => md.reserveMetadataSnap())).toEqual({
    code: 'EBUSY',
    message: `a metadata snapshot is already held (block ${held})`,
  });
  md.releaseMetadataSnap();
  expect(md.heldRoot).toBe(0);
  expect(refusalOrUntyped(() => md.releaseMetadataSnap())).toEqual({ code: 'EINVAL', message: 'no metadata snapshot is held' });
  md.commit();
  expect(ThinMetadata.open(dev).heldRoot).toBe(0);
});

// ---- the same refusals as a ThinPool user meets them: the pool stays writable and nothing changes ----

const BS = 64 * 1024;

function memoryPool() {
  const meta = new MemoryDevice(MiB);
  const data = new MemoryDevice(16 * BS);
  const catalog = new MemoryCatalogStore();
  const storage = () => ({ metadata: keepOpen(meta), data: keepOpen(data), catalog });
  const pool = ThinPool.formatStorage(storage(), { size: 16 * BS, blockSize: BS });
  return { pool, meta, reopen: () => ThinPool.openStorage(storage()) };
}

function content(p: ThinPool, name: string): Uint8Array {
  const b = new Uint8Array(BS);
  p.volume(name).readSync(b, 0);
  return b;
}

test('pool: bad transaction ids are refused (EINVAL), the id is kept and the pool stays writable', async () => {
  const { pool, reopen } = memoryPool();
  await pool.setTransactionId(0, 3);
  for (const bad of [-1, 2.5]) {
    await expect(pool.setTransactionId(3, bad)).rejects.toMatchObject({ code: 'EINVAL', message: `bad transaction id ${bad}` });
  }
  expect(pool.mode).toBe('write');
  expect(pool.transactionId).toBe(3);
  await pool.setTransactionId(3, 0);
  pool.closeSync();
  expect(reopen().transactionId).toBe(0);
});

test('pool: a second held metadata snapshot is EBUSY, a release of none EINVAL; the pool stays writable', async () => {
  const { pool } = memoryPool();
  const held = await pool.reserveMetadataSnap();
  await expect(pool.reserveMetadataSnap()).rejects.toMatchObject({ code: 'EBUSY' });
  expect(pool.status().heldMetadataRoot).toBe(held);
  await pool.releaseMetadataSnap();
  await expect(pool.releaseMetadataSnap()).rejects.toMatchObject({ code: 'EINVAL', message: 'no metadata snapshot is held' });
  expect(pool.status()).toMatchObject({ heldMetadataRoot: null, mode: 'write' });
  pool.createThinSync('after', { size: BS });
  pool.closeSync();
});

test('pool: once its time is exhausted, snapshots and rollbacks are refused (EINVAL), and the volumes keep their data', () => {
  const { pool, reopen } = memoryPool();
  const v = pool.createThinSync('v', { size: BS });
  v.writeSync(fill(BS, 1), 0);
  pool.metadata.setSuperblockFields({ time: MAX_TIME - 1 });
  pool.snapshotSync('v', 's1');
  v.writeSync(fill(BS, 2), 0);
  expect(pool.status().time).toBe(MAX_TIME);
  expect(() => pool.snapshotSync('v', 's2')).toThrow(
    expect.objectContaining({ code: 'EINVAL', message: 'pool time exhausted (2^24 snapshots)' }),
  );
  expect(() => pool.rollbackSync('v', 's1')).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  expect(pool.mode).toBe('write');
  expect(pool.list().map((i) => i.name)).toEqual(['v', 's1']);
  expect(content(pool, 'v')).toEqual(fill(BS, 2));
  pool.closeSync();
  const back = reopen();
  expect(back.status().time).toBe(MAX_TIME);
  expect(content(back, 's1')).toEqual(fill(BS, 1));
  expect(content(back, 'v')).toEqual(fill(BS, 2));
  back.closeSync();
});

test('pool: a metadata extend followed at once by close is kept: the reopened pool has the larger metadata', () => {
  const { pool, meta, reopen } = memoryPool();
  pool.extendSync({ metadataSize: 2 * MiB });
  expect(pool.status().metadataBlocks.total).toBe(512);
  pool.closeSync();
  expect(meta.sizeBytes).toBe(2 * MiB);
  expect(reopen().status().metadataBlocks.total).toBe(512);
});
