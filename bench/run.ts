/**
 * Benchmark runner: `node dist/bench/run.js [target ...] [--list] [--flag ...]`.
 *
 * - A target is a bench file or a directory, given as built JS (`dist/bench/engine/io.js`), as source
 *   (`bench/engine/io.ts`), or relative to the bench folder (`engine`, `engine/io`, `compare`). No target: every
 *   bench under the bench folder.
 * - Which `.js` files under the bench folder are benches (benchList; test/bench/runner.test.ts checks it):
 *   - files or folders whose name starts with `_` (or `.`) are helpers, never run (e.g. `engine/_lib.ts`);
 *   - a folder below the bench folder that holds its own `run.js` is one bench, that `run.js`: the folder's other
 *     modules are its library (e.g. `compare/run.js` runs; `compare/lib`, `compare/scenarios` and
 *     `compare/systems`, among them the worker `compare/systems/ext4-worker.js`, do not);
 *   - this runner (`run.js` at the top of the bench folder) is not a bench.
 *   Naming a helper or a suite's module as a target is an error that says which bench it belongs to.
 * - `--list`: print the benches the targets select, one a line, and run nothing.
 * - Each bench runs in its own Node process (one after another, so figures do not disturb each other and each
 *   reports its own peak memory); its output is passed through. Every other argument starting with `--` (e.g.
 *   `--full`, `--quick`) is passed to every bench.
 * - Exit status: non-zero if any bench failed; a summary of timings is printed at the end.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url)); // dist/bench

function isHelper(name: string): boolean {
  return name.startsWith('_') || name.startsWith('.');
}

/** Why the file at `rel` (relative to `root`, `/`-separated) is not a bench, or undefined when it is one. */
function notBench(root: string, rel: string): string | undefined {
  const parts = rel.split('/');
  if (!rel.endsWith('.js')) return 'not a built .js file';
  if (parts.some(isHelper)) return 'a helper (its path has a name starting with `_`)';
  if (rel === 'run.js') return 'the runner itself';
  for (let i = 1; i < parts.length; i++) {
    const suite = `${parts.slice(0, i).join('/')}/run.js`;
    if (rel !== suite && existsSync(join(root, suite))) return `a module of the bench ${suite}`;
  }
  return undefined;
}

function collect(root: string, path: string, out: string[]): void {
  const rel = relative(root, path).split(sep).join('/');
  if (statSync(path).isDirectory()) {
    if (rel !== '' && rel.split('/').some(isHelper)) return;
    if (rel !== '' && existsSync(join(path, 'run.js'))) {
      out.push(join(path, 'run.js')); // a suite: its run.js is the bench
      return;
    }
    for (const e of readdirSync(path).sort()) {
      const p = join(path, e);
      if (statSync(p).isDirectory()) collect(root, p, out);
      else if (notBench(root, rel === '' ? e : `${rel}/${e}`) === undefined) out.push(p);
    }
    return;
  }
  const why = notBench(root, rel);
  if (why !== undefined) throw new Error(`${rel} is not a bench: ${why}`);
  out.push(path);
}

/** Map a target to a built path under `root` (a file or a folder). */
function resolveTarget(root: string, t: string): string {
  const cands: string[] = [];
  const abs = resolve(t);
  const inRoot = relative(root, abs);
  if (!inRoot.startsWith('..') && !isAbsolute(inRoot)) cands.push(abs);
  const rel = t.replace(/\.(ts|js)$/, '').replace(/^(\.\/)?(dist\/)?bench\/?/, '');
  cands.push(join(root, rel), join(root, `${rel}.js`));
  for (const c of cands) {
    if (existsSync(c) && (statSync(c).isDirectory() || c.endsWith('.js'))) return c;
  }
  throw new Error(`no bench matches "${t}" (looked in ${root}; run \`npm run build\` first)`);
}

/**
 * The benches the targets select (every bench when there is none), as paths relative to `root` (the built bench
 * folder), in run order, each once. Throws when a target matches nothing or names a file that is not a bench.
 */
export function benchList(targets: string[], root: string = here): string[] {
  const files: string[] = [];
  for (const t of targets.length ? targets : [root]) collect(root, resolveTarget(root, t), files);
  return [...new Set(files.map((f) => relative(root, f).split(sep).join('/')))];
}

function main(): number {
  const argv = process.argv.slice(2);
  const list = argv.includes('--list');
  const flags = argv.filter((a) => a.startsWith('--') && a !== '--list');
  const targets = argv.filter((a) => !a.startsWith('--'));
  let names: string[];
  try {
    names = benchList(targets);
  } catch (e) {
    console.error(e instanceof Error ? e.message : String(e));
    return 2;
  }
  if (names.length === 0) {
    console.error('no bench files found');
    return 1;
  }
  if (list) {
    for (const n of names) console.log(n);
    return 0;
  }
  const summary: Array<[string, number, number | null]> = [];
  for (const name of names) {
    console.log(`\n# bench ${name} ${flags.join(' ')}`.trimEnd());
    const t0 = performance.now();
    const r = spawnSync(process.execPath, [join(here, name), ...flags], { stdio: 'inherit' });
    const secs = (performance.now() - t0) / 1000;
    summary.push([name, secs, r.status]);
    if (r.status !== 0) console.error(`bench ${name} failed (exit ${r.status ?? r.signal})`);
  }
  console.log('\n# summary');
  for (const [n, s, st] of summary) console.log(`${st === 0 ? 'ok  ' : 'FAIL'} ${n.padEnd(32)} ${s.toFixed(1)} s`);
  return summary.every(([, , st]) => st === 0) ? 0 : 1;
}

// Run only as a program (`node dist/bench/run.js`), not when a test imports benchList.
if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) process.exitCode = main();
