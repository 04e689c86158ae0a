import { afterEach, describe, expect, test } from 'vitest';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ThinPool } from '../../src/thin/pool.js';
import { isThinpoolError } from '../../src/errors.js';
import { verifyMetadataDevice, verifyMetadataFile } from '../support/pool-check.js';
import { snapshotDepthStory } from '../support/pool-stories.js';
import { seededBytes } from '../support/rng.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'tp-pool-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('file pool', () => {
  test('format creates a dm-thin metadata file and a sparse data file, sized by the dm-thin rule', async () => {
    const dir = join(tmp(), 'pool');
    const pool = await ThinPool.format(dir, { size: 1 * GiB });
    expect(pool.blockSize).toBe(64 * KiB);
    const st = pool.status();
    expect(st.dataBlocks.total).toBe(16384);
    expect(st.metadataBlocks.total).toBe((2 * MiB) / 4096); // 48 * 1 GiB / 64 KiB = 768 KiB -> at least 2 MiB
    expect(st.mode).toBe('write');
    await pool.close();
    expect(statSync(join(dir, 'data')).size).toBe(1 * GiB);
    expect(statSync(join(dir, 'data')).blocks).toBe(0);
    verifyMetadataFile(join(dir, 'metadata'));
  });

  test('bad block sizes are refused with a clear error', async () => {
    await expect(ThinPool.format(join(tmp(), 'p'), { size: GiB, blockSize: 96 * KiB })).rejects.toThrow(/multiple of 64 KiB/);
    await expect(ThinPool.format(join(tmp(), 'p'), { size: GiB, blockSize: 32 * KiB })).rejects.toThrow(/64 KiB/);
  });

  test('write/read at any offset; unprovisioned reads zeros; a fresh block is zero around the write', async () => {
    const dir = join(tmp(), 'pool');
    const pool = await ThinPool.format(dir, { size: 256 * MiB });
    const v = await pool.createThin('base', { size: 64 * MiB });
    const data = seededBytes(100_000, 1);
    await v.write(data, 12_345);
    const back = new Uint8Array(100_000);
    await v.read(back, 12_345);
    expect(back).toEqual(data);
    const around = new Uint8Array(12_345);
    await v.read(around, 0);
    expect(around.every((b) => b === 0)).toBe(true);
    const far = new Uint8Array(4096);
    await v.read(far, 32 * MiB);
    expect(far.every((b) => b === 0)).toBe(true);
    expect(v.map()).toEqual([{ offsetBytes: 0, lengthBytes: 2 * 64 * KiB, dblock: 0 }]);
    expect(v.extents(64 * KiB + 5, 10)).toEqual([{ offsetBytes: 64 * KiB, lengthBytes: 64 * KiB, dblock: 1 }]);
    expect(v.extents(3 * 64 * KiB, 64 * KiB)).toEqual([]);
    await expect(v.read(new Uint8Array(10), 64 * MiB - 5)).rejects.toThrow(/beyond the end/);
    await pool.close();
    verifyMetadataFile(join(dir, 'metadata'));
    const again = await ThinPool.open(dir);
    const v2 = again.volume('base');
    const back2 = new Uint8Array(100_000);
    await v2.read(back2, 12_345);
    expect(back2).toEqual(data);
    await again.close();
  });

  test('snapshots at depth share blocks; a write copies one block; reads are right at every depth', async () => {
    const dir = join(tmp(), 'pool');
    const pool = await ThinPool.format(dir, { size: 256 * MiB });
    await snapshotDepthStory(pool);
    await pool.close();
    verifyMetadataFile(join(dir, 'metadata'));
  });

  test('discard unmaps whole blocks and zeroes partial edges; delete frees space', async () => {
    const dir = join(tmp(), 'pool');
    const pool = await ThinPool.format(dir, { size: 64 * MiB });
    const v = await pool.createThin('v', { size: 8 * MiB });
    await v.write(seededBytes(8 * MiB, 3), 0);
    expect(pool.status().dataBlocks.used).toBe(128);
    await v.discard(100, 3 * 64 * KiB);
    const b = new Uint8Array(4 * 64 * KiB);
    await v.read(b, 0);
    const p = seededBytes(8 * MiB, 3);
    expect(b.subarray(0, 100)).toEqual(p.subarray(0, 100));
    expect(b.subarray(100, 100 + 3 * 64 * KiB).every((x) => x === 0)).toBe(true);
    expect(b.subarray(100 + 3 * 64 * KiB)).toEqual(p.subarray(100 + 3 * 64 * KiB, 4 * 64 * KiB));
    expect(pool.status().dataBlocks.used).toBe(126);
    await pool.delete('v');
    expect(pool.status().dataBlocks.used).toBe(0);
    expect(pool.has('v')).toBe(false);
    await pool.close();
    verifyMetadataFile(join(dir, 'metadata'));
  });

  test('resize grows and shrinks; shrinking unmaps the tail', async () => {
    const dir = join(tmp(), 'pool');
    const pool = await ThinPool.format(dir, { size: 64 * MiB });
    const v = await pool.createThin('v', { size: 4 * MiB });
    await v.write(seededBytes(4 * MiB, 5), 0);
    await pool.resize('v', 1 * MiB + 512);
    expect(v.sizeBytes).toBe(MiB + 512);
    expect(pool.status().dataBlocks.used).toBe(17);
    await pool.resize('v', 4 * MiB);
    const b = new Uint8Array(1024);
    await v.read(b, MiB);
    expect(b.subarray(0, 512)).toEqual(seededBytes(4 * MiB, 5).subarray(MiB, MiB + 512));
    expect(b.subarray(512).every((x) => x === 0)).toBe(true);
    await pool.close();
    verifyMetadataFile(join(dir, 'metadata'));
  });

  test('a second open fails while the pool is open; a killed holder does not keep the lock', async () => {
    const dir = join(tmp(), 'pool');
    const pool = await ThinPool.format(dir, { size: 64 * MiB });
    await expect(ThinPool.open(dir)).rejects.toThrow(/already open/);
    await pool.close();
    const child = spawn(process.execPath, [
      '-e',
      `
      const fs = require('node:fs');
      fs.writeFileSync(${JSON.stringify(join(dir, 'lock'))}, process.pid + ' ' + fs.readFileSync('/proc/self/stat','utf8').split(') ')[1].split(' ')[19] + '\\n');
      console.log('locked'); setInterval(() => {}, 1000);`,
    ]);
    await new Promise<void>((res) => child.stdout.once('data', () => res()));
    await expect(ThinPool.open(dir)).rejects.toThrow(/open in process/);
    child.kill('SIGKILL');
    await new Promise((res) => child.once('exit', res));
    const again = await ThinPool.open(dir);
    await again.close();
    expect(existsSync(join(dir, 'lock'))).toBe(false);
  });

  test('out of data space: clear error, nothing corrupted, deleting a volume makes room', async () => {
    const dir = join(tmp(), 'pool');
    const pool = await ThinPool.format(dir, { size: 16 * 64 * KiB });
    const a = await pool.createThin('a', { size: 2 * MiB });
    const b = await pool.createThin('b', { size: 2 * MiB });
    await a.write(seededBytes(12 * 64 * KiB, 1), 0);
    await pool.commit();
    let err: unknown;
    try {
      await b.write(seededBytes(8 * 64 * KiB, 2), 0);
    } catch (e) {
      err = e;
    }
    expect(isThinpoolError(err, 'ENOSPC_DATA')).toBe(true);
    expect(pool.status().mode).toBe('write');
    await pool.delete('a');
    await b.write(seededBytes(8 * 64 * KiB, 2), 0);
    const back = new Uint8Array(8 * 64 * KiB);
    await b.read(back, 0);
    expect(back).toEqual(seededBytes(8 * 64 * KiB, 2));
    await pool.close();
    verifyMetadataFile(join(dir, 'metadata'));
  });

  test('held metadata snapshot: reserve, keep writing, release; tools accept every stage', async () => {
    const dir = join(tmp(), 'pool');
    const pool = await ThinPool.format(dir, { size: 64 * MiB });
    const v = await pool.createThin('v', { size: 8 * MiB });
    await v.write(seededBytes(2 * MiB, 1), 0);
    const held = await pool.reserveMetadataSnap();
    expect(pool.status().heldMetadataRoot).toBe(held);
    await pool.snapshot('v', 'snap');
    await v.write(seededBytes(MiB, 2), MiB);
    await pool.delete('snap');
    await pool.commit();
    verifyMetadataFile(join(dir, 'metadata'));
    await pool.releaseMetadataSnap();
    expect(pool.status().heldMetadataRoot).toBe(null);
    await pool.close();
    verifyMetadataFile(join(dir, 'metadata'));
  });

  test('transaction id compare-and-set', async () => {
    const pool = ThinPool.memory({ size: 64 * MiB });
    expect(pool.transactionId).toBe(0);
    await pool.setTransactionId(0, 5);
    expect(pool.transactionId).toBe(5);
    await expect(pool.setTransactionId(0, 6)).rejects.toThrow(/transaction id is 5/);
    verifyMetadataDevice(pool.storage.metadata);
    await pool.close();
  });
});
