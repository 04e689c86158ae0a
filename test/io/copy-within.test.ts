// Copy-on-write copies of file devices (FileDevice.copyWithin): the bytes land whatever path is taken (reflink,
// copy_file_range, read + write), overlapping ranges and read-only devices are refused, and the fallback without
// the native helper still copies. On a loop-mounted XFS and btrfs (root, loop devices, xfsprogs / btrfs-progs;
// skipped locally with the reason, a failure in CI) the path is the reflink: after the first 4 KiB write into
// each shared block of a snapshot's origin, the file system reports the copies' extents as shared with the
// originals (filefrag), and every byte of origin and snapshot reads back as written. Each mount and loop device is made by the test and
// removed by it.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test, vi } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import { FileDevice } from '../../src/io/index.js';
import { ThinPool } from '../../src/thin/pool.js';
import { seededBytes } from '../support/rng.js';
import { needPrerequisite, needTool } from '../support/tools.js';

const KiB = 1024;
const BS = 64 * KiB;

function readAt(dev: { read(b: Uint8Array, o: number): void }, offset: number, length: number): Uint8Array {
  const b = new Uint8Array(length);
  dev.read(b, offset);
  return b;
}

const tmp = fs.mkdtempSync(join(os.tmpdir(), 'tp-copy-'));
const cleanups: Array<() => void> = [];
afterAll(() => {
  for (const c of cleanups.reverse()) c();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('FileDevice.copyWithin on the temp directory', () => {
  test('copies the bytes, holes included; refuses overlapping ranges and read-only devices', () => {
    const path = join(tmp, 'plain');
    const dev = FileDevice.create(path, 8 * BS);
    const src = seededBytes(BS, 1);
    dev.write(src, BS);
    const how = dev.copyWithin(BS, 4 * BS, BS);
    expect(['clone', 'copy', 'read-write']).toContain(how);
    expect(dev.copies[how]).toBe(1);
    expect(readAt(dev, 4 * BS, BS)).toEqual(src);
    dev.copyWithin(6 * BS, 2 * BS, BS); // a hole copies as zeros
    expect(readAt(dev, 2 * BS, BS).every((x) => x === 0)).toBe(true);
    for (const [s, d] of [
      [BS, BS + 4096],
      [BS + 4096, BS],
    ]) {
      expect(() => dev.copyWithin(s, d, BS)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    }
    dev.close();
    const ro = FileDevice.open(path, { readOnly: true });
    let code: unknown;
    try {
      ro.copyWithin(BS, 5 * BS, BS);
    } catch (e) {
      code = isThinpoolError(e) ? e.code : e;
    }
    expect(code).toBe('EROFS');
    ro.close();
  });

  test('without the native helper it reads and writes', async () => {
    vi.resetModules();
    vi.stubEnv('THINPOOL_NO_NATIVE', '1');
    try {
      const { FileDevice: Fresh } = await import('../../src/io/file-device.js');
      const dev = Fresh.create(join(tmp, 'no-native'), 4 * BS);
      const src = seededBytes(BS, 2);
      dev.write(src, 0);
      expect(dev.copyWithin(0, 2 * BS, BS)).toBe('read-write');
      expect(readAt(dev, 2 * BS, BS)).toEqual(src);
      dev.close();
    } finally {
      vi.unstubAllEnvs();
      vi.resetModules();
    }
  });
});

function loopMountUnavailable(): string | null {
  if (process.platform !== 'linux') return 'needs Linux loop devices';
  if (process.getuid?.() !== 0) return 'needs root for losetup and mount';
  const lo = spawnSync('losetup', ['-f'], { encoding: 'utf8' });
  if (lo.error || lo.status !== 0) return `no free loop device (losetup -f: ${lo.error?.message ?? lo.stderr.trim()})`;
  return null;
}

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.error?.message ?? r.stderr.trim()}`);
  return r.stdout;
}

/** A file system of `kind` on a loop device over a sparse image under tmp, mounted at a fresh directory. */
function mountLoopFs(kind: 'xfs' | 'btrfs'): string {
  const image = join(tmp, `${kind}.img`);
  fs.writeFileSync(image, '');
  fs.truncateSync(image, 320 * 1024 * 1024); // mkfs.xfs wants at least 300 MiB
  sh(kind === 'xfs' ? 'mkfs.xfs' : 'mkfs.btrfs', kind === 'xfs' ? ['-q', '-m', 'reflink=1', image] : ['-q', image]);
  const loop = sh('losetup', ['-f', '--show', image]).trim();
  cleanups.push(() => {
    spawnSync('losetup', ['-d', loop]);
  });
  const mnt = join(tmp, `${kind}-mnt`);
  fs.mkdirSync(mnt);
  sh('mount', [loop, mnt]);
  cleanups.push(() => {
    spawnSync('umount', [mnt]);
  });
  return mnt;
}

/** Bytes of `path` in extents the file system reports as shared (filefrag -v, flag "shared"). */
function sharedBytes(path: string): number {
  const out = sh('filefrag', ['-v', path]);
  const unit = Number(/blocks of (\d+) bytes/.exec(out)?.[1] ?? Number.NaN);
  let blocks = 0;
  for (const line of out.split('\n')) {
    const m = /^\s*\d+:\s*\d+\.\.\s*\d+:\s*\d+\.\.\s*\d+:\s*(\d+):.*\bshared\b/.exec(line);
    if (m) blocks += Number(m[1]);
  }
  return blocks * unit;
}

const haveLosetup = needTool('losetup', 'mount') && needTool('filefrag', 'e2fsprogs');
const canLoop = haveLosetup && needPrerequisite('loop-mounted XFS and btrfs', loopMountUnavailable());

for (const [kind, mkfs, pkg] of [
  ['xfs', 'mkfs.xfs', 'xfsprogs'],
  ['btrfs', 'mkfs.btrfs', 'btrfs-progs'],
] as const) {
  const have = canLoop && needTool(mkfs, pkg);
  test.skipIf(!have)(
    `${kind} (loop-mounted): copy-on-write shares the block's extents (reflink) and only the 4 KiB written is new`,
    () => {
      const mnt = mountLoopFs(kind);
      // The device level: the path taken is the clone.
      const dev = FileDevice.create(join(mnt, 'dev'), 4 * BS);
      dev.write(seededBytes(BS, 3), 0);
      expect(dev.copyWithin(0, 2 * BS, BS)).toBe('clone');
      expect(readAt(dev, 2 * BS, BS)).toEqual(seededBytes(BS, 3));
      dev.close();

      // Through a pool: a snapshot shares 32 blocks; a 4 KiB write into each breaks the sharing.
      const N = 32;
      const pool = ThinPool.formatSync(join(mnt, 'pool'), { size: 4 * N * BS });
      try {
        const v = pool.createThinSync('v', { size: N * BS });
        for (let i = 0; i < N; i++) v.writeSync(seededBytes(BS, 100 + i), i * BS);
        pool.snapshotSync('v', 's');
        pool.commitSync();
        const dataFile = join(mnt, 'pool', 'data');
        expect(sharedBytes(dataFile)).toBe(0);
        const piece = new Uint8Array(4 * KiB).fill(0xee);
        for (let i = 0; i < N; i++) v.writeSync(piece, i * BS + 8 * KiB);
        pool.commitSync();
        const data = pool.storage.data as FileDevice;
        // The copies were deferred (pending-copies.ts) and made by the commit: one clone of each block, then
        // the 4 KiB held written over it.
        expect(data.copies).toEqual({ clone: N, copy: 0, 'read-write': 0 });
        // Reflinked: the file system reports the copies' extents as shared (FIEMAP_EXTENT_SHARED), all but the
        // 4 KiB written into each (both the origin's block and its copy hold shared extents).
        expect(sharedBytes(dataFile)).toBeGreaterThanOrEqual(N * (BS - 4 * KiB));
        const s = pool.volume('s');
        for (let i = 0; i < N; i++) {
          const want = seededBytes(BS, 100 + i);
          expect(readAt({ read: (b, o) => s.readSync(b, o) }, i * BS, BS)).toEqual(want);
          want.set(piece, 8 * KiB);
          expect(readAt({ read: (b, o) => v.readSync(b, o) }, i * BS, BS)).toEqual(want);
        }
      } finally {
        pool.closeSync();
      }
      // Reopened (the commit made the copies durable): the same bytes.
      const again = ThinPool.openSync(join(mnt, 'pool'));
      try {
        const piece = new Uint8Array(4 * KiB).fill(0xee);
        const want = seededBytes(BS, 100 + 7);
        want.set(piece, 8 * KiB);
        expect(readAt({ read: (b, o) => again.volume('v').readSync(b, o) }, 7 * BS, BS)).toEqual(want);
      } finally {
        again.closeSync();
      }
    },
    240_000,
  ); // mkfs, loop mounts and btrfs's syncs took 81 s once on a loaded 2-core machine
}
