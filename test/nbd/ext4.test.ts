// The kernel's ext4 on a thin volume: nbdfuse turns the export into a file, losetup + mkfs.ext4 + mount, files
// written and checksummed, remounted and checked again, e2fsck -fn clean, thin_check clean, and a snapshot taken
// after unmounting mounts with the same files. Needs root, /dev/fuse and loop devices: skipped locally with the
// reason otherwise, a failure in CI (needPrerequisite).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { ThinPool } from '../../src/thin/pool.js';
import { needPrerequisite, needTool } from '../support/tools.js';
import { verifyMetadataFile } from '../support/pool-check.js';
import { kernelMountUnavailable, mountExt4 } from '../../src/nbd/kernel-mount.js';
import { filePool, MiB, run, runOk, serveTcp, tempDir, type Served } from './support.js';

function whyNot(): string | null {
  const tools: [string, string][] = [
    ['nbdfuse', 'nbdfuse'],
    ['losetup', 'mount'],
    ['mkfs.ext4', 'e2fsprogs'],
    ['e2fsck', 'e2fsprogs'],
    ['fusermount3', 'fuse3'],
  ];
  for (const [t, p] of tools) if (!needTool(t, p)) return `${t} not installed (Debian package ${p})`;
  if (process.getuid?.() !== 0) return 'needs root for losetup and mount';
  if (!existsSync('/dev/fuse')) return 'no /dev/fuse (FUSE not available in this container)';
  const lo = spawnSync('losetup', ['-f'], { encoding: 'utf8' });
  if (lo.status !== 0) return `no free loop device (losetup -f: ${lo.stderr.trim()})`;
  return null;
}

const canRun = needPrerequisite('ext4 through nbdfuse + loop', whyNot());

const SIZE = 64 * MiB;

describe.skipIf(!canRun)('ext4 on a thin volume through nbdfuse', () => {
  let tmp: ReturnType<typeof tempDir>;
  let pool: ThinPool;
  let srv: Served;
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    tmp = tempDir();
    pool = filePool(tmp.dir, [{ name: 'fs', size: SIZE }]);
    srv = await serveTcp(pool);
  });

  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    await srv?.server.close();
    pool?.closeSync();
    if (pool) verifyMetadataFile(join(tmp.dir, 'pool', 'metadata'));
    tmp?.cleanup();
  });

  /** nbdfuse + losetup; returns the loop device and a detach function. */
  async function attach(name: string, tag: string): Promise<{ loop: string; detach(): Promise<void> }> {
    const mnt = join(tmp.dir, `fuse-${tag}`);
    mkdirSync(mnt);
    const pidFile = join(tmp.dir, `fuse-${tag}.pid`);
    const child: ChildProcess = spawn('nbdfuse', ['-P', pidFile, mnt, srv.at(name)], { stdio: 'ignore' });
    const deadline = Date.now() + 15000;
    while (!(existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '')) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error('nbdfuse did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
    const loop = (await runOk('losetup', ['-f', '--show', join(mnt, 'nbd')])).trim();
    let done = false;
    const detach = async () => {
      if (done) return;
      done = true;
      await run('losetup', ['-d', loop]);
      await run('fusermount3', ['-u', mnt]);
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      if (child.exitCode === null) await new Promise((r) => child.once('exit', r));
      clearTimeout(t);
    };
    cleanups.push(detach);
    return { loop, detach };
  }

  async function mount(loop: string, dir: string): Promise<() => Promise<void>> {
    mkdirSync(dir, { recursive: true });
    await runOk('mount', [loop, dir]);
    let done = false;
    const um = async () => {
      if (done) return;
      done = true;
      await runOk('umount', [dir]);
    };
    cleanups.push(um);
    return um;
  }

  test('mkfs, files, remount, e2fsck, snapshot', async () => {
    const a = await attach('fs', 'a');
    await runOk('mkfs.ext4', ['-q', '-F', a.loop], { timeoutMs: 60000 });
    const fs = join(tmp.dir, 'mnt-a');
    let um = await mount(a.loop, fs);
    await runOk('dd', ['if=/dev/urandom', `of=${join(fs, 'x')}`, 'bs=1M', 'count=8', 'status=none']);
    mkdirSync(join(fs, 'dir'));
    await runOk('dd', ['if=/dev/urandom', `of=${join(fs, 'dir', 'small')}`, 'bs=3000', 'count=7', 'status=none']);
    await runOk('sh', ['-c', `cd ${fs} && sha256sum x dir/small > ${join(tmp.dir, 'sums')}`]);
    await um();
    um = await mount(a.loop, fs);
    await runOk('sh', ['-c', `cd ${fs} && sha256sum -c ${join(tmp.dir, 'sums')}`]);
    await um();
    const fsck = await run('e2fsck', ['-fn', a.loop], { timeoutMs: 60000 });
    expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
    await a.detach();

    // The volume is thin: mkfs's discard and lazy init left most of it unprovisioned.
    const vol = pool.list().find((v) => v.name === 'fs')!;
    expect(vol.mappedBytes).toBeGreaterThan(8 * MiB);
    expect(vol.mappedBytes).toBeLessThan(SIZE);

    // A snapshot taken after unmounting mounts with the same files.
    pool.snapshotSync('fs', 'fs-snap');
    pool.commitSync();
    const b = await attach('fs-snap', 'b');
    const fsb = join(tmp.dir, 'mnt-b');
    const umb = await mount(b.loop, fsb);
    await runOk('sh', ['-c', `cd ${fsb} && sha256sum -c ${join(tmp.dir, 'sums')}`]);
    await umb();
    const fsck2 = await run('e2fsck', ['-fn', b.loop], { timeoutMs: 60000 });
    expect(fsck2.code, fsck2.stdout + fsck2.stderr).toBe(0);
    await b.detach();
  }, 120000);
});

describe('kernelMountUnavailable / mountExt4 (the helper behind the ext4 benchmark system)', () => {
  const canMount = needPrerequisite('kernel ext4 mount', kernelMountUnavailable());
  test.skipIf(!canMount)(
    'mountExt4 makes, mounts and detaches an ext4 volume',
    async () => {
      const tmp = tempDir();
      const pool = filePool(tmp.dir, [{ name: 'm', size: 32 * MiB }]);
      try {
        const m = await mountExt4(pool, 'm', { mkfs: true });
        await runOk('dd', ['if=/dev/urandom', `of=${join(m.dir, 'f')}`, 'bs=64k', 'count=16', 'status=none']);
        const sum = (await runOk('sha256sum', [join(m.dir, 'f')])).split(' ')[0];
        await m.unmount();
        await m.unmount(); // idempotent
        const again = await mountExt4(pool, 'm');
        expect((await runOk('sha256sum', [join(again.dir, 'f')])).split(' ')[0]).toBe(sum);
        await again.unmount();
      } finally {
        pool.closeSync();
        verifyMetadataFile(join(tmp.dir, 'pool', 'metadata'));
        tmp.cleanup();
      }
    },
    120000,
  );
});
