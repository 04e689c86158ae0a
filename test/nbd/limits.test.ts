// Limits that keep one client from hurting the rest, and the safe defaults of listening: the most connections at
// once, the handshake deadline (plain and TLS), the bound on reply bytes queued for a client that stops reading
// (plain and TLS), the busy-poll window over TLS (on after answering, off once the client is quiet, off while
// the spin guard has backed off), the mode of a Unix socket, and no plain-text listener on a non-loopback address.
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import { NbdServer } from '../../src/nbd/server.js';
import { spinGuard } from '../../src/nbd/spin-guard.js';
import { ThinPool } from '../../src/thin/pool.js';
import { assembleRead, RawClient } from './raw-client.js';
import { MiB, tempDir } from './support.js';

const READ = 0,
  WRITE = 1,
  FLUSH = 3;
const KEY = randomBytes(32);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let pool: ThinPool;
let tmp: ReturnType<typeof tempDir>;

beforeAll(() => {
  tmp = tempDir('tp-nbd-limits-');
  pool = ThinPool.memory({ size: 128 * MiB });
  pool.createThinSync('v', { size: 32 * MiB });
  pool.commitSync();
});

afterAll(() => {
  pool.closeSync();
  tmp.cleanup();
});

async function withServer(
  opts: ConstructorParameters<typeof NbdServer>[1],
  body: (s: NbdServer, port: number, logs: string[]) => Promise<void>,
): Promise<void> {
  const logs: string[] = [];
  const s = new NbdServer(pool, { ...opts, log: (m) => logs.push(m) });
  const port = (await s.listen({ port: 0 })).port!;
  try {
    await body(s, port, logs);
  } finally {
    await s.close();
  }
}

describe('limits', () => {
  test('at most maxConnections at once: more are closed on arrival, and a freed slot is served again', async () => {
    await withServer({ maxConnections: 2 }, async (s, port) => {
      const a = await RawClient.connect({ port });
      const b = await RawClient.connect({ port });
      await a.greeting();
      await b.greeting();
      const c = await RawClient.connect({ port });
      expect(await c.waitClosed()).toBe(true);
      expect(s.refused).toBe(1);
      a.close();
      for (let i = 0; i < 100 && s.connections > 1; i++) await sleep(10);
      const d = await RawClient.connect({ port });
      const r = await d.negotiate('v');
      expect(r.size).toBe(32 * MiB);
      b.close();
      d.close();
    });
  });

  test('a client that does not finish the handshake in time is closed (silent, and stalled inside TLS)', async () => {
    await withServer({ handshakeTimeoutMs: 300, tls: { mode: 'on', psk: new Map([['alice', KEY]]) } }, async (_s, port, logs) => {
      const silent = await RawClient.connect({ port });
      await silent.greeting();
      expect(await silent.waitClosed(3000)).toBe(true);
      // STARTTLS acknowledged, then nothing: the TLS handshake never starts.
      const stalled = await RawClient.connect({ port });
      await stalled.greeting();
      stalled.sendOption(5);
      expect((await stalled.optionReplies())!.map((x) => x.type)).toEqual([1]);
      expect(await stalled.waitClosed(3000)).toBe(true);
      expect(logs.filter((l) => l.includes('handshake not finished')).length).toBe(2);
    });
    // A client in transmission is not subject to it. (A longer limit here: on a loaded machine a TLS handshake
    // alone can take longer than 300 ms; what matters is that the client outlives the limit once in transmission.)
    await withServer({ handshakeTimeoutMs: 1500, tls: { mode: 'on', psk: new Map([['alice', KEY]]) } }, async (s, port, logs) => {
      const ok = await RawClient.connect({ port });
      await ok.negotiate('v', { tls: { identity: 'alice', key: KEY } });
      await sleep(2000);
      ok.send(FLUSH, 0, 1n, 0, 0);
      expect((await ok.reply())!.error).toBe(0);
      expect(logs.filter((l) => l.includes('handshake not finished'))).toEqual([]);
      ok.close();
      for (let i = 0; i < 100 && s.connections > 0; i++) await sleep(10);
      expect(s.connections).toBe(0);
    });
  });

  describe.each([
    ['plain', false, false],
    ['TLS', true, false],
    ['TLS, portable I/O', true, true],
  ] as const)('queued replies (%s)', (_label, useTls, portableIO) => {
    test('a client that stops reading makes the server hold at most the bound plus one reply; it all arrives once it reads', async () => {
      const bound = 2 * MiB;
      const tls = useTls ? { mode: 'require' as const, psk: new Map([['alice', KEY]]) } : undefined;
      await withServer({ maxQueuedReplyBytes: bound, tls, portableIO }, async (s, port) => {
        const c = await RawClient.connect({ port });
        await c.negotiate('v', useTls ? { tls: { identity: 'alice', key: KEY } } : {});
        const want = randomBytes(MiB);
        c.send(WRITE, 0, 1n, 4 * MiB, MiB, want);
        expect((await c.reply())!.error).toBe(0);
        c.sock.pause();
        if (useTls) c.plain.pause();
        const before = s.requests;
        const n = 64; // 64 MiB of replies asked for
        const reqs = [];
        for (let i = 0; i < n; i++) reqs.push(RawClient.request(READ, 0, BigInt(100 + i), 4 * MiB, MiB));
        c.write(Buffer.concat(reqs));
        let most = 0;
        for (let i = 0; i < 30; i++) {
          await sleep(20);
          most = Math.max(most, s.queuedReplyBytes);
        }
        expect(most).toBeGreaterThan(0);
        // Input was paused: the server has not executed (and so holds no replies for) most of the requests.
        expect(s.requests - before).toBeLessThan(n / 2);
        // The bound, plus the one reply that crossed it (a 1 MiB read and its chunk header, plus TLS framing).
        expect(most).toBeLessThanOrEqual(bound + MiB + 64 * 1024);
        c.sock.resume();
        if (useTls) c.plain.resume();
        for (let i = 0; i < n; i++) {
          const r = (await c.reply(MiB))!;
          expect(r.cookie).toBe(BigInt(100 + i));
          expect(assembleRead(r, 4 * MiB, MiB).equals(want)).toBe(true);
        }
        c.send(FLUSH, 0, 2n, 0, 0);
        expect((await c.reply())!.error).toBe(0);
        c.close();
      });
    });
  });
});

describe.each([
  ['TLS', false],
  ['TLS, portable I/O', true],
] as const)('the busy-poll window without a readable descriptor (%s)', (_label, portableIO) => {
  // A TLS socket's descriptor carries ciphertext, so the window is spent keeping the event loop hot (one
  // setImmediate after another) rather than reading the descriptor. It must start only after answering in the
  // transmission phase, end by itself once the client goes quiet, and be off with a window of 0.
  const tls = { mode: 'require' as const, psk: new Map([['alice', KEY]]) };
  const quiet = async (s: NbdServer): Promise<number> => {
    const t0 = Date.now();
    while (s.hotConnections > 0 && Date.now() - t0 < 5000) await sleep(5);
    return s.hotConnections === 0 ? Date.now() - t0 : -1;
  };
  const session = async (busyPollMicros: number): Promise<{ hotSeen: number; quietAtStart: number; quietAfterMs: number }> => {
    let out = { hotSeen: 0, quietAtStart: -1, quietAfterMs: -1 };
    await withServer({ tls, portableIO, busyPollMicros }, async (s, port) => {
      const c = await RawClient.connect({ port });
      await c.negotiate('v', { tls: { identity: 'alice', key: KEY } });
      // Entering the transmission phase (the reply to GO) may start the window: it ends without requests.
      const quietAtStart = await quiet(s);
      const want = randomBytes(4096);
      c.send(WRITE, 0, 1n, 8192, 4096, want);
      expect((await c.reply())!.error).toBe(0);
      let hotSeen = 0;
      for (let i = 0; i < 200; i++) {
        c.send(READ, 0, BigInt(10 + i), 8192, 4096);
        const r = (await c.reply(4096))!;
        expect(r.cookie).toBe(BigInt(10 + i));
        expect(assembleRead(r, 8192, 4096).equals(want)).toBe(true);
        if (s.hotConnections > 0) hotSeen++;
      }
      out = { hotSeen, quietAtStart, quietAfterMs: await quiet(s) };
      c.close();
    });
    return out;
  };

  test('on after answering, off by itself once the client is quiet; never on with a window of 0', async () => {
    // The spin guard would turn the loop off on a machine with no idle CPU (as CI may be): not what this checks.
    const was = spinGuard.enabled;
    spinGuard.enabled = false;
    try {
      const on = await session(1000);
      expect(on.quietAtStart, 'the loop kept running after the handshake').toBeGreaterThanOrEqual(0);
      expect(on.hotSeen, 'the loop was never hot between requests').toBeGreaterThan(0);
      expect(on.quietAfterMs, 'the loop kept running after the client went quiet').toBeGreaterThanOrEqual(0);
      const off = await session(0);
      expect(off.hotSeen).toBe(0);
    } finally {
      spinGuard.enabled = was;
      spinGuard.reset();
    }
  });

  test('off while the spin guard has turned spinning off', async () => {
    const was = spinGuard.enabled;
    spinGuard.enabled = true;
    // A spin chain "measured" over 10 s in which the process had hardly any CPU time: the guard backs off.
    const now = process.hrtime.bigint();
    spinGuard.start(now);
    expect(spinGuard.check(now + 10_000_000_000n, true)).toBe(false);
    try {
      const guarded = await session(1000);
      expect(guarded.hotSeen).toBe(0);
    } finally {
      spinGuard.reset();
      spinGuard.enabled = was;
    }
    expect(spinGuard.allowed(process.hrtime.bigint())).toBe(true);
  });
});

describe('safe defaults of listening', () => {
  test('a Unix socket is created mode 0600 unless socketMode says otherwise', async () => {
    const s = new NbdServer(pool);
    const t = new NbdServer(pool, { socketMode: 0o660 });
    try {
      const a = (await s.listen({ path: join(tmp.dir, 'a.sock') })).path!;
      const b = (await t.listen({ path: join(tmp.dir, 'b.sock') })).path!;
      expect(statSync(a).mode & 0o777).toBe(0o600);
      expect(statSync(b).mode & 0o777).toBe(0o660);
      const c = await RawClient.connect({ path: a });
      expect((await c.negotiate('v')).size).toBe(32 * MiB);
      c.close();
    } finally {
      await s.close();
      await t.close();
    }
  });

  test('a non-loopback address is refused without TLS required, unless insecure', async () => {
    const plain = new NbdServer(pool);
    const offered = new NbdServer(pool, { tls: { mode: 'on', psk: new Map([['alice', KEY]]) } });
    const required = new NbdServer(pool, { tls: { mode: 'require', psk: new Map([['alice', KEY]]) } });
    const insecure = new NbdServer(pool, { insecure: true });
    try {
      for (const s of [plain, offered]) {
        const e = await s.listen({ host: '0.0.0.0', port: 0 }).catch((x: unknown) => x);
        expect(isThinpoolError(e, 'EINVAL'), String(e)).toBe(true);
        expect((e as Error).message).toMatch(/not a loopback address/);
      }
      // Loopback is always fine; a wildcard address is fine with TLS required, or when insecure is said.
      expect((await plain.listen({ host: '127.0.0.1', port: 0 })).port).toBeGreaterThan(0);
      const r = await required.listen({ host: '0.0.0.0', port: 0 });
      const c = await RawClient.connect({ port: r.port! });
      await c.greeting();
      c.sendOption(3);
      expect((await c.optionReplies())!.map((x) => x.type)).toEqual([0x80000005]);
      c.close();
      expect((await insecure.listen({ host: '0.0.0.0', port: 0 })).port).toBeGreaterThan(0);
    } finally {
      for (const s of [plain, offered, required, insecure]) await s.close();
    }
  });

  test('server options are checked: credentials for TLS, positive limits', () => {
    expect(() => new NbdServer(pool, { tls: { mode: 'require' } })).toThrow(/needs credentials/);
    expect(() => new NbdServer(pool, { maxConnections: 0 })).toThrow(/positive integer/);
    expect(() => new NbdServer(pool, { tls: { mode: 'on', psk: new Map([['a', KEY]]), allow: new Map([['b', ['v']]]) } })).toThrow(
      /not in the PSK file/,
    );
  });
});
