// Issue 9: discard passdown, trim, growing the pool, thresholds and auto-extend.
import { afterEach, expect, test } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ThinPool, type PoolStorage } from '../../src/thin/pool.js';
import { isThinpoolError } from '../../src/errors.js';
import { CrashClock, CrashDevice } from '../../src/io/crash-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { MemoryHighWaterStore } from '../../src/thin/high-water.js';
import { FileDevice } from '../../src/io/file-device.js';
import { checkMetadata } from '../../src/thin/check.js';
import { fill, mulberry32 } from '../support/model.js';
import { verifyMetadataDevice, verifyMetadataFile } from '../support/pool-check.js';
import { thinRestore, randomThinXml, seededRng } from '../support/oracle.js';
import { needTool } from '../support/tools.js';

const MiB = 1024 * 1024;
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'tp-space-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const allocated = (p: string) => statSync(p).blocks * 512;

test('deleting a volume returns its blocks to the host after the commit, not before', async () => {
  const dir = join(tmp(), 'pool');
  const pool = await ThinPool.format(dir, { size: 512 * MiB });
  const keep = await pool.createThin('keep', { size: 16 * MiB });
  await keep.write(fill(16 * MiB, 1), 0);
  const big = await pool.createThin('big', { size: 128 * MiB });
  for (let off = 0; off < 100 * MiB; off += 4 * MiB) await big.write(fill(4 * MiB, off), off);
  await pool.commit();
  const before = allocated(join(dir, 'data'));
  expect(before).toBeGreaterThanOrEqual(116 * MiB);
  await pool.delete('big');
  expect(allocated(join(dir, 'data'))).toBe(before); // not before the commit
  await pool.commit();
  const after = allocated(join(dir, 'data'));
  expect(before - after).toBeGreaterThanOrEqual(99 * MiB);
  expect(before - after).toBeLessThanOrEqual(101 * MiB);
  const back = new Uint8Array(16 * MiB);
  await keep.read(back, 0);
  expect(Buffer.compare(back, fill(16 * MiB, 1))).toBe(0);
  await pool.close();
  verifyMetadataFile(join(dir, 'metadata'));
});

test('a crash between a delete and its commit loses nothing', () => {
  for (let seed = 0; seed < 12; seed++) {
    const clock = new CrashClock();
    const catalog = new MemoryCatalogStore();
    const highWater = new MemoryHighWaterStore(0);
    const storage: PoolStorage = {
      metadata: new CrashDevice(clock, new MemoryDevice(4 * MiB)),
      data: new CrashDevice(clock, new MemoryDevice(64 * MiB)),
      catalog,
      highWater,
    };
    const pool = ThinPool.formatStorage(storage, { size: 64 * MiB });
    const a = pool.createThinSync('a', { size: 8 * MiB });
    const b = pool.createThinSync('b', { size: 8 * MiB });
    a.writeSync(fill(8 * MiB, 1), 0);
    b.writeSync(fill(8 * MiB, 2), 0);
    pool.commitSync();
    pool.deleteSync('a');
    clock.armAt(clock.ops + Math.floor(mulberry32(seed)() * 30));
    try {
      pool.commitSync();
    } catch {
      // the cut
    }
    clock.crash(mulberry32(seed + 100));
    const re = ThinPool.openStorage({
      metadata: (storage.metadata as CrashDevice).afterCrash(),
      data: (storage.data as CrashDevice).afterCrash(),
      catalog,
      highWater,
    });
    const got = new Uint8Array(8 * MiB);
    re.volume('b').readSync(got, 0);
    expect(Buffer.compare(got, fill(8 * MiB, 2))).toBe(0);
    if (re.has('a')) {
      re.volume('a').readSync(got, 0);
      expect(Buffer.compare(got, fill(8 * MiB, 1))).toBe(0);
    }
    if (seed % 4 === 0) verifyMetadataDevice(re.storage.metadata);
    else expect(checkMetadata(re.metadata).errors).toEqual([]);
  }
});

const hasThin = needTool('thin_restore', 'thin-provisioning-tools');
test.skipIf(!hasThin)('trim on a thin_restore pool with garbage in unmapped blocks releases them and keeps mapped data', async () => {
  const dir = join(tmp(), 'pool');
  const { xml, sb } = randomThinXml(seededRng(3), { devices: 3, mappingsPerDevice: 200, nrDataBlocks: 2000, maxVblock: 5000 });
  mkdirSync(dir);
  thinRestore(xml, join(dir, 'metadata'), 4 * MiB);
  const bs = sb.dataBlockSize * 512;
  const data = FileDevice.create(join(dir, 'data'), sb.nrDataBlocks * bs);
  const garbage = new Uint8Array(bs).fill(0xee);
  for (let d = 0; d < sb.nrDataBlocks; d++) data.write(garbage, d * bs);
  data.flush();
  data.close();
  const pool = await ThinPool.open(dir);
  const before = new Map<number, Uint8Array>();
  const readMapped = (id: number): Uint8Array => {
    const v = pool.volume(id);
    const parts = v.map().map((e) => {
      const b = new Uint8Array(e.lengthBytes);
      v.readSync(b, e.offsetBytes);
      return b;
    });
    return Buffer.concat(parts);
  };
  for (const id of pool.metadata.deviceIds()) before.set(id, readMapped(id));
  const allocBefore = allocated(join(dir, 'data'));
  const released = await pool.trim();
  const used = pool.status().dataBlocks.used;
  expect(released).toBe(sb.nrDataBlocks - used);
  expect(allocBefore - allocated(join(dir, 'data'))).toBe(released * bs);
  for (const [id, b] of before) expect(Buffer.compare(readMapped(id), b)).toBe(0);
  await pool.close();
  verifyMetadataFile(join(dir, 'metadata'));
});

test('extend data and metadata with volumes and snapshots: checks pass and data reads back', async () => {
  const dir = join(tmp(), 'pool');
  const pool = await ThinPool.format(dir, { size: 32 * MiB, metadataSize: 1 * MiB });
  const v = await pool.createThin('v', { size: 64 * MiB });
  await v.write(fill(30 * MiB, 5), 0);
  await pool.snapshot('v', 's');
  await pool.extend({ size: 20_000 * 64 * 1024, metadataSize: 70 * MiB });
  expect(pool.status().dataBlocks.total).toBe(20_000);
  expect(pool.status().metadataBlocks.total).toBe((70 * MiB) / 4096);
  await v.write(fill(30 * MiB, 6), 30 * MiB);
  await pool.close();
  verifyMetadataFile(join(dir, 'metadata'));
  const again = await ThinPool.open(dir);
  const got = new Uint8Array(30 * MiB);
  again.volume('s').readSync(got, 0);
  expect(Buffer.compare(got, fill(30 * MiB, 5))).toBe(0);
  again.volume('v').readSync(got, 30 * MiB);
  expect(Buffer.compare(got, fill(30 * MiB, 6))).toBe(0);
  await expect(again.extend({ size: 1 * MiB })).rejects.toThrow(/shrinking/);
  await again.close();
});

test('auto-extend keeps a writer going; without it the writer gets the full-pool error at the expected byte count', async () => {
  const pool = ThinPool.memory({ size: 4 * MiB });
  pool.configureSpace({ autoExtend: { enabled: true, atPercent: 80, percent: 50, maxBytes: 64 * MiB } });
  const events: string[] = [];
  pool.on('threshold', (e) => events.push(`${e.resource}:${e.threshold}`));
  let grew = 0;
  pool.on('extended', () => grew++);
  const v = await pool.createThin('v', { size: 32 * MiB });
  for (let off = 0; off < 32 * MiB; off += MiB) await v.write(fill(MiB, off), off);
  expect(grew).toBeGreaterThan(0);
  await pool.commit();
  verifyMetadataDevice(pool.storage.metadata);

  const fixed = ThinPool.memory({ size: 4 * MiB });
  fixed.on('threshold', (e) => events.push(`${e.resource}:${e.threshold}`));
  const w = await fixed.createThin('w', { size: 32 * MiB });
  let written = 0;
  let err: unknown;
  try {
    for (let off = 0; off < 32 * MiB; off += 64 * 1024) {
      await w.write(fill(64 * 1024, off), off);
      written += 64 * 1024;
    }
  } catch (e) {
    err = e;
  }
  expect(isThinpoolError(err, 'ENOSPC_DATA')).toBe(true);
  expect((err as Error).message).toMatch(/pool is full/);
  expect(written).toBe(4 * MiB);
  expect(events).toEqual(expect.arrayContaining(['data:80', 'data:90', 'data:95']));
  expect(fixed.status().lowWater.data).toBe(95);
  expect(fixed.status().mode).toBe('write');
  await fixed.delete('w');
  const x = await fixed.createThin('x', { size: MiB });
  await x.write(fill(MiB, 9), 0);
  verifyMetadataDevice(fixed.storage.metadata);
});
