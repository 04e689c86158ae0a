/**
 * Benchmark runner: `node dist/bench/run.js [target ...] [--flag ...]`.
 *
 * - A target is a bench file or a directory, given as built JS (`dist/bench/engine/io.js`), as source
 *   (`bench/engine/io.ts`), or relative to the bench folder (`engine`, `engine/io`, `compare`). No target: every
 *   bench under the bench folder.
 * - A bench file is any `.js` file under the bench folder except this runner and helpers: files or folders
 *   whose name starts with `_` (e.g. `engine/_lib.ts`). Each bench runs in its own Node process (one after
 *   another, so figures do not disturb each other and each reports its own peak memory); its output is passed
 *   through. Arguments starting with `--` (e.g. `--full`, `--quick`) are passed to every bench.
 * - Exit status: non-zero if any bench failed; a summary of timings is printed at the end.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
const self = fileURLToPath(import.meta.url);

function isHelper(name: string): boolean {
  return name.startsWith('_') || name.startsWith('.');
}

function collect(path: string, out: string[]): void {
  const st = statSync(path);
  if (st.isDirectory()) {
    for (const e of readdirSync(path).sort()) {
      if (isHelper(e)) continue;
      collect(join(path, e), out);
    }
  } else if (path.endsWith('.js') && resolve(path) !== self && !isHelper(basename(path))) {
    out.push(path);
  }
}

/** Map a target to a built path under dist/bench. */
function resolveTarget(t: string): string {
  const cands: string[] = [];
  const noExt = t.replace(/\.(ts|js)$/, '');
  const rel = noExt.replace(/^(\.\/)?(dist\/)?bench\/?/, '');
  cands.push(resolve(t));
  cands.push(join(here, rel), join(here, `${rel}.js`));
  for (const c of cands) {
    if (existsSync(c) && (statSync(c).isDirectory() || c.endsWith('.js'))) return c;
  }
  throw new Error(`no bench matches "${t}" (looked in ${here}; run \`npm run build\` first)`);
}

function main(): number {
  const argv = process.argv.slice(2);
  const flags = argv.filter((a) => a.startsWith('--'));
  const targets = argv.filter((a) => !a.startsWith('--'));
  const files: string[] = [];
  for (const t of targets.length ? targets : [here]) collect(resolveTarget(t), files);
  const unique = [...new Set(files)];
  if (unique.length === 0) {
    console.error('no bench files found');
    return 1;
  }
  const summary: Array<[string, number, number | null]> = [];
  for (const f of unique) {
    const name = relative(here, f);
    console.log(`\n# bench ${name} ${flags.join(' ')}`.trimEnd());
    const t0 = performance.now();
    const r = spawnSync(process.execPath, [f, ...flags], { stdio: 'inherit' });
    const secs = (performance.now() - t0) / 1000;
    summary.push([name, secs, r.status]);
    if (r.status !== 0) console.error(`bench ${name} failed (exit ${r.status ?? r.signal})`);
  }
  console.log('\n# summary');
  for (const [n, s, st] of summary) console.log(`${st === 0 ? 'ok  ' : 'FAIL'} ${n.padEnd(32)} ${s.toFixed(1)} s`);
  return summary.every(([, , st]) => st === 0) ? 0 : 1;
}

process.exitCode = main();
