/**
 * Volumes as files the kernel can loop-mount: thinpool's NBD server, in this process, on a unix socket in the
 * state directory, and one `nbdfuse` process (Debian libnbd-bin) per exported volume, which shows the volume as
 * the file `STATE/fuse/VOLUME.N/mnt/nbd`. containerd mounts that file with its `loop` option (it attaches a
 * loop device with autoclear, so unmounting detaches it).
 *
 * Invariants:
 * - At most one export per volume; operations on one volume run one after another (a per-volume queue).
 * - Teardown order: wait until no loop device is backed by the file (the ext4 above it is unmounted), then
 *   `fusermount3 -u` (retried), then nbdfuse exits (SIGTERM, then SIGKILL, if it does not), which closes its
 *   NBD connection. With `force` (shutdown) a file still in use is unmounted lazily and nbdfuse stopped: whatever
 *   still has it mounted gets I/O errors.
 * - Every child process is started asynchronously (never spawnSync): a FUSE unmount may need this process's
 *   event loop to answer NBD requests.
 * - `start()` removes what a killed predecessor left in the state directory: its FUSE mounts are lazily
 *   unmounted and its nbdfuse processes (recognised by their pid file and command line naming that directory)
 *   are stopped. Directories are removed only once they are no longer mount points.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { ThinpoolError } from '../errors.js';
import { exited, loopsBacking, mountsUnder, runTool as run, sleep, stopNbdfuse } from '../nbd/nbdfuse-files.js';
import { NbdServer } from '../nbd/server.js';
import type { ThinPool } from '../thin/pool.js';

interface Export {
  volume: string;
  dir: string;
  mnt: string;
  file: string;
  readOnly: boolean;
  child: ChildProcess;
}

export interface ExportsOptions {
  log?: (msg: string) => void;
  /** How long teardown waits for a loop device on the file to go away (ms). Default 10000. */
  releaseTimeoutMs?: number;
}

export class Exports {
  readonly pool: ThinPool;
  readonly dir: string;
  readonly socket: string;
  private readonly opts: ExportsOptions;
  private server: NbdServer | null = null;
  private readonly live = new Map<string, Export>();
  private readonly queues = new Map<string, Promise<unknown>>();
  private seq = 0;

  constructor(pool: ThinPool, stateDir: string, opts: ExportsOptions = {}) {
    this.pool = pool;
    this.dir = stateDir;
    this.socket = join(stateDir, 'nbd.sock');
    this.opts = opts;
  }

  private log(msg: string): void {
    this.opts.log?.(msg);
  }

  /** Clean what a killed predecessor left, then listen for nbdfuse's connections. */
  async start(): Promise<void> {
    mkdirSync(join(this.dir, 'fuse'), { recursive: true, mode: 0o700 });
    await this.removeLeftovers();
    this.server = new NbdServer(this.pool, { log: (m) => this.log(m) });
    await this.server.listen({ path: this.socket });
  }

  private async removeLeftovers(): Promise<void> {
    const fuse = join(this.dir, 'fuse');
    for (const name of readdirSync(fuse)) {
      const d = join(fuse, name);
      const mnt = join(d, 'mnt');
      this.log(`removing the export ${name} left by an earlier run`);
      if (mountsUnder(mnt).length > 0) await run('fusermount3', ['-u', '-z', mnt]);
      const pidFile = join(d, 'pid');
      const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : NaN;
      if (Number.isInteger(pid) && pid > 1) {
        let cmd = '';
        try {
          cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        } catch {
          /* gone */
        }
        if (cmd.includes('nbdfuse') && cmd.includes(mnt)) {
          try {
            process.kill(pid, 'SIGTERM');
          } catch {
            /* gone meanwhile */
          }
        }
      }
      this.removeDir(d);
    }
  }

  /** Remove an export's directory unless something is still mounted in it. */
  private removeDir(d: string): void {
    if (mountsUnder(d).length > 0) {
      this.log(`leaving ${d}: still a mount point`);
      return;
    }
    try {
      if (existsSync(join(d, 'pid'))) unlinkSync(join(d, 'pid'));
      if (existsSync(join(d, 'mnt'))) rmdirSync(join(d, 'mnt'));
      rmdirSync(d);
    } catch (e) {
      this.log(`could not remove ${d}: ${(e as Error).message}`);
    }
  }

  /** Run fn after every earlier operation on the same volume. */
  private serial<T>(volume: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(volume) ?? Promise.resolve();
    const p = prev.then(fn, fn);
    const tail = p.catch(() => undefined);
    this.queues.set(volume, tail);
    void tail.then(() => {
      if (this.queues.get(volume) === tail) this.queues.delete(volume);
    });
    return p;
  }

  has(volume: string): boolean {
    return this.live.has(volume);
  }

  /** Exported volumes. */
  list(): { volume: string; file: string; readOnly: boolean; pid: number | undefined }[] {
    return [...this.live.values()].map((e) => ({ volume: e.volume, file: e.file, readOnly: e.readOnly, pid: e.child.pid }));
  }

  /** The file showing the volume (exported now if it is not yet). */
  ensure(volume: string, readOnly: boolean): Promise<string> {
    return this.serial(volume, async () => {
      const have = this.live.get(volume);
      if (have && !exited(have.child)) return have.file;
      if (have) {
        this.live.delete(volume);
        await this.unmountAndStop(have, true);
      }
      return (await this.open(volume, readOnly)).file;
    });
  }

  private async open(volume: string, readOnly: boolean): Promise<Export> {
    if (!this.server) throw new ThinpoolError('ECLOSED', 'exports are not started');
    const dir = join(this.dir, 'fuse', `${volume}.${process.pid}-${++this.seq}`);
    const mnt = join(dir, 'mnt');
    mkdirSync(mnt, { recursive: true });
    const pidFile = join(dir, 'pid');
    const uri = `nbd+unix:///${encodeURIComponent(volume)}?socket=${this.socket}`;
    const child = spawn('nbdfuse', [...(readOnly ? ['-r'] : []), '-P', pidFile, mnt, uri], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const e: Export = { volume, dir, mnt, file: join(mnt, 'nbd'), readOnly, child };
    let spawnError: Error | null = null;
    child.on('error', (x) => {
      spawnError = x;
    });
    const deadline = Date.now() + 15000;
    while (!(existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '')) {
      if (spawnError || exited(child) || Date.now() > deadline) {
        await this.unmountAndStop(e, true);
        const why = spawnError ? (spawnError as Error).message : exited(child) ? `exited: ${err.trim()}` : 'did not start within 15 s';
        throw new ThinpoolError(
          'EIO',
          `nbdfuse for volume ${volume} failed (${why}); it comes with Debian package libnbd-bin and needs /dev/fuse`,
        );
      }
      await sleep(5);
    }
    this.live.set(volume, e);
    return e;
  }

  /** Is a loop device backed by this volume's file? */
  inUse(volume: string): boolean {
    const e = this.live.get(volume);
    return e !== undefined && loopsBacking([e.file]).size > 0;
  }

  /** Wait up to ms for the loop devices on this volume's file to go; true when none is left. */
  async waitReleased(volume: string, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (this.inUse(volume)) {
      if (Date.now() >= deadline) return false;
      await sleep(20);
    }
    return true;
  }

  /**
   * Write out every filesystem's changes (`sync`, in a child: the writes come back through this process's NBD
   * server, so its event loop must stay free). Used when a filesystem on an export outlives its unmount (a copy
   * of the mount in another mount namespace keeps it alive, unflushed): afterwards the volume holds what the
   * mount shows (ext4's journal included).
   */
  async syncFilesystems(): Promise<void> {
    const r = await run('sync', [], 120000);
    if (r.code !== 0) this.log(`sync failed (${r.code}): ${r.err}`);
  }

  /**
   * Stop exporting a volume. Waits (up to releaseTimeoutMs) for loop devices on its file to go; if one stays:
   * without force, EBUSY (nothing changed); with force, a lazy unmount.
   */
  teardown(volume: string, opts: { force?: boolean; waitMs?: number } = {}): Promise<void> {
    return this.serial(volume, async () => {
      const e = this.live.get(volume);
      if (!e) return;
      await this.waitReleased(volume, opts.waitMs ?? this.opts.releaseTimeoutMs ?? 10000);
      const loops = loopsBacking([e.file]).get(e.file) ?? [];
      if (loops.length > 0 && !opts.force) {
        throw new ThinpoolError('EBUSY', `volume ${volume} is still in use by /dev/${loops.join(', /dev/')}: unmount the snapshot first`);
      }
      this.live.delete(volume);
      await this.unmountAndStop(e, loops.length > 0);
    });
  }

  private async unmountAndStop(e: Export, lazy: boolean): Promise<void> {
    for (const note of await stopNbdfuse(e.child, e.mnt, { lazy, retryMs: 2000 })) this.log(note);
    this.removeDir(e.dir);
  }

  /** Tear every export down (forcefully) and stop the NBD server (which commits the pool). */
  async close(): Promise<void> {
    await Promise.all(
      [...this.live.keys()].map((v) =>
        this.teardown(v, { force: true, waitMs: 2000 }).catch((x) => this.log(`teardown of ${v}: ${(x as Error).message}`)),
      ),
    );
    if (this.server) await this.server.close();
    this.server = null;
    try {
      if (existsSync(this.socket)) unlinkSync(this.socket);
    } catch {
      /* already gone */
    }
  }
}
