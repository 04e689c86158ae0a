/**
 * Snapshot creation time at 1,000 and at 1,000,000 mapped blocks (goal: ratio about 1, at most 1.5).
 *
 * Two file pools on /tmp, each with one origin volume, provisioned metadata-only (the mapping tree is what
 * matters for a snapshot; see _lib.provisionMeta) and committed. Then, in interleaved rounds, a snapshot of
 * the origin is taken in each pool: `snapshotSync` is timed alone, and the commit that follows is timed
 * separately (a snapshot becomes durable only with it). Every snapshot starts a fresh transaction.
 *
 * With THINPOOL_FIGURES_DIR set, the run (every round's times per pool, their medians) is appended to
 * $THINPOOL_FIGURES_DIR/snapshot.json (_lib.recordFigures); scripts/figures-engine.mjs computes the ratio and verdict.
 */
import { join } from 'node:path';
import { ThinPool } from '../../src/index.js';
import {
  BLOCK,
  FULL,
  QUICK,
  fmtBytes,
  fmtMs,
  header,
  median,
  note,
  peakRss,
  provisionMeta,
  recordFigures,
  scratchDir,
  table,
  verdict,
} from './_lib.js';

const SMALL = 1000;
const BIG = QUICK ? 100_000 : 1_000_000;
const ROUNDS = QUICK ? 10 : FULL ? 100 : 40;

function makePool(dir: string, n: number): ThinPool {
  const pool = ThinPool.formatSync(dir, { size: (n + 1024) * BLOCK });
  const v = pool.createThinSync('origin', { size: n * BLOCK });
  provisionMeta(pool.metadata, v.id, 0, n);
  pool.commitSync();
  return pool;
}

function main(): void {
  header(
    'Snapshot creation vs mapped blocks',
    `origin with ${SMALL} vs ${BIG} mapped 64 KiB blocks (metadata-only provisioning), ${ROUNDS} snapshots each, interleaved`,
  );
  const dir = scratchDir('snap');
  let t0 = performance.now();
  const a = makePool(join(dir, 'small'), SMALL);
  const tA = performance.now() - t0;
  t0 = performance.now();
  const b = makePool(join(dir, 'big'), BIG);
  const tB = performance.now() - t0;
  note(`setup: ${SMALL} blocks ${fmtMs(tA)}, ${BIG} blocks ${fmtMs(tB)}`);
  const pools: Array<[string, ThinPool]> = [
    [`${SMALL} mapped`, a],
    [`${BIG} mapped`, b],
  ];
  const snap: number[][] = [[], []];
  const commit: number[][] = [[], []];
  const warm = 3;
  for (let r = 0; r < ROUNDS + warm; r++) {
    for (let j = 0; j < 2; j++) {
      const k = (j + r) % 2;
      const p = pools[k][1];
      const t1 = performance.now();
      p.snapshotSync('origin', `s${r}`);
      const t2 = performance.now();
      p.commitSync();
      const t3 = performance.now();
      if (r >= warm) {
        snap[k].push(t2 - t1);
        commit[k].push(t3 - t2);
      }
    }
  }
  const rows = pools.map(([name, p], k) => {
    const st = p.status();
    return [
      name,
      fmtMs(median(snap[k])),
      fmtMs(median(commit[k])),
      fmtMs(median(snap[k].map((s, i) => s + commit[k][i]))),
      `${st.metadataBlocks.used}`,
      `${st.volumes}`,
    ];
  });
  table(
    'Snapshot creation (median of rounds)',
    ['origin', 'snapshotSync', 'commit after it', 'snapshot + commit', 'metadata blocks used', 'volumes at end'],
    rows,
  );
  const rs = median(snap[1]) / median(snap[0]);
  const both = median(snap[1].map((s, i) => s + commit[1][i])) / median(snap[0].map((s, i) => s + commit[0][i]));
  table(
    'Ratio big / small (goal about 1, at most 1.5)',
    ['measure', 'ratio', 'goal'],
    [
      ['snapshotSync', rs.toFixed(2), verdict(rs, 1.5, false)],
      ['snapshot + commit', both.toFixed(2), verdict(both, 1.5, false)],
    ],
  );
  note(`commit includes two fdatasync calls (metadata blocks, then superblock) on /tmp; peak RSS ${fmtBytes(peakRss())}`);
  const r3 = (x: number) => Number(x.toFixed(3));
  recordFigures('snapshot.json', 'bench/engine/snapshot.ts', {
    rounds: ROUNDS,
    warmup: warm,
    setupMs: [r3(tA), r3(tB)],
    pools: pools.map(([, p], k) => ({
      mappedBlocks: k === 0 ? SMALL : BIG,
      snapshotMs: snap[k].map(r3),
      commitMs: commit[k].map(r3),
      medianSnapshotMs: r3(median(snap[k])),
      medianCommitMs: r3(median(commit[k])),
      medianSnapshotCommitMs: r3(median(snap[k].map((x, i) => x + commit[k][i]))),
      metadataBlocksUsed: p.status().metadataBlocks.used,
      volumes: p.status().volumes,
    })),
    peakRssBytes: peakRss(),
  });
  a.closeSync();
  b.closeSync();
}

main();
