/**
 * Asynchronous librados requests (`rados_aio_*`) of this process: their completions, the requests in flight,
 * and the batched waiting that settles them. Layer: io (used by librados.ts's `RadosIoctx.aioWrite`/`aioRead`).
 *
 * Contract:
 * - `submit` creates a completion, records the request as in flight, and starts it; it resolves to librados's
 *   return value (negative: an errno) when the cluster acknowledges. A request librados refuses to start settles
 *   at once with that value. A completion is released here, once, after its request completed.
 * - Completions carry no callback (a koffi callback from librados's thread would make that thread wait for
 *   Node's main thread, one completion at a time); instead one waiter at a time blocks on the oldest request in
 *   flight on a koffi worker thread (`rados_aio_wait_for_complete.async`), and when it returns, the main thread
 *   settles every request that has completed by then (a batch) and waits again on the oldest left. The pending
 *   asynchronous call keeps Node's event loop alive while anything is in flight.
 * - A request's `settle` hook sees its result synchronously as soon as the completion is found (by the waiter or
 *   by `waitAll`), before its promise settles. Buffers are kept alive until librados is done with them.
 */
import { type Lib, radosError } from './librados-ffi.js';

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

/** Requests of this process in flight (any I/O context). */
export function inFlightCount(): number {
  return inFlight.size;
}

/**
 * Start one asynchronous request: `start` gets the new completion and calls `rados_aio_write`/`_read` with it,
 * returning librados's value. `buf` is the request's buffer (held until the request completes).
 */
export function submit(l: Lib, buf: Uint8Array, start: (comp: unknown) => number, settle?: (rc: number) => void): Promise<number> {
  const out: unknown[] = [null];
  let rc = l.aioCreate(null, null, out) as number;
  if (rc < 0) return Promise.reject(radosError(rc, 'cannot create an aio completion'));
  const comp = out[0];
  return new Promise<number>((resolve) => {
    inFlight.set(comp, { resolve, settle, buf });
    rc = start(comp);
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
  for (const comp of inFlight.keys()) l.aioWaitComplete(comp);
  harvest(l);
}
