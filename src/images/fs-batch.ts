/**
 * Filesystem calls sent to the ext2fs worker without waiting for each answer, so this thread reads, hashes
 * and parses the next entries of a layer while the worker applies the previous ones.
 *
 * Contract:
 * - The calls run in the worker one at a time, in the order they were sent (as every call does). They are
 *   chained: once one fails, the worker skips every later chained call (answered ECANCELED without running)
 *   until an unchained call arrives; so nothing sent after a failed call is applied.
 * - `settle()` waits for every call sent and throws the first failure, in the order sent (the error a caller
 *   waiting for each call would have seen). `room()` waits until at most MAX_BYTES of file data and MAX_CALLS
 *   calls are in flight, and throws the first failure once one is known.
 * - On a read-only session the changing calls throw EROFS (as FsSession's do) and send nothing.
 * - File data whose view covers its whole buffer is transferred to the worker, not copied: the caller must
 *   not use it afterwards. Cheaper still: `reserve(n)` gives n bytes of the data ring (memory the worker
 *   shares, reused: no fresh memory, no transfer) that no call in flight uses; the caller fills them and
 *   passes them to the next `putShared` or `writeShared`, which must come before the next `reserve`. The
 *   ring's bytes in flight count in MAX_BYTES.
 * - The answer callbacks (`then`) run in the order sent; one that throws counts as that call's failure.
 */
import { CHUNK, type FsStat, type PutEntry, type PutResult } from './fs-protocol.js';

const MAX_BYTES = 16 * 1024 * 1024;
const MAX_CALLS = 512;
/** Size of a session's data ring (BatchTarget.ring). */
export const RING_BYTES = MAX_BYTES + 2 * CHUNK;

/** What a batch needs of a session (FsSession, fs-worker.ts, is one). */
export interface BatchTarget {
  /** Post one call; `chain`: skipped by the worker after a failed chained call; `transfer`: moved, not copied. */
  send<T>(op: string, args: unknown[], chain: boolean, transfer?: ArrayBuffer[]): Promise<T>;
  /** Throws EROFS when the session is read-only. */
  mustWrite(what: string): void;
  /** RING_BYTES of memory the worker shares (attached before any call of this batch). */
  ring(): Uint8Array;
}

interface Sent {
  done: Promise<void>;
  bytes: number;
  /** Bytes of the data ring it holds (its data and the end of the ring skipped before it). */
  ring: number;
}

export class FsBatch {
  private readonly fs: BatchTarget;
  private readonly sent: Sent[] = [];
  private bytes = 0;
  private failure: { error: unknown } | null = null;
  /** The data ring: next free byte, bytes held by calls in flight, the reservation not yet sent. */
  private head = 0;
  private ringUsed = 0;
  private reserved: { at: number; length: number; ring: number } | null = null;

  constructor(fs: BatchTarget) {
    this.fs = fs;
  }

  private track<T>(p: Promise<T>, bytes: number, then?: (v: T) => void, ring = 0): Promise<T> {
    const done = p.then(
      (v) => {
        if (this.failure !== null) return;
        try {
          then?.(v);
        } catch (e) {
          this.failure = { error: e };
        }
      },
      (e: unknown) => {
        this.failure ??= { error: e };
      },
    );
    this.sent.push({ done, bytes, ring });
    this.bytes += bytes;
    this.ringUsed += ring;
    return p; // handled: `done` holds its rejection
  }

  /** Wait for the oldest call in flight; false when none is. */
  private async retireOldest(): Promise<boolean> {
    const s = this.sent.shift();
    if (!s) return false;
    await s.done;
    this.bytes -= s.bytes;
    this.ringUsed -= s.ring;
    return true;
  }

  /**
   * n bytes (at most CHUNK) of the data ring for the next putShared or writeShared; waits for the oldest
   * calls until no call in flight uses them. Throws the first failure once known.
   */
  async reserve(n: number): Promise<Uint8Array> {
    if (n > CHUNK) throw new RangeError(`FsBatch.reserve: ${n} bytes, more than ${CHUNK}`);
    const mem = this.fs.ring();
    const wrap = this.head + n > mem.length; // then the end of the ring is skipped (none of it when head is there)
    const skip = wrap ? mem.length - this.head : 0;
    const at = wrap ? 0 : this.head;
    while (this.ringUsed + skip + n > mem.length && (await this.retireOldest())) this.throwIfFailed();
    this.throwIfFailed();
    this.head = at + n;
    this.reserved = { at, length: n, ring: skip + n };
    return mem.subarray(at, at + n);
  }

  private take(data: Uint8Array): { at: number; length: number; ring: number } {
    const r = this.reserved;
    this.reserved = null;
    const mem = this.fs.ring();
    if (!r || data.buffer !== mem.buffer || data.byteOffset !== mem.byteOffset + r.at || data.length !== r.length)
      throw new RangeError('FsBatch: shared data must be the view the last reserve() gave');
    return r;
  }

  /** put() of a file whose whole content is the view the last reserve() gave. */
  putShared(e: Omit<PutEntry, 'data' | 'dataAt' | 'dataLength'>, data: Uint8Array, then?: (r: PutResult) => void): void {
    this.fs.mustWrite(`write ${e.path}`);
    const r = this.take(data);
    void this.send<PutResult>('put', [{ ...e, dataAt: r.at, dataLength: r.length }], undefined, then, r);
  }

  /** write() of the view the last reserve() gave, at pos of an open handle. */
  writeShared(fd: number, data: Uint8Array, pos: number): void {
    this.fs.mustWrite('write');
    const r = this.take(data);
    void this.send<number>('writeShared', [fd, r.at, r.length, pos], undefined, undefined, r);
  }

  private send<T>(
    op: string,
    args: unknown[],
    data?: Uint8Array,
    then?: (v: T) => void,
    shared?: { length: number; ring: number },
  ): Promise<T> {
    const bytes = data?.byteLength ?? shared?.length ?? 0;
    const whole = data !== undefined && bytes > 0 && data.byteOffset === 0 && bytes === data.buffer.byteLength;
    const p = this.fs.send<T>(op, args, true, whole ? [data.buffer as ArrayBuffer] : []);
    return this.track(p, bytes, then, shared?.ring);
  }

  /** Create or replace one entry (see FsSession.put); `then` gets its result. */
  put(e: PutEntry, then?: (r: PutResult) => void): void {
    this.fs.mustWrite(`write ${e.path}`);
    void this.send<PutResult>('put', [e], e.data, then);
  }

  /** Like put, waiting for the answer (and so for every call sent before it). */
  async putNow(e: PutEntry): Promise<PutResult> {
    this.fs.mustWrite(`write ${e.path}`);
    return this.send<PutResult>('put', [e], e.data);
  }

  lstatNow(path: string): Promise<FsStat | null> {
    return this.send<FsStat | null>('lstat', [path]);
  }

  /** Write at most CHUNK bytes at pos of an open handle. */
  write(fd: number, data: Uint8Array, pos: number): void {
    this.fs.mustWrite('write');
    if (data.length > CHUNK) throw new RangeError(`FsBatch.write: ${data.length} bytes, more than ${CHUNK}`);
    void this.send<number>('write', [fd, data, pos], data);
  }

  close(fd: number): void {
    void this.send<boolean>('close', [fd]);
  }

  rmrf(path: string): void {
    this.fs.mustWrite(`remove ${path}`);
    void this.send<boolean>('rmrf', [path]);
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure.error;
  }

  /** Wait for the oldest calls until few enough are in flight; throws the first failure once known. */
  async room(): Promise<void> {
    this.throwIfFailed();
    while (this.sent.length > MAX_CALLS || this.bytes > MAX_BYTES) {
      if (!(await this.retireOldest())) break;
      this.throwIfFailed();
    }
  }

  /** Wait for every call sent; throws the first failure, in the order sent. */
  async settle(): Promise<void> {
    while (this.sent.length > 0) await this.sent.shift()!.done;
    this.bytes = 0;
    this.ringUsed = 0;
    this.throwIfFailed();
  }
}
