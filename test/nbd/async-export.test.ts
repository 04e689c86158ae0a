// An asynchronous export (a pool whose data device takes requests in flight, as a RADOS pool's does), through
// the NBD server with a raw client: a READ that arrives alone runs synchronously (no hand-off: queue depth 1);
// pipelined READs and READs behind a WRITE in flight run asynchronously; every reply carries the right bytes,
// and a failed asynchronous request does not leave the server thinking something is still in flight.
import { afterEach, expect, test } from 'vitest';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { NbdServer } from '../../src/nbd/server.js';
import { spinGuard } from '../../src/nbd/spin-guard.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { ThinPool } from '../../src/thin/pool.js';
import { fill, keepOpen } from '../support/model.js';
import { assembleRead, RawClient } from './raw-client.js';

const READ = 0;
const WRITE = 1;
const BS = 64 * 1024;
const EIO = 5;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A pool on a memory device that answers asynchronous requests after a few milliseconds, counting each kind;
 * with `writeBack` it says so as a RADOS device with write-back does (`writeBackBytes` > 0).
 */
function asyncPool(writeBack: boolean) {
  const dev = new MemoryDevice(16 * BS);
  const calls = {
    syncReads: 0,
    syncWrites: 0,
    asyncReads: 0,
    asyncWrites: 0,
    failNextAsyncRead: false,
    /** Called at the first turn of the event loop after an asynchronous read started. */
    probe: null as (() => void) | null,
  };
  const data = {
    ...keepOpen(dev),
    writeBackBytes: writeBack ? 1 << 20 : 0,
    get sizeBytes() {
      return dev.sizeBytes;
    },
    write: (b: Uint8Array, o: number) => {
      calls.syncWrites++;
      dev.write(b, o);
    },
    read: (b: Uint8Array, o: number) => {
      calls.syncReads++;
      dev.read(b, o);
    },
    readAsync: async (b: Uint8Array, o: number) => {
      calls.asyncReads++;
      await new Promise((r) => setImmediate(r));
      calls.probe?.();
      await sleep(5);
      if (calls.failNextAsyncRead) {
        calls.failNextAsyncRead = false;
        throw new Error('injected read failure');
      }
      dev.read(b, o);
    },
    writeAsync: async (b: Uint8Array, o: number) => {
      calls.asyncWrites++;
      const copy = b.slice();
      await sleep(20);
      dev.write(copy, o);
    },
  };
  const pool = ThinPool.formatStorage(
    { metadata: keepOpen(new MemoryDevice(1 << 20)), data, catalog: new MemoryCatalogStore() },
    { size: 16 * BS, blockSize: BS },
  );
  expect(pool.asyncData).toBe(true);
  const v = pool.createThinSync('v', { size: 4 * BS });
  v.writeSync(fill(4 * BS, 3), 0);
  pool.commitSync();
  return { pool, calls };
}

let cleanup: (() => Promise<void>) | null = null;
afterEach(async () => {
  await cleanup?.();
  cleanup = null;
});

/** A raw client on the pool's volume; structured replies (self-describing: replies may come in any order). */
async function session(writeBack = false, io: { portableIO?: boolean; busyPollMicros?: number } = {}) {
  const { pool, calls } = asyncPool(writeBack);
  const logs: string[] = [];
  const server = new NbdServer(pool, { log: (m) => logs.push(m), ...io });
  const port = (await server.listen({ host: '127.0.0.1', port: 0 })).port!;
  const c = await RawClient.connect({ port });
  await c.negotiate('v', { structured: true });
  cleanup = async () => {
    c.close();
    await server.close();
    pool.closeSync();
  };
  return { c, calls, logs, server };
}

test('a READ alone runs synchronously; pipelined READs run asynchronously; all replies carry the right bytes', async () => {
  const { c, calls } = await session();
  const want = fill(4 * BS, 3);
  c.send(READ, 0, 1n, 100, 4096);
  const r1 = (await c.reply())!;
  expect([r1.cookie, r1.error]).toEqual([1n, 0]);
  expect(assembleRead(r1, 100, 4096).equals(Buffer.from(want.subarray(100, 4196)))).toBe(true);
  expect(calls.syncReads, 'the lone READ went to the device synchronously').toBeGreaterThan(0);
  expect(calls.asyncReads).toBe(0);

  const before = calls.syncReads;
  const reqs = [0, 1, 2, 3].map((i) => RawClient.request(READ, 0, BigInt(10 + i), i * BS + 7, 4096));
  c.write(Buffer.concat(reqs));
  const seen = new Map<bigint, Buffer>();
  for (let i = 0; i < 4; i++) {
    const r = (await c.reply())!;
    expect(r.error).toBe(0);
    seen.set(r.cookie, assembleRead(r, Number(r.cookie - 10n) * BS + 7, 4096));
  }
  for (let i = 0; i < 4; i++)
    expect(seen.get(BigInt(10 + i))!.equals(Buffer.from(want.subarray(i * BS + 7, i * BS + 7 + 4096)))).toBe(true);
  expect(calls.asyncReads, 'four pipelined READs were in flight together').toBe(4);
  expect(calls.syncReads).toBe(before);
});

test('with write-back a lone WRITE runs asynchronously and a READ behind it too; after a failed asynchronous READ a lone READ is synchronous again', async () => {
  const { c, calls, logs } = await session(true);
  c.send(WRITE, 0, 1n, BS, 4096, fill(4096, 9));
  await sleep(2); // the WRITE is in flight (its device write takes 20 ms)
  c.send(READ, 0, 2n, 3 * BS, 4096);
  const replies = [(await c.reply())!, (await c.reply())!];
  expect(replies.map((r) => [r.cookie, r.error]).sort()).toEqual([
    [1n, 0],
    [2n, 0],
  ]);
  expect(calls.asyncWrites).toBe(1);
  expect(calls.asyncReads, 'the READ arrived with a WRITE in flight').toBe(1);

  calls.failNextAsyncRead = true;
  c.write(Buffer.concat([RawClient.request(READ, 0, 3n, 0, 4096), RawClient.request(READ, 0, 4n, BS, 4096)]));
  const errs = [(await c.reply())!, (await c.reply())!].map((r) => [r.cookie, r.error]).sort();
  expect(errs.some(([, e]) => e === EIO)).toBe(true);
  expect(logs.join('\n')).toContain('injected read failure');

  const sync = calls.syncReads;
  const asyncBefore = calls.asyncReads;
  c.send(READ, 0, 5n, BS, 4096);
  const r = (await c.reply())!;
  expect(r.error).toBe(0);
  const want = fill(4096, 9);
  expect(assembleRead(r, BS, 4096).equals(Buffer.from(want))).toBe(true);
  expect(calls.syncReads, 'nothing is counted in flight after the failure').toBeGreaterThan(sync);
  expect(calls.asyncReads).toBe(asyncBefore);
});

test('without write-back a lone WRITE runs synchronously; pipelined WRITEs run asynchronously; the bytes land', async () => {
  const { c, calls } = await session(false);
  const before = calls.syncWrites;
  c.send(WRITE, 0, 1n, 2 * BS + 10, 4096, fill(4096, 5));
  const r1 = (await c.reply())!;
  expect([r1.cookie, r1.error]).toEqual([1n, 0]);
  expect(calls.syncWrites, 'the lone WRITE went to the device synchronously').toBeGreaterThan(before);
  expect(calls.asyncWrites).toBe(0);
  c.write(
    Buffer.concat([
      RawClient.request(WRITE, 0, 2n, 10, 4096, fill(4096, 6)),
      RawClient.request(WRITE, 0, 3n, BS + 10, 4096, fill(4096, 7)),
    ]),
  );
  const rs = [(await c.reply())!, (await c.reply())!].map((r) => [r.cookie, r.error]).sort();
  expect(rs).toEqual([
    [2n, 0],
    [3n, 0],
  ]);
  expect(calls.asyncWrites, 'two pipelined WRITEs were in flight together').toBe(2);
  for (const [off, seed] of [
    [2 * BS + 10, 5],
    [10, 6],
    [BS + 10, 7],
  ]) {
    c.send(READ, 0, 9n, off, 4096);
    const r = (await c.reply())!;
    expect(assembleRead(r, off, 4096).equals(Buffer.from(fill(4096, seed))), `bytes at ${off}`).toBe(true);
  }
});

test('no busy-poll spin while asynchronous requests are in flight: their completions come through the event loop', async () => {
  // Portable I/O: the window is spent keeping the event loop hot, which the server reports (hotConnections).
  const was = spinGuard.enabled;
  spinGuard.enabled = false; // the guard would turn spinning off on a machine with no idle CPU: not what this checks
  try {
    const { c, calls, server } = await session(false, { portableIO: true, busyPollMicros: 1000 });
    const seen: number[] = [];
    calls.probe = () => seen.push(server.hotConnections);
    for (let round = 0; round < 5; round++) {
      c.write(Buffer.concat([0, 1, 2, 3].map((i) => RawClient.request(READ, 0, BigInt(100 + round * 4 + i), i * BS, 4096))));
      for (let i = 0; i < 4; i++) expect((await c.reply())!.error).toBe(0);
    }
    expect(calls.asyncReads).toBe(20);
    expect(seen, 'the event loop was kept spinning with reads in flight').toEqual(new Array(20).fill(0));
    // With nothing in flight (lone READs run synchronously) the window still opens after answering.
    let hot = 0;
    for (let i = 0; i < 50; i++) {
      c.send(READ, 0, BigInt(500 + i), 0, 4096);
      expect((await c.reply())!.error).toBe(0);
      if (server.hotConnections > 0) hot++;
    }
    expect(hot).toBeGreaterThan(0);
  } finally {
    spinGuard.enabled = was;
    spinGuard.reset();
  }
});
