/**
 * ext4 on thinpool via NBD: the kernel's ext4 on a thin volume, reached as loop device -> nbdfuse -> NBD ->
 * NbdServer (src/nbd/kernel-mount.ts). The pool and its NBD servers live in a worker thread
 * (ext4-worker.ts) with its own event loop, so the benchmark's main thread keeps doing synchronous file I/O on
 * the mounts like every other system; pool operations are synchronous calls into the worker (Atomics.wait).
 *
 * Every mount, loop device, nbdfuse process and server is undone by close(), by the run's clean-up on an
 * error, and on SIGINT/SIGTERM/SIGHUP (the closer unmounts, detaches the loop device and unmounts nbdfuse with
 * synchronous commands while the worker keeps serving, then stops the worker).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { kernelMountUnavailable } from '../../../src/nbd/kernel-mount.js';
import { allocatedBytes } from '../lib/disk.js';
import { trackCloser } from '../lib/cleanup.js';
import { now } from '../lib/stats.js';
import { BLOCK } from './thin.js';

/** mkfs.ext4 options: 4 KiB blocks at every size, inode tables and journal written now (no lazy init thread
 * writing in the background of a measurement), no reserved blocks. */
export const MKFS_ARGS = ['-b', '4096', '-m', '0', '-E', 'lazy_itable_init=0,lazy_journal_init=0'];

/** Room ext4 needs around its files on a small volume (journal, inode tables, bitmaps), rounded up generously. */
export function ext4VolumeSize(payload: number): number {
  const MiB = 1024 * 1024;
  return Math.ceil((payload * 1.1 + 48 * MiB) / MiB) * MiB;
}

/** The compiled worker: beside this file in dist/, or dist/'s copy when running from the TypeScript source (vitest). */
function workerFile(): string | undefined {
  const here = fileURLToPath(import.meta.url);
  const beside = join(dirname(here), 'ext4-worker.js');
  if (here.endsWith('.js') && existsSync(beside)) return beside;
  const root = join(dirname(here), '..', '..', '..');
  const dist = join(root, 'dist', 'bench', 'compare', 'systems', 'ext4-worker.js');
  return existsSync(dist) ? dist : undefined;
}

interface Mounted {
  dir: string;
  loop: string;
  back: string;
}

/** A pool in a worker thread whose volumes mount as ext4 through NBD. All methods are synchronous. */
export class Ext4Pool {
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly flag: Int32Array;
  private readonly mounted = new Map<string, Mounted>();
  private closed = false;
  private readonly untrack: () => void;
  readonly paths: string[];

  constructor(
    readonly dir: string,
    size: number,
    opts: { blockSize?: number; metadataSize?: number } = {},
  ) {
    const file = workerFile();
    if (!file) throw new Error('ext4-worker.js is not built (npm run build)');
    this.flag = new Int32Array(new SharedArrayBuffer(4));
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = new Worker(file, { workerData: { port: port2, flag: this.flag }, transferList: [port2] });
    this.worker.unref();
    this.untrack = trackCloser(() => this.emergency());
    this.paths = [join(dir, 'data'), join(dir, 'metadata')];
    try {
      this.call({ op: 'format', dir, size, blockSize: opts.blockSize ?? BLOCK, metadataSize: opts.metadataSize });
    } catch (e) {
      this.emergency();
      this.untrack();
      throw e;
    }
  }

  private call(req: Record<string, unknown>, timeoutMs = 180_000): unknown {
    if (this.closed) throw new Error('ext4 pool is closed');
    Atomics.store(this.flag, 0, 0);
    this.port.postMessage(req);
    const deadline = now() + timeoutMs;
    while (Atomics.wait(this.flag, 0, 0, 1000) === 'timed-out') {
      if (now() > deadline) throw new Error(`ext4 worker did not answer ${String(req.op)} within ${timeoutMs / 1000} s`);
    }
    const m = receiveMessageOnPort(this.port)?.message as { value?: unknown; error?: string } | undefined;
    if (!m) throw new Error(`ext4 worker: no reply to ${String(req.op)}`);
    if (m.error !== undefined) throw new Error(`ext4 worker: ${String(req.op)}: ${m.error}`);
    return m.value;
  }

  createThin(name: string, size: number): void {
    this.call({ op: 'create', name, size });
  }

  /** Snapshot (+ commit). The origin must not be mounted (or must be quiet) for a consistent file system. */
  snapshot(from: string, to: string, commit = true): void {
    this.call({ op: 'snapshot', from, to, commit });
  }

  commit(): void {
    this.call({ op: 'commit' });
  }

  delete(name: string): void {
    this.call({ op: 'delete', name });
  }

  /** Serve the volume, attach it through nbdfuse + loop, optionally mkfs.ext4, mount at dir. Returns the wall time in ms. */
  mount(name: string, dir: string, mkfs = false): number {
    mkdirSync(dir, { recursive: true });
    const t = now();
    const r = this.call({ op: 'mount', name, dir, mkfs, mkfsArgs: MKFS_ARGS }) as { loop: string; back: string };
    const ms = now() - t;
    this.mounted.set(dir, { dir, ...r });
    return ms;
  }

  /** Unmount (writes back everything dirty), detach the loop device, stop nbdfuse and the server. ms. */
  unmount(dir: string): number {
    const t = now();
    this.call({ op: 'unmount', dir });
    this.mounted.delete(dir);
    return now() - t;
  }

  /** Bytes the worker (NBD server + pool) has written to storage: what reaches the pool's files. */
  written(): number {
    return this.call({ op: 'written' }) as number;
  }

  usedBytes(): number {
    return this.call({ op: 'usedBytes' }) as number;
  }

  allocated(): number {
    return allocatedBytes(...this.paths);
  }

  /** Unmount everything, close the pool, stop the worker. */
  close(): void {
    if (this.closed) return;
    try {
      this.call({ op: 'close' });
    } catch (e) {
      this.emergency();
      throw e;
    } finally {
      this.closed = true;
      this.mounted.clear();
      void this.worker.terminate();
      this.untrack();
    }
  }

  /**
   * Clean-up without the worker's help beyond serving (Ctrl-C, an error): umount (lazy if it must), detach the
   * loop device, unmount nbdfuse (which ends the nbdfuse process), then stop the worker and its servers.
   */
  private emergency(): void {
    if (this.closed) return;
    this.closed = true;
    for (const m of [...this.mounted.values()].reverse()) {
      if (spawnSync('umount', [m.dir], { stdio: 'ignore', timeout: 30_000 }).status !== 0)
        spawnSync('umount', ['-l', m.dir], { stdio: 'ignore' });
      spawnSync('losetup', ['-d', m.loop], { stdio: 'ignore' });
      if (m.back) spawnSync('fusermount3', ['-u', '-z', dirname(m.back)], { stdio: 'ignore' });
    }
    this.mounted.clear();
    void this.worker.terminate();
  }
}

/**
 * Why ext4 through NBD cannot run here, or undefined: the prerequisites (kernelMountUnavailable: tools, root,
 * /dev/fuse, a free loop device), then a real probe (mkfs + mount + write + unmount of a small volume).
 */
export function ext4Unavailable(work: string): string | undefined {
  if (process.platform !== 'linux') return `not Linux (${process.platform})`;
  const why = kernelMountUnavailable();
  if (why) return why;
  if (!workerFile()) return 'bench/compare/systems/ext4-worker.js is not built (npm run build)';
  const d = mkdtempSync(join(work, 'ext4-probe-'));
  let p: Ext4Pool | undefined;
  try {
    p = new Ext4Pool(join(d, 'pool'), 64 * 1024 * 1024);
    p.createThin('probe', 32 * 1024 * 1024);
    p.mount('probe', join(d, 'mnt'), true);
    p.unmount(join(d, 'mnt'));
    return undefined;
  } catch (e) {
    return `cannot mount ext4 through nbdfuse + loop (${(e instanceof Error ? e.message : String(e)).split('\n')[0]})`;
  } finally {
    try {
      p?.close();
    } catch {
      /* reported above */
    }
    rmSync(d, { recursive: true, force: true });
  }
}
