/**
 * Fork + dispose of a golden volume (what thinpool/testing does per test) against copying the golden image file
 * with `cp --sparse=always` (what a test suite does without it), for a 64 MiB and a 1 GiB image.
 *
 *   node dist/bench/run.js testing/fork-vs-copy [--quick]
 *   node dist/bench/testing/fork-vs-copy.js [--quick] [--figures FILE --as NAME]
 *
 * The images are half data, half zeros (1 MiB of random bytes every 2 MiB), so cp has real data to copy and
 * holes to detect, and the pool has 50% of the blocks provisioned. The image file is in the page cache (it was
 * just written), which is the best case for cp. cp is timed alone (spawn + copy, without removing the copy);
 * a fork is timed with its dispose (snapshot + delete), with and without a 4 KiB write in between (one
 * copy-on-write of a block). Figures are medians; the ratio is cp / (fork + dispose).
 * `--quick`: 64 MiB only, fewer repetitions.
 * `--figures FILE --as NAME` (or `--figures=FILE --as=NAME`, the form the runner `dist/bench/run.js` passes on):
 * also merge this run into FILE (docs/figures/fork-vs-copy.json) under NAME: per image the cp times, per store the
 * load time and the per-batch fork times (medians and every batch), the load average before and after;
 * scripts/figures-fork.mjs renders it into docs/testing.md.
 */
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { GoldenStore } from '../../src/testing/index.js';
import { figuresTarget, recordRun } from '../figures-run.js';
import { median } from '../compare/lib/stats.js';

const MiB = 1024 * 1024;
const quick = process.argv.includes('--quick');

const { file: FIGURES, as: AS } = figuresTarget();

/** Repetitions: cp runs per image, and batches (of forks) per median. */
const CP_REPS = (size: number): number => (quick ? 3 : size >= 1024 * MiB ? 5 : 9);
const BATCHES = quick ? 5 : 11;
const PER_BATCH = 500;
const PER_BATCH_WRITE = 200;

function makeImage(path: string, size: number): void {
  const fd = openSync(path, 'w');
  const buf = Buffer.alloc(MiB);
  try {
    for (let off = 0; off < size; off += 2 * MiB) {
      randomFillSync(buf);
      writeSync(fd, buf, 0, buf.length, off);
    }
    // make the file exactly `size` long (the loop ends on a data MiB when size is a multiple of 2 MiB)
    writeSync(fd, Buffer.alloc(1), 0, 1, size - 1);
  } finally {
    closeSync(fd);
  }
}

/** Every cp's ms (spawn + copy). */
function timeCp(src: string, dst: string, reps: number): number[] {
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    rmSync(dst, { force: true });
    const t0 = process.hrtime.bigint();
    const r = spawnSync('cp', ['--sparse=always', src, dst]);
    const t1 = process.hrtime.bigint();
    if (r.status !== 0) throw new Error(`cp failed: ${r.stderr}`);
    ts.push(Number(t1 - t0) / 1e6);
  }
  rmSync(dst, { force: true });
  return ts;
}

/** Ms per fork+dispose, one figure per batch. */
function timeFork(store: GoldenStore, golden: string, write: boolean, batches: number, perBatch: number): number[] {
  const page = Buffer.alloc(4096, 1);
  const ts: number[] = [];
  for (let b = 0; b < batches; b++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < perBatch; i++) {
      const f = store.fork(golden);
      if (write) f.writeSync(page, ((i * 7919) % 1024) * 4096);
      f.disposeSync();
    }
    const t1 = process.hrtime.bigint();
    ts.push(Number(t1 - t0) / 1e6 / perBatch);
    store.commitSync(); // between batches, as a test run would now and then; not timed
  }
  return ts;
}

function fmt(ms: number): string {
  return ms >= 1 ? `${ms.toFixed(1)} ms` : `${(ms * 1000).toFixed(1)} us`;
}

/** One store's figures for one image (ms; the medians, and every batch's figure). */
interface StoreRun {
  store: 'memory' | 'temp';
  loadMs: number;
  forkMs: number;
  forkBatchesMs: number[];
  forkWriteMs: number;
  forkWriteBatchesMs: number[];
}

interface SizeRun {
  sizeBytes: number;
  cpMs: number;
  cpRunsMs: number[];
  stores: StoreRun[];
}

function main(): void {
  const loadBefore = loadavg()[0];
  const dir = mkdtempSync(join(tmpdir(), 'tp-bench-fork-'));
  const sizes = quick ? [64 * MiB] : [64 * MiB, 1024 * MiB];
  const rows: Record<string, unknown>[] = [];
  const results: SizeRun[] = [];
  try {
    for (const size of sizes) {
      const img = join(dir, `golden-${size / MiB}M.img`);
      makeImage(img, size);
      const cpRunsMs = timeCp(img, join(dir, 'copy.img'), CP_REPS(size));
      const cpMs = median(cpRunsMs);
      const result: SizeRun = { sizeBytes: size, cpMs, cpRunsMs, stores: [] };
      results.push(result);
      for (const kind of ['memory', 'temp'] as const) {
        const store = kind === 'memory' ? GoldenStore.memory({ size: 4 * size }) : GoldenStore.tempSync({ size: 4 * size, parent: dir });
        try {
          const t0 = performance.now();
          store.loadImageSync('golden', img);
          const loadMs = performance.now() - t0;
          timeFork(store, 'golden', false, 2, 200); // warm up
          const forkBatchesMs = timeFork(store, 'golden', false, BATCHES, PER_BATCH);
          const forkWriteBatchesMs = timeFork(store, 'golden', true, BATCHES, PER_BATCH_WRITE);
          const forkMs = median(forkBatchesMs);
          const forkWriteMs = median(forkWriteBatchesMs);
          result.stores.push({ store: kind, loadMs, forkMs, forkBatchesMs, forkWriteMs, forkWriteBatchesMs });
          rows.push({
            image: `${size / MiB} MiB`,
            store: kind,
            cp: fmt(cpMs),
            'fork+dispose': fmt(forkMs),
            ratio: Math.round(cpMs / forkMs),
            'fork+4K write+dispose': fmt(forkWriteMs),
            'ratio (write)': Math.round(cpMs / forkWriteMs),
            'load once': fmt(loadMs),
          });
          console.log(
            JSON.stringify({
              bench: 'testing/fork-vs-copy',
              sizeBytes: size,
              store: kind,
              cpMs,
              forkMs,
              forkWriteMs,
              loadMs,
              ratio: cpMs / forkMs,
            }),
          );
        } finally {
          store.disposeSync();
        }
      }
      rmSync(img, { force: true });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.table(rows);
  const loadAverage = [Number(loadBefore.toFixed(2)), Number(loadavg()[0].toFixed(2))];
  console.log(`${cpus().length} CPUs, load average ${loadAverage[0]} before, ${loadAverage[1]} after`);
  if (FIGURES !== undefined && AS !== undefined) {
    recordRun(FIGURES, AS, {
      cpus: cpus().length,
      loadAverage,
      quick,
      batches: BATCHES,
      forksPerBatch: PER_BATCH,
      forksPerBatchWrite: PER_BATCH_WRITE,
      sizes: results,
    });
    console.log(`merged into ${FIGURES} as "${AS}"`);
  }
}

main();
