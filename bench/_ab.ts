/**
 * A/B of two builds: the same command timed alternately against a tree built from an older commit (A) and the
 * current tree or another commit (B), in one run, so both sides see the same machine load. What a change bought,
 * measured this way, can be recorded like any bench run and rendered into the docs instead of typed. A tool,
 * not a bench (hence the `_`: `node dist/bench/run.js` does not run it; it needs its arguments).
 *
 *   node dist/bench/_ab.js --old REV [--new REV] [--runs N] [--setup CMD] [--figures FILE --as NAME] -- CMD
 *
 * - CMD and CMD of --setup are shell commands (`sh -c`); `{root}` in them becomes the side's tree (so
 *   `node {root}/bin/thinpool.js ...` runs that side's build), `{side}` becomes `old` or `new`, `{i}` the run's
 *   number. --setup runs before every timed run, untimed (e.g. make a fresh pool); a failing setup or command
 *   stops the bench with its output.
 * - A side given as a commit is checked out with `git worktree add --detach` under $TMPDIR/thinpool-ab/COMMIT,
 *   this tree's node_modules linked into it, and built (`npm run build`, and `npm run install` for the native
 *   helper when this tree has one) once: later runs reuse it. Without
 *   --new, B is this tree as it is (build it first).
 * - Runs alternate A, B, A, B, ... (`--runs`, default 10, each side); printed and recorded: each side's times in
 *   ms, their medians and the ratio new / old (below 1: B is faster).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from './compare/lib/stats.js';
import { argValue, figuresTarget, recordRun } from './figures-run.js';

/** This repository (this file runs as dist/bench/_ab.js). */
const ROOT = fileURLToPath(new URL('../../', import.meta.url)).replace(/\/$/, '');

export interface AbSide {
  side: 'old' | 'new';
  /** The commit (short hash), or `tree` for this tree as it is. */
  rev: string;
  root: string;
}

/** CMD with `{root}`, `{side}` and `{i}` filled in for one run. */
export function fill(cmd: string, side: AbSide, i: number): string {
  return cmd.replaceAll('{root}', side.root).replaceAll('{side}', side.side).replaceAll('{i}', String(i));
}

/** The median of each side and the ratio new / old. */
export function summary(old: number[], now: number[]): { oldMs: number; newMs: number; ratio: number } {
  const o = median(old);
  const n = median(now);
  return { oldMs: o, newMs: n, ratio: n / o };
}

const git = (args: string[], cwd = ROOT): string => execFileSync('git', args, { cwd, encoding: 'utf8' }).trim();

/** The native helper a build loads when it was built (scripts/build-native.mjs, `npm run install`). */
export const NATIVE_HELPER = join('native', 'build', 'Release', 'thinpool_native.node');

/**
 * A tree built from `rev`: made and built the first time, reused after. Its native helper is built too when this
 * tree has one: the file device, the bulk commands and the NBD server take other paths without it, so an A/B of
 * a tree with the helper against one without measures the helper, not the change (the A/B runs recorded before
 * this check compared two trees without it).
 */
function builtTree(rev: string): string {
  const commit = git(['rev-parse', '--short', `${rev}^{commit}`]);
  const dir = join(tmpdir(), 'thinpool-ab', commit);
  if (!existsSync(join(dir, 'dist', 'build-stamp.json'))) {
    if (!existsSync(dir)) {
      mkdirSync(join(tmpdir(), 'thinpool-ab'), { recursive: true });
      git(['worktree', 'add', '--detach', dir, commit]);
    }
    if (!existsSync(join(dir, 'node_modules'))) symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
    console.log(`building ${commit} in ${dir} ...`);
    const b = spawnSync('npm', ['run', 'build'], { cwd: dir, encoding: 'utf8' });
    if (b.status !== 0) throw new Error(`npm run build of ${commit} failed:\n${b.stdout}\n${b.stderr}`);
  }
  if (existsSync(join(ROOT, NATIVE_HELPER)) && !existsSync(join(dir, NATIVE_HELPER))) {
    console.log(`building the native helper of ${commit} ...`);
    spawnSync('npm', ['run', 'install'], { cwd: dir, encoding: 'utf8' });
    if (!existsSync(join(dir, NATIVE_HELPER)))
      throw new Error(
        `the native helper of ${commit} did not build in ${dir} (\`npm run install\` there says why): this tree has one, so the A/B would measure the helper, not the change`,
      );
  }
  return dir;
}

function sh(cmd: string): number {
  const t0 = performance.now();
  const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`\`${cmd}\` failed (exit ${r.status ?? r.signal}):\n${r.stdout}${r.stderr}`);
  return ms;
}

function main(): void {
  const argv = process.argv;
  const dash = argv.indexOf('--');
  const cmd = dash < 0 ? '' : argv.slice(dash + 1).join(' ');
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const oldRev = argValue('--old', own);
  if (oldRev === undefined || cmd === '') {
    throw new Error('usage: node dist/bench/_ab.js --old REV [--new REV] [--runs N] [--setup CMD] [--figures FILE --as NAME] -- CMD');
  }
  const newRev = argValue('--new', own);
  const runs = Number(argValue('--runs', own) ?? 10);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs ${argValue('--runs', own)}: expected a whole number of at least 1`);
  const setup = argValue('--setup', own);
  const { file, as } = figuresTarget(own);
  const sides: AbSide[] = [
    { side: 'old', rev: git(['rev-parse', '--short', `${oldRev}^{commit}`]), root: builtTree(oldRev) },
    newRev === undefined
      ? { side: 'new', rev: 'tree', root: ROOT }
      : { side: 'new', rev: git(['rev-parse', '--short', `${newRev}^{commit}`]), root: builtTree(newRev) },
  ];
  const load0 = loadavg()[0];
  const times: Record<'old' | 'new', number[]> = { old: [], new: [] };
  for (let i = 1; i <= runs; i++) {
    for (const s of sides) {
      if (setup !== undefined) sh(fill(setup, s, i));
      times[s.side].push(Math.round(sh(fill(cmd, s, i)) * 10) / 10);
    }
  }
  const sum = summary(times.old, times.new);
  console.log(`old (${sides[0].rev}): ${times.old.join(' ')} ms; median ${sum.oldMs.toFixed(1)} ms`);
  console.log(`new (${sides[1].rev}): ${times.new.join(' ')} ms; median ${sum.newMs.toFixed(1)} ms`);
  console.log(
    `new / old: ${sum.ratio.toFixed(3)} (${runs} runs each, alternating; load average ${load0.toFixed(2)} before, ${loadavg()[0].toFixed(2)} after)`,
  );
  if (file !== undefined && as !== undefined) {
    recordRun(file, as, {
      old: sides[0].rev,
      new: sides[1].rev,
      command: cmd,
      setup: setup ?? null,
      runs,
      cpus: cpus().length,
      loadAverage: [Number(load0.toFixed(2)), Number(loadavg()[0].toFixed(2))],
      oldMs: times.old,
      newMs: times.new,
    });
    console.log(`merged into ${file} as "${as}"`);
  }
}

// Run only as a program, not when a test imports fill and summary.
if (process.argv[1] !== undefined && process.argv[1].endsWith('/_ab.js')) main();
