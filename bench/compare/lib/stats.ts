/** Timing and summary statistics: medians of repeated runs with their spread, and a process's CPU time. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

export function now(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Milliseconds taken by fn. */
export function timeMs(fn: () => void): number {
  const t = now();
  fn();
  return now() - t;
}

export interface Summary {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

/** The median (the mean of the two middle values for an even count; NaN for none). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

export function summarize(runs: readonly number[]): Summary {
  const s = [...runs].sort((a, b) => a - b);
  return { median: median(runs), min: s[0] ?? NaN, max: s[s.length - 1] ?? NaN, runs: [...runs] };
}

/** Operations per second of fn, run in batches until minMs have passed. */
export function opsPerSec(fn: (i: number) => void, minMs: number, batch = 1000): number {
  let i = 0;
  const t = now();
  let el = 0;
  do {
    for (let k = 0; k < batch; k++) fn(i++);
    el = now() - t;
  } while (el < minMs);
  return (i / el) * 1000;
}

/** A small deterministic PRNG (mulberry32), so every system sees the same offsets. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Clock ticks per second of /proc's CPU times (asked once, when first needed). */
let clockTicks = 0;

/** CPU time (user + system, seconds) a running process has used so far, from /proc/PID/stat. */
export function processCpuSeconds(pid: number): number {
  clockTicks ||= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / clockTicks;
}
