/**
 * Scale: one volume with 1,000,000 provisioned 64 KiB blocks plus 100 snapshots, with the default metadata
 * cache (DEFAULT_CACHE_BLOCKS). Reports cache size, metadata blocks used, peak RSS and the time of each step.
 *
 * Provisioning 1M blocks through volume.writeSync writes 64 GiB (each first 4 KiB write zeroes the rest of
 * its 64 KiB block): ~250 µs/block here, over 4 minutes and 64 GiB of disk. So by default the volume is
 * provisioned metadata-only (same metadata calls as the write path, no data I/O, data blocks stay holes), and
 * the write path is measured on a sample of real first writes. `--full` provisions all 1M blocks through
 * volume.writeSync (needs ~65 GiB free on /tmp and several minutes). The 100 snapshots form a chain (each a
 * snapshot of the previous one) and after each one 100 random blocks of the newest volume are overwritten
 * through volume.writeSync (each copies a shared 64 KiB block), so the snapshots really diverge.
 *
 * With THINPOOL_FIGURES_DIR set, the run (each step's time, every snapshot's and copy-on-write round's time, the
 * sizes, cache figures and peak RSS) is appended to $THINPOOL_FIGURES_DIR/scale.json (_lib.recordFigures);
 * scripts/figures-engine.mjs renders the goal (1M blocks + 100 snapshots within the default metadata cache).
 */
import { statfsSync } from 'node:fs';
import { join } from 'node:path';
import { ThinPool } from '../../src/index.js';
import { DEFAULT_CACHE_BLOCKS, ThinMetadata } from '../../src/thin/metadata.js';
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
  rng,
  scratchDir,
  table,
} from './_lib.js';

const N = QUICK ? 100_000 : 1_000_000;
const SNAPS = QUICK ? 20 : 100;
const DIVERGE = 100;
const SAMPLE = QUICK ? 1024 : 8192;

function main(): void {
  const dir = scratchDir('scale');
  const free = statfsSync(dir).bavail * statfsSync(dir).bsize;
  const full = FULL && free > N * BLOCK * 1.1;
  header(
    'Scale: 1M provisioned blocks + 100 snapshots',
    `${N} blocks of 64 KiB, ${SNAPS} chained snapshots, default metadata cache; provisioning: ${full ? 'volume.writeSync (4 KiB per block)' : 'metadata-only'}`,
  );
  if (FULL && !full) note(`--full needs ${fmtBytes(N * BLOCK * 1.1)} free on ${dir}, only ${fmtBytes(free)}: metadata-only`);
  const extra = SAMPLE + SNAPS * DIVERGE + 4096;
  const rows: Array<[string, string]> = [];
  /** Times of the steps, ms, for the JSON (the table shows them formatted). */
  const ms: Record<string, number> = {};
  let t = performance.now();
  // The default metadata size (48 bytes per data block, the dm-thin rule: ~46 MiB here) runs out of space
  // during the divergent snapshots (each diverged leaf is a copy): use 128 MiB and report what is used.
  const metadataSize = 128 * 1024 * 1024;
  const pool = ThinPool.formatSync(join(dir, 'pool'), { size: (N + extra) * BLOCK, metadataSize });
  ms.format = performance.now() - t;
  rows.push(['format pool', fmtMs(ms.format)]);
  const vol = pool.createThinSync('v0', { size: (N + SAMPLE) * BLOCK });
  const md = pool.metadata;
  const piece = Buffer.alloc(4096, 0xab);

  t = performance.now();
  if (full) {
    for (let i = 0; i < N; i++) vol.writeSync(piece, i * BLOCK);
  } else {
    provisionMeta(md, vol.id, 0, N);
  }
  const tProv = performance.now() - t;
  ms.provision = tProv;
  rows.push([
    `provision ${N} blocks (${full ? 'writeSync' : 'metadata-only'})`,
    `${fmtMs(tProv)} (${((tProv * 1000) / N).toFixed(2)} µs/block)`,
  ]);
  t = performance.now();
  pool.commitSync();
  ms.commit = performance.now() - t;
  rows.push(['commit', fmtMs(ms.commit)]);
  // Real first writes (data path) on a sample of further blocks.
  t = performance.now();
  for (let i = N; i < N + SAMPLE; i++) vol.writeSync(piece, i * BLOCK);
  pool.commitSync();
  const tSample = performance.now() - t;
  ms.sampleWrites = tSample;
  rows.push([
    `first 4 KiB write into ${SAMPLE} new blocks (writeSync) + commit`,
    `${fmtMs(tSample)} (${((tSample * 1000) / SAMPLE).toFixed(1)} µs/block)`,
  ]);
  const afterProv = pool.status().metadataBlocks.used;

  // 100 chained snapshots, each followed by 100 copy-on-write overwrites in the newest volume.
  const snapT: number[] = [];
  const cowT: number[] = [];
  const r = rng(7);
  let cur = 'v0';
  for (let s = 1; s <= SNAPS; s++) {
    const t1 = performance.now();
    pool.snapshotSync(cur, `s${s}`);
    pool.commitSync();
    snapT.push(performance.now() - t1);
    cur = `s${s}`;
    const sv = pool.volume(cur);
    const t2 = performance.now();
    for (let k = 0; k < DIVERGE; k++) sv.writeSync(piece, Math.floor(r() * N) * BLOCK);
    pool.commitSync();
    cowT.push((performance.now() - t2) / DIVERGE);
  }
  rows.push([`snapshot + commit, ${SNAPS} times (median / max)`, `${fmtMs(median(snapT))} / ${fmtMs(Math.max(...snapT))}`]);
  rows.push([
    `copy-on-write 4 KiB write into a shared block (median per write, incl. commit share)`,
    `${(median(cowT) * 1000).toFixed(0)} µs`,
  ]);
  const st = pool.status();
  const cache = ThinMetadata.internals(md).cache;
  const building = { reads: cache.reads, writes: cache.writes };
  const cacheStats = `${building.reads} reads, ${building.writes} writes`;

  // Random reads of the newest (depth 100) and the origin, metadata partly cold after reopen.
  t = performance.now();
  pool.closeSync();
  ms.close = performance.now() - t;
  rows.push(['close (commit)', fmtMs(ms.close)]);
  t = performance.now();
  const p2 = ThinPool.openSync(join(dir, 'pool'));
  ms.open = performance.now() - t;
  rows.push(['open', fmtMs(ms.open)]);
  const buf = Buffer.alloc(4096);
  const reads: Array<{ volume: string; reads: number; ms: number }> = [];
  for (const name of ['v0', cur]) {
    const v = p2.volume(name);
    const rr = rng(3);
    const n = 100_000;
    t = performance.now();
    for (let i = 0; i < n; i++) v.readSync(buf, Math.floor(rr() * N) * BLOCK);
    const dt = performance.now() - t;
    reads.push({ volume: name, reads: n, ms: Number(dt.toFixed(3)) });
    rows.push([
      `${n} random 4 KiB reads of ${name} after open (cold metadata cache)`,
      `${fmtMs(dt)} (${((dt * 1000) / n).toFixed(2)} µs/read)`,
    ]);
  }
  const c2 = ThinMetadata.internals(p2.metadata).cache;
  table('Times', ['step', 'time'], rows);
  table(
    'Size and memory',
    ['figure', 'value'],
    [
      ['mapped blocks in v0', `${p2.metadata.deviceDetails(p2.volume('v0').id).mappedBlocks}`],
      ['volumes', `${st.volumes}`],
      ['data blocks used / total', `${st.dataBlocks.used} / ${st.dataBlocks.total}`],
      ['metadata blocks used after provisioning', `${afterProv} (${fmtBytes(afterProv * 4096)})`],
      [
        'metadata blocks used / total at end',
        `${st.metadataBlocks.used} / ${st.metadataBlocks.total} (${fmtBytes(st.metadataBlocks.used * 4096)} of ${fmtBytes(st.metadataBlocks.total * 4096)})`,
      ],
      ['metadata cache (default)', `${DEFAULT_CACHE_BLOCKS} blocks = ${fmtBytes(DEFAULT_CACHE_BLOCKS * 4096)} (slots in use: ${c2.slots})`],
      ['cache traffic while building', cacheStats],
      ['cache reads after reopen (200k random reads)', `${c2.reads}`],
      ['WASM memory of the pool (cache + counts)', fmtBytes(ThinMetadata.internals(p2.metadata).core.memory.buffer.byteLength)],
      ['process peak RSS (maxRSS)', fmtBytes(peakRss())],
    ],
  );
  const r3 = (x: number) => Number(x.toFixed(3));
  recordFigures('scale.json', 'bench/engine/scale.ts', {
    blocks: N,
    snapshots: SNAPS,
    divergingWritesPerSnapshot: DIVERGE,
    sampleBlocks: SAMPLE,
    provisioning: full ? 'writeSync' : 'metadata-only',
    ms: Object.fromEntries(Object.entries(ms).map(([k, v]) => [k, r3(v)])),
    snapshotCommitMs: snapT.map(r3),
    cowWriteMs: cowT.map(r3),
    reads,
    mappedBlocks: p2.metadata.deviceDetails(p2.volume('v0').id).mappedBlocks,
    volumes: st.volumes,
    dataBlocks: { used: st.dataBlocks.used, total: st.dataBlocks.total },
    metadataBlockBytes: 4096,
    metadataBlocksAfterProvisioning: afterProv,
    metadataBlocks: { used: st.metadataBlocks.used, total: st.metadataBlocks.total },
    defaultCacheBlocks: DEFAULT_CACHE_BLOCKS,
    cacheSlots: c2.slots,
    cacheWhileBuilding: building,
    cacheReadsAfterReopen: c2.reads,
    wasmMemoryBytes: ThinMetadata.internals(p2.metadata).core.memory.buffer.byteLength,
    peakRssBytes: peakRss(),
  });
  p2.closeSync();
}

main();
