/**
 * 7. containerd: the same runtime, two storages (issue 14). One containerd, one image, one run: its built-in
 * overlayfs snapshotter against thinpool's (`thinpool snapshotter serve`, ext4 on thin volumes through NBD,
 * nbdfuse and loop). Measured, the two systems taking turns: image import; `ctr run` of a trivial command;
 * the first 4 KiB write into the big file the container inherits (time seen inside the container, bytes the
 * storage wrote and space it took); small-file work (read, copy, fsync: where FUSE and loop cost); space used
 * by N containers each changing 1% of the image, once inside the big file and once as new small files;
 * container removal (the `ctr containers rm` and until the storage has let go of the snapshot).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { allocatedBytes } from '../lib/disk.js';
import type { Ctx, Recorder, Scenario, Unit } from '../lib/result.js';
import { now, rng } from '../lib/stats.js';
import { ContainerdRig, IMAGE, Markers, SNAPSHOTTERS, buildImage, sleepMs, type CtrdSystem } from '../systems/containerd.js';

const MiB = 1024 * 1024;
const SYS: CtrdSystem[] = ['ctrd-overlayfs', 'ctrd-thinpool'];
const LABEL: Record<CtrdSystem, string> = { 'ctrd-overlayfs': 'containerd + overlayfs', 'ctrd-thinpool': 'containerd + thinpool' };

function sizes(ctx: Ctx) {
  // Rounds of the timed cases: --reps (default 5; 1 with --quick); `ctr run` and removal twice as many.
  const reps = Math.max(1, ctx.reps);
  if (ctx.mode === 'quick') return { big: 4 * MiB, extra: 2 * MiB, small: 200, containers: 2, runs: 2 * reps, reps };
  return { big: 64 * MiB, extra: 40 * MiB, small: 2000, containers: 20, runs: 2 * reps, reps };
}

/** The order of the two systems in round i: alternating, so neither always goes first (warm caches, load). */
const order = (i: number): CtrdSystem[] => (i % 2 === 0 ? SYS : [SYS[1]!, SYS[0]!]);

export const containerd: Scenario = {
  name: 'containerd',
  title: 'containerd: overlayfs against thinpool snapshotter',
  run(ctx, rec) {
    const z = sizes(ctx);
    const bigLabel = `${z.big / MiB} MiB`;
    const K = {
      imp: 'import the image',
      run: 'ctr run of a trivial command',
      fw: `first 4 KiB write into a ${bigLabel} file of the image`,
      rd: `small files: read ${z.small} files`,
      cp: `small files: copy ${z.small} files (cp -a)`,
      fs: `small files: fsync each of the ${z.small} copies`,
      inFile: `${z.containers} containers, each changing 1% of the image inside the ${bigLabel} file`,
      newFiles: `${z.containers} containers, each adding 1% of the image as new 4 KiB files`,
      rmTrivial: 'remove a container (unchanged)',
      rmChanged: 'remove a container (changed 1% of the image)',
    };
    const rows: [string, string, Unit][] = [
      [K.imp, 'time', 'ms'],
      [K.imp, 'space used', 'bytes'],
      [K.run, 'time', 'ms'],
      [K.fw, 'time (write)', 'ms'],
      [K.fw, 'time (write + fsync)', 'ms'],
      [K.fw, 'bytes written', 'bytes'],
      [K.fw, 'space used', 'bytes'],
      [K.rd, 'time', 'ms'],
      [K.cp, 'time', 'ms'],
      [K.fs, 'time', 'ms'],
      [K.inFile, 'space used', 'bytes'],
      [K.newFiles, 'space used', 'bytes'],
      [K.rmTrivial, 'time (ctr containers rm)', 'ms'],
      [K.rmTrivial, 'time until the storage let go', 'ms'],
      [K.rmChanged, 'time (ctr containers rm)', 'ms'],
      [K.rmChanged, 'time until the storage let go', 'ms'],
    ];
    if (!SYS.every((s) => rec.runs(s, rows))) return;

    const dir = join(ctx.work, 'containerd');
    mkdirSync(dir, { recursive: true });
    ctx.log(`[containerd] building the image (${bigLabel} file, ${z.extra / MiB} MiB more, ${z.small} small files)`);
    const image = buildImage(join(dir, 'image'), { bigBytes: z.big, extraBytes: z.extra, smallFiles: z.small });
    const fsMiB = Math.ceil((2 * image.bytes) / MiB) + 256;
    const rig = new ContainerdRig(join(dir, 'ctrd'), `${fsMiB}M`, ctx.mode === 'quick' ? '4G' : '16G');
    try {
      measureAll(ctx, rec, rig, image, z, K);
    } catch (e) {
      for (const l of ['containerd.log', 'snapshotter.log']) ctx.log(`[containerd] end of ${l}:\n${rig.log(l).slice(-3000)}`);
      throw e;
    } finally {
      rig.stop();
    }
    rec.note(
      `Image: ${(image.bytes / MiB).toFixed(1)} MiB in ${image.layers} layers (busybox-static, the host's /usr/share/zoneinfo and ${z.small} small files; ` +
        `a ${bigLabel} file of random bytes; ${z.extra / MiB} MiB of random 1 MiB files), imported from an OCI archive. ` +
        `One containerd (runc), both snapshotters, the systems taking turns; thinpool's ext4 filesystems are ${fsMiB} MiB, thin.`,
    );
    rec.note(
      'Times inside a container (first write, small files) are taken on the host from markers the container writes into a FIFO after each phase ' +
        '(a few hundred µs of overhead, the same for both). Removal: `ctr containers rm` returns once containerd has dropped the snapshot from its ' +
        'metadata; its garbage collector then asks the snapshotter to remove it. "Until the storage let go" adds a synchronous collection ' +
        '(`ctr leases rm --sync`: the scheduler may drop a deletion that arrives while a collection finishes) and lasts until the snapshot ' +
        "directory (overlayfs) or the volume's export (thinpool) is gone.",
    );
    rec.note(
      'Bytes written: overlayfs, the growth of the allocation under its snapshots directory (a copy-up writes the whole file); thinpool, ' +
        "write_bytes of the snapshotter process (NBD data writes and metadata commits). Space used: overlayfs the same allocation growth; thinpool the pool's newly used data blocks (64 KiB each).",
    );
    for (const n of verdicts(rec)) rec.note(n);
    const cats = [K.imp, K.run, K.fw, K.rmChanged];
    const metric = (k: string) => (k === K.fw ? 'time (write + fsync)' : k === K.rmChanged ? 'time until the storage let go' : 'time');
    rec.chart('containerd-time.svg', {
      kind: 'bar',
      title: 'containerd: overlayfs against thinpool, times',
      categories: ['import', 'ctr run', 'first write + fsync', 'small files: read', 'small files: copy', 'remove'],
      y: { label: 'time (ms)', log: true },
      series: SYS.map((s) => ({
        name: LABEL[s],
        values: [...cats.slice(0, 3), K.rd, K.cp, K.rmChanged].map((k) => rec.get(k, metric(k), s)),
      })),
    });
    rec.chart('containerd-space.svg', {
      kind: 'bar',
      title: 'containerd: overlayfs against thinpool, bytes',
      categories: ['first write: written', `${z.containers} containers: 1% in a file`, `${z.containers} containers: 1% new files`, 'image'],
      y: { label: 'bytes', log: true, format: (v) => `${+(v / MiB).toPrecision(3)} MiB` },
      series: SYS.map((s) => ({
        name: LABEL[s],
        values: [
          rec.get(K.fw, 'bytes written', s),
          rec.get(K.inFile, 'space used', s),
          rec.get(K.newFiles, 'space used', s),
          rec.get(K.imp, 'space used', s),
        ],
      })),
    });
  },
};

type Keys = Record<'imp' | 'run' | 'fw' | 'rd' | 'cp' | 'fs' | 'inFile' | 'newFiles' | 'rmTrivial' | 'rmChanged', string>;

/** One line per measured row: which storage won and by how much (overlayfs / thinpool). */
function verdicts(rec: Recorder): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const f of rec.figures) {
    const k = `${f.case}\0${f.metric}`;
    if (seen.has(k)) continue;
    seen.add(k);
    const o = rec.get(f.case, f.metric, 'ctrd-overlayfs');
    const t = rec.get(f.case, f.metric, 'ctrd-thinpool');
    if (o === null || t === null || o <= 0 || t <= 0) continue;
    const r = o / t;
    const who = r >= 1 ? `thinpool ${r.toFixed(2)}x lower` : `**overlayfs ${(1 / r).toFixed(2)}x lower**`;
    out.push(`${f.case}, ${f.metric}: ${who} (overlayfs / thinpool = ${r.toFixed(2)}).`);
  }
  return out;
}

interface Sample {
  alloc: number;
  written: number;
  used: number;
}

function measureAll(
  ctx: Ctx,
  rec: Recorder,
  rig: ContainerdRig,
  image: { archive: string; bytes: number },
  z: ReturnType<typeof sizes>,
  K: Keys,
): void {
  /** overlayfs: everything is the allocation under its snapshots; thinpool: the pool's files, the process's writes, used blocks. */
  const sample = (s: CtrdSystem): Sample => {
    if (s === 'ctrd-thinpool') return { alloc: allocatedBytes(rig.pool), written: rig.snapshotterWrites(), used: rig.poolUsedBytes() };
    const a = allocatedBytes(rig.overlayRoot);
    return { alloc: a, written: a, used: a };
  };
  const diff = (a: Sample, b: Sample): Sample => ({ alloc: b.alloc - a.alloc, written: b.written - a.written, used: b.used - a.used });
  /** Poll until cond holds (bounded). */
  const until = (what: string, cond: () => boolean, ms = 120_000) => {
    const deadline = now() + ms;
    while (!cond()) {
      if (now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
      sleepMs(2);
    }
  };
  /** Entries the storage holds for the system's snapshots (overlayfs directories, thinpool exports). */
  const held = (s: CtrdSystem) => (s === 'ctrd-overlayfs' ? rig.overlayDirs() : rig.exportEntries());
  const empty = { 'ctrd-overlayfs': held('ctrd-overlayfs'), 'ctrd-thinpool': held('ctrd-thinpool') };
  let seq = 0;
  const id = (s: CtrdSystem, what: string) => `${what}-${s === 'ctrd-overlayfs' ? 'ovl' : 'tp'}-${seq++}`;

  /**
   * Remove a stopped container; returns [ctr containers rm ms, until the storage let go ms]. containerd removes
   * the snapshot from the storage in a garbage collection after the rm; its scheduler drops a deletion that
   * arrives while a collection is finishing, so the second figure includes a synchronous collection (`ctr leases
   * rm --sync` of an empty lease made beforehand) and the wait until the snapshot is gone from the storage.
   */
  const remove = (s: CtrdSystem, cid: string): [number, number] => {
    const lease = `gc-${seq++}`;
    rig.ctrOk(['leases', 'create', '--id', lease]);
    const before = held(s);
    const t = now();
    rig.ctrOk(['containers', 'rm', cid]);
    const rm = now() - t;
    rig.ctrOk(['leases', 'rm', '--sync', lease]);
    until(`${cid}: the ${SNAPSHOTTERS[s]} snapshot removed`, () => held(s) < before);
    return [rm, now() - t];
  };

  // 1. Import, from nothing each time: the image and its content removed first (containerd's blob store is shared
  // between snapshotters, so a second import would skip the ingest).
  const clean = () => {
    rig.ctr(['images', 'rm', '--sync', IMAGE]);
    until(
      'snapshots removed after images rm',
      () => SYS.every((s) => rig.snapshots(SNAPSHOTTERS[s]).length === 0 && held(s) <= empty[s]),
      60_000,
    );
  };
  const importRuns: Record<string, number[]> = {};
  const importSpace: Record<string, number[]> = {};
  for (let i = 0; i < z.reps; i++) {
    for (const s of order(i)) {
      clean();
      const a = sample(s);
      const t = now();
      rig.ctrOk(['images', 'import', '--snapshotter', SNAPSHOTTERS[s], '--base-name', 'docker.io/library/tpbench', image.archive]);
      (importRuns[s] ??= []).push(now() - t);
      const d = diff(a, sample(s));
      (importSpace[s] ??= []).push(s === 'ctrd-overlayfs' ? d.alloc : d.used);
      ctx.log(`[containerd] import ${s}: ${(now() - t).toFixed(0)} ms`);
    }
  }
  for (const s of SYS) {
    rec.add(K.imp, 'time', 'ms', s, importRuns[s]!, 'ctr images import --snapshotter …, content store emptied before each');
    rec.add(K.imp, 'space used', 'bytes', s, importSpace[s]!);
  }
  // Both snapshotters unpack the image for the rest (the content is there: only the unpack runs).
  for (const s of SYS)
    rig.ctrOk(['images', 'import', '--snapshotter', SNAPSHOTTERS[s], '--base-name', 'docker.io/library/tpbench', image.archive]);
  const runArgs = (s: CtrdSystem) => ['run', '--snapshotter', SNAPSHOTTERS[s]];

  // 2. ctr run of a trivial command, and removal of the unchanged container.
  const runT: Record<string, number[]> = {};
  const rmT: Record<string, number[]> = {};
  const goneT: Record<string, number[]> = {};
  for (let i = 0; i < z.runs; i++) {
    for (const s of order(i)) {
      const cid = id(s, 'run');
      const t = now();
      rig.ctrOk([...runArgs(s), IMAGE, cid, '/bin/true']);
      (runT[s] ??= []).push(now() - t);
      const [rm, gone] = remove(s, cid);
      (rmT[s] ??= []).push(rm);
      (goneT[s] ??= []).push(gone);
    }
  }
  for (const s of SYS) {
    rec.add(K.run, 'time', 'ms', s, runT[s]!, 'ctr run IMAGE ID /bin/true (runc), wall time');
    rec.add(K.rmTrivial, 'time (ctr containers rm)', 'ms', s, rmT[s]!);
    rec.add(K.rmTrivial, 'time until the storage let go', 'ms', s, goneT[s]!);
  }
  ctx.log('[containerd] ctr run and remove done');

  // 3. The first 4 KiB write into the big file, and 4. small-file work: timed inside a container by markers.
  const timed = (s: CtrdSystem, script: string, phases: string[]): { t: number[]; d: Sample } => {
    const cid = id(s, 'timed');
    const m = new Markers(join(ctx.work, 'containerd', 'x', cid));
    try {
      rig.ctrOk([...runArgs(s), '-d', '--mount', m.mount, IMAGE, cid, '/bin/sh', '-c', `echo r > /x/out; read g < /x/in; ${script}`]);
      m.ready();
      const a = sample(s);
      const t = m.go(phases);
      const d = diff(a, sample(s));
      rig.ctr(['tasks', 'rm', '-f', cid]);
      remove(s, cid);
      return { t, d };
    } finally {
      m.close();
    }
  };
  const page = Math.floor(z.big / 4096 / 2);
  const fw = {} as Record<CtrdSystem, { w: number[]; f: number[]; written: number[]; used: number[] }>;
  const sf = {} as Record<CtrdSystem, { rd: number[]; cp: number[]; fs: number[] }>;
  for (let i = 0; i < z.reps; i++) {
    for (const s of order(i)) {
      const r = timed(
        s,
        `dd if=/dev/zero of=/data/big.bin bs=4096 count=1 seek=${page} conv=notrunc 2>/dev/null; echo w > /x/out; ` +
          'dd if=/dev/null of=/data/big.bin bs=4096 count=0 conv=notrunc,fsync 2>/dev/null; echo f > /x/out',
        ['w', 'f'],
      );
      const e = (fw[s] ??= { w: [], f: [], written: [], used: [] });
      e.w.push(r.t[0]!);
      e.f.push(r.t[1]!);
      e.written.push(r.d.written);
      e.used.push(r.d.used);
      const q = timed(
        s,
        'find /data/small -type f -exec cat {} + > /dev/null; echo a > /x/out; cp -a /data/small /data/copy; echo b > /x/out; ' +
          'find /data/copy -type f -exec sync {} +; echo c > /x/out',
        ['a', 'b', 'c'],
      );
      const g = (sf[s] ??= { rd: [], cp: [], fs: [] });
      g.rd.push(q.t[0]!);
      g.cp.push(q.t[1]! - q.t[0]!);
      g.fs.push(q.t[2]! - q.t[1]!);
    }
  }
  for (const s of SYS) {
    rec.add(
      K.fw,
      'time (write)',
      'ms',
      s,
      fw[s].w,
      s === 'ctrd-overlayfs' ? 'copy-up of the whole file at open' : 'ext4 page cache; no copy yet',
    );
    rec.add(K.fw, 'time (write + fsync)', 'ms', s, fw[s].f);
    rec.add(K.fw, 'bytes written', 'bytes', s, fw[s].written);
    rec.add(K.fw, 'space used', 'bytes', s, fw[s].used);
    rec.add(K.rd, 'time', 'ms', s, sf[s].rd);
    rec.add(K.cp, 'time', 'ms', s, sf[s].cp);
    rec.add(K.fs, 'time', 'ms', s, sf[s].fs);
  }
  ctx.log('[containerd] first write and small files done');

  // 5. N containers each changing 1% of the image, kept until measured; then their removal.
  const writes = Math.max(1, Math.round((image.bytes * 0.01) / 4096));
  const pages = Math.floor(z.big / 4096);
  const inFile = (c: number) => {
    const r = rng(1000 + c);
    const cmds = Array.from(
      { length: writes },
      () => `dd if=/dev/urandom of=/data/big.bin bs=4096 count=1 seek=${Math.floor(r() * pages)} conv=notrunc 2>/dev/null`,
    );
    return `${cmds.join('; ')}; sync /data/big.bin`;
  };
  const newFiles = () =>
    `i=0; while [ $i -lt ${writes} ]; do head -c 4096 /dev/urandom > /data/new-$i; i=$((i+1)); done; find /data -name 'new-*' -exec sync {} +`;
  const rmC: Record<string, number[]> = {};
  const goneC: Record<string, number[]> = {};
  for (const [ci, [kase, script]] of (
    [
      [K.inFile, inFile],
      [K.newFiles, newFiles],
    ] as [string, (c: number) => string][]
  ).entries()) {
    for (const s of order(ci)) {
      const a = sample(s);
      const ids: string[] = [];
      for (let c = 0; c < z.containers; c++) {
        const cid = id(s, 'pct');
        rig.ctrOk([...runArgs(s), IMAGE, cid, '/bin/sh', '-c', script(c)]);
        ids.push(cid);
      }
      const d = diff(a, sample(s));
      rec.add(kase, 'space used', 'bytes', s, [s === 'ctrd-overlayfs' ? d.alloc : d.used]);
      ctx.log(`[containerd] ${kase}: ${s} ${(d.used / MiB).toFixed(1)} MiB`);
      for (const cid of ids) {
        const [rm, gone] = remove(s, cid);
        (rmC[s] ??= []).push(rm);
        (goneC[s] ??= []).push(gone);
      }
    }
  }
  for (const s of SYS) {
    rec.add(K.rmChanged, 'time (ctr containers rm)', 'ms', s, rmC[s]!);
    rec.add(K.rmChanged, 'time until the storage let go', 'ms', s, goneC[s]!);
  }
}
