/**
 * Start-up of the shipped command: `node bin/thinpool.js snapshot POOL v0 sN` on a pool with 100 volumes, against
 * `node -e ""` in the same run, interleaved. Prints medians and ratios of the wall time and of the CPU time (user +
 * system of the whole process, from a preloaded hook that reports process.cpuUsage() at exit; both sides carry
 * it; it writes to fd 2 directly, so it makes no process.stderr, whose stream modules would add to both sides).
 * On a shared machine the CPU time is the steadier figure: the wall time also counts waiting for a core.
 * Goal (issue 17): at most 1.3x. Run after `npm run build`:
 *   node dist/bench/cli-startup.js [RUNS] [--quick]
 * RUNS: how many interleaved pairs of runs (a whole number from 1; default 10); `--quick`: 3 runs, unless RUNS is
 * given (a smoke run, as `node dist/bench/run.js --quick` asks of every bench). Other `--` flags are meant for
 * other benches (bench/run.ts passes its flags to every bench) and are ignored with a note; anything else is a
 * usage error (exit 2).
 * With THINPOOL_FIGURES_DIR set, writes $THINPOOL_FIGURES_DIR/startup.json for scripts/render-figures.mjs.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ThinPool } from '../src/thin/pool.js';
import { findRoot } from './_root.js';
import { median } from './compare/lib/stats.js';

let hook = '';

/** Wall ms and CPU ms (user + system, whole process) of one run. */
function time(cmd: string, args: string[]): { wall: number; cpu: number } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, ['--require', hook, ...args], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  const wall = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  const m = /TPCPU (\d+)/.exec(r.stderr);
  if (!m) throw new Error(`no CPU figure from ${args.join(' ')}: ${r.stderr}`);
  return { wall, cpu: Number(m[1]) / 1000 };
}

/** The run count from the command line (see the opening comment); exits 2 with a message when it is not one. */
function parseRuns(argv: string[]): number {
  const positional = argv.filter((a) => !a.startsWith('--'));
  const usage = 'usage: node dist/bench/cli-startup.js [RUNS] [--quick]';
  if (positional.length > 1) {
    console.error(`cli-startup: one run count at most, got ${positional.join(' ')}\n${usage}`);
    process.exit(2);
  }
  for (const a of argv)
    if (a.startsWith('--') && a !== '--quick') console.error(`cli-startup: ignoring ${a} (not an option of this bench)`);
  if (positional.length === 0) return argv.includes('--quick') ? 3 : 10;
  const n = Number(positional[0]);
  if (!/^\d+$/.test(positional[0]) || !Number.isSafeInteger(n) || n < 1) {
    console.error(`cli-startup: the run count must be a whole number from 1, got ${JSON.stringify(positional[0])}\n${usage}`);
    process.exit(2);
  }
  return n;
}

const runs = parseRuns(process.argv.slice(2));
const root = findRoot();
const bin = resolve(root, 'bin/thinpool.js');
if (!existsSync(join(root, 'dist/src/cli/main.js'))) throw new Error('dist/ is missing: run `npm run build` first');
const dir = mkdtempSync(join(tmpdir(), 'tp-bench-cli-'));
try {
  const pool = join(dir, 'pool');
  const p = ThinPool.formatSync(pool, { size: 1024 ** 3 });
  const data = new Uint8Array(64 * 1024).fill(7);
  for (let i = 0; i < 100; i++) {
    const v = p.createThinSync(`v${i}`, { size: 64 * 1024 * 1024 });
    v.writeSync(data, (i % 16) * 65536);
  }
  p.closeSync();
  hook = join(dir, 'cpu-at-exit.cjs');
  writeFileSync(
    hook,
    // biome-ignore lint/suspicious/noTemplateCurlyInString: this is the source text of a script, whose template literal is meant
    "process.on('exit', () => { const u = process.cpuUsage(); require('node:fs').writeSync(2, `TPCPU ${u.user + u.system}\\n`); });\n",
  );
  // Warm-up (page cache).
  time('node', ['-e', '']);
  time('node', [bin, 'snapshot', pool, 'v0', 'warm']);
  const base: Array<{ wall: number; cpu: number }> = [];
  const cli: Array<{ wall: number; cpu: number }> = [];
  for (let i = 0; i < runs; i++) {
    base.push(time('node', ['-e', '']));
    cli.push(time('node', [bin, 'snapshot', pool, 'v0', `s${i}`]));
  }
  const f = {
    bench: 'bench/cli-startup.ts',
    machine: '2 cores shared with other jobs',
    runs,
    volumes: 100,
    loadAverage: Number(loadavg()[0].toFixed(1)),
    nodeWallMs: median(base.map((x) => x.wall)),
    snapshotWallMs: median(cli.map((x) => x.wall)),
    nodeCpuMs: median(base.map((x) => x.cpu)),
    snapshotCpuMs: median(cli.map((x) => x.cpu)),
  };
  console.log(
    `node -e "":                          wall ${f.nodeWallMs.toFixed(1)} ms, CPU ${f.nodeCpuMs.toFixed(1)} ms (medians of ${runs} runs)`,
  );
  console.log(`thinpool snapshot (100+ volumes):    wall ${f.snapshotWallMs.toFixed(1)} ms, CPU ${f.snapshotCpuMs.toFixed(1)} ms`);
  console.log(
    `ratio: wall ${(f.snapshotWallMs / f.nodeWallMs).toFixed(2)}x, CPU ${(f.snapshotCpuMs / f.nodeCpuMs).toFixed(2)}x node start-up (goal <= 1.3x); load average ${f.loadAverage}`,
  );
  const figDir = process.env.THINPOOL_FIGURES_DIR;
  if (figDir !== undefined) {
    writeFileSync(join(figDir, 'startup.json'), `${JSON.stringify(f, null, 2)}\n`);
    console.log(`figures written to ${join(figDir, 'startup.json')}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
