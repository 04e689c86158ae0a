/**
 * benny microbenchmark of the data I/O path: random 4 KiB reads and writes of provisioned blocks through
 * volume.readSync / volume.writeSync against fs.readSync / fs.writeSync at the same offsets of a plain file with
 * the same write history (64 KiB pieces, as the engine writes its data file); the pool's data file read directly at
 * the same offsets separates the engine's own cost from the page cache's. engine/io.ts makes the same comparison with interleaved rounds (the
 * fairer figure on a noisy machine); this one is the benny view of it.
 */
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ThinPool } from '../../src/index.js';
import { BLOCK, MiB, QUICK, bennyRun, fmtOps, header, rng, scratchDir, table } from './_lib.js';

const SIZE = QUICK ? 64 * MiB : 256 * MiB;
const PAGES = SIZE / 4096;

async function run(): Promise<void> {
  header('engine/io.bench', 'benny: random 4 KiB reads and writes of provisioned blocks, engine vs plain file');
  const dir = scratchDir('io-bench');
  const pool = ThinPool.formatSync(join(dir, 'pool'), { size: 2 * SIZE, blockSize: BLOCK });
  const v = pool.createThinSync('v', { size: SIZE });
  const plainPath = join(dir, 'plain');
  const fd = openSync(plainPath, 'w+');
  const chunk = new Uint8Array(MiB);
  for (let off = 0; off < SIZE; off += MiB) {
    chunk.fill((off / MiB) & 0xff);
    v.writeSync(chunk, off);
    // The engine writes the data file one 64 KiB block at a time: give the plain file the same history (page
    // cache folio sizes decide small-I/O speed here, see the toolchain notes).
    for (let b = 0; b < MiB; b += BLOCK) writeSync(fd, chunk, b, BLOCK, off + b);
  }
  pool.commitSync();
  const dataFd = openSync(join(dir, 'pool', 'data'), 'r');
  const buf = new Uint8Array(4096);
  const offsets = Float64Array.from(
    { length: 1 << 16 },
    (
      (r) => () =>
        Math.floor(r() * PAGES) * 4096
    )(rng(7)),
  );
  let i = 0;
  const next = (): number => offsets[i++ & 0xffff];
  const results = await bennyRun('4 KiB random I/O', [
    { name: 'fs.readSync (plain file)', fn: () => readSync(fd, buf, 0, 4096, next()) },
    { name: 'volume.readSync', fn: () => v.readSync(buf, next()) },
    { name: 'fs.readSync (pool data file)', fn: () => readSync(dataFd, buf, 0, 4096, next()) },
    { name: 'fs.writeSync (plain file)', fn: () => writeSync(fd, buf, 0, 4096, next()) },
    { name: 'volume.writeSync', fn: () => v.writeSync(buf, next()) },
  ]);
  const ops = new Map(results.map((r) => [r.name, r]));
  const ratio = (a: string, b: string): string => (ops.get(a)!.ops / ops.get(b)!.ops).toFixed(2);
  table(
    'benny, ops/s (± relative margin of error)',
    ['case', 'ops/s', '±', 'ratio to fs'],
    [
      [
        'fs.readSync (plain file)',
        fmtOps(ops.get('fs.readSync (plain file)')!.ops),
        `${ops.get('fs.readSync (plain file)')!.rme.toFixed(1)}%`,
        '1.00',
      ],
      [
        'volume.readSync',
        fmtOps(ops.get('volume.readSync')!.ops),
        `${ops.get('volume.readSync')!.rme.toFixed(1)}%`,
        ratio('volume.readSync', 'fs.readSync (plain file)'),
      ],
      [
        'fs.readSync (pool data file, same offsets)',
        fmtOps(ops.get('fs.readSync (pool data file)')!.ops),
        `${ops.get('fs.readSync (pool data file)')!.rme.toFixed(1)}%`,
        ratio('fs.readSync (pool data file)', 'fs.readSync (plain file)'),
      ],
      [
        'fs.writeSync (plain file)',
        fmtOps(ops.get('fs.writeSync (plain file)')!.ops),
        `${ops.get('fs.writeSync (plain file)')!.rme.toFixed(1)}%`,
        '1.00',
      ],
      [
        'volume.writeSync',
        fmtOps(ops.get('volume.writeSync')!.ops),
        `${ops.get('volume.writeSync')!.rme.toFixed(1)}%`,
        ratio('volume.writeSync', 'fs.writeSync (plain file)'),
      ],
    ],
  );
  closeSync(fd);
  closeSync(dataFd);
  pool.closeSync();
}

await run();
