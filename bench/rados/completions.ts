/**
 * How librados completions reach Node's event loop (a benchmark, not a test): 4 KiB reads and writes on one
 * RADOS pool from this process, at queue depth 1 and 16, through
 *   - `sync`: rados_read / rados_write on the main thread (no hand-off at all: the floor at depth 1),
 *   - `koffi`: aio with a koffi worker blocking on the oldest completion (two thread hand-offs),
 *   - `native`: aio with the native helper's C callback waking the event loop (one hand-off).
 * Paths alternate within each round (same cluster, same objects); the table gives medians of the rounds and
 * each path's rate as a ratio to `sync` (depth 1) and `native` against `koffi`.
 *
 * Usage: node dist/bench/rados/completions.js [--ops=N] [--reps=N] [--conf=CEPH_CONF --pool=POOL]
 *        [--figures=docs/figures/rados-completions.json --as=NAME]
 * Without --conf a single-node cluster (memstore OSD) is started for the run and stopped after. With --figures
 * the run is merged into that JSON under NAME; scripts/render-figures.mjs renders it into docs/rados.md.
 */
import { loadavg } from 'node:os';
import { RadosCluster, RadosIoctx } from '../../src/io/librados.js';
import { startCephCluster } from '../../test/support/ceph-cluster.js';
import { argValue, median, recordRun } from './_lib.js';

const OPS = Number(argValue('--ops') ?? 2000);
const REPS = Number(argValue('--reps') ?? 3);
const OBJECTS = 16;
const KiB = 1024;

type Path = 'sync' | 'koffi' | 'native';

/** One path's run: requests per second and this process's CPU microseconds per request (all its threads). */
async function run(io: RadosIoctx, path: Path, kind: 'read' | 'write', depth: number): Promise<{ rate: number; cpuUs: number }> {
  const bufs = Array.from({ length: depth }, () => new Uint8Array(4 * KiB).fill(path.length));
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  if (path === 'sync') {
    for (let i = 0; i < OPS; i++) {
      const oid = `c-${i % OBJECTS}`;
      const off = ((i * 7) % 256) * 4 * KiB;
      if (kind === 'read') io.read(oid, bufs[0], off);
      else io.write(oid, bufs[0], off);
    }
  } else {
    if (!RadosIoctx.useCompletionPath(path)) throw new Error('the native helper is not built: npm run install');
    const worker = async (w: number) => {
      for (let i = next++; i < OPS; i = next++) {
        const oid = `c-${i % OBJECTS}`;
        const off = ((i * 7) % 256) * 4 * KiB;
        if (kind === 'read') await io.aioRead(oid, bufs[w], off);
        else await io.aioWrite(oid, bufs[w], off);
      }
    };
    await Promise.all(Array.from({ length: depth }, (_, w) => worker(w)));
  }
  const rate = OPS / (Number(process.hrtime.bigint() - t0) / 1e9);
  const cpu = process.cpuUsage(cpu0);
  return { rate, cpuUs: (cpu.user + cpu.system) / OPS };
}

async function main(): Promise<void> {
  const conf = argValue('--conf');
  const pool = argValue('--pool') ?? 'bench';
  const cluster = conf ? null : await startCephCluster({ pools: [pool] });
  const client = RadosCluster.connect({ conf: conf ?? cluster!.conf });
  try {
    const io = client.ioctx(pool);
    const fill = new Uint8Array(1024 * KiB).fill(1);
    for (let o = 0; o < OBJECTS; o++) io.write(`c-${o}`, fill, 0);
    const paths: Path[] = ['sync', 'koffi', 'native'];
    const rows: { kind: string; depth: number; rates: Record<Path, number>; cpuUs: Record<Path, number> }[] = [];
    for (const kind of ['read', 'write'] as const) {
      for (const depth of [1, 16]) {
        const got: Record<Path, number[]> = { sync: [], koffi: [], native: [] };
        const cpu: Record<Path, number[]> = { sync: [], koffi: [], native: [] };
        for (let r = 0; r < REPS; r++) {
          for (const p of paths) {
            if (p === 'sync' && depth > 1) continue;
            const one = await run(io, p, kind, depth);
            got[p].push(one.rate);
            cpu[p].push(one.cpuUs);
          }
        }
        const med = (xs: number[]) => (xs.length ? median(xs) : NaN);
        const rates = { sync: med(got.sync), koffi: med(got.koffi), native: med(got.native) };
        const cpuUs = { sync: med(cpu.sync), koffi: med(cpu.koffi), native: med(cpu.native) };
        rows.push({ kind, depth, rates, cpuUs });
      }
    }
    const f = (x: number) => (Number.isNaN(x) ? '-' : x.toFixed(0));
    const q = (x: number) => (Number.isNaN(x) ? '-' : x.toFixed(2));
    const load = Number(loadavg()[0].toFixed(1));
    console.log(`librados completions, 4 KiB, ${OPS} ops per run, medians of ${REPS} rounds, load ${load}`);
    console.log('| I/O | depth | sync op/s | koffi op/s | native op/s | native / koffi | native / sync | CPU µs/op sync, koffi, native |');
    console.log('|---|---:|---:|---:|---:|---:|---:|---|');
    for (const r of rows) {
      const { sync, koffi, native } = r.rates;
      const c = r.cpuUs;
      console.log(
        `| ${r.kind} | ${r.depth} | ${f(sync)} | ${f(koffi)} | ${f(native)} | ${q(native / koffi)} | ${q(native / sync)} | ${f(c.sync)}, ${f(c.koffi)}, ${f(c.native)} |`,
      );
    }
    const figures = argValue('--figures');
    if (figures) {
      const cl = conf ? 'the cluster given' : 'memstore, 1 OSD, no manager, started for the run';
      recordRun(figures, argValue('--as') ?? 'latest', { ops: OPS, reps: REPS, cluster: cl, loadAverage: load, rows });
    }
  } finally {
    client.close();
    await cluster?.stop();
  }
}

await main();
