/**
 * Why the bulk commands copy through a 128 KiB buffer (COPY_BUFFER in src/cli/bulk.ts, WRITE_PIECE in
 * src/io/sparse.ts):
 *
 *   node dist/bench/bulk/buffer-size.js [--quick] [--reps N] [--mib N] [--figures FILE --as NAME]
 *
 * The loop every bulk copy runs between the page cache and a file (export, import, write): read a batch from a
 * warm file, write it to a fresh file. It is timed here alone, in one process (no start-up, no engine), with
 * batches of 32 KiB to 1 MiB, each written in one call or in pieces of at most 256 KiB (the previous setting), in
 * interleaved rounds after an untimed `sync`. The baseline is the limit a user knows: `cp --sparse=always` of the
 * same bytes in the same rounds (coreutils reads and writes 128 KiB at a time), run as a process, so its figure
 * includes its own start-up (about a millisecond).
 *
 * Prints MiB/s per setting and the ratio of its time to cp's (below 1: faster than cp). Each loop runs in a fresh
 * child process, as a command line does: in one long-lived process that reuses recycled memory for the buffer,
 * large batches measured differently (only a 1 MiB write in one call was slow there), and why a fresh mapping
 * copies slower from 256 KiB on was not found; the figures decide. The recorded runs are in
 * docs/figures/bulk-buffer.json, rendered into docs/cli.md (section `bulk-buffer`, scripts/figures-bulk-probes.mjs).
 *
 * `--quick`: 64 MiB copied, 2 rounds (a smoke run of the bench itself); default 256 MiB, 5 rounds.
 * `--figures FILE --as NAME`: also merge this run (every round's seconds per setting and cp's) into FILE
 * (docs/figures/bulk-buffer.json) under NAME, with the commit measured. Set THINPOOL_BENCH_DIR to put the files
 * elsewhere than the temporary directory.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, ftruncateSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { median } from '../compare/lib/stats.js';
import { argValue, figuresTarget, recordRun } from '../figures-run.js';
import { benchScratch } from '../_root.js';

const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const REPS = Number(argValue('--reps') ?? (QUICK ? 2 : 5));
const MIB = Number(argValue('--mib') ?? (QUICK ? 64 : 256));
const { file: FIGURES, as: AS } = figuresTarget();
const KiB = 1024;

const work = argv.includes('--child') ? '' : mkdtempSync(join(benchScratch(), 'thinpool-bufsize-'));
const src = join(work, 'src.img');
const dst = join(work, 'dst.img');

/** The source: MIB MiB of pseudo-random bytes (no zeros to skip), read once to warm the page cache. */
function makeSource(): void {
  const fd = openSync(src, 'w');
  const chunk = Buffer.allocUnsafe(KiB * KiB);
  let x = 0x9e3779b9;
  for (let m = 0; m < MIB; m++) {
    for (let i = 0; i < chunk.length; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      chunk.writeInt32LE(x | 0, i);
    }
    writeSync(fd, chunk, 0, chunk.length, m * chunk.length);
  }
  closeSync(fd);
  execFileSync('sh', ['-c', `cat '${src}' > /dev/null && sync`]);
}

/**
 * Seconds to copy the source to a fresh file through a `batch`-byte buffer, writes of at most `piece` bytes, in a
 * child process of its own: a command line allocates its buffer once in a fresh process, and a buffer that a
 * long-lived process has recycled measured differently (see the header).
 */
function copyLoop(batch: number, piece: number): number {
  rmSync(dst, { force: true });
  execFileSync('sync');
  const out = execFileSync(process.execPath, [process.argv[1], '--child', String(batch), String(piece), src, dst, String(MIB)]);
  return Number(out.toString().trim());
}

/** The child: the loop itself, timed from the opening of the files to their closing. */
function child(batch: number, piece: number, from: string, to: string, mib: number): void {
  const t0 = process.hrtime.bigint();
  const i = openSync(from, 'r');
  const o = openSync(to, 'w');
  const total = mib * KiB * KiB;
  ftruncateSync(o, total);
  const buf = Buffer.allocUnsafe(batch);
  for (let pos = 0; pos < total; pos += batch) {
    const n = readSync(i, buf, 0, Math.min(batch, total - pos), pos);
    for (let off = 0; off < n; off += piece) writeSync(o, buf, off, Math.min(piece, n - off), pos + off);
  }
  closeSync(i);
  closeSync(o);
  process.stdout.write(`${Number(process.hrtime.bigint() - t0) / 1e9}\n`);
}

function cp(): number {
  rmSync(dst, { force: true });
  execFileSync('sync');
  const t0 = process.hrtime.bigint();
  execFileSync('cp', ['--sparse=always', src, dst]);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** The settings timed; `name` is how the docs' table names a row (the recorded run keeps it). */
const settings: Array<{ name: string; batch: number; piece: number }> = [];
for (const k of [32, 64, 128, 256, 512, 1024]) settings.push({ name: `${k} KiB batch, one write`, batch: k * KiB, piece: k * KiB });
settings.push({ name: '1 MiB batch, 256 KiB writes (before)', batch: 1024 * KiB, piece: 256 * KiB });

const childAt = argv.indexOf('--child');
if (childAt >= 0) {
  const [batch, piece, from, to, mib] = argv.slice(childAt + 1);
  child(Number(batch), Number(piece), from, to, Number(mib));
  process.exit(0);
}

try {
  // The machine is shared: the 1-minute load average before and after the run goes with the figures.
  const loadBefore = loadavg()[0];
  makeSource();
  const times = new Map<string, number[]>(settings.map((s) => [s.name, []]));
  const cpTimes: number[] = [];
  for (let r = 0; r < REPS; r++) {
    cpTimes.push(cp());
    for (const s of settings) times.get(s.name)?.push(copyLoop(s.batch, s.piece));
  }
  const loadAverage = [Number(loadBefore.toFixed(2)), Number(loadavg()[0].toFixed(2))];
  const cpS = median(cpTimes);
  console.log(`# bench bulk/buffer-size.js: copy of ${MIB} MiB from a warm file to a fresh one, median of ${REPS} rounds`);
  console.log(`node ${process.version}, ${cpus().length} CPUs, load average ${loadAverage[0]} before, ${loadAverage[1]} after\n`);
  console.log('| loop | MiB/s | time vs `cp --sparse=always` |');
  console.log('|---|---|---|');
  console.log(`| \`cp --sparse=always\` (process) | ${(MIB / cpS).toFixed(0)} | 1.00 |`);
  for (const s of settings) {
    const t = median(times.get(s.name) ?? []);
    console.log(`| ${s.name} | ${(MIB / t).toFixed(0)} | ${(t / cpS).toFixed(2)} |`);
  }
  if (FIGURES !== undefined && AS !== undefined) {
    recordRun(FIGURES, AS, {
      cpus: cpus().length,
      loadAverage,
      node: process.version,
      quick: QUICK,
      rounds: REPS,
      mib: MIB,
      cpS: cpTimes,
      cpMedianS: cpS,
      settings: settings.map((s) => ({
        name: s.name,
        batchKiB: s.batch / KiB,
        pieceKiB: s.piece / KiB,
        s: times.get(s.name) ?? [],
        medianS: median(times.get(s.name) ?? []),
      })),
    });
    console.log(`merged into ${FIGURES} as "${AS}"`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
