// Stories every pool implementation runs through the same production interface (ThinPool): a file pool in
// test/thin/pool.test.ts and a rados: pool in test/thin/rados-pool.test.ts. What differs between them (where the
// pool lives, how its metadata is checked afterwards) stays in those files.
import { expect } from 'vitest';
import type { ThinPool } from '../../src/thin/pool.js';
import { seededBytes } from './rng.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * Snapshots at depth on a fresh pool of 64 KiB blocks: a 16 MiB volume written in full, a chain of 30 snapshots
 * of it, 4 KiB written into the deepest. That write copies one block (one block more in use); the deepest reads
 * the write over the bytes it shares; the origin and a snapshot halfway read as before; the deepest maps the
 * whole volume with one block of its own, and differs from its origin in that block alone. Resolves the
 * volume's bytes (the caller goes on with the pool: reopen, check).
 */
export async function snapshotDepthStory(pool: ThinPool): Promise<Uint8Array> {
  const base = await pool.createThin('base', { size: 16 * MiB });
  const full = seededBytes(16 * MiB, 7);
  await base.write(full, 0);
  let name = 'base';
  for (let d = 1; d <= 30; d++) {
    await pool.snapshot(name, `s${d}`);
    name = `s${d}`;
  }
  const top = pool.volume('s30');
  const used = pool.status().dataBlocks.used;
  await top.write(new Uint8Array(4096).fill(0xab), 5 * MiB + 100);
  expect(pool.status().dataBlocks.used).toBe(used + 1);
  const b = new Uint8Array(8192);
  await top.read(b, 5 * MiB);
  expect(b.subarray(100, 4196).every((x) => x === 0xab)).toBe(true);
  expect(b.subarray(0, 100)).toEqual(full.subarray(5 * MiB, 5 * MiB + 100));
  for (const other of ['base', 's15']) {
    await pool.volume(other).read(b, 5 * MiB);
    expect(b).toEqual(full.subarray(5 * MiB, 5 * MiB + 8192));
  }
  const info = pool.list().find((x) => x.name === 's30')!;
  expect(info.mappedBytes).toBe(16 * MiB);
  expect(info.exclusiveBytes).toBe(64 * KiB);
  expect(info.originName).toBe('s29');
  expect(pool.diff('s29', 's30')).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'different', begin: 80, length: 1 })]));
  return full;
}
