/**
 * 3. Layer and container creation: snapshot time against the mapped size of the parent and against depth;
 * overlay mount time against the number of lower layers; creating a union container against depth.
 */
import { copyFileSync, mkdirSync, rmSync, truncateSync, closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { Union } from '../../../src/union/index.js';
import type { Ctx, Scenario, System } from '../lib/result.js';
import { now } from '../lib/stats.js';
import { fmtBytes } from '../lib/svg.js';
import { GiB, MiB, writeDataFile } from '../systems/files.js';
import { Ext4Pool, ext4VolumeSize } from '../systems/ext4.js';
import { mountOverlay, OVERLAY_MAX_LOWER } from '../systems/overlay.js';
import { qcowCreate } from '../systems/qemu.js';
import { BLOCK, formatPool, mapBlocksMetadataOnly } from '../systems/thin.js';

function plan(ctx: Ctx) {
  if (ctx.mode === 'quick') return { sizes: [MiB, 64 * MiB], depths: [1, 16, 64], layers: [1, 16, 64], rawMax: 64 * MiB };
  return {
    sizes: [MiB, 64 * MiB, GiB, 16 * GiB, 64 * GiB],
    depths: [1, 16, 64, 128, 1000],
    layers: [1, 16, 64, 128, OVERLAY_MAX_LOWER],
    rawMax: ctx.mode === 'full' ? GiB : 64 * MiB,
  };
}

const SNAP = 'create a container layer';
const E4MOUNT = 'of which attach + mount';
/** ext4 parents are real file systems with a file of that size written through NBD: measured up to this size. */
const E4MAX = 64 * MiB;

/** ext4 on thinpool via NBD: snapshot + commit + serve + nbdfuse + loop + mount, the mount part alone. */
function ext4Container(e: Ext4Pool, parent: string, name: string, mnt: string): { total: number; mount: number } {
  const t = now();
  e.snapshot(parent, name);
  const mount = e.mount(name, mnt);
  const total = now() - t;
  e.unmount(mnt);
  e.delete(name);
  return { total, mount };
}

export const create: Scenario = {
  name: 'create',
  title: 'Layer and container creation',
  run(ctx, rec) {
    const p = plan(ctx);
    const dir = join(ctx.work, 'create');
    mkdirSync(dir, { recursive: true });
    const reps = ctx.reps;

    // --- against the mapped size of the parent ---
    for (const size of p.sizes) {
      const kase = `parent ${fmtBytes(size)}`;
      ctx.log(`  parent of ${fmtBytes(size)}`);
      // thinpool: parent mapped in the metadata only (snapshot cost depends on the metadata, not the data).
      {
        const pool = formatPool(join(dir, 'pool'), size + 16 * MiB);
        const parent = pool.pool.createThinSync('parent', { size });
        mapBlocksMetadataOnly(pool.pool, parent.id, size / BLOCK);
        const runs: number[] = [];
        for (let r = 0; r < reps; r++) {
          const t = now();
          pool.pool.snapshotSync('parent', `s${r}`);
          pool.pool.commitSync();
          runs.push(now() - t);
        }
        rec.add(kase, SNAP, 'ms', 'thinpool', runs, 'snapshot + commit; parent mapped in the metadata only');
        pool.close();
        rmSync(join(dir, 'pool'), { recursive: true, force: true });
      }
      // ext4 on thinpool via NBD: the parent is an ext4 volume holding one file of that size (written through NBD).
      if (
        rec.runs('ext4-nbd', [
          [kase, SNAP, 'ms'],
          [kase, E4MOUNT, 'ms'],
        ])
      ) {
        if (size > E4MAX) {
          const why = `ext4 parents are written through NBD: measured up to ${fmtBytes(E4MAX)}`;
          rec.skip(kase, SNAP, 'ms', 'ext4-nbd', why);
          rec.skip(kase, E4MOUNT, 'ms', 'ext4-nbd', why);
        } else {
          const e = new Ext4Pool(join(dir, 'e4pool'), 2 * ext4VolumeSize(size));
          try {
            e.createThin('parent', ext4VolumeSize(size));
            e.mount('parent', join(dir, 'e4m'), true);
            writeDataFile(join(dir, 'e4m', 'image.bin'), size);
            e.unmount(join(dir, 'e4m'));
            const runs = Array.from({ length: reps }, (_, r) => ext4Container(e, 'parent', `s${r}`, join(dir, 'e4m')));
            rec.add(
              kase,
              SNAP,
              'ms',
              'ext4-nbd',
              runs.map((x) => x.total),
              'snapshot + commit + NBD server + nbdfuse + losetup + mount (process starts included)',
            );
            rec.add(
              kase,
              E4MOUNT,
              'ms',
              'ext4-nbd',
              runs.map((x) => x.mount),
            );
          } finally {
            e.close();
          }
          rmSync(join(dir, 'e4pool'), { recursive: true, force: true });
        }
      }
      // qcow2: parent with every cluster mapped (preallocation=metadata), overlay created on it.
      if (rec.runs('qcow2', [[kase, SNAP, 'ms']])) {
        const parent = join(dir, 'parent.qcow2');
        qcowCreate(parent, size, { prealloc: 'metadata' });
        const runs: number[] = [];
        for (let r = 0; r < reps; r++) {
          const t = now();
          qcowCreate(join(dir, `o${r}.qcow2`), undefined, { backing: parent });
          runs.push(now() - t);
          rmSync(join(dir, `o${r}.qcow2`));
        }
        rec.add(kase, SNAP, 'ms', 'qcow2', runs, 'qemu-img create -b (a process start included)');
        rmSync(parent);
      }
      // file-level: the parent layer holds one file of that size (sparse: allocation does not matter here).
      const lower = join(dir, 'lower');
      mkdirSync(lower, { recursive: true });
      closeSync(openSync(join(lower, 'image.bin'), 'w'));
      truncateSync(join(lower, 'image.bin'), size);
      if (rec.runs('overlayfs', [[kase, SNAP, 'ms']])) {
        const runs: number[] = [];
        for (let r = 0; r < reps; r++) {
          const c = join(dir, `ovl${r}`);
          const t = now();
          const m = mountOverlay([lower], join(c, 'u'), join(c, 'w'), join(c, 'm'));
          runs.push(now() - t);
          m.umount();
          rmSync(c, { recursive: true, force: true });
        }
        rec.add(kase, SNAP, 'ms', 'overlayfs', runs, 'mkdir upper/work + mount (a process start included)');
      }
      {
        const runs: number[] = [];
        for (let r = 0; r < reps; r++) {
          const c = join(dir, `u${r}`);
          const t = now();
          mkdirSync(c);
          new Union({ lower: [lower], upper: c }).stat('image.bin');
          runs.push(now() - t);
          rmSync(c, { recursive: true, force: true });
        }
        rec.add(kase, SNAP, 'ms', 'union', runs, 'mkdir upper + open the union + first lookup');
      }
      rmSync(lower, { recursive: true, force: true });
      // raw: a container is a full copy of the image.
      if (size <= p.rawMax) {
        const src = join(dir, 'raw.bin');
        writeDataFile(src, size);
        const runs: number[] = [];
        for (let r = 0; r < reps; r++) {
          const t = now();
          copyFileSync(src, join(dir, 'copy.bin'));
          runs.push(now() - t);
          rmSync(join(dir, 'copy.bin'));
        }
        rec.add(kase, SNAP, 'ms', 'raw', runs, 'full copy of the image');
        rmSync(src);
      } else {
        rec.skip(
          kase,
          SNAP,
          'ms',
          'raw',
          `full copies measured up to ${fmtBytes(p.rawMax)}${ctx.mode === 'full' ? '' : ' (1 GiB with --full)'}`,
        );
      }
    }

    // --- against depth ---
    const DEPTH = 'snapshot at depth';
    {
      const pool = formatPool(join(dir, 'pool'), 256 * MiB);
      const base = pool.pool.createThinSync('d0', { size: 64 * MiB });
      mapBlocksMetadataOnly(pool.pool, base.id, (64 * MiB) / BLOCK);
      let depth = 1;
      let top = 'd0';
      for (const d of p.depths) {
        while (depth < d) {
          pool.pool.snapshotSync(top, `d${depth}`);
          top = `d${depth}`;
          depth++;
        }
        pool.pool.commitSync();
        const runs: number[] = [];
        for (let r = 0; r < reps; r++) {
          const t = now();
          pool.pool.snapshotSync(top, `x${d}-${r}`);
          pool.pool.commitSync();
          runs.push(now() - t);
          pool.pool.deleteSync(`x${d}-${r}`);
          pool.pool.commitSync();
        }
        rec.add(`depth ${d}`, DEPTH, 'ms', 'thinpool', runs, 'snapshot + commit of the top of a chain');
      }
      pool.close();
      rmSync(join(dir, 'pool'), { recursive: true, force: true });
    }
    if (
      rec.runs(
        'ext4-nbd',
        p.depths.flatMap(
          (d) =>
            [
              [`depth ${d}`, DEPTH, 'ms'],
              [`depth ${d}`, E4MOUNT, 'ms'],
            ] as [string, string, 'ms'][],
        ),
      )
    ) {
      const e = new Ext4Pool(join(dir, 'e4pool'), 256 * MiB);
      try {
        e.createThin('d0', ext4VolumeSize(16 * MiB));
        e.mount('d0', join(dir, 'e4m'), true);
        writeDataFile(join(dir, 'e4m', 'image.bin'), 16 * MiB);
        e.unmount(join(dir, 'e4m'));
        let depth = 1;
        let top = 'd0';
        for (const d of p.depths) {
          while (depth < d) {
            e.snapshot(top, `d${depth}`, false);
            top = `d${depth}`;
            depth++;
          }
          e.commit();
          const runs = Array.from({ length: Math.min(reps, 3) }, (_, r) => ext4Container(e, top, `x${d}-${r}`, join(dir, 'e4m')));
          rec.add(
            `depth ${d}`,
            DEPTH,
            'ms',
            'ext4-nbd',
            runs.map((x) => x.total),
            'snapshot + commit of the top of a chain, then serve + nbdfuse + losetup + mount it',
          );
          rec.add(
            `depth ${d}`,
            E4MOUNT,
            'ms',
            'ext4-nbd',
            runs.map((x) => x.mount),
          );
        }
      } finally {
        e.close();
      }
      rmSync(join(dir, 'e4pool'), { recursive: true, force: true });
    }
    if (
      rec.runs(
        'qcow2',
        p.depths.map((d) => [`depth ${d}`, DEPTH, 'ms']),
      )
    ) {
      const q = join(dir, 'q');
      mkdirSync(q);
      qcowCreate(join(q, '0.qcow2'), 64 * MiB, { prealloc: 'metadata' });
      let depth = 1;
      for (const d of p.depths) {
        while (depth < d) {
          qcowCreate(join(q, `${depth}.qcow2`), 64 * MiB, { backing: join(q, `${depth - 1}.qcow2`), unsafe: true });
          depth++;
        }
        const runs: number[] = [];
        for (let r = 0; r < (d > 128 ? Math.min(reps, 2) : reps); r++) {
          const t = now();
          qcowCreate(join(q, 'x.qcow2'), undefined, { backing: join(q, `${d - 1}.qcow2`) });
          runs.push(now() - t);
          rmSync(join(q, 'x.qcow2'));
        }
        rec.add(`depth ${d}`, DEPTH, 'ms', 'qcow2', runs, 'qemu-img create -b on the top (opens the chain)');
      }
      rmSync(q, { recursive: true, force: true });
    }

    // --- overlay mount / union open against the number of lower layers ---
    const MOUNT = 'create a container over N layers';
    const ld = join(dir, 'layers');
    for (let i = 0; i < Math.max(...p.layers); i++) mkdirSync(join(ld, String(i), `own${i}`), { recursive: true });
    if (
      rec.runs(
        'overlayfs',
        p.layers.map((n) => [`${n} layers`, MOUNT, 'ms']),
      )
    ) {
      for (const n of p.layers) {
        const lower = Array.from({ length: n }, (_, i) => String(n - 1 - i));
        const runs: number[] = [];
        for (let r = 0; r < reps; r++) {
          const c = join(dir, 'm');
          const m = mountOverlay(lower, join(c, 'u'), join(c, 'w'), join(c, 'm'), ld);
          runs.push(m.ms);
          m.umount();
          rmSync(c, { recursive: true, force: true });
        }
        rec.add(`${n} layers`, MOUNT, 'ms', 'overlayfs', runs, 'mount(8) wall time');
      }
    }
    for (const n of p.layers) {
      const lower = Array.from({ length: n }, (_, i) => join(ld, String(n - 1 - i)));
      const runs: number[] = [];
      for (let r = 0; r < reps; r++) {
        const c = join(dir, 'uc');
        const t = now();
        mkdirSync(c);
        new Union({ lower, upper: c }).readdir('');
        runs.push(now() - t);
        rmSync(c, { recursive: true, force: true });
      }
      rec.add(`${n} layers`, MOUNT, 'ms', 'union', runs, 'mkdir upper + open + list the merged root');
    }
    rmSync(dir, { recursive: true, force: true });

    if (ctx.mode !== 'full') rec.note('Raw full copies run up to 64 MiB by default (1 GiB with --full).');
    rec.note(
      'thinpool parents are mapped in the metadata only (no data written) so that 64 GiB parents fit in a run; a snapshot reads no data either way.',
    );
    rec.note(
      `ext4 on thinpool via NBD: parents up to ${fmtBytes(E4MAX)} (a real ext4 with a file of that size, written through NBD); a container is a snapshot of the volume attached and mounted. "of which attach + mount" is the NBD server + nbdfuse + losetup + mount part; depth cases take 3 repetitions.`,
    );
    const sys: System[] = ['thinpool', 'ext4-nbd', 'qcow2', 'overlayfs', 'union', 'raw'];
    const names = [
      'thinpool snapshot',
      'ext4 (NBD) snapshot + mount',
      'qcow2 overlay',
      'overlayfs mount',
      'union container',
      'raw full copy',
    ];
    rec.chart('create-size.svg', {
      kind: 'line',
      title: 'Creating a container layer against the parent size',
      x: { label: 'mapped size of the parent', log: true, format: fmtBytes },
      y: { label: 'time (ms)', log: true },
      series: sys.map((s, i) => ({
        name: names[i]!,
        points: p.sizes.map((z) => [z, rec.get(`parent ${fmtBytes(z)}`, SNAP, s) ?? NaN] as [number, number]),
      })),
    });
    rec.chart('create-depth.svg', {
      kind: 'line',
      title: 'Creating a layer on a chain / over N lower layers',
      x: { label: 'depth of the chain or number of lower layers', log: true },
      y: { label: 'time (ms)', log: true },
      series: [
        { name: 'thinpool snapshot', points: p.depths.map((d) => [d, rec.get(`depth ${d}`, DEPTH, 'thinpool') ?? NaN]) },
        { name: 'ext4 (NBD) snapshot + mount', points: p.depths.map((d) => [d, rec.get(`depth ${d}`, DEPTH, 'ext4-nbd') ?? NaN]) },
        { name: 'qcow2 overlay', points: p.depths.map((d) => [d, rec.get(`depth ${d}`, DEPTH, 'qcow2') ?? NaN]) },
        { name: 'overlayfs mount', points: p.layers.map((n) => [n, rec.get(`${n} layers`, MOUNT, 'overlayfs') ?? NaN]) },
        { name: 'union container', points: p.layers.map((n) => [n, rec.get(`${n} layers`, MOUNT, 'union') ?? NaN]) },
      ],
    });
  },
};
