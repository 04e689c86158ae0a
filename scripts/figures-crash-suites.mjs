// The figures section `crash-suites` of docs/crash-safety.md ("Other suites"): what the format-crash, I/O-error,
// out-of-space, metadata-full, CLI kill -9 and regression suites did, rendered from docs/figures/crash-suites.json.
// The suites write that file themselves: with THINPOOL_FIGURES_DIR set, each merges its own key (recordSuite below)
// at the end of its run, so running a subset of them keeps the others' rows. Used by render-figures.mjs.
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { list, n } from './figures-format.mjs';

/** The suites, in the table's order: JSON key, file, row name, what the count cell says. */
const SUITES = [
  ['format-crash', 'test/crash/format-crash.test.ts', 'format crash', formatCrash],
  ['io-errors', 'test/crash/io-errors.test.ts', 'I/O errors', ioErrors],
  ['out-of-space', 'test/crash/out-of-space.test.ts', 'out of space + low-water mark', outOfSpace],
  ['metadata-full', 'test/crash/metadata-full.test.ts', 'metadata full', metadataFull],
  ['cli-kill', 'test/cli-safety/kill.test.ts', 'CLI kill -9 + full pool', cliKill],
  ['regressions', 'test/crash/regressions.test.ts', 'regressions', regressions],
  ['fuzz-regressions', 'test/fuzz/fuzz-regressions.test.ts', 'fuzz regressions', regressions],
];

export const CRASH_SUITES_COMMAND = `npm run build && THINPOOL_FIGURES_DIR=docs/figures npx vitest run ${SUITES.map(([, file]) => file).join(' ')}`;

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const SLEEP = new Int32Array(new SharedArrayBuffer(4));

/** The commit measured: HEAD's short hash, `+changes` when tracked files differ from it (as bench/figures-run.ts). */
function commitMeasured() {
  const git = (args) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim();
  return `${git(['rev-parse', '--short', 'HEAD'])}${git(['status', '--porcelain', '--untracked-files=no']) === '' ? '' : '+changes'}`;
}

/** Run fn holding `${file}.lock` (suites in parallel workers may finish at once); a lock older than 10 s is a dead writer's. */
function locked(file, fn) {
  const lock = `${file}.lock`;
  let deadline = Date.now() + 10_000;
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx'));
      break;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      if (Date.now() > deadline) {
        rmSync(lock, { force: true });
        deadline = Date.now() + 10_000;
      } else Atomics.wait(SLEEP, 0, 0, 10);
    }
  }
  try {
    return fn();
  } finally {
    rmSync(lock, { force: true });
  }
}

/**
 * With THINPOOL_FIGURES_DIR set: merge one suite's run into $THINPOOL_FIGURES_DIR/crash-suites.json as `key`
 * (read, merge, write a temporary file, rename; under a lock), stamped with the commit, the date, the CPU count and
 * the load average at its start (`run.loadAtStart`) and now. Nothing without THINPOOL_FIGURES_DIR.
 */
export function recordSuite(key, { loadAtStart, ...run }) {
  const dir = process.env.THINPOOL_FIGURES_DIR;
  if (dir === undefined || dir === '') return;
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'crash-suites.json');
  const stamp = {
    commit: commitMeasured(),
    date: new Date().toISOString().slice(0, 10),
    cpus: cpus().length,
    loadAverage: [loadAtStart, loadavg()[0]].map((x) => Number(x.toFixed(2))),
  };
  locked(file, () => {
    const doc = existsSync(file) ? JSON.parse(readFileSync(file, 'utf8')) : {};
    doc[key] = { ...stamp, ...run };
    const sorted = Object.fromEntries(Object.entries(doc).sort(([a], [b]) => (a < b ? -1 : 1)));
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, `${JSON.stringify(sorted, null, 2)}\n`);
    renameSync(tmp, file);
  });
}

const OUTCOME = { 'old pool': 'older pool whole' };
const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);

function formatCrash(s) {
  const starts = Object.entries(s.starts).map(
    ([start, x]) =>
      `over ${start} (${x.ioCalls} I/O calls, ${n(x.cutPoints)} cut points): ${Object.entries(x.outcomes)
        .map(([k, v]) => `${OUTCOME[k] ?? k} ${n(v)}`)
        .join(', ')}`,
  );
  return (
    `${n(s.cutPoints)} cut points (every I/O call of the format + the acknowledged format, x ${s.seedsPerCut} crash seeds, ` +
    `over ${starts.length} starting devices; ${n(s.externalChecks)} also checked by thin_check / thin_dump): ${starts.join('; ')}`
  );
}

const PLURAL = { read: 'reads', write: 'writes', flush: 'flushes' };

function ioErrors(s) {
  const faults = Object.entries(s.faults); // 'meta read' -> { faults, needsCheck, writable }
  const per = (dev) =>
    faults
      .filter(([k]) => k.startsWith(`${dev} `))
      .map(([k, v]) => `${n(v.faults)} ${PLURAL[k.split(' ')[1]]}`)
      .join(', ');
  const after = (f) => n(faults.reduce((a, [, v]) => a + f(v), 0));
  return (
    `${n(s.injectedFaults)} injected faults over ${s.workloads} workloads (metadata: ${per('meta')}; data: ${per('data')}); then read-only ` +
    `with needs_check ${after((v) => v.needsCheck)}, still writable ${after((v) => v.writable)}, the open failed ${after((v) => v.faults - v.needsCheck - v.writable)}`
  );
}

function outOfSpace(s) {
  return `${n(sum(s.situations))} situations (${list(s.situations)}); low-water mark: ${n(sum(s.lowWater))} cases (${list(s.lowWater)})`;
}

function metadataFull(s) {
  return (
    `with the metadata device full: ${n(s.deletes)} deletes (FIXED BUG 2), ${n(s.rollbacks)} rollback freeing ${n(s.rollbackBlocksFreed)} blocks, ` +
    `${n(s.discards)} discards freeing ${n(s.discardBlocksFreed)} blocks; FIXED BUG 7: ${n(s.thresholdEventsFromCreates)} metadata thresholds ` +
    `reported after ${n(s.creates)} creates alone; FIXED BUG 8: the strict checker at each of ${n(s.commitsChecked)} metadata flushes ` +
    '(commits) of a write and its commit with the metadata device short'
  );
}

function cliKill(s) {
  const w = s.write;
  const i = s.import;
  return (
    `write: ${n(w.runs)} runs (full run ${n(w.fullRunMs)} ms; ${n(w.killed)} killed, ${n(w.completed)} completed; target then new ${n(w.sawNew)}, old ${n(w.sawOld)}, ` +
    `old and new per sector ${n(w.sawMix)}); import: ${n(i.runs)} runs (full run ${n(i.fullRunMs)} ms; ${n(i.killed)} killed, ${n(i.completed)} completed; volume absent ` +
    `${n(i.absent)}, whole image ${n(i.whole)}); full pool refused (exit status 1, pool unchanged): ${s.fullPool.join(', ')}`
  );
}

/** The tests that passed, by the label before their colon: "FIXED BUGS 1, 5, 6 + sanity". */
function regressions(s) {
  const labels = s.passed.map((t) => t.split(':')[0]);
  const bugs = labels.filter((l) => l.startsWith('FIXED BUG ')).map((l) => l.slice('FIXED BUG '.length));
  const other = labels.filter((l) => !l.startsWith('FIXED BUG '));
  const parts = [...(bugs.length === 0 ? [] : [`${bugs.length === 1 ? 'FIXED BUG' : 'FIXED BUGS'} ${bugs.join(', ')}`]), ...other];
  return parts.length === 0 ? 'none passed' : parts.join(' + ');
}

const secs = (ms) => (ms >= 10_000 ? `${(ms / 1000).toFixed(0)} s` : `${(ms / 1000).toFixed(1)} s`);

/** The "Other suites" table: one row per suite, from its own run (a suite not recorded yet says so). */
export function crashSuites(f) {
  const out = [
    `Each row is its suite's last run recorded with \`${CRASH_SUITES_COMMAND}\` ` +
      '(a suite merges its own row; wall time from its first test to its last, CI setting unless marked soak).',
    '',
    '| suite | count | failures | wall time | recorded |',
    '|---|---|---|---|---|',
  ];
  for (const [key, file, name, count] of SUITES) {
    const s = f[key];
    const suite = `${name} (\`${file.split('/').pop()}\`)`;
    if (s === undefined) {
      out.push(`| ${suite} | not recorded yet | | | |`);
      continue;
    }
    out.push(
      `| ${suite} | ${count(s)}${s.soak ? ' (soak)' : ''} | ${s.failures} of ${s.tests} test${s.tests === 1 ? '' : 's'} | ${secs(s.ms)} | ${s.date}, ${s.commit}, load average ${s.loadAverage.join(' / ')} on ${s.cpus} CPUs |`,
    );
  }
  return out.join('\n');
}
