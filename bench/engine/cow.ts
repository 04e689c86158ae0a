/**
 * Cost of a first write into a shared block (the block is copied: 64 KiB read + 64 KiB written, a new data
 * block allocated and mapped) against a 4 KiB write into an unshared provisioned block, and against a first
 * write into an unprovisioned block (60 KiB of zeros + the piece). File pool on /tmp, page cache warm,
 * interleaved rounds; every copy-on-write op hits a block not yet copied.
 */
import { join } from 'node:path';
import { ThinPool } from '../../src/index.js';
import { BLOCK, QUICK, fmtNs, fmtOps, header, interleaved, rng, scratchDir, spread, table, type Case } from './_lib.js';

const NBLK = QUICK ? 1024 : 8192;
const PER_ROUND = 256;
const ROUNDS = Math.floor(NBLK / PER_ROUND) - 2;

async function main(): Promise<void> {
  header('Copy-on-write: first write into a shared block', `${NBLK} provisioned 64 KiB blocks, snapshot taken, ${PER_ROUND} writes per round`);
  const dir = scratchDir('cow');
  const pool = ThinPool.formatSync(join(dir, 'pool'), { size: NBLK * BLOCK * 5, metadataSize: 16 * 1024 * 1024 });
  const v = pool.createThinSync('v', { size: NBLK * BLOCK });
  const u = pool.createThinSync('u', { size: NBLK * BLOCK });
  const e = pool.createThinSync('e', { size: NBLK * BLOCK });
  const piece = Buffer.alloc(4096, 3);
  for (let i = 0; i < NBLK; i++) { v.writeSync(piece, i * BLOCK); u.writeSync(piece, i * BLOCK); }
  pool.snapshotSync('v', 'snap');
  pool.commitSync();
  const r = rng(4);
  const perm = Array.from({ length: NBLK }, (_, i) => i);
  for (let i = NBLK - 1; i > 0; i--) { const j = Math.floor(r() * (i + 1)); [perm[i], perm[j]] = [perm[j], perm[i]]; }
  const cases: Case[] = [
    { name: '4 KiB write, unshared provisioned block', run: (f, n) => { for (let i = f; i < f + n; i++) u.writeSync(piece, perm[i % NBLK] * BLOCK + 8192); } },
    { name: '4 KiB first write, shared block (copy 64 KiB)', run: (f, n) => { for (let i = f; i < f + n; i++) v.writeSync(piece, perm[i] * BLOCK + 8192); } },
    { name: '4 KiB first write, unprovisioned block (zero 60 KiB)', run: (f, n) => { for (let i = f; i < f + n; i++) e.writeSync(piece, perm[i] * BLOCK + 8192); } },
  ];
  const res = await interleaved(cases, { perRound: PER_ROUND, rounds: ROUNDS, warmup: 2 });
  const base = res[0].nsPerOp;
  table('Write cost by block state (no commit inside the rounds)', ['case', 'ops/s', 'per write', 'spread', 'cost vs unshared write'], res.map((x) => [
    x.name, fmtOps(x.opsPerSec), fmtNs(x.nsPerOp), spread(x), `${(x.nsPerOp / base).toFixed(1)}x`,
  ]));
  pool.closeSync();
}

await main();
