/**
 * Bulk data through the command line against the tools it replaces (issue 21), both sides timed in one run:
 *
 * | thinpool                          | reference                                   | goal   |
 * |-----------------------------------|---------------------------------------------|--------|
 * | `thinpool import POOL v raw.img`  | `qemu-img convert -O qcow2` (also with `-t writeback`, which flushes its output as thinpool's commit does; and `cp --sparse=always`) | 1.5x |
 * | `thinpool export POOL v out.img`  | `cp --sparse=always raw.img out.img`        | 1.5x   |
 * | `thinpool read POOL v > /dev/null`| `cat raw.img > /dev/null`                   | 2x     |
 * | `cat raw.img \| thinpool write POOL w` | `cat raw.img > file` (also `dd conv=sparse,fdatasync`, which skips all-zero blocks and flushes as thinpool does) | 2x |
 *
 * The image: 1 GiB raw holding 256 MiB of random data in 8 MiB runs spread evenly, the rest holes; and an 8 GiB
 * sparse variant with the same 256 MiB of data. Page cache warm. Each command runs `--reps` times (default 3),
 * thinpool and the reference alternating; the figure is the median wall time, and the peak RSS of the command's
 * processes (GNU time's %M) and the CPU time of the command line (user + system, all its processes: steadier than
 * wall time when the machine is loaded; the 0.01 s resolution makes small reference figures coarse) are printed
 * for each side. Every command is a fresh process (`node bin/thinpool.js`),
 * so thinpool's figures include Node's start-up; `node -e ""` is timed in the same rounds, and each row also
 * prints the floor that start-up sets (start-up + reference time, against the reference). Before each timed
 * command an untimed `sync` writes out the dirty pages the previous one left (the references do not sync, and
 * thinpool's commit does: without it each side would pay for the other's writeback). Checks once per size that the export equals the image byte for
 * byte and that `read` and `write` round-trip.
 *
 *   node dist/bench/bulk/speed.js [--quick] [--reps N] [--figures FILE --as NAME [--note TEXT]]
 *
 * `--quick`: a 64 MiB image (16 MiB of data in 2 MiB runs) and one repetition (a smoke run of the bench itself).
 * `--skip VERB:GiB` (repeatable): do not run thinpool's VERB (import, export, read, write) at that size, e.g. `--skip
 * write:8` for a version that holds the whole input of `write` in memory.
 * `--gib N` (repeatable): only the image of N GiB (1 or 8), e.g. `--gib 1`.
 * `--figures FILE --as NAME`: also merge this run into FILE (docs/figures/bulk.json) under NAME (e.g. `before`,
 * `after`), with the commit measured; scripts/render-figures.mjs turns it into the table in docs/cli.md.
 * `--note TEXT` (with `--figures`): what changed since the run before (code, method, what shared the machine),
 * recorded as the run's `note` and printed with its stamp line in docs/cli.md. Words only: the figures are the run's.
 * Set THINPOOL_BENCH_DIR to put the images elsewhere than the temporary directory.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { argValue, figuresTarget, recordRun } from '../figures-run.js';
import { benchScratch, findRoot } from '../_root.js';
import { makeImage, sh } from './_image.js';
import { median } from '../compare/lib/stats.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const REPS = Number(argValue('--reps') ?? (QUICK ? 1 : 3));
const { file: FIGURES, as: AS } = figuresTarget();
const GIBS = argv.flatMap((a, i) => (argv[i - 1] === '--gib' ? [Number(a)] : []));
const SKIP = new Set(argv.flatMap((a, i) => (argv[i - 1] === '--skip' ? [a] : [])));
const NOTE = argValue('--note');
if (NOTE !== undefined && FIGURES === undefined)
  throw new Error('--note TEXT goes with --figures FILE --as NAME (it is recorded with the run)');

const root = findRoot();
const bin = resolve(root, 'bin/thinpool.js');
if (!existsSync(join(root, 'dist/src/cli/main.js'))) throw new Error('dist/ is missing: run `npm run build` first');
for (const tool of ['qemu-img', 'cp', 'cat', 'cmp']) {
  if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0)
    throw new Error(`${tool} is missing (Debian package ${tool === 'qemu-img' ? 'qemu-utils' : 'coreutils'})`);
}
const TIME = '/usr/bin/time';
if (!existsSync(TIME)) throw new Error('/usr/bin/time is missing (Debian package time): it measures peak memory');

const tp = (args: string): string => `${sh(process.execPath)} ${sh(bin)} ${args}`;

interface Timed {
  s: number;
  rssMiB: number;
  cpuS: number;
}

/**
 * Run a shell command line under GNU time: wall seconds, peak RSS (the largest process of the line) and CPU
 * seconds (user + system of every process of the line: steadier than wall time on a loaded machine).
 */
function run(line: string, rssFile: string): Timed {
  const t0 = performance.now();
  const r = spawnSync(TIME, ['-f', '%M %U %S', '-o', rssFile, 'sh', '-c', line], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  const s = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${line} failed (exit ${r.status}): ${r.stderr.trim()}`);
  const [kib, user, sys] = readFileSync(rssFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
  return { s, rssMiB: kib / 1024, cpuS: user + sys };
}

/** Write every dirty page out (untimed, between commands). */
function settle(): void {
  execFileSync('sync');
}

interface Row {
  command: string;
  reference: string;
  thinpoolS: number | null;
  referenceS: number;
  ratio: number | null;
  goal: number;
  thinpoolRssMiB: number | null;
  referenceRssMiB: number;
  /** Median CPU seconds (user + system) of each side, and their ratio. */
  thinpoolCpuS?: number | null;
  referenceCpuS?: number;
  cpuRatio?: number | null;
  /**
   * Median wall seconds of `node -e ""` measured in the same rounds: the start-up any Node command line pays,
   * which the C tools do not. `floorRatio` = (startupS + referenceS) / referenceS: the ratio a Node CLI would show
   * if it did the work exactly as fast as the reference.
   */
  startupS?: number;
  floorRatio?: number;
  failed?: string;
}

function check(cond: boolean, what: string): void {
  if (!cond) throw new Error(`check failed: ${what}`);
}

function bench(work: string, label: string, size: number, runs: number, runLen: number): Row[] {
  const img = join(work, 'raw.img');
  const rss = join(work, 'rss');
  makeImage(img, size, runs, runLen);
  execFileSync('sh', ['-c', `cat ${sh(img)} > /dev/null`]); // warm the page cache
  // Room for the import and for a write of the whole image (a write that provisioned every block).
  const poolSize = size + 2 * runs * runLen;
  const pool = join(work, 'pool');
  const fresh = (): void => {
    rmSync(pool, { recursive: true, force: true });
    execFileSync(process.execPath, [
      bin,
      'init',
      pool,
      '--size',
      String(poolSize),
      '--metadata-size',
      String(Math.max(8 * MiB, poolSize / 256)),
    ]);
  };
  const rows: Row[] = [];
  const pair = (
    command: string,
    reference: string,
    goal: number,
    prepTp: () => void,
    tpLine: string,
    prepRef: () => void,
    refLine: string,
  ): boolean => {
    const a: Timed[] = [];
    const b: Timed[] = [];
    const node: Timed[] = [];
    const verb = command.replace(/^.*thinpool (\w+).*$/, '$1');
    let failed: string | undefined = SKIP.has(`${verb}:${size / GiB}`) ? 'not run (--skip)' : undefined;
    for (let i = 0; i < REPS; i++) {
      // Every timed command starts with no dirty pages left by the one before (untimed `sync`): neither side
      // pays for the other's writeback.
      prepRef();
      settle();
      b.push(run(refLine, rss));
      node.push(run(`${sh(process.execPath)} -e ""`, rss));
      if (failed !== undefined) continue;
      prepTp();
      settle();
      try {
        a.push(run(tpLine, rss));
      } catch (e) {
        failed = (e as Error).message.split('\n')[0].replace(/^.* failed \(/, '(');
        console.log(`${label}: ${command} failed: ${failed}`);
      }
    }
    const rs = median(b.map((t) => t.s));
    const ts = failed === undefined ? median(a.map((t) => t.s)) : null;
    const tc = failed === undefined ? median(a.map((t) => t.cpuS)) : null;
    const rc = median(b.map((t) => t.cpuS));
    const startupS = median(node.map((t) => t.s));
    rows.push({
      command,
      reference,
      thinpoolS: ts,
      referenceS: rs,
      ratio: ts === null ? null : ts / rs,
      goal,
      thinpoolRssMiB: failed === undefined ? Math.max(...a.map((t) => t.rssMiB)) : null,
      referenceRssMiB: Math.max(...b.map((t) => t.rssMiB)),
      thinpoolCpuS: tc,
      referenceCpuS: rc,
      cpuRatio: tc === null ? null : tc / Math.max(rc, 0.01),
      startupS,
      floorRatio: (startupS + rs) / rs,
      ...(failed === undefined ? {} : { failed }),
    });
    return failed === undefined;
  };
  const qcow = join(work, 'out.qcow2');
  const copy = join(work, 'copy.img');
  const out = join(work, 'out.img');
  const noop = (): void => undefined;
  const rmOut = (p: string) => (): void => rmSync(p, { force: true });
  void pair(
    'thinpool import POOL v raw.img',
    'qemu-img convert -O qcow2',
    1.5,
    fresh,
    tp(`import ${sh(pool)} v ${sh(img)}`),
    rmOut(qcow),
    `qemu-img convert -O qcow2 ${sh(img)} ${sh(qcow)}`,
  );
  rmSync(qcow, { force: true });
  // Like against like: qemu-img's default cache mode for its output is `unsafe` (no flush: the copy may still be
  // in the page cache when it exits); thinpool's import ends with a commit, which flushes the data first.
  // `-t writeback` makes qemu-img flush its output before it exits.
  void pair(
    'thinpool import POOL v raw.img',
    'qemu-img convert -O qcow2 -t writeback (flushed)',
    1.5,
    fresh,
    tp(`import ${sh(pool)} v ${sh(img)}`),
    rmOut(qcow),
    `qemu-img convert -t writeback -O qcow2 ${sh(img)} ${sh(qcow)}`,
  );
  rmSync(qcow, { force: true });
  void pair(
    'thinpool import POOL v raw.img',
    'cp --sparse=always',
    1.5,
    fresh,
    tp(`import ${sh(pool)} v ${sh(img)}`),
    rmOut(copy),
    `cp --sparse=always ${sh(img)} ${sh(copy)}`,
  );
  const exported = pair(
    'thinpool export POOL v out.img',
    'cp --sparse=always',
    1.5,
    rmOut(out),
    tp(`export ${sh(pool)} v ${sh(out)}`),
    rmOut(copy),
    `cp --sparse=always ${sh(img)} ${sh(copy)}`,
  );
  // Checks (where export ran: not under --skip export:N): the export equals the image, and takes no more space
  // than cp's copy.
  if (exported) {
    check(spawnSync('cmp', [img, out]).status === 0, `${label}: the export differs from the image`);
    const blocks = (p: string): number => statSync(p).blocks;
    check(
      blocks(out) <= blocks(copy),
      `${label}: the export (${blocks(out)} sectors) takes more space than cp --sparse=always (${blocks(copy)})`,
    );
  }
  rmSync(copy, { force: true });
  rmSync(out, { force: true });
  void pair(
    'thinpool read POOL v > /dev/null',
    'cat raw.img > /dev/null',
    2,
    noop,
    `${tp(`read ${sh(pool)} v`)} > /dev/null`,
    noop,
    `cat ${sh(img)} > /dev/null`,
  );
  check(spawnSync('sh', ['-c', `${tp(`read ${sh(pool)} v`)} | cmp - ${sh(img)}`]).status === 0, `${label}: read differs from the image`);
  const file = join(work, 'file');
  const recreate = (): void => {
    execFileSync(process.execPath, [bin, 'delete', pool, 'w'], { stdio: 'ignore' });
    execFileSync(process.execPath, [bin, 'create', pool, 'w', '--size', String(size)]);
  };
  execFileSync(process.execPath, [bin, 'create', pool, 'w', '--size', String(size)]);
  const wrote = pair(
    'cat raw.img | thinpool write POOL w',
    'cat raw.img > file',
    2,
    recreate,
    `cat ${sh(img)} | ${tp(`write ${sh(pool)} w`)}`,
    rmOut(file),
    `cat ${sh(img)} > ${sh(file)}`,
  );
  rmSync(file, { force: true });
  // Like against like: `cat > file` writes the zeros as data and leaves them in the page cache; thinpool's write
  // leaves all-zero blocks unprovisioned and ends with a commit, which flushes the data first. dd with
  // conv=sparse seeks over all-zero blocks (of its 64 KiB, the pool's block size) and conv=fdatasync flushes
  // before it exits; iflag=fullblock keeps its blocks whole when the pipe returns short reads.
  void pair(
    'cat raw.img | thinpool write POOL w',
    'dd conv=sparse,fdatasync from the pipe (zeros skipped, flushed)',
    2,
    recreate,
    `cat ${sh(img)} | ${tp(`write ${sh(pool)} w`)}`,
    rmOut(file),
    `cat ${sh(img)} | dd of=${sh(file)} bs=64K iflag=fullblock conv=sparse,fdatasync status=none`,
  );
  rmSync(file, { force: true });
  if (wrote)
    check(
      spawnSync('sh', ['-c', `${tp(`read ${sh(pool)} w`)} | cmp - ${sh(img)}`]).status === 0,
      `${label}: what write stored differs from the image`,
    );
  rmSync(pool, { recursive: true, force: true });
  rmSync(img, { force: true });
  return rows;
}

function table(label: string, rows: Row[]): string {
  const f = (x: number | null): string => (x === null ? 'failed' : x.toFixed(2));
  return [
    `${label}:`,
    '| command | thinpool s | reference | reference s | ratio | goal | floor: node start-up + reference | CPU s thinpool / reference (ratio) | peak RSS thinpool / reference |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| \`${r.command}\` | ${f(r.thinpoolS)} | \`${r.reference}\` | ${f(r.referenceS)} | ${r.ratio === null ? '-' : `**${f(r.ratio)}x**`} | ${r.goal}x | ${r.floorRatio === undefined ? '-' : `${f(r.floorRatio)}x (${f(r.startupS!)} s)`} | ${f(r.thinpoolCpuS ?? null)} / ${f(r.referenceCpuS ?? null)} (${r.cpuRatio == null ? '-' : `${f(r.cpuRatio)}x`}) | ${r.thinpoolRssMiB?.toFixed(0) ?? '-'} / ${r.referenceRssMiB.toFixed(0)} MiB |`,
    ),
    ...rows.filter((r) => r.failed !== undefined).map((r) => `\`${r.command}\` failed: ${r.failed}`),
  ].join('\n');
}

const work = mkdtempSync(join(benchScratch(), 'tp-bench-bulk-'));
try {
  const sizes = QUICK
    ? [{ label: '64 MiB image, 16 MiB of data', size: 64 * MiB, runs: 8, runLen: 2 * MiB }]
    : [
        { label: '1 GiB image, 256 MiB of data in 8 MiB runs', size: GiB, runs: 32, runLen: 8 * MiB },
        { label: '8 GiB image (sparse), 256 MiB of data in 8 MiB runs', size: 8 * GiB, runs: 32, runLen: 8 * MiB },
      ];
  const results: Array<{ label: string; rows: Row[] }> = [];
  // The machine is shared: the 1-minute load average before and after the run goes with the figures.
  const loadBefore = loadavg()[0];
  for (const s of sizes.filter((z) => QUICK || GIBS.length === 0 || GIBS.includes(z.size / GiB))) {
    const rows = bench(work, s.label, s.size, s.runs, s.runLen);
    results.push({ label: s.label, rows });
    console.log(`\n${table(s.label, rows)}`);
  }
  const loadAverage = [Number(loadBefore.toFixed(2)), Number(loadavg()[0].toFixed(2))];
  console.log(
    `\nmedian of ${REPS} runs each, thinpool and reference alternating; ${cpus().length} CPUs (a shared machine: figures are noisy), load average ${loadAverage[0]} before, ${loadAverage[1]} after`,
  );
  if (FIGURES !== undefined && AS !== undefined) {
    recordRun(FIGURES, AS, {
      ...(NOTE === undefined ? {} : { note: NOTE }),
      cpus: cpus().length,
      loadAverage,
      reps: REPS,
      quick: QUICK,
      sizes: results,
    });
    console.log(`merged into ${FIGURES} as "${AS}"`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
