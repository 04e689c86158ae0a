/**
 * Sparse files and bulk streams at the file-descriptor level: where a file holds data, zero tests at memory
 * speed, and reads and writes of whole buffers on descriptors that may be pipes.
 *
 * Contract:
 * - `dataRanges(fd, from, to)` returns sorted, disjoint, non-empty [start, end) ranges inside [from, to) that
 *   cover every byte of the file there that may be non-zero (SEEK_DATA/SEEK_HOLE through the native helper).
 *   Bytes outside them are holes and read as zeros. Without the helper, or on a file system without
 *   SEEK_DATA, the whole of [from, to) is one range: callers stay correct, only slower.
 * - `isZero` compares against a shared zero buffer with memcmp (no per-byte JavaScript loop).
 * - `copyNonZero(fd, size, piece, write)` hands every piece of the file's first `size` bytes that is not all
 *   zeros to `write` (pieces aligned to `piece` bytes; holes never read). What is not handed over is zeros.
 * - `readFull` fills a buffer from a descriptor until it is full or at end of input (pipes return short reads).
 * - `writeFull` writes a whole buffer in calls of at most WRITE_PIECE bytes: page-cache writes from one large
 *   user buffer in one call measured several times slower (in the kernel's copy from user space,
 *   copy_folio_from_iter_atomic) than the same bytes in smaller calls on the virtual machines this runs on; the
 *   extra calls cost nothing measurable elsewhere. 128 KiB, as the bulk commands' batches (COPY_BUFFER):
 *   bench/bulk/buffer-size.ts.
 * - `makeBlocking` clears O_NONBLOCK on a descriptor (Node sets it on the pipes it opens as streams), so that
 *   plain reads and writes wait instead of failing with EAGAIN.
 */
import { readSync, writeSync } from 'node:fs';
import { nativeHelpers } from './native.js';

const ENXIO = 6;
/** Most bytes one write call is given (see the contract). */
export const WRITE_PIECE = 128 * 1024;
const ZERO = new Uint8Array(1024 * 1024);

/** The ranges of [from, to) of the file that may hold data (see the contract). */
export function dataRanges(fd: number, from: number, to: number): Array<[number, number]> {
  if (to <= from) return [];
  const native = nativeHelpers();
  if (!native) return [[from, to]];
  const out: Array<[number, number]> = [];
  let pos = from;
  while (pos < to) {
    const start = native.seek(fd, pos, 0);
    if (start === -ENXIO) break; // no data at or after pos
    if (start < 0) return [[from, to]]; // SEEK_DATA not supported here: read it all
    if (start >= to) break;
    const end = native.seek(fd, start, 1);
    const stop = end < 0 ? to : Math.min(end, to);
    if (stop <= start) return [[from, to]]; // a file changing under us: read it all, the caller checks its size
    out.push([start, stop]);
    pos = stop;
  }
  return out;
}

/** True when every byte of buf is zero. */
export function isZero(buf: Uint8Array): boolean {
  for (let off = 0; off < buf.length; off += ZERO.length) {
    const n = Math.min(ZERO.length, buf.length - off);
    if (Buffer.compare(buf.subarray(off, off + n), ZERO.subarray(0, n)) !== 0) return false;
  }
  return true;
}

/**
 * Read the data ranges of the file at fd within [0, size) in 1 MiB reads and call write(part, offset) for each
 * `piece`-aligned piece (the last may be short at size) holding a non-zero byte; `part` is valid only during the
 * call. Used to copy a sparse file (mkfs's image) into a volume that maps only what the file holds.
 */
export function copyNonZero(fd: number, size: number, piece: number, write: (part: Uint8Array, offset: number) => void): void {
  const buf = Buffer.alloc(Math.max(piece, Math.floor((1024 * 1024) / piece) * piece));
  let done = 0; // everything before it has been handed over or was zeros
  for (const [from, to] of dataRanges(fd, 0, size)) {
    for (let pos = Math.max(done, Math.floor(from / piece) * piece); pos < to; pos += buf.length) {
      const n = readFull(fd, buf.subarray(0, Math.min(buf.length, size - pos)), pos);
      if (n === 0) break;
      for (let off = 0; off < n; off += piece) {
        const part = buf.subarray(off, Math.min(n, off + piece));
        if (!isZero(part)) write(part, pos + off);
      }
      done = pos + n;
    }
  }
}

/** A read-only buffer of zeros of at least `n` bytes' worth, for writing holes out (never written to). */
export function zeros(n: number): Uint8Array {
  return ZERO.subarray(0, Math.min(n, ZERO.length));
}

/** Read into buf from fd (at pos, or the current position when pos is null) until full or end of input. */
export function readFull(fd: number, buf: Uint8Array, pos: number | null): number {
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, buf.length - done, pos === null ? null : pos + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** Write all of buf to fd at pos (or the current position when pos is null), WRITE_PIECE bytes a call at most. */
export function writeFull(fd: number, buf: Uint8Array, pos: number | null): void {
  for (let done = 0; done < buf.length; ) {
    done += writeSync(fd, buf, done, Math.min(WRITE_PIECE, buf.length - done), pos === null ? null : pos + done);
  }
}

/**
 * Make fd blocking (Node leaves a pipe it has opened as a stream non-blocking). Returns a function that puts
 * the previous mode back, or null when it cannot be done here (no native helper): the caller then uses the
 * stream instead. For a pipe, also asks for `pipeBytes` of capacity (fewer hand-overs between the processes at
 * its ends, which on a loaded machine cost a scheduling delay each).
 */
export function makeBlocking(fd: number, pipeBytes = 0): (() => void) | null {
  const native = nativeHelpers();
  if (native?.setBlocking === undefined) return null;
  // More than /proc/sys/fs/pipe-max-size (1 MiB by default) needs CAP_SYS_RESOURCE: then settle for 1 MiB.
  if (pipeBytes > 0 && (native.pipeSize?.(fd, pipeBytes) ?? 0) < pipeBytes) native.pipeSize?.(fd, Math.min(pipeBytes, 1024 * 1024));
  const was = native.setBlocking(fd, 1);
  if (was < 0) return null;
  return () => {
    if (was === 1) native.setBlocking?.(fd, 0);
  };
}
