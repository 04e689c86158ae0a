// A sample suite written the way a user of thinpool/vitest would write it: a golden ext4 image made once with
// `mkfs.ext4 -d`, a fresh copy-on-write fork per test, files changed through ext2fs, `e2fsck -fn` on every fork.
import { afterAll, describe, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ext2fs from 'ext2fs';
import { goldenTest } from '../../src/testing/vitest.js';
import { VolumeDisk, volumeDigest, type Fork, type VolumeLike } from '../../src/testing/index.js';
import { needTool, toolPath } from '../support/tools.js';

const haveTools = needTool('mkfs.ext4', 'e2fsprogs') && needTool('e2fsck', 'e2fsprogs');
const work = mkdtempSync(join(tmpdir(), 'tp-golden-ext4-'));
const imagePath = join(work, 'golden.img');
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The golden image: a 64 MiB ext4 filesystem populated from a directory. */
function makeGoldenImage(): string {
  const src = join(work, 'root');
  mkdirSync(join(src, 'etc'), { recursive: true });
  mkdirSync(join(src, 'data'), { recursive: true });
  writeFileSync(join(src, 'etc', 'hostname'), 'golden\n');
  writeFileSync(join(src, 'README'), 'the golden image\n');
  const blob = Buffer.alloc(3 * 1024 * 1024);
  for (let i = 0; i < blob.length; i++) blob[i] = (i * 7 + (i >> 12)) & 0xff;
  writeFileSync(join(src, 'data', 'blob.bin'), blob);
  const r = spawnSync(
    toolPath('mkfs.ext4'),
    ['-q', '-F', '-t', 'ext4', '-b', '4096', '-E', 'root_owner=0:0', '-d', src, imagePath, '64M'],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`mkfs.ext4 failed: ${r.stderr}`);
  return imagePath;
}

const test = goldenTest({ image: makeGoldenImage, name: 'ext4-golden', verifyGolden: true });

type Fs = {
  readFile(p: string, enc?: string): Promise<string | Buffer>;
  writeFile(p: string, d: string | Uint8Array): Promise<void>;
  readdir(p: string): Promise<string[]>;
  mkdir(p: string): Promise<void>;
  unlink(p: string): Promise<void>;
  symlink(target: string, p: string): Promise<void>;
  readlink(p: string): Promise<string>;
  stat(p: string): Promise<{ size: number }>;
  open(
    p: string,
    flags: string,
  ): Promise<{ write(b: Uint8Array, o: number, l: number, pos: number): Promise<unknown>; close(): Promise<void> }>;
  trim(): Promise<void>;
};

/** Mount a volume with ext2fs (a file-disk Disk over the volume) and run fn on its promise API. */
async function withFs<T>(v: VolumeLike, fn: (fs: Fs) => Promise<T>): Promise<T> {
  return ext2fs.withMountedDisk(new VolumeDisk(v), 0, async ({ promises }: { promises: Fs }) => fn(promises));
}

/** Export the fork to a sparse file and run `e2fsck -fn` on it. */
async function expectFsckClean(fork: Fork): Promise<void> {
  const out = join(work, `${fork.name}.img`);
  await fork.exportTo(out);
  try {
    const r = spawnSync(toolPath('e2fsck'), ['-fn', out], { encoding: 'utf8' });
    expect(r.status, `e2fsck -fn ${fork.name}:\n${r.stdout}${r.stderr}`).toBe(0);
  } finally {
    rmSync(out, { force: true });
  }
}

describe.skipIf(!haveTools)('ext4 golden image, forked per test', () => {
  test('a fork starts as an exact copy of the golden image', async ({ fork, golden }) => {
    const file = readFileSync(imagePath);
    expect(fork.sizeBytes).toBe(file.length);
    expect(volumeDigest(fork)).toBe(createHash('sha256').update(file).digest('hex'));
    expect(volumeDigest(golden)).toBe(volumeDigest(fork));
    // Sparse load: only the blocks holding data were provisioned (the image is mostly empty).
    const mapped = golden.volume.map().reduce((n, e) => n + e.lengthBytes, 0);
    expect(mapped).toBeLessThan(file.length / 2);
    await withFs(fork, async (fs) => {
      expect(((await fs.readdir('/')) as string[]).sort()).toEqual(['README', 'data', 'etc', 'lost+found']);
      expect(String(await fs.readFile('/etc/hostname', 'utf8'))).toBe('golden\n');
    });
    await expectFsckClean(fork);
  });

  test('writes new files and directories', async ({ fork, golden }) => {
    await withFs(fork, async (fs) => {
      await fs.mkdir('/var');
      await fs.writeFile('/var/app.log', 'started\n');
      await fs.writeFile('/etc/hostname', 'fork-1\n');
      await fs.symlink('/var/app.log', '/latest.log');
    });
    await withFs(fork, async (fs) => {
      expect(String(await fs.readFile('/var/app.log', 'utf8'))).toBe('started\n');
      expect(String(await fs.readFile('/etc/hostname', 'utf8'))).toBe('fork-1\n');
      expect(await fs.readlink('/latest.log')).toBe('/var/app.log');
    });
    // The golden does not see any of it.
    await withFs(golden, async (fs) => {
      expect(String(await fs.readFile('/etc/hostname', 'utf8'))).toBe('golden\n');
      expect((await fs.readdir('/')).includes('var')).toBe(false);
    });
    await expectFsckClean(fork);
  });

  test('each test gets a fresh fork: the previous test left nothing behind', async ({ fork, goldenStore }) => {
    expect(goldenStore.liveForks).toBe(1);
    await withFs(fork, async (fs) => {
      expect(String(await fs.readFile('/etc/hostname', 'utf8'))).toBe('golden\n');
      expect((await fs.readdir('/')).includes('var')).toBe(false);
      await fs.unlink('/README');
    });
    await expectFsckClean(fork);
  });

  test('large writes in 1 MiB pieces, then delete and trim give the blocks back', async ({ fork, goldenStore }) => {
    const before = goldenStore.usage().dataBlocks;
    const piece = Buffer.alloc(1024 * 1024);
    await withFs(fork, async (fs) => {
      const fh = await fs.open('/big.bin', 'w');
      for (let i = 0; i < 8; i++) {
        piece.fill(i + 1);
        await fh.write(piece, 0, piece.length, i * piece.length);
      }
      await fh.close();
      expect((await fs.stat('/big.bin')).size).toBe(8 * 1024 * 1024);
    });
    const grown = goldenStore.usage().dataBlocks;
    expect(grown - before).toBeGreaterThanOrEqual((8 * 1024 * 1024) / goldenStore.blockSize);
    await expectFsckClean(fork);
    await withFs(fork, async (fs) => {
      await fs.unlink('/big.bin');
      await fs.trim();
    });
    expect(goldenStore.usage().dataBlocks).toBeLessThan(grown - (6 * 1024 * 1024) / goldenStore.blockSize);
    await expectFsckClean(fork);
  });

  test('more forks in one test are independent of each other', async ({ fork, goldenStore, golden }) => {
    await using second = goldenStore.fork(golden);
    await withFs(fork, (fs) => fs.writeFile('/who', 'first'));
    await withFs(second, (fs) => fs.writeFile('/who', 'second'));
    await withFs(fork, async (fs) => expect(String(await fs.readFile('/who', 'utf8'))).toBe('first'));
    await withFs(second, async (fs) => expect(String(await fs.readFile('/who', 'utf8'))).toBe('second'));
    await expectFsckClean(fork);
    await expectFsckClean(second);
  });

  test('the check has teeth: a fork with a clobbered inode table fails e2fsck', async ({ fork }) => {
    // Group descriptor 0 says where the inode table is; overwrite its first blocks (root inode included).
    const gd = Buffer.alloc(64);
    fork.readSync(gd, 4096);
    const inodeTable = gd.readUInt32LE(8) * 4096;
    fork.writeSync(Buffer.alloc(16 * 1024, 0xa5), inodeTable);
    const out = join(work, `${fork.name}.img`);
    await fork.exportTo(out);
    const r = spawnSync(toolPath('e2fsck'), ['-fn', out], { encoding: 'utf8' });
    rmSync(out, { force: true });
    expect(r.status).not.toBe(0);
  });

  test('the golden volume is byte-identical to the image at the end', async ({ golden, goldenStore }) => {
    expect(volumeDigest(golden)).toBe(createHash('sha256').update(readFileSync(imagePath)).digest('hex'));
    expect(goldenStore.liveForks).toBe(0);
    expect(goldenStore.pool.list().map((v) => v.name)).toEqual(['ext4-golden']);
  });
});
