// Fuzz: at least 10,000 random and mutated NBD sessions against one server on the fast I/O path, and as many
// against a second server on the portable I/O path. The server must never crash or
// hang (every session ends within a deadline once the client closes its side), keep serving a canary client,
// log no internal error, and leave a pool that passes its metadata check.
import net from 'node:net';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { ThinPool } from '../../src/thin/pool.js';
import { NbdServer } from '../../src/nbd/server.js';
import { verifyMetadataDevice } from '../support/pool-check.js';
import { assembleRead, RawClient } from './raw-client.js';
import { MiB } from './support.js';

const SESSIONS = Number(process.env.NBD_FUZZ_SESSIONS ?? 10000);
const PORTABLE_SESSIONS = Number(process.env.NBD_FUZZ_PORTABLE_SESSIONS ?? SESSIONS);
const TIME_LIMIT_MS = Number(process.env.NBD_FUZZ_MS ?? 100000);
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
});

afterAll(async () => {
  await server?.close();
  await portable?.close();
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
      case 0: opt(8); break;
      case 1: opt(10, RawClient.metaData(name(), pick([['base:allocation'], [], ['base:'], ['foo:bar', 'base:allocation']]))); break;
      case 2: opt(9, RawClient.metaData(name(), pick([[], ['base:']]))); break;
      case 3: opt(3); break;
      case 4: opt(6, RawClient.goData(name(), [0, 1, 2, 3])); break;
      case 5: opt(int(20)); break;
      case 6: opt(5); break;
      case 7: if (r() < 0.1) opt(2); break;
      default: opt(pick([6, 7, 9, 10]), Buffer.from([0, 0, 0, int(255), 1, 2])); break;
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
        case 0: all[int(all.length)] ^= 1 << int(8); break;
        case 1: all[int(all.length)] = int(256); break;
        case 2: all = all.subarray(0, int(all.length)); break;
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

async function canary(port: number, r: () => number): Promise<void> {
  const c = await RawClient.connect({ port });
  await c.negotiate('canary');
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
  console.log(`nbd fuzz (${label}): ${finished} sessions in ${Date.now() - start} ms (seed ${seed}), ${srv.accepted} connections accepted, ${srv.requests - requestsBefore} requests`);
  expect(srv.requests - requestsBefore).toBeGreaterThan(2 * sessions);
  const mapped = pool.list().filter((v) => v.name === 'f1' || v.name === 'f2').reduce((a, v) => a + v.mappedBytes, 0);
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

test(`fuzz, fast I/O path: ${SESSIONS} random and mutated sessions (seed ${SEED})`, async () => {
  await fuzz(server, port, SESSIONS, SEED, 'fast I/O');
}, 180000);

test(`fuzz, portable I/O path: ${PORTABLE_SESSIONS} random and mutated sessions (seed ${SEED + 1})`, async () => {
  await fuzz(portable, portablePort, PORTABLE_SESSIONS, SEED + 1, 'portable I/O');
}, 180000);
