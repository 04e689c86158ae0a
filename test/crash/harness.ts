// Shared pieces of the crash and I/O-error suites: a seeded workload generator over a model keyed by a stable
// volume id (names change with renames), a template pool to start every run from, and the checks that compare
// a reopened pool with the model.
import { expect } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import type { CrashClock } from '../../src/io/crash-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore, type CatalogData, type CatalogStore } from '../../src/thin/catalog.js';
import { ThinPool, type PoolStorage } from '../../src/thin/pool.js';
import { fill as fillRaw, keepOpen, type Rng } from '../support/model.js';

const fillCache = new Map<string, Uint8Array>();
/** support/model.ts's fill, memoised (callers must not modify the result). */
export function fill(len: number, seed: number): Uint8Array {
  const key = `${len}:${seed}`;
  let b = fillCache.get(key);
  if (!b) {
    if (fillCache.size > 20000) fillCache.clear();
    b = fillRaw(len, seed);
    fillCache.set(key, b);
  }
  return b;
}

export const BS = 64 * 1024;
export const SECTOR = 512;

export interface VolState {
  name: string;
  bytes: Uint8Array;
  labels: Record<string, string>;
}

/** Model of the pool: stable uid -> volume. */
export class Model {
  vols = new Map<number, VolState>();
  /** Pool-level state the generator tracks (the crash suite compares the dry run's status instead). */
  held = false;
  txid = 0;
  dataBytes = 0;
  metaBytes = 0;
  clone(): Model {
    const m = new Model();
    m.held = this.held;
    m.txid = this.txid;
    m.dataBytes = this.dataBytes;
    m.metaBytes = this.metaBytes;
    for (const [k, v] of this.vols) m.vols.set(k, { name: v.name, bytes: v.bytes.slice(), labels: { ...v.labels } });
    return m;
  }
  uidOf(name: string): number | undefined {
    for (const [uid, v] of this.vols) if (v.name === name) return uid;
    return undefined;
  }
}

export type WOp =
  | { op: 'create'; uid: number; name: string; size: number }
  | { op: 'snapshot'; uid: number; origin: number; name: string }
  | { op: 'write'; uid: number; offset: number; length: number; seed: number }
  | { op: 'discard'; uid: number; offset: number; length: number }
  | { op: 'delete'; uid: number }
  | { op: 'resize'; uid: number; size: number }
  | { op: 'rename'; uid: number; name: string }
  | { op: 'label'; uid: number; key: string; value: string }
  | { op: 'commit' }
  // Pool-level operations (crash-point workloads with `extended`): each commits inside the call.
  | { op: 'reserve-snap' }
  | { op: 'release-snap' }
  | { op: 'txid'; from: number; to: number }
  /** Grow the data device to `size` bytes (extendSync({ size })). */
  | { op: 'grow'; size: number }
  /** Grow the metadata device to `size` bytes (extendSync({ metadataSize })). */
  | { op: 'grow-meta'; size: number };

/** Ops that commit inside the call (the pool acknowledges everything before them once they return). */
export const COMMITTING_OPS: ReadonlySet<WOp['op']> = new Set(['commit', 'reserve-snap', 'release-snap', 'txid', 'grow', 'grow-meta']);

export function describeOp(o: WOp): string {
  return JSON.stringify(o);
}

export interface GenOptions {
  steps: number;
  maxVolumes: number;
  /** Largest virtual size in blocks. */
  maxBlocks: number;
  commitRate: number;
  /**
   * Also generate held metadata snapshots, setTransactionId, data and metadata growth, and catalog-only
   * commits (commit; rename or labels; commit). Needs the template's device sizes.
   */
  extended?: { dataBytes: number; metaBytes: number; maxDataBytes: number; maxMetaBytes: number };
}

/** A seeded workload: valid operations for the model as it evolves; names are local to the workload. */
export function generate(rng: Rng, opts: GenOptions): WOp[] {
  const m = new Model();
  const ops: WOp[] = [];
  let uids = 0;
  let names = 0;
  const ext = opts.extended;
  if (ext) {
    m.dataBytes = ext.dataBytes;
    m.metaBytes = ext.metaBytes;
  }
  const push = (o: WOp) => {
    applyToModel(m, o);
    ops.push(o);
  };
  const sizeOf = (blocks: number) => Math.max(SECTOR, Math.floor(rng() * blocks * (BS / SECTOR)) * SECTOR);
  for (let i = 0; i < opts.steps; i++) {
    const live = [...m.vols.keys()];
    const pick = () => live[Math.floor(rng() * live.length)]!;
    if (ext && live.length > 0 && rng() < 0.14) {
      const s = rng();
      if (s < 0.3 && m.held) push({ op: 'release-snap' });
      else if (s < 0.3)
        push({ op: 'reserve-snap' }); // commits the catalog with the metadata (FIXED BUG 5)
      else if (s < 0.45) push({ op: 'txid', from: m.txid, to: m.txid + 1 + Math.floor(rng() * 3) });
      else if (s < 0.6 && m.dataBytes + BS <= ext.maxDataBytes) push({ op: 'grow', size: m.dataBytes + BS * (1 + Math.floor(rng() * 2)) });
      else if (s < 0.7 && m.metaBytes + 16 * 4096 <= ext.maxMetaBytes)
        push({ op: 'grow-meta', size: m.metaBytes + 4096 * (16 + Math.floor(rng() * 16)) });
      else {
        // A catalog-only commit: nothing but names or labels changed since the last commit.
        push({ op: 'commit' });
        const uid = pick();
        if (rng() < 0.5) push({ op: 'rename', uid, name: `v${names++}` });
        else push({ op: 'label', uid, key: `k${Math.floor(rng() * 3)}`, value: `x${Math.floor(rng() * 100)}` });
        push({ op: 'commit' });
      }
      continue;
    }
    const r = rng();
    let o: WOp;
    if (live.length === 0 || (r < 0.1 && live.length < opts.maxVolumes)) {
      o = { op: 'create', uid: uids++, name: `v${names++}`, size: sizeOf(opts.maxBlocks) };
    } else if (r < 0.2 && live.length < opts.maxVolumes) {
      o = { op: 'snapshot', uid: uids++, origin: pick(), name: `v${names++}` };
    } else if (r < 0.24 && live.length > 1) {
      o = { op: 'delete', uid: pick() };
    } else if (r < 0.29) {
      const uid = pick();
      const size = sizeOf(opts.maxBlocks);
      o = { op: 'resize', uid, size };
    } else if (r < 0.31) {
      o = { op: 'rename', uid: pick(), name: `v${names++}` };
    } else if (r < 0.33) {
      o = { op: 'label', uid: pick(), key: `k${Math.floor(rng() * 3)}`, value: `x${Math.floor(rng() * 100)}` };
    } else if (r < 0.4) {
      const uid = pick();
      const size = m.vols.get(uid)!.bytes.length;
      const offset = Math.floor(rng() * size);
      o = { op: 'discard', uid, offset, length: Math.floor(rng() * (size - offset)) };
    } else if (r < 0.4 + opts.commitRate) {
      o = { op: 'commit' };
    } else {
      const uid = pick();
      const size = m.vols.get(uid)!.bytes.length;
      if (rng() < 0.35) {
        // Whole 4 KiB granules: their copy-on-write is deferred to the commit (pending-copies.ts).
        const offset = Math.floor((rng() * size) / 4096) * 4096;
        const length = Math.max(1, Math.min(size - offset, 4096 * (1 + Math.floor(rng() * 3))));
        o = { op: 'write', uid, offset, length, seed: Math.floor(rng() * 1e9) };
      } else {
        const offset = Math.floor(rng() * size);
        const big = rng() < 0.2;
        const length = Math.max(1, Math.min(size - offset, 1 + Math.floor(rng() * (big ? BS + 4096 : 3000))));
        o = { op: 'write', uid, offset, length, seed: Math.floor(rng() * 1e9) };
      }
    }
    push(o);
  }
  return ops;
}

export function applyToModel(m: Model, o: WOp): void {
  switch (o.op) {
    case 'create':
      m.vols.set(o.uid, { name: o.name, bytes: new Uint8Array(o.size), labels: {} });
      break;
    case 'snapshot':
      m.vols.set(o.uid, { name: o.name, bytes: m.vols.get(o.origin)!.bytes.slice(), labels: {} });
      break;
    case 'write':
      m.vols.get(o.uid)!.bytes.set(fill(o.length, o.seed), o.offset);
      break;
    case 'discard':
      m.vols.get(o.uid)!.bytes.fill(0, o.offset, o.offset + o.length);
      break;
    case 'delete':
      m.vols.delete(o.uid);
      break;
    case 'resize': {
      const v = m.vols.get(o.uid)!;
      const n = new Uint8Array(o.size);
      n.set(v.bytes.subarray(0, Math.min(v.bytes.length, o.size)));
      v.bytes = n;
      break;
    }
    case 'rename':
      m.vols.get(o.uid)!.name = o.name;
      break;
    case 'label':
      m.vols.get(o.uid)!.labels[o.key] = o.value;
      break;
    case 'commit':
      break;
    case 'reserve-snap':
      m.held = true;
      break;
    case 'release-snap':
      m.held = false;
      break;
    case 'txid':
      m.txid = o.to;
      break;
    case 'grow':
      m.dataBytes = o.size;
      break;
    case 'grow-meta':
      m.metaBytes = o.size;
      break;
  }
}

/**
 * Apply o to the pool; `m` is the model before o (used to resolve uids to names). The pool-level ops are async
 * in the API (their bodies run synchronously): their promise is returned, and a failure is its rejection.
 */
export function applyToPool(p: ThinPool, m: Model, o: WOp): void | Promise<void> {
  const nameOf = (uid: number) => m.vols.get(uid)!.name;
  switch (o.op) {
    case 'create':
      p.createThinSync(o.name, { size: o.size });
      break;
    case 'snapshot':
      p.snapshotSync(nameOf(o.origin), o.name);
      break;
    case 'write':
      p.volume(nameOf(o.uid)).writeSync(fill(o.length, o.seed), o.offset);
      break;
    case 'discard':
      p.volume(nameOf(o.uid)).discardSync(o.offset, o.length);
      break;
    case 'delete':
      p.deleteSync(nameOf(o.uid));
      break;
    case 'resize':
      p.resizeSync(nameOf(o.uid), o.size);
      break;
    case 'rename':
      p.updateSync(nameOf(o.uid), { name: o.name });
      break;
    case 'label':
      p.updateSync(nameOf(o.uid), { labels: { ...m.vols.get(o.uid)!.labels, [o.key]: o.value } });
      break;
    case 'commit':
      p.commitSync();
      break;
    case 'reserve-snap':
      return p.reserveMetadataSnap().then(() => undefined);
    case 'release-snap':
      return p.releaseMetadataSnap();
    case 'txid':
      return p.setTransactionId(o.from, o.to);
    case 'grow':
      p.extendSync({ size: o.size });
      break;
    case 'grow-meta':
      p.extendSync({ metadataSize: o.size });
      break;
  }
}

/** A byte-range write of a volume that may or may not have reached the disk (in-place data writes). */
export interface PendingWrite {
  uid: number;
  offset: number;
  data: Uint8Array;
}

/** The in-place candidates an op may leave on disk: written bytes, zeroed edges and tails. */
export function pendingWritesOf(m: Model, o: WOp): PendingWrite[] {
  switch (o.op) {
    case 'write':
      return [{ uid: o.uid, offset: o.offset, data: fill(o.length, o.seed) }];
    case 'discard':
      return [{ uid: o.uid, offset: o.offset, data: new Uint8Array(o.length) }];
    case 'resize': {
      const old = m.vols.get(o.uid)!.bytes.length;
      return o.size < old ? [{ uid: o.uid, offset: o.size, data: new Uint8Array(Math.min(old - o.size, BS)) }] : [];
    }
    default:
      return [];
  }
}

/** Precomputed states of a workload: model after each op, and which ops commit. */
export interface Trace {
  ops: WOp[];
  /** after[i] = model after ops[0..i]; before op 0 is `initial`. */
  after: Model[];
  initial: Model;
}

export function trace(ops: WOp[], initial = new Model()): Trace {
  const after: Model[] = [];
  let m = initial.clone();
  for (const o of ops) {
    m = m.clone();
    applyToModel(m, o);
    after.push(m);
  }
  return { ops, after, initial };
}

export function modelBefore(t: Trace, i: number): Model {
  return i <= 0 ? t.initial : t.after[i - 1]!;
}

/**
 * What a pool may show after the workload stopped inside op `i` (-1: while opening) with `lastCommit` the index
 * of the last op whose commit was acknowledged (-1: the initial state):
 * - `acked`: the state of the last acknowledged commit, where every sector may also carry in-place writes
 *   issued since (writes not yet flushed, or flushed by a commit that did not complete);
 * - `exact`: further states the pool may show exactly (the commit that was in progress).
 */
export interface Expectation {
  acked: Model;
  pending: PendingWrite[];
  exact: Model[];
}

export function expectationAt(t: Trace, i: number, lastCommit: number, inCommit: boolean): Expectation {
  const acked = modelBefore(t, lastCommit + 1);
  const pending: PendingWrite[] = [];
  for (let j = lastCommit + 1; j <= i && j < t.ops.length; j++) pending.push(...pendingWritesOf(modelBefore(t, j), t.ops[j]!));
  const exact = inCommit ? [modelBefore(t, i + 1)] : [];
  return { acked, pending, exact };
}

/** Reads every named volume of the pool: name -> { bytes, labels }. */
export function readPool(p: ThinPool): Map<string, { bytes: Uint8Array; labels: Record<string, string> }> {
  const out = new Map<string, { bytes: Uint8Array; labels: Record<string, string> }>();
  for (const info of p.list()) {
    if (info.name === undefined) throw new Error(`volume #${info.id} has no name in the catalog`);
    const v = p.volume(info.name);
    const bytes = new Uint8Array(v.sizeBytes);
    v.readSync(bytes, 0);
    out.set(info.name, { bytes, labels: info.labels });
  }
  return out;
}

type Seen = ReturnType<typeof readPool>;

function sameNames(seen: Seen, m: Model): string | null {
  const a = [...seen.keys()].sort();
  const b = [...m.vols.values()].map((v) => v.name).sort();
  return JSON.stringify(a) === JSON.stringify(b) ? null : `volumes ${JSON.stringify(a)} != expected ${JSON.stringify(b)}`;
}

/** null when the pool shows exactly m. */
export function diffExact(seen: Seen, m: Model): string | null {
  const names = sameNames(seen, m);
  if (names) return names;
  for (const v of m.vols.values()) {
    const got = seen.get(v.name)!;
    if (got.bytes.length !== v.bytes.length) return `size of ${v.name}: ${got.bytes.length} != ${v.bytes.length}`;
    if (JSON.stringify(got.labels) !== JSON.stringify(v.labels))
      return `labels of ${v.name}: ${JSON.stringify(got.labels)} != ${JSON.stringify(v.labels)}`;
    if (Buffer.compare(got.bytes, v.bytes) !== 0) {
      const k = got.bytes.findIndex((b, j) => b !== v.bytes[j]);
      return `${v.name} byte ${k}: ${got.bytes[k]} != ${v.bytes[k]}`;
    }
  }
  return null;
}

/**
 * null when the pool shows `acked` where each 512-byte sector is the acked sector with some subsequence (in
 * order) of the pending writes to it applied — exactly what a crash may leave of unflushed writes.
 */
export function diffAcked(seen: Seen, acked: Model, pending: PendingWrite[]): string | null {
  const names = sameNames(seen, acked);
  if (names) return names;
  for (const [uid, v] of acked.vols) {
    const got = seen.get(v.name)!;
    if (got.bytes.length !== v.bytes.length) return `size of ${v.name}: ${got.bytes.length} != ${v.bytes.length}`;
    if (JSON.stringify(got.labels) !== JSON.stringify(v.labels))
      return `labels of ${v.name}: ${JSON.stringify(got.labels)} != ${JSON.stringify(v.labels)}`;
    if (Buffer.compare(got.bytes, v.bytes) === 0) continue;
    const mine = pending.filter((w) => w.uid === uid);
    for (let s = 0; s < v.bytes.length; s += SECTOR) {
      const end = Math.min(s + SECTOR, v.bytes.length);
      const g = got.bytes.subarray(s, end);
      const old = v.bytes.subarray(s, end);
      if (Buffer.compare(g, old) === 0) continue;
      const ws = mine.filter((w) => w.offset < end && w.offset + w.data.length > s);
      if (!sectorReachable(g, old, s, ws)) {
        const k = g.findIndex((b, j) => b !== old[j]);
        return `${v.name} sector at ${s}: byte ${s + k} is ${g[k]}, acked ${old[k]}, and no subset of the ${ws.length} pending writes to it gives this sector`;
      }
    }
  }
  return null;
}

function sectorReachable(g: Uint8Array, old: Uint8Array, s: number, ws: PendingWrite[]): boolean {
  if (ws.length > 12) {
    // Too many to enumerate: per byte, old or a byte some write put there.
    return g.every(
      (b, j) => b === old[j] || ws.some((w) => s + j >= w.offset && s + j < w.offset + w.data.length && w.data[s + j - w.offset] === b),
    );
  }
  const buf = new Uint8Array(old.length);
  for (let mask = 1; mask < 1 << ws.length; mask++) {
    buf.set(old);
    for (let k = 0; k < ws.length; k++) {
      if (!(mask & (1 << k))) continue;
      const w = ws[k]!;
      const from = Math.max(s, w.offset);
      const to = Math.min(s + old.length, w.offset + w.data.length);
      buf.set(w.data.subarray(from - w.offset, to - w.offset), from - s);
    }
    if (Buffer.compare(buf, g) === 0) return true;
  }
  return false;
}

/** null when the pool shows one of the allowed states. */
export function diffExpectation(seen: Seen, e: Expectation): string | null {
  for (const m of e.exact) if (diffExact(seen, m) === null) return null;
  return diffAcked(seen, e.acked, e.pending);
}

/** A catalog store whose stage/publish/discard count as I/O calls of the clock (so cuts land on them too). */
export class TickingCatalog implements CatalogStore {
  constructor(
    readonly inner: MemoryCatalogStore,
    readonly clock: CrashClock,
    readonly onTick?: (what: string, staged?: [CatalogData, string]) => void,
  ) {}
  readPublished(): CatalogData | null {
    return this.inner.readPublished();
  }
  readStaged() {
    return this.inner.readStaged();
  }
  stage(catalog: CatalogData, fingerprint: string): void {
    this.onTick?.('catalog-stage', [JSON.parse(JSON.stringify(catalog)) as CatalogData, fingerprint]);
    this.clock._tick();
    this.inner.stage(catalog, fingerprint);
  }
  publish(): void {
    this.onTick?.('catalog-publish');
    this.clock._tick();
    this.inner.publish();
  }
  discardStaged(): void {
    this.onTick?.('catalog-discard');
    this.clock._tick();
    this.inner.discardStaged();
  }
}

export interface Template {
  meta: MemoryDevice;
  data: MemoryDevice;
  catalog: MemoryCatalogStore;
}

/** A freshly formatted pool's durable images (formatting is not part of the cut range). */
export function makeTemplate(dataBlocks: number, metaBytes: number, setup?: (p: ThinPool) => void): Template {
  // setup runs before the first commit's close, so its changes (e.g. configureSpace) are committed by close.
  const meta = new MemoryDevice(metaBytes);
  const data = new MemoryDevice(dataBlocks * BS);
  const catalog = new MemoryCatalogStore();
  const storage: PoolStorage = { metadata: keepOpen(meta), data: keepOpen(data), catalog };
  const p = ThinPool.formatStorage(storage, { size: dataBlocks * BS, blockSize: BS });
  setup?.(p);
  p.closeSync();
  return { meta, data, catalog };
}

export function expectTyped(e: unknown, codes: string[], what: string): void {
  if (!isThinpoolError(e)) throw new Error(`${what}: expected a ThinpoolError, got ${String(e)}`, { cause: e });
  expect(codes, `${what}: ${e.message}`).toContain(e.code);
}
