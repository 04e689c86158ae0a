/**
 * containerd with two storages in one run: its built-in `overlayfs` snapshotter and `thinpool snapshotter serve`
 * as proxy plugin `thinpool`. Everything is the bench's own: one containerd (config, root, state and sockets
 * under the scenario's work directory, CRI disabled), one snapshotter process on a pool in the same directory,
 * both started here and stopped by pid (containerd first, then the snapshotter, which tears down its exports);
 * nothing of the machine's containerd is touched. Also: the OCI image archive the scenario imports (built with
 * umoci from generated files and the host's /usr/share/zoneinfo), and timing inside a container through two
 * FIFOs in a bind-mounted directory (the container prints a marker after each phase; the host reads them).
 * Synchronous throughout, like every system of the comparison: the services are separate processes.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  writeSync,
  constants as fsc,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { trackCloser } from '../lib/cleanup.js';
import { containerdConfigToml } from '../../../src/snapshotter/containerd-config.js';
import { readSuperblock } from '../../../src/thin/superblock.js';
import { now } from '../lib/stats.js';

const MiB = 1024 * 1024;

export function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** bin/thinpool.js of this checkout or package (this file runs from bench/ or dist/bench/). */
function thinpoolBin(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const b = join(d, 'bin', 'thinpool.js');
    if (existsSync(b) && existsSync(join(d, 'package.json'))) return b;
    d = dirname(d);
  }
  throw new Error('bin/thinpool.js not found above the bench');
}

function onPath(tool: string): boolean {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/local/sbin'];
  return dirs.some((d) => d !== '' && existsSync(join(d, tool)));
}

/** Why containerd with both snapshotters cannot run here (tools named with their Debian package), or undefined. */
export function containerdUnavailable(overlay: string | undefined): string | undefined {
  if (process.platform !== 'linux') return `not Linux (${process.platform})`;
  const tools: [string, string][] = [
    ['containerd', 'containerd'],
    ['ctr', 'containerd'],
    ['runc', 'runc'],
    ['umoci', 'umoci'],
    ['busybox', 'busybox-static'],
    ['nbdfuse', 'libnbd-bin'],
    ['fusermount3', 'fuse3'],
    ['mkfs.ext4', 'e2fsprogs'],
    ['debugfs', 'e2fsprogs'],
    ['losetup', 'mount'],
  ];
  for (const [t, p] of tools) if (!onPath(t)) return `${t} not installed (Debian package ${p})`;
  if (process.getuid?.() !== 0) return 'needs root (containers, loop devices and mounts)';
  if (!existsSync('/dev/fuse')) return 'no /dev/fuse (FUSE not available here)';
  if (!existsSync('/dev/loop-control')) return 'no /dev/loop-control (no loop devices here)';
  if (overlay) return `kernel overlayfs: ${overlay}`;
  return undefined;
}

export interface Out {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runSync(cmd: string, args: string[], timeoutMs = 300_000): Out {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * MiB });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function runOk(cmd: string, args: string[], timeoutMs = 300_000): string {
  const r = runSync(cmd, args, timeoutMs);
  if (r.code !== 0)
    throw new Error(`${cmd} ${args.join(' ').slice(0, 300)} exited ${r.code}: ${r.stdout.slice(-500)}${r.stderr.slice(-1500)}`);
  return r.stdout;
}

/** Is the process gone or a zombie (exited, not yet reaped: our event loop is busy)? */
function exited(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] === 'Z';
  } catch {
    return true;
  }
}

/** SIGTERM, wait (bounded), then SIGKILL. */
function stopPid(pid: number, timeoutMs: number): void {
  if (exited(pid)) return;
  process.kill(pid, 'SIGTERM');
  const deadline = now() + timeoutMs;
  while (!exited(pid) && now() < deadline) sleepMs(20);
  if (!exited(pid)) {
    process.kill(pid, 'SIGKILL');
    while (!exited(pid)) sleepMs(20);
  }
}

export interface ImageSpec {
  /** The big file every container inherits (/data/big.bin), random bytes. */
  bigBytes: number;
  /** Further random data in 1 MiB files (/data/extra/N.bin), a layer of its own. */
  extraBytes: number;
  /** Small generated files (/data/small/dNN/fNNNN, 1-8 KiB each). */
  smallFiles: number;
}

export interface BuiltImage {
  archive: string;
  /** Bytes of regular files in the image (what "1% of the image" is taken of). */
  bytes: number;
  layers: number;
  files: number;
}

/**
 * Three layers: (1) busybox-static, the host's /usr/share/zoneinfo and `smallFiles` generated small files;
 * (2) /data/big.bin; (3) /data/extra/*.bin. Random content (a fixed seed is not needed: nothing compares bytes).
 */
export function buildImage(dir: string, spec: ImageSpec): BuiltImage {
  const layout = join(dir, 'oci');
  const bundle = join(dir, 'bundle');
  runOk('umoci', ['init', '--layout', layout]);
  runOk('umoci', ['new', '--image', `${layout}:img`]);
  runOk('umoci', ['unpack', '--image', `${layout}:img`, bundle]);
  const r = join(bundle, 'rootfs');
  let bytes = 0;
  let files = 0;
  const put = (p: string, n: number) => {
    const fd = openSync(p, 'w');
    const buf = Buffer.alloc(Math.min(n, 4 * MiB));
    for (let off = 0; off < n; off += buf.length) {
      const len = Math.min(buf.length, n - off);
      randomFillSync(buf, 0, len);
      writeSync(fd, buf, 0, len);
    }
    closeSync(fd);
    bytes += n;
    files++;
  };
  for (const d of ['bin', 'data/small', 'usr/share', 'tmp']) mkdirSync(join(r, d), { recursive: true });
  copyFileSync('/bin/busybox', join(r, 'bin', 'busybox'));
  bytes += readFileSync('/bin/busybox').length;
  for (const a of ['sh', 'cat', 'cp', 'dd', 'find', 'sync', 'head', 'seq', 'true', 'sleep', 'echo'])
    symlinkSync('busybox', join(r, 'bin', a));
  if (existsSync('/usr/share/zoneinfo')) {
    runOk('cp', ['-a', '/usr/share/zoneinfo', join(r, 'usr', 'share', 'zoneinfo')]);
    const du = runSync('du', ['-sb', join(r, 'usr', 'share', 'zoneinfo')]);
    bytes += Number(du.stdout.split(/\s/)[0] ?? 0);
  }
  for (let i = 0; i < spec.smallFiles; i++) {
    const d = join(r, 'data', 'small', `d${String(Math.floor(i / 100)).padStart(2, '0')}`);
    if (i % 100 === 0) mkdirSync(d, { recursive: true });
    put(join(d, `f${String(i).padStart(4, '0')}`), 1024 * (1 + (i % 8)));
  }
  runOk('umoci', ['repack', '--refresh-bundle', '--image', `${layout}:img`, bundle]);
  put(join(r, 'data', 'big.bin'), spec.bigBytes);
  runOk('umoci', ['repack', '--refresh-bundle', '--image', `${layout}:img`, bundle]);
  mkdirSync(join(r, 'data', 'extra'));
  for (let i = 0; i * MiB < spec.extraBytes; i++) put(join(r, 'data', 'extra', `${i}.bin`), Math.min(MiB, spec.extraBytes - i * MiB));
  runOk('umoci', ['repack', '--refresh-bundle', '--image', `${layout}:img`, bundle]);
  const archive = join(dir, 'img.tar');
  runOk('tar', ['cf', archive, '-C', layout, '.']);
  rmSync(bundle, { recursive: true, force: true });
  rmSync(layout, { recursive: true, force: true });
  return { archive, bytes, layers: 3, files };
}

export const IMAGE = 'docker.io/library/tpbench:img';
export const SNAPSHOTTERS = { 'ctrd-overlayfs': 'overlayfs', 'ctrd-thinpool': 'thinpool' } as const;
export type CtrdSystem = keyof typeof SNAPSHOTTERS;

/** containerd + the thinpool snapshotter, started under dir; stop() ends both by pid. */
export class ContainerdRig {
  readonly address: string;
  readonly pool: string;
  readonly snapSock: string;
  readonly snapPid: number;
  readonly ctrdPid: number;
  /** Where the overlayfs snapshotter keeps its snapshots (one directory each). */
  readonly overlayRoot: string;
  private untrack: () => void;
  private stopped = false;

  constructor(
    readonly dir: string,
    fsSize: string,
    poolSize: string,
  ) {
    mkdirSync(dir, { recursive: true });
    this.pool = join(dir, 'pool');
    this.snapSock = join(dir, 'snap.sock');
    this.address = join(dir, 'c.sock');
    this.overlayRoot = join(dir, 'root', 'io.containerd.snapshotter.v1.overlayfs', 'snapshots');
    const bin = thinpoolBin();
    runOk(process.execPath, [bin, 'init', this.pool, '--size', poolSize]);
    const snapLog = openSync(join(dir, 'snapshotter.log'), 'a');
    const snap = spawn(process.execPath, [bin, 'snapshotter', 'serve', this.pool, '--address', this.snapSock, '--fs-size', fsSize], {
      stdio: ['ignore', snapLog, snapLog],
    });
    closeSync(snapLog);
    this.snapPid = snap.pid!;
    this.ctrdPid = 0;
    this.untrack = trackCloser(() => this.stop());
    const deadline = now() + 60_000;
    while (!this.log('snapshotter.log').includes('serving containerd snapshots')) {
      if (exited(this.snapPid)) throw new Error(`the snapshotter exited: ${this.log('snapshotter.log').slice(-2000)}`);
      if (now() > deadline) throw new Error(`the snapshotter did not start: ${this.log('snapshotter.log').slice(-2000)}`);
      sleepMs(50);
    }
    const config = join(dir, 'config.toml');
    writeFileSync(
      config,
      containerdConfigToml(dir, this.snapSock, [
        // A deletion schedules a collection at once: by default the next one waits 50x the last one's duration
        // (pause_threshold 0.02), so a slow removal postpones every later one.
        '[plugins."io.containerd.gc.v1.scheduler"]',
        '  deletion_threshold = 1',
        '  schedule_delay = "0s"',
      ]),
    );
    const log = openSync(join(dir, 'containerd.log'), 'a');
    const c = spawn('containerd', ['--config', config], { stdio: ['ignore', log, log] });
    closeSync(log);
    this.ctrdPid = c.pid!;
    for (;;) {
      if (this.ctr(['snapshots', '--snapshotter', 'thinpool', 'ls'], 10_000).code === 0) break;
      if (exited(this.ctrdPid)) throw new Error(`containerd exited: ${this.log('containerd.log').slice(-2000)}`);
      if (now() > deadline) throw new Error(`containerd not ready: ${this.log('containerd.log').slice(-2000)}`);
      sleepMs(100);
    }
  }

  log(name: string): string {
    try {
      return readFileSync(join(this.dir, name), 'utf8');
    } catch {
      return '';
    }
  }

  ctr(args: string[], timeoutMs = 300_000): Out {
    return runSync('ctr', ['--address', this.address, '--namespace', 'bench', ...args], timeoutMs);
  }

  ctrOk(args: string[], timeoutMs = 300_000): string {
    const r = this.ctr(args, timeoutMs);
    if (r.code !== 0)
      throw new Error(`ctr ${args.join(' ').slice(0, 300)} exited ${r.code}: ${r.stdout.slice(-500)}${r.stderr.slice(-1500)}`);
    return r.stdout;
  }

  /** Snapshot keys containerd lists for a snapshotter. */
  snapshots(snapshotter: string): string[] {
    return this.ctrOk(['snapshots', '--snapshotter', snapshotter, 'ls'])
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.split(/\s+/)[0]!)
      .filter(Boolean);
  }

  /** Directories of the overlayfs snapshotter (one per snapshot). */
  overlayDirs(): number {
    return existsSync(this.overlayRoot) ? readdirSync(this.overlayRoot).length : 0;
  }

  /**
   * Data bytes in use in the pool as the snapshotter last committed them: nr_allocated of the data space map in
   * the superblock (the pool is open in the snapshotter, so `thinpool status` would refuse). Retried if the read
   * raced a commit (checksum mismatch).
   */
  poolUsedBytes(): number {
    const fd = openSync(join(this.pool, 'metadata'), 'r');
    try {
      for (let i = 0; ; i++) {
        const b = Buffer.alloc(4096);
        readSync(fd, b, 0, 4096, 0);
        try {
          const sb = readSuperblock(b);
          return sb.dataSm.nrAllocated * sb.dataBlockSectors * 512;
        } catch (e) {
          if (i >= 20) throw e;
          sleepMs(5);
        }
      }
    } finally {
      closeSync(fd);
    }
  }

  /** The snapshotter's exports: one nbdfuse mount point each under its state directory's fuse/. */
  exportEntries(): number {
    const d = `${this.snapSock}.d/fuse`;
    return existsSync(d) ? readdirSync(d).length : 0;
  }

  /** write_bytes of the snapshotter process (what it sent to storage: data and metadata writes). */
  snapshotterWrites(): number {
    const io = readFileSync(`/proc/${this.snapPid}/io`, 'utf8');
    return Number(/write_bytes:\s*(\d+)/.exec(io)?.[1] ?? NaN) - Number(/cancelled_write_bytes:\s*(\d+)/.exec(io)?.[1] ?? 0);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.untrack();
    if (this.ctrdPid && !exited(this.ctrdPid)) {
      // What a failed run may have left: tasks (their shims would outlive containerd) and containers.
      const ids = (what: string) => this.ctr([what, 'ls', '-q'], 30_000).stdout.split('\n').filter(Boolean);
      for (const t of ids('tasks')) this.ctr(['tasks', 'rm', '-f', t], 30_000);
      for (const c of ids('containers')) this.ctr(['containers', 'rm', c], 30_000);
      stopPid(this.ctrdPid, 30_000);
    }
    stopPid(this.snapPid, 60_000);
  }
}

/**
 * Timing inside a container: DIR holds FIFOs `in` and `out` (bind-mounted at /x). The container's script writes
 * `r` to out when it runs, reads a line from in, then writes one marker per phase. start() returns when `r` came;
 * go() sends the line and returns the host's times (ms) at which each following marker arrived, from go().
 */
export class Markers {
  private readonly outFd: number;
  private readonly inFd: number;
  private buf = '';

  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
    for (const f of ['in', 'out']) {
      rmSync(join(dir, f), { force: true });
      runOk('mkfifo', [join(dir, f)]);
    }
    // Non-blocking: neither open waits for the container (O_RDWR on a FIFO never blocks on Linux).
    this.outFd = openSync(join(dir, 'out'), fsc.O_RDONLY | fsc.O_NONBLOCK);
    this.inFd = openSync(join(dir, 'in'), fsc.O_RDWR | fsc.O_NONBLOCK);
  }

  /** The bind mount for `ctr run --mount`. */
  get mount(): string {
    return `type=bind,src=${this.dir},dst=/x,options=rbind:rw`;
  }

  private next(timeoutMs: number): string {
    const deadline = now() + timeoutMs;
    const b = Buffer.alloc(64);
    for (;;) {
      const nl = this.buf.indexOf('\n');
      if (nl >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        return line;
      }
      let n = 0;
      try {
        n = readSync(this.outFd, b, 0, b.length, null);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      }
      if (n > 0) {
        this.buf += b.toString('utf8', 0, n);
        continue;
      }
      if (now() > deadline) throw new Error(`no marker from the container within ${timeoutMs} ms`);
      sleepMs(0.2);
    }
  }

  /** Wait for the container's `r`. */
  ready(timeoutMs = 120_000): void {
    const m = this.next(timeoutMs);
    if (m !== 'r') throw new Error(`expected the marker r, got ${JSON.stringify(m)}`);
  }

  /** Send go, collect `phases` markers; returns each marker's arrival time after go (ms). */
  go(phases: string[], timeoutMs = 300_000): number[] {
    const t0 = now();
    writeSync(this.inFd, 'g\n');
    return phases.map((p) => {
      const m = this.next(timeoutMs);
      if (m !== p) throw new Error(`expected the marker ${p}, got ${JSON.stringify(m)}`);
      return now() - t0;
    });
  }

  close(): void {
    closeSync(this.outFd);
    closeSync(this.inFd);
  }
}
