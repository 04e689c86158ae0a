/** qcow2 backing chains through qemu-img and qemu-io (qemu-utils). */
import { execFileSync, spawnSync } from 'node:child_process';

export function qemuUnavailable(): string | undefined {
  for (const tool of ['qemu-img', 'qemu-io']) {
    const r = spawnSync(tool, ['--version'], { encoding: 'utf8' });
    if (r.error || r.status !== 0) return `${tool} not installed (qemu-utils)`;
  }
  return undefined;
}

export interface CreateOptions {
  backing?: string;
  /** Don't open the backing chain (qemu-img create -u); needs an explicit size. */
  unsafe?: boolean;
  /** 'metadata': map every cluster (L2 tables written, data left sparse). */
  prealloc?: 'metadata';
}

export function qcowCreate(path: string, size: number | undefined, opts: CreateOptions = {}): void {
  const args = ['create', '-q', '-f', 'qcow2'];
  if (opts.backing) args.push('-b', opts.backing, '-F', 'qcow2');
  if (opts.unsafe) args.push('-u');
  if (opts.prealloc) args.push('-o', `preallocation=${opts.prealloc}`);
  args.push(path);
  if (size !== undefined) args.push(String(size));
  execFileSync('qemu-img', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Convert a raw file into a qcow2 image (the base layer). */
export function qcowFromRaw(raw: string, path: string): void {
  execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, path]);
}

/**
 * Run qemu-io commands on an image in one process; returns the seconds of each command as qemu-io reports
 * them (ops / ops-per-second, which keeps sub-millisecond precision).
 */
export function qemuIo(image: string, commands: readonly string[]): number[] {
  // writeback cache like every other system here (qemu-io's default, writethrough, flushes after each write)
  const args = ['-f', 'qcow2', '-t', 'writeback'];
  for (const c of commands) args.push('-c', c);
  args.push(image);
  const out = execFileSync('qemu-io', args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const times: number[] = [];
  for (const m of out.matchAll(/(\d+) ops; [\d:.]+ sec \([^)]* and ([\d.]+) ops\/sec\)/g)) {
    times.push(Number(m[1]) / Number(m[2]));
  }
  return times;
}

/** qemu-img bench: count requests of size bytes, queue depth 1, offsets advancing by step (wrapping). Ops per second. */
export function qemuBench(image: string, count: number, size: number, step: number, write = false): number {
  const args = [
    'bench',
    '-f',
    'qcow2',
    '-c',
    String(count),
    '-d',
    '1',
    '-s',
    String(size),
    '-S',
    String(step),
    '-t',
    'writeback',
    '-i',
    'threads',
  ];
  if (write) args.push('-w');
  args.push(image);
  const out = execFileSync('qemu-img', args, { encoding: 'utf8' });
  const m = /Run completed in ([\d.]+) seconds/.exec(out);
  if (!m) throw new Error(`unexpected qemu-img bench output: ${out}`);
  return count / Number(m[1]);
}
