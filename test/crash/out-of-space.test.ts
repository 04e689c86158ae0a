// Out of space: the data device and the metadata device running full in the middle of writes and snapshots.
// Each case checks: a clear typed error (ENOSPC_DATA / ENOSPC_METADATA) with the pool still writable and
// needs_check clear, nothing committed lost (also after close and reopen), the writes that did succeed are
// there, the metadata passes our checker (and the external tools once per case), and deleting volumes makes
// room again. Low-water mark: thresholds (configureSpace) reported by 'threshold' events and status().lowWater
// when data or metadata use crosses them, and auto-extend growing a pool that would be full.
// Freeing changes when metadata is full (delete, rollback, discard) and the fixed bugs of a metadata device
// running short (FIXED BUGS 2, 7, 8) are in metadata-full.test.ts; the helpers in space-harness.ts.
// THINPOOL_FIGURES_DIR=<dir>: the counts go to <dir>/crash-suites.json as 'out-of-space' (recordSuite of
// scripts/figures-crash-suites.mjs), rendered into docs/crash-safety.md by scripts/render-figures.mjs.
import { expect, test } from 'vitest';
import { fill } from '../support/model.js';
import { verifyMetadataDevice } from '../support/pool-check.js';
import { BS, type Ev, expectBytes, expectHealthy, fullMetadataPool, newPool } from './space-harness.js';
import { codeOf } from '../support/thrown.js';
import { recordSuiteFigures } from '../support/suite-figures.js';

/** The out-of-space situations and the low-water cases checked, by kind: counted when their checks passed. */
const situations: Record<string, number> = {};
const lowWater: Record<string, number> = {};
const checked = (what: string, k = 1) => (situations[what] = (situations[what] ?? 0) + k);
const lowWaterChecked = (what: string) => (lowWater[what] = (lowWater[what] ?? 0) + 1);
const total = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);
const listed = (o: Record<string, number>) =>
  Object.entries(o)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
recordSuiteFigures('out-of-space', () => ({ situations, lowWater }));

test('data full in the middle of writes: ENOSPC_DATA, committed data kept, deleting makes room', () => {
  const { pool, meta, reopen } = newPool(16);
  const a = pool.createThinSync('a', { size: 8 * BS });
  const aBytes = fill(8 * BS, 1);
  a.writeSync(aBytes, 0);
  pool.commitSync();
  const b = pool.createThinSync('b', { size: 16 * BS });
  const bBytes = new Uint8Array(16 * BS);
  // 8 blocks are left: the 9th block write fails.
  for (let blk = 0; blk < 8; blk++) {
    const d = fill(BS, 100 + blk);
    b.writeSync(d, blk * BS);
    bBytes.set(d, blk * BS);
  }
  expect(
    codeOf(() => b.writeSync(fill(100, 9), 8 * BS + 7)),
    'a write to a new block when the data device is full',
  ).toBe('ENOSPC_DATA');
  checked('data full in writes');
  // A write spanning a provisioned and a new block: the first part lands, the second is refused.
  const span = fill(2000, 10);
  expect(codeOf(() => b.writeSync(span, 8 * BS - 1000))).toBe('ENOSPC_DATA');
  bBytes.set(span.subarray(0, 1000), 8 * BS - 1000);
  checked('data full in writes');
  // In-place writes to provisioned blocks still work.
  const inPlace = fill(300, 11);
  b.writeSync(inPlace, 3 * BS + 5);
  bBytes.set(inPlace, 3 * BS + 5);
  expectHealthy(pool, 'after ENOSPC_DATA');
  expectBytes(pool, 'a', aBytes, 'after ENOSPC_DATA');
  expectBytes(pool, 'b', bBytes, 'after ENOSPC_DATA');
  pool.closeSync();
  const p2 = reopen();
  expectBytes(p2, 'a', aBytes, 'after reopen');
  expectBytes(p2, 'b', bBytes, 'after reopen');
  // Deleting a volume makes room again (no explicit commit needed: the allocator commits to reuse freed blocks).
  p2.deleteSync('a');
  const d = fill(BS, 12);
  p2.volume('b').writeSync(d, 8 * BS);
  bBytes.set(d, 8 * BS);
  expect(p2.status().dataBlocks.free).toBe(7);
  expectHealthy(p2, 'after delete + write');
  expectBytes(p2, 'b', bBytes, 'after delete + write');
  p2.closeSync();
  verifyMetadataDevice(meta);
  checked('data full in writes');
});

test('data full while breaking sharing with a snapshot: ENOSPC_DATA, snapshot and origin intact', () => {
  const { pool, meta, reopen } = newPool(16);
  const a = pool.createThinSync('a', { size: 10 * BS });
  const orig = fill(10 * BS, 2);
  a.writeSync(orig, 0);
  pool.commitSync();
  pool.snapshotSync('a', 's');
  pool.commitSync();
  const aBytes = orig.slice();
  // 6 free blocks: 6 copy-on-write breaks succeed, the 7th is refused.
  for (let blk = 0; blk < 6; blk++) {
    const d = fill(500, 200 + blk);
    a.writeSync(d, blk * BS + 10);
    aBytes.set(d, blk * BS + 10);
  }
  expect(
    codeOf(() => a.writeSync(fill(500, 300), 6 * BS + 10)),
    'copy-on-write with no free block',
  ).toBe('ENOSPC_DATA');
  expect(
    codeOf(() => pool.volume('s').writeSync(fill(10, 301), 9 * BS)),
    'a write to the snapshot',
  ).toBe('ENOSPC_DATA');
  // A snapshot needs no data block: it still succeeds when the data device is full.
  pool.snapshotSync('a', 's2');
  expectHealthy(pool, 'after ENOSPC_DATA on copy-on-write');
  expectBytes(pool, 's', orig, 'snapshot after ENOSPC');
  expectBytes(pool, 'a', aBytes, 'origin after ENOSPC');
  expectBytes(pool, 's2', aBytes, 'snapshot taken while full');
  checked('data full in copy-on-write', 3);
  pool.closeSync();
  const p2 = reopen();
  expectBytes(p2, 's', orig, 'snapshot after reopen');
  expectBytes(p2, 'a', aBytes, 'origin after reopen');
  // Deleting the old snapshot frees the 6 blocks it alone holds now; s2 still shares a's blocks.
  p2.deleteSync('s');
  const d = fill(500, 302);
  p2.volume('a').writeSync(d, 6 * BS + 10);
  aBytes.set(d, 6 * BS + 10);
  expectHealthy(p2, 'after deleting the snapshot');
  expectBytes(p2, 'a', aBytes, 'origin after making room');
  p2.closeSync();
  verifyMetadataDevice(meta);
  checked('data full in copy-on-write');
});

test('metadata full: ENOSPC_METADATA for creates, snapshots and writes; pool consistent, nothing lost', () => {
  const { pool, meta, reopen, names, want, err } = fullMetadataPool();
  expect(err, `creating volumes until the metadata device is full (${names.length} made)`).toBe('ENOSPC_METADATA');
  expect(names.length).toBeGreaterThan(10);
  checked('metadata full in create / snapshot / write');
  expect(
    codeOf(() => pool.snapshotSync('v0', 'snap')),
    'a snapshot when metadata is full',
  ).toBe('ENOSPC_METADATA');
  checked('metadata full in create / snapshot / write');
  expect(
    codeOf(() => pool.volume('v9').writeSync(fill(10, 1), 0)),
    'a write to a new block when metadata is full',
  ).toBe('ENOSPC_METADATA');
  checked('metadata full in create / snapshot / write');
  // Reads and in-place writes need no metadata block.
  const inPlace = fill(100, 2);
  pool.volume('v0').writeSync(inPlace, 1000);
  want.get('v0')!.set(inPlace, 1000);
  expectHealthy(pool, 'after ENOSPC_METADATA');
  for (const n of names) expectBytes(pool, n, want.get(n)!, 'after ENOSPC_METADATA');
  pool.closeSync();
  const p2 = reopen();
  for (const n of names) expectBytes(p2, n, want.get(n)!, 'after reopen');
  p2.closeSync();
  verifyMetadataDevice(meta);
  checked('metadata full in create / snapshot / write');
});

// ---- low-water mark: thresholds, events, status().lowWater, auto-extend ----

test('low-water mark, data: each threshold reported once when crossed, in status, again after falling below', () => {
  const { pool, meta, reopen } = newPool(20);
  pool.configureSpace({ thresholds: { data: [25, 50, 75], metadata: [99] } });
  pool.commitSync();
  const ev: Ev[] = [];
  pool.on('threshold', (e) => ev.push(e));
  const a = pool.createThinSync('a', { size: 20 * BS });
  const want = new Uint8Array(20 * BS);
  const levels: number[] = [];
  for (let blk = 0; blk < 20; blk++) {
    const d = fill(100, 400 + blk);
    a.writeSync(d, blk * BS + 50);
    want.set(d, blk * BS + 50);
    levels.push(pool.status().lowWater.data);
  }
  expect(ev, 'one event per threshold, when the allocation crossing it happened').toEqual([
    { resource: 'data', threshold: 25, usedBlocks: 5, totalBlocks: 20 },
    { resource: 'data', threshold: 50, usedBlocks: 10, totalBlocks: 20 },
    { resource: 'data', threshold: 75, usedBlocks: 15, totalBlocks: 20 },
  ]);
  // status().lowWater.data after each block written (block n+1 in use).
  expect(levels).toEqual([0, 0, 0, 0, 25, 25, 25, 25, 25, 50, 50, 50, 50, 50, 75, 75, 75, 75, 75, 75]);
  expect(
    codeOf(() => a.writeSync(fill(10, 1), 0)),
    'in place when full',
  ).toBe('ok');
  want.set(fill(10, 1), 0);
  checked('low-water mark on data');
  lowWaterChecked('data thresholds and status().lowWater');
  // The thresholds are committed with the catalog: they survive a reopen.
  pool.closeSync();
  const p2 = reopen();
  expect(p2.spaceSettings.thresholds.data).toEqual([25, 50, 75]);
  expect(p2.status().lowWater.data, 'level after reopen (20 of 20 blocks in use)').toBe(75);
  expectBytes(p2, 'a', want, 'after reopen');
  // Falling below resets: deleting makes room, and a later rise is reported again.
  const ev2: Ev[] = [];
  p2.on('threshold', (e) => ev2.push(e));
  p2.deleteSync('a');
  p2.commitSync();
  expect(p2.status().lowWater.data, 'level after deleting everything').toBe(0);
  const b = p2.createThinSync('b', { size: 20 * BS });
  for (let blk = 0; blk < 11; blk++) b.writeSync(fill(10, blk), blk * BS);
  expect(
    ev2.map((e) => e.threshold),
    'thresholds reported again after falling below',
  ).toEqual([25, 50]);
  expectHealthy(p2, 'after the low-water rounds');
  p2.closeSync();
  verifyMetadataDevice(meta);
  lowWaterChecked('thresholds again after falling below');
});

test('low-water mark, metadata: thresholds reported while writes fill the metadata device', () => {
  const { pool, meta, reopen } = newPool(512, 160 * 4096);
  pool.configureSpace({ thresholds: { data: [99], metadata: [20, 40] } });
  const ev: Ev[] = [];
  pool.on('threshold', (e) => ev.push(e));
  const want = new Map<string, Uint8Array>();
  let err = 'ok';
  // One volume with a block written each: metadata grows through creates and the mappings of the writes.
  for (let i = 0; i < 400 && err === 'ok'; i++) {
    err = codeOf(() => pool.createThinSync(`v${i}`, { size: BS }));
    if (err === 'ok') {
      const d = fill(64, i);
      err = codeOf(() => pool.volume(`v${i}`).writeSync(d, 0));
      const b = new Uint8Array(BS);
      if (err === 'ok') b.set(d, 0);
      want.set(`v${i}`, b);
      if (i % 10 === 9) pool.commitSync();
    }
  }
  expect(err, 'the metadata device fills up').toBe('ENOSPC_METADATA');
  const meta20 = ev.find((e) => e.resource === 'metadata' && e.threshold === 20);
  const meta40 = ev.find((e) => e.resource === 'metadata' && e.threshold === 40);
  expect(meta20, `metadata 20 % reported (events: ${JSON.stringify(ev)})`).toBeDefined();
  expect(meta40, `metadata 40 % reported (events: ${JSON.stringify(ev)})`).toBeDefined();
  // Metadata thresholds are percentages of what operations may use: the device less the commit reserve and the
  // per-operation headroom (160 - 16 - 64 = 80 blocks here), so they are reached before ENOSPC_METADATA.
  expect(meta20!.totalBlocks).toBe(80);
  expect(meta20!.usedBlocks / meta20!.totalBlocks).toBeGreaterThanOrEqual(0.2);
  expect(meta40!.usedBlocks / meta40!.totalBlocks).toBeGreaterThanOrEqual(0.4);
  expect(
    ev.filter((e) => e.resource === 'data'),
    'no data threshold (1 % of data used)',
  ).toEqual([]);
  expect(pool.status().lowWater.metadata).toBe(40);
  expectHealthy(pool, 'after the metadata thresholds');
  pool.closeSync();
  const p2 = reopen();
  for (const [n, b] of want) expectBytes(p2, n, b, 'after reopen');
  p2.closeSync();
  verifyMetadataDevice(meta);
  checked('low-water mark on metadata');
  lowWaterChecked('metadata thresholds');
});

test('auto-extend: the pool grows at the low-water mark, up to its maximum, then ENOSPC_DATA; nothing lost', () => {
  const { pool, meta, reopen } = newPool(8);
  pool.configureSpace({
    thresholds: { data: [50], metadata: [99] },
    autoExtend: { enabled: true, atPercent: 75, percent: 50, maxBytes: 20 * BS },
  });
  pool.commitSync();
  const grown: Array<{ resource: string; fromBlocks: number; toBlocks: number; auto: boolean }> = [];
  const ev: Ev[] = [];
  pool.on('extended', (e) => grown.push(e));
  pool.on('threshold', (e) => ev.push(e));
  const a = pool.createThinSync('a', { size: 32 * BS });
  const want = new Uint8Array(32 * BS);
  let err = 'ok';
  let blk = 0;
  for (; blk < 32 && err === 'ok'; blk++) {
    const d = fill(300, 500 + blk);
    err = codeOf(() => a.writeSync(d, blk * BS + 7));
    if (err === 'ok') want.set(d, blk * BS + 7);
  }
  expect(err, 'full once grown to the maximum').toBe('ENOSPC_DATA');
  expect(blk - 1, 'blocks written before ENOSPC_DATA').toBe(20);
  expect(grown, 'grown by half (at least a block) at 75 %, capped at 20 blocks').toEqual([
    { resource: 'data', fromBlocks: 8, toBlocks: 12, auto: true },
    { resource: 'data', fromBlocks: 12, toBlocks: 18, auto: true },
    { resource: 'data', fromBlocks: 18, toBlocks: 20, auto: true },
  ]);
  expect(ev.length, 'the 50 % threshold is reported (again after each growth lowered the use)').toBeGreaterThan(0);
  expect(pool.status().dataBlocks).toEqual({ used: 20, total: 20, free: 0 });
  expectHealthy(pool, 'after auto-extend and ENOSPC_DATA');
  pool.closeSync();
  const p2 = reopen();
  expect(p2.status().dataBlocks.total).toBe(20);
  expectBytes(p2, 'a', want, 'after reopen');
  p2.closeSync();
  verifyMetadataDevice(meta);
  checked('auto-extend to its maximum');
  lowWaterChecked('auto-extend');
});

test("whenFull 'wait': a write waits for space freed by other work, or times out with ENOSPC_DATA", async () => {
  const { pool } = newPool(4);
  pool.configureSpace({ whenFull: 'wait', waitTimeoutMs: 300 });
  const a = pool.createThinSync('a', { size: 4 * BS });
  for (let blk = 0; blk < 4; blk++) a.writeSync(fill(10, blk), blk * BS);
  const b = pool.createThinSync('b', { size: BS });
  const t0 = Date.now();
  await expect(b.write(fill(10, 9), 0)).rejects.toMatchObject({ code: 'ENOSPC_DATA' });
  expect(Date.now() - t0, 'waited for the timeout').toBeGreaterThanOrEqual(250);
  const waiting = b.write(fill(10, 9), 0);
  setTimeout(() => pool.deleteSync('a'), 60);
  await waiting;
  const got = new Uint8Array(10);
  b.readSync(got, 0);
  expect(Buffer.compare(got, fill(10, 9))).toBe(0);
  expectHealthy(pool, 'after waiting for space');
  checked('whenFull wait');
  lowWaterChecked('whenFull wait');
});

test('out-of-space summary', () => {
  console.log(
    `out of space: ${total(situations)} out-of-space situations checked (${listed(situations)}), 0 failures; low-water mark: ${total(lowWater)} cases (${listed(lowWater)})`,
  );
});
