/**
 * Read cost against snapshot/clone depth on RADOS (a benchmark, not a test): thinpool snapshot chains in a
 * `rados://` pool against RBD clone chains, on one cluster, in one run.
 *
 * Chains: a base of SIZE written in full (thinpool volume `v`, RBD image `IMG`), then level by level
 *   - thinpool: `thinpool snapshot POOL s(d-1) sd` (one command: a writable snapshot);
 *   - RBD: `rbd snap create`, `rbd snap protect`, `rbd clone` of the level before (three commands: what makes a
 *     writable clone of an RBD image);
 * and 4 KiB written at offset 0 of every new level (so each level holds data of its own and the chain is real;
 * on RBD the write copies up the first 4 MiB object, so reads elsewhere fall through every parent). Snapshot
 * creation is timed per level as whole commands (process start-up and cluster connection included on both
 * sides), medians over the levels.
 *
 * Reads: 4 KiB random reads over the whole volume/image at depths 0, 1, 4, 16 and 64 (`--quick`: up to 16;
 * `--depths=0,1,8` to choose), queue depth 1 and 16: fio (nbd engine) through `thinpool serve` of the pool (a
 * separate process on a Unix socket, one server exporting every depth measured; runs before "unix-hop" used TCP) against `rbd bench --io-type read --io-pattern
 * rand --io-threads 1|16` on the clone at that depth. Each figure is the median of `--reps N` rounds (default 3),
 * after one unrecorded pass over every depth (warm-up), the two systems taking turns within a round. Printed:
 * operations per second, thinpool/librbd at each depth, and each system's rate at depth d against its own rate
 * at depth 0 (1.00: flat).
 *
 * The cluster: `--ceph-conf=FILE` (admin keyring; `--ceph-pool=P`, default rbd; the chains are removed at the
 * end) or, without it, a single-node memstore cluster (with pages) started for the run (test/support/ceph-cluster.ts).
 * `--figures=FILE --as=NAME`: also merge this run into FILE (docs/figures/rados-depth.json) under NAME;
 * scripts/render-figures.mjs renders it into docs/rados.md.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ThinPool } from '../../src/thin/pool.js';
import { destroyRadosPool } from '../../src/thin/rados-pool.js';
import { startCephCluster } from '../../test/support/ceph-cluster.js';
import { argValue, BIN, execFileP, fio, MiB, median, printTable, rbdBench, rbdFill, recordRun, serve } from './_lib.js';

const QUICK = process.argv.includes('--quick');
const SIZE = QUICK ? 32 * MiB : 128 * MiB;
const OPS = QUICK ? 2000 : 8000;
const REPS = Number(argValue('--reps') ?? 3);
const DEPTHS = (argValue('--depths') ?? (QUICK ? '0,1,4,16' : '0,1,4,16,64')).split(',').map(Number);
const QDS = [1, 16];
const FIGURES = argValue('--figures');
const AS = argValue('--as');
if (FIGURES !== undefined && AS === undefined) throw new Error('--figures=FILE needs --as=NAME (e.g. --as=after)');
if (!DEPTHS.every((d) => Number.isInteger(d) && d >= 0 && d <= 1000)) throw new Error('--depths=LIST: whole numbers from 0 to 1000');

const tpName = (d: number): string => (d === 0 ? 'v' : `s${d}`);

interface Row {
  depth: number;
  qd: number;
  rbd: number;
  thinpool: number;
}

async function run(): Promise<void> {
  let conf = argValue('--ceph-conf');
  const cephPool = argValue('--ceph-pool') ?? (conf ? 'rbd' : 'tp');
  // Pages, as in speed.ts: without them memstore keeps each object as one buffer list that every write into its
  // middle splits, so the side written in smaller pieces (thinpool's 64 KiB blocks, against rbd's 4 MiB fill)
  // would read slower for the store's sake, not the client's.
  const cluster = conf ? null : await startCephCluster({ pools: [cephPool], extraConf: ['memstore page set = true'] });
  conf ??= cluster!.conf;
  const ceph = ['-c', conf];
  const tag = `depth${process.pid}`;
  const address = `rados://${cephPool}/${tag}`;
  const rbdName = (d: number): string => `${cephPool}/${tag}${d === 0 ? '' : `-c${d}`}`;
  const levels = Math.max(...DEPTHS);
  let built = -1; // the deepest RBD level that exists
  const create = { thinpoolMs: [] as number[], rbdMs: [] as number[] };
  const rows: Row[] = [];
  try {
    // Depth 0 on both sides, written in full so that reads find data.
    await execFileP('rbd', [...ceph, 'create', rbdName(0), '--size', `${SIZE / MiB}M`]);
    built = 0;
    await rbdFill(conf, rbdName(0), SIZE);
    const pool = await ThinPool.format(address, { size: SIZE + 64 * MiB, ceph: { conf } });
    const v = await pool.createThin('v', { size: SIZE });
    const chunk = new Uint8Array(4 * MiB).fill(0x5a);
    for (let off = 0; off < SIZE; off += chunk.length) v.writeSync(chunk, off);
    await pool.close();

    for (let d = 1; d <= levels; d++) {
      let t = performance.now();
      await execFileP(process.execPath, [BIN, 'snapshot', address, tpName(d - 1), tpName(d), '--ceph-conf', conf]);
      create.thinpoolMs.push(performance.now() - t);
      t = performance.now();
      await execFileP('rbd', [...ceph, 'snap', 'create', `${rbdName(d - 1)}@s`]);
      await execFileP('rbd', [...ceph, 'snap', 'protect', `${rbdName(d - 1)}@s`]);
      await execFileP('rbd', [...ceph, 'clone', `${rbdName(d - 1)}@s`, rbdName(d)]);
      create.rbdMs.push(performance.now() - t);
      built = d;
      // A little of its own in every level (not timed): 4 KiB at offset 0.
      const little = ['bench', '--io-type', 'write', '--io-size', '4K', '--io-threads', '1', '--io-pattern', 'seq', '--io-total', '4096'];
      await execFileP('rbd', [...ceph, ...little, rbdName(d)]);
      const p = await ThinPool.open(address, { ceph: { conf } });
      p.volume(tpName(d)).writeSync(new Uint8Array(4096).fill(d & 0xff), 0);
      await p.close();
      if (d % 8 === 0) console.log(`chains at depth ${d} of ${levels}`);
    }

    const sockets = mkdtempSync(join(tmpdir(), 'tp-bench-depth-'));
    const server = await serve(address, conf, DEPTHS.map(tpName), sockets);
    try {
      const cases = DEPTHS.flatMap((depth) => QDS.map((qd) => ({ depth, qd, rbd: [] as number[], thinpool: [] as number[] })));
      // Not recorded: one pass over every depth first, so that neither the server's start (JIT, metadata
      // cache) nor the cluster's counts against whichever depth comes first.
      for (const depth of DEPTHS) {
        await fio(server.exportUri(tpName(depth)), 'read', 16, SIZE, OPS / 4);
        await rbdBench(conf, rbdName(depth), 'read', 16, OPS / 4);
      }
      for (let rep = 0; rep < REPS; rep++) {
        for (const c of cases) {
          const rbdFirst = rep % 2 === 0;
          if (rbdFirst) c.rbd.push(await rbdBench(conf, rbdName(c.depth), 'read', c.qd, OPS));
          c.thinpool.push(await fio(server.exportUri(tpName(c.depth)), 'read', c.qd, SIZE, OPS));
          if (!rbdFirst) c.rbd.push(await rbdBench(conf, rbdName(c.depth), 'read', c.qd, OPS));
        }
      }
      for (const c of cases) rows.push({ depth: c.depth, qd: c.qd, rbd: median(c.rbd), thinpool: median(c.thinpool) });
    } finally {
      await server.stop();
      rmSync(sockets, { recursive: true, force: true });
    }
  } finally {
    if (cluster === null) {
      // A cluster of the user's: remove what this run made, deepest clone first.
      for (let d = built; d >= 1; d--) {
        await execFileP('rbd', [...ceph, 'rm', rbdName(d)]).catch(() => undefined);
        await execFileP('rbd', [...ceph, 'snap', 'unprotect', `${rbdName(d - 1)}@s`]).catch(() => undefined);
        await execFileP('rbd', [...ceph, 'snap', 'rm', `${rbdName(d - 1)}@s`]).catch(() => undefined);
      }
      if (built >= 0) await execFileP('rbd', [...ceph, 'rm', rbdName(0)]).catch(() => undefined);
      try {
        destroyRadosPool(address, { conf });
      } catch {
        /* not formatted */
      }
    }
    await cluster?.stop();
  }

  const at0 = (qd: number, k: 'rbd' | 'thinpool'): number => rows.find((r) => r.depth === DEPTHS[0] && r.qd === qd)![k];
  console.log(
    `4 KiB random reads against snapshot/clone depth: ${SIZE / MiB} MiB volume/image, thinpool serve (fio nbd) vs rbd bench on the same cluster (${cluster ? 'memstore, 1 OSD, started for this run' : conf})`,
  );
  printTable(
    ['depth', 'QD', 'librbd op/s', 'thinpool op/s', 'thinpool/librbd', `librbd vs depth ${DEPTHS[0]}`, `thinpool vs depth ${DEPTHS[0]}`],
    rows.map((r) => [
      String(r.depth),
      String(r.qd),
      r.rbd.toFixed(0),
      r.thinpool.toFixed(0),
      (r.thinpool / r.rbd).toFixed(2),
      (r.rbd / at0(r.qd, 'rbd')).toFixed(2),
      (r.thinpool / at0(r.qd, 'thinpool')).toFixed(2),
    ]),
  );
  const tp = median(create.thinpoolMs);
  const rb = median(create.rbdMs);
  if (levels > 0) {
    console.log(
      `snapshot creation, whole commands, median of ${levels} levels: thinpool snapshot ${tp.toFixed(0)} ms; rbd snap create + protect + clone ${rb.toFixed(0)} ms (thinpool/rbd ${(tp / rb).toFixed(2)})`,
    );
  }
  console.log(`median of ${REPS} rounds, ${OPS} reads per case; load average ${loadavg()[0].toFixed(1)} at the end`);
  if (FIGURES !== undefined) {
    recordRun(FIGURES, AS!, {
      sizeMiB: SIZE / MiB,
      ops: OPS,
      reps: REPS,
      levels,
      cluster: cluster ? 'memstore (page set), 1 OSD, no manager, started for the run' : 'given by --ceph-conf',
      loadAverage: Number(loadavg()[0].toFixed(1)),
      hop: 'unix socket',
      create: levels > 0 ? { thinpoolMs: Math.round(tp), rbdMs: Math.round(rb) } : null,
      rows,
    });
  }
}

run().catch((e) => {
  console.error(e);
  process.exit(1);
});
