/**
 * Cost of a first write into a shared block (a new data block allocated and mapped; the old block's other bytes
 * copied: at once for writes that are not whole 4 KiB granules, else deferred to the first read, the commit or an
 * extents call, pending-copies.ts) against a 4 KiB write into an unshared provisioned block, and against a first
 * write into an unprovisioned block. Page cache warm, interleaved rounds timed by the wall clock (a reflink's work
 * may run in the kernel's threads); every copy-on-write op hits a block not yet copied. Since the copy of a
 * 4 KiB write is deferred, two more cases keep it in the timed round: the same writes with every owed copy
 * settled at the end of each round (against unshared writes with the same call), and shared blocks written
 * whole 4 KiB at a time (nothing owed, nothing copied).
 *
 * Where: the scratch directory's file system, and, when run as root with loop devices, a loop-mounted XFS
 * (xfsprogs) and btrfs (btrfs-progs) made, used and removed by this run. On each, the copy takes the path the
 * data file's file system offers (FICLONERANGE reflink, copy_file_range, or read + write) and, for the same-run
 * baseline of the old path, once more in a child process without the native helper (THINPOOL_NO_NATIVE=1: read
 * + write through a buffer). Goal (issue 17): shared first write at most 2x the unshared write on any file
 * system, about 1x where extents can be shared. Columns `copy alone` and `floor`: the 64 KiB copy on a bare file
 * of that file system (no pool), and (unshared write + copy alone) / unshared write: the ratio were the copy the
 * engine's only extra work, which no work in the engine can take off.
 *
 * With THINPOOL_FIGURES_DIR set (and not --quick), writes $THINPOOL_FIGURES_DIR/cow.json for
 * scripts/render-figures.mjs.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FileDevice } from '../../src/io/file-device.js';
import { ThinPool } from '../../src/index.js';
import { BLOCK, QUICK, args, fmtNs, header, interleaved, note, rng, scratchDir, table, verdict, type Case } from './_lib.js';

const NBLK = QUICK ? 1024 : 4096;
const PER_ROUND = 128;
const ROUNDS = Math.floor(NBLK / PER_ROUND) - 2;

interface Measured {
  /** How the copies were made: the FileDevice path counted most. */
  path: string;
  unsharedNs: number;
  sharedNs: number;
  unprovisionedNs: number;
  /**
   * The same writes with the deferred copies settled inside the timed round (pending-copies.ts: a 4 KiB write
   * into a shared block copies the block's other bytes later, at the latest in the commit): each round ends with
   * an extents call on the volume, which settles every owed copy; the unshared baseline makes the same call.
   */
  settledUnsharedNs: number;
  settledSharedNs: number;
  settledRatio: number;
  /**
   * Shared blocks written whole, 4 KiB at a time in order (a file system writing a file over a snapshot), per
   * 4 KiB write, settled in the round; the baseline is the unshared write.
   */
  fillNs: number;
  fillRatio: number;
  /** A 4 KiB write 512 bytes off the 4 KiB grid into a shared block: copied at once (the path before deferring). */
  atOnceNs: number;
  atOnceRatio: number;
  /** The copy alone: the device's copyWithin of a 64 KiB block into a fresh one, on a bare file of the same file system. */
  copyNs: number;
  /**
   * The floor under the ratio: (unshared write + the copy alone) / unshared write, what a shared first write
   * would cost were the copy the engine's only extra work.
   */
  floorRatio: number;
}

/** The copy alone (see Measured.copyNs): a bare FileDevice in dir, NBLK written blocks, copies into fresh ones. */
async function copyAlone(dir: string): Promise<number> {
  const dev = FileDevice.create(join(dir, 'floor'), NBLK * BLOCK * 2);
  try {
    const block = Buffer.alloc(BLOCK, 5);
    for (let i = 0; i < NBLK; i++) dev.write(block, i * BLOCK);
    dev.flush();
    const piece = Buffer.alloc(4096, 3);
    const cases: Case[] = [
      {
        name: 'in place',
        run: (f, n) => {
          for (let i = f; i < f + n; i++) dev.write(piece, (i % NBLK) * BLOCK + 8192);
        },
      },
      {
        name: 'copy',
        run: (f, n) => {
          for (let i = f; i < f + n; i++) dev.copyWithin((i % NBLK) * BLOCK, (NBLK + i) * BLOCK, BLOCK);
        },
      },
    ];
    const res = await interleaved(cases, { perRound: PER_ROUND, rounds: ROUNDS, warmup: 2 });
    return res[1].nsPerOp;
  } finally {
    dev.close();
  }
}

/**
 * A pool in dir/name with NBLK-block volumes `names`: every block of each holds 4 KiB written before, except
 * in those named in `blank` (nothing provisioned); those in `shared` have a snapshot, taken and committed.
 */
function poolWith(dir: string, name: string, names: string[], opts: { shared: string[]; blank?: string[] }) {
  const pool = ThinPool.formatSync(join(dir, name), { size: NBLK * BLOCK * (2 * names.length + 1), metadataSize: 32 * 1024 * 1024 });
  const piece = Buffer.alloc(4096, 3);
  const vols = names.map((n) => pool.createThinSync(n, { size: NBLK * BLOCK }));
  const written = vols.filter((_, k) => !opts.blank?.includes(names[k]));
  for (let i = 0; i < NBLK; i++) for (const vol of written) vol.writeSync(piece, i * BLOCK);
  for (const n of opts.shared) pool.snapshotSync(n, `${n}-snap`);
  pool.commitSync();
  return { pool, vols };
}

async function measure(dir: string): Promise<Measured> {
  const piece = Buffer.alloc(4096, 3);
  const r = rng(4);
  const perm = Array.from({ length: NBLK }, (_, i) => i);
  for (let i = NBLK - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  // The first group leaves the copies it defers owed (settled by the close's commit).
  const a = poolWith(dir, 'pool-a', ['v', 'x', 'u', 'e'], { shared: ['v', 'x'], blank: ['e'] });
  const [v, x, u, e] = a.vols;
  const first = await interleaved(
    [
      {
        name: 'unshared',
        run: (f, n) => {
          for (let i = f; i < f + n; i++) u.writeSync(piece, perm[i % NBLK] * BLOCK + 8192);
        },
      },
      {
        name: 'shared',
        run: (f, n) => {
          for (let i = f; i < f + n; i++) v.writeSync(piece, perm[i] * BLOCK + 8192);
        },
      },
      {
        name: 'unprovisioned',
        run: (f, n) => {
          for (let i = f; i < f + n; i++) e.writeSync(piece, perm[i] * BLOCK + 8192);
        },
      },
      {
        // 512 bytes off the 4 KiB grid: not whole granules, so the block is copied at once, as every first
        // write into a shared block was before the copies were deferred.
        name: 'shared, copied at once',
        run: (f, n) => {
          for (let i = f; i < f + n; i++) x.writeSync(piece, perm[i] * BLOCK + 8192 + 512);
        },
      },
    ],
    { perRound: PER_ROUND, rounds: ROUNDS, warmup: 2 },
  );
  a.pool.closeSync();
  // The second group, in a pool of its own, settles what it owes inside each timed round (extents settle it).
  const b = poolWith(dir, 'pool-b', ['w', 'f', 'u'], { shared: ['w', 'f'] });
  const [w, fv, u2] = b.vols;
  const second = await interleaved(
    [
      {
        name: 'unshared, settled',
        run: (f, n) => {
          for (let i = f; i < f + n; i++) u2.writeSync(piece, perm[i % NBLK] * BLOCK + 8192);
          u2.extents(0, BLOCK);
        },
      },
      {
        name: 'shared, settled',
        run: (f, n) => {
          for (let i = f; i < f + n; i++) w.writeSync(piece, perm[i] * BLOCK + 8192);
          w.extents(0, BLOCK);
        },
      },
      {
        name: 'shared, filled 4 KiB at a time',
        run: (from, n) => {
          for (let i = from; i < from + n; i++) fv.writeSync(piece, perm[Math.floor(i / 16)] * BLOCK + (i % 16) * 4096);
          fv.extents(0, BLOCK);
        },
      },
    ],
    { perRound: PER_ROUND, rounds: ROUNDS, warmup: 2 },
  );
  const copies = (b.pool.storage.data as FileDevice).copies;
  const path = (Object.entries(copies) as Array<[string, number]>).sort((x, y) => y[1] - x[1])[0][0];
  b.pool.closeSync();
  const ns = new Map([...first, ...second].map((c) => [c.name, c.nsPerOp]));
  const at = (name: string): number => ns.get(name)!;
  const copyNs = await copyAlone(dir);
  const unsharedNs = at('unshared');
  return {
    path,
    unsharedNs,
    sharedNs: at('shared'),
    unprovisionedNs: at('unprovisioned'),
    settledUnsharedNs: at('unshared, settled'),
    settledSharedNs: at('shared, settled'),
    settledRatio: at('shared, settled') / at('unshared, settled'),
    fillNs: at('shared, filled 4 KiB at a time'),
    fillRatio: at('shared, filled 4 KiB at a time') / unsharedNs,
    copyNs,
    floorRatio: 1 + copyNs / unsharedNs,
    atOnceNs: at('shared, copied at once'),
    atOnceRatio: at('shared, copied at once') / unsharedNs,
  };
}

/** Runs measure() in a child process on dir (optionally without the native helper); returns its figures. */
function child(dir: string, noNative: boolean): Measured {
  const self = fileURLToPath(import.meta.url);
  const r = spawnSync(process.execPath, [self, '--child', dir, ...(QUICK ? ['--quick'] : [])], {
    encoding: 'utf8',
    env: { ...process.env, THINPOOL_NO_NATIVE: noNative ? '1' : '' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`cow child on ${dir} failed (${r.status})`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Measured;
}

function sh(cmd: string, argv: string[]): { ok: boolean; out: string } {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: 120_000 });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error?.message ?? ''}`.trim() };
}

/** A loop-mounted file system of `kind` under base; null (with a note) when this machine cannot make one. */
function loopFs(base: string, kind: 'xfs' | 'btrfs'): { dir: string; remove(): void } | null {
  if (process.getuid?.() !== 0) {
    note(`${kind}: skipped (needs root for losetup and mount)`);
    return null;
  }
  const mkfs = kind === 'xfs' ? 'mkfs.xfs' : 'mkfs.btrfs';
  const image = join(base, `${kind}.img`);
  const mnt = join(base, `${kind}-mnt`);
  writeFileSync(image, '');
  spawnSync('truncate', ['-s', `${(2 * 16 * NBLK * BLOCK) / 1024 / 1024 + 320}M`, image]); // two children of two pools
  const made = sh(mkfs, kind === 'xfs' ? ['-q', '-m', 'reflink=1', image] : ['-q', image]);
  if (!made.ok) {
    note(`${kind}: skipped (${mkfs}: ${made.out}; Debian package ${kind === 'xfs' ? 'xfsprogs' : 'btrfs-progs'})`);
    return null;
  }
  const lo = sh('losetup', ['-f', '--show', image]);
  if (!lo.ok) {
    note(`${kind}: skipped (losetup: ${lo.out})`);
    return null;
  }
  const loop = lo.out;
  mkdirSync(mnt);
  const m = sh('mount', [loop, mnt]);
  if (!m.ok) {
    sh('losetup', ['-d', loop]);
    note(`${kind}: skipped (mount: ${m.out})`);
    return null;
  }
  return {
    dir: mnt,
    remove: () => {
      sh('umount', [mnt]);
      sh('losetup', ['-d', loop]);
    },
  };
}

async function main(): Promise<void> {
  const at = args.indexOf('--child');
  if (at >= 0) {
    console.log(JSON.stringify(await measure(args[at + 1])));
    return;
  }
  header(
    'Copy-on-write: first write into a shared block',
    `${NBLK} provisioned 64 KiB blocks, snapshot taken, ${PER_ROUND} writes per round, wall clock, load average ${loadavg()[0].toFixed(1)}`,
  );
  const base = scratchDir('cow');
  const fsType = sh('stat', ['-f', '-c', '%T', base]).out;
  const targets: Array<{ fs: string; dir: string; remove?(): void }> = [{ fs: `${fsType} (scratch directory)`, dir: join(base, 'tmp') }];
  mkdirSync(targets[0].dir);
  for (const kind of ['xfs', 'btrfs'] as const) {
    const t = loopFs(base, kind);
    if (t) targets.push({ fs: `${kind} (loop-mounted)`, dir: t.dir, remove: t.remove });
  }
  const rows: Array<Measured & { fs: string; ratio: number }> = [];
  try {
    for (const t of targets) {
      for (const noNative of [false, true]) {
        const dir = join(t.dir, noNative ? 'plain' : 'native');
        mkdirSync(dir);
        const m = child(dir, noNative);
        rows.push({ fs: t.fs, ...m, ratio: m.sharedNs / m.unsharedNs });
      }
    }
  } finally {
    for (const t of targets) t.remove?.();
  }
  table(
    'First 4 KiB write into a shared 64 KiB block against a 4 KiB write into an unshared one (medians of rounds)',
    [
      'file system',
      'copy path',
      'unshared write',
      'shared first write',
      'ratio',
      'goal <= 2x',
      'unprovisioned first write',
      'copy alone',
      'floor',
      'copied at once (unaligned) / ratio',
      'settled: unshared / shared / ratio',
      'filled 4 KiB at a time / ratio',
    ],
    rows.map((r) => [
      r.fs,
      r.path,
      fmtNs(r.unsharedNs),
      fmtNs(r.sharedNs),
      `${r.ratio.toFixed(2)}x`,
      r.path === 'read-write' ? '(no native helper)' : verdict(r.ratio, 2, false),
      fmtNs(r.unprovisionedNs),
      fmtNs(r.copyNs),
      `${r.floorRatio.toFixed(2)}x`,
      `${fmtNs(r.atOnceNs)} / ${r.atOnceRatio.toFixed(2)}x`,
      `${fmtNs(r.settledUnsharedNs)} / ${fmtNs(r.settledSharedNs)} / ${r.settledRatio.toFixed(2)}x`,
      `${fmtNs(r.fillNs)} / ${r.fillRatio.toFixed(2)}x`,
    ]),
  );
  const figDir = process.env.THINPOOL_FIGURES_DIR;
  if (figDir !== undefined && !QUICK) {
    const path = join(figDir, 'cow.json');
    writeFileSync(
      path,
      `${JSON.stringify({ bench: 'bench/engine/cow.ts', machine: '2 cores shared with other jobs', loadAverage: Number(loadavg()[0].toFixed(1)), blocks: NBLK, rows }, null, 2)}\n`,
    );
    note(`figures written to ${path}`);
  }
}

await main();
