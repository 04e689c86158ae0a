/**
 * NBD over TLS: the thinpool server (own process, file pool) against nbdkit memory with the same TLS settings,
 * and what TLS costs each of them against plain NBD, all measured in the same run, interleaved.
 *
 *   node dist/bench/nbd/tls.js [--quick] [--rounds=N] [--runtime=S] [--cases=TEXT] [--figures=FILE --as=NAME]
 *
 * `--figures=FILE --as=NAME`: also merge this run into FILE (docs/figures/nbd-tls.json) under NAME, with the
 * commit, the busy-poll window (NBD_BUSY_POLL_US) and the load; scripts/render-figures.mjs renders it into
 * docs/nbd.md.
 *
 * - nbdcopy, 1 MiB requests, sequential write (file -> export) and read (export -> null:), TLS with a pre-shared
 *   key (psktool file; `nbdkit --tls=require --tls-psk=FILE memory`).
 * - fio --ioengine=nbd, 4 KiB random reads and writes at queue depth 1 and 16, TLS with X.509 certificates
 *   (`nbdkit --tls=require --tls-certificates=DIR memory`): fio passes libnbd only a URI, and libnbd refuses URI
 *   parameters that read local files (tls-psk-file=), so fio cannot use a PSK; with X.509 it finds the CA in its
 *   default place, $HOME/.pki/libnbd (as root /etc/pki/libnbd, which belongs to the machine: there fio runs as
 *   nobody with a HOME of its own).
 * - Every case runs on four servers back to back (thinpool TLS, nbdkit TLS, thinpool plain, nbdkit plain), the
 *   order rotating per round; the figures are medians over rounds. Printed: thinpool TLS / nbdkit TLS, and for
 *   each server TLS / plain (the cost of TLS). Both exports are 256 MiB, prefilled with the same random data.
 * Needs fio, nbdkit, nbdcopy, psktool and certtool (skips with a message naming the Debian packages otherwise).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ThinPool } from '../../src/thin/pool.js';
import { recordRun } from '../figures-run.js';

import { MiB, ROUNDS, RUNTIME, SIZE, args, processCpuSeconds, have, median, must, runRounds, stopAll } from './_lib.js';

async function pidOf(f: string): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const t = existsSync(f) ? readFileSync(f, 'utf8').trim() : '';
    if (t !== '') return Number(t);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nbdkit did not write ${f}`);
}

async function freePort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

async function main(): Promise<number> {
  for (const [t, pkg] of [
    ['fio', 'fio'],
    ['nbdkit', 'nbdkit'],
    ['nbdcopy', 'libnbd-bin'],
    ['psktool', 'gnutls-bin'],
    ['certtool', 'gnutls-bin'],
  ]) {
    if (!have(t)) {
      console.log(`nbd tls: skipped (${t} not installed; Debian package ${pkg})`);
      return 0;
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'tp-nbd-tls-bench-'));
  const home = mkdtempSync(join(tmpdir(), 'tp-nbd-tls-home-'));
  const children: ChildProcess[] = [];
  const kitPids: number[] = [];
  try {
    // Credentials: a PSK file, and a CA with a server certificate for localhost (nbdkit's directory layout).
    const psk = join(dir, 'keys.psk');
    await must('psktool', ['-u', 'bench', '-p', psk]);
    const pki = join(dir, 'pki');
    mkdirSync(pki);
    writeFileSync(join(dir, 'ca.tmpl'), 'cn = "bench CA"\nca\ncert_signing_key\nexpiration_days = 2\n');
    writeFileSync(
      join(dir, 'srv.tmpl'),
      'cn = "localhost"\ndns_name = "localhost"\nip_address = "127.0.0.1"\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 2\n',
    );
    await must('certtool', ['--generate-privkey', '--no-text', '--outfile', join(dir, 'ca-key.pem')]);
    await must('certtool', [
      '--generate-self-signed',
      '--no-text',
      '--load-privkey',
      join(dir, 'ca-key.pem'),
      '--template',
      join(dir, 'ca.tmpl'),
      '--outfile',
      join(pki, 'ca-cert.pem'),
    ]);
    await must('certtool', ['--generate-privkey', '--no-text', '--outfile', join(pki, 'server-key.pem')]);
    await must('certtool', [
      '--generate-certificate',
      '--no-text',
      '--load-privkey',
      join(pki, 'server-key.pem'),
      '--load-ca-certificate',
      join(pki, 'ca-cert.pem'),
      '--load-ca-privkey',
      join(dir, 'ca-key.pem'),
      '--template',
      join(dir, 'srv.tmpl'),
      '--outfile',
      join(pki, 'server-cert.pem'),
    ]);
    mkdirSync(join(home, '.pki', 'libnbd'), { recursive: true });
    writeFileSync(join(home, '.pki', 'libnbd', 'ca-cert.pem'), readFileSync(join(pki, 'ca-cert.pem')));
    for (const d of [home, join(home, '.pki'), join(home, '.pki', 'libnbd')]) chmodSync(d, 0o755);
    chmodSync(join(home, '.pki', 'libnbd', 'ca-cert.pem'), 0o644);
    const asUser = process.getuid?.() === 0 ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--'] : [];

    const src = join(dir, 'full.raw');
    writeFileSync(src, randomBytes(SIZE));
    const poolDir = join(dir, 'pool');
    const pool = ThinPool.formatSync(poolDir, { size: SIZE + 64 * MiB });
    pool.createThinSync('bench', { size: SIZE });
    pool.closeSync();

    const here = dirname(fileURLToPath(import.meta.url));
    const srv = spawn(
      process.execPath,
      [join(here, '_server.js'), poolDir, join(dir, 'tp.sock'), 'bench', `--tls-psk=${psk}`, `--tls-certificates=${pki}`],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(srv);
    const ports = await new Promise<{ port: number; psk: number; x509: number }>((resolve, reject) => {
      let buf = '';
      srv.stdout!.on('data', (d) => {
        buf += d;
        if (buf.includes('\n')) resolve(JSON.parse(buf.split('\n')[0]) as { port: number; psk: number; x509: number });
      });
      srv.once('exit', (c) => reject(new Error(`server exited ${c}`)));
    });

    // nbdkit daemonises (-P writes its pid). One memory export per TLS setting: each is filled with the data.
    const kit = async (name: string, extra: string[]): Promise<number> => {
      const port = await freePort();
      await must('nbdkit', ['-P', join(dir, `${name}.pid`), '-i', '127.0.0.1', '-p', String(port), ...extra, 'memory', String(SIZE)]);
      kitPids.push(await pidOf(join(dir, `${name}.pid`)));
      return port;
    };
    const kitPlain = await kit('plain', []);
    const kitPsk = await kit('psk', ['--tls=require', `--tls-psk=${psk}`]);
    const kitX509 = await kit('x509', ['--tls=require', `--tls-certificates=${pki}`]);

    type Sys = 'thinpool TLS' | 'nbdkit TLS' | 'thinpool plain' | 'nbdkit plain';
    const systems: Sys[] = ['thinpool TLS', 'nbdkit TLS', 'thinpool plain', 'nbdkit plain'];
    const pskUri = (p: number) => `nbds://bench@127.0.0.1:${p}/?tls-psk-file=${psk}`;
    const where: Record<Sys, { copy: string; fio: string; pid: number }> = {
      'thinpool TLS': { copy: pskUri(ports.psk), fio: `nbds://localhost:${ports.x509}/`, pid: srv.pid! },
      'nbdkit TLS': { copy: pskUri(kitPsk), fio: `nbds://localhost:${kitX509}/`, pid: kitPids[1] },
      'thinpool plain': { copy: `nbd://127.0.0.1:${ports.port}/`, fio: `nbd://127.0.0.1:${ports.port}/`, pid: srv.pid! },
      'nbdkit plain': { copy: `nbd://127.0.0.1:${kitPlain}/`, fio: `nbd://127.0.0.1:${kitPlain}/`, pid: kitPids[0] },
    };
    // Fill every export (the thinpool ones share one volume).
    await must('nbdcopy', [src, where['thinpool plain'].copy]);
    for (const p of [kitPlain]) await must('nbdcopy', [src, `nbd://127.0.0.1:${p}/`]);
    await must('nbdcopy', [src, pskUri(kitPsk)]);
    await must('nbdcopy', [src, `nbds://localhost:${kitX509}/?tls-certificates=${pki}`]);

    const fio = async (s: Sys, rw: string, qd: number): Promise<[number, number]> => {
      const pid = s === 'nbdkit TLS' ? kitPids[2] : where[s].pid;
      const c0 = processCpuSeconds(pid);
      const argv = [
        ...asUser,
        'env',
        `HOME=${home}`,
        'fio',
        '--name=b',
        '--ioengine=nbd',
        `--uri=${where[s].fio}`,
        `--rw=${rw}`,
        '--bs=4k',
        `--iodepth=${qd}`,
        '--size=256M',
        `--runtime=${RUNTIME}`,
        '--time_based',
        '--ramp_time=1',
        '--output-format=json',
      ];
      const out = await must(argv[0], argv.slice(1));
      const cpu = processCpuSeconds(pid) - c0;
      type Dir = { iops: number };
      const j = JSON.parse(out.slice(out.indexOf('{'))) as { jobs: { read: Dir; write: Dir }[] };
      const d = rw === 'randread' ? j.jobs[0].read : j.jobs[0].write;
      return [d.iops, (cpu * 1e6) / (d.iops * (RUNTIME + 1))];
    };
    const copy = async (s: Sys, write: boolean): Promise<[number, number]> => {
      const pid = where[s].pid;
      const c0 = processCpuSeconds(pid);
      const t0 = performance.now();
      await must('nbdcopy', ['--request-size=1048576', write ? src : where[s].copy, write ? where[s].copy : 'null:']);
      const mibs = SIZE / MiB / ((performance.now() - t0) / 1000);
      return [mibs, ((processCpuSeconds(pid) - c0) * 1e6) / (SIZE / MiB)];
    };
    const cases: { name: string; unit: string; cpuUnit: string; run: (s: Sys) => Promise<[number, number]> }[] = [];
    for (const qd of [1, 16]) {
      for (const rw of ['randread', 'randwrite'])
        cases.push({ name: `fio 4k ${rw} qd${qd}`, unit: 'IOPS', cpuUnit: 'µs/req', run: (s) => fio(s, rw, qd) });
    }
    cases.push({ name: 'nbdcopy 1M seq write', unit: 'MiB/s', cpuUnit: 'µs/MiB', run: (s) => copy(s, true) });
    cases.push({ name: 'nbdcopy 1M seq read', unit: 'MiB/s', cpuUnit: 'µs/MiB', run: (s) => copy(s, false) });

    const only = args.find((x) => x.startsWith('--cases='))?.slice('--cases='.length);
    const chosen = only ? cases.filter((c) => c.name.includes(only)) : cases;
    const res = await runRounds(chosen, systems, ROUNDS);
    const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    console.log(
      `NBD over TLS, ${ROUNDS} round(s), fio runtime ${RUNTIME} s, medians (load average at the end: ${load});` +
        ' fio over X.509, nbdcopy over PSK:\n',
    );
    console.log(
      '| case | thinpool TLS | nbdkit TLS | ratio | thinpool plain | nbdkit plain | TLS cost thinpool | TLS cost nbdkit | server CPU thinpool / nbdkit (TLS) |',
    );
    console.log('|---|---|---|---|---|---|---|---|---|');
    for (const c of chosen) {
      const r = res.get(c.name)!;
      const m = (s: Sys) => median(r[s].v);
      const f = (x: number) => (c.unit === 'IOPS' ? `${(x / 1000).toFixed(1)} k` : x.toFixed(0));
      const cost = (tls: number, plain: number) => `${(tls / plain).toFixed(2)}`;
      console.log(
        `| ${c.name} | ${f(m('thinpool TLS'))} ${c.unit} | ${f(m('nbdkit TLS'))} ${c.unit} | ${(m('thinpool TLS') / m('nbdkit TLS')).toFixed(2)} ` +
          `| ${f(m('thinpool plain'))} | ${f(m('nbdkit plain'))} | ${cost(m('thinpool TLS'), m('thinpool plain'))} | ${cost(m('nbdkit TLS'), m('nbdkit plain'))} ` +
          `| ${median(r['thinpool TLS'].cpu).toFixed(1)} / ${median(r['nbdkit TLS'].cpu).toFixed(1)} ${c.cpuUnit} |`,
      );
    }
    console.log(
      '\nratio: thinpool TLS / nbdkit TLS (higher is better for thinpool); TLS cost: TLS / plain for the same server (1.00: free).',
    );
    const figures = args.find((x) => x.startsWith('--figures='))?.slice('--figures='.length);
    const as = args.find((x) => x.startsWith('--as='))?.slice('--as='.length);
    if (figures !== undefined) {
      if (!as) throw new Error('--figures=FILE needs --as=NAME');
      recordRun(figures, as, {
        cpus: cpus().length,
        rounds: ROUNDS,
        runtimeS: RUNTIME,
        load,
        busyPollUs: process.env.NBD_BUSY_POLL_US ?? 'default',
        rows: chosen.map((c) => {
          const r = res.get(c.name)!;
          const m = (s: Sys) => median(r[s].v);
          return {
            case: c.name,
            unit: c.unit,
            cpuUnit: c.cpuUnit,
            thinpoolTls: m('thinpool TLS'),
            nbdkitTls: m('nbdkit TLS'),
            thinpoolPlain: m('thinpool plain'),
            nbdkitPlain: m('nbdkit plain'),
            cpuThinpoolTls: median(r['thinpool TLS'].cpu),
            cpuNbdkitTls: median(r['nbdkit TLS'].cpu),
          };
        }),
      });
    }
    return 0;
  } finally {
    await stopAll(children, kitPids);
    rmSync(dir, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  }
}

process.exitCode = await main();
