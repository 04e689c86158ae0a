/**
 * Asynchronous librados requests (`rados_aio_*`) of this process: their completions, the requests in flight,
 * and the batched waiting that settles them. Layer: io (used by librados.ts's `RadosIoctx.aioWrite`/`aioRead`).
 *
 * Contract:
 * - `submit` starts a read or write and resolves to librados's return value (negative: an errno) when the
 *   cluster acknowledges. A request librados refuses to start settles at once with that value.
 * - A request's `settle` hook sees its result synchronously as soon as the completion is found (by the event
 *   loop or by `waitAll`), before its promise settles. Buffers are kept alive until librados is done with them.
 * - `waitAll` blocks until every request in flight has completed and has settled their hooks.
 * - The event loop is kept alive while anything is in flight.
 *
 * Two ways to learn of completions, one chosen per process at the first request:
 * - Native (native/rados_aio.c, when the helper is built): librados's thread calls a C callback that queues
 *   (token, rc) and wakes the main thread through an N-API thread-safe function; the main thread settles the
 *   whole queue at once. One thread hand-off per batch.
 * - koffi (the fallback, or THINPOOL_RADOS_AIO=koffi): completions carry no callback (a koffi callback from
 *   librados's thread would make that thread wait for Node's main thread, one completion at a time); one waiter
 *   at a time blocks on the oldest request in flight on a koffi worker thread, and when it returns, the main
 *   thread settles every request completed by then and waits again on the oldest left. Two hand-offs: librados's
 *   thread to the worker, the worker to the main thread. A completion is released once, after it completed.
 */
import { type Lib, radosError } from './librados-ffi.js';
import { ThinpoolError } from '../errors.js';
import { type NativeHelpers, nativeHelpers } from './native.js';

const ENOENT_NATIVE = 2;

interface Pending {
  resolve(rc: number): void;
  /** Called synchronously when the request is found complete (before its promise settles). */
  settle?: (rc: number) => void;
  /** Keeps the buffer alive until librados is done with it. */
  buf: Uint8Array;
}

/** Asynchronous requests in flight, by completion address, oldest first. */
const inFlight = new Map<unknown, Pending>();
/** The completion the waiter thread blocks on (released only after that wait returned), or null. */
let waitingOn: unknown = null;

/** Start the waiter on the oldest request in flight, unless one runs or nothing is in flight. */
function wait(l: Lib): void {
  if (waitingOn !== null || inFlight.size === 0) return;
  const oldest = inFlight.keys().next().value;
  waitingOn = oldest;
  l.aioWaitCompleteAsync(oldest, () => {
    waitingOn = null;
    if (!inFlight.has(oldest)) l.aioRelease(oldest); // settled meanwhile by waitAll
    harvest(l);
  });
}

/** Settle every request that has completed, then wait on the oldest left. */
function harvest(l: Lib): void {
  for (const [comp, p] of inFlight) {
    if (l.aioIsComplete(comp) === 0) continue;
    inFlight.delete(comp);
    const rc = l.aioGetReturn(comp) as number;
    if (comp !== waitingOn) l.aioRelease(comp);
    p.settle?.(rc);
    p.resolve(rc);
  }
  wait(l);
}

/** One request to start: a read into, or a write from, `buf` at `off` in object `oid` of the I/O context `io`. */
export interface AioRequest {
  write: boolean;
  /** The I/O context (koffi pointer) and its address (for the native path). */
  io: unknown;
  ioAddress: bigint;
  oid: string;
  buf: Uint8Array;
  off: number;
}

type NativeRados = Required<Pick<NativeHelpers, 'radosAioInit' | 'radosAioStart' | 'radosAioDrain'>>;

/** The native helper's rados functions once registered (null: not built, or another thread registered first). */
let nativeReady: NativeRados | null | undefined;
/** The path this process uses, fixed at the first request (or by useCompletionPath). */
let chosen: 'native' | 'koffi' | undefined;
/** Requests started on each path since the process began (refused ones included): which path serves them. */
const startedOn = { native: 0, koffi: 0 };
/** Native requests in flight by token. */
const byToken = new Map<number, Pending>();
let nextToken = 0;

/** Register with the native helper once librados is loaded (before that, null and asked again later). */
function nativeOnce(): NativeRados | null {
  if (nativeReady !== undefined) return nativeReady;
  const h = nativeHelpers();
  if (!h?.radosAioInit || !h.radosAioStart || !h.radosAioDrain) {
    nativeReady = null;
    return null;
  }
  const rc = h.radosAioInit(settleBatch);
  if (rc === -ENOENT_NATIVE) return null; // librados not loaded yet
  nativeReady = rc === 0 ? (h as NativeRados) : null;
  return nativeReady;
}

function nativePath(): NativeRados | null {
  chosen ??= process.env.THINPOOL_RADOS_AIO === 'koffi' || nativeOnce() === null ? 'koffi' : 'native';
  return chosen === 'native' ? nativeOnce() : null;
}

/** Which path this process uses ('native' or 'koffi'); decided on first use (librados must be loaded). */
export function completionPath(): 'native' | 'koffi' {
  return nativePath() ? 'native' : 'koffi';
}

/**
 * Choose the path (tests and benchmarks compare both): false when the native one is not available. Refused
 * (EBUSY) while requests are in flight.
 */
export function useCompletionPath(path: 'native' | 'koffi'): boolean {
  if (inFlightCount() > 0)
    throw new ThinpoolError('EBUSY', `rados: ${inFlightCount()} requests in flight: the completion path cannot change`);
  if (path === 'native' && nativeOnce() === null) return false;
  chosen = path;
  return true;
}

/** Settle native completions: pairs (token, rc). A hook that throws does not stop the others. */
function settleBatch(pairs: Int32Array): void {
  for (let i = 0; i < pairs.length; i += 2) {
    const p = byToken.get(pairs[i]);
    if (p === undefined) continue;
    byToken.delete(pairs[i]);
    try {
      p.settle?.(pairs[i + 1]);
    } catch (e) {
      process.nextTick(() => {
        throw e;
      });
    }
    p.resolve(pairs[i + 1]);
  }
}

/** Requests of this process in flight (any I/O context). */
export function inFlightCount(): number {
  return inFlight.size + byToken.size;
}

/** Requests started on each completion path so far in this process (a copy). */
export function requestsStarted(): { native: number; koffi: number } {
  return { ...startedOn };
}

/** Start one asynchronous read or write; resolves to librados's return value. */
export function submit(l: Lib, req: AioRequest, settle?: (rc: number) => void): Promise<number> {
  const n = nativePath();
  if (n !== null) {
    startedOn.native++;
    nextToken = nextToken >= 0x7fffffff ? 1 : nextToken + 1;
    const token = nextToken;
    return new Promise<number>((resolve) => {
      const rc = n.radosAioStart(req.write ? 1 : 0, req.ioAddress, req.oid, req.buf, req.off, token);
      if (rc < 0) {
        settle?.(rc);
        resolve(rc);
      } else byToken.set(token, { resolve, settle, buf: req.buf });
    });
  }
  startedOn.koffi++;
  const out: unknown[] = [null];
  let rc = l.aioCreate(null, null, out) as number;
  if (rc < 0) return Promise.reject(radosError(rc, 'cannot create an aio completion'));
  const comp = out[0];
  return new Promise<number>((resolve) => {
    inFlight.set(comp, { resolve, settle, buf: req.buf });
    rc = req.write
      ? (l.aioWrite(req.io, req.oid, comp, req.buf, req.buf.length, req.off) as number)
      : (l.aioRead(req.io, req.oid, comp, req.buf, req.buf.length, req.off) as number);
    if (rc < 0) {
      inFlight.delete(comp);
      l.aioRelease(comp);
      settle?.(rc);
      resolve(rc);
    }
    wait(l);
  });
}

/**
 * Block until every asynchronous request of this process has completed; their `settle` hooks have run when
 * this returns (their promises settle later).
 */
export function waitAll(l: Lib): void {
  if (nativeReady) settleBatch(nativeReady.radosAioDrain());
  for (const comp of inFlight.keys()) l.aioWaitComplete(comp);
  harvest(l);
}
