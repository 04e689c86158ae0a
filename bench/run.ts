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
 * - `--record FILE` (or `--record=FILE`; not passed to the benches): each bench's output (stdout and stderr, in
 *   the order they came) is still passed through and also kept, and FILE is written as Markdown (after every
 *   bench, so an interrupted run keeps what ran): a header line (the command, the commit measured as
 *   figures-run.ts stamps it, the date, CPUs, load average before the first bench and after the last, the flags),
 *   then per bench its exit status and seconds and its output in a ```text block. docs/runs/engine.md is such a
 *   file; scripts/render-figures.mjs puts it into docs/benchmarks-engine.md. recordMarkdown makes the text.
 * - Exit status: non-zero if any bench failed; a summary of timings is printed at the end.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { commitMeasured, dateMeasured } from './figures-run.js';

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

/** One bench's run: seconds, exit status (null when a signal ended it) and, when recorded, its output. */
export interface BenchRun {
  name: string;
  secs: number;
  status: number | null;
  signal: string | null;
  output: string;
}

/** What a recorded run's header line says (recordMarkdown). */
export interface RunStamp {
  command: string;
  commit: string;
  date: string;
  cpus: number;
  load: [number, number];
  flags: string[];
}

/** A fence longer than any run of backticks in `text`, so a bench's output cannot close its block. */
function fence(text: string): string {
  const longest = Math.max(2, ...(text.match(/`+/g) ?? []).map((m) => m.length));
  return '`'.repeat(longest + 1);
}

/** The Markdown of a recorded run: the header line, then per bench its status, seconds and output. */
export function recordMarkdown(stamp: RunStamp, runs: BenchRun[]): string {
  const ok = runs.filter((r) => r.status === 0).length;
  const out = [
    `Recorded by \`${stamp.command}\`: commit ${stamp.commit}, ${stamp.date}, ${stamp.cpus} CPUs, load average ` +
      `${stamp.load[0].toFixed(2)} before and ${stamp.load[1].toFixed(2)} after, flags: ${stamp.flags.length ? stamp.flags.join(' ') : 'none'}.`,
  ];
  for (const r of runs) {
    // Colour codes and blank lines at either end are dropped: the file is read as text.
    const text = r.output
      .replace(/\x1b\[[0-9;]*[A-Za-z]/g, '')
      .replace(/^\s*\n/, '')
      .replace(/\s+$/, '');
    const f = fence(text);
    const end = r.status !== null ? `exit status ${r.status}` : `ended by ${r.signal}`;
    out.push('', `**${r.name}**: ${end}, ${r.secs.toFixed(1)} s`, '', `${f}text`, text, f);
  }
  const secs = runs.reduce((a, r) => a + r.secs, 0);
  out.push('', `${runs.length} bench${runs.length === 1 ? '' : 'es'}, ${ok} passed, ${secs.toFixed(1)} s in all.`);
  return `${out.join('\n')}\n`;
}

/** Run one bench in its own process; with `keep`, its output is piped, passed through (when `echo`) and kept. */
function runOne(root: string, name: string, flags: string[], keep: boolean, echo: boolean): Promise<BenchRun> {
  return new Promise((done) => {
    const t0 = performance.now();
    const chunks: Buffer[] = [];
    const child = spawn(process.execPath, [join(root, name), ...flags], { stdio: keep ? ['inherit', 'pipe', 'pipe'] : 'inherit' });
    const tee = (to: NodeJS.WriteStream) => (b: Buffer) => {
      chunks.push(b);
      if (echo) to.write(b);
    };
    child.stdout?.on('data', tee(process.stdout));
    child.stderr?.on('data', tee(process.stderr));
    const end = (status: number | null, signal: string | null) =>
      done({ name, secs: (performance.now() - t0) / 1000, status, signal, output: Buffer.concat(chunks).toString('utf8') });
    child.on('error', (e) => {
      chunks.push(Buffer.from(`${e.message}\n`));
      end(null, 'spawn error');
    });
    child.on('close', (status, signal) => end(status, signal));
  });
}

/**
 * Run the benches (paths relative to `root`, as benchList gives them) one after another with `flags`; with
 * `record`, write that file (recordMarkdown) after each bench. `echo: false` keeps a recorded bench's output off
 * the terminal (the tests).
 */
export async function runBenches(
  names: string[],
  flags: string[],
  opts: { root?: string; record?: string; command?: string; echo?: boolean } = {},
): Promise<BenchRun[]> {
  const root = opts.root ?? here;
  const echo = opts.echo ?? true;
  const load0 = loadavg()[0];
  const stamp = (): RunStamp => ({
    command: opts.command ?? `node dist/bench/run.js ${process.argv.slice(2).join(' ')}`.trimEnd(),
    commit: commitMeasured(),
    date: dateMeasured(),
    cpus: cpus().length,
    load: [load0, loadavg()[0]],
    flags,
  });
  const runs: BenchRun[] = [];
  for (const name of names) {
    if (echo) console.log(`\n# bench ${name} ${flags.join(' ')}`.trimEnd());
    const r = await runOne(root, name, flags, opts.record !== undefined, echo);
    runs.push(r);
    if (r.status !== 0 && echo) console.error(`bench ${name} failed (exit ${r.status ?? r.signal})`);
    if (opts.record !== undefined) writeFileSync(opts.record, recordMarkdown(stamp(), runs));
  }
  return runs;
}

/** Take `--record FILE` / `--record=FILE` out of argv: [the rest, FILE or undefined]; throws when FILE is missing. */
function takeRecord(argv: string[]): [string[], string | undefined] {
  const at = argv.findIndex((a) => a === '--record' || a.startsWith('--record='));
  if (at < 0) return [argv, undefined];
  const inline = argv[at].startsWith('--record=');
  const file = inline ? argv[at].slice('--record='.length) : argv[at + 1];
  if (file === undefined || file === '' || file.startsWith('--')) throw new Error('--record needs a file: --record FILE');
  return [[...argv.slice(0, at), ...argv.slice(at + (inline ? 1 : 2))], resolve(file)];
}

async function main(): Promise<number> {
  let argv: string[];
  let record: string | undefined;
  let names: string[];
  try {
    [argv, record] = takeRecord(process.argv.slice(2));
    names = benchList(argv.filter((a) => !a.startsWith('--')));
  } catch (e) {
    console.error(e instanceof Error ? e.message : String(e));
    return 2;
  }
  const list = argv.includes('--list');
  const flags = argv.filter((a) => a.startsWith('--') && a !== '--list');
  if (names.length === 0) {
    console.error('no bench files found');
    return 1;
  }
  if (list) {
    for (const n of names) console.log(n);
    return 0;
  }
  const runs = await runBenches(names, flags, { record });
  console.log('\n# summary');
  for (const r of runs) console.log(`${r.status === 0 ? 'ok  ' : 'FAIL'} ${r.name.padEnd(32)} ${r.secs.toFixed(1)} s`);
  if (record !== undefined) console.log(`recorded in ${record}`);
  return runs.every((r) => r.status === 0) ? 0 : 1;
}

// Run only as a program (`node dist/bench/run.js`), not when a test imports benchList.
if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) process.exitCode = await main();
