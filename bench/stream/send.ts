/**
 * Send of a small change (a benchmark, not a test): a 1 GiB volume of random data, snapshot BASE, 1% of its
 * blocks rewritten (one 4 KiB write each, at random), snapshot NEXT. Measured in one run, to files on the same
 * disk:
 *   - `thinpool send NEXT --from BASE` (library sendStream), time and stream bytes;
 *   - a full `thinpool export NEXT` (raw sparse image, the CLI command) and a full `thinpool send NEXT`;
 *   - with a Ceph cluster: the same two snapshots in a new RBD image (the thinpool streams applied with
 *     `rbd import-diff`), and `rbd export-diff --from-snap BASE IMAGE@NEXT` of the same change; the image is
 *     removed afterwards. The cluster: `--ceph-conf=FILE` (a cluster's ceph.conf with an admin keyring;
 *     `--rbd-pool=P`, default rbd), or `--start-ceph`, a throwaway single-node cluster with a memstore OSD
 *     started for the run (test/support/ceph-cluster.ts; the Ceph daemons must be installed). Neither: no rbd row,
 *     and the run says why.
 * Prints each as a ratio to the incremental send (time) and the stream's size.
 *
 *   node dist/bench/stream/send.js [--quick] [--ceph-conf=FILE | --start-ceph] [--figures FILE --as NAME]
 *
 * `--quick`: a 64 MiB volume.
 * `--figures FILE --as NAME` (or `--figures=FILE --as=NAME`, the form the runner `dist/bench/run.js` passes on):
 * also merge this run into FILE (docs/figures/stream.json) under NAME: each row's time and bytes, whether the rbd
 * row ran (and why not), the load average before and after; scripts/figures-stream.mjs renders it into docs/cli.md.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { closeSync, fsyncSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { main as cli } from '../../src/cli/main.js';
import { sendStream } from '../../src/stream/send.js';
import { ThinPool } from '../../src/thin/pool.js';
import { startCephCluster } from '../../test/support/ceph-cluster.js';
import { argValue, figuresTarget, recordRun } from '../figures-run.js';

const execFileP = promisify(execFile);

const QUICK = process.argv.includes('--quick');
const MiB = 1024 * 1024;
const SIZE = QUICK ? 64 * MiB : 1024 * MiB;
const BS = 64 * 1024;

async function sendTo(pool: ThinPool, snap: string, from: string | undefined, file: string): Promise<number> {
  const fd = openSync(file, 'w');
  let n = 0;
  try {
    for await (const c of sendStream(pool, snap, { from })) {
      for (let d = 0; d < c.length; ) d += writeSync(fd, c, d, c.length - d);
      n += c.length;
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return n;
}

const { file: FIGURES, as: AS } = figuresTarget();

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const r = await fn();
  return [r, performance.now() - t];
}

/** One measured row: `key` names it in the JSON (the renderer labels it); bytes are the output's. */
interface Row {
  key: 'sendIncremental' | 'sendFull' | 'export' | 'rbdExportDiff';
  what: string;
  ms: number;
  bytes: number;
  /** `stream`: the file's size; `allocated`: the sparse image's allocated bytes. */
  bytesOf: 'stream' | 'allocated';
}

/** Whether the rbd row ran: with which cluster, or why not. */
type RbdStatus = { ran: true; cluster: string } | { ran: false; why: string };

/**
 * The rbd row: both snapshots into a new RBD image (untimed), then `rbd export-diff` of the change, timed. The
 * cluster is the one --ceph-conf names, or one started for the run with --start-ceph.
 */
async function rbdRow(dir: string): Promise<{ status: RbdStatus; row?: Row }> {
  let conf = argValue('--ceph-conf');
  const start = process.argv.includes('--start-ceph');
  if (conf === undefined && !start) return { status: { ran: false, why: 'no cluster given (neither --ceph-conf=FILE nor --start-ceph)' } };
  const rbdPool = argValue('--rbd-pool') ?? 'rbd';
  let cluster: Awaited<ReturnType<typeof startCephCluster>> | undefined;
  try {
    if (conf === undefined) {
      cluster = await startCephCluster({ pools: [rbdPool], extraConf: ['memstore page set = true'] });
      conf = cluster.conf;
    }
    const c = conf;
    const image = `${rbdPool}/tp-bench-${process.pid}`;
    const rbd = (args: string[]) => execFileP('rbd', ['-c', c, ...args], { maxBuffer: 16 * MiB });
    await rbd(['create', '--size', `${SIZE}B`, image]);
    try {
      await rbd(['import-diff', '--no-progress', join(dir, 'base.diff'), image]);
      await rbd(['import-diff', '--no-progress', join(dir, 'inc.diff'), image]);
      const f = join(dir, 'rbd-inc.diff');
      const [, ms] = await timed(() => rbd(['export-diff', '--no-progress', '--from-snap', 'base', `${image}@next`, f]));
      const row: Row = { key: 'rbdExportDiff', what: 'rbd export-diff --from-snap base', ms, bytes: statSync(f).size, bytesOf: 'stream' };
      return {
        status: { ran: true, cluster: cluster ? 'single-node cluster started for the run, memstore OSD' : 'given by --ceph-conf' },
        row,
      };
    } finally {
      await rbd(['snap', 'purge', '--no-progress', image]).catch(() => undefined);
      await rbd(['rm', '--no-progress', image]).catch(() => undefined);
    }
  } catch (e) {
    // The command that failed and the last line it wrote to stderr (execFile's message has the command only).
    const stderr = String((e as { stderr?: unknown }).stderr ?? '')
      .trim()
      .split('\n')
      .at(-1);
    const why = `${(e as Error).message.split('\n')[0]}${stderr ? `: ${stderr}` : ''}`;
    return { status: { ran: false, why } };
  } finally {
    await cluster?.stop();
  }
}

async function run(): Promise<void> {
  const loadBefore = loadavg()[0];
  const dir = mkdtempSync(join(tmpdir(), 'tp-bench-send-'));
  try {
    const poolDir = join(dir, 'pool');
    const pool = ThinPool.formatSync(poolDir, { size: SIZE * 3, blockSize: BS });
    const v = pool.createThinSync('vol', { size: SIZE });
    const chunk = 4 * MiB;
    for (let off = 0; off < SIZE; off += chunk) v.writeSync(randomBytes(chunk), off);
    pool.snapshotSync('vol', 'base', { readOnly: true });
    const blocks = SIZE / BS;
    const changed = new Set<number>();
    while (changed.size < Math.round(blocks / 100)) changed.add(Math.floor(Math.random() * blocks));
    for (const b of changed) v.writeSync(randomBytes(4096), b * BS + 4096 * Math.floor(Math.random() * 16));
    pool.snapshotSync('vol', 'next', { readOnly: true });
    pool.commitSync();

    const rows: Row[] = [];
    const [incBytes, incMs] = await timed(() => sendTo(pool, 'next', 'base', join(dir, 'inc.diff')));
    rows.push({ key: 'sendIncremental', what: 'thinpool send --from base', ms: incMs, bytes: incBytes, bytesOf: 'stream' });
    const [fullBytes, fullMs] = await timed(() => sendTo(pool, 'next', undefined, join(dir, 'full.diff')));
    rows.push({ key: 'sendFull', what: 'thinpool send (full)', ms: fullMs, bytes: fullBytes, bytesOf: 'stream' });
    await sendTo(pool, 'base', undefined, join(dir, 'base.diff'));
    pool.closeSync();
    const out = { write: (s: string) => process.stderr.write(s) } as unknown as NodeJS.WritableStream;
    const [code, expMs] = await timed(() =>
      cli(['export', poolDir, 'next', join(dir, 'next.raw')], { stdout: out as never, stderr: out as never }),
    );
    if (code !== 0) throw new Error('thinpool export failed');
    const expBytes = statSync(join(dir, 'next.raw')).blocks * 512;
    rows.push({ key: 'export', what: 'thinpool export (full raw image)', ms: expMs, bytes: expBytes, bytesOf: 'allocated' });

    const rbd = await rbdRow(dir);
    if (rbd.row !== undefined) rows.push(rbd.row);
    else if (!rbd.status.ran) console.log(`(rbd export-diff not measured: ${rbd.status.why})`);

    const loadAverage = [Number(loadBefore.toFixed(2)), Number(loadavg()[0].toFixed(2))];
    console.log(
      `\nSend of a ${SIZE / MiB} MiB volume with 1% of its blocks changed (${changed.size} of ${blocks} blocks of 64 KiB), ${cpus().length} CPUs, load average ${loadAverage[0]} before, ${loadAverage[1]} after`,
    );
    console.log('| what | time | x incremental send | bytes written | x incremental stream |');
    console.log('|---|---|---|---|---|');
    for (const r of rows) {
      console.log(
        `| ${r.what} | ${r.ms.toFixed(0)} ms | ${(r.ms / incMs).toFixed(1)} | ${(r.bytes / MiB).toFixed(2)} MiB${r.bytesOf === 'allocated' ? ' (allocated)' : ''} | ${(r.bytes / incBytes).toFixed(1)} |`,
      );
    }
    if (FIGURES !== undefined && AS !== undefined) {
      recordRun(FIGURES, AS, {
        cpus: cpus().length,
        loadAverage,
        quick: QUICK,
        volumeBytes: SIZE,
        blockBytes: BS,
        blocks,
        changedBlocks: changed.size,
        rows,
        rbd: rbd.status,
      });
      console.log(`merged into ${FIGURES} as "${AS}"`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await run();
