// Crash points: seeded random workloads (create, snapshot, write, discard, delete, resize, rename, labels,
// catalog-only commits, held metadata snapshots, setTransactionId, data and metadata growth, auto-extend,
// commits) on a tiny pool over CrashDevices, cut at every I/O call (device reads, writes, block copies (copy-on-write
// through copyWithin, the reflink / copy_file_range path of file devices), flushes, and the
// catalog's stage / publish), crashed with a seeded rng (random subset of unflushed writes kept, last one torn
// per 512-byte sector), reopened and checked against the model. Strict: no tolerance for any known bug.
// A cut in a commit phase is crashed COMMIT_CRASHES times, with different subsets of the unflushed writes: the
// seeded random one, none kept, all kept, and further random ones.
// Counting: the cuts made while the pool opens (the workload's first reads) are reported apart; the target
// (10,000 here, 100,000 in soak) counts only cuts inside operations and commits.
//
// Env: THINPOOL_SOAK=1 for the soak setting (>= 100,000 cut points); THINPOOL_CRASH_SEED=<n> to change the base
// seed; THINPOOL_CRASH_ONLY=<workloadSeed>:<cut> to replay one case (see the failure message);
// THINPOOL_CRASH_SECONDS=<s> stops after s seconds (for measuring rates; the count check is then skipped);
// THINPOOL_FIGURES_DIR=<dir> writes the run's counts to <dir>/crash-points.json (docs/figures, rendered into
// docs/crash-safety.md by scripts/render-figures.mjs).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import type { BlockDevice } from '../../src/io/block-device.js';
import { CrashClock, CrashDevice, SECTOR_BYTES } from '../../src/io/crash-device.js';
import { checkMetadata } from '../../src/thin/check.js';
import type { MemoryDevice } from '../../src/io/memory-device.js';
import type { MemoryCatalogStore, CatalogData } from '../../src/thin/catalog.js';
import { ThinPool, type PoolStorage, type PoolStatus } from '../../src/thin/pool.js';
import { mulberry32 } from '../support/model.js';
import { verifyMetadataDevice } from '../support/pool-check.js';
import {
  applyToPool,
  BS,
  COMMITTING_OPS,
  describeOp,
  diffAcked,
  generate,
  makeTemplate,
  modelBefore,
  pendingWritesOf,
  readPool,
  TickingCatalog,
  trace,
  type Model,
  type PendingWrite,
  type Template,
  type Trace,
  type WOp,
} from './harness.js';

const SOAK = process.env.THINPOOL_SOAK === '1';
const TARGET_CUTS = Number(process.env.THINPOOL_CRASH_CUTS ?? (SOAK ? 100_000 : 10_000));
const BASE_SEED = Number(process.env.THINPOOL_CRASH_SEED ?? 20240601);
const ONLY = process.env.THINPOOL_CRASH_ONLY;
/** External tools (thin_check, dmthin.py, thin_dump) on every Nth cut. */
const EXTERNAL_EVERY = Number(process.env.THINPOOL_CRASH_EXTERNAL_EVERY ?? (SOAK ? 1000 : 250));
/** A post-crash write + commit + check on every Nth cut. */
const REUSE_EVERY = 7;
/** The engine itself re-run and cut (armAt) on every Nth cut, checked against the replayed images. */
const ENGINE_EVERY = Number(process.env.THINPOOL_CRASH_ENGINE_EVERY ?? 8);
/** Time cap in seconds (measuring throughput): stop after the workload in progress when reached. */
const SECONDS = process.env.THINPOOL_CRASH_SECONDS === undefined ? undefined : Number(process.env.THINPOOL_CRASH_SECONDS);
/** Crashes per commit-phase cut, each keeping a different subset of the unflushed writes. */
const COMMIT_CRASHES = 3;
/** Every Nth workload runs on the auto-extend template (8 data blocks growing by half at 60 % use). */
const AUTO_EXTEND_EVERY = 4;

const DATA_BLOCKS = 32;
const META_BYTES = 1024 * 1024;
const AE_BLOCKS = 8;

interface IoEvent {
  op: number;
  dev: string;
  kind: string;
  offset: number;
  /** Bytes of a write; [catalog, fingerprint] of a catalog stage. */
  data?: Uint8Array;
  /** Length of a discard, size of a resize. */
  length?: number;
  staged?: [CatalogData, string];
}

/**
 * A device that logs each call (before it runs) for the dry run: `log` gets the I/O calls (one per clock tick,
 * so log[k] is call k), `quiet` the updates that are not I/O calls (discard, resize), each with the number of
 * calls before it.
 */
function logged(dev: BlockDevice, name: string, log: IoEvent[], quiet: Array<[number, IoEvent]>, cur: () => number): BlockDevice {
  return {
    get sizeBytes() {
      return dev.sizeBytes;
    },
    read: (b, o) => {
      log.push({ op: cur(), dev: name, kind: 'read', offset: o });
      dev.read(b, o);
    },
    write: (b, o) => {
      log.push({ op: cur(), dev: name, kind: 'write', offset: o, data: b.slice() });
      dev.write(b, o);
    },
    flush: () => {
      log.push({ op: cur(), dev: name, kind: 'flush', offset: 0 });
      dev.flush();
    },
    resize: (size) => {
      dev.resize(size);
      quiet.push([log.length, { op: cur(), dev: name, kind: 'resize', offset: 0, length: size }]);
    },
    discard: (o, l) => {
      const ok = dev.discard(o, l);
      if (ok) quiet.push([log.length, { op: cur(), dev: name, kind: 'discard', offset: o, length: l }]);
      return ok;
    },
    // A copy (copy-on-write of a data block) is one I/O call that updates like a write of the source's bytes.
    copyWithin: (src, dst, len) => {
      const data = new Uint8Array(len);
      (dev as CrashDevice).peek(data, src);
      log.push({ op: cur(), dev: name, kind: 'copy', offset: dst, data });
      return (dev as CrashDevice).copyWithin(src, dst, len);
    },
    close: () => dev.close(),
  };
}

interface Run {
  clock: CrashClock;
  meta: CrashDevice;
  data: CrashDevice;
  catalog: TickingCatalog;
  /** Index of the op that threw (-1: the open), or ops.length when everything ran. */
  stoppedAt: number;
  error: unknown;
}

async function run(
  tpl: Template,
  t: Trace,
  armAt: number | undefined,
  log?: IoEvent[],
  quiet: Array<[number, IoEvent]> = [],
  status?: PoolLevel[],
): Promise<Run> {
  const clock = new CrashClock();
  const meta = new CrashDevice(clock, tpl.meta.snapshot());
  const data = new CrashDevice(clock, tpl.data.snapshot());
  let cur = -1;
  const catalog = new TickingCatalog(
    tpl.catalog.clone(),
    clock,
    log ? (what, staged) => log.push({ op: cur, dev: 'catalog', kind: what, offset: 0, staged }) : undefined,
  );
  const storage: PoolStorage = log
    ? { metadata: logged(meta, 'meta', log, quiet, () => cur), data: logged(data, 'data', log, quiet, () => cur), catalog }
    : { metadata: meta, data, catalog };
  if (armAt !== undefined) clock.armAt(armAt);
  let error: unknown;
  try {
    const pool = ThinPool.openStorage(storage);
    status?.push(poolLevel(pool.status()));
    for (cur = 0; cur < t.ops.length; cur++) {
      const p = applyToPool(pool, modelBefore(t, cur), t.ops[cur]!);
      if (p) await p;
      status?.push(poolLevel(pool.status()));
    }
  } catch (e) {
    error = e;
  }
  return { clock, meta, data, catalog, stoppedAt: cur, error };
}

/** The pool-level state a crash must preserve (as of the last acknowledged commit). */
interface PoolLevel {
  transactionId: number;
  held: boolean;
  dataBlocks: number;
  metadataBlocks: number;
}
const poolLevel = (st: PoolStatus): PoolLevel => ({
  transactionId: st.transactionId,
  held: st.heldMetadataRoot !== null,
  dataBlocks: st.dataBlocks.total,
  metadataBlocks: st.metadataBlocks.total,
});

/**
 * Phase of every I/O call of the dry run (index = clock op number). I/O of an op that commits inside (an explicit
 * commit, a pool-level op, or an implicit commit such as an auto-extend inside a write) is classified like a
 * commit's: `commit:<phase>` for commit ops, `<op>/commit:<phase>` for the others.
 */
function phases(t: Trace, log: IoEvent[]): string[] {
  const out: string[] = [];
  const sbWriteAt = new Map<number, number>();
  log.forEach((e, k) => {
    if (e.dev === 'meta' && e.kind === 'write' && e.offset === 0) sbWriteAt.set(e.op, k);
  });
  log.forEach((e, k) => {
    if (e.op < 0) {
      out.push(`open:${e.dev}-${e.kind}`);
      return;
    }
    const o = t.ops[e.op]!;
    const sb = sbWriteAt.get(e.op);
    if (!COMMITTING_OPS.has(o.op) && sb === undefined) {
      out.push(`${o.op}:${e.dev}-${e.kind}`);
      return;
    }
    let p: string;
    if (e.dev === 'catalog') p = e.kind;
    else if (e.dev === 'data') p = `data-${e.kind}`;
    else if (e.kind === 'read') p = 'metadata-read';
    else if (e.kind === 'write') p = e.offset === 0 ? 'superblock-write' : 'metadata-write';
    else p = sb !== undefined && k > sb ? 'superblock-flush' : 'metadata-flush';
    out.push(o.op === 'commit' ? `commit:${p}` : `${o.op}/commit:${p}`);
  });
  return out;
}

interface Workload {
  seed: number;
  t: Trace;
  phase: string[];
  log: IoEvent[];
  quiet: Array<[number, IoEvent]>;
  /** The acknowledged point in effect when op i starts: `ops` ops fully in it, and its pool-level state. */
  ackBefore: Ack[];
  /** Pool-level state after each op (dry run); poolAfter[-1] is the opened template's. */
  poolAfter: PoolLevel[];
  poolInit: PoolLevel;
  /** Ops that committed inside (a superblock write in the dry run). */
  commitsInside: Set<number>;
  autoExtend: boolean;
}

interface Ack {
  ops: number;
  pool: PoolLevel;
}

async function workload(seed: number, tpls: Templates): Promise<Workload> {
  const autoExtend = seed % AUTO_EXTEND_EVERY === 3;
  const tpl = autoExtend ? tpls.autoExtend : tpls.plain;
  const rng = mulberry32(seed);
  const dataBytes = (autoExtend ? AE_BLOCKS : DATA_BLOCKS) * BS;
  const ops: WOp[] = generate(rng, {
    steps: 10 + Math.floor(rng() * 10),
    maxVolumes: 4,
    maxBlocks: 3,
    commitRate: 0.12,
    // No explicit growth on the auto-extend template (the pool grows by itself; a smaller size would be refused).
    extended: {
      dataBytes,
      metaBytes: META_BYTES,
      maxDataBytes: autoExtend ? dataBytes : dataBytes + 8 * BS,
      maxMetaBytes: META_BYTES + 256 * 1024,
    },
  });
  ops.push({ op: 'commit' });
  const t = trace(ops);
  const log: IoEvent[] = [];
  const quiet: Array<[number, IoEvent]> = [];
  const status: PoolLevel[] = [];
  const dry = await run(tpl, t, undefined, log, quiet, status);
  if (dry.error !== undefined) throw new Error(`dry run of workload ${seed} failed: ${String(dry.error)}`, { cause: dry.error });
  expect(dry.clock.ops).toBe(log.length);
  const phase = phases(t, log);
  const commitsInside = new Set(log.filter((e) => e.dev === 'meta' && e.kind === 'write' && e.offset === 0 && e.op >= 0).map((e) => e.op));
  const poolInit = status[0]!;
  const poolAfter = status.slice(1);
  const ackBefore: Ack[] = [];
  let ack: Ack = { ops: 0, pool: poolInit };
  for (let i = 0; i < ops.length; i++) {
    ackBefore.push(ack);
    if (COMMITTING_OPS.has(ops[i]!.op)) ack = { ops: i + 1, pool: poolAfter[i]! };
    else if (commitsInside.has(i)) ack = { ops: i, pool: poolAfter[i]! };
  }
  return { seed, t, phase, log, quiet, ackBefore, poolAfter, poolInit, commitsInside, autoExtend };
}

interface Templates {
  plain: Template;
  autoExtend: Template;
}

interface CutResult {
  phase: string;
  code: string;
  landed: 'old' | 'new';
}

/** A state the pool may show after a cut: volumes (acked + per-sector pending writes) and pool-level state. */
interface Alternative {
  acked: Model;
  pending: PendingWrite[];
  pool: (p: PoolLevel) => boolean;
  what: 'old' | 'new';
}

const samePool = (a: PoolLevel) => (b: PoolLevel) => JSON.stringify(a) === JSON.stringify(b);

/** What the pool may show after a cut inside op i (-1: the open). */
function alternatives(w: Workload, i: number): Alternative[] {
  const t = w.t;
  const ack = i < 0 ? { ops: 0, pool: w.poolInit } : w.ackBefore[i]!;
  const pending: PendingWrite[] = [];
  for (let j = ack.ops; j <= i && j < t.ops.length; j++) pending.push(...pendingWritesOf(modelBefore(t, j), t.ops[j]!));
  const out: Alternative[] = [{ acked: modelBefore(t, ack.ops), pending, pool: samePool(ack.pool), what: 'old' }];
  if (i < 0) return out;
  const o = t.ops[i]!;
  const after = w.poolAfter[i]!;
  if (COMMITTING_OPS.has(o.op)) {
    // reserveMetadataSnap and metadata growth commit twice: the first commit has the old pool-level state.
    const twice = o.op === 'reserve-snap' || o.op === 'grow-meta';
    out.push({
      acked: t.after[i]!,
      pending: [],
      pool: twice ? (p) => samePool(after)(p) || samePool(ack.pool)(p) : samePool(after),
      what: 'new',
    });
  } else if (w.commitsInside.has(i)) {
    // An implicit commit inside a write (auto-extend, or the allocator committing to reuse freed blocks): the
    // state before the op with any part of its writes, the data device grown by one or more steps.
    const before = modelBefore(t, i);
    out.push({
      acked: before,
      pending: pendingWritesOf(before, o),
      what: 'new',
      pool: (p) =>
        p.transactionId === after.transactionId &&
        p.held === after.held &&
        p.metadataBlocks === after.metadataBlocks &&
        p.dataBlocks >= ack.pool.dataBlocks &&
        p.dataBlocks <= after.dataBlocks,
    });
  }
  return out;
}

/** Cut workload w at I/O call k, crash, reopen, check. Throws with a reproducible description on failure. */
/**
 * The device state at every cut, without re-running the engine: the dry run's I/O is deterministic, so the
 * state when call k is refused is the template plus events [0, k). `Replayer` walks k upwards keeping the
 * durable images (flushes applied) and the unflushed writes of each device; `at(k)` builds the CrashDevices of
 * that instant (meta registered before data, as in `run`) and the catalog store.
 */
class Replayer {
  private durable: { meta: MemoryDevice; data: MemoryDevice };
  private pending: { meta: IoEvent[]; data: IoEvent[] } = { meta: [], data: [] };
  private catalog: MemoryCatalogStore;
  private next = 0;
  private nextQuiet = 0;
  constructor(
    tpl: Template,
    private readonly log: IoEvent[],
    private readonly quiet: Array<[number, IoEvent]>,
  ) {
    this.durable = { meta: tpl.meta.snapshot(), data: tpl.data.snapshot() };
    this.catalog = tpl.catalog.clone();
  }
  /**
   * The post-crash images for a cut at call k, crashed with rng exactly as CrashClock.crash does (devices in
   * registration order, meta then data; each unflushed update kept with probability 1/2 in log order; the last
   * kept one, if a write, torn per 512-byte sector with probability 1/2). Checked against a real CrashClock on
   * the engine-run sample.
   */
  at(
    k: number,
    rng: () => number,
    keep: Keep = 'random',
  ): { meta: MemoryDevice; data: MemoryDevice; catalog: MemoryCatalogStore; unflushed: number } {
    if (k < this.next) throw new Error('Replayer only moves forward');
    for (; this.next <= k; this.next++) {
      // Updates that are not I/O calls and came before call `next`.
      for (; this.nextQuiet < this.quiet.length && this.quiet[this.nextQuiet]![0] <= this.next; this.nextQuiet++) {
        const q = this.quiet[this.nextQuiet]![1];
        this.pending[q.dev as 'meta' | 'data'].push(q);
      }
      if (this.next === k) break;
      const e = this.log[this.next]!;
      if (e.dev === 'catalog') {
        if (e.kind === 'catalog-stage') this.catalog.stage(e.staged![0], e.staged![1]);
        else if (e.kind === 'catalog-publish') this.catalog.publish();
        else this.catalog.discardStaged();
      } else if (e.kind === 'write' || e.kind === 'copy') {
        if (e.data!.length > 0) this.pending[e.dev as 'meta' | 'data'].push(e);
      } else if (e.kind === 'flush') {
        const dev = e.dev as 'meta' | 'data';
        for (const w of this.pending[dev]) applyUpdate(this.durable[dev], w);
        this.pending[dev] = [];
      }
    }
    return {
      meta: crashImage(this.durable.meta, this.pending.meta, rng, keep),
      data: crashImage(this.durable.data, this.pending.data, rng, keep),
      catalog: this.catalog.clone(),
      unflushed: this.pending.meta.length + this.pending.data.length,
    };
  }
}

/** Which unflushed updates a crash keeps: a random subset (last one maybe torn), none, or all of them whole. */
type Keep = 'random' | 'none' | 'all';

function crashImage(durable: MemoryDevice, log: IoEvent[], rng: () => number, keep: Keep = 'random'): MemoryDevice {
  const image = durable.snapshot();
  if (keep !== 'random') {
    if (keep === 'all') for (const u of log) applyUpdate(image, u);
    return image;
  }
  const kept = log.filter(() => rng() < 0.5);
  const last = kept.pop();
  for (const u of kept) applyUpdate(image, u);
  if (last) {
    if ((last.kind === 'write' || last.kind === 'copy') && rng() < 0.5) {
      const data = last.data!;
      const end = last.offset + data.length;
      for (let pos = last.offset; pos < end; ) {
        const next = Math.min(end, (Math.floor(pos / SECTOR_BYTES) + 1) * SECTOR_BYTES);
        if (rng() < 0.5) image.write(data.subarray(pos - last.offset, next - last.offset), pos);
        pos = next;
      }
    } else {
      applyUpdate(image, last);
    }
  }
  return image;
}

function applyUpdate(dev: BlockDevice, e: IoEvent): void {
  if (e.kind === 'write' || e.kind === 'copy') dev.write(e.data!, e.offset);
  else if (e.kind === 'discard') dev.discard(e.offset, e.length!);
  else if (e.kind === 'resize') dev.resize(e.length!);
  else throw new Error(`not an update: ${e.kind}`);
}

const cmpA = new Uint8Array(64 * 1024);
const cmpB = new Uint8Array(64 * 1024);
function sameBytes(a: BlockDevice, b: BlockDevice): boolean {
  if (a.sizeBytes !== b.sizeBytes) return false;
  for (let off = 0; off < a.sizeBytes; off += cmpA.length) {
    const n = Math.min(cmpA.length, a.sizeBytes - off);
    a.read(cmpA.subarray(0, n), off);
    b.read(cmpB.subarray(0, n), off);
    if (Buffer.compare(cmpA.subarray(0, n), cmpB.subarray(0, n)) !== 0) return false;
  }
  return true;
}

/**
 * Cut workload w at I/O call k, crash, reopen, check. With `engine`, the cut is also made for real (the engine
 * re-runs with clock.armAt(k)): it must surface a ThinpoolError and leave the same images as the replay.
 * Throws with a reproducible description on failure.
 */
async function cut(
  tpl: Template,
  w: Workload,
  rep: Replayer,
  k: number,
  opts: { external: boolean; reuse: boolean; engine: boolean; variant?: number },
): Promise<CutResult & { unflushed: number }> {
  const phase = w.phase[k]!;
  const stoppedAt = w.log[k]!.op;
  // Variant 0: the seeded random subset (the one a real CrashClock makes); 1: nothing unflushed survives;
  // 2: every unflushed update survives whole; 3 and up: other random subsets.
  const variant = opts.variant ?? 0;
  const keep: Keep = variant === 1 ? 'none' : variant === 2 ? 'all' : 'random';
  const where =
    `workload seed ${w.seed}, cut at I/O call ${k} (${phase}) inside op #${stoppedAt}` +
    ` ${stoppedAt >= 0 ? describeOp(w.t.ops[stoppedAt]!) : '(open)'}, crash variant ${variant} (${keep} of the unflushed writes kept);` +
    ` replay: THINPOOL_CRASH_ONLY=${w.seed}:${k}${variant ? `:${variant}` : ''}` +
    `\nops: ${w.t.ops.map(describeOp).join('\n     ')}`;
  const crashRng = () => mulberry32(w.seed * 7919 + k + (variant > 2 ? variant * 1_000_003 : 0));
  const r = rep.at(k, crashRng(), keep);
  const storage: PoolStorage = { metadata: r.meta, data: r.data, catalog: r.catalog };
  let code = 'EIO';
  if (opts.engine && variant === 0) {
    const real = await run(tpl, w.t, k);
    if (!isThinpoolError(real.error)) throw new Error(`${where}: the cut surfaced as ${String(real.error)}, not a ThinpoolError`);
    if (real.stoppedAt !== stoppedAt)
      throw new Error(`${where}: the engine stopped in op ${real.stoppedAt}, the dry run says ${stoppedAt}`);
    code = real.error.code;
    real.clock.crash(crashRng());
    // createdAt is wall-clock time: the only field allowed to differ.
    const norm = (x: unknown) => JSON.stringify(x, (key, v: unknown) => (key === 'createdAt' ? undefined : v));
    const differs = [
      sameBytes(real.meta.afterCrash(), storage.metadata) ? '' : 'metadata',
      sameBytes(real.data.afterCrash(), storage.data) ? '' : 'data',
      norm(real.catalog.inner.readStaged()) === norm(r.catalog.readStaged()) ? '' : 'staged catalog',
      norm(real.catalog.inner.readPublished()) === norm(r.catalog.readPublished()) ? '' : 'published catalog',
    ].filter((x) => x);
    if (differs.length > 0) {
      throw new Error(`${where}: the engine's own cut left other images than the replay (${differs.join(', ')})`);
    }
  }
  let pool: ThinPool;
  try {
    pool = ThinPool.openStorage(storage, { cacheBlocks: 64 });
  } catch (e) {
    throw new Error(`${where}: reopening after the crash failed: ${String(e)}`, { cause: e });
  }
  const report = checkMetadata(pool.metadata);
  if (!report.ok) throw new Error(`${where}: our checker after the crash: ${JSON.stringify(report.errors.slice(0, 5))}`);
  let seen;
  try {
    seen = readPool(pool);
  } catch (e) {
    throw new Error(`${where}: reading the pool after the crash failed: ${String(e)}`, { cause: e });
  }
  const seenPool = poolLevel(pool.status());
  const diffs: string[] = [];
  let landed: 'old' | 'new' | undefined;
  for (const alt of alternatives(w, stoppedAt)) {
    const d = alt.pool(seenPool) ? diffAcked(seen, alt.acked, alt.pending) : `pool-level state ${JSON.stringify(seenPool)}`;
    if (d === null) {
      landed = alt.what;
      break;
    }
    diffs.push(`${alt.what}: ${d}`);
  }
  if (landed === undefined) {
    throw new Error(
      `${where}: after the crash the pool shows none of the allowed states (${diffs.join('; ')});` +
        ` pool-level after each op: ${JSON.stringify(w.poolAfter)}`,
    );
  }
  if (opts.external) {
    try {
      verifyMetadataDevice(storage.metadata);
    } catch (e) {
      throw new Error(`${where}: external tools: ${String(e)}`, { cause: e });
    }
  }
  if (opts.reuse && pool.mode === 'write') {
    // The pool is usable again: a new volume, a write, a commit, a clean check.
    const v = pool.createThinSync('after-crash', { size: BS });
    v.writeSync(new Uint8Array(1000).fill(7), 100);
    pool.commitSync();
    const again = checkMetadata(pool.metadata);
    if (!again.ok) throw new Error(`${where}: checker after a post-crash commit: ${JSON.stringify(again.errors.slice(0, 5))}`);
  }
  return { phase, code, landed, unflushed: r.unflushed };
}

test(
  `crash points: ${TARGET_CUTS} cuts across every phase of a commit`,
  async () => {
    const started = performance.now();
    const tpls: Templates = {
      plain: makeTemplate(DATA_BLOCKS, META_BYTES),
      autoExtend: makeTemplate(AE_BLOCKS, META_BYTES, (p) => {
        p.configureSpace({ autoExtend: { enabled: true, atPercent: 60, percent: 50, maxBytes: 512 * BS } });
      }),
    };
    const tplOf = (w: Workload) => (w.autoExtend ? tpls.autoExtend : tpls.plain);
    if (ONLY) {
      const [s, k, variant] = ONLY.split(':').map(Number);
      const w = await workload(s!, tpls);
      console.log(`replaying workload ${s} cut ${k} (${w.phase[k!]}) crash variant ${variant ?? 0}`);
      await cut(tplOf(w), w, new Replayer(tplOf(w), w.log, w.quiet), k!, {
        external: true,
        reuse: true,
        engine: true,
        variant: variant ?? 0,
      });
      return;
    }
    /** Cuts inside operations and commits (the target counts these). */
    let cuts = 0;
    /** Cuts while the pool opens (reported apart). */
    let openCuts = 0;
    /** Commit-phase cuts, and the crashes made of them (COMMIT_CRASHES each). */
    let commitCuts = 0;
    let commitCrashes = 0;
    /** Commit-phase cuts with unflushed writes, where keeping none and keeping all are different crashes. */
    let commitCutsWithUnflushed = 0;
    let workloads = 0;
    let external = 0;
    let landedNew = 0;
    let landedOld = 0;
    let engineCuts = 0;
    let aeWorkloads = 0;
    let aeGrowths = 0;
    const byPhase = new Map<string, number>();
    const byCode = new Map<string, number>();
    const byOp = new Map<string, number>();
    for (let n = 0; cuts < TARGET_CUTS; n++) {
      if (SECONDS !== undefined && performance.now() - started > SECONDS * 1000) break;
      const w = await workload(BASE_SEED + n, tpls);
      workloads++;
      for (const o of w.t.ops) byOp.set(o.op, (byOp.get(o.op) ?? 0) + 1);
      if (w.autoExtend) {
        aeWorkloads++;
        aeGrowths += [...w.commitsInside].filter((i) => !COMMITTING_OPS.has(w.t.ops[i]!.op)).length;
      }
      const tpl = tplOf(w);
      const rep = new Replayer(tpl, w.log, w.quiet);
      for (let k = 0; k < w.phase.length; k++) {
        const all = cuts + openCuts;
        const ext = all % EXTERNAL_EVERY === 0;
        const engine = all % ENGINE_EVERY === 0;
        const res = await cut(tpl, w, rep, k, { external: ext, reuse: all % REUSE_EVERY === 0, engine });
        if (res.phase.startsWith('open:')) openCuts++;
        else cuts++;
        if (engine) engineCuts++;
        if (ext) external++;
        byPhase.set(res.phase, (byPhase.get(res.phase) ?? 0) + 1);
        byCode.set(res.code, (byCode.get(res.code) ?? 0) + 1);
        if (res.phase.includes('commit:')) {
          if (res.landed === 'new') landedNew++;
          else landedOld++;
          commitCuts++;
          commitCrashes++;
          if (res.unflushed > 0) commitCutsWithUnflushed++;
          for (let variant = 1; variant < COMMIT_CRASHES; variant++) {
            const more = await cut(tpl, w, rep, k, { external: false, reuse: false, engine: false, variant });
            commitCrashes++;
            if (more.landed === 'new') landedNew++;
            else landedOld++;
          }
        }
      }
    }
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    const commitPhases = [...byPhase].filter(([p]) => p.startsWith('commit:')).sort();
    const innerCommits = new Map<string, number>();
    for (const [p, c] of byPhase)
      if (p.includes('/commit:')) innerCommits.set(p.split('/')[0]!, (innerCommits.get(p.split('/')[0]!) ?? 0) + c);
    const otherPhases = [...byPhase].filter(([p]) => !p.includes('commit:')).sort((a, b) => b[1] - a[1]);
    const rate = (cuts / Number(secs)).toFixed(0);
    console.log(
      `crash points: ${cuts} cut points inside operations and commits (plus ${openCuts} while opening) over ${workloads} workloads,` +
        ` 0 failures, ${secs}s (${rate} cut points/s); ${commitCuts} commit-phase cuts crashed ${COMMIT_CRASHES} ways each` +
        ` (${commitCrashes} crashes; ${commitCutsWithUnflushed} of those cuts had unflushed writes)` +
        ` (engine re-run and cut with armAt on ${engineCuts}, the others replayed from the dry run's I/O log;` +
        ` external tools on ${external}; crashes inside a commit landed on the new state ${landedNew}, old ${landedOld})` +
        `\n  commit phases: ${commitPhases.map(([p, c]) => `${p.slice(7)} ${c}`).join(', ')}` +
        `\n  commits inside other ops: ${[...innerCommits]
          .sort()
          .map(([p, c]) => `${p} ${c}`)
          .join(', ')}` +
        `\n  other phases: ${otherPhases.map(([p, c]) => `${p} ${c}`).join(', ')}` +
        `\n  ops in the workloads: ${[...byOp]
          .sort((a, b) => b[1] - a[1])
          .map(([p, c]) => `${p} ${c}`)
          .join(', ')}` +
        `\n  auto-extend: ${aeWorkloads} workloads on an ${AE_BLOCKS}-block pool growing by 50 % at 60 % use, ${aeGrowths} ops that grew the pool inside a write` +
        `\n  errors surfaced by the cut op: ${[...byCode].map(([c, n]) => `${c} ${n}`).join(', ')}`,
    );
    for (const p of [
      'data-flush',
      'metadata-write',
      'metadata-flush',
      'catalog-stage',
      'superblock-write',
      'superblock-flush',
      'catalog-publish',
    ]) {
      expect(byPhase.get(`commit:${p}`) ?? 0, `cuts in commit phase ${p}`).toBeGreaterThan(0);
    }
    for (const p of ['reserve-snap', 'release-snap', 'txid', 'grow', 'grow-meta', 'write']) {
      expect(innerCommits.get(p) ?? 0, `cuts inside the commit of ${p}`).toBeGreaterThan(0);
    }
    if (SECONDS === undefined) expect(cuts).toBeGreaterThanOrEqual(TARGET_CUTS);
    expect(commitCrashes).toBe(commitCuts * COMMIT_CRASHES);
    expect(commitCutsWithUnflushed, 'commit-phase cuts where the subsets of unflushed writes differ').toBeGreaterThan(commitCuts / 2);
    const figuresDir = process.env.THINPOOL_FIGURES_DIR;
    if (figuresDir !== undefined) {
      mkdirSync(figuresDir, { recursive: true });
      const sorted = (m: Map<string, number>) => Object.fromEntries([...m].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)));
      writeFileSync(
        join(figuresDir, 'crash-points.json'),
        `${JSON.stringify(
          {
            suite: 'crash points',
            soak: SOAK,
            seed: BASE_SEED,
            target: TARGET_CUTS,
            workloads,
            autoExtendWorkloads: aeWorkloads,
            cutsInOperations: cuts,
            cutsAtOpen: openCuts,
            commitCuts,
            commitCrashesPerCut: COMMIT_CRASHES,
            commitCrashes,
            commitCutsWithUnflushed,
            landedNew,
            landedOld,
            engineReruns: engineCuts,
            externalChecks: external,
            failures: 0,
            commitPhases: Object.fromEntries(commitPhases.map(([p, c]) => [p.slice(7), c])),
            commitsInsideOps: Object.fromEntries([...innerCommits].sort()),
            otherPhases: sorted(new Map(otherPhases)),
            ops: sorted(byOp),
            errorCodes: sorted(byCode),
          },
          null,
          2,
        )}\n`,
      );
    }
  },
  SOAK ? 3_600_000 : 900_000,
);
