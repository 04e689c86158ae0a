/**
 * The shared server and helpers of the raw-protocol tests (test/nbd/protocol-handshake.test.ts,
 * protocol-transmission.test.ts and protocol-robustness.test.ts): the protocol's numbers, a memory pool with
 * volumes v, w (16 MiB each) and ro (read-only) served on a TCP port, and the raw client's session and
 * request/reply round trip.
 *
 * Each test file calls start(portableIO) in beforeAll and stop() in afterAll, once per socket I/O path. `pool`
 * is a live binding: it always names the pool of the latest start(); `logs` collects the server's log lines.
 */
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { ThinPool } from '../../src/thin/pool.js';
import { NbdServer } from '../../src/nbd/server.js';
import { RawClient } from './raw-client.js';
import { MiB } from './support.js';
import { verifyMetadataDevice } from '../support/pool-check.js';

export const READ = 0,
  WRITE = 1,
  DISC = 2,
  FLUSH = 3,
  TRIM = 4,
  CACHE = 5,
  ZERO = 6,
  STATUS = 7;
export const FUA = 1,
  NO_HOLE = 2,
  DF = 4,
  REQ_ONE = 8,
  FAST_ZERO = 0x10;
export const EPERM = 1,
  EINVAL = 22,
  ENOSPC = 28,
  ENOTSUP = 95;
export const ACK = 1,
  REP_SERVER = 2,
  REP_META = 4,
  ERR_UNSUP = 0x80000001,
  ERR_POLICY = 0x80000002,
  ERR_INVALID = 0x80000003,
  ERR_UNKNOWN = 0x80000006;
export const SIZE = 16 * MiB;
export const BS = 64 * 1024;

/** The pool of the running server: reassigned by start(), so tests read it through this live binding. */
export let pool: ThinPool;
let server: NbdServer;
let port: number;
export const logs: string[] = [];

/**
 * A fresh pool and server for each socket I/O path: the fast one (user-buffer input, replies written on the
 * descriptor) and the portable one ('data' events, socket.write). Every protocol test runs against both.
 */
export async function start(portableIO: boolean): Promise<void> {
  pool = ThinPool.memory({ size: 256 * MiB });
  pool.createThinSync('v', { size: SIZE });
  pool.createThinSync('w', { size: SIZE });
  pool.createThinSync('ro', { size: SIZE, readOnly: true });
  pool.commitSync();
  server = new NbdServer(pool, { log: (m) => logs.push(m), portableIO });
  port = (await server.listen({ port: 0 })).port!;
}

export async function stop(): Promise<void> {
  await server.close();
  expect(pool.status().mode).toBe('write');
  verifyMetadataDevice(pool.storage.metadata);
  pool.closeSync();
}

export async function connect(): Promise<RawClient> {
  return RawClient.connect({ port });
}

export async function session(
  name = 'v',
  opts: { structured?: boolean; meta?: boolean } = {},
): Promise<RawClient & { size: number; flags: number }> {
  const c = await connect();
  const r = await c.negotiate(name, opts);
  return Object.assign(c, r);
}

export async function roundTrip(c: RawClient, type: number, flags: number, offset: number, length: number, payload?: Uint8Array) {
  const cookie = BigInt(Math.floor(Math.random() * 2 ** 48));
  c.send(type, flags, cookie, offset, length, payload);
  const r = await c.reply(type === READ ? length : 0);
  if (!r) throw new Error('connection closed');
  expect(r.cookie).toBe(cookie);
  return r;
}

/**
 * The tests of `body` once per socket I/O path, each under its own describe ("fast I/O", "portable I/O") with a
 * fresh pool and server started before them and stopped after; body is given the path (true: portable).
 */
export function onBothIoPaths(body: (portableIO: boolean) => void): void {
  describe.each([
    ['fast I/O', false],
    ['portable I/O', true],
  ] as const)('%s', (_label, portable) => {
    beforeAll(() => start(portable));
    afterAll(() => stop());
    body(portable);
  });
}
