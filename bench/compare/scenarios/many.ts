/**
 * 4. Many containers from one image: each container modifies 1% of the image with scattered 4 KiB writes,
 * either spread over many files ("scattered": the image is 1 MiB files) or all inside one file ("one file":
 * the image is one big file). Reported: total space allocated on disk (image + containers) and time.
 */
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Union } from '../../../src/union/index.js';
import { allocatedBytes, freeBytes } from '../lib/disk.js';
import type { Ctx, Recorder, Scenario, System, Unit } from '../lib/result.js';
import { now, rng } from '../lib/stats.js';
import { fmtBytes } from '../lib/svg.js';
import { GiB, MiB, writeDataFile, writeVolume } from '../systems/files.js';
import { Ext4Pool, ext4VolumeSize } from '../systems/ext4.js';
import { mountOverlay } from '../systems/overlay.js';
import { qcowCreate, qcowFromRaw, qemuIo } from '../systems/qemu.js';
import { BLOCK, formatPool } from '../systems/thin.js';

function plan(ctx: Ctx) {
  if (ctx.mode === 'quick') return { image: 16 * MiB, containers: 5 };
  if (ctx.mode === 'full') return { image: GiB, containers: 100 };
  return { image: 64 * MiB, containers: 100 };
}

type Layout = 'scattered' | 'one file';
const FILE = MiB;
const WRITE = Buffer.alloc(4096, 0x77);

/** The writes of container c: [file index, offset in file]; with 'one file', file 0 and offsets over the whole image. */
function writesOf(layout: Layout, image: number, c: number): [number, number][] {
  const r = rng(1000 + c);
  const n = Math.max(1, Math.round(image / 100 / 4096));
  const out: [number, number][] = [];
  for (let i = 0; i < n; i++) {
    const pos = Math.floor(r() * (image / 4096)) * 4096;
    out.push(layout === 'one file' ? [0, pos] : [Math.floor(pos / FILE), pos % FILE]);
  }
  return out;
}

const fileName = (layout: Layout, k: number) => (layout === 'one file' ? 'image.bin' : `f${k}.bin`);

export const many: Scenario = {
  name: 'many',
  title: 'Many containers from one image',
  run(ctx, rec) {
    const p = plan(ctx);
    const dir = join(ctx.work, 'many');
    for (const layout of ['scattered', 'one file'] as Layout[]) {
      ctx.log(`  ${p.containers} containers, ${layout}`);
      runLayout(ctx, rec, dir, layout, p.image, p.containers);
    }
    rmSync(dir, { recursive: true, force: true });
    rec.note(
      `Image of ${fmtBytes(p.image)} (1 GiB with --full), ${p.containers} containers each writing 1% of it as 4 KiB writes at random places.`,
    );
    rec.note('Space = everything the system holds on disk for the image and all containers (st_blocks), read after the last container.');
    rec.note(
      "ext4 on thinpool via NBD: the image is an ext4 volume (with its journal and inode tables) holding the same files; its space is the pool's data and metadata files, like thinpool's.",
    );
    const sys: System[] = ['thinpool', 'ext4-nbd', 'qcow2', 'overlayfs', 'union', 'raw'];
    const names = ['thinpool', 'ext4 on thinpool via NBD', 'qcow2 chain', 'kernel overlayfs', 'union (userspace)', 'raw copies (computed)'];
    rec.chart('many-space.svg', {
      kind: 'bar',
      title: `${p.containers} containers, each changing 1% of a ${fmtBytes(p.image)} image`,
      categories: ['scattered over files', 'inside one file'],
      y: { label: 'space on disk (image + containers)', format: fmtBytes },
      series: sys.map((s, i) => ({
        name: names[i]!,
        values: (['scattered', 'one file'] as Layout[]).map((l) => rec.get(l, 'space on disk', s)),
      })),
    });
  },
};

function runLayout(_ctx: Ctx, rec: Recorder, root: string, layout: Layout, image: number, containers: number): void {
  const dir = join(root, layout.replace(' ', '-'));
  const lower = join(dir, 'lower');
  const files = layout === 'one file' ? 1 : image / FILE;
  const fsize = layout === 'one file' ? image : FILE;
  for (let k = 0; k < files; k++) writeDataFile(join(lower, fileName(layout, k)), fsize);
  const rows: [string, string, Unit][] = [
    [layout, 'space on disk', 'bytes'],
    [layout, 'time for all containers', 'ms'],
  ];
  const report = (sys: System, space: number, ms: number, note?: string) => {
    rec.add(layout, 'space on disk', 'bytes', sys, [space], note);
    rec.add(layout, 'time for all containers', 'ms', sys, [ms]);
  };

  // raw: no sharing, every container is a full copy (computed, not run: it would write containers x image).
  rec.add(layout, 'space on disk', 'bytes', 'raw', [image * (containers + 1)], 'computed: one full copy per container');
  rec.skip(layout, 'time for all containers', 'ms', 'raw', `not run (would copy ${fmtBytes(image * containers)})`);

  // thinpool: the image is a volume (file k = bytes k x 1 MiB ...), each container a snapshot.
  {
    const perContainer = writesOf(layout, image, 0).length * BLOCK;
    // Scattered writes in many snapshots each shadow their own btree leaves: give the metadata room (sparse file).
    const pool = formatPool(join(dir, 'pool'), image + containers * perContainer + 64 * MiB, BLOCK, 1024 * MiB);
    const vol = pool.pool.createThinSync('image', { size: image });
    writeVolume(vol, image);
    pool.pool.commitSync();
    const t = now();
    for (let c = 0; c < containers; c++) {
      const s = pool.pool.snapshotSync('image', `c${c}`);
      for (const [k, off] of writesOf(layout, image, c)) s.writeSync(WRITE, k * FILE + off);
    }
    pool.pool.commitSync();
    const ms = now() - t;
    report(
      'thinpool',
      allocatedBytes(...pool.paths),
      ms,
      `pool data blocks in use: ${fmtBytes(pool.pool.status().dataBlocks.used * pool.pool.blockSize)}`,
    );
    pool.close();
    rmSync(join(dir, 'pool'), { recursive: true, force: true });
  }

  // ext4 on thinpool via NBD: the image's files on an ext4 volume; each container is a snapshot of it, mounted,
  // written through the kernel's ext4, unmounted (which writes everything back through NBD).
  if (rec.runs('ext4-nbd', rows)) {
    const perContainer = writesOf(layout, image, 0).length * BLOCK + 4 * MiB;
    const e = new Ext4Pool(join(dir, 'e4pool'), ext4VolumeSize(image) + containers * perContainer + 64 * MiB, { metadataSize: 1024 * MiB });
    try {
      e.createThin('image', ext4VolumeSize(image));
      const m = join(dir, 'e4m');
      e.mount('image', m, true);
      for (let k = 0; k < files; k++) writeDataFile(join(m, fileName(layout, k)), fsize);
      e.unmount(m);
      const t = now();
      for (let c = 0; c < containers; c++) {
        e.snapshot('image', `c${c}`, false);
        e.mount(`c${c}`, m);
        for (const [k, off] of writesOf(layout, image, c)) {
          const fd = openSync(join(m, fileName(layout, k)), 'r+');
          writeSync(fd, WRITE, 0, 4096, off);
          closeSync(fd);
        }
        e.unmount(m);
      }
      e.commit();
      const ms = now() - t;
      report(
        'ext4-nbd',
        e.allocated(),
        ms,
        `snapshot + attach + mount + writes + umount + detach per container; pool data blocks in use: ${fmtBytes(e.usedBytes())}`,
      );
    } finally {
      e.close();
    }
    rmSync(join(dir, 'e4pool'), { recursive: true, force: true });
  }

  // qcow2: the image converted to qcow2 (one file; the layout only changes where the writes land).
  if (rec.runs('qcow2', rows)) {
    const raw = join(dir, 'image.raw');
    writeDataFile(raw, image);
    const base = join(dir, 'base.qcow2');
    qcowFromRaw(raw, base);
    rmSync(raw);
    const t = now();
    const tops: string[] = [];
    for (let c = 0; c < containers; c++) {
      const top = join(dir, `c${c}.qcow2`);
      qcowCreate(top, undefined, { backing: base });
      qemuIo(
        top,
        writesOf(layout, image, c).map(([k, off]) => `write -q -P 0x77 ${k * FILE + off} 4k`),
      );
      tops.push(top);
    }
    report('qcow2', allocatedBytes(base, ...tops), now() - t);
    for (const f of [base, ...tops]) rmSync(f);
  }

  // file-level drivers copy each touched file up whole: check the space first.
  const need = layout === 'one file' ? image * containers : 0;
  const free = freeBytes(dir);
  const tooBig = need > free * 0.8 ? `would copy up ${fmtBytes(need)}, ${fmtBytes(free)} free on the disk` : undefined;

  const apply = (write: (name: string, off: number) => void, c: number) => {
    for (const [k, off] of writesOf(layout, image, c)) write(fileName(layout, k), off);
  };

  if (rec.runs('overlayfs', rows)) {
    if (tooBig) {
      rec.skip(layout, 'space on disk', 'bytes', 'overlayfs', tooBig);
      rec.skip(layout, 'time for all containers', 'ms', 'overlayfs', tooBig);
    } else {
      const t = now();
      const uppers: string[] = [];
      for (let c = 0; c < containers; c++) {
        const cd = join(dir, `ovl${c}`);
        const m = mountOverlay([lower], join(cd, 'u'), join(cd, 'w'), join(cd, 'm'));
        apply((name, off) => {
          const fd = openSync(join(m.mnt, name), 'r+');
          writeSync(fd, WRITE, 0, 4096, off);
          closeSync(fd);
        }, c);
        m.umount();
        uppers.push(join(cd, 'u'));
      }
      report('overlayfs', allocatedBytes(lower, ...uppers), now() - t, 'includes a mount and umount per container');
      for (let c = 0; c < containers; c++) rmSync(join(dir, `ovl${c}`), { recursive: true, force: true });
    }
  }

  if (tooBig) {
    rec.skip(layout, 'space on disk', 'bytes', 'union', tooBig);
    rec.skip(layout, 'time for all containers', 'ms', 'union', tooBig);
  } else {
    const t = now();
    const uppers: string[] = [];
    for (let c = 0; c < containers; c++) {
      const upper = join(dir, `u${c}`);
      mkdirSync(upper);
      const u = new Union({ lower: [lower], upper });
      apply((name, off) => {
        const f = u.open(name, 'r+');
        f.write(WRITE, off);
        f.close();
      }, c);
      uppers.push(upper);
    }
    report('union', allocatedBytes(lower, ...uppers), now() - t);
  }
  rmSync(dir, { recursive: true, force: true });
}
