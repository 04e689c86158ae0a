// Metadata fuzzing: mutate metadata written by the engine (random bytes, bit flips, truncation, swapped or
// duplicated blocks, cycles and wrong pointers in trees, counts and fields out of range), half of the mutants
// with checksums (and self block numbers) recomputed by the WASM core so the damage gets past the checksum.
// For each mutant: checkMetadataDevice (open + full check) must return a report, never throw; every reported
// error must name its structure and metadata block; a sample is also opened as a pool (read-only), listed and
// read in full, where anything thrown must be a ThinpoolError naming structure and block. Each mutant is timed
// (bound: MUTANT_MS). In-process only (no external tools per mutant).
//
// Strict: no error is tolerated for not naming its structure and block.
//
// Env: THINPOOL_SOAK=1 for 1,000,000 mutants; THINPOOL_FUZZ_MUTANTS=<n>, THINPOOL_FUZZ_SEED=<n>,
// THINPOOL_FUZZ_SECONDS=<s> (stop after s seconds, for measuring rates);
// THINPOOL_FUZZ_ONLY=<mutant index> replays one mutant (its description is printed on failure).
import { expect, test } from 'vitest';
import { isThinpoolError, ThinpoolError } from '../../src/errors.js';
import { Core } from '../../src/core/wasm.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { checkMetadataDevice, type CheckIssue } from '../../src/thin/check.js';
import { ThinPool, type PoolStorage } from '../../src/thin/pool.js';
import { fill, keepOpen, mulberry32, type Rng } from '../support/model.js';

const SOAK = process.env.THINPOOL_SOAK === '1';
const MUTANTS = Number(process.env.THINPOOL_FUZZ_MUTANTS ?? (SOAK ? 1_000_000 : 20_000));
const SEED = Number(process.env.THINPOOL_FUZZ_SEED ?? 777);
const ONLY = process.env.THINPOOL_FUZZ_ONLY;
/** Time cap in seconds (measuring throughput): stop when reached; the count check is then skipped. */
const SECONDS = process.env.THINPOOL_FUZZ_SECONDS === undefined ? undefined : Number(process.env.THINPOOL_FUZZ_SECONDS);
/** Also open as a pool, list and read every volume, on every Nth mutant. */
const POOL_EVERY = 8;
/** Per-mutant time bound (a hang shows as a blown bound, or as the test timeout). */
const MUTANT_MS = 2000;
const BS = 64 * 1024;
const SALTS = { superblock: 160774, node: 121107, bitmap: 240779, index: 160478 } as const;
type Kind = keyof typeof SALTS | 'free';

interface Base {
  name: string;
  meta: MemoryDevice;
  data: MemoryDevice;
  catalog: MemoryCatalogStore;
  kinds: Kind[];
  /** Blocks by kind (valid checksum in the image: live or stale). */
  byKind: Record<Kind, number[]>;
  nodes: Array<{ b: number; internal: boolean; nr: number; max: number; vs: number }>;
}

const core = new Core(1, 0);

function checksumOk(buf: Uint8Array, salt: number): boolean {
  core.u8.set(buf, core.scratch);
  return core.x.blockChecksum(core.scratch, salt) >>> 0 === new DataView(buf.buffer, buf.byteOffset).getUint32(0, true);
}

/** Recompute the checksum of a 4 KiB block in place (the WASM core's blockPrepare). */
function reseal(buf: Uint8Array, salt: number): void {
  core.u8.set(buf, core.scratch);
  core.x.blockPrepare(core.scratch, salt);
  buf.set(core.u8.subarray(core.scratch, core.scratch + 4096));
}

async function makeBase(name: string, seed: number, holdSnap: boolean): Promise<Base> {
  const meta = new MemoryDevice(1024 * 1024);
  const data = new MemoryDevice(64 * BS);
  const catalog = new MemoryCatalogStore();
  const storage: PoolStorage = { metadata: keepOpen(meta), data: keepOpen(data), catalog };
  const pool = ThinPool.formatStorage(storage, { size: 64 * BS, blockSize: BS });
  const rng = mulberry32(seed);
  const names: string[] = [];
  for (let i = 0; i < 6; i++) {
    const n = `v${i}`;
    if (i > 0 && rng() < 0.4) pool.snapshotSync(names[Math.floor(rng() * names.length)]!, n);
    else pool.createThinSync(n, { size: (1 + Math.floor(rng() * 6)) * BS });
    names.push(n);
    for (let w = 0; w < 6; w++) {
      const v = pool.volume(names[Math.floor(rng() * names.length)]!);
      const off = Math.floor(rng() * (v.sizeBytes - 1000));
      v.writeSync(fill(1000, seed * 100 + i * 10 + w), off);
    }
    if (i === 3 && holdSnap) {
      pool.commitSync();
      await pool.reserveMetadataSnap();
    }
    pool.commitSync();
  }
  pool.closeSync();
  const nr = meta.sizeBytes / 4096;
  const kinds: Kind[] = [];
  const byKind: Record<Kind, number[]> = { superblock: [], node: [], bitmap: [], index: [], free: [] };
  const nodes: Base['nodes'] = [];
  const buf = new Uint8Array(4096);
  for (let b = 0; b < nr; b++) {
    meta.read(buf, b * 4096);
    let k: Kind = 'free';
    for (const kk of ['superblock', 'node', 'bitmap', 'index'] as const) if (buf.some((x) => x !== 0) && checksumOk(buf, SALTS[kk])) k = kk;
    kinds.push(k);
    byKind[k].push(b);
    if (k === 'node') {
      const dv = new DataView(buf.buffer);
      nodes.push({ b, internal: (dv.getUint32(4, true) & 1) === 1, nr: dv.getUint32(16, true), max: dv.getUint32(20, true), vs: dv.getUint32(24, true) });
    }
  }
  return { name, meta, data, catalog, kinds, byKind, nodes };
}

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
const int = (rng: Rng, n: number) => Math.floor(rng() * n);

function setU64(dv: DataView, o: number, v: number): void {
  dv.setUint32(o, v >>> 0, true);
  dv.setUint32(o + 4, Math.floor(v / 4294967296) >>> 0, true);
}

/** Interesting 64-bit values for pointers and counts. */
function wild(rng: Rng, nrMeta: number): number {
  return pick(rng, [0, 1, nrMeta - 1, nrMeta, nrMeta + 1, 0xffffffff, 2 ** 32, 2 ** 40, 2 ** 53 - 1, int(rng, nrMeta), int(rng, 2 ** 31)]);
}

interface Mutant {
  dev: MemoryDevice;
  what: string;
}

/** One mutant of base, described so it can be read in a failure message. */
function mutate(base: Base, rng: Rng): Mutant {
  const dev = base.meta.snapshot();
  const nrMeta = dev.sizeBytes / 4096;
  const resealed = rng() < 0.5;
  const used = [...base.byKind.superblock, ...base.byKind.node, ...base.byKind.bitmap, ...base.byKind.index];
  const blk = new Uint8Array(4096);
  const dv = new DataView(blk.buffer);
  const load = (b: number) => dev.read(blk, b * 4096);
  const store = (b: number, kind: Kind) => {
    if (resealed && kind !== 'free') reseal(blk, SALTS[kind]);
    dev.write(blk, b * 4096);
  };
  const r = rng();
  let what: string;
  if (r < 0.2) {
    const b = rng() < 0.15 ? 0 : pick(rng, used);
    load(b);
    const n = 1 + int(rng, 16);
    const pos: number[] = [];
    for (let i = 0; i < n; i++) {
      const p = rng() < 0.5 ? int(rng, 64) : int(rng, 4096);
      blk[p] = int(rng, 256);
      pos.push(p);
    }
    store(b, base.kinds[b]!);
    what = `random bytes at ${pos.join(',')} of ${base.kinds[b]} block ${b}`;
  } else if (r < 0.4) {
    const b = rng() < 0.15 ? 0 : pick(rng, used);
    load(b);
    const bits: number[] = [];
    for (let i = 0, n = 1 + int(rng, 4); i < n; i++) {
      const bit = rng() < 0.5 ? int(rng, 64 * 8) : int(rng, 4096 * 8);
      blk[bit >> 3]! ^= 1 << (bit & 7);
      bits.push(bit);
    }
    store(b, base.kinds[b]!);
    what = `bit flips ${bits.join(',')} in ${base.kinds[b]} block ${b}`;
  } else if (r < 0.47) {
    const maxUsed = Math.max(...used) + 1;
    const size = rng() < 0.5 ? int(rng, maxUsed + 1) * 4096 : int(rng, maxUsed * 4096);
    dev.resize(size);
    what = `truncated to ${size} bytes`;
  } else if (r < 0.57) {
    const a = pick(rng, used.filter((b) => b !== 0));
    const b = rng() < 0.3 ? pick(rng, base.byKind.free) : pick(rng, used.filter((x) => x !== 0));
    const ba = new Uint8Array(4096);
    const bb = new Uint8Array(4096);
    dev.read(ba, a * 4096);
    dev.read(bb, b * 4096);
    const dup = rng() < 0.3;
    for (const [src, dst] of dup ? [[ba, b]] as const : [[ba, b], [bb, a]] as const) {
      blk.set(src);
      const kind = base.kinds[src === ba ? a : b]!;
      if (resealed && kind !== 'free') {
        setU64(dv, 8, dst); // the copy claims its new place
        reseal(blk, SALTS[kind]);
      }
      dev.write(blk, dst * 4096);
    }
    what = `${dup ? 'duplicated' : 'swapped'} blocks ${a} (${base.kinds[a]}) ${dup ? 'onto' : 'and'} ${b} (${base.kinds[b]})`;
  } else if (r < 0.75) {
    // Cycles and wrong pointers: a child or level-1 root pointing at itself, an ancestor, another kind of block.
    load(0);
    const sbv = new DataView(blk.buffer.slice(0));
    const roots = [sbv.getUint32(320, true), sbv.getUint32(328, true)];
    const n = pick(rng, base.nodes.filter((x) => x.nr > 0 && x.vs === 8));
    if (!n || rng() < 0.2) {
      const field = pick(rng, [320, 328, 56, 64 + 16, 64 + 24, 192 + 16, 192 + 24]);
      const v = pick(rng, [...roots, ...used, wild(rng, nrMeta)]);
      load(0);
      setU64(dv, field, v);
      store(0, 'superblock');
      what = `superblock field @${field} := ${v}`;
    } else {
      load(n.b);
      const i = int(rng, n.nr);
      const target = pick(rng, [n.b, n.b, ...roots, pick(rng, used), wild(rng, nrMeta)]);
      const off = 32 + 8 * n.max + 8 * i;
      setU64(dv, off, target);
      store(n.b, 'node');
      what = `${n.internal ? 'internal' : 'leaf'} node ${n.b} value ${i} := ${target}${target === n.b ? ' (itself)' : roots.includes(target) ? ' (a tree root)' : ''}`;
    }
  } else {
    // Counts and fields out of range.
    const s = rng();
    if (s < 0.35 && base.nodes.length > 0) {
      const n = pick(rng, base.nodes);
      load(n.b);
      const field = pick(rng, [16, 20, 24, 4]);
      const v = pick(rng, [0, 1, n.max, n.max + 1, n.nr + 1, 0xffff, 0xffffffff, int(rng, 1000)]);
      dv.setUint32(field, v >>> 0, true);
      store(n.b, 'node');
      what = `node ${n.b} header @${field} := ${v}`;
    } else if (s < 0.55) {
      const field = pick(rng, [4, 8, 40, 44, 48, 64, 72, 192, 200, 336, 340, 344, 352, 356, 360]);
      load(0);
      const v = wild(rng, nrMeta);
      if ([4, 40, 44, 336, 340, 352, 356, 360].includes(field)) dv.setUint32(field, v >>> 0, true);
      else setU64(dv, field, v);
      store(0, 'superblock');
      what = `superblock field @${field} := ${v}`;
    } else if (s < 0.7 && base.byKind.index.length > 0) {
      const b = pick(rng, base.byKind.index);
      load(b);
      const e = int(rng, 4);
      const field = 16 + 16 * e + pick(rng, [0, 8, 12]);
      const v = wild(rng, nrMeta);
      if (field % 16 === 0) setU64(dv, field, v);
      else dv.setUint32(field, v >>> 0, true);
      store(b, 'index');
      what = `index block ${b} entry ${e} @${field} := ${v}`;
    } else if (s < 0.85 && base.byKind.bitmap.length > 0) {
      const b = pick(rng, base.byKind.bitmap);
      load(b);
      const byte = 16 + int(rng, 64);
      blk[byte] = pick(rng, [0, 0xff, 0xaa, 0x55, int(rng, 256)]);
      store(b, 'bitmap');
      what = `bitmap block ${b} byte ${byte} := ${blk[byte]}`;
    } else {
      const leaves = base.nodes.filter((x) => !x.internal && x.nr > 0);
      const n = pick(rng, leaves);
      load(n.b);
      const i = int(rng, n.nr);
      const off = 32 + 8 * n.max + n.vs * i + pick(rng, [0, 4].filter((o) => o < n.vs));
      const v = pick(rng, [0xffffffff, 0x7fffffff, 0x01000000, 64 << 24, int(rng, 2 ** 32)]);
      dv.setUint32(off, v >>> 0, true);
      store(n.b, 'node');
      what = `leaf node ${n.b} (value size ${n.vs}) value ${i} @${off} := ${v}`;
    }
  }
  return { dev, what: `${what}${resealed ? ' [checksum recomputed]' : ''}` };
}

/**
 * The error names its structure, and a block: the metadata block in `mblock`, or (for findings about data
 * blocks, or level-1 mappings summarised per tree) a block number in the message. The second form is counted.
 */
const namesStructure = (e: { structure?: string }) => typeof e.structure === 'string' && e.structure.length > 0;
const namesBlock = (e: { structure?: string; mblock?: number; message: string }) =>
  namesStructure(e) && (typeof e.mblock === 'number' || /\bblock \d+/.test(e.message));

interface Tally {
  mutants: number;
  resealed: number;
  detected: number;
  clean: number;
  poolOpened: number;
  poolRefused: number;
  poolReadErrors: number;
  maxMs: number;
  totalMs: number;
  issuesWithoutBlock: Map<string, number>;
  /** Errors naming the block in the message only (no mblock field). */
  blockInMessageOnly: number;
  codes: Map<string, number>;
}

function runMutant(base: Base, m: Mutant, index: number, withPool: boolean, t: Tally): void {
  const where = `mutant ${index} of ${base.name}: ${m.what} (replay: THINPOOL_FUZZ_SEED=${SEED} THINPOOL_FUZZ_ONLY=${index})`;
  currentMutant = where;
  const started = performance.now();
  let report;
  try {
    report = checkMetadataDevice(m.dev, { cacheBlocks: 64 });
  } catch (e) {
    throw new Error(`${where}: checkMetadataDevice threw ${e instanceof Error ? e.stack : String(e)}`, { cause: e });
  }
  const issues: CheckIssue[] = report.errors;
  for (const e of issues) {
    t.codes.set(e.code, (t.codes.get(e.code) ?? 0) + 1);
    if (namesBlock(e) && e.mblock === undefined) t.blockInMessageOnly++;
    if (!namesBlock(e)) {
      const key = `${e.code} ${e.structure}: ${e.message.replace(/\d+/g, 'N')}`;
      t.issuesWithoutBlock.set(key, (t.issuesWithoutBlock.get(key) ?? 0) + 1);
    }
  }
  if (report.ok) t.clean++;
  else t.detected++;
  if (withPool) {
    const storage: PoolStorage = { metadata: m.dev, data: base.data, catalog: base.catalog };
    let pool: ThinPool | undefined;
    try {
      pool = ThinPool.openStorage(storage, { readOnly: true, cacheBlocks: 64 });
      t.poolOpened++;
    } catch (e) {
      if (!isThinpoolError(e)) throw new Error(`${where}: opening the pool threw ${e instanceof Error ? e.stack : String(e)}`, { cause: e });
      t.poolRefused++;
      noteThrown(e, t, 'open');
    }
    if (pool) {
      try {
        for (const v of pool.list()) {
          const vol = pool.volume(v.id);
          const size = Math.min(vol.sizeBytes, 64 * BS);
          const buf = new Uint8Array(size);
          vol.readSync(buf, 0);
        }
      } catch (e) {
        if (!isThinpoolError(e)) throw new Error(`${where}: listing / reading the pool threw ${e instanceof Error ? e.stack : String(e)}`, { cause: e });
        t.poolReadErrors++;
        noteThrown(e, t, 'read');
      }
    }
  }
  const ms = performance.now() - started;
  t.totalMs += ms;
  if (ms > t.maxMs) t.maxMs = ms;
  if (ms > MUTANT_MS) throw new Error(`${where}: took ${ms.toFixed(0)} ms (bound ${MUTANT_MS} ms)`);
}

let currentMutant = '';

/**
 * Every error must name its structure and block; nothing is tolerated. (FIXED BUGS 3-4, regression tests in
 * fuzz-regressions.test.ts, were tolerated here while open: a corrupt data_block_size or a mapping past the data
 * device reaching the data device as EINVAL "bad byte range", and the data-device size check of openStorage
 * throwing EBADSUPER without structure and block.)
 */
function noteThrown(e: ThinpoolError, t: Tally, phase: string): void {
  t.codes.set(e.code, (t.codes.get(e.code) ?? 0) + 1);
  if (namesBlock(e) && e.mblock === undefined) t.blockInMessageOnly++;
  if (!namesBlock(e)) {
    const key = `${phase}: ${e.code} ${e.structure ?? '(no structure)'}: ${e.message.replace(/\d+/g, 'N')}`;
    if (!t.issuesWithoutBlock.has(key)) console.log(`first ${key}: ${currentMutant}: ${e.message}`);
    t.issuesWithoutBlock.set(key, (t.issuesWithoutBlock.get(key) ?? 0) + 1);
  }
}

test(`metadata fuzzing: ${MUTANTS} mutants`, async () => {
  const started = performance.now();
  const bases = [
    await makeBase('pool A (6 volumes and snapshots)', 1, false),
    await makeBase('pool B (held metadata snapshot)', 2, true),
    await makeBase('pool C (6 volumes and snapshots)', 3, false),
  ];
  const t: Tally = { mutants: 0, resealed: 0, detected: 0, clean: 0, poolOpened: 0, poolRefused: 0, poolReadErrors: 0, maxMs: 0, totalMs: 0, issuesWithoutBlock: new Map(), blockInMessageOnly: 0, codes: new Map() };
  const byKind = new Map<string, number>();
  const first = ONLY ? Number(ONLY) : 0;
  const last = ONLY ? Number(ONLY) + 1 : MUTANTS;
  for (let i = first; i < last; i++) {
    if (SECONDS !== undefined && (i & 63) === 0 && performance.now() - started > SECONDS * 1000) break;
    const rng = mulberry32(SEED * 1_000_003 + i);
    const base = bases[i % bases.length]!;
    const m = mutate(base, rng);
    if (ONLY) console.log(`mutant ${i}: ${m.what}`);
    runMutant(base, m, i, ONLY !== undefined || i % POOL_EVERY === 0, t);
    t.mutants++;
    if (m.what.endsWith('[checksum recomputed]')) t.resealed++;
    const k = m.what.split(/ \d| at | in | :=| @/)[0]!;
    byKind.set(k, (byKind.get(k) ?? 0) + 1);
  }
  const secs = ((performance.now() - started) / 1000).toFixed(1);
  const noBlock = [...t.issuesWithoutBlock].sort((a, b) => b[1] - a[1]);
  console.log(
    `metadata fuzzing: ${t.mutants} mutants (${t.resealed} with checksums recomputed), 0 crashes, 0 hangs, ${secs}s` +
    ` (${(t.mutants / Number(secs)).toFixed(0)} mutants/s);` +
    ` max ${t.maxMs.toFixed(1)} ms per mutant (bound ${MUTANT_MS}), mean ${(t.totalMs / Math.max(1, t.mutants)).toFixed(2)} ms\n` +
    `  checker: ${t.detected} reported damage, ${t.clean} found nothing wrong (benign mutations: stale blocks, padding, hints)\n` +
    `  pool open (every ${POOL_EVERY}th): ${t.poolOpened} opened (then ${t.poolReadErrors} refused a read/list), ${t.poolRefused} refused to open\n` +
    `  mutation kinds: ${[...byKind].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ')}\n` +
    `  error codes: ${[...t.codes].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ')}\n` +
    `  errors naming their block in the message only (data blocks, per-tree mapping summaries): ${t.blockInMessageOnly}\n` +
    `  errors not naming structure and block: ${noBlock.length === 0 ? 'none' : noBlock.map(([k, n]) => `\n    ${n} x ${k}`).join('')}`,
  );
  if (SECONDS === undefined) expect(t.mutants).toBe(last - first);
  expect(noBlock, 'every error names its structure and metadata block').toEqual([]);
}, SOAK ? 7_200_000 : 240_000);
