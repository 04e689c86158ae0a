/**
 * 2. Reads through deep stacks: the data lives in the bottom layer of a stack N deep. Random 4 KiB reads per
 * second from the top; for the file-level drivers also opens and stats per second of a path resolving in the
 * bottom layer. Each layer above the bottom holds one small file of its own (file-level) or nothing (block-level).
 */
import { closeSync, mkdirSync, openSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Union } from '../../../src/union/index.js';
import type { Ctx, Scenario, System, Unit } from '../lib/result.js';
import { opsPerSec, rng } from '../lib/stats.js';
import { MiB, writeDataFile, writeVolume } from '../systems/files.js';
import { Ext4Pool, ext4VolumeSize } from '../systems/ext4.js';
import { mountOverlay } from '../systems/overlay.js';
import { qcowCreate, qcowFromRaw, qemuBench } from '../systems/qemu.js';
import { formatPool } from '../systems/thin.js';

const READS = 'random 4 KiB reads';
const OPENS = 'opens (open + close)';
const STATS = 'stats';
const COLD = 'random 4 KiB reads, cold (just mounted)';

function plan(ctx: Ctx) {
  if (ctx.mode === 'quick') return { size: 8 * MiB, file: [1, 16], block: [1, 16, 64], ms: 100 };
  return { size: 64 * MiB, file: [1, 16, 64, 128], block: [1, 16, 64, 128, 1000], ms: 400 };
}

function randomOffsets(size: number, n: number): Float64Array {
  const r = rng(7);
  const out = new Float64Array(n);
  const pages = size / 4096;
  for (let i = 0; i < n; i++) out[i] = Math.floor(r() * pages) * 4096;
  return out;
}

/** reps measurements of ops/s, after one warm-up run (JIT, caches) that is not counted. */
function best(reps: number, fn: () => number, warm = true): number[] {
  if (warm) fn();
  const out: number[] = [];
  for (let i = 0; i < reps; i++) out.push(fn());
  return out;
}

export const deepRead: Scenario = {
  name: 'deep-read',
  title: 'Reads through deep stacks',
  run(ctx, rec) {
    const p = plan(ctx);
    const dir = join(ctx.work, 'deep');
    const maxFile = Math.max(...p.file);
    const offs = randomOffsets(p.size, 1 << 16);
    const buf = Buffer.alloc(4096);
    const reps = Math.min(ctx.reps, 3);
    const rd = (fd: number) => (i: number) => {
      readSync(fd, buf, 0, 4096, offs[i & 0xffff]!);
    };

    // Layers 0 (bottom, holds the data) .. maxFile-1; names are short so deep lowerdir options fit in a page.
    const layer = (i: number) => join(dir, 'l', String(i));
    writeDataFile(join(layer(0), 'data', 'bottom.bin'), p.size);
    for (let i = 1; i < maxFile; i++) {
      mkdirSync(join(layer(i), `own${i}`), { recursive: true });
      writeFileSync(join(layer(i), `own${i}`, 'f'), `layer ${i}`);
    }
    const path = 'data/bottom.bin';

    // raw file: the ceiling (no stack).
    {
      const fd = openSync(join(layer(0), path), 'r');
      const v = best(reps, () => opsPerSec(rd(fd), p.ms));
      closeSync(fd);
      for (const d of p.block) rec.add(`depth ${d}`, READS, 'ops/s', 'raw', v, 'no stack: the same file read directly');
    }

    // thinpool: base volume, then a chain of snapshots; the top one is read.
    {
      const pool = formatPool(join(dir, 'pool'), p.size + 16 * MiB);
      const base = pool.pool.createThinSync('d0', { size: p.size });
      writeVolume(base, p.size);
      let depth = 1;
      let top = 'd0';
      for (const d of p.block) {
        while (depth < d) {
          pool.pool.snapshotSync(top, `d${depth}`);
          top = `d${depth}`;
          depth++;
        }
        pool.pool.commitSync();
        const vol = pool.pool.volume(top);
        rec.add(
          `depth ${d}`,
          READS,
          'ops/s',
          'thinpool',
          best(reps, () => opsPerSec((i) => vol.readSync(buf, offs[i & 0xffff]!), p.ms)),
        );
      }
      pool.close();
      rmSync(join(dir, 'pool'), { recursive: true, force: true });
    }

    // ext4 on thinpool via NBD: the data file on an ext4 volume, then a chain of snapshots of the volume; the top
    // one is mounted. Cold reads (first touches after the mount) go loop -> nbdfuse -> NBD -> the pool; warm
    // reads (after one sequential pass over the file), opens and stats are the kernel's page and dentry caches.
    const erows: [string, string, Unit][] = p.block.flatMap((d) =>
      [COLD, READS, OPENS, STATS].map((m) => [`depth ${d}`, m, 'ops/s'] as [string, string, Unit]),
    );
    if (rec.runs('ext4-nbd', erows)) {
      const e = new Ext4Pool(join(dir, 'e4pool'), 2 * ext4VolumeSize(p.size));
      try {
        e.createThin('d0', ext4VolumeSize(p.size));
        const m = join(dir, 'e4m');
        e.mount('d0', m, true);
        writeDataFile(join(m, path), p.size);
        e.unmount(m);
        let depth = 1;
        let top = 'd0';
        const cold = ctx.mode === 'quick' ? 300 : 2000;
        for (const d of p.block) {
          while (depth < d) {
            e.snapshot(top, `d${depth}`, false);
            top = `d${depth}`;
            depth++;
          }
          e.commit();
          const coldRuns: number[] = [];
          for (let r = 0; r < reps; r++) {
            e.mount(top, m);
            const file = join(m, path);
            const fd = openSync(file, 'r');
            const t = Number(process.hrtime.bigint());
            for (let i = 0; i < cold; i++) readSync(fd, buf, 0, 4096, offs[(i * 7 + r * 7919) & 0xffff]!);
            coldRuns.push((cold / (Number(process.hrtime.bigint()) - t)) * 1e9);
            if (r === reps - 1) {
              // Warm the page cache with the whole file first, as the other systems' files are (written in this process).
              const big = Buffer.alloc(MiB);
              for (let o = 0; o < p.size; o += MiB) readSync(fd, big, 0, MiB, o);
              rec.add(
                `depth ${d}`,
                READS,
                'ops/s',
                'ext4-nbd',
                best(reps, () => opsPerSec(rd(fd), p.ms)),
              );
              rec.add(
                `depth ${d}`,
                OPENS,
                'ops/s',
                'ext4-nbd',
                best(reps, () => opsPerSec(() => closeSync(openSync(file, 'r')), p.ms, 200)),
              );
              rec.add(
                `depth ${d}`,
                STATS,
                'ops/s',
                'ext4-nbd',
                best(reps, () => opsPerSec(() => statSync(file), p.ms, 200)),
              );
            }
            closeSync(fd);
            e.unmount(m);
          }
          rec.add(
            `depth ${d}`,
            COLD,
            'ops/s',
            'ext4-nbd',
            coldRuns,
            `${cold} reads right after mounting the top of the chain (a fresh nbdfuse + loop + mount each run)`,
          );
        }
      } finally {
        e.close();
      }
      rmSync(join(dir, 'e4pool'), { recursive: true, force: true });
    }

    // qcow2: a chain of empty overlays over the base image; qemu-img bench with a stride that visits pages pseudo-randomly.
    const qrows = p.block.map((d) => [`depth ${d}`, READS, 'ops/s'] as [string, string, Unit]);
    if (rec.runs('qcow2', qrows)) {
      const q = join(dir, 'q');
      mkdirSync(q);
      qcowFromRaw(join(layer(0), path), join(q, '0.qcow2'));
      let depth = 1;
      const step = 7919 * 4096; // prime number of pages: offsets wrap around the image in a scattered order
      for (const d of p.block) {
        const count = ctx.mode === 'quick' ? 2000 : d <= 16 ? 40000 : d <= 128 ? 10000 : 100;
        while (depth < d) {
          qcowCreate(join(q, `${depth}.qcow2`), p.size, { backing: join(q, `${depth - 1}.qcow2`), unsafe: true });
          depth++;
        }
        rec.add(
          `depth ${d}`,
          READS,
          'ops/s',
          'qcow2',
          best(reps, () => qemuBench(join(q, `${d - 1}.qcow2`), count, 4096, step), false),
          'qemu-img bench, queue depth 1, strided offsets',
        );
      }
    }

    // kernel overlayfs: N lower layers mounted (relative paths keep the option short).
    const frows: [string, string, Unit][] = p.file.flatMap((d) =>
      [READS, OPENS, STATS].map((m) => [`depth ${d}`, m, 'ops/s'] as [string, string, Unit]),
    );
    if (rec.runs('overlayfs', frows)) {
      for (const d of p.file) {
        const c = join(dir, `ovl${d}`);
        const lower = Array.from({ length: d }, (_, i) => String(d - 1 - i));
        const m = mountOverlay(lower, join(c, 'u'), join(c, 'w'), join(c, 'm'), join(dir, 'l'));
        const file = join(m.mnt, path);
        const fd = openSync(file, 'r');
        rec.add(
          `depth ${d}`,
          READS,
          'ops/s',
          'overlayfs',
          best(reps, () => opsPerSec(rd(fd), p.ms)),
        );
        closeSync(fd);
        rec.add(
          `depth ${d}`,
          OPENS,
          'ops/s',
          'overlayfs',
          best(reps, () => opsPerSec(() => closeSync(openSync(file, 'r')), p.ms, 200)),
        );
        rec.add(
          `depth ${d}`,
          STATS,
          'ops/s',
          'overlayfs',
          best(reps, () => opsPerSec(() => statSync(file), p.ms, 200)),
        );
        m.umount();
        rmSync(c, { recursive: true, force: true });
      }
      for (const d of p.block)
        if (!p.file.includes(d)) rec.skip(`depth ${d}`, READS, 'ops/s', 'overlayfs', 'overlayfs stacks at most 500 lower layers');
    }

    // userspace union: every lookup walks the branches top-down.
    for (const d of p.file) {
      const lower = Array.from({ length: d }, (_, i) => layer(d - 1 - i));
      const u = new Union({ lower });
      const f = u.open(path, 'r');
      rec.add(
        `depth ${d}`,
        READS,
        'ops/s',
        'union',
        best(reps, () => opsPerSec((i) => f.read(buf, offs[i & 0xffff]!), p.ms)),
      );
      f.close();
      rec.add(
        `depth ${d}`,
        OPENS,
        'ops/s',
        'union',
        best(reps, () => opsPerSec(() => u.open(path, 'r').close(), p.ms, 20)),
      );
      rec.add(
        `depth ${d}`,
        STATS,
        'ops/s',
        'union',
        best(reps, () => opsPerSec(() => u.stat(path), p.ms, 20)),
      );
    }
    for (const d of p.block)
      if (!p.file.includes(d))
        rec.skip(`depth ${d}`, READS, 'ops/s', 'union', 'file-level stacks measured up to 128 layers (as the issue asks)');

    rmSync(dir, { recursive: true, force: true });
    rec.note(
      `Data file: ${p.size / MiB} MiB in the bottom layer; random 4 KiB reads from the page cache, medians of ${reps} runs of ${p.ms} ms.`,
    );
    rec.note(
      'ext4 on thinpool via NBD: the layers are a snapshot chain of the ext4 volume (block level, so it runs to depth 1,000 like thinpool); "cold" reads are the first touches after a fresh mount and go through loop, nbdfuse and NBD to the pool.',
    );
    const sys: System[] = ['thinpool', 'ext4-nbd', 'qcow2', 'overlayfs', 'union', 'raw'];
    const names = ['thinpool', 'ext4 on thinpool via NBD', 'qcow2 chain', 'kernel overlayfs', 'union (userspace)', 'raw file'];
    rec.chart('deep-read-reads.svg', {
      kind: 'line',
      title: 'Random 4 KiB reads through a stack (data in the bottom layer)',
      x: { label: 'stack depth (layers)', log: true },
      y: { label: 'reads per second', log: true },
      series: sys.map((s, i) => ({
        name: names[i]!,
        points: p.block.map((d) => [d, rec.get(`depth ${d}`, READS, s) ?? NaN] as [number, number]),
      })),
    });
    rec.chart('deep-read-lookups.svg', {
      kind: 'line',
      title: 'Opens and stats of a path in the bottom layer',
      x: { label: 'stack depth (layers)', log: true },
      y: { label: 'operations per second', log: true },
      series: [
        { name: 'overlayfs open', points: p.file.map((d) => [d, rec.get(`depth ${d}`, OPENS, 'overlayfs') ?? NaN] as [number, number]) },
        { name: 'overlayfs stat', points: p.file.map((d) => [d, rec.get(`depth ${d}`, STATS, 'overlayfs') ?? NaN] as [number, number]) },
        { name: 'union open', points: p.file.map((d) => [d, rec.get(`depth ${d}`, OPENS, 'union') ?? NaN] as [number, number]) },
        { name: 'union stat', points: p.file.map((d) => [d, rec.get(`depth ${d}`, STATS, 'union') ?? NaN] as [number, number]) },
        { name: 'ext4 (NBD) open', points: p.block.map((d) => [d, rec.get(`depth ${d}`, OPENS, 'ext4-nbd') ?? NaN] as [number, number]) },
        { name: 'ext4 (NBD) stat', points: p.block.map((d) => [d, rec.get(`depth ${d}`, STATS, 'ext4-nbd') ?? NaN] as [number, number]) },
      ],
    });
  },
};
