// Metadata fuzzing, the part that runs in a child process (fuzz-child.ts) so that the test can kill it when a
// mutant hangs: pools to mutate, the mutations, the classification of each mutant and the run of one mutant.
// No vitest here (the child is plain Node running TypeScript through test/support/ts-register.mjs).
//
// Mutations: random bytes, bit flips, truncation, swapped or duplicated blocks, cycles and wrong pointers in
// trees, counts and fields out of range; half of them with checksums (and self block numbers) recomputed by the
// WASM core so the damage gets past the checksum.
//
// Classes (see classify): `live` — the bytes of a block reachable from the committed superblock changed, and
// the checksum was not recomputed (or the device was cut short of a live block): the checker must report it and
// the pool must refuse to open or read it with a ThinpoolError, every time. `live-resealed` — the same with the
// checksum recomputed: damage that only the structure checks can see; the detection rate is measured.
// `stale` / `stale-resealed` — only blocks outside the committed state changed: nothing that matters changed.
// `truncated` — the device was cut short, but only past the last live block. `unchanged` — the mutation wrote
// the bytes that were there.
import { isThinpoolError } from '../../src/errors.js';
import { Core } from '../../src/core/wasm.js';
import type { BlockDevice } from '../../src/io/block-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { checkMetadata, checkMetadataDevice, type CheckIssue } from '../../src/thin/check.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { ThinPool, type PoolStorage } from '../../src/thin/pool.js';
import { seededRng as mulberry32, type Rng } from '../support/rng.js';

export const BS = 64 * 1024;

/** support/model.ts's fill, repeated here so this module stays free of vitest. */
function fill(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = (seed * 2654435761 + 1) >>> 0;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = (x >>> 24) | 1;
  }
  return b;
}

/** A view of dev whose close() does nothing (support/model.ts's keepOpen). */
function keepOpen(dev: BlockDevice): BlockDevice {
  return {
    get sizeBytes() {
      return dev.sizeBytes;
    },
    read: (b, o) => dev.read(b, o),
    write: (b, o) => dev.write(b, o),
    flush: () => dev.flush(),
    resize: (s) => dev.resize(s),
    discard: (o, l) => dev.discard(o, l),
    close: () => undefined,
  };
}

export const SALTS = { superblock: 160774, node: 121107, bitmap: 240779, index: 160478 } as const;
export type Kind = keyof typeof SALTS | 'free';

export interface Base {
  name: string;
  meta: MemoryDevice;
  data: MemoryDevice;
  catalog: MemoryCatalogStore;
  kinds: Kind[];
  /** Blocks by kind (valid checksum in the image: live or stale). */
  byKind: Record<Kind, number[]>;
  nodes: Array<{ b: number; internal: boolean; nr: number; max: number; vs: number }>;
  /**
   * Live blocks: reachable from the committed superblock (and its held snapshot), i.e. counted in the committed
   * metadata space map of the base, whose exact counts the base's clean check vouches for. Others are stale.
   */
  live: Set<number>;
  /** Bytes past the end of the highest live block, for truncations that cut no live block. */
  liveEnd: number;
}

const core = new Core(1, 0);

function checksumOk(buf: Uint8Array, salt: number): boolean {
  core.u8.set(buf, core.scratch);
  return core.x.blockChecksum(core.scratch, salt) >>> 0 === new DataView(buf.buffer, buf.byteOffset).getUint32(0, true);
}

/** Recompute the checksum of a 4 KiB block in place (the WASM core's blockPrepare). */
export function reseal(buf: Uint8Array, salt: number): void {
  core.u8.set(buf, core.scratch);
  core.x.blockPrepare(core.scratch, salt);
  buf.set(core.u8.subarray(core.scratch, core.scratch + 4096));
}

export async function makeBase(name: string, seed: number, holdSnap: boolean): Promise<Base> {
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
      nodes.push({
        b,
        internal: (dv.getUint32(4, true) & 1) === 1,
        nr: dv.getUint32(16, true),
        max: dv.getUint32(20, true),
        vs: dv.getUint32(24, true),
      });
    }
  }
  const md = ThinMetadata.open(meta, { readOnly: true });
  const report = checkMetadata(md);
  if (!report.ok) throw new Error(`fuzz base ${name} is not clean: ${JSON.stringify(report.errors.slice(0, 3))}`);
  const live = new Set<number>();
  for (let b = 0; b < nr; b++) if (md.inspect().metadataCount(b) > 0) live.add(b);
  if (!live.has(0)) throw new Error(`fuzz base ${name}: the superblock is not counted in the metadata space map`);
  return { name, meta, data, catalog, kinds, byKind, nodes, live, liveEnd: (Math.max(...live) + 1) * 4096 };
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

export interface Mutant {
  dev: MemoryDevice;
  what: string;
  resealed: boolean;
  /** Metadata blocks the mutation wrote. */
  touched: number[];
  /** The new size when the mutation truncated the device. */
  truncatedTo?: number;
}

/** One mutant of base, described so it can be read in a failure message. */
export function mutate(base: Base, rng: Rng): Mutant {
  const dev = base.meta.snapshot();
  const touched: number[] = [];
  let truncatedTo: number | undefined;
  const nrMeta = dev.sizeBytes / 4096;
  const resealed = rng() < 0.5;
  const used = [...base.byKind.superblock, ...base.byKind.node, ...base.byKind.bitmap, ...base.byKind.index];
  const blk = new Uint8Array(4096);
  const dv = new DataView(blk.buffer);
  const load = (b: number) => dev.read(blk, b * 4096);
  const store = (b: number, kind: Kind) => {
    if (resealed && kind !== 'free') reseal(blk, SALTS[kind]);
    dev.write(blk, b * 4096);
    touched.push(b);
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
    truncatedTo = size;
    what = `truncated to ${size} bytes`;
  } else if (r < 0.57) {
    const a = pick(
      rng,
      used.filter((b) => b !== 0),
    );
    const b =
      rng() < 0.3
        ? pick(rng, base.byKind.free)
        : pick(
            rng,
            used.filter((x) => x !== 0),
          );
    const ba = new Uint8Array(4096);
    const bb = new Uint8Array(4096);
    dev.read(ba, a * 4096);
    dev.read(bb, b * 4096);
    const dup = rng() < 0.3;
    for (const [src, dst] of dup
      ? ([[ba, b]] as const)
      : ([
          [ba, b],
          [bb, a],
        ] as const)) {
      blk.set(src);
      const kind = base.kinds[src === ba ? a : b]!;
      if (resealed && kind !== 'free') {
        setU64(dv, 8, dst); // the copy claims its new place
        reseal(blk, SALTS[kind]);
      }
      dev.write(blk, dst * 4096);
      touched.push(dst);
    }
    what = `${dup ? 'duplicated' : 'swapped'} blocks ${a} (${base.kinds[a]}) ${dup ? 'onto' : 'and'} ${b} (${base.kinds[b]})`;
  } else if (r < 0.75) {
    // Cycles and wrong pointers: a child or level-1 root pointing at itself, an ancestor, another kind of block.
    load(0);
    const sbv = new DataView(blk.buffer.slice(0));
    const roots = [sbv.getUint32(320, true), sbv.getUint32(328, true)];
    const n = pick(
      rng,
      base.nodes.filter((x) => x.nr > 0 && x.vs === 8),
    );
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
      const off =
        32 +
        8 * n.max +
        n.vs * i +
        pick(
          rng,
          [0, 4].filter((o) => o < n.vs),
        );
      const v = pick(rng, [0xffffffff, 0x7fffffff, 0x01000000, 64 << 24, int(rng, 2 ** 32)]);
      dv.setUint32(off, v >>> 0, true);
      store(n.b, 'node');
      what = `leaf node ${n.b} (value size ${n.vs}) value ${i} @${off} := ${v}`;
    }
  }
  return { dev, what: `${what}${resealed ? ' [checksum recomputed]' : ''}`, resealed, touched, truncatedTo };
}

export type MutantClass = 'live' | 'live-resealed' | 'stale' | 'stale-resealed' | 'truncated' | 'unchanged';
export const CLASSES: readonly MutantClass[] = ['live', 'live-resealed', 'stale', 'stale-resealed', 'truncated', 'unchanged'];

const baseBlock = new Uint8Array(4096);
const mutBlock = new Uint8Array(4096);

/** What the mutant changed, against the base's committed state. */
export function classify(base: Base, m: Mutant): MutantClass {
  if (m.truncatedTo !== undefined) return m.truncatedTo < base.liveEnd ? 'live' : 'truncated';
  let live = false;
  let changed = false;
  for (const b of new Set(m.touched)) {
    base.meta.read(baseBlock, b * 4096);
    m.dev.read(mutBlock, b * 4096);
    if (Buffer.compare(baseBlock, mutBlock) === 0) continue;
    changed = true;
    if (base.live.has(b)) live = true;
  }
  if (!changed) return 'unchanged';
  if (live) return m.resealed ? 'live-resealed' : 'live';
  return m.resealed ? 'stale-resealed' : 'stale';
}

/**
 * The error names its structure, and a block: the metadata block in `mblock`, or (for findings about data
 * blocks, or level-1 mappings summarised per tree) a block number in the message.
 */
const namesStructure = (e: { structure?: string }) => typeof e.structure === 'string' && e.structure.length > 0;
export const namesBlock = (e: { structure?: string; mblock?: number; message: string }) =>
  namesStructure(e) && (typeof e.mblock === 'number' || /\bblock \d+/.test(e.message));

export interface Outcome {
  cls: MutantClass;
  /** The checker reported at least one error. */
  detected: boolean;
  /** Opening the pool read-only, listing it and reading every volume: 'refused' (a ThinpoolError), 'clean', or not tried. */
  pool?: 'refused' | 'clean';
  /** Errors (checker issues and thrown ThinpoolErrors) by code; and those that do not name structure and block. */
  codes: string[];
  unnamed: string[];
  ms: number;
}

/** A failure that ends the run: the checker threw, or the pool threw something that is not a ThinpoolError. */
export class FuzzFailure extends Error {}

/**
 * Check one mutant, and open it as a pool when withPool (or when it is live): read-only, list, read every
 * volume; when that finds nothing wrong, the pool is also used as a writer would: opened read-write (on a copy
 * of the data device), the held metadata snapshot released, two snapshots taken of every volume and one byte
 * written into each (their shared mapping leaves are copied twice, so data and metadata reference counts reach
 * 3 and both ref-count trees are used), one byte written into every block of every volume (allocations and
 * copies reach the space maps), and a commit. A ThinpoolError anywhere is a refusal.
 */
export async function runMutant(base: Base, m: Mutant, withPool: boolean): Promise<Outcome> {
  const cls = classify(base, m);
  const started = performance.now();
  const codes: string[] = [];
  const unnamed: string[] = [];
  let issues: CheckIssue[];
  try {
    issues = checkMetadataDevice(m.dev, { cacheBlocks: 64 }).errors;
  } catch (e) {
    throw new FuzzFailure(`checkMetadataDevice threw ${e instanceof Error ? e.stack : String(e)}`);
  }
  for (const e of issues) {
    codes.push(e.code);
    if (!namesBlock(e)) unnamed.push(`${e.code} ${e.structure}: ${e.message.replace(/\d+/g, 'N')}`);
  }
  let pool: Outcome['pool'];
  if (withPool || cls === 'live') {
    pool = 'clean';
    let phase = 'opening';
    try {
      const p = ThinPool.openStorage({ metadata: m.dev, data: base.data, catalog: base.catalog }, { readOnly: true, cacheBlocks: 64 });
      phase = 'listing / reading';
      for (const v of p.list()) {
        const vol = p.volume(v.id);
        const buf = new Uint8Array(Math.min(vol.sizeBytes, 64 * BS));
        vol.readSync(buf, 0);
      }
      phase = 'opening read-write';
      const w = ThinPool.openStorage({ metadata: m.dev, data: base.data.snapshot(), catalog: base.catalog.clone() }, { cacheBlocks: 64 });
      phase = 'releasing the held metadata snapshot';
      if (w.status().heldMetadataRoot !== null) await w.releaseMetadataSnap();
      phase = 'taking snapshots';
      const vols = w.list();
      const one = new Uint8Array([0x5a]);
      for (const v of vols) for (const k of [1, 2]) w.snapshotSync(v.id, `fuzz-${v.id}-${k}`).writeSync(one, 0);
      phase = 'writing';
      for (const v of vols) {
        const vol = w.volume(v.id);
        for (let off = 0; off < Math.min(vol.sizeBytes, 64 * BS); off += BS) vol.writeSync(one, off);
      }
      phase = 'committing';
      w.commitSync();
    } catch (e) {
      if (!isThinpoolError(e)) throw new FuzzFailure(`${phase} the pool threw ${e instanceof Error ? e.stack : String(e)}`);
      pool = 'refused';
      codes.push(e.code);
      // Strict naming applies to what open and read report; the writer's path may also refuse for other reasons
      // (a corrupt pool time makes a snapshot impossible: EINVAL "pool time exhausted").
      if (!namesBlock(e) && (phase === 'opening' || phase === 'listing / reading'))
        unnamed.push(`${phase}: ${e.code} ${e.structure ?? '(no structure)'}: ${e.message.replace(/\d+/g, 'N')}`);
    }
  }
  return { cls, detected: issues.length > 0, pool, codes, unnamed, ms: performance.now() - started };
}

/** The seeded mutant i of a run (the same for the same seed and index, whatever ran before). */
export function mutantAt(bases: Base[], seed: number, i: number): { base: Base; m: Mutant } {
  const base = bases[i % bases.length]!;
  return { base, m: mutate(base, mulberry32(seed * 1_000_003 + i)) };
}

export async function makeBases(): Promise<Base[]> {
  return [
    await makeBase('pool A (6 volumes and snapshots)', 1, false),
    await makeBase('pool B (held metadata snapshot)', 2, true),
    await makeBase('pool C (6 volumes and snapshots)', 3, false),
  ];
}
