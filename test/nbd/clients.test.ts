// Real NBD clients (libnbd's nbdinfo and nbdcopy, qemu-img) against the server on a file pool.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeSync, ftruncateSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { ThinPool } from '../../src/thin/pool.js';
import { needTool } from '../support/tools.js';
import { verifyMetadataFile } from '../support/pool-check.js';
import { filePool, MiB, run, runOk, serveTcp, tempDir, type Served } from './support.js';

const hasNbdinfo = needTool('nbdinfo', 'libnbd-bin');
const hasNbdcopy = needTool('nbdcopy', 'libnbd-bin');
const hasQemu = needTool('qemu-img', 'qemu-utils');

const SIZE = 64 * MiB;

/** A raw image of SIZE bytes with random data in `extents` ([offset, length]) and written zeroes in `zeroes`. */
function makeImage(path: string, extents: [number, number][], zeroes: [number, number][]): Buffer {
  const img = Buffer.alloc(SIZE);
  for (const [off, len] of extents) randomBytes(len).copy(img, off);
  const fd = openSync(path, 'w');
  ftruncateSync(fd, SIZE);
  for (const [off, len] of extents) writeSync(fd, img, off, len, off);
  for (const [off, len] of zeroes) writeSync(fd, Buffer.alloc(len), 0, len, off);
  closeSync(fd);
  return img;
}

/** The reference image: data at 0-1M, 10-11M, 30-30.5M, written zeroes at 40-42M. */
function makeRef(path: string): Buffer {
  return makeImage(
    path,
    [
      [0, MiB],
      [10 * MiB, MiB],
      [30 * MiB, MiB / 2],
    ],
    [[40 * MiB, 2 * MiB]],
  );
}

const EXPECTED_MAP = [
  [0, MiB, 0],
  [MiB, 9 * MiB, 3],
  [10 * MiB, MiB, 0],
  [11 * MiB, 19 * MiB, 3],
  [30 * MiB, MiB / 2, 0],
  [30 * MiB + MiB / 2, SIZE - 30 * MiB - MiB / 2, 3],
];

function parseMap(out: string): number[][] {
  return out
    .trim()
    .split('\n')
    .map((l) => l.trim().split(/\s+/).slice(0, 3).map(Number));
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe.skipIf(!hasNbdinfo || !hasNbdcopy)('libnbd clients', () => {
  let tmp: ReturnType<typeof tempDir>;
  let pool: ThinPool;
  let srv: Served;
  let ref: Buffer;
  let refPath: string;

  beforeAll(async () => {
    tmp = tempDir();
    pool = filePool(tmp.dir, [
      { name: 'vol1', size: SIZE },
      { name: 'vol2', size: 32 * MiB },
      { name: 'vol3', size: SIZE },
    ]);
    pool.snapshotSync('vol2', 'snap2', { readOnly: true });
    pool.commitSync();
    refPath = join(tmp.dir, 'ref.raw');
    ref = makeRef(refPath);
    srv = await serveTcp(pool);
  });

  afterAll(async () => {
    await srv?.server.close();
    pool?.closeSync();
    if (pool) verifyMetadataFile(join(tmp.dir, 'pool', 'metadata'));
    tmp?.cleanup();
  });

  test('nbdinfo: sizes, export list, capabilities, read-only snapshot, unknown export', async () => {
    expect((await runOk('nbdinfo', ['--size', srv.at('vol1')])).trim()).toBe(String(SIZE));
    expect((await runOk('nbdinfo', ['--size', srv.at('vol2')])).trim()).toBe(String(32 * MiB));
    const info = await runOk('nbdinfo', [srv.at('vol1')]);
    expect(info).toContain('base:allocation');
    expect(info).toMatch(/export-size: 67108864/);
    const list = await runOk('nbdinfo', ['--list', srv.uri]);
    for (const n of ['vol1', 'vol2', 'vol3', 'snap2']) expect(list).toContain(`export="${n}"`);
    for (const c of ['flush', 'trim', 'zero', 'fua', 'multi-conn']) {
      expect((await run('nbdinfo', ['--can', c, srv.at('vol1')])).code, c).toBe(0);
    }
    expect((await run('nbdinfo', ['--is', 'read-only', srv.at('vol1')])).code).toBe(2);
    expect((await run('nbdinfo', ['--is', 'read-only', srv.at('snap2')])).code).toBe(0);
    const bad = await run('nbdinfo', [srv.at('nosuch')]);
    expect(bad.code).not.toBe(0);
    // Several volumes: no default export.
    expect((await run('nbdinfo', ['--size', srv.uri])).code).not.toBe(0);
  });

  test('nbdcopy round trip keeps zero runs unprovisioned; nbdinfo --map shows exactly the provisioned extents', async () => {
    await runOk('nbdcopy', [refPath, srv.at('vol1')]);
    const map = parseMap(await runOk('nbdinfo', ['--map', srv.at('vol1')]));
    expect(map).toEqual(EXPECTED_MAP);
    const totals = await runOk('nbdinfo', ['--map', '--totals', srv.at('vol1')]);
    expect(totals).toMatch(/2621440\s+3\.9%\s+0\s+data/);
    const vol = pool.list().find((v) => v.name === 'vol1')!;
    expect(vol.mappedBytes).toBe(2.5 * MiB);
    const out = join(tmp.dir, 'out.raw');
    await runOk('nbdcopy', [srv.at('vol1'), out]);
    expect(sha(readFileSync(out))).toBe(sha(ref));
    // Snapshot exports are read-only on the wire too.
    const w = await run('nbdcopy', [refPath, srv.at('snap2')]);
    expect(w.code).not.toBe(0);
  });

  describe.skipIf(!hasQemu)('qemu-img', () => {
    test('convert to qcow2 and raw, compare, map shows the holes', async () => {
      await runOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', refPath, srv.at('vol1')]);
      const qcow = join(tmp.dir, 'out.qcow2');
      const raw = join(tmp.dir, 'out2.raw');
      await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', srv.at('vol1'), qcow]);
      await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', srv.at('vol1'), raw]);
      expect(sha(readFileSync(raw))).toBe(sha(ref));
      expect(await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', refPath, srv.at('vol1')])).toContain('Images are identical');
      expect(await runOk('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', qcow, srv.at('vol1')])).toContain('Images are identical');
      const map = JSON.parse(await runOk('qemu-img', ['map', '--output=json', '-f', 'raw', srv.at('vol1')])) as {
        start: number;
        length: number;
        data: boolean;
        zero: boolean;
      }[];
      const got = map.map((e) => [e.start, e.length, e.data ? 0 : 3]);
      expect(got).toEqual(EXPECTED_MAP);
      for (const e of map) expect(e.zero).toBe(!e.data);
    });

    test('qemu-img writes a qcow2 image of other data into a fresh volume; read back, it is that image', async () => {
      // A pattern unlike the reference (other data, other places), made into qcow2 without the server, written
      // by qemu-img into a volume that has never held anything.
      const rawPath = join(tmp.dir, 'other.raw');
      const other = makeImage(
        rawPath,
        [
          [2 * MiB, MiB],
          [20 * MiB, MiB / 2],
          [50 * MiB, 2 * MiB],
        ],
        [[60 * MiB, MiB]],
      );
      expect(sha(other)).not.toBe(sha(ref));
      const qcow = join(tmp.dir, 'other.qcow2');
      await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', rawPath, qcow]);
      expect(pool.list().find((v) => v.name === 'vol3')!.mappedBytes).toBe(0);
      await runOk('qemu-img', ['convert', '-n', '-f', 'qcow2', '-O', 'raw', qcow, srv.at('vol3')]);
      // Exactly the data extents were provisioned; zero runs stayed holes.
      expect(pool.list().find((v) => v.name === 'vol3')!.mappedBytes).toBe(3.5 * MiB);
      const back = join(tmp.dir, 'other-back.raw');
      await runOk('nbdcopy', [srv.at('vol3'), back]);
      expect(sha(readFileSync(back))).toBe(sha(other));
      expect(await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', rawPath, srv.at('vol3')])).toContain('Images are identical');
      // The first volume still holds the reference.
      expect(await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', refPath, srv.at('vol1')])).toContain('Images are identical');
    });
  });
});
