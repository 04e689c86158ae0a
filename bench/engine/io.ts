/**
 * Random 4 KiB reads and writes of provisioned blocks, against a plain file read with fs.readSync /
 * written with fs.writeSync at the same offsets, in the same process and run.
 *
 * Fairness (the page cache keeps a file's pages in large folios shaped by how the file was written): the plain
 * file gets the same write history as the pool's data file. The engine's first 4 KiB write into a 64 KiB block writes 60 KiB of zeros
 * after the piece and then the 4 KiB piece; the plain file is written the same way, block by block, and both
 * are fdatasync'ed once. Blocks are provisioned in order, so the data file's offsets equal the volume's
 * (checked below). Reads and writes run in interleaved rounds (baseline, engine, ...), medians of rounds.
 *
 * Goals (issue 2): reads >= 0.8 x fs.readSync, writes to provisioned unshared blocks >= 0.7 x fs.writeSync;
 * (issue 17) volume.readSync >= 0.92 x fs.readSync on the pool's own data file at the same offsets. The file device
 * reads with the native helper's pread when it is built (one system call, none of fs.readSync's per-call argument
 * work), so a last row times that pread alone on the data file: the floor the engine's cost sits on.
 *
 * Clock: rounds are timed by this process's CPU time (user + system), not the wall clock: page-cache I/O never
 * waits on a device, and on a shared machine the wall clock also counts time spent waiting for a core.
 * `--wall` times by the wall clock instead. With THINPOOL_FIGURES_DIR set (and not --quick), the read and write
 * cases (medians and per-round ns), the commit, date and load average go to $THINPOOL_FIGURES_DIR/read-path.json
 * (one run, replaced) for scripts/render-figures.mjs (the read-path section, the README headline, the goals of
 * issue 2 in scripts/figures-engine.mjs).
 */
import * as fs from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { ThinPool } from '../../src/index.js';
import { nativeHelpers } from '../../src/io/native.js';
import { commitMeasured, dateMeasured } from '../figures-run.js';
import {
  BLOCK,
  FULL,
  LOAD_AT_START,
  QUICK,
  args,
  fmtBytes,
  fmtNs,
  fmtOps,
  header,
  interleaved,
  note,
  rng,
  scratchDir,
  spread,
  table,
  verdict,
  type Case,
  type CaseResult,
} from './_lib.js';

const NBLK = FULL ? 32768 : QUICK ? 1024 : 8192;
const PER_ROUND = QUICK ? 5000 : 20000;
const ROUNDS = QUICK ? 5 : 21;
const PIECE = 4096;
/** --wall: time rounds by the wall clock instead of this process's CPU time (see _lib.ts interleaved). */
const CLOCK = args.includes('--wall') ? 'wall' : 'cpu';

async function main(): Promise<void> {
  header(
    'Random 4 KiB I/O vs a plain file',
    `${NBLK} provisioned 64 KiB blocks (${fmtBytes(NBLK * BLOCK)}), page cache warm, one file pool on /tmp`,
  );
  const dir = scratchDir('io');
  const pool = ThinPool.formatSync(join(dir, 'pool'), { size: NBLK * BLOCK });
  const vol = pool.createThinSync('v', { size: NBLK * BLOCK });
  const plainPath = join(dir, 'plain');
  const pfd = fs.openSync(plainPath, 'w+');
  fs.ftruncateSync(pfd, NBLK * BLOCK);

  // Same write history on both sides.
  const piece = Buffer.alloc(PIECE);
  const zeros = Buffer.alloc(BLOCK - PIECE);
  const r0 = rng(1);
  let t0 = performance.now();
  for (let i = 0; i < NBLK; i++) {
    piece.fill(Math.floor(r0() * 255) + 1);
    vol.writeSync(piece, i * BLOCK);
  }
  pool.commitSync();
  const tEngine = performance.now() - t0;
  const r1 = rng(1);
  t0 = performance.now();
  for (let i = 0; i < NBLK; i++) {
    piece.fill(Math.floor(r1() * 255) + 1);
    fs.writeSync(pfd, zeros, 0, zeros.length, i * BLOCK + PIECE);
    fs.writeSync(pfd, piece, 0, PIECE, i * BLOCK);
  }
  fs.fdatasyncSync(pfd);
  const tPlain = performance.now() - t0;
  const ext = vol.map();
  const identity = ext.length === 1 && ext[0].dblock === 0 && ext[0].lengthBytes === NBLK * BLOCK;
  note(
    `provisioning (first 4 KiB write per block, incl. commit): engine ${fmtNs((tEngine * 1e6) / NBLK)}/block, plain file same history ${fmtNs((tPlain * 1e6) / NBLK)}/block`,
  );
  note(`data-file offsets equal volume offsets: ${identity ? 'yes' : `no (${ext.length} extents)`}`);

  const dataFd = fs.openSync(join(dir, 'pool', 'data'), 'r');
  // Random 4 KiB-aligned offsets in provisioned blocks.
  const M = 1 << 16;
  const offs = new Float64Array(M);
  const r = rng(42);
  for (let i = 0; i < M; i++) offs[i] = Math.floor(r() * NBLK) * BLOCK + Math.floor(r() * (BLOCK / PIECE)) * PIECE;
  const buf = Buffer.alloc(PIECE);
  const fh = await fs.promises.open(plainPath, 'r');

  // Sanity: engine and plain file hold the same bytes.
  const b2 = Buffer.alloc(PIECE);
  for (let i = 0; i < 200; i++) {
    vol.readSync(buf, offs[i]);
    fs.readSync(pfd, b2, 0, PIECE, offs[i]);
    if (!buf.equals(b2)) throw new Error(`content mismatch at ${offs[i]}`);
  }

  const nativePread = nativeHelpers()?.pread;
  const reads: Case[] = [
    {
      name: 'fs.readSync, plain file (baseline)',
      run: (f, n) => {
        for (let i = f; i < f + n; i++) fs.readSync(pfd, buf, 0, PIECE, offs[i & (M - 1)]);
      },
    },
    {
      name: 'volume.readSync',
      run: (f, n) => {
        for (let i = f; i < f + n; i++) vol.readSync(buf, offs[i & (M - 1)]);
      },
    },
    {
      name: 'await volume.read (one at a time)',
      run: async (f, n) => {
        for (let i = f; i < f + n; i++) await vol.read(buf, offs[i & (M - 1)]);
      },
    },
    {
      name: 'volume.read, 16 in flight',
      run: async (f, n) => {
        const ps: Promise<void>[] = [];
        for (let i = f; i < f + n; i++) {
          ps.push(vol.read(buf, offs[i & (M - 1)]));
          if (ps.length === 16) {
            await Promise.all(ps);
            ps.length = 0;
          }
        }
        await Promise.all(ps);
      },
    },
    {
      name: 'fs.readSync, pool data file (raw)',
      run: (f, n) => {
        for (let i = f; i < f + n; i++) fs.readSync(dataFd, buf, 0, PIECE, offs[i & (M - 1)]);
      },
    },
    {
      name: 'await FileHandle.read, plain (reference)',
      perRound: PER_ROUND / 10,
      run: async (f, n) => {
        for (let i = f; i < f + n; i++) await fh.read(buf, 0, PIECE, offs[i & (M - 1)]);
      },
    },
    // The system call alone, through the native helper that FileDevice itself uses when built (no per-call
    // argument conversion): the floor under every row above, printed so the engine's own cost stays visible
    // now that its device path no longer goes through fs.readSync.
    ...(nativePread === undefined
      ? []
      : [
          {
            name: 'native pread, pool data file (floor)',
            run: (f: number, n: number) => {
              for (let i = f; i < f + n; i++) nativePread(dataFd, buf, offs[i & (M - 1)]);
            },
          },
        ]),
  ];
  const rr = await interleaved(reads, { perRound: PER_ROUND, rounds: ROUNDS, warmup: 2, clock: CLOCK });
  const base = rr[0].nsPerOp;
  const raw = rr[4].nsPerOp;
  table(
    'Random 4 KiB reads (page cache warm)',
    ['case', 'ops/s', 'ns/op', 'spread', 'ratio vs fs.readSync (plain)', 'ratio vs raw data file', 'goal'],
    rr.map((x, i) => [
      x.name,
      fmtOps(x.opsPerSec),
      x.nsPerOp.toFixed(0),
      spread(x),
      (base / x.nsPerOp).toFixed(2),
      (raw / x.nsPerOp).toFixed(2),
      i === 1
        ? `>= 0.8: ${verdict(base / x.nsPerOp, 0.8)}; vs raw >= 0.92 (issue 17): ${verdict(raw / x.nsPerOp, 0.92)}`
        : i === 2
          ? `>= 0.8: ${verdict(base / x.nsPerOp, 0.8)}`
          : '',
    ]),
  );

  // Writes to provisioned, unshared blocks (no snapshot exists: nothing is shared, no metadata changes).
  const wbuf = Buffer.alloc(PIECE, 0x5a);
  const pw = fs.openSync(plainPath, 'r+');
  const writes: Case[] = [
    {
      name: 'fs.writeSync, plain file (baseline)',
      run: (f, n) => {
        for (let i = f; i < f + n; i++) fs.writeSync(pw, wbuf, 0, PIECE, offs[(i * 7) & (M - 1)]);
      },
    },
    {
      name: 'volume.writeSync',
      run: (f, n) => {
        for (let i = f; i < f + n; i++) vol.writeSync(wbuf, offs[(i * 7) & (M - 1)]);
      },
    },
    {
      name: 'await volume.write (one at a time)',
      run: async (f, n) => {
        for (let i = f; i < f + n; i++) await vol.write(wbuf, offs[(i * 7) & (M - 1)]);
      },
    },
  ];
  const wr = await interleaved(writes, { perRound: PER_ROUND / 2, rounds: ROUNDS, warmup: 2, clock: CLOCK });
  const wbase = wr[0].nsPerOp;
  table(
    'Random 4 KiB writes to provisioned, unshared blocks',
    ['case', 'ops/s', 'ns/op', 'spread', 'ratio vs fs.writeSync', 'goal'],
    wr.map((x, i) => [
      x.name,
      fmtOps(x.opsPerSec),
      x.nsPerOp.toFixed(0),
      spread(x),
      (wbase / x.nsPerOp).toFixed(2),
      i > 0 ? `>= 0.7: ${verdict(wbase / x.nsPerOp, 0.7)}` : '',
    ]),
  );
  note(`dirty data is not flushed during the write rounds (no commit); metadata unchanged: ${pool.metadata.dirty ? 'no' : 'yes'}`);
  const figDir = process.env.THINPOOL_FIGURES_DIR;
  if (figDir !== undefined && !QUICK) {
    const path = join(figDir, 'read-path.json');
    const raw = (x: CaseResult) => ({ name: x.name, nsPerOp: Math.round(x.nsPerOp), roundsNs: x.rounds.map((n) => Math.round(n)) });
    fs.writeFileSync(
      path,
      `${JSON.stringify(
        {
          bench: 'bench/engine/io.ts',
          machine: '2 cores shared with other jobs',
          commit: commitMeasured(),
          date: dateMeasured(),
          cpus: cpus().length,
          clock: CLOCK,
          blocks: NBLK,
          rounds: ROUNDS,
          perRound: PER_ROUND,
          loadAverage: Number(loadavg()[0].toFixed(1)),
          loadAverages: [Number(LOAD_AT_START.toFixed(2)), Number(loadavg()[0].toFixed(2))],
          rows: rr.map(raw),
          writes: wr.map(raw),
          writesPerRound: PER_ROUND / 2,
        },
        null,
        2,
      )}\n`,
    );
    note(`figures written to ${path}`);
  }
  await fh.close();
  fs.closeSync(pw);
  fs.closeSync(dataFd);
  fs.closeSync(pfd);
  pool.closeSync();
}

await main();
