/**
 * 6. Teardown: remove a container (which changed 1% of the image, inside one file) and then the image:
 * time, and space given back to the filesystem (and for thinpool also to the pool).
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Union } from '../../../src/union/index.js';
import { allocatedBytes } from '../lib/disk.js';
import type { Ctx, Scenario, System, Unit } from '../lib/result.js';
import { now, rng } from '../lib/stats.js';
import { MiB, GiB, pwriteAt, writeDataFile, writeVolume } from '../systems/files.js';
import { mountOverlay } from '../systems/overlay.js';
import { qcowCreate, qcowFromRaw, qemuIo } from '../systems/qemu.js';
import { formatPool } from '../systems/thin.js';

function imageSize(ctx: Ctx): number {
  return ctx.mode === 'quick' ? 16 * MiB : ctx.mode === 'full' ? GiB : 256 * MiB;
}

const WRITE = Buffer.alloc(4096, 0x44);

function offsets(image: number): number[] {
  const r = rng(99);
  return Array.from({ length: Math.max(1, Math.round(image / 100 / 4096)) }, () => Math.floor(r() * (image / 4096)) * 4096);
}

export const teardown: Scenario = {
  name: 'teardown',
  title: 'Teardown',
  run(ctx, rec) {
    const image = imageSize(ctx);
    const dir = join(ctx.work, 'teardown');
    mkdirSync(dir, { recursive: true });
    const offs = offsets(image);
    const reps = Math.min(ctx.reps, 3);
    const M: [string, string, Unit][] = [];
    for (const k of ['container', 'image'])
      for (const [m, u] of [
        ['time', 'ms'],
        ['space given back to the filesystem', 'bytes'],
      ] as [string, Unit][])
        M.push([`remove ${k}`, m, u]);
    const report = (sys: System, runs: { c: number; cb: number; i: number; ib: number }[], note?: string) => {
      rec.add(
        'remove container',
        'time',
        'ms',
        sys,
        runs.map((r) => r.c),
        note,
      );
      rec.add(
        'remove container',
        'space given back to the filesystem',
        'bytes',
        sys,
        runs.map((r) => r.cb),
      );
      rec.add(
        'remove image',
        'time',
        'ms',
        sys,
        runs.map((r) => r.i),
        note,
      );
      rec.add(
        'remove image',
        'space given back to the filesystem',
        'bytes',
        sys,
        runs.map((r) => r.ib),
      );
    };
    /** Time fn and the growth of free space on the filesystem (allocation of the given paths, before - after). */
    const drop = (paths: string[], fn: () => void): [number, number] => {
      const a = allocatedBytes(...paths);
      const t = now();
      fn();
      return [now() - t, a - allocatedBytes(...paths)];
    };

    // thinpool: delete the snapshot, then the image volume; data blocks go back to the pool, the data file keeps its size.
    {
      const runs = [];
      const pooled: number[] = [];
      for (let r = 0; r < reps; r++) {
        const pool = formatPool(join(dir, 'pool'), image * 2 + 64 * MiB);
        const vol = pool.pool.createThinSync('image', { size: image });
        writeVolume(vol, image);
        const c = pool.pool.snapshotSync('image', 'c');
        for (const o of offs) c.writeSync(WRITE, o);
        pool.pool.commitSync();
        const used0 = pool.pool.status().dataBlocks.used;
        const [cm, cb] = drop(pool.paths, () => {
          pool.pool.deleteSync('c');
          pool.pool.commitSync();
        });
        const used1 = pool.pool.status().dataBlocks.used;
        const [im, ib] = drop(pool.paths, () => {
          pool.pool.deleteSync('image');
          pool.pool.commitSync();
        });
        pooled.push((used0 - used1) * pool.pool.blockSize);
        runs.push({ c: cm, cb, i: im, ib });
        pool.close();
        rmSync(join(dir, 'pool'), { recursive: true, force: true });
      }
      report('thinpool', runs, 'delete + commit');
      rec.add('remove container', 'space given back to the pool', 'bytes', 'thinpool', pooled, 'free data blocks gained');
    }

    if (rec.runs('qcow2', M)) {
      const runs = [];
      for (let r = 0; r < reps; r++) {
        const raw = join(dir, 'image.raw');
        writeDataFile(raw, image);
        const base = join(dir, 'base.qcow2');
        qcowFromRaw(raw, base);
        rmSync(raw);
        const top = join(dir, 'top.qcow2');
        qcowCreate(top, undefined, { backing: base });
        qemuIo(
          top,
          offs.map((o) => `write -q -P 0x44 ${o} 4k`),
        );
        const [cm, cb] = drop([top], () => rmSync(top));
        const [im, ib] = drop([base], () => rmSync(base));
        runs.push({ c: cm, cb, i: im, ib });
      }
      report('qcow2', runs, 'unlink the file');
    }

    const lowerFile = (l: string) => writeDataFile(join(l, 'image.bin'), image);
    if (rec.runs('overlayfs', M)) {
      const runs = [];
      for (let r = 0; r < reps; r++) {
        const lower = join(dir, 'lower');
        lowerFile(lower);
        const cd = join(dir, 'ovl');
        const m = mountOverlay([lower], join(cd, 'u'), join(cd, 'w'), join(cd, 'm'));
        for (const o of offs) pwriteAt(join(m.mnt, 'image.bin'), WRITE, o);
        const [cm, cb] = drop([join(cd, 'u'), join(cd, 'w')], () => {
          m.umount();
          rmSync(cd, { recursive: true, force: true });
        });
        const [im, ib] = drop([lower], () => rmSync(lower, { recursive: true, force: true }));
        runs.push({ c: cm, cb, i: im, ib });
      }
      report('overlayfs', runs, 'umount + rm -r of upper and work (container); rm -r of the layer (image)');
    }

    {
      const runs = [];
      for (let r = 0; r < reps; r++) {
        const lower = join(dir, 'lower');
        lowerFile(lower);
        const upper = join(dir, 'upper');
        mkdirSync(upper);
        const u = new Union({ lower: [lower], upper });
        const f = u.open('image.bin', 'r+');
        for (const o of offs) f.write(WRITE, o);
        f.close();
        const [cm, cb] = drop([upper], () => rmSync(upper, { recursive: true, force: true }));
        const [im, ib] = drop([lower], () => rmSync(lower, { recursive: true, force: true }));
        runs.push({ c: cm, cb, i: im, ib });
      }
      report('union', runs, 'rm -r of the branch');
    }

    {
      const runs = [];
      for (let r = 0; r < reps; r++) {
        const img = join(dir, 'image.bin');
        const copy = join(dir, 'copy.bin');
        writeDataFile(img, image);
        writeDataFile(copy, image);
        for (const o of offs) pwriteAt(copy, WRITE, o);
        const [cm, cb] = drop([copy], () => rmSync(copy));
        const [im, ib] = drop([img], () => rmSync(img));
        runs.push({ c: cm, cb, i: im, ib });
      }
      report('raw', runs, 'the container is a full copy; unlink');
    }
    rmSync(dir, { recursive: true, force: true });
    rec.note(`Image of ${image / MiB} MiB in one file (1 GiB with --full); the container changed 1% of it in 4 KiB writes.`);
    const back = rec.get('remove container', 'space given back to the filesystem', 'thinpool') ?? 0;
    rec.note(
      back > 0
        ? 'thinpool gives the blocks of a deleted volume back to the pool and, measured here, to the filesystem too (the data file shrinks in allocation).'
        : 'thinpool gives deleted blocks back to the pool (reusable by any volume) but not to the filesystem: the data file stays allocated.',
    );
    const sys: System[] = ['thinpool', 'qcow2', 'overlayfs', 'union', 'raw'];
    const names = ['thinpool', 'qcow2 chain', 'kernel overlayfs', 'union (userspace)', 'raw file'];
    rec.chart('teardown-time.svg', {
      kind: 'bar',
      title: 'Teardown time',
      categories: ['remove container', 'remove image'],
      y: { label: 'time (ms)', log: true },
      series: sys.map((s, i) => ({ name: names[i]!, values: ['remove container', 'remove image'].map((k) => rec.get(k, 'time', s)) })),
    });
    rec.chart('teardown-space.svg', {
      kind: 'bar',
      title: 'Space given back to the filesystem',
      categories: ['remove container', 'remove image'],
      y: { label: 'bytes freed on the filesystem', log: true, format: (v) => `${+(v / MiB).toPrecision(3)} MiB` },
      series: sys.map((s, i) => ({
        name: names[i]!,
        values: ['remove container', 'remove image'].map((k) => rec.get(k, 'space given back to the filesystem', s)),
      })),
      note: 'n/a = nothing given back (0 bytes) or not run',
    });
  },
};
