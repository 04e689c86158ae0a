/**
 * A thin volume as a kernel block device without /dev/nbd: the volume is served over NBD (in this process),
 * nbdfuse turns the export into a file, and a loop device over that file is what mkfs and mount see.
 *
 *   const why = kernelMountUnavailable();            // null, or the reason (no root, no /dev/fuse, ...)
 *   const dev = await attachVolume(pool, 'fs');      // { loop: '/dev/loopN', detach() }
 *   const m = await mountExt4(pool, 'fs', { mkfs: true });   // { dir, unmount() }: detaches too
 *
 * Used by the ext4 tests and for the "ext4 on a thinpool volume through NBD" benchmark system. All child
 * processes are started asynchronously: the NBD server runs on this process's event loop.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ThinPool } from '../thin/pool.js';
import { mountsUnder, stopNbdfuse, waitLoopDetached } from './nbdfuse-files.js';
import { NbdServer } from './server.js';

const TOOLS: [string, string][] = [
  ['nbdfuse', 'nbdfuse'],
  ['losetup', 'mount'],
  ['mount', 'mount'],
  ['mkfs.ext4', 'e2fsprogs'],
  ['fusermount3', 'fuse3'],
];

function have(tool: string): boolean {
  return (
    spawnSync('sh', ['-c', `command -v ${tool} || test -x /sbin/${tool} || test -x /usr/sbin/${tool}`], { stdio: 'ignore' }).status === 0
  );
}

/** Null when volumes can be mounted through nbdfuse + loop here, else why not. */
export function kernelMountUnavailable(): string | null {
  for (const [t, p] of TOOLS) if (!have(t)) return `${t} not installed (Debian package ${p})`;
  if (process.getuid?.() !== 0) return 'needs root for losetup and mount';
  if (!existsSync('/dev/fuse')) return 'no /dev/fuse (FUSE not available here)';
  const lo = spawnSync('losetup', ['-f'], { encoding: 'utf8' });
  if (lo.status !== 0) return `no free loop device (losetup -f: ${(lo.stderr ?? '').trim()})`;
  return null;
}

function run(cmd: string, args: string[], timeoutMs = 120000): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d) => {
      out += d;
    });
    c.stderr.on('data', (d) => {
      err += d;
    });
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    c.on('close', (code) => {
      clearTimeout(t);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.trim()}`));
    });
  });
}

export interface AttachedVolume {
  /** The loop device, e.g. /dev/loop3. */
  loop: string;
  /** Detach the loop device, unmount nbdfuse, stop the server (idempotent). */
  detach(): Promise<void>;
}

/** Serve one volume and attach it as a loop device through nbdfuse. */
export async function attachVolume(pool: ThinPool, volume: string, opts: { readOnly?: boolean } = {}): Promise<AttachedVolume> {
  const work = mkdtempSync(join(tmpdir(), 'tp-nbdfuse-'));
  const server = new NbdServer(pool, { exports: [volume], defaultExport: volume, readOnly: opts.readOnly });
  let child: ChildProcess | null = null;
  let loop = '';
  let done = false;
  const mnt = join(work, 'mnt');
  // The teardown order of nbdfuse-files.ts: the loop device lets go of the file (losetup -d may only mark it
  // for autoclear while the kernel still holds it), then nbdfuse's mount goes, then the server; the directory
  // is removed only once nothing is mounted under it.
  const detach = async () => {
    if (done) return;
    done = true;
    if (loop) {
      await run('losetup', ['-d', loop]).catch(() => undefined);
      await waitLoopDetached(loop, 10000);
    }
    if (child) await stopNbdfuse(child, mnt);
    await server.close();
    if (mountsUnder(work).length === 0) rmSync(work, { recursive: true, force: true });
  };
  try {
    const addr = await server.listen({ path: join(work, 'nbd.sock') });
    mkdirSync(mnt);
    const pidFile = join(work, 'nbdfuse.pid');
    const c = spawn('nbdfuse', [...(opts.readOnly ? ['-r'] : []), '-P', pidFile, mnt, addr.uri], { stdio: 'ignore' });
    child = c;
    const deadline = Date.now() + 15000;
    while (!(existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '')) {
      if (Date.now() > deadline || c.exitCode !== null) throw new Error('nbdfuse did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
    loop = (await run('losetup', [...(opts.readOnly ? ['-r'] : []), '-f', '--show', join(mnt, 'nbd')])).trim();
    return { loop, detach };
  } catch (e) {
    await detach();
    throw e;
  }
}

export interface MountedVolume {
  dir: string;
  loop: string;
  /** Unmount, then detach (idempotent). */
  unmount(): Promise<void>;
}

/** Attach a volume, optionally make an ext4 file system on it, and mount it at dir (default: a temp dir). */
export async function mountExt4(
  pool: ThinPool,
  volume: string,
  opts: { mkfs?: boolean; dir?: string; mkfsArgs?: string[] } = {},
): Promise<MountedVolume> {
  const dev = await attachVolume(pool, volume);
  const own = opts.dir === undefined;
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'tp-ext4-'));
  let mounted = false;
  let done = false;
  const unmount = async () => {
    if (done) return;
    done = true;
    try {
      if (mounted) await run('umount', [dir]);
    } finally {
      await dev.detach();
      if (own) rmSync(dir, { recursive: true, force: true });
    }
  };
  try {
    if (opts.mkfs) await run('mkfs.ext4', ['-q', '-F', ...(opts.mkfsArgs ?? []), dev.loop]);
    mkdirSync(dir, { recursive: true });
    await run('mount', [dev.loop, dir]);
    mounted = true;
    return { dir, loop: dev.loop, unmount };
  } catch (e) {
    await unmount().catch(() => undefined);
    throw e;
  }
}
