// A crash during format: ThinPool.formatStorage on CrashDevices (and a catalog store whose stage / publish are
// I/O calls of the same clock), cut at every I/O call k of the format, crashed with several seeded rngs (random
// subset of unflushed updates kept, last write torn per sector). After the cut, opening the pool either fails
// cleanly — a ThinpoolError naming the superblock (structure 'superblock', block 0) — or gives a valid empty
// pool: our checker is clean, no volumes, the formatted size and block size, transaction id 0, and it works (a
// volume is created, written, committed, checked). A format that returned (acknowledged) must always open.
// Three starting states of the metadata device: zeros, random bytes, and an older pool's metadata and catalog
// (formatStorage over reused storage; formatSync refuses a directory holding a pool). Over an old pool a third
// outcome is seen and accepted, counted apart: the old pool, intact (the format had not reached the superblock;
// as dm-thin, which formats only a zeroed superblock, would open the old pool). Never a mix of the two.
// THINPOOL_FIGURES_DIR=<dir>: the counts go to <dir>/crash-suites.json as 'format-crash' (recordSuite of
// scripts/figures-crash-suites.mjs), rendered into docs/crash-safety.md by scripts/render-figures.mjs.
import { expect, test } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import { CrashClock, CrashDevice } from '../../src/io/crash-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { checkMetadata } from '../../src/thin/check.js';
import { ThinPool } from '../../src/thin/pool.js';
import { mulberry32 } from '../support/model.js';
import { verifyMetadataDevice } from '../support/pool-check.js';
import { needTool } from '../support/tools.js';
import { BS, TickingCatalog } from './harness.js';
import { recordSuiteFigures } from '../support/suite-figures.js';

const SOAK = process.env.THINPOOL_SOAK === '1';
const SEEDS_PER_CUT = SOAK ? 40 : 8;
const DATA_BLOCKS = 32;
const META_BYTES = 1024 * 1024;
/** Per starting device: the format's I/O calls, the cut points run, and their outcomes. */
const starts: Record<string, { ioCalls: number; cutPoints: number; outcomes: Record<string, number> }> = {};
let externalChecks = 0;
recordSuiteFigures('format-crash', () => ({
  soak: SOAK,
  seedsPerCut: SEEDS_PER_CUT,
  cutPoints: Object.values(starts).reduce((a, x) => a + x.cutPoints, 0),
  externalChecks,
  starts,
}));

type Start = 'zeros' | 'random' | 'old pool';

const OLD_BYTES = (i: number) => new Uint8Array(5000).fill(i + 1);

function startImage(start: Start): { dev: MemoryDevice; catalog: MemoryCatalogStore } {
  const dev = new MemoryDevice(META_BYTES);
  const catalog = new MemoryCatalogStore();
  if (start === 'random') {
    const rng = mulberry32(99);
    const buf = new Uint8Array(64 * 4096);
    for (let i = 0; i < buf.length; i++) buf[i] = Math.floor(rng() * 256);
    dev.write(buf, 0);
  } else if (start === 'old pool') {
    const data = new MemoryDevice(DATA_BLOCKS * BS);
    const old = ThinPool.formatStorage({ metadata: dev, data, catalog }, { size: DATA_BLOCKS * BS, blockSize: BS });
    for (let i = 0; i < 3; i++) old.createThinSync(`old${i}`, { size: 2 * BS }).writeSync(OLD_BYTES(i), 100);
    old.commitSync();
    // The old data device is not kept: the format starts from an empty one (so old data reads as zeros).
    return { dev: dev.snapshot(), catalog: catalog.clone() };
  }
  return { dev, catalog };
}

interface Outcome {
  kind: 'refused' | 'empty pool' | 'old pool';
  what: string;
}

function formatCut(start: Start, k: number | undefined, seed: number, external: boolean): Outcome {
  const where = `format over ${start}, cut at I/O call ${k ?? 'none (format returned)'}, crash seed ${seed}`;
  const clock = new CrashClock();
  const img = startImage(start);
  const meta = new CrashDevice(clock, img.dev);
  const data = new CrashDevice(clock, 0);
  const store = img.catalog;
  const catalog = new TickingCatalog(store, clock);
  if (k !== undefined) clock.armAt(k);
  let acked = false;
  try {
    ThinPool.formatStorage({ metadata: meta, data, catalog }, { size: DATA_BLOCKS * BS, blockSize: BS });
    acked = true;
  } catch (e) {
    if (!isThinpoolError(e)) throw new Error(`${where}: the cut surfaced as ${String(e)}, not a ThinpoolError`, { cause: e });
  }
  if (k !== undefined && acked) throw new Error(`${where}: format returned although I/O call ${k} failed`);
  clock.crash(mulberry32(seed));
  const m2 = meta.afterCrash();
  let pool: ThinPool;
  try {
    pool = ThinPool.openStorage({ metadata: m2, data: data.afterCrash(), catalog: store }, { cacheBlocks: 64 });
  } catch (e) {
    if (acked) throw new Error(`${where}: the format was acknowledged but the pool does not open: ${String(e)}`, { cause: e });
    if (!isThinpoolError(e)) throw new Error(`${where}: opening threw ${String(e)}, not a ThinpoolError`, { cause: e });
    if (e.structure !== 'superblock' || e.mblock !== 0) {
      throw new Error(
        `${where}: opening failed with ${e.code} "${e.message}" (structure ${e.structure}, block ${e.mblock}), not naming the superblock (block 0)`,
      );
    }
    return { kind: 'refused', what: e.code };
  }
  const report = checkMetadata(pool.metadata);
  if (!report.ok) throw new Error(`${where}: the pool opened but our checker finds: ${JSON.stringify(report.errors.slice(0, 5))}`);
  const vols = pool.list();
  if (start === 'old pool' && !acked && vols.length === 3) {
    // The old pool, whole: names from its catalog, sizes, and a valid checker report (its data device was not
    // carried over, so contents are not compared).
    const names = vols.map((v) => v.name).sort();
    if (JSON.stringify(names) !== JSON.stringify(['old0', 'old1', 'old2']) || vols.some((v) => v.sizeBytes !== 2 * BS)) {
      throw new Error(`${where}: the old pool came back mixed: ${JSON.stringify(vols.map((v) => [v.id, v.name, v.sizeBytes]))}`);
    }
    return { kind: 'old pool', what: 'ok' };
  }
  if (vols.length !== 0)
    throw new Error(`${where}: the pool opened with volumes ${JSON.stringify(vols.map((v) => [v.id, v.name]))}, not empty`);
  const st = pool.status();
  expect(st.dataBlocks.total, `${where}: data blocks`).toBe(DATA_BLOCKS);
  expect(st.blockSize, `${where}: block size`).toBe(BS);
  expect(st.transactionId, `${where}: transaction id`).toBe(0);
  expect(st.heldMetadataRoot, `${where}: metadata snapshot`).toBe(null);
  expect([st.mode, st.needsCheck], `${where}: mode, needs_check`).toEqual(['write', false]);
  if (external) {
    verifyMetadataDevice(m2);
    if (needTool('thin_check', 'thin-provisioning-tools')) externalChecks++; // it ran thin_check and thin_dump
  }
  const v = pool.createThinSync('after', { size: 2 * BS });
  v.writeSync(new Uint8Array(3000).fill(7), BS - 1000);
  pool.commitSync();
  const again = checkMetadata(pool.metadata);
  if (!again.ok) throw new Error(`${where}: checker after using the pool: ${JSON.stringify(again.errors.slice(0, 5))}`);
  return { kind: 'empty pool', what: 'ok' };
}

test('a crash during format: the pool is refused naming the superblock, or is a valid empty pool', () => {
  const started = performance.now();
  const lines: string[] = [];
  let total = 0;
  for (const start of ['zeros', 'random', 'old pool'] as const) {
    // Count the format's I/O calls.
    const clock = new CrashClock();
    const img = startImage(start);
    const meta = new CrashDevice(clock, img.dev);
    const data = new CrashDevice(clock, 0);
    ThinPool.formatStorage(
      { metadata: meta, data, catalog: new TickingCatalog(img.catalog, clock) },
      { size: DATA_BLOCKS * BS, blockSize: BS },
    );
    const calls = clock.ops;
    const tally = new Map<string, number>();
    const here = { ioCalls: calls, cutPoints: 0, outcomes: {} };
    starts[start] = here;
    for (let k = 0; k <= calls; k++) {
      for (let s = 0; s < SEEDS_PER_CUT; s++) {
        const o = formatCut(start, k === calls ? undefined : k, 1000 * k + s, s === 0 && k % 4 === 0);
        const key = `${o.kind}${o.kind === 'refused' ? ` (${o.what})` : ''}`;
        tally.set(key, (tally.get(key) ?? 0) + 1);
        total++;
        here.cutPoints++;
      }
    }
    here.outcomes = Object.fromEntries(tally);
    lines.push(
      `  over ${start}: ${calls} I/O calls cut (+ the acknowledged format) x ${SEEDS_PER_CUT} crash seeds: ${[...tally].map(([kk, n]) => `${kk} ${n}`).join(', ')}`,
    );
    expect(tally.get('empty pool') ?? 0, `some cuts over ${start} land on the formatted pool`).toBeGreaterThan(0);
  }
  console.log(`format crash: ${total} cut points, 0 failures, ${((performance.now() - started) / 1000).toFixed(1)}s\n${lines.join('\n')}`);
});
