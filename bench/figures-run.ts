/**
 * Recording a benchmark run for the docs: a bench given `--figures FILE --as NAME` merges its run into FILE (a
 * JSON under docs/figures/) as `runs[NAME]`, with the commit it measured and the date; scripts/render-figures.mjs turns the file into the tables of the docs. Runs under other
 * names are kept; a run under the same name replaces the old one. `commitMeasured` and `dateMeasured` are the same
 * stamps for other records of a run (bench/run.ts --record, the engine benches' THINPOOL_FIGURES_DIR files).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** A directory inside the repository (git finds the repository from there, whether this runs from dist/ or not). */
const HERE = fileURLToPath(new URL('.', import.meta.url));

/** dist/build-stamp.json (scripts/build-stamp.mjs), beside dist/bench where this runs built; absent from source. */
const STAMP = fileURLToPath(new URL('../build-stamp.json', import.meta.url));

/**
 * The commit measured: the one the build was made from (dist/build-stamp.json), with `+changes` when files that
 * make the code differed from it then; run from source (no stamp), HEAD with `+changes` when tracked files differ.
 */
export function commitMeasured(): string {
  if (existsSync(STAMP)) {
    const stamp = JSON.parse(readFileSync(STAMP, 'utf8')) as { commit: string; changed: string[] };
    return stamp.changed.length === 0 ? stamp.commit : `${stamp.commit}+changes`;
  }
  const git = (args: string[]) => execFileSync('git', args, { cwd: HERE, encoding: 'utf8' }).trim();
  const commit = git(['rev-parse', '--short', 'HEAD']);
  const dirty = git(['status', '--porcelain', '--untracked-files=no']) !== '';
  return dirty ? `${commit}+changes` : commit;
}

/** Today's date as the runs record it (YYYY-MM-DD, UTC). */
export function dateMeasured(): string {
  return new Date().toISOString().slice(0, 10);
}

/** Merge `run` into the JSON at `file` as `runs[as]`, adding the commit measured and the date. */
export function recordRun(file: string, as: string, run: Record<string, unknown>): void {
  const doc = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {};
  doc.runs = { ...(doc.runs ?? {}), [as]: { commit: commitMeasured(), date: dateMeasured(), ...run } };
  writeFileSync(file, `${JSON.stringify(doc, null, 2)}\n`);
}

/** `--NAME=VALUE` or `--NAME VALUE` from argv (the runner, dist/bench/run.js, passes on only the first form). */
export function argValue(name: string, argv: readonly string[] = process.argv): string | undefined {
  const a = argv.find((x) => x.startsWith(`${name}=`));
  if (a !== undefined) return a.slice(name.length + 1);
  const i = argv.indexOf(name);
  return i < 0 ? undefined : argv[i + 1];
}

/**
 * Where a bench records its run: `--figures FILE --as NAME` (either form), as { file, as }; an empty object when
 * not asked. --figures without --as is refused before anything runs.
 */
export function figuresTarget(argv: readonly string[] = process.argv): { file?: string; as?: string } {
  const file = argValue('--figures', argv);
  const as = argValue('--as', argv);
  if (file !== undefined && (as === undefined || as === '')) throw new Error('--figures FILE needs --as NAME (e.g. --as after)');
  return file === undefined ? {} : { file, as };
}
