// Pool events reach listeners when the operation that raised them ends (src/thin/event-gate.ts), so a listener
// that commits, writes or throws cannot split an operation. Before, events were delivered inside it: a 'threshold'
// listener's commit landed a data block allocated and not yet mapped (a leaked block after a crash: "data
// reference counts differ"), or a block mapped while its copy-on-write bytes were still held in memory (after a
// crash the volume read zeros there); and a listener that threw aborted the transaction and set needs_check.
import { expect, test } from 'vitest';
import { EventEmitter } from 'node:events';
import { CrashClock, CrashDevice } from '../../src/io/crash-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { checkMetadataDevice } from '../../src/thin/check.js';
import { EventGate } from '../../src/thin/event-gate.js';
import { ThinPool } from '../../src/thin/pool.js';
import { fill, sameBytes } from '../support/model.js';

const BS = 64 * 1024;
const G = 4096;

test('the gate: at once outside an operation; at the end of the outermost one inside, in order, nested ones too', () => {
  const events = new EventEmitter<{ e: [string] }>();
  const gate = new EventGate(events);
  const heard: string[] = [];
  events.on('e', (x) => {
    heard.push(x);
    if (x === 'b') gate.operation(() => gate.emit('e', 'from a listener'));
  });
  gate.emit('e', 'now');
  expect(heard).toEqual(['now']);
  gate.operation(() => {
    gate.emit('e', 'a');
    gate.operation(() => gate.emit('e', 'b'));
    expect(heard).toEqual(['now']); // nothing yet: the outer operation runs
    gate.emit('e', 'c');
  });
  expect(heard).toEqual(['now', 'a', 'b', 'c', 'from a listener']);
  // An operation that throws still delivers what it raised, and its error is the one the caller sees.
  expect(() =>
    gate.operation(() => {
      gate.emit('e', 'd');
      throw new Error('op failed');
    }),
  ).toThrow('op failed');
  expect(heard.at(-1)).toBe('d');
});

test('a data threshold listener that commits in a write of many new blocks commits no block allocated and not mapped', () => {
  const pool = ThinPool.memory({ size: 16 * BS, blockSize: BS });
  const v = pool.createThinSync('v', { size: 16 * BS });
  pool.configureSpace({ thresholds: { data: [10, 30, 45], metadata: [100] } });
  pool.commitSync();
  const findings: string[][] = [];
  pool.on('threshold', (e) => {
    if (e.resource !== 'data') return;
    pool.commitSync();
    findings.push(checkMetadataDevice(pool.storage.metadata).errors.map((x) => x.message));
  });
  v.writeSync(fill(3 * BS, 1), 0); // a run of new blocks: crosses 10 %
  v.writeSync(fill(BS, 2), 5 * BS); // one block at a time
  v.writeSync(fill(BS, 3), 7 * BS);
  for (let b = 8; b < 11; b++) v.writeSync(fill(G, b), b * BS + G); // partial blocks
  expect(findings.length).toBeGreaterThanOrEqual(3);
  for (const f of findings) expect(f).toEqual([]);
});

test('a metadata threshold listener that commits after a deferred copy-on-write: a crash right then keeps the write and the block', () => {
  for (let t = 0.5; t <= 50; t += 0.5) {
    const clock = new CrashClock();
    const meta = new CrashDevice(clock, new MemoryDevice(1 << 20));
    const data = new CrashDevice(clock, new MemoryDevice(16 * BS));
    const catalog = new MemoryCatalogStore();
    const pool = ThinPool.formatStorage({ metadata: meta, data, catalog }, { size: 16 * BS, blockSize: BS });
    const v = pool.createThinSync('v', { size: 4 * BS });
    const before = fill(4 * BS, 1);
    v.writeSync(before, 0);
    pool.snapshotSync('v', 's');
    pool.configureSpace({ thresholds: { data: [100], metadata: [t] } });
    pool.commitSync();
    let after: ThinPool | null = null;
    pool.on('threshold', (e) => {
      if (e.resource !== 'metadata' || after !== null) return;
      pool.commitSync();
      clock.crash(() => 0.99); // every write not flushed is lost
      after = ThinPool.openStorage({ metadata: meta.afterCrash(), data: data.afterCrash(), catalog: catalog.clone() });
    });
    const want = before.slice();
    for (let b = 0; b < 4 && after === null; b++) {
      v.writeSync(fill(G, 2), b * BS + G); // whole granule into a shared block: the copy is deferred
      want.set(fill(G, 2), b * BS + G);
    }
    if (after === null) continue; // this threshold is not crossed by these writes: try the next
    const got = new Uint8Array(4 * BS);
    (after as ThinPool).volume('v').readSync(got, 0);
    expect(sameBytes(got, want), `threshold ${t}: v after the listener's commit and a crash`).toBe(true);
    const snap = new Uint8Array(4 * BS);
    (after as ThinPool).volume('s').readSync(snap, 0);
    expect(sameBytes(snap, before), `threshold ${t}: the snapshot`).toBe(true);
    return;
  }
  throw new Error('no metadata threshold was crossed by the copy-on-write writes');
});

test('a listener that throws: the write is done, the pool stays writable without needs_check, the caller gets the error', () => {
  const pool = ThinPool.memory({ size: 16 * BS, blockSize: BS });
  const v = pool.createThinSync('v', { size: 16 * BS });
  pool.configureSpace({ thresholds: { data: [10], metadata: [100] } });
  pool.on('threshold', () => {
    throw new Error('listener failed');
  });
  expect(() => v.writeSync(fill(2 * BS, 7), 0)).toThrow('listener failed');
  expect([pool.mode, pool.status().needsCheck]).toEqual(['write', false]);
  const got = new Uint8Array(2 * BS);
  v.readSync(got, 0);
  expect(sameBytes(got, fill(2 * BS, 7))).toBe(true);
  pool.commitSync();
  expect(checkMetadataDevice(pool.storage.metadata).errors).toEqual([]);
});
