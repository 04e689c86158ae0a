/**
 * A rados: volume served over NBD against librbd (a benchmark, not a test). On one cluster, in one run:
 *   - fio (nbd engine) 4 KiB random read and write at queue depth 1 and 16 against `thinpool serve` of a volume
 *     in a `rados://` pool (a separate process, as users run it);
 *   - `rbd bench --io-type read|write --io-size 4K --io-threads 1|16 --io-pattern rand` on an RBD image of the
 *     same size in the same Ceph pool;
 *   - the same fio jobs against `thinpool serve` of a file pool on this machine (what the network costs);
 *   - for reads, `thinpool serve --read-only` of a fourth pool, written in full and then left alone (a read-only
 *     view takes no lock and checks its reads against the superblock: src/thin/rados-reader.ts);
 *   - the same I/O from this process through the library (`volume.read`/`volume.write` with `depth` requests in
 *     flight) on a third rados: pool: thinpool without the NBD hop, as `rbd bench` is librbd without one (like
 *     against like: both in-process libraries), with this process's CPU per request;
 *   - for writes, each side's other mode: librbd with its cache off (`--rbd_cache=false`: every write acknowledged
 *     by the cluster, as thinpool's default) and `thinpool serve --write-back 24M` of a second rados: pool (writes
 *     answered once sent, as librbd's default cache): like against like, both ways;
 *   - the same fio jobs through `qemu-nbd` serving the RBD image with librbd (its cache off): what users run to
 *     reach an RBD image over NBD, the same hop as `thinpool serve` (a column left out, with the reason, where
 *     qemu's rbd driver is missing: Debian package qemu-block-extra).
 * Every `thinpool serve` listens on a Unix socket, as `qemu-nbd` does here (runs before "unix-hop" used TCP on
 * 127.0.0.1 for thinpool serve: fio's client spent 11-13 µs per request over TCP against 7-9 over the socket).
 * CPU per request, each side's whole process (all its threads, librados's included): `thinpool serve` from
 * /proc around fio's run; `rbd bench` from the shell's `times`, less a run of one request per thread (its
 * start-up). On a machine with few cores, where the OSD, the client and the server share them, this is what
 * bounds the rate at queue depth 16.
 * Both the volume and the image are written in full first, so reads find data. Prints operations per second
 * and the ratios thinpool/librbd and rados/file: each the median of `--reps N` rounds (default 3), the three
 * systems taking turns within a round. librbd's rate is the one `rbd bench` prints (its own clock, without the
 * tool's start-up), fio's the one fio reports (without connecting).
 *
 * The cluster: `--ceph-conf=FILE` (admin keyring; `--ceph-pool=P`, default rbd) or, without it, a single-node
 * memstore cluster (`memstore page set`: see below) started for the run (test/support/ceph-cluster.ts) and
 * stopped afterwards.
 * `--quick`: 64 MiB and fewer operations.
 * `--figures=FILE --as=NAME`: also merge this run into FILE (docs/figures/rados.json) under NAME (e.g. `before`,
 * `after`), with the commit measured; scripts/render-figures.mjs renders it into docs/rados.md.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ThinPool } from '../../src/thin/pool.js';
import { destroyRadosPool } from '../../src/thin/rados-pool.js';
import type { Volume } from '../../src/thin/volume.js';
import { startCephCluster } from '../../test/support/ceph-cluster.js';
import {
  argValue,
  execFileP,
  fio,
  fioCpu,
  type Kind,
  MiB,
  median,
  printTable,
  processCpuSeconds,
  qemuNbdRbd,
  rbdBench,
  rbdBenchCpu,
  rbdFill,
  recordRun,
  serve,
} from './_lib.js';

const QUICK = process.argv.includes('--quick');
const SIZE = QUICK ? 64 * MiB : 256 * MiB;
const OPS = QUICK ? 4000 : 16000;
const REPS = Number(argValue('--reps') ?? 3);
const FIGURES = argValue('--figures');
const AS = argValue('--as');
if (FIGURES !== undefined && AS === undefined) throw new Error('--figures=FILE needs --as=NAME (e.g. --as=after)');

const CASES: Array<[Kind, number]> = [
  ['read', 1],
  ['read', 16],
  ['write', 1],
  ['write', 16],
];

/** The rados: pools this run formatted (removed at the end from a cluster of the user's). */
const made: string[] = [];

/** A pool with volume v of SIZE, written in full (so reads find data). */
async function makePool(address: string, conf: string | undefined): Promise<void> {
  const pool = await ThinPool.format(address, { size: 2 * SIZE, ...(conf ? { ceph: { conf } } : {}) });
  if (address.startsWith('rados://')) made.push(address);
  const v = await pool.createThin('v', { size: SIZE });
  const chunk = new Uint8Array(4 * MiB).fill(0x5a);
  for (let off = 0; off < SIZE; off += chunk.length) v.writeSync(chunk, off);
  await pool.close();
}

/**
 * `ops` 4 KiB random reads or writes on `vol` from this process, `depth` in flight: requests per second and this
 * process's CPU microseconds per request.
 */
async function inProcess(vol: Volume, kind: Kind, depth: number): Promise<{ rate: number; cpuUs: number }> {
  const blocks = SIZE / 4096;
  let left = OPS;
  let x = 0x9e3779b9;
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: depth }, async (_, i) => {
      const b = new Uint8Array(4096).fill(i + 1);
      while (left-- > 0) {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0;
        const off = (x % blocks) * 4096;
        await (kind === 'read' ? vol.read(b, off) : vol.write(b, off));
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  return { rate: OPS / seconds, cpuUs: (cpu.user + cpu.system) / OPS };
}

/**
 * `run`, and the CPU each process of `pids` used over it, in microseconds per request (of OPS): all its threads,
 * from /proc. NaN for pid 0 (a process not ours to read).
 */
async function cpuPerOp<T>(pids: number[], run: () => Promise<T>): Promise<[T, number[]]> {
  const seconds = (pid: number): number => (pid > 0 ? processCpuSeconds(pid) : Number.NaN);
  const before = pids.map(seconds);
  const r = await run();
  return [r, pids.map((pid, k) => ((seconds(pid) - before[k]) * 1e6) / OPS)];
}

async function run(): Promise<void> {
  let conf = argValue('--ceph-conf');
  const cephPool = argValue('--ceph-pool') ?? (conf ? 'rbd' : 'tp');
  // memstore keeps an object's data as one buffer list unless told to use pages: every 4 KiB write into the
  // middle of an object splits it, and a read walks the pieces. Measured with rbd bench on a fresh 256 MiB image
  // (QD16 reads, one run on this machine kind): 15.5-17.7 k op/s, then 9.0-9.7 k after 48,000 random 4 KiB writes, 15.6 k
  // again after a sequential refill; with `memstore page set` 15.5-20.5 k throughout. The rounds below write
  // between reads, so without pages each read case measured how fragmented the store was, not the client.
  const cluster = conf ? null : await startCephCluster({ pools: [cephPool], extraConf: ['memstore page set = true'] });
  conf ??= cluster!.conf;
  const dir = mkdtempSync(join(tmpdir(), 'tp-bench-rados-'));
  const tag = `bench${process.pid}`;
  const image = `${cephPool}/${tag}`;
  const results: Array<{
    kind: Kind;
    depth: number;
    rbd: number;
    rados: number;
    file: number;
    /** Writes only: librbd with its cache off, and thinpool serve --write-back. */
    rbdNoCache?: number;
    radosWriteBack?: number;
    /** Reads only: thinpool serve --read-only (of a pool nothing writes during the run). */
    radosReadOnly?: number;
    /** CPU microseconds per request: the `rbd bench` process (less its start-up), the `thinpool serve` process. */
    rbdCpuUs: number;
    radosCpuUs: number;
    /** librbd behind qemu-nbd, fio through it (the same NBD hop as thinpool serve), and that process's CPU. */
    qemuNbd?: number;
    qemuCpuUs?: number;
    /** The library in this process (no NBD hop), and this process's CPU per request. */
    inProcess: number;
    inProcessCpuUs: number;
    /**
     * The rest of the machine's CPU per request (a started cluster only, whose OSD is known): fio's own (the NBD
     * client) and the file pool's `thinpool serve` (the hop with storage that costs next to nothing), and the
     * OSD's during `rbd bench` and during fio through `thinpool serve` of the rados: pool.
     */
    fioCpuUs?: number;
    fileCpuUs?: number;
    osdCpuUsRbd?: number;
    osdCpuUsRados?: number;
  }> = [];
  try {
    await execFileP('rbd', ['-c', conf, 'create', image, '--size', `${SIZE / MiB}M`]);
    await rbdFill(conf, image, SIZE);
    const address = `rados://${cephPool}/${tag}`;
    const addressWb = `rados://${cephPool}/${tag}wb`;
    await makePool(address, conf);
    await makePool(addressWb, conf);
    const addressIn = `rados://${cephPool}/${tag}in`;
    await makePool(addressIn, conf);
    const addressRo = `rados://${cephPool}/${tag}ro`;
    await makePool(addressRo, conf);
    await makePool(join(dir, 'pool'), undefined);
    const rados = await serve(address, conf, ['v'], dir);
    // The same, with writes written behind as librbd's cache does (serve --write-back, librbd's default 32 MiB cache).
    const radosWb = await serve(addressWb, conf, ['v'], dir, ['--write-back', '24M']);
    const radosRo = await serve(addressRo, conf, ['v'], dir, ['--read-only']);
    const file = await serve(join(dir, 'pool'), undefined, ['v'], dir);
    const inPool = await ThinPool.open(addressIn, conf ? { ceph: { conf } } : {});
    const qemu = await qemuNbdRbd(conf, image, dir);
    if ('unavailable' in qemu) console.warn(`no qemu-nbd column: ${qemu.unavailable}`);
    try {
      const samples = CASES.map(() => ({
        rbd: [] as number[],
        rbdNoCache: [] as number[],
        radosReadOnly: [] as number[],
        rados: [] as number[],
        radosWriteBack: [] as number[],
        file: [] as number[],
        rbdCpuUs: [] as number[],
        radosCpuUs: [] as number[],
        qemuNbd: [] as number[],
        qemuCpuUs: [] as number[],
        inProcess: [] as number[],
        inProcessCpuUs: [] as number[],
        fioCpuUs: [] as number[],
        fileCpuUs: [] as number[],
        osdCpuUsRbd: [] as number[],
        osdCpuUsRados: [] as number[],
      }));
      const osd = cluster?.osdPid() ?? 0; // a cluster of the user's: its OSD is not ours to read
      for (let rep = 0; rep < REPS; rep++) {
        for (const [i, [kind, depth]] of CASES.entries()) {
          // librbd's CPU per request: the run's CPU less that of a run of one request per thread (start-up).
          const idle = await rbdBenchCpu(conf, image, kind, depth, depth);
          const [lib, [osdRbd]] = await cpuPerOp([osd], () => rbdBenchCpu(conf, image, kind, depth, OPS));
          samples[i].osdCpuUsRbd.push(osdRbd);
          samples[i].rbd.push(lib.rate);
          samples[i].rbdCpuUs.push(((lib.cpuSeconds - idle.cpuSeconds) * 1e6) / (OPS - depth));
          const [viaServe, [serveUs, osdRados]] = await cpuPerOp([rados.pid, osd], () =>
            fioCpu(rados.exportUri('v'), kind, depth, SIZE, OPS),
          );
          samples[i].rados.push(viaServe.rate);
          samples[i].radosCpuUs.push(serveUs);
          samples[i].fioCpuUs.push(viaServe.cpuUs);
          samples[i].osdCpuUsRados.push(osdRados);
          const own = await inProcess(inPool.volume('v'), kind, depth);
          samples[i].inProcess.push(own.rate);
          samples[i].inProcessCpuUs.push(own.cpuUs);
          const [viaFile, [fileUs]] = await cpuPerOp([file.pid], () => fio(file.exportUri('v'), kind, depth, SIZE, OPS));
          samples[i].file.push(viaFile);
          samples[i].fileCpuUs.push(fileUs);
          if (!('unavailable' in qemu)) {
            const [viaQemu, [qemuUs]] = await cpuPerOp([qemu.pid], () => fio(qemu.uri, kind, depth, SIZE, OPS));
            samples[i].qemuNbd.push(viaQemu);
            samples[i].qemuCpuUs.push(qemuUs);
          }
          if (kind === 'read') samples[i].radosReadOnly.push(await fio(radosRo.exportUri('v'), kind, depth, SIZE, OPS));
          if (kind === 'write') {
            samples[i].rbdNoCache.push(await rbdBench(conf, image, kind, depth, OPS, false));
            samples[i].radosWriteBack.push(await fio(radosWb.exportUri('v'), kind, depth, SIZE, OPS));
          }
        }
      }
      for (const [i, [kind, depth]] of CASES.entries()) {
        const m = samples[i];
        results.push({
          kind,
          depth,
          rbd: median(m.rbd),
          rados: median(m.rados),
          file: median(m.file),
          rbdCpuUs: median(m.rbdCpuUs),
          radosCpuUs: median(m.radosCpuUs),
          inProcess: median(m.inProcess),
          inProcessCpuUs: median(m.inProcessCpuUs),
          ...(kind === 'read' ? { radosReadOnly: median(m.radosReadOnly) } : {}),
          ...(kind === 'write' ? { rbdNoCache: median(m.rbdNoCache), radosWriteBack: median(m.radosWriteBack) } : {}),
          ...(m.qemuNbd.length > 0 ? { qemuNbd: median(m.qemuNbd), qemuCpuUs: median(m.qemuCpuUs) } : {}),
          fioCpuUs: median(m.fioCpuUs),
          fileCpuUs: median(m.fileCpuUs),
          ...(cluster ? { osdCpuUsRbd: median(m.osdCpuUsRbd), osdCpuUsRados: median(m.osdCpuUsRados) } : {}),
        });
      }
    } finally {
      await inPool.close();
      await rados.stop();
      await radosWb.stop();
      await radosRo.stop();
      await file.stop();
      if (!('unavailable' in qemu)) await qemu.stop();
    }
  } finally {
    await execFileP('rbd', ['-c', conf, 'rm', image]).catch(() => undefined);
    if (cluster === null) {
      // A cluster of the user's: remove the thin pools this run made (a started cluster goes whole).
      for (const address of made) {
        try {
          destroyRadosPool(address, { conf });
        } catch (e) {
          console.warn(`could not remove ${address}: ${(e as Error).message}`);
        }
      }
    }
    rmSync(dir, { recursive: true, force: true });
    await cluster?.stop();
  }
  const opt = (x: number | undefined): string => (x === undefined ? '-' : x.toFixed(0));
  const ratio = (a: number | undefined, b: number | undefined): string => (a === undefined || b === undefined ? '-' : (a / b).toFixed(2));
  const rows = results.map((r) => [
    `4K rand ${r.kind} QD${r.depth}`,
    r.rbd.toFixed(0),
    r.rados.toFixed(0),
    (r.rados / r.rbd).toFixed(2),
    opt(r.rbdNoCache),
    ratio(r.rados, r.rbdNoCache),
    opt(r.radosWriteBack),
    ratio(r.radosWriteBack, r.rbd),
    r.file.toFixed(0),
    (r.rados / r.file).toFixed(2),
    r.rbdCpuUs.toFixed(0),
    r.radosCpuUs.toFixed(0),
    opt(r.qemuNbd),
    ratio(r.rados, r.qemuNbd),
    opt(r.qemuCpuUs),
    opt(r.radosReadOnly),
    r.inProcess.toFixed(0),
    // Writes against librbd with its cache off, as docs/rados.md compares them (the library's are acknowledged).
    (r.inProcess / (r.kind === 'write' ? r.rbdNoCache! : r.rbd)).toFixed(2),
    r.inProcessCpuUs.toFixed(0),
    opt(r.fioCpuUs),
    opt(r.fileCpuUs),
    opt(r.osdCpuUsRbd),
    opt(r.osdCpuUsRados),
  ]);
  const head = [
    'case',
    'librbd op/s',
    'thinpool rados op/s',
    'ratio',
    'librbd, cache off',
    'thinpool / librbd cache off',
    'thinpool --write-back',
    'write-back / librbd',
    'thinpool file op/s',
    'rados/file',
    'librbd CPU us/op',
    'serve CPU us/op',
    'qemu-nbd+librbd op/s',
    'thinpool / qemu-nbd',
    'qemu-nbd CPU us/op',
    'serve --read-only op/s',
    'thinpool in process op/s',
    'in process / librbd (writes: cache off)',
    'in process CPU us/op',
    'fio CPU us/op',
    'file serve CPU us/op',
    'OSD CPU us/op (rbd bench)',
    'OSD CPU us/op (serve)',
  ];
  console.log(
    `rados: volume of ${SIZE / MiB} MiB through thinpool serve (fio nbd) vs rbd bench on the same cluster (${cluster ? 'memstore with pages, 1 OSD, started for this run' : conf})`,
  );
  printTable(head, rows);
  console.log(`median of ${REPS} rounds; load average ${loadavg()[0].toFixed(1)} at the end`);
  if (FIGURES !== undefined) {
    recordRun(FIGURES, AS!, {
      sizeMiB: SIZE / MiB,
      ops: OPS,
      reps: REPS,
      cluster: cluster ? 'memstore (page set), 1 OSD, no manager, started for the run' : 'given by --ceph-conf',
      loadAverage: Number(loadavg()[0].toFixed(1)),
      hop: 'unix socket',
      rows: results,
    });
  }
}

run().catch((e) => {
  console.error(e);
  process.exit(1);
});
