// The protocol byte by byte with a raw client, the handshake: client flags, every option and its errors
// (negotiation goes on after them), INFO and GO, EXPORT_NAME, ABORT, oversized options and bad option magic.
// Every test runs on both socket I/O paths, and this Node must offer the fast one. The server and helpers:
// test/nbd/protocol-fixture.ts.
import { describe, expect, test } from 'vitest';
import { FAST_IO_AVAILABLE } from '../../src/nbd/connection.js';
import {
  ACK,
  connect,
  ERR_INVALID,
  ERR_POLICY,
  ERR_UNKNOWN,
  ERR_UNSUP,
  READ,
  REP_META,
  REP_SERVER,
  roundTrip,
  SIZE,
  onBothIoPaths,
} from './protocol-fixture.js';
import { RawClient } from './raw-client.js';
import { MiB } from './support.js';

test('this Node offers the hooks of the fast I/O path (else the server silently uses the portable one)', () => {
  expect(FAST_IO_AVAILABLE).toBe(true);
});

onBothIoPaths(() => {
  describe('handshake', () => {
    test('greeting offers fixed newstyle and no-zeroes; bad client flags close the connection', async () => {
      const c = await connect();
      expect(await c.greeting(0x7)).toBe(3);
      expect(await c.waitClosed()).toBe(true);
    });

    test('option errors keep the negotiation going, then GO succeeds', async () => {
      const c = await connect();
      await c.greeting();
      const probe = async (code: number, data?: Buffer) => {
        c.sendOption(code, data);
        const rs = (await c.optionReplies())!;
        for (const r of rs) expect(r.code).toBe(code);
        return rs;
      };
      expect((await probe(99))[0].type).toBe(ERR_UNSUP);
      expect((await probe(3, Buffer.from('x')))[0].type).toBe(ERR_INVALID);
      expect((await probe(5))[0].type).toBe(ERR_POLICY);
      expect((await probe(11))[0].type).toBe(ERR_UNSUP);
      expect((await probe(4))[0].type).toBe(ERR_UNSUP);
      expect((await probe(10, RawClient.metaData('v', ['base:allocation'])))[0].type).toBe(ERR_INVALID); // before SR
      expect((await probe(8, Buffer.from('x')))[0].type).toBe(ERR_INVALID);
      expect((await probe(8))[0].type).toBe(ACK);
      expect((await probe(8))[0].type).toBe(ERR_INVALID); // twice
      const bad = RawClient.metaData('v', ['base:allocation']);
      bad.writeUInt32BE(1000, bad.length - 19);
      expect((await probe(10, bad))[0].type).toBe(ERR_INVALID);
      expect((await probe(10, RawClient.metaData('v', ['foo:bar', 'base:', 'base:foo']))).map((r) => r.type)).toEqual([ACK]);
      const list = await probe(9, RawClient.metaData('v', []));
      expect(list.map((r) => r.type)).toEqual([REP_META, ACK]);
      expect(list[0].data.subarray(4).toString()).toBe('base:allocation');
      expect((await probe(9, RawClient.metaData('v', ['base:']))).map((r) => r.type)).toEqual([REP_META, ACK]);
      expect((await probe(6, RawClient.goData('nosuch')))[0].type).toBe(ERR_UNKNOWN);
      expect((await probe(7, RawClient.goData('')))[0].type).toBe(ERR_UNKNOWN); // several exports: no default
      const short = RawClient.goData('v');
      expect((await probe(7, short.subarray(0, 5)))[0].type).toBe(ERR_INVALID);
      const names = (await probe(3)).filter((r) => r.type === REP_SERVER).map((r) => r.data.subarray(4).toString());
      expect(names.sort()).toEqual(['ro', 'v', 'w']);
      const info = await probe(6, RawClient.goData('v', [0, 1, 2, 3]));
      expect(info[info.length - 1].type).toBe(ACK);
      const bsz = info.find((r) => r.type === 3 && r.data.readUInt16BE(0) === 3)!;
      expect([bsz.data.readUInt32BE(2), bsz.data.readUInt32BE(6), bsz.data.readUInt32BE(10)]).toEqual([1, 4096, 32 * MiB]);
      const name = info.find((r) => r.type === 3 && r.data.readUInt16BE(0) === 1)!;
      expect(name.data.subarray(2).toString()).toBe('v');
      const go = await probe(7, RawClient.goData('v'));
      const exp = go.find((r) => r.type === 3 && r.data.readUInt16BE(0) === 0)!;
      expect(Number(exp.data.readBigUInt64BE(2))).toBe(SIZE);
      expect(exp.data.readUInt16BE(10)).toBe(0x0ded);
      // Transmission works on the same connection.
      const r = await roundTrip(c, READ, 0, 0, 512);
      expect(r.error).toBe(0);
      c.close();
    });

    test('oversized option data closes; bad option magic closes', async () => {
      const c = await connect();
      await c.greeting();
      const h = Buffer.alloc(16);
      h.writeBigUInt64BE(0x49484156454f5054n, 0);
      h.writeUInt32BE(7, 8);
      h.writeUInt32BE(0x7fffffff, 12);
      c.write(h);
      expect(await c.waitClosed()).toBe(true);
      const d = await connect();
      await d.greeting();
      d.write(Buffer.alloc(16, 0x41));
      expect(await d.waitClosed()).toBe(true);
    });

    test('EXPORT_NAME with and without zero padding; unknown name closes', async () => {
      for (const flags of [1, 3]) {
        const c = await connect();
        await c.greeting(flags);
        c.sendOption(1, Buffer.from('w'));
        const rep = (await c.read(flags === 3 ? 10 : 134))!;
        expect(Number(rep.readBigUInt64BE(0))).toBe(SIZE);
        expect(rep.readUInt16BE(8)).toBe(0x0d6d);
        const r = await roundTrip(c, READ, 0, 0, 4096);
        expect(r.simple).toBe(true);
        expect(r.data!.length).toBe(4096);
        c.close();
      }
      const c = await connect();
      await c.greeting();
      c.sendOption(1, Buffer.from('nosuch'));
      expect(await c.waitClosed()).toBe(true);
    });

    test('ABORT is acknowledged', async () => {
      const c = await connect();
      await c.greeting();
      c.sendOption(2);
      expect((await c.optionReply())!.type).toBe(ACK);
      expect(await c.waitClosed()).toBe(true);
    });
  });
});
