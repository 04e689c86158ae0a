/**
 * Send of a small change (a benchmark, not a test): a 1 GiB volume of random data, snapshot BASE, 1% of its
 * blocks rewritten (one 4 KiB write each, at random), snapshot NEXT. Measured in one run, to files on the same
 * disk:
 *   - `thinpool send NEXT --from BASE` (library sendStream), time and stream bytes;
 *   - a full `thinpool export NEXT` (raw sparse image, the CLI command) and a full `thinpool send NEXT`;
 *   - with `--ceph-conf=FILE` (a cluster's ceph.conf with an admin keyring; `--rbd-pool=P`, default rbd): the
 *     same two snapshots in a new RBD image (the thinpool streams applied with `rbd import-diff`), and
 *     `rbd export-diff --from-snap BASE IMAGE@NEXT` of the same change; the image is removed afterwards.
 * Prints each as a ratio to the incremental send (time) and the stream's size.
 *
 * `--quick`: a 64 MiB volume.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { closeSync, fsyncSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main as cli } from '../../src/cli/main.js';
import { sendStream } from '../../src/stream/send.js';
import { ThinPool } from '../../src/thin/pool.js';

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

/** `--name=value` (the bench runner passes only arguments starting with --). */
function argValue(name: string): string | undefined {
  const a = process.argv.find((x) => x.startsWith(`${name}=`));
  return a === undefined ? undefined : a.slice(name.length + 1);
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const r = await fn();
  return [r, performance.now() - t];
}

async function run(): Promise<void> {
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

    const rows: Array<[string, number, number]> = [];
    const [incBytes, incMs] = await timed(() => sendTo(pool, 'next', 'base', join(dir, 'inc.diff')));
    rows.push(['thinpool send --from base', incMs, incBytes]);
    const [fullBytes, fullMs] = await timed(() => sendTo(pool, 'next', undefined, join(dir, 'full.diff')));
    rows.push(['thinpool send (full)', fullMs, fullBytes]);
    await sendTo(pool, 'base', undefined, join(dir, 'base.diff'));
    pool.closeSync();
    const out = { write: (s: string) => process.stderr.write(s) } as unknown as NodeJS.WritableStream;
    const [code, expMs] = await timed(() =>
      cli(['export', poolDir, 'next', join(dir, 'next.raw')], { stdout: out as never, stderr: out as never }),
    );
    if (code !== 0) throw new Error('thinpool export failed');
    rows.push(['thinpool export (full raw image)', expMs, statSync(join(dir, 'next.raw')).blocks * 512]);

    const conf = argValue('--ceph-conf');
    if (conf !== undefined) {
      const rbdPool = argValue('--rbd-pool') ?? 'rbd';
      const image = `${rbdPool}/tp-bench-${process.pid}`;
      const rbd = (args: string[]) => execFileP('rbd', ['-c', conf, ...args], { maxBuffer: 16 * MiB });
      await rbd(['create', '--size', `${SIZE}B`, image]);
      try {
        await rbd(['import-diff', '--no-progress', join(dir, 'base.diff'), image]);
        await rbd(['import-diff', '--no-progress', join(dir, 'inc.diff'), image]);
        const f = join(dir, 'rbd-inc.diff');
        const [, rbdMs] = await timed(() => rbd(['export-diff', '--no-progress', '--from-snap', 'base', `${image}@next`, f]));
        rows.push(['rbd export-diff --from-snap base', rbdMs, statSync(f).size]);
      } finally {
        await rbd(['snap', 'purge', '--no-progress', image]).catch(() => undefined);
        await rbd(['rm', '--no-progress', image]).catch(() => undefined);
      }
    } else {
      console.log('(rbd export-diff not measured: give --ceph-conf=FILE of a cluster to compare with it)');
    }

    console.log(
      `\nSend of a ${SIZE / MiB} MiB volume with 1% of its blocks changed (${changed.size} of ${blocks} blocks of 64 KiB), load ${(await import('node:os')).loadavg()[0].toFixed(1)}`,
    );
    console.log('| what | time | x incremental send | bytes written | x incremental stream |');
    console.log('|---|---|---|---|---|');
    for (const [what, ms, bytes] of rows) {
      console.log(
        `| ${what} | ${ms.toFixed(0)} ms | ${(ms / incMs).toFixed(1)} | ${(bytes / MiB).toFixed(2)} MiB | ${(bytes / incBytes).toFixed(1)} |`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await run();
