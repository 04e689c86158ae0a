/**
 * Helpers shared by the engine benchmarks (files starting with `_` are not run by bench/run.ts).
 *
 * - `interleaved`: plain timing loops for comparisons that must be fair on a noisy 2-core machine: the cases
 *   run in alternating rounds (A B C, B C A, C A B, ...), each round a fixed number of operations after a warm-up, and
 *   the figure is the median round. Ratios come from medians measured in the same run.
 * - `bennyRun`: a benny suite without its ANSI progress output; returns ops/s per case.
 * - `table`: a plain Markdown table (what the docs copy).
 * - `recordFigures`: with THINPOOL_FIGURES_DIR set, a bench's raw figures appended to a JSON there (every run kept),
 *   which scripts/render-figures.mjs renders into the docs (scripts/figures-engine.mjs: the goals of issue 2).
 */
import { add, configure, suite } from 'benny';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { commitMeasured, dateMeasured } from '../figures-run.js';

export const args = process.argv.slice(2);
export const FULL = args.includes('--full');
/** --quick: smaller sizes (smoke run of the benchmarks themselves). */
export const QUICK = args.includes('--quick');

export const KiB = 1024;
export const MiB = 1024 * 1024;
export const BLOCK = 64 * KiB;

import { median } from '../compare/lib/stats.js';

export { median };

export function now(): number {
  return performance.now();
}

const wallNow = (): number => performance.now();

/** User + system CPU time of this process, in ms. */
export function cpuNow(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** Deterministic PRNG (mulberry32) so both sides of a comparison see the same offsets. */
export { rng } from '../compare/lib/stats.js';

export interface Case {
  name: string;
  /** Runs operations [from, from + n) of the case; returns when done. Sync or async. */
  run(from: number, n: number): void | Promise<void>;
  /** Operations per round for this case (default: perRound), for much slower reference cases. */
  perRound?: number;
}

export interface CaseResult {
  name: string;
  /** Median ns per operation over the rounds. */
  nsPerOp: number;
  opsPerSec: number;
  /** Every round's ns/op (for spread). */
  rounds: number[];
}

/**
 * Alternate the cases round by round. Each round runs `perRound` operations; `warmup` rounds are discarded.
 * Operation indices keep increasing across rounds so a case walks through its whole offset list.
 */
export async function interleaved(
  cases: Case[],
  opts: { perRound: number; rounds: number; warmup?: number; clock?: 'wall' | 'cpu' },
): Promise<CaseResult[]> {
  const warm = opts.warmup ?? 2;
  // 'cpu': this process's user + system CPU time (process.cpuUsage) instead of the wall clock, for work that
  // never waits on a device (page-cache reads): on a shared machine the wall clock also counts the time spent
  // waiting for a core, which other processes decide.
  const now = opts.clock === 'cpu' ? cpuNow : wallNow;
  const per: number[][] = cases.map(() => []);
  const cursor = cases.map(() => 0);
  for (let r = 0; r < warm + opts.rounds; r++) {
    for (let j = 0; j < cases.length; j++) {
      const c = (j + r) % cases.length; // rotate the order each round: no case always runs first
      const n = cases[c].perRound ?? opts.perRound;
      const t0 = now();
      const p = cases[c].run(cursor[c], n);
      if (p) await p;
      const dt = now() - t0;
      cursor[c] += n;
      if (r >= warm) per[c].push((dt * 1e6) / n);
    }
  }
  return cases.map((c, i) => {
    const ns = median(per[i]);
    return { name: c.name, nsPerOp: ns, opsPerSec: 1e9 / ns, rounds: per[i] };
  });
}

/** Spread of a result: (max - min) / median of its rounds, as a percentage. */
export function spread(r: CaseResult): string {
  const s = [...r.rounds].sort((a, b) => a - b);
  return `±${(((s[s.length - 1] - s[0]) / 2 / r.nsPerOp) * 100).toFixed(0)}%`;
}

export interface BennyCase {
  name: string;
  fn: () => unknown;
}

/** Run a benny suite quietly; returns ops/s (and relative margin of error) per case, in order. */
export async function bennyRun(
  name: string,
  cases: BennyCase[],
  opts: { maxTime?: number; minSamples?: number } = {},
): Promise<Array<{ name: string; ops: number; rme: number }>> {
  const log = console.log;
  console.log = () => undefined; // benny prints "Running ... suite" even without cycle/complete
  try {
    const summary = await suite(
      name,
      configure({ cases: { maxTime: opts.maxTime ?? (QUICK ? 0.5 : 1.5), minSamples: opts.minSamples ?? 5, delay: 0.05 } }),
      ...cases.map((c) => add(c.name, c.fn)),
    );
    return summary.results.map((r) => ({ name: r.name, ops: r.ops, rme: r.details.relativeMarginOfError }));
  } finally {
    console.log = log;
  }
}

export function fmtOps(ops: number): string {
  if (ops >= 1e6) return `${(ops / 1e6).toFixed(2)} M/s`;
  if (ops >= 1e3) return `${(ops / 1e3).toFixed(1)} k/s`;
  return `${ops.toFixed(1)} /s`;
}

export function fmtNs(ns: number): string {
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(2)} µs`;
  return `${ns.toFixed(1)} ns`;
}

export function fmtMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 3 : 1)} ms`;
}

export function fmtBytes(b: number): string {
  if (b >= 1024 * MiB) return `${(b / 1024 / MiB).toFixed(2)} GiB`;
  if (b >= MiB) return `${(b / MiB).toFixed(1)} MiB`;
  return `${(b / KiB).toFixed(0)} KiB`;
}

/** Goal verdict for a ratio. */
export function verdict(ratio: number, goal: number, higherIsBetter = true): string {
  const ok = higherIsBetter ? ratio >= goal : ratio <= goal;
  return ok ? 'met' : 'MISSED';
}

/** Print a Markdown table with a title line. */
export function table(title: string, header: string[], rows: Array<Array<string | number>>): void {
  const cells = rows.map((r) => r.map(String));
  const w = header.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(w[i])).join(' | ')} |`;
  const out = [`\n### ${title}\n`, line(header), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...cells.map(line)];
  console.log(out.join('\n'));
}

export function note(s: string): void {
  console.log(s);
}

/** Peak resident set size of this process so far, bytes. */
export function peakRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

/** A fresh scratch directory under /tmp (or $THINPOOL_BENCH_DIR), removed at exit. */
export function scratchDir(name: string): string {
  const base = process.env.THINPOOL_BENCH_DIR ?? '/tmp/thinpool-bench';
  const dir = join(base, `${name}-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The 1-minute load average when the bench started (this module is loaded first). */
export const LOAD_AT_START = loadavg()[0];

/**
 * With THINPOOL_FIGURES_DIR set, append this run to $THINPOOL_FIGURES_DIR/`file` as the last of its `runs` (the
 * earlier runs are kept), stamped with the bench, the commit measured, the date, the CPU count, the load average
 * when the bench started and now, and its flags (a `--quick` run says so). Nothing without THINPOOL_FIGURES_DIR.
 */
export function recordFigures(file: string, bench: string, run: Record<string, unknown>): void {
  const dir = process.env.THINPOOL_FIGURES_DIR;
  if (dir === undefined || dir === '') return;
  const path = join(dir, file);
  const doc = existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : { bench, runs: [] };
  doc.runs.push({
    commit: commitMeasured(),
    date: dateMeasured(),
    cpus: cpus().length,
    loadAverage: [Number(LOAD_AT_START.toFixed(2)), Number(loadavg()[0].toFixed(2))],
    flags: args.filter((a) => a.startsWith('--')),
    ...run,
  });
  writeFileSync(path, `${JSON.stringify(doc, null, 2)}\n`);
  note(`figures appended to ${path}`);
}

/** Header every bench prints: what ran, on what. */
export function header(title: string, what: string): void {
  console.log(`\n## ${title}\n`);
  console.log(`${what}`);
  console.log(`node ${process.version}, ${process.platform}/${process.arch}, mode: ${FULL ? '--full' : QUICK ? '--quick' : 'default'}`);
}

/** Structural view of the pool parts the benches drive directly (kept loose: src/ is owned by others). */
export interface MetaLike {
  allocDataBlock(): number;
  insertMapping(id: number, vblock: number, dblock: number): void;
}

/**
 * Metadata-only provisioning: map vblocks [from, to) of device id to fresh data blocks, through the same
 * metadata calls the write path makes for a first write (allocDataBlock + insertMapping), without data I/O.
 * The data blocks stay holes in the sparse data file (they read as zeros).
 */
export function provisionMeta(md: MetaLike, id: number, from: number, to: number): void {
  for (let v = from; v < to; v++) md.insertMapping(id, v, md.allocDataBlock());
}
