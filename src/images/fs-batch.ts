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
 *   not use it afterwards.
 * - The answer callbacks (`then`) run in the order sent; one that throws counts as that call's failure.
 */
import { CHUNK, type FsStat, type PutEntry, type PutResult } from './fs-protocol.js';

const MAX_BYTES = 16 * 1024 * 1024;
const MAX_CALLS = 512;

/** What a batch needs of a session (FsSession, fs-worker.ts, is one). */
export interface BatchTarget {
  /** Post one call; `chain`: skipped by the worker after a failed chained call; `transfer`: moved, not copied. */
  send<T>(op: string, args: unknown[], chain: boolean, transfer?: ArrayBuffer[]): Promise<T>;
  /** Throws EROFS when the session is read-only. */
  mustWrite(what: string): void;
}

interface Sent {
  done: Promise<void>;
  bytes: number;
}

export class FsBatch {
  private readonly fs: BatchTarget;
  private readonly sent: Sent[] = [];
  private bytes = 0;
  private failure: { error: unknown } | null = null;

  constructor(fs: BatchTarget) {
    this.fs = fs;
  }

  private track<T>(p: Promise<T>, bytes: number, then?: (v: T) => void): Promise<T> {
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
    this.sent.push({ done, bytes });
    this.bytes += bytes;
    return p; // handled: `done` holds its rejection
  }

  private send<T>(op: string, args: unknown[], data?: Uint8Array, then?: (v: T) => void): Promise<T> {
    const bytes = data?.byteLength ?? 0;
    const whole = data !== undefined && bytes > 0 && data.byteOffset === 0 && bytes === data.buffer.byteLength;
    const p = this.fs.send<T>(op, args, true, whole ? [data.buffer as ArrayBuffer] : []);
    return this.track(p, bytes, then);
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
    while (this.sent.length > MAX_CALLS || (this.bytes > MAX_BYTES && this.sent.length > 0)) {
      const s = this.sent.shift()!;
      await s.done;
      this.bytes -= s.bytes;
      this.throwIfFailed();
    }
  }

  /** Wait for every call sent; throws the first failure, in the order sent. */
  async settle(): Promise<void> {
    while (this.sent.length > 0) await this.sent.shift()!.done;
    this.bytes = 0;
    this.throwIfFailed();
  }
}
