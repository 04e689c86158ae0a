/**
 * A read-only view of a `BlockDevice` that reads ahead, for tools that read committed metadata mostly in block
 * order (`thinpool check`): one request to the device per window of `windowBytes` instead of one per 4 KiB
 * block (a metadata file `thinpool restore` wrote is laid out almost in walk order; at 1 M mappings, 8,000
 * pread calls become about 250).
 *
 * Contract (beyond `BlockDevice`):
 * - `read` returns the bytes the wrapped device returns (zeros past its end). A read that lies inside the window
 *   is copied from it; any other read of at most `windowBytes` refills the window from that offset (as much as
 *   the device holds, at least the read) and is copied from it; a larger read goes straight to the device.
 * - The window is a copy: the wrapped device must not change while the view is used (open it read-only; a
 *   writer elsewhere makes what is read as stale as reading earlier would have).
 * - `write`, `resize` and `discard` throw EROFS; `flush` does nothing (nothing was written).
 * - `close` closes the wrapped device too; after it every call throws ECLOSED.
 */
import { ThinpoolError } from '../errors.js';
import type { BlockDevice } from './block-device.js';
import { checkRange } from './memory-device.js';

/** Default window: 128 KiB (32 metadata blocks). */
export const READ_AHEAD_BYTES = 128 * 1024;

export class ReadAheadDevice implements BlockDevice {
  readonly inner: BlockDevice;
  readonly #window: Uint8Array;
  /** The window holds the device's bytes [#start, #start + #filled). */
  #start = 0;
  #filled = 0;
  #closed = false;
  /** Requests sent to the wrapped device (for tests and statistics). */
  reads = 0;

  constructor(inner: BlockDevice, windowBytes = READ_AHEAD_BYTES) {
    if (!(Number.isSafeInteger(windowBytes) && windowBytes > 0)) {
      throw new ThinpoolError('EINVAL', `bad read-ahead window ${windowBytes} (bytes, > 0)`);
    }
    this.inner = inner;
    this.#window = new Uint8Array(windowBytes);
  }

  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }

  read(buf: Uint8Array, offsetBytes: number): void {
    this.#checkOpen();
    checkRange(offsetBytes, buf.length);
    const len = buf.length;
    const win = this.#window;
    if (len > win.length) {
      this.reads++;
      this.inner.read(buf, offsetBytes);
      return;
    }
    let at = offsetBytes - this.#start;
    if (!(at >= 0 && at + len <= this.#filled)) {
      const n = Math.max(len, Math.min(win.length, this.inner.sizeBytes - offsetBytes));
      this.#filled = 0; // a failed read leaves no window
      this.reads++;
      this.inner.read(n === win.length ? win : win.subarray(0, n), offsetBytes);
      this.#start = offsetBytes;
      this.#filled = n;
      at = 0;
    }
    buf.set(at === 0 && len === win.length ? win : win.subarray(at, at + len));
  }

  write(_buf: Uint8Array, _offsetBytes: number): void {
    this.#checkOpen();
    throw new ThinpoolError('EROFS', 'read-ahead device is read-only');
  }

  flush(): void {
    this.#checkOpen();
  }

  resize(_sizeBytes: number): void {
    this.#checkOpen();
    throw new ThinpoolError('EROFS', 'read-ahead device is read-only');
  }

  discard(_offsetBytes: number, _lengthBytes: number): boolean {
    this.#checkOpen();
    throw new ThinpoolError('EROFS', 'read-ahead device is read-only');
  }

  close(): void {
    this.#checkOpen();
    this.#closed = true;
    this.#filled = 0;
    this.inner.close();
  }

  #checkOpen(): void {
    if (this.#closed) throw new ThinpoolError('ECLOSED', 'read-ahead device is closed');
  }
}
