/**
 * Helpers shared by the rados benches (speed.ts, depth.ts); not a bench itself (the runner skips `_` files).
 *   - `rbdBench`: `rbd bench` 4 KiB random I/O on an image, at the rate `rbd bench` prints (its own clock, without
 *     the tool's start-up), with librbd's cache as configured (on by default) or off (`--rbd_cache=false`);
 *   - `fio`: fio's nbd engine against an NBD URI, at the rate fio reports (without connecting);
 *   - `rbdBenchCpu`: the same, with the CPU time the `rbd` process used;
 *   - `serve`: `thinpool serve POOL [NAMES...]` in its own process (as users run it) on a Unix socket, with its
 *     pid (`processCpuSeconds` reads what it has used);
 *   - `qemuNbdRbd`: `qemu-nbd` serving an RBD image through librbd (the same NBD hop as `thinpool serve`);
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
export { recordRun } from '../figures-run.js';

export const execFileP = promisify(execFile);
export const MiB = 1024 * 1024;
export const BIN = fileURLToPath(new URL('../../../bin/thinpool.js', import.meta.url));

export type Kind = 'read' | 'write';

export function argValue(name: string): string | undefined {
  const a = process.argv.find((x) => x.startsWith(`${name}=`));
  return a === undefined ? undefined : a.slice(name.length + 1);
}

export { median, processCpuSeconds } from '../compare/lib/stats.js';

/** `rbd bench`'s own rate: its last line reads `elapsed: S ops: N ops/sec: R bytes/sec: ...`. */
export async function rbdBench(conf: string, image: string, kind: Kind, threads: number, ops: number, cache = true): Promise<number> {
  return (await rbdBenchCpu(conf, image, kind, threads, ops, cache)).rate;
}

/**
 * rbdBench, with the CPU time (user + system, seconds) the `rbd` process used in all: start-up and connection
 * included (subtract a run of one operation per thread to leave the requests' share). Measured by the shell's
 * `times` builtin after the command (the children's CPU times, 10 ms resolution).
 */
export async function rbdBenchCpu(
  conf: string,
  image: string,
  kind: Kind,
  threads: number,
  ops: number,
  cache = true,
): Promise<{ rate: number; cpuSeconds: number }> {
  const args = ['-c', conf, 'bench', '--io-type', kind, '--io-size', '4K', '--io-threads', String(threads)];
  if (!cache) args.push('--rbd_cache=false'); // every write acknowledged by the cluster before it completes
  args.push('--io-pattern', 'rand', '--io-total', String(ops * 4096), image);
  const { stdout } = await execFileP('bash', ['-c', 'rbd "$@" && times', 'bash', ...args], { maxBuffer: 16 * MiB });
  const m = /ops\/sec:\s*([\d.]+|inf)/.exec(stdout.slice(stdout.lastIndexOf('elapsed:')));
  if (m === null) throw new Error(`rbd bench printed no rate: ${stdout.slice(-300)}`);
  // `times` prints the shell's user and system times, then its children's: "0m1.230s 0m0.450s".
  const t = /(\d+)m([\d.]+)s (\d+)m([\d.]+)s\s*$/.exec(stdout.trimEnd());
  if (t === null) throw new Error(`no CPU times after rbd bench: ${stdout.slice(-200)}`);
  // One request may finish within rbd's clock tick: it prints `inf`.
  return {
    rate: m[1] === 'inf' ? Number.POSITIVE_INFINITY : Number(m[1]),
    cpuSeconds: Number(t[1]) * 60 + Number(t[2]) + Number(t[3]) * 60 + Number(t[4]),
  };
}

/**
 * Write an image in full (4 MiB sequential writes from one thread: with `rbd bench`'s default 16 threads a
 * sequential fill writes only the first object) and check with `rbd du` that every byte is allocated, so reads
 * find data instead of objects librbd's object map answers as zeros without asking an OSD.
 */
export async function rbdFill(conf: string, image: string, size: number): Promise<void> {
  const args = ['-c', conf, 'bench', '--io-type', 'write', '--io-size', '4M', '--io-threads', '1', '--io-pattern', 'seq'];
  await execFileP('rbd', [...args, '--io-total', String(size), image]);
  const { stdout } = await execFileP('rbd', ['-c', conf, 'du', '--format', 'json', image]);
  const used = (JSON.parse(stdout) as { images: Array<{ used_size: number }> }).images[0]?.used_size;
  if (used !== size) throw new Error(`image ${image}: ${used} of ${size} bytes written after the fill`);
}

/** fio (nbd engine) 4 KiB random I/O over the whole export of `size` bytes. */
export async function fio(uri: string, kind: Kind, depth: number, size: number, ops: number): Promise<number> {
  return (await fioCpu(uri, kind, depth, size, ops)).rate;
}
/**
 * fio's rate and its own CPU per request (its job's user + system time, as fio reports it: the NBD client's
 * side of the hop, which `rbd bench` does not have).
 */
export async function fioCpu(uri: string, kind: Kind, depth: number, size: number, ops: number): Promise<{ rate: number; cpuUs: number }> {
  const { stdout } = await execFileP(
    'fio',
    [
      '--name=t',
      '--ioengine=nbd',
      `--uri=${uri}`,
      `--rw=rand${kind}`,
      '--bs=4k',
      `--iodepth=${depth}`,
      `--size=${size}`,
      `--number_ios=${ops}`,
      '--norandommap',
      '--output-format=json',
    ],
    { maxBuffer: 16 * MiB },
  );
  const job = JSON.parse(stdout.slice(stdout.indexOf('{'))).jobs[0];
  const done = job[kind].total_ios as number;
  // usr_cpu and sys_cpu are percentages of the job's run time (ms).
  const cpuUs = (((job.usr_cpu as number) + (job.sys_cpu as number)) / 100) * (job.job_runtime as number) * 1000;
  return { rate: job[kind].iops as number, cpuUs: cpuUs / done };
}

/**
 * `thinpool serve POOL [NAMES...]` in its own process, listening on a Unix socket in `dir` (as `qemuNbdRbd` does:
 * the same hop on both sides, and what a client on the same machine would use); resolves the URI of each export
 * (`exportUri(NAME)`), the server's pid and a stop function (SIGTERM, then waits for the exit).
 */
export async function serve(
  pool: string,
  conf: string | undefined,
  names: string[],
  dir: string,
  extra: string[] = [],
): Promise<{ exportUri(name: string): string; pid: number; stop(): Promise<void> }> {
  const sock = join(dir, `serve-${++served}.sock`);
  const args = [BIN, 'serve', pool, ...names, '--socket', sock, ...(conf ? ['--ceph-conf', conf] : []), ...extra];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`serve did not start: ${out}`)), 60_000);
    child.stdout!.on('data', (d) => {
      out += d;
      if (/nbd\+unix:/.test(out)) {
        clearTimeout(t);
        resolve();
      }
    });
    child.on('exit', () => reject(new Error(`serve exited: ${out}`)));
  });
  return {
    exportUri: (name) => `nbd+unix:///${name}?socket=${sock}`,
    pid: child.pid!,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
let served = 0;

/**
 * `qemu-nbd` serving the RBD image `image` (POOL/NAME) through librbd (qemu's rbd driver, Debian package
 * qemu-block-extra) on a Unix socket in `dir`: what users run to reach an RBD image over NBD, the same hop as
 * `thinpool serve`. `--cache=none` turns librbd's cache off (every write acknowledged by the cluster, as
 * thinpool's default). Resolves its URI (no export name), pid and stop, or a reason when qemu cannot open rbd:
 * images here.
 */
export async function qemuNbdRbd(
  conf: string,
  image: string,
  dir: string,
): Promise<{ uri: string; pid: number; stop(): Promise<void> } | { unavailable: string }> {
  const sock = join(dir, 'qemu-nbd.sock');
  rmSync(sock, { force: true });
  const child = spawn('qemu-nbd', ['-t', '-f', 'raw', '--cache=none', '-k', sock, `rbd:${image}:conf=${conf}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  let err = '';
  child.stderr!.on('data', (d) => {
    err += d;
  });
  child.on('error', (e) => {
    err += e.message;
  });
  const deadline = Date.now() + 30_000;
  while (!existsSync(sock)) {
    if (child.exitCode !== null || err.includes('ENOENT')) {
      return {
        unavailable: /rbd/.test(err)
          ? `qemu-nbd cannot open rbd: images (Debian package qemu-block-extra): ${err.trim()}`
          : `qemu-nbd: ${err.trim() || 'not installed (Debian package qemu-utils)'}`,
      };
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      return { unavailable: `qemu-nbd did not listen within 30 s: ${err.trim()}` };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  // qemu-nbd makes its socket before it opens the image: one that cannot open rbd: images exits just after.
  await new Promise((r) => setTimeout(r, 500));
  if (child.exitCode !== null)
    return {
      unavailable: /rbd/.test(err)
        ? `qemu-nbd cannot open rbd: images (Debian package qemu-block-extra): ${err.trim()}`
        : `qemu-nbd exited: ${err.trim()}`,
    };
  return {
    uri: `nbd+unix:///?socket=${sock}`,
    pid: child.pid!,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Print rows as a table: the first column left-aligned, the others right-aligned. */
export function printTable(head: string[], rows: string[][]): void {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  for (const r of [head, ...rows]) console.log(r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  '));
}
