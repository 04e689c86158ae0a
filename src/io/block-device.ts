/**
 * The block-device interface: the lowest layer. Everything above (block cache, data I/O of volumes) reads and
 * writes through it, and tests substitute memory, crash-simulating, fault-injecting and recording devices.
 *
 * Contract:
 * - All calls are synchronous. Offsets and lengths are in bytes; any alignment is allowed unless the
 *   implementation says otherwise (the engine issues 4 KiB-aligned metadata I/O and arbitrary data I/O).
 * - `read` fills `buf` completely. Bytes never written, or beyond `sizeBytes`, read as zeros.
 * - `write` stores `buf` at `offsetBytes`; a write past `sizeBytes` grows the device (files stay sparse).
 *   A write is durable only after a later `flush` returns: a crash may lose it, keep it, or tear it at 512-byte
 *   sector granularity.
 * - `flush` makes every write that returned before it durable (fdatasync for files).
 * - `resize` sets `sizeBytes`; growing leaves holes (zeros), shrinking drops the tail.
 * - Failures throw `ThinpoolError` with code `EIO` (or the typed error of the device); after `close` every call
 *   throws.
 */
export interface BlockDevice {
  /** Current size in bytes. */
  readonly sizeBytes: number;
  read(buf: Uint8Array, offsetBytes: number): void;
  write(buf: Uint8Array, offsetBytes: number): void;
  flush(): void;
  resize(sizeBytes: number): void;
  /**
   * Release `lengthBytes` at `offsetBytes` to the host (hole punching) where the implementation can; afterwards
   * the range reads as zeros. Returns false when the device cannot release space (the range is then unchanged).
   */
  discard(offsetBytes: number, lengthBytes: number): boolean;
  /**
   * Optional: copy `lengthBytes` from `srcBytes` to `dstBytes` inside this device (the ranges must not overlap),
   * with the rules of a `write` of those bytes at `dstBytes` (durable after a later `flush`; a crash may lose,
   * keep or tear it). Says how: `clone` (the host file system now shares the extents: nothing was copied),
   * `copy` (copied inside the kernel), `read-write` (through a buffer). Without it callers read and write.
   */
  copyWithin?(srcBytes: number, dstBytes: number, lengthBytes: number): CopyPath;
  /**
   * Optional: send bytes [offsetBytes, offsetBytes + lengthBytes) to the file descriptor `outFd` at its current
   * position inside the kernel (no copy through user space). Returns the bytes sent (fewer only where the
   * device's backing ends: the rest reads as zeros), or null when it cannot serve that descriptor (nothing sent).
   */
  sendTo?(outFd: number, offsetBytes: number, lengthBytes: number): number | null;
  /**
   * Optional hint for bulk writers: once `bytes` have been written since the last time, start writing them back
   * to stable storage without waiting (0: off). Durability is unchanged: only `flush` promises it. A device may
   * also flush behind the writer (FileDevice: an fdatasync on a thread every few starts); an error met there is
   * thrown by its next `flush`. Returns the threshold it replaces.
   */
  writeBehind?(bytes: number): number;
  close(): void;
}

/** How `copyWithin` copied a range (see BlockDevice.copyWithin). */
export type CopyPath = 'clone' | 'copy' | 'read-write';

/**
 * A device that can also have many requests in flight (a network device). `readAsync`/`writeAsync` follow the
 * same rules as `read`/`write`; requests to the same bytes are applied in the order they were issued, sync or
 * async; `flush` (synchronous) returns only when every write issued before it, async ones included, is durable.
 */
export interface AsyncBlockDevice extends BlockDevice {
  readAsync(buf: Uint8Array, offsetBytes: number): Promise<void>;
  writeAsync(buf: Uint8Array, offsetBytes: number): Promise<void>;
  /**
   * Write-back: how many bytes of writes `writeAsync` may have answered before the device has them (librbd's
   * cache); 0 when every write is answered only once it is there. `flush` waits for them either way.
   */
  readonly writeBackBytes: number;
}

export function isAsyncDevice(dev: BlockDevice): dev is AsyncBlockDevice {
  return (
    typeof (dev as Partial<AsyncBlockDevice>).readAsync === 'function' &&
    typeof (dev as Partial<AsyncBlockDevice>).writeAsync === 'function'
  );
}

const DONE: Promise<void> = Promise.resolve();

/**
 * One promise for the parts of an asynchronous request, fulfilled when all are (rejected with the first
 * rejection). The common request is one part: that part's own promise is returned, without Promise.all's extra
 * promise, closures and microtask turns on the per-request path.
 */
export function allParts(parts: Array<Promise<void>>): Promise<void> {
  if (parts.length === 1) return parts[0];
  if (parts.length === 0) return DONE;
  return Promise.all(parts).then(() => undefined);
}

/**
 * Run the synchronous start of an asynchronous request: what it throws becomes the returned promise's
 * rejection, as an `async` function would make it, without an async function's own promise and resumption.
 */
export function started(start: () => Promise<void>): Promise<void> {
  try {
    return start();
  } catch (e) {
    return Promise.reject(e);
  }
}

/**
 * The write-behind threshold bulk writers set (import, write from a stream, image import): the disk writes while
 * they copy, and the final commit's flush waits for less. Measured on a 1 GiB import holding 256 MiB of data
 * (interleaved runs, 2 cores): the final fdatasync took 0.14-0.19 s instead of 0.19-0.24 s on a quiet machine,
 * and the whole import 25-35 % less wall time at load 4; the disk, not the copy, sets the rest.
 */
export const BULK_WRITE_BEHIND = 8 * 1024 * 1024;

let copyScratch: Uint8Array | null = null;

/**
 * Copy `lengthBytes` from `srcBytes` to `dstBytes` inside `dev` (ranges must not overlap): through the device's
 * copyWithin when it has one (a file device shares the extents or copies inside the kernel), else read and
 * written through a buffer of at most 1 MiB. The same rules as a write of those bytes at `dstBytes`.
 */
export function copyInside(dev: BlockDevice, srcBytes: number, dstBytes: number, lengthBytes: number): void {
  if (dev.copyWithin !== undefined) {
    dev.copyWithin(srcBytes, dstBytes, lengthBytes);
    return;
  }
  const buf = (copyScratch ??= new Uint8Array(1024 * 1024));
  for (let off = 0; off < lengthBytes; off += buf.length) {
    const part = buf.subarray(0, Math.min(buf.length, lengthBytes - off));
    dev.read(part, srcBytes + off);
    dev.write(part, dstBytes + off);
  }
}
