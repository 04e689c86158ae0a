/**
 * What the bulk commands (issue 21: `thinpool import/export/read/write`, timed against their references by
 * bench/bulk/speed.ts) cannot go below on this machine: the parts of their work measured alone, in one run, in
 * interleaved rounds (every probe once per round, an untimed `sync` before each), medians over the rounds.
 *
 *   node dist/bench/bulk/floors.js [--quick] [--rounds N] [--figures FILE --as NAME]
 *
 * Probes (D = 256 MiB of data, as bench/bulk/speed.ts's images hold; P = the 1 GiB image of speed.ts, those
 * 256 MiB in 8 MiB runs and holes between, made by the same builder, bench/bulk/_image.ts):
 * - start-up: `node -e ""` (what any Node command line pays and the C tools do not); `thinpool ls POOL` (a whole
 *   command on the pool: start-up, the CLI's modules, the pool's open); the pool's open alone in a fresh process
 *   (read-only open, the volume's map, close: what `export` and `read` do before copying).
 * - the copy export makes (D MiB of data, dense, from a warm file to a fresh one): `cp --sparse=always` (process);
 *   Node loops in a fresh process timed from open to close, in 128 KiB batches (COPY_BUFFER) through the native
 *   helper the file device uses (src/io/native.ts): pread + pwrite; pread + a zero test per 64 KiB block (the
 *   pool's block size, as export tests) + pwrite of each run of non-zero blocks; copy_file_range alone (the kernel
 *   copies, nothing read into the process); pread + zero test + copy_file_range of the runs (what copy_file_range
 *   would cost where every block must still be read to find the all-zero ones).
 * - the pipe `write` reads (P through a pipe): `cat P > /dev/null`; `cat P | cat > /dev/null`; `cat P > file`
 *   (write's reference); `cat P | node` reading it all, with pipe capacities of 64 KiB, 256 KiB and 1 MiB
 *   (F_SETPIPE_SZ through the helper, as `write` asks) and reads of 128 or 256 KiB: the whole line's time and the
 *   child's read loop alone (from its first read to the end of input).
 * - the disk: D MiB made durable, `dd oflag=direct` (bs 8 MiB: the device's direct write rate) and `dd
 *   conv=fdatasync` (bs 128 KiB: page-cache writes then a flush, as a commit does); `cat P | dd bs=64K
 *   iflag=fullblock conv=sparse,fdatasync` (write's like-for-like reference: zeros skipped, flushed).
 * External tools are timed with spawnSync (wall clock, the process included), as speed.ts does. A probe that
 * fails (no native helper function, `oflag=direct` refused by the file system) is recorded with why and skipped.
 *
 * `--quick`: D = 32 MiB, P = 128 MiB, 2 rounds (a smoke run of the bench itself); default 5 rounds.
 * `--figures FILE --as NAME`: also merge this run (every round's seconds per probe, their medians, the load
 * average before and after) into FILE (docs/figures/bulk-floors.json) under NAME, with the commit measured;
 * scripts/render-figures.mjs renders it into docs/cli.md (section `bulk-floors`, scripts/figures-bulk-probes.mjs),
 * with what each floor implies. Set THINPOOL_BENCH_DIR to put the files elsewhere than the temporary directory.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, existsSync, ftruncateSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { median } from '../compare/lib/stats.js';
import { argValue, figuresTarget, recordRun } from '../figures-run.js';
import { COPY_BUFFER } from '../../src/cli/bulk.js';
import { nativeHelpers } from '../../src/io/native.js';
import { isZero } from '../../src/io/sparse.js';
import { benchScratch, findRoot } from '../_root.js';
import { makeImage, sh } from './_image.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/** The pool's block size (the default of `thinpool init`): export tests zeros block by block. */
const BLOCK = 64 * KiB;
const argv = process.argv.slice(2);

/** Throw on a helper's -errno. */
const ok = (n: number, what: string): number => {
  if (n < 0) throw new Error(`${what}: errno ${-n}`);
  return n;
};

/**
 * Child: one copy loop over `total` bytes from `from` to a fresh `to`, timed from the opening of the files to
 * their closing; prints the seconds, or `null WHY` when the helper lacks what the loop needs.
 */
function childLoop(kind: string, from: string, to: string, total: number): void {
  const native = nativeHelpers();
  const ranges = kind === 'cfr' || kind === 'rzc';
  const pread = native?.pread;
  const pwrite = native?.pwrite;
  const copyRange = native?.copyRange;
  if ((kind !== 'cfr' && pread === undefined) || (ranges ? copyRange === undefined : pwrite === undefined)) {
    process.stdout.write(`null the native helper (or its ${ranges ? 'copyRange' : 'pread/pwrite'}) is not built\n`);
    return;
  }
  const t0 = process.hrtime.bigint();
  const i = openSync(from, 'r');
  const o = openSync(to, 'w');
  ftruncateSync(o, total); // as export truncates the output to the volume's size first
  const buf = Buffer.allocUnsafe(COPY_BUFFER);
  const put = (pos: number, start: number, end: number): void => {
    for (let done = start; done < end; ) {
      done +=
        kind === 'rzc'
          ? ok(copyRange!(i, pos + done, o, pos + done, end - done), 'copy_file_range')
          : ok(pwrite!(o, buf.subarray(done, end), pos + done), 'pwrite');
    }
  };
  for (let pos = 0; pos < total; pos += COPY_BUFFER) {
    const len = Math.min(COPY_BUFFER, total - pos);
    if (kind === 'cfr') {
      for (let done = 0; done < len; ) done += ok(copyRange!(i, pos + done, o, pos + done, len - done), 'copy_file_range');
      continue;
    }
    const n = ok(pread!(i, len === COPY_BUFFER ? buf : buf.subarray(0, len), pos), 'pread');
    if (kind === 'rw') {
      put(pos, 0, n);
      continue;
    }
    // rzw, rzc: test each block for zeros, put each run of non-zero blocks in one call (as export does).
    let run = -1;
    for (let b = 0; ; b = Math.min(n, b + BLOCK)) {
      if (b < n && !isZero(buf.subarray(b, Math.min(n, b + BLOCK)))) {
        if (run < 0) run = b;
        continue;
      }
      if (run >= 0) put(pos, run, b);
      run = -1;
      if (b === n) break;
    }
  }
  closeSync(i);
  closeSync(o);
  process.stdout.write(`${Number(process.hrtime.bigint() - t0) / 1e9}\n`);
}

/**
 * Child: read standard input (a pipe) to its end in `readKiB` reads after asking for a pipe capacity of
 * `pipeKiB`; prints JSON { s: the loop's seconds from the first read, bytes, pipeBytes: the capacity granted }.
 */
function childPipe(pipeKiB: number, readKiB: number): void {
  const native = nativeHelpers();
  const pipeBytes = native?.pipeSize?.(0, pipeKiB * KiB) ?? -1;
  native?.setBlocking?.(0, 1);
  const buf = Buffer.allocUnsafe(readKiB * KiB);
  const t0 = process.hrtime.bigint();
  let bytes = 0;
  for (;;) {
    const n = readSync(0, buf, 0, buf.length, null);
    if (n === 0) break;
    bytes += n;
  }
  process.stdout.write(`${JSON.stringify({ s: Number(process.hrtime.bigint() - t0) / 1e9, bytes, pipeBytes })}\n`);
}

/** Child: open the pool read-only, look up volume v and its map, close; prints the seconds. */
async function childOpen(dir: string): Promise<void> {
  const { ThinPool } = await import('../../src/thin/pool.js');
  const t0 = process.hrtime.bigint();
  const pool = ThinPool.openSync(dir, { readOnly: true });
  pool.volume('v').map();
  pool.closeSync({ commit: false });
  process.stdout.write(`${Number(process.hrtime.bigint() - t0) / 1e9}\n`);
}

const childAt = argv.indexOf('--child');
if (childAt >= 0) {
  const [what, ...rest] = argv.slice(childAt + 1);
  if (what === 'loop') childLoop(rest[0], rest[1], rest[2], Number(rest[3]));
  else if (what === 'pipe') childPipe(Number(rest[0]), Number(rest[1]));
  else if (what === 'open') await childOpen(rest[0]);
  else throw new Error(`unknown child ${what}`);
  process.exit(0);
}

const QUICK = argv.includes('--quick');
const ROUNDS = Number(argValue('--rounds') ?? (QUICK ? 2 : 5));
const { file: FIGURES, as: AS } = figuresTarget();
const DATA = (QUICK ? 32 : 256) * MiB;
const PIPED = 4 * DATA;
/** Runs of data in the piped image (speed.ts: 32 runs of 8 MiB in 1 GiB). */
const RUNS = 32;
const PIPES_KIB = [64, 256, 1024];
const READS_KIB = [128, 256];

const root = findRoot();
const bin = resolve(root, 'bin/thinpool.js');
if (!existsSync(join(root, 'dist/src/cli/main.js'))) throw new Error('dist/ is missing: run `npm run build` first');
for (const tool of ['cp', 'cat', 'dd', 'sync', 'cmp']) {
  if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) throw new Error(`${tool} is missing (Debian package coreutils)`);
}
const node = sh(process.execPath);
const self = sh(process.argv[1]);

/** Run a shell line after an untimed `sync` (no dirty pages left by the probe before); its wall seconds and stdout. */
function timed(line: string): { s: number; out: string } {
  execFileSync('sync');
  const t0 = performance.now();
  const r = spawnSync('sh', ['-c', line], { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  const s = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${line} failed (exit ${r.status}): ${r.stderr.trim()}`);
  return { s, out: r.stdout.trim() };
}

/** A probe: its command line, and how its seconds are read (default: the line's wall time). */
interface Probe {
  key: string;
  line: (w: Files) => string;
  /** The figure from the line's time and output; null: not measurable here (the output says why). */
  value?: (s: number, out: string) => number | null;
  /** Output files to remove after each round (before the next `sync`, so none is written back). */
  outputs: (w: Files) => string[];
}
interface Files {
  data: string;
  piped: string;
  pool: string;
  out: string;
}
const childSeconds = (_s: number, out: string): number | null => (out.startsWith('null') ? null : Number(out));
const loop = (kind: string): Omit<Probe, 'key'> => ({
  line: (w) => `${node} ${self} --child loop ${kind} ${sh(w.data)} ${sh(w.out)} ${DATA}`,
  value: childSeconds,
  outputs: (w) => [w.out],
});
const none = (): string[] => [];
const PROBES: Probe[] = [
  { key: 'nodeStartup', line: () => `${node} -e ""`, outputs: none },
  { key: 'thinpoolLs', line: (w) => `${node} ${sh(bin)} ls ${sh(w.pool)} > /dev/null`, outputs: none },
  { key: 'poolOpen', line: (w) => `${node} ${self} --child open ${sh(w.pool)}`, value: childSeconds, outputs: none },
  { key: 'cp', line: (w) => `cp --sparse=always ${sh(w.data)} ${sh(w.out)}`, outputs: (w) => [w.out] },
  { key: 'loopReadWrite', ...loop('rw') },
  { key: 'loopReadZeroWrite', ...loop('rzw') },
  { key: 'loopCopyRange', ...loop('cfr') },
  { key: 'loopReadZeroCopyRange', ...loop('rzc') },
  { key: 'catToNull', line: (w) => `cat ${sh(w.piped)} > /dev/null`, outputs: none },
  { key: 'catPipeCat', line: (w) => `cat ${sh(w.piped)} | cat > /dev/null`, outputs: none },
  { key: 'catToFile', line: (w) => `cat ${sh(w.piped)} > ${sh(w.out)}`, outputs: (w) => [w.out] },
  {
    key: 'ddSparseFdatasync',
    line: (w) => `cat ${sh(w.piped)} | dd of=${sh(w.out)} bs=64K iflag=fullblock conv=sparse,fdatasync status=none`,
    outputs: (w) => [w.out],
  },
  {
    key: 'ddDirect',
    line: (w) => `dd if=${sh(w.data)} of=${sh(w.out)} bs=8M oflag=direct status=none`,
    outputs: (w) => [w.out],
  },
  {
    key: 'ddFdatasync',
    line: (w) => `dd if=${sh(w.data)} of=${sh(w.out)} bs=128K conv=fdatasync status=none`,
    outputs: (w) => [w.out],
  },
];

interface PipeRead {
  pipeKiB: number;
  readKiB: number;
  /** The capacity the kernel granted (bytes; -1: no helper to ask), from the last round. */
  pipeBytes: number;
  /** The whole line's seconds (`cat P | node ...`, Node's start-up included) and the child's read loop's. */
  s: number[];
  loopS: number[];
}

const work = mkdtempSync(join(benchScratch(), 'tp-bench-floors-'));
try {
  const files: Files = { data: join(work, 'data.img'), piped: join(work, 'raw.img'), pool: join(work, 'pool'), out: join(work, 'out') };
  makeImage(files.data, DATA, RUNS, DATA / RUNS); // dense: the runs fill it
  makeImage(files.piped, PIPED, RUNS, DATA / RUNS);
  execFileSync('sh', ['-c', `cat ${sh(files.data)} ${sh(files.piped)} > /dev/null`]); // warm the page cache
  execFileSync(process.execPath, [bin, 'init', files.pool, '--size', String(PIPED), '--metadata-size', String(8 * MiB)]);
  execFileSync(process.execPath, [bin, 'import', files.pool, 'v', files.piped], { stdio: 'ignore' });
  // Each copy loop once, untimed: its output must equal the data file (a loop that copies wrong is no floor).
  for (const p of PROBES.filter((x) => x.key.startsWith('loop'))) {
    const { out } = timed(p.line(files));
    if (!out.startsWith('null') && spawnSync('cmp', [files.data, files.out]).status !== 0)
      throw new Error(`${p.key}: the copy differs from the data file`);
    rmSync(files.out, { force: true });
  }
  const loadBefore = loadavg()[0];
  const rounds: Record<string, number[]> = Object.fromEntries(PROBES.map((p) => [p.key, []]));
  const failed: Record<string, string> = {};
  const pipes: PipeRead[] = PIPES_KIB.flatMap((pipeKiB) =>
    READS_KIB.map((readKiB) => ({ pipeKiB, readKiB, pipeBytes: -1, s: [], loopS: [] })),
  );
  for (let r = 0; r < ROUNDS; r++) {
    for (const p of PROBES) {
      if (failed[p.key] !== undefined) continue;
      try {
        const { s, out } = timed(p.line(files));
        const v = p.value === undefined ? s : p.value(s, out);
        if (v === null) failed[p.key] = out.replace(/^null /, '');
        else rounds[p.key].push(v);
      } catch (e) {
        failed[p.key] = (e as Error).message.split('\n')[0];
      } finally {
        for (const f of p.outputs(files)) rmSync(f, { force: true });
      }
    }
    for (const p of pipes) {
      const { s, out } = timed(`cat ${sh(files.piped)} | ${node} ${self} --child pipe ${p.pipeKiB} ${p.readKiB}`);
      const child = JSON.parse(out) as { s: number; bytes: number; pipeBytes: number };
      if (child.bytes !== PIPED) throw new Error(`the pipe child read ${child.bytes} bytes of ${PIPED}`);
      p.s.push(s);
      p.loopS.push(child.s);
      p.pipeBytes = child.pipeBytes;
    }
    console.log(`round ${r + 1} of ${ROUNDS} done`);
  }
  const loadAverage = [Number(loadBefore.toFixed(2)), Number(loadavg()[0].toFixed(2))];
  const medians: Record<string, number | null> = Object.fromEntries(
    PROBES.map((p) => [p.key, failed[p.key] === undefined ? median(rounds[p.key]) : null]),
  );
  const ms = (x: number | null): string => (x === null ? '-' : `${(x * 1000).toFixed(0)} ms`);
  console.log(`\n# bench bulk/floors.js: ${DATA / MiB} MiB of data, ${PIPED / MiB} MiB through the pipe, median of ${ROUNDS} rounds`);
  console.log(`${cpus().length} CPUs, load average ${loadAverage[0]} before, ${loadAverage[1]} after\n`);
  console.log('| probe | median |\n|---|---|');
  for (const p of PROBES) console.log(`| ${p.key} | ${failed[p.key] === undefined ? ms(medians[p.key]) : `failed: ${failed[p.key]}`} |`);
  for (const p of pipes)
    console.log(
      `| cat \\| node, pipe ${p.pipeKiB} KiB (granted ${p.pipeBytes / KiB}), reads ${p.readKiB} KiB | ${ms(median(p.s))} (loop ${ms(median(p.loopS))}) |`,
    );
  if (FIGURES !== undefined && AS !== undefined) {
    recordRun(FIGURES, AS, {
      cpus: cpus().length,
      loadAverage,
      node: process.version,
      quick: QUICK,
      rounds: ROUNDS,
      dataMiB: DATA / MiB,
      pipedMiB: PIPED / MiB,
      batchKiB: COPY_BUFFER / KiB,
      blockKiB: BLOCK / KiB,
      medians,
      probes: rounds,
      failed,
      pipeReads: pipes,
    });
    console.log(`merged into ${FIGURES} as "${AS}"`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
