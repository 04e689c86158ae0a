/**
 * Images on thin snapshots: figures for docs/images.md (a benchmark, not a test).
 *
 * 1. Import throughput of a ~100 MiB four-layer image (plain tar layers: many small files, 1 MiB files, one
 *    10 MiB file, whiteouts), as a ratio to `tar -x` of the same layers into a directory on the same disk
 *    (with and without a final `sync`; the import ends with a pool commit, which syncs). Three rounds of the
 *    three steps back to back: best of 3 of each, and the ratios within each round (same load).
 * 2. Container creation time for images of ~100 MiB and ~1 GiB (constant: a thin snapshot plus a commit).
 * 3. Reading a file through an image (mount in a worker + read, and read in an open session) against reading it
 *    from the extracted directory.
 *
 * Step 1 also times, as a command, an import of the same image again under another name (every layer reused:
 * what an import costs beyond applying layers) and `thinpool ls` of the pool (Node's and the CLI's start-up).
 *
 * `--quick`: a 20 MiB image and no 1 GiB image. `--import-only`: step 1 only. `--figures FILE --as NAME`: also
 * merge the run into FILE (docs/figures/images.json) under NAME; scripts/render-figures.mjs renders it into
 * docs/images.md.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from '../compare/lib/stats.js';
import { figuresTarget, recordRun } from '../figures-run.js';
import { ThinPool } from '../../src/thin/pool.js';
import { ImageStore } from '../../src/images/images.js';
import { FsSession } from '../../src/images/fs-worker.js';
import { benchScratch } from '../_root.js';
import { benchLayers, layer, makeTar } from './_layers.js';

const QUICK = process.argv.includes('--quick');
/** The command users run: bin/thinpool.js of this package (this file runs as dist/bench/images/import.js). */
const BIN = fileURLToPath(new URL('../../../bin/thinpool.js', import.meta.url));
const IMPORT_ONLY = process.argv.includes('--import-only');
const MiB = 1024 * 1024;
const { file: FIGURES, as: AS } = figuresTarget();

function time<T>(fn: () => T): [T, number] {
  const t = performance.now();
  const r = fn();
  return [r, performance.now() - t];
}

async function timeAsync<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const r = await fn();
  return [r, performance.now() - t];
}

async function main(): Promise<void> {
  const loadBefore = loadavg()[0];
  const work = mkdtempSync(join(benchScratch(), 'tp-bench-images-'));
  try {
    const k = QUICK ? 5 : 1;
    const layers = benchLayers(k);
    const files: string[] = [];
    let total = 0;
    for (const [i, l] of layers.entries()) {
      const t = await makeTar(l);
      total += t.length;
      files.push(join(work, `layer${i}.tar`));
      writeFileSync(files[i], t);
    }
    console.log(
      `image: ${layers.length} layers, ${(total / MiB).toFixed(1)} MiB of tar, ${layers.reduce((n, l) => n + l.length, 0)} entries`,
    );

    // Three rounds, each: tar -x into a directory, the same with a final sync, and a thinpool import into a
    // fresh file pool; the three steps of a round run back to back, so their ratios see the same machine load.
    const tx: number[] = [];
    const txs: number[] = [];
    const imp: number[] = [];
    const cmd: number[] = [];
    const again: number[] = [];
    const ls: number[] = [];
    let poolDir = '';
    for (let r = 0; r < 3; r++) {
      for (const withSync of [false, true]) {
        const dir = join(work, `x-${r}-${withSync}`);
        mkdirSync(dir);
        const [, ms] = time(() => {
          for (const f of files) {
            const res = spawnSync('tar', ['-xf', f, '-C', dir]);
            if (res.status !== 0) throw new Error(`tar -x failed: ${res.stderr}`);
          }
          if (withSync) spawnSync('sync', ['-f', join(dir, 'srv', 'big.bin')]);
        });
        (withSync ? txs : tx).push(ms);
        if (r < 2 || withSync) rmSync(dir, { recursive: true, force: true });
      }
      poolDir = join(work, `pool-${r}`);
      const pool = ThinPool.formatSync(poolDir, { size: 8 * 1024 * MiB });
      const store = new ImageStore(pool, { size: 2 * 1024 * MiB });
      store.snapshotter.prepare('warm-base'); // the base filesystem is made once per pool: not part of an import
      store.snapshotter.remove('warm-base');
      const [, ms] = await timeAsync(() => store.import('app', files));
      imp.push(ms);
      pool.closeSync();
      if (r < 2) rmSync(poolDir, { recursive: true, force: true });
      // The same import as a user runs it: `thinpool image import` in a fresh process (its start-up, the
      // worker's and the first use of the package's code included), into a pool whose base filesystem exists.
      const cliPool = join(work, `cli-pool-${r}`);
      const tp = (...a: string[]) => {
        const res = spawnSync(process.execPath, [BIN, ...a], { encoding: 'utf8' });
        if (res.status !== 0) throw new Error(`thinpool ${a.join(' ')} failed: ${res.stderr}`);
      };
      tp('init', cliPool, '--size', String(8 * 1024 * MiB));
      tp('image', 'import', cliPool, 'warm', files[files.length - 1]); // makes the base filesystem; not timed
      spawnSync('sync');
      const [, cms] = time(() => tp('image', 'import', cliPool, 'app', ...files));
      cmd.push(cms);
      // The same image again under another name: every layer is reused, so this is what a command costs beyond
      // applying layers (start-up, the worker, reading and hashing the layers, the commit); and `thinpool ls`.
      spawnSync('sync');
      again.push(time(() => tp('image', 'import', cliPool, 'app2', ...files))[1]);
      ls.push(time(() => tp('ls', cliPool))[1]);
      rmSync(cliPool, { recursive: true, force: true });
    }
    const extracted = join(work, 'x-2-false');
    const best = (xs: number[]): number => Math.min(...xs);
    console.log('\n| step | time (best of 3) | MiB/s | vs tar -x |');
    console.log('|---|---:|---:|---:|');
    for (const [name, xs] of [
      ['tar -x into a directory', tx],
      ['tar -x + sync', txs],
      ['thinpool image import (commit included)', imp],
      ['`thinpool image import` as a command (fresh process)', cmd],
      ['the same image again as a command (every layer reused)', again],
      ['`thinpool ls` of the pool', ls],
    ] as const) {
      console.log(
        `| ${name} | ${best(xs).toFixed(0)} ms | ${xs === ls ? '-' : (total / MiB / (best(xs) / 1000)).toFixed(1)} | ${(best(xs) / best(tx)).toFixed(1)}x |`,
      );
    }
    const ratios = (a: number[], b: number[]): string => a.map((x, i) => (x / b[i]).toFixed(2)).join(', ');
    console.log(
      `\nper round (same load): import / tar -x ${ratios(imp, tx)} (median ${median(imp.map((x, i) => x / tx[i])).toFixed(2)}x); ` +
        `import / (tar -x + sync) ${ratios(imp, txs)} (median ${median(imp.map((x, i) => x / txs[i])).toFixed(2)}x); ` +
        `command / tar -x ${ratios(cmd, tx)} (median ${median(cmd.map((x, i) => x / tx[i])).toFixed(2)}x)`,
    );

    const figures: Record<string, unknown> = {
      cpus: cpus().length,
      quick: QUICK,
      image: { layers: layers.length, tarMiB: Number((total / MiB).toFixed(1)), entries: layers.reduce((n, l) => n + l.length, 0) },
      // Per round, in ms: the rounds' steps ran back to back, so ratios within a round see the same load.
      rounds: { tarX: tx, tarXSync: txs, importInProcess: imp, importCommand: cmd, importAgainCommand: again, lsCommand: ls },
    };
    const record = () => {
      if (FIGURES === undefined || AS === undefined) return;
      const round = (xs: unknown) => (Array.isArray(xs) ? xs.map((x) => Math.round(x)) : xs);
      figures.rounds = Object.fromEntries(Object.entries(figures.rounds as object).map(([k, v]) => [k, round(v)]));
      recordRun(FIGURES, AS, { ...figures, loadAverage: [Number(loadBefore.toFixed(2)), Number(loadavg()[0].toFixed(2))] });
      console.log(`merged into ${FIGURES} as "${AS}"`);
    };
    if (IMPORT_ONLY) return record();
    // Container creation at ~100 MiB and ~1 GiB.
    const pool = ThinPool.openSync(poolDir);
    const store = new ImageStore(pool, { size: 2 * 1024 * MiB });
    const sizes: Array<[string, string]> = [['app', `${(total / MiB).toFixed(0)} MiB`]];
    if (!QUICK) {
      const bigFiles: string[] = [];
      for (let i = 0; i < 9; i++) {
        const f = join(work, `big${i}.tar`);
        writeFileSync(f, await makeTar(layer(`big${i}`, 100, 110)));
        bigFiles.push(f);
      }
      const [, ms] = await timeAsync(() => store.import('big', [...files, ...bigFiles]));
      const mib = Number(store.image('big').chainIds.length) && store.history('big').reduce((n, r) => n + r.size, 0) / MiB;
      console.log(`\n1 GiB image: imported ${mib.toFixed(0)} MiB of layers in ${(ms / 1000).toFixed(1)} s`);
      figures.bigImport = { layers: files.length + bigFiles.length, mib: Math.round(mib), ms: Math.round(ms) };
      sizes.push(['big', `${mib.toFixed(0)} MiB`]);
    }
    const creates: Array<{ image: string; medianMs: number }> = [];
    figures.containerCreate = creates;
    console.log('\n| image | container create (median of 9, commit included) |');
    console.log('|---|---:|');
    for (const [im, label] of sizes) {
      const xs: number[] = [];
      for (let i = 0; i < 9; i++) {
        const [, ms] = await timeAsync(() => store.createContainer(im, `c-${im}-${i}`));
        xs.push(ms);
      }
      console.log(`| ${label} | ${median(xs).toFixed(2)} ms |`);
      creates.push({ image: label, medianMs: Number(median(xs).toFixed(2)) });
      for (let i = 0; i < 9; i++) await store.removeContainer(`c-${im}-${i}`);
    }

    // Reading a file through an image vs from the extracted directory.
    const reads: Array<Record<string, unknown>> = [];
    figures.readFile = reads;
    const top = store.snapshotter.volume(store.image('app').chainIds[3]);
    console.log('\n| read | image (mount + read + unmount) | image (open session) | extracted directory (page cache) |');
    console.log('|---|---:|---:|---:|');
    for (const [path, label] of [
      ['/srv/big.bin', `${Math.round(10 / k)} MiB file`],
      ['/usr/share/s5.dat', '24 KiB file'],
    ]) {
      const cold: number[] = [];
      const warm: number[] = [];
      const dir: number[] = [];
      for (let i = 0; i < 5; i++) {
        const [, c] = await timeAsync(async () => {
          const s = await FsSession.open(top);
          await s.readFile(path);
          await s.close();
        });
        cold.push(c);
      }
      const s = await FsSession.open(top);
      for (let i = 0; i < 5; i++) warm.push((await timeAsync(() => s.readFile(path)))[1]);
      await s.close();
      for (let i = 0; i < 5; i++) dir.push(time(() => readFileSync(join(extracted, path)))[1]);
      console.log(`| ${label} | ${median(cold).toFixed(1)} ms | ${median(warm).toFixed(2)} ms | ${median(dir).toFixed(3)} ms |`);
      reads.push({
        file: label,
        mountReadMs: Number(median(cold).toFixed(1)),
        sessionReadMs: Number(median(warm).toFixed(2)),
        directoryMs: Number(median(dir).toFixed(3)),
      });
    }
    pool.closeSync();
    record();
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
