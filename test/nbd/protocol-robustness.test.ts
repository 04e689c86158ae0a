// The protocol byte by byte with a raw client, robustness: abrupt disconnects (mid-header, mid-payload, 16
// requests in flight: nothing partial applied), 32 clients at once, and close() finishing in-flight requests and
// committing. Every test runs on both socket I/O paths. The server and helpers: test/nbd/protocol-fixture.ts.
import { randomBytes } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { NbdServer } from '../../src/nbd/server.js';
import { ThinPool } from '../../src/thin/pool.js';
import { BS, logs, READ, roundTrip, session, WRITE, onBothIoPaths } from './protocol-fixture.js';
import { verifyMetadataDevice } from '../support/pool-check.js';
import { assembleRead, RawClient } from './raw-client.js';
import { MiB } from './support.js';

onBothIoPaths((portable) => {
  describe('robustness', () => {
    test('abrupt disconnects mid-header, mid-payload and with requests in flight; partial writes are not applied', async () => {
      const before = assembleRead(
        await (async () => {
          const c = await session('v');
          const r = await roundTrip(c, READ, 0, 0, 2 * BS);
          c.close();
          return r;
        })(),
        0,
        2 * BS,
      );
      const a = await session('v');
      a.write(RawClient.request(READ, 0, 1n, 0, 512).subarray(0, 13));
      a.close();
      const b = await session('v');
      b.write(RawClient.request(WRITE, 0, 1n, 0, 2 * BS, Buffer.alloc(2 * BS, 0xee)).subarray(0, 28 + BS + 5));
      await new Promise((r) => setTimeout(r, 50));
      b.close();
      const d = await session('v');
      const many = [];
      for (let i = 0; i < 16; i++) many.push(RawClient.request(READ, 0, BigInt(i), 0, 1 * MiB));
      d.write(Buffer.concat(many));
      d.close();
      await new Promise((r) => setTimeout(r, 100));
      const e = await session('v');
      const after = assembleRead(await roundTrip(e, READ, 0, 0, 2 * BS), 0, 2 * BS);
      expect(after.equals(before)).toBe(true);
      e.close();
      expect(logs.filter((l) => l.includes('internal error'))).toEqual([]);
    });

    test('32 clients at once on two volumes, data verified', async () => {
      const clients = await Promise.all(Array.from({ length: 32 }, (_, i) => session(i % 2 ? 'v' : 'w')));
      const datas = clients.map(() => randomBytes(3 * 4096 + 17));
      await Promise.all(
        clients.map(async (c, i) => {
          const off = 1 * MiB + Math.floor(i / 2) * 20000 + 3;
          expect((await roundTrip(c, WRITE, 0, off, datas[i].length, datas[i])).error).toBe(0);
        }),
      );
      await Promise.all(
        clients.map(async (c, i) => {
          const own = 1 * MiB + Math.floor(i / 2) * 20000 + 3;
          const r = await roundTrip(c, READ, 0, own, datas[i].length);
          expect(assembleRead(r, own, datas[i].length).equals(datas[i])).toBe(true);
          c.close();
        }),
      );
    });

    test('close() lets connections finish what they sent, then commits', async () => {
      const p = ThinPool.memory({ size: 64 * MiB });
      p.createThinSync('x', { size: 4 * MiB });
      const s = new NbdServer(p, { portableIO: portable });
      const where = await s.listen({ port: 0 });
      const c = await RawClient.connect({ port: where.port! });
      await c.negotiate('x');
      c.write(Buffer.concat([RawClient.request(WRITE, 0, 1n, 0, 4096, Buffer.alloc(4096, 9)), RawClient.request(READ, 0, 2n, 0, 4096)]));
      const r1 = await c.reply();
      expect(r1!.error).toBe(0);
      const closing = s.close();
      const r2 = await c.reply();
      expect(r2!.cookie).toBe(2n);
      expect(await c.waitClosed()).toBe(true);
      await closing;
      expect(p.metadata.dirty).toBe(false);
      await expect(RawClient.connect({ port: where.port! })).rejects.toThrow();
      verifyMetadataDevice(p.storage.metadata);
      p.closeSync();
    });
  });
});
