/**
 * 1. A 4 KiB write into the middle of a big inherited file: the first write (which triggers copy-on-write) and
 * a second write to the same place. For thinpool the "file" is a byte range of the base volume.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Union } from '../../../src/union/index.js';
import { measure } from '../lib/disk.js';
import type { Ctx, Recorder, Scenario, System, Unit } from '../lib/result.js';
import { fmtBytes } from '../lib/svg.js';
import { GiB, KiB, MiB, pwriteAt, writeDataFile, writeVolume } from '../systems/files.js';
import { Ext4Pool, ext4VolumeSize } from '../systems/ext4.js';
import { mountOverlay } from '../systems/overlay.js';
import { qcowCreate, qcowFromRaw, qemuIo } from '../systems/qemu.js';
import { formatPool } from '../systems/thin.js';

const WRITE = Buffer.alloc(4 * KiB, 0x5a);

function sizes(ctx: Ctx): number[] {
  if (ctx.mode === 'quick') return [MiB, 8 * MiB];
  if (ctx.mode === 'full') return [MiB, 64 * MiB, GiB];
  return [MiB, 64 * MiB];
}

interface Sample {
  ms: number;
  written: number;
  allocated: number;
}

function record(rec: Recorder, size: number, system: System, first: Sample[], second: Sample[], note?: string): void {
  const kase = fmtBytes(size);
  rec.add(
    kase,
    'first write: time',
    'ms',
    system,
    first.map((s) => s.ms),
    note,
  );
  rec.add(
    kase,
    'first write: bytes written',
    'bytes',
    system,
    first.map((s) => s.written),
  );
  rec.add(
    kase,
    'first write: bytes allocated',
    'bytes',
    system,
    first.map((s) => s.allocated),
  );
  rec.add(
    kase,
    'second write: time',
    'ms',
    system,
    second.map((s) => s.ms),
    note,
  );
  rec.add(
    kase,
    'second write: bytes written',
    'bytes',
    system,
    second.map((s) => s.written),
  );
}

const ROWS = (size: number): [string, string, Unit][] => [
  [fmtBytes(size), 'first write: time', 'ms'],
  [fmtBytes(size), 'first write: bytes written', 'bytes'],
  [fmtBytes(size), 'first write: bytes allocated', 'bytes'],
  [fmtBytes(size), 'second write: time', 'ms'],
  [fmtBytes(size), 'second write: bytes written', 'bytes'],
];

function runSize(ctx: Ctx, rec: Recorder, size: number): void {
  const dir = join(ctx.work, `small-${size}`);
  mkdirSync(dir, { recursive: true });
  const reps = size >= GiB ? Math.min(ctx.reps, 3) : ctx.reps;
  const mid = size / 2;
  const base = join(dir, 'layer0', 'data.bin');
  writeDataFile(base, size);

  // raw file: the write lands in place (no copy-on-write): the ceiling.
  {
    const f: Sample[] = [];
    const s: Sample[] = [];
    for (let r = 0; r < reps; r++) {
      f.push(measure([base], () => pwriteAt(base, WRITE, mid)));
      s.push(measure([base], () => pwriteAt(base, WRITE, mid)));
    }
    record(rec, size, 'raw', f, s, 'in place, no copy-on-write');
  }

  // thinpool: base volume holding the file's bytes, one snapshot per repetition (the container).
  {
    const p = formatPool(join(dir, 'pool'), size * (reps + 2) + 16 * MiB);
    const vol = p.pool.createThinSync('image', { size });
    writeVolume(vol, size);
    p.pool.commitSync();
    const f: Sample[] = [];
    const s: Sample[] = [];
    for (let r = 0; r < reps; r++) {
      const c = p.pool.snapshotSync('image', `c${r}`);
      p.pool.commitSync();
      let ms = 0;
      const m1 = measure(p.paths, () => {
        ms = measure([], () => c.writeSync(WRITE, mid)).ms;
        p.pool.commitSync();
      });
      f.push({ ...m1, ms });
      const m2 = measure(p.paths, () => {
        ms = measure([], () => c.writeSync(WRITE, mid)).ms;
        p.pool.commitSync();
      });
      s.push({ ...m2, ms });
    }
    p.close();
    record(rec, size, 'thinpool', f, s, 'write only; bytes include the commit after it');
    rmSync(join(dir, 'pool'), { recursive: true, force: true });
  }

  // ext4 on thinpool via NBD: the file on an ext4 image volume, one mounted snapshot per repetition (the container).
  if (rec.runs('ext4-nbd', ROWS(size))) {
    const p = new Ext4Pool(join(dir, 'ext4pool'), 2 * ext4VolumeSize(size) + 64 * MiB);
    try {
      p.createThin('image', ext4VolumeSize(size));
      p.mount('image', join(dir, 'e4img'), true);
      writeDataFile(join(dir, 'e4img', 'data.bin'), size);
      p.unmount(join(dir, 'e4img'));
      const f: Sample[] = [];
      const s: Sample[] = [];
      // open + pwrite + fsync + close: the copy-on-write happens when the block reaches the volume, at the fsync.
      const w = (file: string) => {
        const fd = openSync(file, 'r+');
        try {
          writeSync(fd, WRITE, 0, WRITE.length, mid);
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
      };
      const one = (file: string): Sample => {
        const a0 = p.allocated();
        const w0 = p.written();
        const t = Number(process.hrtime.bigint());
        w(file);
        const ms = (Number(process.hrtime.bigint()) - t) / 1e6;
        return { ms, written: p.written() - w0, allocated: p.allocated() - a0 };
      };
      for (let r = 0; r < reps; r++) {
        const c = join(dir, `e4c${r}`);
        p.snapshot('image', `c${r}`);
        p.mount(`c${r}`, c);
        f.push(one(join(c, 'data.bin')));
        s.push(one(join(c, 'data.bin')));
        p.unmount(c);
        p.delete(`c${r}`);
      }
      record(
        rec,
        size,
        'ext4-nbd',
        f,
        s,
        'open + pwrite + fsync + close through the ext4 mount of a snapshot; bytes = what the NBD server wrote to the pool files (data, journal, metadata, commit)',
      );
    } finally {
      p.close();
    }
    rmSync(join(dir, 'ext4pool'), { recursive: true, force: true });
  }

  // kernel overlayfs: open for writing through the merged view copies the whole file up.
  if (rec.runs('overlayfs', ROWS(size))) {
    const f: Sample[] = [];
    const s: Sample[] = [];
    for (let r = 0; r < reps; r++) {
      const c = join(dir, `ovl${r}`);
      const m = mountOverlay([join(dir, 'layer0')], join(c, 'upper'), join(c, 'work'), join(c, 'mnt'));
      const file = join(m.mnt, 'data.bin');
      f.push(measure([join(c, 'upper')], () => pwriteAt(file, WRITE, mid)));
      s.push(measure([join(c, 'upper')], () => pwriteAt(file, WRITE, mid)));
      m.umount();
      rmSync(c, { recursive: true, force: true });
    }
    record(rec, size, 'overlayfs', f, s, 'open + pwrite + close through the mount');
  }

  // userspace union: copy-up on the first write.
  {
    const f: Sample[] = [];
    const s: Sample[] = [];
    for (let r = 0; r < reps; r++) {
      const upper = join(dir, `union${r}`);
      mkdirSync(upper);
      const u = new Union({ lower: [join(dir, 'layer0')], upper });
      const w = () => {
        const h = u.open('data.bin', 'r+');
        h.write(WRITE, mid);
        h.close();
      };
      f.push(measure([upper], w));
      s.push(measure([upper], w));
      rmSync(upper, { recursive: true, force: true });
    }
    record(rec, size, 'union', f, s, 'open + write + close');
  }

  // qcow2: base image converted from the same file, one overlay per repetition; each write is one qemu-io run.
  if (rec.runs('qcow2', ROWS(size))) {
    const img = join(dir, 'base.qcow2');
    qcowFromRaw(base, img);
    const f: Sample[] = [];
    const s: Sample[] = [];
    for (let r = 0; r < reps; r++) {
      const top = join(dir, `top${r}.qcow2`);
      qcowCreate(top, undefined, { backing: img });
      let t = 0;
      const m1 = measure([top], () => {
        t = qemuIo(top, [`write -P 0x5a ${mid} 4k`])[0]! * 1000;
      });
      f.push({ ...m1, ms: t });
      const m2 = measure([top], () => {
        t = qemuIo(top, [`write -P 0x5a ${mid} 4k`])[0]! * 1000;
      });
      s.push({ ...m2, ms: t });
      rmSync(top);
    }
    record(rec, size, 'qcow2', f, s, 'time as qemu-io reports it; bytes include the qemu-io process (open, close)');
  }
  rmSync(dir, { recursive: true, force: true });
}

export const smallWrite: Scenario = {
  name: 'small-write',
  title: 'Small write into a big inherited file',
  run(ctx, rec) {
    const ss = sizes(ctx);
    for (const size of ss) {
      ctx.log(`  file of ${fmtBytes(size)}`);
      runSize(ctx, rec, size);
    }
    if (ctx.mode !== 'full') rec.note('The 1 GiB file runs only with --full.');
    rec.note('For thinpool the file is a byte range of the base volume (64 KiB blocks); the container is a snapshot of it.');
    rec.note(
      "For ext4 on thinpool via NBD the file lives on an ext4 file system (4 KiB blocks) on the base volume; the container is a snapshot of the volume mounted through nbdfuse + loop. Its write is fsync'd: without it nothing would reach the volume (and no copy-on-write would happen) inside the timed section.",
    );
    const systems: System[] = ['thinpool', 'ext4-nbd', 'overlayfs', 'union', 'qcow2', 'raw'];
    const labels = ['thinpool', 'ext4 on thinpool via NBD', 'kernel overlayfs', 'union (userspace)', 'qcow2 chain', 'raw file'];
    rec.chart('small-write-time.svg', {
      kind: 'line',
      title: 'First 4 KiB write into an inherited file',
      x: { label: 'size of the inherited file', log: true, format: fmtBytes },
      y: { label: 'time of the first write (ms)', log: true },
      series: systems.map((sys, i) => ({
        name: labels[i]!,
        points: ss.map((z) => [z, rec.get(fmtBytes(z), 'first write: time', sys) ?? NaN] as [number, number]),
      })),
    });
    rec.chart('small-write-bytes.svg', {
      kind: 'line',
      title: 'Bytes written by the first 4 KiB write',
      x: { label: 'size of the inherited file', log: true, format: fmtBytes },
      y: { label: 'bytes written to disk', log: true, format: fmtBytes },
      series: systems.map((sys, i) => ({
        name: labels[i]!,
        points: ss.map((z) => [z, rec.get(fmtBytes(z), 'first write: bytes written', sys) ?? NaN] as [number, number]),
      })),
    });
  },
};
