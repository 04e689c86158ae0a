// Crash points, the cut side (used by crash-points.test.ts): a seeded workload's dry run on a tiny pool over
// CrashDevices (its I/O log, the commit phase of every I/O call, the pool-level state after each op), the states a
// crash inside op i may leave, and one cut: crash at I/O call k (replayed from the log, or the engine re-run and cut
// for real), reopen, and check against the model, our checker and (on a sample) the external tools.
import { expect } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import { CrashClock, CrashDevice } from '../../src/io/crash-device.js';
import { checkMetadata } from '../../src/thin/check.js';
import { ThinPool, type PoolStorage, type PoolStatus } from '../../src/thin/pool.js';
import { mulberry32 } from '../support/model.js';
import { verifyMetadataDevice } from '../support/pool-check.js';
import { type IoEvent, type Keep, logged, type Replayer, sameBytes } from './crash-replay.js';
import {
  applyToPool,
  BS,
  COMMITTING_OPS,
  describeOp,
  diffAcked,
  generate,
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

/** Every Nth workload runs on the auto-extend template (8 data blocks growing by half at 60 % use). */
const AUTO_EXTEND_EVERY = 4;

export const DATA_BLOCKS = 32;
export const META_BYTES = 1024 * 1024;
export const AE_BLOCKS = 8;

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

export interface Workload {
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

export async function workload(seed: number, tpls: Templates): Promise<Workload> {
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

export interface Templates {
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

/**
 * Cut workload w at I/O call k, crash, reopen, check. With `engine`, the cut is also made for real (the engine
 * re-runs with clock.armAt(k)): it must surface a ThinpoolError and leave the same images as the replay.
 * Throws with a reproducible description on failure.
 */
export async function cut(
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
