/**
 * 5. Throughput against the ceiling: sequential 1 MiB and random 4 KiB reads and writes on a thinpool volume
 * (fresh, provisioned, freshly snapshotted) as a ratio to the raw file (fresh sparse file / fully written file)
 * in the same run. Both sides get the same write history: data written in 1 MiB chunks.
 */
import { closeSync, ftruncateSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Volume } from '../../../src/index.js';
import type { Ctx, Scenario } from '../lib/result.js';
import { now, rng } from '../lib/stats.js';
import { GiB, MiB, dataChunk, writeDataFile, writeVolume } from '../systems/files.js';
import { formatPool } from '../systems/thin.js';

function plan(ctx: Ctx) {
  if (ctx.mode === 'quick') return { size: 16 * MiB, rand: 2000 };
  if (ctx.mode === 'full') return { size: GiB, rand: 50000 };
  return { size: 256 * MiB, rand: 20000 };
}

type Op = 'seq 1 MiB write' | 'seq 1 MiB read' | 'rand 4 KiB write' | 'rand 4 KiB read';
const OPS: Op[] = ['seq 1 MiB write', 'seq 1 MiB read', 'rand 4 KiB write', 'rand 4 KiB read'];
type State = 'fresh' | 'provisioned' | 'snapshot';

interface Io {
  read(buf: Uint8Array, pos: number): void;
  write(buf: Uint8Array, pos: number): void;
}

/** MiB/s of one op over the target. */
function runOp(op: Op, io: Io, size: number, rand: number, seed: number): number {
  const big = dataChunk();
  const small = Buffer.alloc(4096, 0x33);
  const rbig = Buffer.alloc(MiB);
  const r = rng(seed);
  const offs = Array.from({ length: rand }, () => Math.floor(r() * (size / 4096)) * 4096);
  const t = now();
  let bytes = 0;
  if (op === 'seq 1 MiB write')
    for (let o = 0; o < size; o += MiB) {
      io.write(big, o);
      bytes += MiB;
    }
  else if (op === 'seq 1 MiB read')
    for (let o = 0; o < size; o += MiB) {
      io.read(rbig, o);
      bytes += MiB;
    }
  else if (op === 'rand 4 KiB write')
    for (const o of offs) {
      io.write(small, o);
      bytes += 4096;
    }
  else
    for (const o of offs) {
      io.read(small, o);
      bytes += 4096;
    }
  return bytes / MiB / ((now() - t) / 1000);
}

const stateLabel: Record<State, string> = { fresh: 'fresh', provisioned: 'provisioned', snapshot: 'fresh snapshot' };

export const throughput: Scenario = {
  name: 'throughput',
  title: 'Throughput against the raw file',
  run(ctx, rec) {
    const p = plan(ctx);
    const dir = join(ctx.work, 'tput');
    const reps = Math.min(ctx.reps, 3);
    const rawFd = (path: string): Io & { close(): void } => {
      const fd = openSync(path, 'r+');
      return {
        read: (b, o) => {
          readSync(fd, b, 0, b.length, o);
        },
        write: (b, o) => {
          writeSync(fd, b, 0, b.length, o);
        },
        close: () => closeSync(fd),
      };
    };
    for (const state of ['fresh', 'provisioned', 'snapshot'] as State[]) {
      ctx.log(`  ${stateLabel[state]}`);
      for (const op of OPS) {
        const kase = `${stateLabel[state]}: ${op}`;
        const thin: number[] = [];
        const raw: number[] = [];
        const ratio: number[] = [];
        for (let r = 0; r < reps; r++) {
          // raw: a sparse file for "fresh", a fully written file otherwise (a snapshot has no raw analogue: same as provisioned).
          const rawPath = join(dir, 'raw.bin');
          if (state === 'fresh') {
            writeDataFile(rawPath, 0);
            const fd = openSync(rawPath, 'r+');
            ftruncateSync(fd, p.size);
            closeSync(fd);
          } else writeDataFile(rawPath, p.size);
          const io = rawFd(rawPath);
          const rv = runOp(op, io, p.size, p.rand, r);
          io.close();
          rmSync(rawPath);

          const pool = formatPool(join(dir, 'pool'), p.size * 2 + 64 * MiB);
          let vol: Volume = pool.pool.createThinSync('v', { size: p.size });
          if (state !== 'fresh') writeVolume(vol, p.size);
          if (state === 'snapshot') vol = pool.pool.snapshotSync('v', 's');
          pool.pool.commitSync();
          const v = vol;
          const tv = runOp(op, { read: (b, o) => v.readSync(b, o), write: (b, o) => v.writeSync(b, o) }, p.size, p.rand, r);
          pool.close();
          rmSync(join(dir, 'pool'), { recursive: true, force: true });
          thin.push(tv);
          raw.push(rv);
          ratio.push(tv / rv);
        }
        rec.add(kase, 'throughput', 'MiB/s', 'thinpool', thin);
        rec.add(kase, 'throughput', 'MiB/s', 'raw', raw, state === 'fresh' ? 'sparse file' : 'fully written file');
        rec.add(kase, 'thinpool / raw', 'ratio', 'thinpool', ratio);
      }
    }
    rmSync(dir, { recursive: true, force: true });
    rec.note(
      `Volume and raw file of ${p.size / MiB} MiB (1 GiB with --full); ${p.rand} random 4 KiB operations; page cache warm, no fsync; commits not timed.`,
    );
    rec.note('Reads of a fresh volume return zeros without I/O (no block is mapped); reads of a fresh raw file read holes.');
    const cats = ['fresh', 'provisioned', 'snapshot'] as State[];
    rec.chart('throughput-ratio.svg', {
      kind: 'bar',
      title: 'thinpool throughput as a fraction of the raw file',
      categories: OPS,
      y: { label: 'thinpool / raw file (1 = as fast as raw)', log: true },
      series: cats.map((s) => ({
        name: `volume: ${stateLabel[s]}`,
        values: OPS.map((op) => rec.get(`${stateLabel[s]}: ${op}`, 'thinpool / raw', 'thinpool')),
      })),
    });
  },
};
