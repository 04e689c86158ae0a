// The protocol byte by byte with a raw client, transmission: every command and its errors, holes in reads, block
// status with and without REQ_ONE, read-only exports, DISC, pipelining, large writes dribbled in pieces (and
// discarded ones), and a client that stops reading its replies. Every test runs on both socket I/O paths. The
// server and helpers: test/nbd/protocol-fixture.ts.
import { randomBytes } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import {
  BS,
  CACHE,
  connect,
  DF,
  DISC,
  EINVAL,
  ENOSPC,
  ENOTSUP,
  EPERM,
  FAST_ZERO,
  FLUSH,
  FUA,
  NO_HOLE,
  pool,
  READ,
  REQ_ONE,
  roundTrip,
  SIZE,
  STATUS,
  session,
  TRIM,
  WRITE,
  ZERO,
  onBothIoPaths,
} from './protocol-fixture.js';
import { assembleRead, RawClient } from './raw-client.js';
import { MiB } from './support.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

onBothIoPaths(() => {
  describe('transmission', () => {
    test('reads: unaligned, holes as OFFSET_HOLE, DF gives one chunk, zero length, errors as chunks', async () => {
      const c = await session('v');
      const data = randomBytes(3 * BS);
      // Map block 1 only (plus a few bytes of block 3).
      expect((await roundTrip(c, WRITE, 0, BS, BS, data.subarray(0, BS))).error).toBe(0);
      expect((await roundTrip(c, WRITE, 0, 3 * BS + 100, 50, data.subarray(0, 50))).error).toBe(0);
      const r = await roundTrip(c, READ, 0, 0, 4 * BS);
      expect(r.chunks.map((k) => k.type)).toEqual([2, 1, 2, 1]);
      expect(r.chunks.map((k) => k.flags)).toEqual([0, 0, 0, 1]);
      const got = assembleRead(r, 0, 4 * BS);
      const want = Buffer.alloc(4 * BS);
      data.copy(want, BS, 0, BS);
      data.copy(want, 3 * BS + 100, 0, 50);
      expect(got.equals(want)).toBe(true);
      const d = await roundTrip(c, READ, DF, 0, 4 * BS);
      expect(d.chunks.length).toBe(1);
      expect(assembleRead(d, 0, 4 * BS).equals(want)).toBe(true);
      const u = await roundTrip(c, READ, FUA, BS + 1, 3);
      expect(assembleRead(u, BS + 1, 3).equals(data.subarray(1, 4))).toBe(true);
      expect((await roundTrip(c, READ, 0, 0, 0)).error).toBe(0);
      expect((await roundTrip(c, READ, 0, SIZE - 512, 1024)).error).toBe(EINVAL);
      expect((await roundTrip(c, READ, 0, SIZE + 512, 512)).error).toBe(EINVAL);
      const flagged = await roundTrip(c, READ, 0x80, 0, 512);
      expect(flagged.error).toBe(EINVAL);
      expect(flagged.chunks[0].type).toBe(0x8001);
      expect((await roundTrip(c, READ, 0, 0, 32 * MiB + 1)).error).toBe(EINVAL);
      c.close();
    });

    test('writes: past the end (stream stays in sync), zero length, FUA commits, maximum size', async () => {
      const c = await session('w');
      const junk = randomBytes(8192);
      expect((await roundTrip(c, WRITE, 0, SIZE - 4096, 8192, junk)).error).toBe(ENOSPC);
      expect((await roundTrip(c, READ, 0, SIZE - 4096, 4096)).error).toBe(0); // still in sync
      expect((await roundTrip(c, WRITE, 0, 0, 0, Buffer.alloc(0))).error).toBe(0);
      expect((await roundTrip(c, WRITE, 0x40, 0, 4, Buffer.alloc(4))).error).toBe(EINVAL);
      expect((await roundTrip(c, WRITE, FUA, 12345, 4, Buffer.from('abcd'))).error).toBe(0);
      expect(pool.metadata.dirty).toBe(false);
      // 32 MiB is the advertised maximum; 16 MiB volume, so use 8 MiB + 8 MiB in one request each way.
      const big = randomBytes(8 * MiB);
      expect((await roundTrip(c, WRITE, 0, 4 * MiB, big.length, big)).error).toBe(0);
      const back = await roundTrip(c, READ, 0, 4 * MiB, big.length);
      expect(assembleRead(back, 4 * MiB, big.length).equals(big)).toBe(true);
      // Above the maximum payload: payload discarded, EINVAL, stream in sync.
      expect((await roundTrip(c, WRITE, 0, 0, 32 * MiB + 4096, Buffer.alloc(32 * MiB + 4096))).error).toBe(EINVAL);
      expect((await roundTrip(c, FLUSH, 0, 0, 0)).error).toBe(0);
      // Far above: disconnect without reading 4 GiB.
      c.send(WRITE, 0, 1n, 0, 0xffffffff);
      expect(await c.waitClosed()).toBe(true);
    });

    test('trim, write zeroes, cache, flush, unknown command', async () => {
      const c = await session('w');
      const ones = Buffer.alloc(4 * BS, 1);
      expect((await roundTrip(c, WRITE, 0, 0, ones.length, ones)).error).toBe(0);
      const mapped = () => pool.list().find((v) => v.name === 'w')!.mappedBytes;
      const before = mapped();
      expect((await roundTrip(c, TRIM, 0, 100, 2 * BS)).error).toBe(0); // only block 1 is whole
      expect(mapped()).toBe(before - BS);
      expect((await roundTrip(c, TRIM, 0, SIZE - 512, 1024)).error).toBe(EINVAL);
      expect((await roundTrip(c, ZERO, 0, 2 * BS + 10, BS)).error).toBe(0);
      const r = assembleRead(await roundTrip(c, READ, 0, 2 * BS, 2 * BS), 2 * BS, 2 * BS);
      expect(r.subarray(0, 10).every((b) => b === 1)).toBe(true);
      expect(r.subarray(10, BS + 10).every((b) => b === 0)).toBe(true);
      expect(r.subarray(BS + 10).every((b) => b === 1)).toBe(true);
      expect((await roundTrip(c, ZERO, 0, SIZE - 512, 1024)).error).toBe(ENOSPC);
      // NO_HOLE keeps the range provisioned.
      const m0 = mapped();
      expect((await roundTrip(c, ZERO, NO_HOLE, 8 * BS, 2 * BS)).error).toBe(0);
      expect(mapped()).toBe(m0 + 2 * BS);
      expect((await roundTrip(c, ZERO, NO_HOLE | FAST_ZERO, 8 * BS, BS)).error).toBe(ENOTSUP);
      expect((await roundTrip(c, ZERO, FAST_ZERO, 8 * BS, 2 * BS)).error).toBe(0); // whole blocks: unmapping
      expect(mapped()).toBe(m0);
      expect((await roundTrip(c, ZERO, FAST_ZERO, 100, 10)).error).toBe(ENOTSUP); // partial mapped block
      expect((await roundTrip(c, CACHE, 0, 0, 4096)).error).toBe(0);
      expect((await roundTrip(c, FLUSH, 0, 0, 0)).error).toBe(0);
      expect((await roundTrip(c, FLUSH, 0x40, 0, 0)).error).toBe(EINVAL);
      expect((await roundTrip(c, 99, 0, 0, 0)).error).toBe(EINVAL);
      expect((await roundTrip(c, READ, 0, 0, 16)).error).toBe(0);
      c.close();
    });

    test('block status: extents, REQ_ONE, errors, no context', async () => {
      pool.createThinSync('bs', { size: SIZE });
      const c = await session('bs');
      const blk = Buffer.alloc(BS, 7);
      for (const b of [0, 1, 5]) await roundTrip(c, WRITE, 0, b * BS, BS, blk);
      const ext = (r: { chunks: { type: number; payload: Buffer }[] }) => {
        expect(r.chunks.length).toBe(1);
        expect(r.chunks[0].type).toBe(5);
        const p = r.chunks[0].payload;
        expect(p.readUInt32BE(0)).toBe(1);
        const out: number[][] = [];
        for (let i = 4; i < p.length; i += 8) out.push([p.readUInt32BE(i), p.readUInt32BE(i + 4)]);
        return out;
      };
      expect(ext(await roundTrip(c, STATUS, 0, 0, SIZE))).toEqual([
        [2 * BS, 0],
        [3 * BS, 3],
        [BS, 0],
        [SIZE - 6 * BS, 3],
      ]);
      expect(ext(await roundTrip(c, STATUS, REQ_ONE, 100, 1000))).toEqual([[1000, 0]]);
      expect(ext(await roundTrip(c, STATUS, REQ_ONE, 2 * BS + 1, SIZE - 2 * BS - 1))).toEqual([[3 * BS - 1, 3]]);
      expect((await roundTrip(c, STATUS, 0, SIZE - 512, 1024)).error).toBe(EINVAL);
      expect((await roundTrip(c, STATUS, 0x40, 0, 512)).error).toBe(EINVAL);
      c.close();
      const n = await session('bs', { meta: false });
      expect((await roundTrip(n, STATUS, 0, 0, 512)).error).toBe(EINVAL);
      n.close();
      // Context chosen for another export does not apply.
      const o = await connect();
      await o.greeting();
      o.sendOption(8);
      await o.optionReplies();
      o.sendOption(10, RawClient.metaData('v', ['base:allocation']));
      await o.optionReplies();
      o.sendOption(7, RawClient.goData('bs'));
      await o.optionReplies();
      expect((await roundTrip(o, STATUS, 0, 0, 512)).error).toBe(EINVAL);
      o.close();
      // Without structured replies: simple replies, READ data inline, BLOCK_STATUS refused.
      const s = await session('bs', { structured: false });
      expect(s.flags & 0x80).toBe(0);
      const r = await roundTrip(s, READ, 0, BS - 10, 20);
      expect(r.simple).toBe(true);
      expect(r.data!.equals(Buffer.concat([Buffer.alloc(10, 7), Buffer.alloc(10, 7)]))).toBe(true);
      expect((await roundTrip(s, STATUS, 0, 0, 512)).error).toBe(EINVAL);
      expect((await roundTrip(s, READ, 0, SIZE, 512)).error).toBe(EINVAL);
      expect((await roundTrip(s, READ, 0, 0, 8)).data!.length).toBe(8); // in sync after a failed READ
      s.close();
    });

    test('read-only export refuses writes with EPERM and advertises READ_ONLY', async () => {
      const c = await session('ro');
      expect(c.flags & 0x2).toBe(2);
      expect(c.flags & 0x20).toBe(0);
      expect((await roundTrip(c, WRITE, 0, 0, 4, Buffer.alloc(4, 1))).error).toBe(EPERM);
      expect((await roundTrip(c, TRIM, 0, 0, BS)).error).toBe(EPERM);
      expect((await roundTrip(c, ZERO, 0, 0, BS)).error).toBe(EPERM);
      expect((await roundTrip(c, FLUSH, 0, 0, 0)).error).toBe(0);
      c.close();
    });

    test('DISC: earlier requests are answered, then the server closes', async () => {
      const c = await session('v');
      c.write(
        Buffer.concat([
          RawClient.request(READ, 0, 7n, 0, 512),
          RawClient.request(DISC, 0, 8n, 0, 0),
          RawClient.request(READ, 0, 9n, 0, 512),
        ]),
      );
      const r = await c.reply();
      expect(r!.cookie).toBe(7n);
      expect(await c.waitClosed()).toBe(true);
    });

    test('pipelined requests in one segment, bad request magic closes', async () => {
      const c = await session('v');
      const reqs = [];
      for (let i = 0; i < 16; i++)
        reqs.push(RawClient.request(i % 2 ? WRITE : READ, 0, BigInt(i), i * 4096, 4096, i % 2 ? Buffer.alloc(4096, i) : undefined));
      c.write(Buffer.concat(reqs));
      const seen = new Set<bigint>();
      for (let i = 0; i < 16; i++) {
        const r = (await c.reply())!;
        expect(r.error).toBe(0);
        seen.add(r.cookie);
      }
      expect(seen.size).toBe(16);
      c.write(Buffer.alloc(28, 0x55));
      expect(await c.waitClosed()).toBe(true);
    });

    test('large writes arriving in small pieces, discarded payloads and split small writes keep the stream in sync', async () => {
      const c = await session('w');
      const dribble = async (b: Buffer, piece: number) => {
        for (let at = 0; at < b.length; at += piece) {
          c.write(b.subarray(at, at + piece));
          await sleep(1);
        }
      };
      // Larger than the input buffer takes whole: read into a buffer of its own.
      const big = randomBytes(5 * BS + 123);
      await dribble(RawClient.request(WRITE, 0, 1n, 70000, big.length, big), 9000);
      const r1 = (await c.reply())!;
      expect([r1.cookie, r1.error]).toEqual([1n, 0]);
      // Past the end: the payload is consumed (read and dropped), then the stream goes on.
      await dribble(RawClient.request(WRITE, 0, 2n, SIZE - 1000, 300000, Buffer.alloc(300000, 1)), 11000);
      const r2 = (await c.reply())!;
      expect([r2.cookie, r2.error]).toEqual([2n, ENOSPC]);
      // A small write cut inside its header and inside its payload, pipelined with a read of the big one.
      const small = randomBytes(3000);
      const two = Buffer.concat([
        RawClient.request(WRITE, 0, 3n, 40000, small.length, small),
        RawClient.request(READ, 0, 4n, 70000, big.length),
      ]);
      for (const cut of [10, 500, two.length]) {
        c.write(two.subarray(cut === 10 ? 0 : cut === 500 ? 10 : 500, cut));
        await sleep(5);
      }
      const r3 = (await c.reply())!;
      expect([r3.cookie, r3.error]).toEqual([3n, 0]);
      const r4 = (await c.reply(big.length))!;
      expect(r4.cookie).toBe(4n);
      expect(assembleRead(r4, 70000, big.length).equals(big)).toBe(true);
      const r5 = await roundTrip(c, READ, 0, 40000, small.length);
      expect(assembleRead(r5, 40000, small.length).equals(small)).toBe(true);
      c.close();
    });

    test('a client that does not read its replies pauses the server input; everything is answered once it reads', async () => {
      const c = await session('w');
      const want = randomBytes(MiB);
      expect((await roundTrip(c, WRITE, 0, 2 * MiB, MiB, want)).error).toBe(0);
      c.sock.pause();
      const n = 48; // 48 MiB of replies: far beyond the 16 MiB the server queues before it stops reading
      const reqs = [];
      for (let i = 0; i < n; i++) reqs.push(RawClient.request(READ, 0, BigInt(100 + i), 2 * MiB, MiB));
      c.write(Buffer.concat(reqs));
      await sleep(300);
      c.sock.resume();
      for (let i = 0; i < n; i++) {
        const r = (await c.reply(MiB))!;
        expect(r.cookie).toBe(BigInt(100 + i));
        expect(assembleRead(r, 2 * MiB, MiB).equals(want)).toBe(true);
      }
      // The connection still works afterwards.
      expect((await roundTrip(c, FLUSH, 0, 0, 0)).error).toBe(0);
      c.close();
    });
  });
});
