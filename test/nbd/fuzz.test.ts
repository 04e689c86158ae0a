// Fuzz: at least 10,000 random and mutated NBD sessions against one server on the fast I/O path, and as many
// against a second server on the portable I/O path; then sessions that start TLS and misbehave inside or around
// it (garbage instead of a TLS handshake, bytes pipelined behind STARTTLS, a wrong key, mutated sessions over TLS,
// TLS records cut off mid-way) against a third, TLS-offering server. The server must never crash or
// hang (every session ends within a deadline once the client closes its side), keep serving a canary client,
// log no internal error, and leave a pool that passes its metadata check.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { ThinPool } from '../../src/thin/pool.js';
import { NbdServer } from '../../src/nbd/server.js';
import { verifyMetadataDevice } from '../support/pool-check.js';
import { assembleRead, RawClient } from './raw-client.js';
import { MiB } from './support.js';

const SESSIONS = Number(process.env.NBD_FUZZ_SESSIONS ?? 10000);
const PORTABLE_SESSIONS = Number(process.env.NBD_FUZZ_PORTABLE_SESSIONS ?? SESSIONS);
const TLS_SESSIONS = Number(process.env.NBD_FUZZ_TLS_SESSIONS ?? 1000);
const TLS_KEY = randomBytes(32);
// A bound on each fuzz run, far above its time on a quiet machine: every session must finish within it (asserted),
// so a machine too loaded to finish them fails loudly instead of passing on fewer sessions.
const TIME_LIMIT_MS = Number(process.env.NBD_FUZZ_MS ?? 270000);
const TEST_TIMEOUT_MS = TIME_LIMIT_MS + 60000;
const CONCURRENCY = 24;
import { seededRng } from '../support/rng.js';
const SEED = Number(process.env.NBD_FUZZ_SEED ?? Date.now() % 1000000);
const VOL = 4 * MiB;

const rng = seededRng;

let pool: ThinPool;
let server: NbdServer;
let port: number;
let portable: NbdServer;
let portablePort: number;
let secure: NbdServer;
let securePort: number;
const logs: string[] = [];

beforeAll(async () => {
  pool = ThinPool.memory({ size: 96 * MiB });
  for (const n of ['f1', 'f2', 'canary']) pool.createThinSync(n, { size: VOL });
  pool.createThinSync('fro', { size: VOL, readOnly: true });
  pool.commitSync();
  server = new NbdServer(pool, { log: (m) => logs.push(m) });
  port = (await server.listen({ port: 0 })).port!;
  portable = new NbdServer(pool, { log: (m) => logs.push(m), portableIO: true });
  portablePort = (await portable.listen({ port: 0 })).port!;
  // A short handshake deadline: a session stalled inside the TLS handshake (a partial record) is closed by it.
  secure = new NbdServer(pool, {
    log: (m) => logs.push(m),
    handshakeTimeoutMs: 2000,
    tls: { mode: 'on', psk: new Map([['fuzz', TLS_KEY]]) },
  });
  securePort = (await secure.listen({ port: 0 })).port!;
});

afterAll(async () => {
  await server?.close();
  await portable?.close();
  await secure?.close();
  pool?.closeSync();
});

function makeSession(r: () => number): Buffer[] {
  const int = (n: number) => Math.floor(r() * n);
  const pick = <T>(xs: T[]): T => xs[int(xs.length)];
  const parts: Buffer[] = [];
  if (r() < 0.08) {
    // Pure noise, sometimes after valid client flags.
    if (r() < 0.5) parts.push(Buffer.from([0, 0, 0, 3]));
    const n = int(300);
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = int(256);
    parts.push(b);
    return parts;
  }
  const f = Buffer.alloc(4);
  f.writeUInt32BE(r() < 0.96 ? pick([1, 3]) : int(16));
  parts.push(f);
  const opt = (code: number, data: Buffer = Buffer.alloc(0)) => {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(0x49484156454f5054n, 0);
    h.writeUInt32BE(code, 8);
    h.writeUInt32BE(data.length, 12);
    parts.push(h, data);
  };
  const name = () => pick(['f1', 'f2', 'fro', '', 'nosuch', 'f1\u0000', 'x'.repeat(int(40))]);
  const nOpts = int(5);
  for (let i = 0; i < nOpts; i++) {
    switch (int(9)) {
      case 0:
        opt(8);
        break;
      case 1:
        opt(10, RawClient.metaData(name(), pick([['base:allocation'], [], ['base:'], ['foo:bar', 'base:allocation']])));
        break;
      case 2:
        opt(9, RawClient.metaData(name(), pick([[], ['base:']])));
        break;
      case 3:
        opt(3);
        break;
      case 4:
        opt(6, RawClient.goData(name(), [0, 1, 2, 3]));
        break;
      case 5:
        opt(int(20));
        break;
      case 6:
        opt(5);
        break;
      case 7:
        if (r() < 0.1) opt(2);
        break;
      default:
        opt(pick([6, 7, 9, 10]), Buffer.from([0, 0, 0, int(255), 1, 2]));
        break;
    }
  }
  if (r() < 0.93) {
    if (r() < 0.8) opt(7, RawClient.goData(pick(['f1', 'f2', 'f1', 'f2', 'fro', 'f1', 'f2', 'nosuch']), [3]));
    else opt(1, Buffer.from(pick(['f1', 'f2', 'fro', 'zz'])));
  }
  const nReq = int(16);
  for (let i = 0; i < nReq; i++) {
    const type = r() < 0.9 ? pick([0, 0, 1, 1, 3, 4, 5, 6, 7]) : int(12);
    const flags = r() < 0.8 ? pick([0, 0, 0, 1, 2, 4, 8, 0x10, 0x12]) : int(0x10000);
    const offset = pick([0, int(VOL), VOL - int(70000), VOL, VOL + int(1000), int(2 ** 40), 2 ** 53 - 1 + int(3)]);
    let length = pick([0, 1, int(4096), 4096, int(200000), 65536 * 2 + 7, int(MiB)]);
    if (r() < 0.03) length = pick([0xffffffff, 32 * MiB + 1, 2 ** 31]);
    const h = Buffer.alloc(28);
    h.writeUInt32BE(0x25609513, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    h.writeUInt32BE(int(2 ** 32), 8);
    h.writeUInt32BE(i, 12);
    h.writeBigUInt64BE(BigInt(Math.min(offset, 2 ** 64 - 1)), 16);
    h.writeUInt32BE(length >>> 0, 24);
    parts.push(h);
    if (type === 1 && length <= MiB) {
      const n = r() < 0.9 ? length : int(length + 1);
      parts.push(Buffer.alloc(n, int(256)));
    }
  }
  // Mutations.
  let all = Buffer.concat(parts);
  if (r() < 0.4 && all.length > 0) {
    const m = 1 + int(4);
    for (let i = 0; i < m; i++) {
      switch (int(4)) {
        case 0:
          all[int(all.length)] ^= 1 << int(8);
          break;
        case 1:
          all[int(all.length)] = int(256);
          break;
        case 2:
          all = all.subarray(0, int(all.length));
          break;
        default: {
          const at = int(all.length);
          const junk = Buffer.alloc(int(40));
          for (let j = 0; j < junk.length; j++) junk[j] = int(256);
          all = Buffer.concat([all.subarray(0, at), junk, all.subarray(at)]);
        }
      }
      if (all.length === 0) break;
    }
  }
  // Split into random pieces (the server must reassemble).
  const out: Buffer[] = [];
  let p = 0;
  while (p < all.length) {
    const n = r() < 0.5 ? all.length - p : 1 + int(Math.max(1, all.length - p));
    out.push(all.subarray(p, p + n));
    p += n;
  }
  return out;
}

/** Send one session; resolves true when the server closed the connection within the deadline. */
function runSession(port: number, pieces: Buffer[], abrupt: boolean): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let done = false;
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), 10000);
    sock.on('data', () => {});
    sock.on('error', () => finish(true));
    sock.on('close', () => finish(true));
    sock.on('connect', () => {
      for (const b of pieces) sock.write(b);
      if (abrupt) setImmediate(() => finish(true));
      else sock.end();
    });
  });
}

const STARTTLS = (() => {
  const h = Buffer.alloc(16);
  h.writeBigUInt64BE(0x49484156454f5054n, 0);
  h.writeUInt32BE(5, 8);
  return h;
})();

/**
 * One session around TLS: client flags and STARTTLS (sometimes with bytes pipelined behind it), then, on ACK,
 * garbage instead of a TLS handshake, a wrong key, or a real TLS session carrying a mutated NBD session that
 * ends cleanly or is cut off at the TCP level in the middle of a record. Resolves whether the server closed the
 * connection within the deadline (and whether the TLS handshake succeeded).
 */
function runTlsSession(port: number, r: () => number): Promise<{ closed: boolean; secured: boolean }> {
  const int = (n: number) => Math.floor(r() * n);
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let t: tls.TLSSocket | null = null;
    let secured = false;
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      t?.destroy();
      sock.destroy();
      resolve({ closed, secured });
    };
    const timer = setTimeout(() => finish(false), 10000);
    let got = Buffer.alloc(0);
    const onPlain = (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length < 18 + 20) return;
      sock.off('data', onPlain);
      const ack = got.readUInt32BE(18 + 12) === 1;
      if (!ack) return void sock.end();
      const what = int(10);
      if (what === 0) {
        // Not TLS at all after the ACK.
        const junk = Buffer.alloc(1 + int(600));
        for (let i = 0; i < junk.length; i++) junk[i] = int(256);
        sock.write(junk);
        if (r() < 0.5) sock.end();
        return;
      }
      const key = what === 1 ? randomBytes(32) : TLS_KEY;
      t = tls.connect({
        socket: sock,
        ciphers: 'ECDHE-PSK:DHE-PSK:PSK:!kRSAPSK',
        checkServerIdentity: () => undefined,
        pskCallback: () => ({ identity: r() < 0.9 ? 'fuzz' : 'nobody', psk: key }),
      });
      t.on('error', () => finish(true));
      t.on('close', () => finish(true));
      t.on('data', () => {});
      t.on('secureConnect', () => {
        secured = true;
        const all = Buffer.concat(makeSession(r));
        const body = all.subarray(Math.min(4, all.length)); // the client flags were sent in plain text
        let at = 0;
        while (at < body.length) {
          const n = 1 + int(Math.max(1, body.length - at));
          t!.write(body.subarray(at, at + n));
          at += n;
        }
        if (r() < 0.3) {
          // Cut the connection while TLS records are still going out: the server sees a truncated record.
          setImmediate(() => sock.destroy());
          setTimeout(() => finish(true), 20);
        } else t!.end();
      });
    };
    sock.on('data', onPlain);
    sock.on('error', () => finish(true));
    sock.on('close', () => finish(true));
    sock.on('connect', () => {
      const flags = Buffer.alloc(4);
      flags.writeUInt32BE(3);
      const tail = r() < 0.1 ? Buffer.from([0x16, 3, 1, 0, int(256)]) : Buffer.alloc(0); // pipelined behind STARTTLS
      const data = r() < 0.05 ? Buffer.from([1]) : Buffer.alloc(0); // STARTTLS with data: INVALID
      const opt = Buffer.from(STARTTLS);
      opt.writeUInt32BE(data.length, 12);
      sock.write(Buffer.concat([flags, opt, data, tail]));
    });
  });
}

async function canary(port: number, r: () => number, useTls = false): Promise<void> {
  const c = await RawClient.connect({ port });
  await c.negotiate('canary', useTls ? { tls: { identity: 'fuzz', key: TLS_KEY } } : {});
  const data = Buffer.alloc(5000);
  for (let i = 0; i < data.length; i++) data[i] = Math.floor(r() * 256);
  const off = Math.floor(r() * (VOL - data.length));
  c.send(1, 0, 1n, off, data.length, data);
  expect((await c.reply())!.error).toBe(0);
  c.send(0, 0, 2n, off, data.length);
  const rep = (await c.reply())!;
  expect(assembleRead(rep, off, data.length).equals(data)).toBe(true);
  c.close();
}

async function fuzz(srv: NbdServer, port: number, sessions: number, seed: number, label: string): Promise<void> {
  const r = rng(seed);
  const requestsBefore = srv.requests;
  const start = Date.now();
  let started = 0;
  let finished = 0;
  let hung = 0;
  const worker = async () => {
    while (started < sessions && Date.now() - start < TIME_LIMIT_MS) {
      const i = started++;
      if (i % 500 === 0) await canary(port, r);
      const ok = await runSession(port, makeSession(r), r() < 0.3);
      if (!ok) hung++;
      finished++;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  await canary(port, r);
  console.log(
    `nbd fuzz (${label}): ${finished} sessions in ${Date.now() - start} ms (seed ${seed}), ${srv.accepted} connections accepted, ${srv.requests - requestsBefore} requests`,
  );
  expect(srv.requests - requestsBefore).toBeGreaterThan(2 * sessions);
  const mapped = pool
    .list()
    .filter((v) => v.name === 'f1' || v.name === 'f2')
    .reduce((a, v) => a + v.mappedBytes, 0);
  expect(mapped, 'fuzzed writes reached the volumes').toBeGreaterThan(0);
  expect(hung, 'sessions the server did not close').toBe(0);
  expect(finished).toBeGreaterThanOrEqual(sessions);
  expect(logs.filter((l) => l.includes('internal error'))).toEqual([]);
  // Wait for the server to see every close.
  for (let i = 0; i < 100 && srv.connections > 0; i++) await new Promise((res) => setTimeout(res, 20));
  expect(srv.connections).toBe(0);
  expect(pool.status().mode).toBe('write');
  pool.commitSync();
  verifyMetadataDevice(pool.storage.metadata);
}

test(
  `fuzz, fast I/O path: ${SESSIONS} random and mutated sessions (seed ${SEED})`,
  async () => {
    await fuzz(server, port, SESSIONS, SEED, 'fast I/O');
  },
  TEST_TIMEOUT_MS,
);

test(
  `fuzz, portable I/O path: ${PORTABLE_SESSIONS} random and mutated sessions (seed ${SEED + 1})`,
  async () => {
    await fuzz(portable, portablePort, PORTABLE_SESSIONS, SEED + 1, 'portable I/O');
  },
  TEST_TIMEOUT_MS,
);

test(
  `fuzz around TLS: ${TLS_SESSIONS} sessions that start TLS and misbehave (seed ${SEED + 2})`,
  async () => {
    const r = rng(SEED + 2);
    const start = Date.now();
    let started = 0;
    let finished = 0;
    let secured = 0;
    let hung = 0;
    const worker = async () => {
      while (started < TLS_SESSIONS && Date.now() - start < TIME_LIMIT_MS) {
        const i = started++;
        if (i % 100 === 0) await canary(securePort, r, true);
        const res = await runTlsSession(securePort, r);
        if (!res.closed) hung++;
        if (res.secured) secured++;
        finished++;
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    await canary(securePort, r, true);
    await canary(securePort, r, false);
    console.log(
      `nbd fuzz (TLS): ${finished} sessions in ${Date.now() - start} ms (seed ${SEED + 2}), ${secured} with TLS up, ${secure.accepted} connections accepted, ${secure.requests} requests`,
    );
    expect(hung, 'sessions the server did not close').toBe(0);
    expect(finished).toBeGreaterThanOrEqual(TLS_SESSIONS);
    expect(secured).toBeGreaterThan(TLS_SESSIONS / 2);
    expect(secure.requests).toBeGreaterThan(TLS_SESSIONS);
    expect(logs.filter((l) => l.includes('internal error'))).toEqual([]);
    expect(logs.some((l) => l.includes('TLS handshake failed'))).toBe(true);
    for (let i = 0; i < 100 && secure.connections > 0; i++) await new Promise((res) => setTimeout(res, 20));
    expect(secure.connections).toBe(0);
    expect(pool.status().mode).toBe('write');
    pool.commitSync();
    verifyMetadataDevice(pool.storage.metadata);
  },
  TEST_TIMEOUT_MS,
);
