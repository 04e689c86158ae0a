/**
 * An in-memory stand-in for `RadosIoctx` (src/io/librados.ts): the calls a `RadosDevice` makes, with librados's
 * semantics as that class documents them, and hooks a test steers. No cluster: the device's own logic alone.
 *
 * - Objects are byte arrays; a missing object reads 0 bytes; a read returns the bytes the object had there and
 *   leaves the rest of the buffer untouched (as `RadosIoctx.read` does); `zero` never creates an object.
 * - Requests to one object apply in issue order: an asynchronous write applies when it is issued, and only its
 *   acknowledgement (promise, settle hook) waits while `hold` is set, until `release()` or `waitAll()`.
 * - `failWrites`: asynchronous writes issued while set are acknowledged with that error and do not apply.
 * - `startFailure`: asynchronous writes fail to start: the call throws, or returns a rejected promise.
 * - `calls` records every call as `op oid`, in order.
 */
import { ThinpoolError } from '../../src/errors.js';
import type { RadosIoctx } from '../../src/io/librados.js';

export class FakeRadosIo {
  readonly objects = new Map<string, Uint8Array>();
  readonly calls: string[] = [];
  hold = false;
  failWrites: ThinpoolError | null = null;
  startFailure: 'throws' | 'rejects' | null = null;
  readonly #held: Array<() => void> = [];

  /** This fake typed as the I/O context the device takes. */
  get io(): RadosIoctx {
    return this as unknown as RadosIoctx;
  }

  /** Calls of one operation (e.g. 'aioWrite'), in order. */
  callsOf(op: string): string[] {
    return this.calls.filter((c) => c.startsWith(`${op} `));
  }

  /** Acknowledge every held asynchronous request, oldest first. */
  release(): void {
    for (const ack of this.#held.splice(0)) ack();
  }

  read(oid: string, buf: Uint8Array, off: number): number {
    this.calls.push(`read ${oid}`);
    return this.#copyOut(oid, buf, off);
  }

  write(oid: string, buf: Uint8Array, off: number): void {
    this.calls.push(`write ${oid}`);
    this.#apply(oid, buf, off);
  }

  writeFull(oid: string, buf: Uint8Array): void {
    this.calls.push(`writeFull ${oid}`);
    this.objects.set(oid, buf.slice());
  }

  readAll(oid: string): Uint8Array | null {
    return this.objects.get(oid)?.slice() ?? null;
  }

  size(oid: string): number | null {
    return this.objects.get(oid)?.length ?? null;
  }

  remove(oid: string): boolean {
    this.calls.push(`remove ${oid}`);
    return this.objects.delete(oid);
  }

  trunc(oid: string, size: number): boolean {
    this.calls.push(`trunc ${oid}`);
    const o = this.objects.get(oid);
    if (o === undefined) return false;
    const t = new Uint8Array(size);
    t.set(o.subarray(0, size));
    this.objects.set(oid, t);
    return true;
  }

  zero(oid: string, off: number, len: number): void {
    this.calls.push(`zero ${oid}`);
    this.objects.get(oid)?.fill(0, off, off + len);
  }

  aioRead(oid: string, buf: Uint8Array, off: number): Promise<number> {
    this.calls.push(`aioRead ${oid}`);
    const n = this.#copyOut(oid, buf, off);
    return this.#ack(() => n);
  }

  aioWrite(oid: string, buf: Uint8Array, off: number, settle?: (e: ThinpoolError | null) => void): Promise<void> {
    this.calls.push(`aioWrite ${oid}`);
    if (this.startFailure === 'throws') throw new TypeError('the cluster handle is gone');
    if (this.startFailure === 'rejects') return Promise.reject(new ThinpoolError('EIO', `cannot create an aio completion for ${oid}`));
    const failure = this.failWrites;
    if (failure === null) this.#apply(oid, buf, off);
    return this.#ack(() => {
      settle?.(failure);
      if (failure !== null) throw failure;
    });
  }

  waitAll(): void {
    this.release();
  }

  /** A promise of `result()` run at the acknowledgement: now, or at release() while held. */
  #ack<T>(result: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const ack = (): void => {
        try {
          resolve(result());
        } catch (e) {
          reject(e);
        }
      };
      if (this.hold) this.#held.push(ack);
      else ack();
    });
  }

  /** The object's bytes at `off` into buf: how many it had there (the rest of buf untouched). */
  #copyOut(oid: string, buf: Uint8Array, off: number): number {
    const o = this.objects.get(oid);
    if (o === undefined || off >= o.length) return 0;
    const n = Math.min(buf.length, o.length - off);
    buf.set(o.subarray(off, off + n));
    return n;
  }

  #apply(oid: string, buf: Uint8Array, off: number): void {
    const o = this.objects.get(oid) ?? new Uint8Array(0);
    const grown = new Uint8Array(Math.max(o.length, off + buf.length));
    grown.set(o);
    grown.set(buf, off);
    this.objects.set(oid, grown);
  }
}
