/**
 * A `BlockDevice` striped over RADOS objects: byte `o` lives in object `PREFIX.<o / objectSize in 16 hex
 * digits>` at offset `o % objectSize`. A descriptor object named `PREFIX` holds the device's size and object
 * size (JSON), so a device opens from its prefix alone.
 *
 * Contract (beyond `BlockDevice`):
 * - Sparse: a missing object, or bytes past an object's end, read as zeros; zeros are stored as written.
 * - Every write is acknowledged by the cluster (durable on the OSDs) when `write` returns; `writeAsync` when its
 *   promise resolves. `flush` waits for every asynchronous request in flight, then records a size grown by
 *   writes past the end (sizes are also recorded by `resize` at once).
 * - `readAsync`/`writeAsync` go through librados aio (many requests in flight). Requests to one object are
 *   applied in issue order, sync or async, so a read or copy after a write sees it.
 * - Write-back (`writeBackBytes` > 0, as librbd's cache): `writeAsync` resolves once its bytes are copied and
 *   queued, not acknowledged, while at most `writeBackBytes` of such writes are unacknowledged (past that it
 *   sends the queue and waits for the oldest). The queue is sent at the next turn of the event loop, or before
 *   any other request of the device, whichever comes first: the NBD reply to a write goes out before librados
 *   is asked (about 9 % more QD1 writes through `serve --write-back`, docs/rados.md), and a later read or write
 *   is issued after it (issue order per object), so it sees the bytes. `flush` waits for all of them. The
 *   first that fails makes the device failed: `flush`, `write` and `writeAsync` throw that error from then on
 *   (nothing the caller was told was written may be committed as if it were), until the device is reopened.
 *   Off (0) by default: every write is acknowledged by the cluster when it returns.
 * - `discard` always succeeds: wholly covered objects are removed, partly covered ranges zeroed in place.
 * - Shrinking removes the objects past the new end and truncates the one across it: no object holds bytes at
 *   or beyond `sizeBytes` (so growing again exposes zeros).
 * - Cluster errors are ThinpoolErrors: EIO (with "timed out" for a dead OSD), EFENCED for a blocklisted client.
 * - The device does not own the I/O context: `close` leaves it open.
 */
import { ThinpoolError } from '../errors.js';
import { type AsyncBlockDevice, allParts, started } from './block-device.js';
import type { RadosIoctx } from './librados.js';
import { checkRange, checkSize } from './memory-device.js';

export const DEFAULT_OBJECT_BYTES = 4 * 1024 * 1024;

interface Descriptor {
  format: 'thinpool-rados-device';
  version: 1;
  sizeBytes: number;
  objectSize: number;
}

export interface RadosDeviceOptions {
  /** Bytes per RADOS object: a power of two from 4 KiB to 64 MiB. Default 4 MiB. Fixed at create. */
  objectSize?: number;
  /** Write-back: bytes of `writeAsync` data that may be unacknowledged (see the contract). Default 0: off. */
  writeBackBytes?: number;
}

function checkWriteBack(n: number): number {
  if (!Number.isSafeInteger(n) || n < 0)
    throw new ThinpoolError('EINVAL', `write-back size ${n} must be a whole number of bytes, 0 or more`);
  return n;
}

function checkObjectSize(n: number): void {
  if (!Number.isSafeInteger(n) || n < 4096 || n > 64 * 1024 * 1024 || (n & (n - 1)) !== 0) {
    throw new ThinpoolError('EINVAL', `RADOS object size ${n} must be a power of two from 4 KiB to 64 MiB`);
  }
}

function readDescriptor(io: RadosIoctx, prefix: string): Descriptor | null {
  const raw = io.readAll(prefix);
  if (raw === null) return null;
  try {
    const d = JSON.parse(Buffer.from(raw).toString('utf8')) as Descriptor;
    if (d.format !== 'thinpool-rados-device' || !Number.isSafeInteger(d.sizeBytes)) throw new Error('not a device descriptor');
    checkObjectSize(d.objectSize);
    return d;
  } catch (e) {
    throw new ThinpoolError('ECORRUPT', `RADOS object ${prefix} is not a thinpool device descriptor: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

export class RadosDevice implements AsyncBlockDevice {
  readonly io: RadosIoctx;
  readonly prefix: string;
  readonly objectSize: number;
  readonly readOnly: boolean;
  /** Write-back bound in bytes (0: off). */
  readonly writeBackBytes: number;
  #size: number;
  #recordedSize: number;
  #closed = false;
  /** Write-back: bytes sent and not yet acknowledged, and the writes behind them, oldest first. */
  #unacked = 0;
  readonly #behind: Array<{ settled: boolean; acked: Promise<void> }> = [];
  /**
   * Write-back: writes reported done and not sent yet, oldest first (their own copy of the bytes). Sent at the
   * next turn of the event loop, or before any other request of this device, whichever comes first: so the
   * reply to a write goes out before librados is asked, and issue order per object holds.
   */
  readonly #queued: Array<{ name: string; data: Uint8Array; within: number; entry: { settled: boolean; acked: Promise<void> } }> = [];
  #sendScheduled = false;
  /** Write-back: the first failure of a write already reported as done (sticky: see the contract). */
  #failed: ThinpoolError | null = null;

  private constructor(io: RadosIoctx, prefix: string, d: Descriptor, readOnly: boolean, writeBackBytes: number) {
    this.io = io;
    this.prefix = prefix;
    this.objectSize = d.objectSize;
    this.#size = d.sizeBytes;
    this.#recordedSize = d.sizeBytes;
    this.readOnly = readOnly;
    this.writeBackBytes = readOnly ? 0 : checkWriteBack(writeBackBytes);
  }

  /** A new, empty device of sizeBytes; EEXIST when the descriptor object exists. */
  static create(io: RadosIoctx, prefix: string, sizeBytes: number, opts: RadosDeviceOptions = {}): RadosDevice {
    checkSize(sizeBytes);
    const objectSize = opts.objectSize ?? DEFAULT_OBJECT_BYTES;
    checkObjectSize(objectSize);
    checkWriteBack(opts.writeBackBytes ?? 0);
    if (io.size(prefix) !== null) throw new ThinpoolError('EEXIST', `RADOS object ${prefix} exists: a device is already there`);
    const d: Descriptor = { format: 'thinpool-rados-device', version: 1, sizeBytes, objectSize };
    io.writeFull(prefix, Buffer.from(JSON.stringify(d)));
    return new RadosDevice(io, prefix, d, false, opts.writeBackBytes ?? 0);
  }

  static open(io: RadosIoctx, prefix: string, opts: { readOnly?: boolean; writeBackBytes?: number } = {}): RadosDevice {
    checkWriteBack(opts.writeBackBytes ?? 0);
    const d = readDescriptor(io, prefix);
    if (d === null) throw new ThinpoolError('ENOENT', `no RADOS device ${prefix} (its descriptor object is missing)`);
    return new RadosDevice(io, prefix, d, opts.readOnly === true, opts.writeBackBytes ?? 0);
  }

  /** Write-back: bytes of writes reported done that the cluster has not acknowledged yet. */
  get unacknowledgedBytes(): number {
    return this.#unacked;
  }

  /** True when a device descriptor exists under prefix. */
  static exists(io: RadosIoctx, prefix: string): boolean {
    return io.size(prefix) !== null;
  }

  /** Remove every object of the device and its descriptor. */
  static destroy(io: RadosIoctx, prefix: string): void {
    const d = readDescriptor(io, prefix);
    if (d === null) return;
    const n = Math.ceil(d.sizeBytes / d.objectSize);
    for (let i = 0; i < n; i++) io.remove(objectName(prefix, i));
    io.remove(prefix);
  }

  get sizeBytes(): number {
    return this.#size;
  }

  read(buf: Uint8Array, offsetBytes: number): void {
    this.#checkOpen();
    this.#send();
    checkRange(offsetBytes, buf.length);
    this.#pieces(offsetBytes, buf.length, (index, within, at, n) => {
      const part = buf.subarray(at, at + n);
      const got = index * this.objectSize >= this.#size ? 0 : this.io.read(this.#name(index), part, within);
      if (got < n) part.fill(0, got);
    });
  }

  write(buf: Uint8Array, offsetBytes: number): void {
    this.#checkWritable();
    this.#send();
    checkRange(offsetBytes, buf.length);
    if (buf.length === 0) return;
    this.#pieces(offsetBytes, buf.length, (index, within, at, n) => {
      this.io.write(this.#name(index), buf.subarray(at, at + n), within);
    });
    if (offsetBytes + buf.length > this.#size) this.#size = offsetBytes + buf.length;
  }

  readAsync(buf: Uint8Array, offsetBytes: number): Promise<void> {
    return started(() => {
      this.#checkOpen();
      checkRange(offsetBytes, buf.length);
      const parts: Array<Promise<void>> = [];
      this.#send();
      this.#pieces(offsetBytes, buf.length, (index, within, at, n) => {
        const part = buf.subarray(at, at + n);
        if (index * this.objectSize >= this.#size) part.fill(0);
        else
          parts.push(
            this.io.aioRead(this.#name(index), part, within).then((got) => {
              if (got < n) part.fill(0, got);
            }),
          );
      });
      return allParts(parts);
    });
  }

  async writeAsync(buf: Uint8Array, offsetBytes: number): Promise<void> {
    this.#checkWritable();
    checkRange(offsetBytes, buf.length);
    if (buf.length === 0) return;
    const parts: Array<Promise<void>> = [];
    const behind = this.writeBackBytes > 0;
    this.#pieces(offsetBytes, buf.length, (index, within, at, n) => {
      const part = buf.subarray(at, at + n);
      if (!behind) {
        parts.push(this.io.aioWrite(this.#name(index), part, within));
        return;
      }
      this.#unacked += n;
      const entry = { settled: false, acked: Promise.resolve() };
      this.#queued.push({ name: this.#name(index), data: part.slice(), within, entry });
      this.#behind.push(entry);
    });
    if (behind && !this.#sendScheduled) {
      this.#sendScheduled = true;
      setImmediate(() => {
        this.#sendScheduled = false;
        this.#send();
      });
    }
    if (offsetBytes + buf.length > this.#size) this.#size = offsetBytes + buf.length;
    if (!behind) {
      await Promise.all(parts);
      return;
    }
    // Past the bound, send what is queued and wait for the oldest writes (each entry resolves once acknowledged
    // or failed).
    if (this.#unacked > this.writeBackBytes) this.#send();
    for (;;) {
      while (this.#behind.length > 0 && this.#behind[0].settled) this.#behind.shift();
      if (this.#unacked <= this.writeBackBytes || this.#behind.length === 0) break;
      await this.#behind[0].acked;
    }
    if (this.#failed !== null) throw this.#failed;
  }

  /**
   * Send the queued write-back writes. Acknowledged later: the settle hook (run synchronously when the
   * completion is found, also inside a flush's waitAll) keeps the count and the first failure, once per write;
   * a request that fails to start (thrown, or rejected without a completion) counts as such a failure, so
   * nothing is left counted as in flight and nothing throws out of the event loop's turn.
   */
  #send(): void {
    if (this.#queued.length === 0) return;
    const q = this.#queued.splice(0);
    for (const { name, data, within, entry } of q) {
      const done = (e: ThinpoolError | null): void => {
        if (entry.settled) return;
        entry.settled = true;
        this.#unacked -= data.length;
        if (e !== null) this.#failed ??= e;
      };
      let sent: Promise<void>;
      try {
        sent = this.io.aioWrite(name, data, within, done);
      } catch (e) {
        sent = Promise.reject(e);
      }
      entry.acked = sent.then(
        () => done(null),
        (e: unknown) =>
          done(e instanceof ThinpoolError ? e : new ThinpoolError('EIO', `write to RADOS object ${name} could not start: ${String(e)}`)),
      );
    }
  }

  flush(): void {
    this.#checkOpen();
    this.#send();
    this.io.waitAll();
    this.#behind.length = 0;
    if (this.#failed !== null) throw this.#failed;
    if (!this.readOnly && this.#size !== this.#recordedSize) this.#recordSize();
  }

  resize(sizeBytes: number): void {
    this.#checkWritable();
    this.#send();
    checkSize(sizeBytes);
    if (sizeBytes < this.#size) this.#zero(sizeBytes, this.#size, true);
    this.#size = sizeBytes;
    this.#recordSize();
  }

  discard(offsetBytes: number, lengthBytes: number): boolean {
    this.#checkWritable();
    this.#send();
    checkRange(offsetBytes, lengthBytes);
    this.#zero(offsetBytes, Math.min(offsetBytes + lengthBytes, this.#size), false);
    return true;
  }

  close(): void {
    this.#checkOpen();
    this.#send();
    this.io.waitAll();
    this.#closed = true;
  }

  /** Objects of the device that hold data now (for tests and status). */
  objectCount(): number {
    this.#send();
    let n = 0;
    const count = Math.ceil(this.#size / this.objectSize);
    for (let i = 0; i < count; i++) if (this.io.size(this.#name(i)) !== null) n++;
    return n;
  }

  /** Zero [start, end): whole objects removed, partial ranges zeroed (truncated when `tail`: nothing past end). */
  #zero(start: number, end: number, tail: boolean): void {
    if (start >= end) return;
    this.#pieces(start, end - start, (index, within, _at, n) => {
      const name = this.#name(index);
      if (within === 0 && (n === this.objectSize || tail)) this.io.remove(name);
      else if (tail)
        this.io.trunc(name, within); // nothing is stored past the old end
      else this.io.zero(name, within, n);
    });
  }

  #recordSize(): void {
    const d: Descriptor = { format: 'thinpool-rados-device', version: 1, sizeBytes: this.#size, objectSize: this.objectSize };
    this.io.writeFull(this.prefix, Buffer.from(JSON.stringify(d)));
    this.#recordedSize = this.#size;
  }

  /** Calls fn(objectIndex, offsetInObject, offsetInRange, length) for each object piece of the range. */
  #pieces(offset: number, length: number, fn: (index: number, within: number, at: number, n: number) => void): void {
    const os = this.objectSize;
    const end = offset + length;
    for (let pos = offset; pos < end; ) {
      const index = Math.floor(pos / os);
      const within = pos - index * os;
      const n = Math.min(os - within, end - pos);
      fn(index, within, pos - offset, n);
      pos += n;
    }
  }

  #name(index: number): string {
    return objectName(this.prefix, index);
  }

  #checkOpen(): void {
    if (this.#closed) throw new ThinpoolError('ECLOSED', `RADOS device ${this.prefix} is closed`);
  }

  #checkWritable(): void {
    this.#checkOpen();
    if (this.readOnly) throw new ThinpoolError('EROFS', `RADOS device ${this.prefix} is open read-only`);
    if (this.#failed !== null) throw this.#failed;
  }
}

/** Name of object `index` of the device at prefix. */
export function objectName(prefix: string, index: number): string {
  return `${prefix}.${index.toString(16).padStart(16, '0')}`;
}
