/**
 * The optional native helper (native/thinpool_native.c): punch hole and SEEK_DATA/SEEK_HOLE, which node:fs
 * lacks; blocking mode and pipe size of a file descriptor (the CLI's bulk paths); copy_file_range and
 * FICLONERANGE (copy-on-write copies); sendfile (the CLI's read); pread/pwrite (the file device's requests). Null when it was not built (no compiler at install time): callers fall
 * back. The later functions are optional too: a helper built from an older source lacks them.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface NativeHelpers {
  /** 0 or -errno. */
  punchHole(fd: number, offset: number, length: number): number;
  /** whence 0 = SEEK_DATA, 1 = SEEK_HOLE; the offset found or -errno (-ENXIO: no data at or after). */
  seek(fd: number, offset: number, whence: 0 | 1): number;
  /** on 1: clear O_NONBLOCK, 0: set it (numbers: the helper reads its arguments as integers); the previous state (1 non-blocking, 0 blocking) or -errno. */
  setBlocking?(fd: number, on: 0 | 1): number;
  /** Ask for a pipe capacity of `bytes` (F_SETPIPE_SZ, best effort); the capacity after, or -errno (not a pipe). */
  pipeSize?(fd: number, bytes: number): number;
  /** One copy_file_range(2): bytes copied (0 at the end of the input) or -errno. */
  copyRange?(fdIn: number, offIn: number, fdOut: number, offOut: number, length: number): number;
  /** One sendfile(2) from fdIn at offIn to fdOut at its position: bytes sent (0 at the end of the input) or -errno. */
  sendFile?(fdOut: number, fdIn: number, offIn: number, length: number): number;
  /**
   * One pread(2) / pwrite(2) over the whole typed array at `position`: bytes transferred (short at the end of
   * the file) or -errno. No argument checks: the caller has checked the range.
   */
  pread?(fd: number, view: Uint8Array, position: number): number;
  pwrite?(fd: number, view: Uint8Array, position: number): number;
  /** sync_file_range(SYNC_FILE_RANGE_WRITE): start writing the range's dirty pages back, without waiting; 0 or -errno. */
  startWriteBack?(fd: number, offset: number, length: number): number;
  /** FICLONERANGE: the destination range shares the source's extents; 0 or -errno. */
  cloneRange?(fdSrc: number, offSrc: number, fdDst: number, offDst: number, length: number): number;
  /**
   * librados completions straight into the event loop (native/rados_aio.c). Init once librados.so.2 is loaded:
   * 0, -ENOENT (librados not loaded) or -EBUSY (another thread's environment registered first); `done` gets
   * pairs (token, rc) of completed requests. Start: 0 or librados's -errno (then no completion comes); the
   * view must stay alive until its token is reported. Drain: blocks until every started request completed,
   * and returns their pairs.
   */
  radosAioInit?(done: (pairs: Int32Array) => void): number;
  radosAioStart?(write: 0 | 1, ioctx: bigint, oid: string, view: Uint8Array, offset: number, token: number): number;
  radosAioDrain?(): Int32Array;
}

let cached: NativeHelpers | null | undefined;

export function nativeHelpers(): NativeHelpers | null {
  if (cached !== undefined) return cached;
  cached = null;
  if (process.env.THINPOOL_NO_NATIVE === '1') return cached;
  const require = createRequire(import.meta.url);
  for (const rel of ['../../native/build/Release/thinpool_native.node', '../../../native/build/Release/thinpool_native.node']) {
    const path = fileURLToPath(new URL(rel, import.meta.url));
    if (!existsSync(path)) continue;
    try {
      cached = require(path) as NativeHelpers;
      break;
    } catch {
      // a stale build for another Node ABI: fall back
    }
  }
  return cached;
}
