// Crash points inside receive (full and incremental), rename and rollback (with and without the copy of a partial
// tail block), cut at every I/O call (metadata and data reads, writes,
// flushes, the catalog's stage and publish): after the crash the reopened pool shows exactly the state before
// the operation or exactly the state after it, never a half-received volume, and its metadata passes our
// checker (and thin_check with the strict checker on every 25th cut and the last).
import { describe, expect, test } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import { CrashClock, CrashDevice } from '../../src/io/crash-device.js';
import { checkMetadata } from '../../src/thin/check.js';
import { ThinPool, type PoolStorage } from '../../src/thin/pool.js';
import { receive } from '../../src/stream/receive.js';
import { sendStream } from '../../src/stream/send.js';
import { mulberry32 } from '../support/model.js';
import { verifyMetadataDevice } from '../support/pool-check.js';
import { BS, diffExact, fill, makeTemplate, Model, readPool, TickingCatalog, type Template } from './harness.js';

/** A model of the named volumes a pool shows (uids are the list order). */
function modelOf(vols: Array<{ name: string; bytes: Uint8Array; labels?: Record<string, string> }>): Model {
  const m = new Model();
  vols.forEach((v, i) => {
    m.vols.set(i, { name: v.name, bytes: v.bytes, labels: v.labels ?? {} });
  });
  return m;
}

type Operation = (p: ThinPool) => Promise<unknown>;

/** Run op on the template's pool over CrashDevices, cut at I/O call k (undefined: no cut). */
async function runCut(
  tpl: Template,
  op: Operation,
  k: number | undefined,
  seed: number,
): Promise<{ clock: CrashClock; ops: number; error: unknown; storage: PoolStorage }> {
  const clock = new CrashClock();
  const meta = new CrashDevice(clock, tpl.meta.snapshot());
  const data = new CrashDevice(clock, tpl.data.snapshot());
  const catalog = new TickingCatalog(tpl.catalog.clone(), clock);
  let error: unknown;
  const pool = ThinPool.openStorage({ metadata: meta, data, catalog });
  const opened = clock.ops;
  if (k !== undefined) clock.armAt(opened + k);
  try {
    await op(pool);
  } catch (e) {
    error = e;
  }
  const ops = clock.ops - opened;
  clock.crash(mulberry32(seed));
  return { clock, ops, error, storage: { metadata: meta.afterCrash(), data: data.afterCrash(), catalog: catalog.inner.clone() } };
}

/**
 * Cut op at every I/O call; after each crash the pool must show exactly `before` or `after`. Returns how many
 * cuts landed on each side.
 */
async function everyCut(tpl: Template, op: Operation, before: Model, after: Model, what: string): Promise<{ old: number; new: number }> {
  const dry = await runCut(tpl, op, undefined, 1);
  if (dry.error !== undefined) throw new Error(`${what}: the dry run failed: ${String(dry.error)}`, { cause: dry.error });
  const landed = { old: 0, new: 0 };
  for (let k = 0; k <= dry.ops; k++) {
    const where = `${what}, cut at I/O call ${k} of ${dry.ops}`;
    const r = await runCut(tpl, op, k === dry.ops ? undefined : k, 1000 + k);
    if (k < dry.ops && !isThinpoolError(r.error)) throw new Error(`${where}: the cut surfaced as ${String(r.error)}, not a ThinpoolError`);
    const pool = ThinPool.openStorage(r.storage, { cacheBlocks: 64 });
    const report = checkMetadata(pool.metadata);
    expect(report.errors, `${where}: our checker`).toEqual([]);
    const seen = readPool(pool);
    const dOld = diffExact(seen, before);
    const dNew = dOld === null ? 'old' : diffExact(seen, after);
    if (dOld !== null && dNew !== null) throw new Error(`${where}: the pool shows neither before (${dOld}) nor after (${dNew})`);
    if (dOld === null) landed.old++;
    else landed.new++;
    if (k % 25 === 0 || k === dry.ops) verifyMetadataDevice(r.storage.metadata);
    // The pool is usable again.
    pool.createThinSync('after-crash', { size: BS });
    pool.commitSync();
    expect(checkMetadata(pool.metadata).errors, `${where}: checker after a post-crash commit`).toEqual([]);
  }
  expect(landed.old, `${what}: some cut lands before`).toBeGreaterThan(0);
  expect(landed.new, `${what}: the uncut run lands after`).toBeGreaterThan(0);
  return landed;
}

function bytesOf(p: ThinPool, name: string): Uint8Array {
  const v = p.volume(name);
  const b = new Uint8Array(v.sizeBytes);
  v.readSync(b, 0);
  return b;
}

async function collect(gen: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of gen) parts.push(c);
  return Buffer.concat(parts);
}

describe('crash points inside receive', () => {
  // The sender: base (5 blocks, one hole) and next (two blocks changed, one discarded, grown by a block).
  const sender = ThinPool.memory({ size: 64 * BS, blockSize: BS });
  const b = sender.createThinSync('base', { size: 5 * BS });
  b.writeSync(fill(2 * BS, 1), 0);
  b.writeSync(fill(BS + 100, 2), 3 * BS);
  sender.snapshotSync('base', 'next');
  const n = sender.volume('next');
  n.writeSync(fill(3000, 3), BS + 50);
  n.discardSync(3 * BS, BS);
  sender.resizeSync('next', 6 * BS);
  n.writeSync(fill(BS, 4), 5 * BS);
  const baseBytes = bytesOf(sender, 'base');
  const nextBytes = bytesOf(sender, 'next');

  test('full receive: before or after at every cut', async () => {
    const stream = await collect(sendStream(sender, 'base'));
    const tpl = makeTemplate(32, 1024 * 1024);
    const landed = await everyCut(
      tpl,
      (p) => receive(p, 'got', [stream]),
      modelOf([]),
      modelOf([{ name: 'got', bytes: baseBytes }]),
      'full receive',
    );
    expect(landed.old + landed.new).toBeGreaterThan(10);
  });

  test('incremental receive onto the base: before or after at every cut', async () => {
    const incr = await collect(sendStream(sender, 'next', { from: 'base' }));
    // The template holds the base as the sender has it, committed.
    const tpl = makeTemplate(32, 1024 * 1024, (p) => {
      const v = p.createThinSync('base', { size: 5 * BS });
      v.writeSync(fill(2 * BS, 1), 0);
      v.writeSync(fill(BS + 100, 2), 3 * BS);
    });
    const before = modelOf([{ name: 'base', bytes: baseBytes }]);
    const after = modelOf([
      { name: 'base', bytes: baseBytes },
      { name: 'next', bytes: nextBytes },
    ]);
    await everyCut(tpl, (p) => receive(p, 'next', [incr]), before, after, 'incremental receive');
  });
});

/** The model a template shows, after `op` when given (run on copies of its images). */
async function stateOf(tpl: Template, op?: Operation): Promise<Model> {
  const p = ThinPool.openStorage({ metadata: tpl.meta.snapshot(), data: tpl.data.snapshot(), catalog: tpl.catalog.clone() });
  if (op) await op(p);
  const seen = readPool(p);
  p.closeSync({ commit: false });
  return modelOf([...seen].map(([name, v]) => ({ name, bytes: v.bytes, labels: v.labels })));
}

describe('crash points inside rename and rollback', () => {
  test('rename (a catalog-only commit): before or after at every cut', async () => {
    const tpl = makeTemplate(32, 1024 * 1024, (p) => {
      p.createThinSync('a', { size: 2 * BS, labels: { k: 'v' } }).writeSync(fill(BS + 7, 11), 0);
      p.snapshotSync('a', 'a-snap');
      p.createThinSync('b', { size: BS });
    });
    const op: Operation = async (p) => {
      p.renameSync('a', 'z');
      p.commitSync();
    };
    await everyCut(tpl, op, await stateOf(tpl), await stateOf(tpl, op), 'rename');
  });

  test('rollback: before or after at every cut', async () => {
    const tpl = makeTemplate(32, 1024 * 1024, (p) => {
      const v = p.createThinSync('vm', { size: 4 * BS, labels: { env: 'x' } });
      v.writeSync(fill(4 * BS, 12), 0);
      p.snapshotSync('vm', 'snap');
      v.writeSync(fill(2 * BS, 13), BS + 100);
      v.discardSync(3 * BS, BS);
    });
    const op: Operation = async (p) => {
      p.rollbackSync('vm', 'snap');
      p.commitSync();
    };
    const after = await stateOf(tpl, op);
    const bytes = (m: Model, name: string): Buffer => Buffer.from([...m.vols.values()].find((v) => v.name === name)!.bytes);
    expect(bytes(after, 'vm').equals(bytes(after, 'snap'))).toBe(true);
    await everyCut(tpl, op, await stateOf(tpl), after, 'rollback');
  });

  test('rollback of a volume larger than its snapshot (the tail block copied first): before or after at every cut', async () => {
    const tpl = makeTemplate(32, 1024 * 1024, (p) => {
      const v = p.createThinSync('vm', { size: 4 * BS });
      v.writeSync(fill(4 * BS, 14), 0);
      p.snapshotSync('vm', 'snap');
      p.resizeSync('snap', 2 * BS + 4096);
      p.resizeSync('vm', 5 * BS);
    });
    const op: Operation = async (p) => {
      p.rollbackSync('vm', 'snap');
      p.commitSync();
    };
    await everyCut(tpl, op, await stateOf(tpl), await stateOf(tpl, op), 'rollback with a tail copy');
  });
});
