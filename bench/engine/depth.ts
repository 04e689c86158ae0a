/**
 * Random 4 KiB reads at snapshot depth 100 against depth 0 (goal >= 0.95).
 *
 * One file pool: origin `v` with NBLK blocks written through volume.writeSync (4 KiB each), then a chain of
 * 100 snapshots, s1 = snapshot(v), s2 = snapshot(s1), ...; before each snapshot is taken from it, 1% of the
 * current newest volume's blocks are overwritten (copy-on-write), so the chain really diverges. Reads of
 * provisioned blocks of `v` (depth 0), `s50` and `s100` run in interleaved rounds at the same offsets, page
 * cache warm.
 *
 * Copy-on-write moves ~63% of s100's blocks to the end of the data file, and a plain pread there is itself a
 * few percent slower than at v's offsets (page-cache folio layout), so v against s100 mixes data placement into
 * the depth figure. The goal is therefore measured against `flat`: a volume with no origin whose own tree maps
 * exactly s100's data blocks, so the two read the same data-file offsets and differ only in snapshot history.
 * fs.readSync of the data file at v's and at s100's offsets is measured too, to show each volume's engine time.
 *
 * With THINPOOL_FIGURES_DIR set, the run (each case's median and per-round ns, keyed: v, s50, s100, s100-async,
 * v-async, flat, fs-v, fs-s100) is appended to $THINPOOL_FIGURES_DIR/depth.json (_lib.recordFigures);
 * scripts/figures-engine.mjs computes the ratios and the verdict.
 */
import * as fs from 'node:fs';
import { join } from 'node:path';
import { ThinPool } from '../../src/index.js';
import {
  BLOCK,
  FULL,
  QUICK,
  fmtMs,
  fmtOps,
  header,
  interleaved,
  note,
  recordFigures,
  rng,
  scratchDir,
  spread,
  table,
  verdict,
  type Case,
} from './_lib.js';

const NBLK = FULL ? 16384 : QUICK ? 1024 : 4096;
const DEPTH = 100;
const PER_ROUND = QUICK ? 5000 : 20000;
const ROUNDS = QUICK ? 5 : 21;

async function main(): Promise<void> {
  header(
    'Reads at snapshot depth 100 vs depth 0',
    `${NBLK} provisioned 64 KiB blocks, chain of ${DEPTH} snapshots, 1% of blocks overwritten at each level`,
  );
  const dir = scratchDir('depth');
  // The default metadata size (2 MiB minimum here) is too small for 100 divergent snapshots: 64 MiB.
  const pool = ThinPool.formatSync(join(dir, 'pool'), { size: NBLK * BLOCK * 3, metadataSize: 64 * 1024 * 1024 });
  const v = pool.createThinSync('v', { size: NBLK * BLOCK });
  const piece = Buffer.alloc(4096, 1);
  for (let i = 0; i < NBLK; i++) v.writeSync(piece, i * BLOCK);
  pool.commitSync();
  const r = rng(5);
  let cur = 'v';
  const t0 = performance.now();
  for (let s = 1; s <= DEPTH; s++) {
    const w = pool.volume(cur);
    for (let k = 0; k < NBLK / 100; k++) w.writeSync(piece, Math.floor(r() * NBLK) * BLOCK + 4096);
    pool.snapshotSync(cur, `s${s}`);
    pool.commitSync();
    cur = `s${s}`;
  }
  const chainMs = performance.now() - t0;
  const chainMetadataBlocks = pool.status().metadataBlocks.used;
  note(`built the chain in ${fmtMs(chainMs)}; metadata blocks used ${chainMetadataBlocks}`);
  // A depth-0 volume mapping exactly s100's data blocks (no origin, its own freshly built tree): reads of it
  // and of s100 land on the same data-file offsets, so the two differ only in snapshot history.
  const flat = pool.createThinSync('flat', { size: NBLK * BLOCK });
  {
    const md = pool.metadata;
    const s100Id = pool.volume(`s${DEPTH}`).id;
    const time = md.superblock.time;
    const maps: Array<[number, number]> = [];
    md.forEachMapping(s100Id, (vb, db) => maps.push([vb, db]));
    for (const [vb, db] of maps) md.insertMappingRaw(flat.id, vb, db, time);
    pool.commitSync();
  }
  const M = 1 << 16;
  const offs = new Float64Array(M);
  for (let i = 0; i < M; i++) offs[i] = Math.floor(r() * NBLK) * BLOCK + Math.floor(r() * 16) * 4096;
  const buf = Buffer.alloc(4096);
  const dataFd = fs.openSync(join(dir, 'pool', 'data'), 'r');
  const vols = { v: pool.volume('v'), s50: pool.volume('s50'), s100: pool.volume(`s${DEPTH}`), flat };
  // The data-file offsets each read of s100 lands on: copy-on-write moved ~63% of its blocks to the end of the
  // data file, so the plain-file cost of its reads differs from v's even though the engine's work does not.
  const md = pool.metadata;
  const roots = [md.rootOf(vols.v.id), md.rootOf(vols.s100.id)];
  const s100Offs = new Float64Array(M);
  let moved = 0;
  for (let i = 0; i < M; i++) {
    const vb = Math.floor(offs[i] / BLOCK);
    const db = md.lookupDblock(roots[1], vb);
    if (db !== vb) moved++;
    s100Offs[i] = db * BLOCK + (offs[i] % BLOCK);
  }
  note(`reads of s100 that land on a block copy-on-write moved: ${((100 * moved) / M).toFixed(0)}%`);
  const cases: Case[] = [
    {
      name: 'depth 0 (v): volume.readSync',
      run: (f, n) => {
        for (let i = f; i < f + n; i++) vols.v.readSync(buf, offs[i & (M - 1)]);
      },
    },
    {
      name: 'depth 50 (s50): volume.readSync',
      run: (f, n) => {
        for (let i = f; i < f + n; i++) vols.s50.readSync(buf, offs[i & (M - 1)]);
      },
    },
    {
      name: `depth ${DEPTH} (s${DEPTH}): volume.readSync`,
      run: (f, n) => {
        for (let i = f; i < f + n; i++) vols.s100.readSync(buf, offs[i & (M - 1)]);
      },
    },
    {
      name: `depth ${DEPTH}: await volume.read`,
      run: async (f, n) => {
        for (let i = f; i < f + n; i++) await vols.s100.read(buf, offs[i & (M - 1)]);
      },
    },
    {
      name: 'depth 0: await volume.read',
      run: async (f, n) => {
        for (let i = f; i < f + n; i++) await vols.v.read(buf, offs[i & (M - 1)]);
      },
    },
    {
      name: `depth 0 (flat): volume.readSync, same data blocks as s${DEPTH}`,
      run: (f, n) => {
        for (let i = f; i < f + n; i++) vols.flat.readSync(buf, offs[i & (M - 1)]);
      },
    },
    {
      name: "fs.readSync of the data file at v's offsets",
      run: (f, n) => {
        for (let i = f; i < f + n; i++) fs.readSync(dataFd, buf, 0, 4096, offs[i & (M - 1)]);
      },
    },
    {
      name: `fs.readSync of the data file at s${DEPTH}'s offsets`,
      run: (f, n) => {
        for (let i = f; i < f + n; i++) fs.readSync(dataFd, buf, 0, 4096, s100Offs[i & (M - 1)]);
      },
    },
  ];
  const res = await interleaved(cases, { perRound: PER_ROUND, rounds: ROUNDS, warmup: 2 });
  const [tV, , s100, s100Async, vAsync, flatR, fsV, fsS] = res.map((x) => x.nsPerOp);
  // Ratios: sync cases against v, async against v's async, flat and s100 against each other (same data blocks).
  const ratioOf = [1, tV / res[1].nsPerOp, tV / s100, vAsync / s100Async, 1, 0, 0, 0];
  const goalOf = ['', '', 'raw', 'raw', '', '', '', ''];
  table(
    'Random 4 KiB reads by snapshot depth (page cache warm)',
    ['case', 'ops/s', 'ns/op', 'spread', 'ratio vs depth 0 (v)', 'note'],
    res.map((x, i) => [
      x.name,
      fmtOps(x.opsPerSec),
      x.nsPerOp.toFixed(0),
      spread(x),
      i < 5 ? ratioOf[i].toFixed(2) : '',
      goalOf[i] === 'raw' ? 'data placement differs from v' : '',
    ]),
  );
  // The goal: depth 100 against depth 0 reading the same data-file offsets, i.e. s100 against flat.
  const fair = flatR / s100;
  table(
    `Depth ${DEPTH} against depth 0 with the same data placement`,
    ['measure', 'value', 'goal'],
    [
      [`ratio s${DEPTH} / flat (both map the same data blocks; flat has no origin)`, fair.toFixed(2), `>= 0.95: ${verdict(fair, 0.95)}`],
      ['engine time per read (readSync - fs.readSync at the same data offsets), v', `${(tV - fsV).toFixed(0)} ns`, ''],
      [`engine time per read, s${DEPTH}`, `${(s100 - fsS).toFixed(0)} ns`, ''],
      [`engine time per read, flat`, `${(flatR - fsS).toFixed(0)} ns`, ''],
      [`plain data-file read at s${DEPTH}'s offsets / at v's offsets`, (fsS / fsV).toFixed(2), ''],
    ],
  );
  // Where the time goes: lookup alone (metadata), per depth.
  const lk: Case[] = roots.map((root, k) => ({
    name: `metadata lookup only (lookupDblock), depth ${k === 0 ? 0 : DEPTH}`,
    run: (f: number, n: number) => {
      for (let i = f; i < f + n; i++) md.lookupDblock(root, Math.floor(offs[i & (M - 1)] / BLOCK));
    },
  }));
  for (const [k, vol] of [
    ['v (first in the catalog)', vols.v],
    [`s${DEPTH} (last in the catalog)`, vols.s100],
  ] as const) {
    let sink = 0;
    lk.push({
      name: `volume.sizeBytes, ${k}`,
      run: (f: number, n: number) => {
        for (let i = f; i < f + n; i++) sink += vol.sizeBytes;
        if (sink < 0) note('');
      },
    });
  }
  const lr = await interleaved(lk, { perRound: PER_ROUND * 5, rounds: ROUNDS, warmup: 2 });
  table(
    'Where a read spends its time: mapping lookup and the per-call size check (catalog search)',
    ['case', 'ops/s', 'ns/op', 'spread'],
    lr.map((x) => [x.name, fmtOps(x.opsPerSec), x.nsPerOp.toFixed(0), spread(x)]),
  );
  const KEYS = ['v', 's50', 's100', 's100-async', 'v-async', 'flat', 'fs-v', 'fs-s100'];
  const raw = (x: { name: string; nsPerOp: number; rounds: number[] }) => ({
    name: x.name,
    nsPerOp: Math.round(x.nsPerOp),
    roundsNs: x.rounds.map((n) => Math.round(n)),
  });
  recordFigures('depth.json', 'bench/engine/depth.ts', {
    blocks: NBLK,
    depth: DEPTH,
    rounds: ROUNDS,
    perRound: PER_ROUND,
    chainMs: Math.round(chainMs),
    metadataBlocksUsed: chainMetadataBlocks,
    movedFraction: Number((moved / M).toFixed(3)),
    cases: res.map((x, i) => ({ key: KEYS[i], ...raw(x) })),
    lookups: lr.map(raw),
  });
  fs.closeSync(dataFd);
  pool.closeSync();
}

await main();
