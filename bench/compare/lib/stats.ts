/** Timing and summary statistics: medians of repeated runs with their spread. */
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

export function summarize(runs: readonly number[]): Summary {
  const s = [...runs].sort((a, b) => a - b);
  const n = s.length;
  const median = n === 0 ? NaN : n % 2 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
  return { median, min: s[0] ?? NaN, max: s[n - 1] ?? NaN, runs: [...runs] };
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
