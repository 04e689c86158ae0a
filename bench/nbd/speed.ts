/**
 * NBD speed: the thinpool server (own process, file pool) against `nbdkit memory`, same machine, interleaved.
 *
 *   node dist/bench/nbd/speed.js [--quick] [--rounds=N] [--runtime=S] [--cases=TEXT] [--figures=FILE --as=NAME]
 *   (--cases: only the cases whose name contains TEXT, e.g. --cases=qd1)
 *
 * `--figures=FILE --as=NAME`: also merge this run into FILE (docs/figures/nbd-speed.json) under NAME, with the
 * commit, every round's figure and server CPU per request for both servers, the busy-poll window
 * (NBD_BUSY_POLL_US), NBD_PORTABLE_IO, the load average before and after; scripts/figures-nbd.mjs renders it
 * into docs/nbd.md (medians, ratios and the goal computed there).
 *
 * - fio --ioengine=nbd, 4 KiB random reads and writes at queue depth 1 and 16, over TCP and a Unix socket.
 * - nbdcopy, 1 MiB requests, sequential write (file -> export) and read (export -> null:), over TCP.
 * Both exports are 256 MiB, prefilled with the same random data (no hole short-cuts, thin blocks all mapped).
 * Every round runs each case on both servers back to back, in alternating order; the figures are medians over
 * rounds, the ratio is thinpool / nbdkit. Needs fio, nbdkit and nbdcopy (skips with a message otherwise).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { ThinPool } from '../../src/thin/pool.js';
import { recordRun } from '../figures-run.js';

import { MiB, QUICK, ROUNDS, RUNTIME, SIZE, flag, processCpuSeconds, have, median, must, runRounds, stopAll } from './_lib.js';

const FIGURES = flag('figures');
const AS = flag('as');
if (FIGURES !== undefined && !AS) throw new Error('--figures=FILE needs --as=NAME');
const ONLY = flag('cases');

/** fio IOPS, and the server's CPU microseconds per request (less sensitive to a busy machine than IOPS). */
async function fio(uri: string, rw: string, qd: number, out: string, pid: number): Promise<[number, number]> {
  const c0 = processCpuSeconds(pid);
  await must('fio', [
    '--name=b',
    '--ioengine=nbd',
    `--uri=${uri}`,
    `--rw=${rw}`,
    '--bs=4k',
    `--iodepth=${qd}`,
    '--size=256M',
    `--runtime=${RUNTIME}`,
    '--time_based',
    '--ramp_time=1',
    '--output-format=json',
    `--output=${out}`,
  ]);
  const cpu = processCpuSeconds(pid) - c0;
  type Dir = { iops: number; total_ios: number };
  const j = JSON.parse(readFileSync(out, 'utf8')) as { jobs: { read: Dir; write: Dir }[] };
  const d = rw === 'randread' ? j.jobs[0].read : j.jobs[0].write;
  // ramp_time I/O is not in total_ios: count it from the rate.
  const ios = d.iops * (RUNTIME + 1);
  return [d.iops, (cpu * 1e6) / ios];
}

async function nbdcopy(from: string, to: string, pid: number): Promise<[number, number]> {
  const c0 = processCpuSeconds(pid);
  const t0 = performance.now();
  await must('nbdcopy', ['--request-size=1048576', from, to]);
  const mibs = SIZE / MiB / ((performance.now() - t0) / 1000);
  return [mibs, ((processCpuSeconds(pid) - c0) * 1e6) / (SIZE / MiB)];
}

async function main(): Promise<number> {
  for (const t of ['fio', 'nbdkit', 'nbdcopy']) {
    if (!have(t)) {
      console.log(`nbd speed: skipped (${t} not installed; Debian packages fio, nbdkit, libnbd-bin)`);
      return 0;
    }
  }
  // The machine is shared: the 1-minute load average before and after the run goes with the figures.
  const loadBefore = loadavg()[0];
  const dir = mkdtempSync(join(tmpdir(), 'tp-nbd-bench-'));
  const children: ChildProcess[] = [];
  const kitPids: number[] = [];
  try {
    const src = join(dir, 'full.raw');
    writeFileSync(src, randomBytes(SIZE));
    const poolDir = join(dir, 'pool');
    const pool = ThinPool.formatSync(poolDir, { size: SIZE + 64 * MiB });
    pool.createThinSync('bench', { size: SIZE });
    pool.closeSync();

    const here = dirname(fileURLToPath(import.meta.url));
    const tpSock = join(dir, 'tp.sock');
    const srv = spawn(process.execPath, [join(here, '_server.js'), poolDir, tpSock, 'bench'], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(srv);
    const port = await new Promise<number>((resolve, reject) => {
      let buf = '';
      srv.stdout!.on('data', (d) => {
        buf += d;
        const line = buf.split('\n')[0];
        if (buf.includes('\n')) resolve((JSON.parse(line) as { port: number }).port);
      });
      srv.once('exit', (c) => reject(new Error(`server exited ${c}`)));
    });

    // nbdkit daemonises (-P writes its pid): a foreground nbdkit can be killed with the launching shell.
    const kitPort = port + 1000 > 65000 ? 20809 : port + 1000;
    const kitSock = join(dir, 'kit.sock');
    const pidOf = async (f: string): Promise<number> => {
      for (let i = 0; i < 100; i++) {
        const t = existsSync(f) ? readFileSync(f, 'utf8').trim() : '';
        if (t !== '') return Number(t);
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`nbdkit did not write ${f}`);
    };
    await must('nbdkit', ['-P', join(dir, 'kit1.pid'), '-i', '127.0.0.1', '-p', String(kitPort), 'memory', String(SIZE)]);
    kitPids.push(await pidOf(join(dir, 'kit1.pid')));
    await must('nbdkit', ['-P', join(dir, 'kit2.pid'), '-U', kitSock, 'memory', String(SIZE)]);
    kitPids.push(await pidOf(join(dir, 'kit2.pid')));

    const uris = {
      thinpool: { tcp: `nbd://127.0.0.1:${port}`, unix: `nbd+unix:///?socket=${tpSock}` },
      nbdkit: { tcp: `nbd://127.0.0.1:${kitPort}`, unix: `nbd+unix:///?socket=${kitSock}` },
    };
    for (const s of ['thinpool', 'nbdkit'] as const) {
      await must('nbdcopy', [src, uris[s].tcp]);
      if (s === 'nbdkit') await must('nbdcopy', [src, uris[s].unix]);
    }

    type Sys = 'thinpool' | 'nbdkit';
    const pids = { thinpool: { tcp: srv.pid!, unix: srv.pid! }, nbdkit: { tcp: kitPids[0], unix: kitPids[1] } };
    const cases: { name: string; run: (s: Sys) => Promise<[number, number]>; unit: string; cpuUnit: string }[] = [];
    for (const tr of ['tcp', 'unix'] as const) {
      for (const qd of [1, 16]) {
        for (const rw of ['randread', 'randwrite']) {
          cases.push({
            name: `fio 4k ${rw} qd${qd} ${tr}`,
            unit: 'IOPS',
            cpuUnit: 'µs/req',
            run: (s) => fio(uris[s][tr], rw, qd, join(dir, 'fio.json'), pids[s][tr]),
          });
        }
      }
    }
    cases.push({ name: 'nbdcopy 1M seq write tcp', unit: 'MiB/s', cpuUnit: 'µs/MiB', run: (s) => nbdcopy(src, uris[s].tcp, pids[s].tcp) });
    cases.push({
      name: 'nbdcopy 1M seq read tcp',
      unit: 'MiB/s',
      cpuUnit: 'µs/MiB',
      run: (s) => nbdcopy(uris[s].tcp, 'null:', pids[s].tcp),
    });

    const chosen = ONLY ? cases.filter((c) => c.name.includes(ONLY)) : cases;
    const res = await runRounds(chosen, ['thinpool', 'nbdkit'] as Sys[], ROUNDS);
    const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    console.log(`NBD speed, ${ROUNDS} round(s), fio runtime ${RUNTIME} s, medians (load average at the end: ${load}):\n`);
    console.log('| case | thinpool | nbdkit memory | ratio | thinpool runs | nbdkit runs | server CPU thinpool / nbdkit |');
    console.log('|---|---|---|---|---|---|---|');
    for (const c of chosen) {
      const r = res.get(c.name)!;
      const a = median(r.thinpool.v);
      const b = median(r.nbdkit.v);
      const f = (x: number) => (c.unit === 'IOPS' ? `${(x / 1000).toFixed(1)} k` : x.toFixed(0));
      const ca = median(r.thinpool.cpu);
      const cb = median(r.nbdkit.cpu);
      console.log(
        `| ${c.name} | ${f(a)} ${c.unit} | ${f(b)} ${c.unit} | ${(a / b).toFixed(2)} | ${r.thinpool.v.map(f).join(', ')} | ${r.nbdkit.v.map(f).join(', ')} | ${ca.toFixed(1)} / ${cb.toFixed(1)} ${c.cpuUnit} |`,
      );
    }
    if (FIGURES !== undefined) {
      // Raw per-round values (in round order); the renderer takes the medians and ratios.
      const round = (xs: number[], d: number) => xs.map((x) => Number(x.toFixed(d)));
      recordRun(FIGURES, AS!, {
        cpus: cpus().length,
        quick: QUICK,
        rounds: ROUNDS,
        runtimeS: RUNTIME,
        cases: ONLY ?? null,
        busyPollUs: process.env.NBD_BUSY_POLL_US || 'default',
        portableIO: process.env.NBD_PORTABLE_IO === '1',
        loadAverage: [Number(loadBefore.toFixed(2)), Number(loadavg()[0].toFixed(2))],
        rows: chosen.map((c) => {
          const r = res.get(c.name)!;
          return {
            case: c.name,
            unit: c.unit,
            cpuUnit: c.cpuUnit,
            thinpool: round(r.thinpool.v, 1),
            nbdkit: round(r.nbdkit.v, 1),
            cpuThinpool: round(r.thinpool.cpu, 2),
            cpuNbdkit: round(r.nbdkit.cpu, 2),
          };
        }),
      });
    }
    return 0;
  } finally {
    await stopAll(children, kitPids);
    rmSync(dir, { recursive: true, force: true });
  }
}

process.exitCode = await main();
