/**
 * Block-level against file-level copy-on-write, side by side (issue 5).
 *
 *   node dist/bench/compare/run.js [--quick | --full] [--scenario NAME[,NAME]] [--out DIR] [--reps N] [--work DIR]
 *                                  [--figures=FILE --as=NAME]
 *
 * --out: where the results go; default `docs` (the checked-in figures) for a default or --full run, and
 * `./thinpool-bench` for --quick. A quick run never writes over the checked-in figures: `--quick --out` naming
 * this project's docs/ folder is a usage error (see USAGE, printed by --help).
 * Systems: thinpool (in process), ext4 on a thinpool volume through NBD (nbdfuse + loop + mount, when
 * permitted), kernel overlayfs (real mounts, when permitted), the userspace union driver (src/union), qcow2
 * chains (qemu-img / qemu-io, when installed) and the raw file; in the `containerd` scenario, one containerd
 * with its overlayfs snapshotter and with `thinpool snapshotter serve` (when containerd, runc and umoci are installed). Prints progress and a table
 * per scenario; writes DIR/benchmark-results.json, DIR/benchmark-tables.md and DIR/plots/*.svg.
 * Default scale keeps the run under ~10 minutes (1 GiB cases need --full); --quick takes well under a minute.
 */
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { recordRun } from '../figures-run.js';
import { cleanupAll, installCleanupHandlers, trackDir } from './lib/cleanup.js';
import { canCountWrites } from './lib/disk.js';
import { machine } from './lib/machine.js';
import { tables, writeOutputs } from './lib/report.js';
import { chartSvg } from './lib/svg.js';
import { Recorder, SYSTEMS, type Ctx, type Mode, type Scenario, type ScenarioResult, type System } from './lib/result.js';
import { now } from './lib/stats.js';
import { ext4Unavailable } from './systems/ext4.js';
import { overlayUnavailable } from './systems/overlay.js';
import { qemuUnavailable } from './systems/qemu.js';
import { create } from './scenarios/create.js';
import { deepRead } from './scenarios/deep-read.js';
import { many } from './scenarios/many.js';
import { smallWrite } from './scenarios/small-write.js';
import { teardown } from './scenarios/teardown.js';
import { throughput } from './scenarios/throughput.js';
import { containerd } from './scenarios/containerd.js';
import { containerdUnavailable } from './systems/containerd.js';

export const SCENARIOS: Scenario[] = [smallWrite, deepRead, create, many, throughput, teardown, containerd];

export interface RunOptions {
  mode: Mode;
  scenarios?: string[];
  out?: string;
  reps?: number;
  work?: string;
  log?: (s: string) => void;
}

export function runCompare(opts: RunOptions): { results: ScenarioResult[]; unavailable: Partial<Record<System, string>> } {
  const log = opts.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  installCleanupHandlers();
  const work = mkdtempSync(`${opts.work ?? tmpdir()}/thinpool-compare-`);
  trackDir(work);
  const unavailable: Partial<Record<System, string>> = {};
  const ovl = overlayUnavailable(work);
  if (ovl) unavailable.overlayfs = ovl;
  const q = qemuUnavailable();
  if (q) unavailable.qcow2 = q;
  const e4 = ext4Unavailable(work);
  if (e4) unavailable['ext4-nbd'] = e4;
  const ctrd = containerdUnavailable(ovl);
  if (ctrd) unavailable['ctrd-thinpool'] = unavailable['ctrd-overlayfs'] = ctrd;
  for (const s of SYSTEMS) log(`${s.padEnd(10)} ${unavailable[s] ? `skipped: ${unavailable[s]}` : 'runs'}`);
  if (!canCountWrites()) log('note: /proc/self/io is not readable: bytes written are not counted');
  const ctx: Ctx = { work, mode: opts.mode, reps: opts.reps ?? (opts.mode === 'quick' ? 1 : 5), unavailable, log };
  const chosen = opts.scenarios?.length ? SCENARIOS.filter((s) => opts.scenarios!.includes(s.name)) : SCENARIOS;
  if (opts.scenarios?.length && chosen.length !== opts.scenarios.length) {
    throw new Error(`unknown scenario in ${opts.scenarios.join(',')}; known: ${SCENARIOS.map((s) => s.name).join(', ')}`);
  }
  const results: ScenarioResult[] = [];
  try {
    for (const s of chosen) {
      log(`[${s.name}] ${s.title}`);
      const rec = new Recorder(s.name, ctx);
      const t = now();
      try {
        s.run(ctx, rec);
      } catch (e) {
        // Keep the figures of the other scenarios; this one reports what it measured and the error.
        log(`[${s.name}] FAILED: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
        rec.note(`The scenario stopped with an error: ${e instanceof Error ? e.message : String(e)}`);
        cleanupAll();
        mkdirSync(work, { recursive: true });
        trackDir(work);
      }
      const ms = now() - t;
      log(`[${s.name}] done in ${(ms / 1000).toFixed(1)} s`);
      results.push({ name: s.name, title: s.title, ms, figures: rec.figures, charts: rec.charts, notes: rec.notes });
    }
  } finally {
    cleanupAll();
  }
  return { results, unavailable };
}

export const USAGE = `usage: node dist/bench/compare/run.js [--quick | --full] [--scenario NAME[,NAME]] [--out DIR] [--reps N] [--work DIR] [--figures=FILE --as=NAME]
  --quick          every scenario and system at tiny sizes (a smoke run, well under a minute)
  --full           add the 1 GiB cases (needs tens of GB free and a long time)
  --scenario LIST  only these scenarios: ${SCENARIOS.map((s) => s.name).join(',')}
  --out DIR        where benchmark-results.json, benchmark-tables.md and plots/*.svg go; default: docs (the
                   checked-in figures) for a default or --full run, ./thinpool-bench for --quick. A quick run
                   never writes into this project's docs/ folder (--quick --out docs is refused)
  --reps N         repetitions per case (default 5; 1 with --quick)
  --work DIR       scratch directory (default: the system temporary directory)
  --figures=FILE --as=NAME  also merge this run into FILE under NAME (docs/figures/containerd.json), plots beside it`;

/** The docs/ folder of this project (where the checked-in figures are), from dist/bench/compare or bench/compare. */
function checkedInDocs(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
  return join(dir, 'docs');
}

/** Where a run writes: --out, else `docs` (default and --full) or `thinpool-bench` (--quick). Throws for a quick run into docs/. */
export function outputDir(mode: Mode, out: string | undefined): string {
  const dir = out ?? (mode === 'quick' ? 'thinpool-bench' : 'docs');
  if (mode === 'quick' && resolve(dir) === checkedInDocs()) {
    throw new Error(`--quick would overwrite the checked-in figures in ${dir}: give another --out (default for --quick: ./thinpool-bench)`);
  }
  return dir;
}

/** The command line of the comparison (also `thinpool bench`): args without node and script. */
export async function main(args: string[] = process.argv.slice(2)): Promise<void> {
  let values: ReturnType<typeof parse>;
  try {
    values = parse(args);
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n${USAGE}\n`);
    process.exitCode = 2;
    return;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (values.figures !== undefined && values.as === undefined) {
    process.stderr.write(`--figures=FILE needs --as=NAME (e.g. --as=after)\n${USAGE}\n`);
    process.exitCode = 2;
    return;
  }
  const load0 = loadavg()[0];
  const mode: Mode = values.quick ? 'quick' : values.full ? 'full' : 'default';
  let out: string;
  try {
    out = outputDir(mode, values.out);
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 2;
    return;
  }
  const started = new Date().toISOString();
  const t = now();
  const { results, unavailable } = runCompare({
    mode,
    scenarios: values.scenario?.flatMap((s) => s.split(',')),
    reps: values.reps ? Number(values.reps) : undefined,
    work: values.work,
  });
  process.stdout.write(`\n${tables(results)}\n`);
  const files = writeOutputs(out, {
    command: `node dist/bench/compare/run.js ${process.argv.slice(2).join(' ')}`.trim(),
    mode,
    startedAt: started,
    durationMs: now() - t,
    machine: machine(values.work ?? tmpdir()),
    unavailable: unavailable as Record<string, string>,
    scenarios: results,
  });
  if (values.figures !== undefined) files.push(...mergeFigures(values.figures, values.as!, mode, load0, results));
  process.stderr.write(`wrote ${files.join(', ')}\n`);
  process.stderr.write(`total ${((now() - t) / 1000).toFixed(1)} s\n`);
  const problems = checkFigures(results, unavailable);
  for (const p of problems) process.stderr.write(`check: ${p}\n`);
  if (problems.length > 0) process.exitCode = 1;
}

function parse(args: string[]) {
  return parseArgs({
    args,
    options: {
      help: { type: 'boolean', short: 'h', default: false },
      quick: { type: 'boolean', default: false },
      full: { type: 'boolean', default: false },
      scenario: { type: 'string', multiple: true },
      out: { type: 'string' },
      reps: { type: 'string' },
      work: { type: 'string' },
      figures: { type: 'string' },
      as: { type: 'string' },
    },
  }).values;
}

/**
 * `--figures=FILE --as=NAME`: merge this run's scenarios (every figure, the notes, the commit measured, the load
 * average before and after) into FILE under runs.NAME, for scripts/render-figures.mjs (docs/figures/containerd.json
 * renders into docs/benchmarks.md), and write the run's charts into the plots/ directory beside FILE's directory
 * (docs/plots for docs/figures/...). Returns the files written.
 */
function mergeFigures(file: string, as: string, mode: Mode, load0: number, results: ScenarioResult[]): string[] {
  mkdirSync(dirname(file), { recursive: true });
  recordRun(file, as, {
    mode,
    cpus: availableParallelism(),
    loadAverage: [Number(load0.toFixed(1)), Number(loadavg()[0].toFixed(1))],
    scenarios: results.map((r) => ({
      name: r.name,
      title: r.title,
      ms: Math.round(r.ms),
      notes: r.notes,
      figures: r.figures.map(({ runs: _runs, ...f }) => f),
    })),
  });
  const plots = join(dirname(file), '..', 'plots');
  mkdirSync(plots, { recursive: true });
  const written = [file];
  for (const r of results)
    for (const c of r.charts) {
      writeFileSync(join(plots, c.file), chartSvg(c.chart));
      written.push(join(plots, c.file));
    }
  return written;
}

/**
 * What CI checks (with --quick): every scenario ran to the end and produced figures, and every figure of a
 * system that can run here is a number (nothing about speed).
 */
export function checkFigures(results: ScenarioResult[], unavailable: Partial<Record<System, string>>): string[] {
  const out: string[] = [];
  for (const r of results) {
    if (r.notes.some((n) => n.startsWith('The scenario stopped with an error'))) out.push(`${r.name}: stopped with an error`);
    if (r.figures.length === 0) out.push(`${r.name}: no figures`);
    for (const f of r.figures) {
      if (f.median === null && f.skipped && unavailable[f.system] === undefined) continue; // skipped by design (scale, kernel limit)
      if (f.median !== null && !Number.isFinite(f.median)) out.push(`${r.name}: ${f.system} ${f.case} ${f.metric} is not a number`);
    }
    for (const s of SYSTEMS) {
      if (
        unavailable[s] === undefined &&
        r.figures.some((f) => f.system === s) &&
        !r.figures.some((f) => f.system === s && f.median !== null)
      ) {
        out.push(`${r.name}: ${s} runs here but produced no figure`);
      }
    }
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((e) => {
    process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
    cleanupAll();
    process.exit(1);
  });
}
