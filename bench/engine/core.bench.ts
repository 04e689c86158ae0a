/**
 * The WASM core: btree lookups/s and inserts/s through BTree over a memory pool, crc32c MB/s (core.x.crc32c)
 * against a plain-JS table crc32c (slice-by-8), and the node lower-bound search in WASM against a JS binary
 * search over the same node (documents the WASM/TS split). benny for the per-call micro benchmarks, plain
 * timed loops for inserts (they change the tree).
 *
 * With THINPOOL_FIGURES_DIR set, the run (benny's ops/s and margin per case, the insert counts and times) is
 * appended to $THINPOOL_FIGURES_DIR/core.json (_lib.recordFigures) for scripts/figures-engine.mjs.
 */
import { ThinPool } from '../../src/index.js';
import { Core } from '../../src/core/wasm.js';
import { LEAF } from '../../src/pd/transaction-manager.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { BLOCK, QUICK, bennyRun, fmtMs, fmtOps, header, median, note, provisionMeta, recordFigures, rng, table } from './_lib.js';

const N = QUICK ? 100_000 : 1_000_000;
const RAND_INSERTS = QUICK ? 20_000 : 200_000;

// ---- plain-JS crc32c, slice-by-8 (Castagnoli, reflected 0x82F63B78) ----
const T = new Uint32Array(8 * 256);
for (let i = 0; i < 256; i++) {
  let c = i;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  T[i] = c >>> 0;
}
for (let i = 0; i < 256; i++) for (let t = 1; t < 8; t++) T[t * 256 + i] = (T[(t - 1) * 256 + i] >>> 8) ^ T[T[(t - 1) * 256 + i] & 0xff];
function crc32cJs(crc: number, b: Uint8Array, off: number, len: number): number {
  let c = crc >>> 0;
  let i = off;
  const end = off + len;
  for (; i + 8 <= end; i += 8) {
    const lo = (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) ^ c;
    c =
      T[1792 + (lo & 0xff)] ^
      T[1536 + ((lo >>> 8) & 0xff)] ^
      T[1280 + ((lo >>> 16) & 0xff)] ^
      T[1024 + (lo >>> 24)] ^
      T[768 + b[i + 4]] ^
      T[512 + b[i + 5]] ^
      T[256 + b[i + 6]] ^
      T[b[i + 7]];
  }
  for (; i < end; i++) c = T[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return c >>> 0;
}

/** JS lower bound over a node's u64 keys held as u32 pairs in WASM memory: index of the last key <= k, or -1. */
function lowerBoundJs(u32: Uint32Array, a: number, klo: number, khi: number): number {
  const nr = u32[(a + 16) >>> 2];
  const base = (a + 32) >>> 2;
  let lo = -1;
  let hi = nr;
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    const mhi = u32[base + 2 * mid + 1];
    const mlo = u32[base + 2 * mid];
    if (mhi < khi || (mhi === khi && mlo <= klo)) lo = mid;
    else hi = mid;
  }
  return lo;
}

async function main(): Promise<void> {
  header('WASM core', `btree over a memory pool with ${N} mappings; crc32c; node lower bound`);
  // ---- btree inserts and lookups ----
  const pool = ThinPool.memory({ size: (N + RAND_INSERTS + 1024) * BLOCK, metadataSize: 256 * 1024 * 1024 });
  const md = pool.metadata;
  const seq = pool.createThinSync('seq', { size: N * BLOCK });
  let t = performance.now();
  provisionMeta(md, seq.id, 0, N);
  const tSeq = performance.now() - t;
  pool.commitSync();
  const r = rng(9);
  const bt = ThinMetadata.internals(md).l1;
  const seqRoot = md.rootOf(seq.id);
  const M = 1 << 16;
  const lk = new Float64Array(M);
  for (let i = 0; i < M; i++) lk[i] = Math.floor(r() * N);
  let c1 = 0;
  let c2 = 0;
  let c3 = 0;
  const x = ThinMetadata.internals(md).core.x;
  const lookCase = () => [
    {
      name: 'BTree.lookup (1 WASM call, host node callback per level)',
      fn: () => {
        bt.lookup(seqRoot, lk[c1++ & (M - 1)]);
      },
    },
    {
      name: 'ThinMetadata.lookupDblock',
      fn: () => {
        md.lookupDblock(seqRoot, lk[c2++ & (M - 1)]);
      },
    },
    {
      name: 'raw core.x.btreeLookup',
      fn: () => {
        x.btreeLookup(seqRoot, 0, lk[c3++ & (M - 1)], 0, 8);
      },
    },
  ];
  const look = await bennyRun('lookups', lookCase());
  const rnd = pool.createThinSync('rnd', { size: N * BLOCK });
  const keys = new Float64Array(RAND_INSERTS);
  for (let i = 0; i < RAND_INSERTS; i++) keys[i] = Math.floor(r() * N);
  t = performance.now();
  for (let i = 0; i < RAND_INSERTS; i++) md.insertMapping(rnd.id, keys[i], md.allocDataBlock());
  const tRnd = performance.now() - t;
  // raw BTree.insert (no space-map work), sequential keys into a fresh tree
  let root = bt.emptyRoot();
  t = performance.now();
  for (let i = 0; i < RAND_INSERTS; i++) {
    root = bt.insert(root, i, { dblock: 0, time: i }).root; // the u64 value i, as before (i < 2^24)
  }
  const tRaw = performance.now() - t;
  pool.commitSync();
  // Same lookups once the pool's metadata (seq + rnd + raw trees) exceeds the default cache: misses re-read
  // and re-validate (checksum + node checks) blocks from the metadata device.
  const look2 = await bennyRun('lookups under cache pressure', lookCase().slice(1, 2));
  const cacheAfter = {
    metadataBlocksUsed: md.metadataUsedBlocks,
    cacheSlots: ThinMetadata.internals(md).cache.slots,
    cacheReads: ThinMetadata.internals(md).cache.reads,
  };
  note(
    `metadata blocks used ${cacheAfter.metadataBlocksUsed}, cache ${cacheAfter.cacheSlots} blocks; cache reads so far ${cacheAfter.cacheReads}`,
  );

  table(
    `B-tree (mapping tree level 1, ${N} keys, default cache)`,
    ['operation', 'rate', 'note'],
    [
      ...look.map((l) => [l.name, fmtOps(l.ops), `±${l.rme.toFixed(1)}% (benny), tree fits the cache`]),
      ...look2.map((l) => [`${l.name}, metadata > cache`, fmtOps(l.ops), `±${l.rme.toFixed(1)}% (benny), after the inserts below`]),
      [`insertMapping, ${N} sequential keys (alloc + insert)`, fmtOps(N / (tSeq / 1000)), `${fmtMs(tSeq)} total`],
      [`insertMapping, ${RAND_INSERTS} random keys`, fmtOps(RAND_INSERTS / (tRnd / 1000)), `${fmtMs(tRnd)} total`],
      [`BTree.insert raw, ${RAND_INSERTS} sequential keys`, fmtOps(RAND_INSERTS / (tRaw / 1000)), `${fmtMs(tRaw)} total`],
    ],
  );

  // ---- crc32c ----
  const core = new Core(32, 16);
  const a = core.slotAddr(0);
  const rr = rng(11);
  for (let i = 0; i < 65536; i++) core.u8[a + i] = Math.floor(rr() * 256);
  const check = new TextEncoder().encode('123456789');
  core.u8.set(check, core.scratch);
  const wasmCheck = core.x.crc32c(0xffffffff, core.scratch, 9) ^ 0xffffffff;
  const jsCheck = crc32cJs(0xffffffff, check, 0, 9) ^ 0xffffffff;
  note(`crc32c("123456789"): WASM ${(wasmCheck >>> 0).toString(16)}, JS ${(jsCheck >>> 0).toString(16)} (expected e3069283)`);
  if (core.x.crc32c(0xffffffff, a, 65536) >>> 0 !== crc32cJs(0xffffffff, core.u8, a, 65536)) throw new Error('crc32c mismatch');
  const crc = await bennyRun('crc32c', [
    { name: 'WASM core.x.crc32c, 4 KiB', fn: () => core.x.crc32c(0xffffffff, a, 4096) },
    { name: 'JS slice-by-8, 4 KiB', fn: () => crc32cJs(0xffffffff, core.u8, a, 4096) },
    { name: 'WASM core.x.crc32c, 64 KiB', fn: () => core.x.crc32c(0xffffffff, a, 65536) },
    { name: 'JS slice-by-8, 64 KiB', fn: () => crc32cJs(0xffffffff, core.u8, a, 65536) },
  ]);
  const len = [4096, 4096, 65536, 65536];
  table(
    'crc32c throughput',
    ['implementation', 'MB/s', 'ns per call', 'ratio WASM / JS'],
    crc.map((c, i) => [
      c.name,
      ((c.ops * len[i]) / 1e6).toFixed(0),
      (1e9 / c.ops).toFixed(0),
      i % 2 === 0 ? (c.ops / crc[i + 1].ops).toFixed(2) : '',
    ]),
  );

  // ---- node lower bound ----
  const node = core.slotAddr(20);
  core.x.nodeInit(node, 20, 0, LEAF, 8);
  const max = core.x.maxEntriesFor(8);
  for (let i = 0; i < max; i++) {
    core.setU64(core.param, i);
    const k = i * 1000 + 5;
    core.x.nodeInsertAt(node, i, k >>> 0, 0, core.param);
  }
  const probes = new Uint32Array(M);
  for (let i = 0; i < M; i++) probes[i] = Math.floor(rr() * max * 1000);
  for (let i = 0; i < 1000; i++) {
    if (core.x.nodeLowerBound(node, probes[i], 0) !== lowerBoundJs(core.u32, node, probes[i], 0)) throw new Error('lower bound mismatch');
  }
  let p1 = 0;
  let p2 = 0;
  let p3 = 0;
  let sink = 0;
  const u32 = core.u32;
  const lb = await bennyRun('lower bound', [
    {
      name: `WASM nodeLowerBound (${max} keys, raw export)`,
      fn: () => {
        sink += core.x.nodeLowerBound(node, probes[p1++ & (M - 1)], 0);
      },
    },
    {
      name: 'JS binary search, u32 pairs, same node',
      fn: () => {
        sink += lowerBoundJs(u32, node, probes[p2++ & (M - 1)], 0);
      },
    },
    {
      name: 'empty benny case (harness floor)',
      fn: () => {
        sink += probes[p3++ & (M - 1)];
      },
    },
  ]);
  table(
    'Node lower-bound search (one full 4 KiB leaf)',
    ['implementation', 'calls/s', 'ns per call (incl. harness)'],
    lb.map((l) => [l.name, fmtOps(l.ops), (1e9 / l.ops).toFixed(1)]),
  );
  if (sink === -1) note(String(median([sink])));
  const benny = (l: { name: string; ops: number; rme: number }) => ({
    name: l.name,
    ops: Math.round(l.ops),
    rme: Number(l.rme.toFixed(2)),
  });
  const r3 = (x: number) => Number(x.toFixed(3));
  recordFigures('core.json', 'bench/engine/core.bench.ts', {
    mappings: N,
    lookups: look.map(benny),
    lookupsOverCache: look2.map(benny),
    ...cacheAfter,
    inserts: [
      { what: 'insertMapping, sequential keys (alloc + insert)', key: 'sequential', count: N, ms: r3(tSeq) },
      { what: 'insertMapping, random keys', key: 'random', count: RAND_INSERTS, ms: r3(tRnd) },
      { what: 'BTree.insert raw, sequential keys', key: 'raw', count: RAND_INSERTS, ms: r3(tRaw) },
    ],
    crc32c: crc.map((c, i) => ({ ...benny(c), bytes: len[i] })),
    lowerBound: lb.map(benny),
  });
  pool.closeSync();
}

await main();
