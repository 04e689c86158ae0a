/**
 * The moving parts of the bulk commands (import, export, read, write): bytes into a volume without touching
 * what needs no touching, and bytes out of one at the speed of the descriptors involved.
 *
 * Contract:
 * - VolumeSink writes bytes at volume positions. A piece of a block that is all zeros and lands on an
 *   unprovisioned block is skipped (the block reads as zeros already and stays unprovisioned); every other piece
 *   is written, consecutive pieces of one call in one volume write (no copy: subarrays of the caller's buffer).
 *   `plan` counts, without writing, the data blocks the same call would provision (unprovisioned blocks that
 *   get data, shared blocks that get anything). `hole` writes zeros only where blocks are provisioned.
 *   Calls for one sink come for disjoint ranges; whether a block is provisioned is what it was when the sink was
 *   made (the sink's own writes are never inside a later call's range). `data` right after `plan` of the same
 *   buffer object and position (its bytes unchanged) reuses the zero tests `plan` made: each block is compared
 *   once.
 * - FileSource reads the data ranges of a regular file (holes are never read) in chunks of whole volume blocks
 *   and fails with a clear error when the file changes size while it is read.
 * - Input and Output move the standard streams: the descriptor itself, made blocking, when the command runs as
 *   the process (no copies through Node streams); the Node stream otherwise (tests, embedding). Output.send
 *   moves a device's bytes to that descriptor inside the kernel (BlockDevice.sendTo: sendfile) where both
 *   allow it, and says when they do not (the caller then reads and writes).
 */
import { fstatSync, readSync, writeSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { WRITE_PIECE, dataRanges, isZero, makeBlocking, readFull, zeros } from '../io/sparse.js';
import type { BlockDevice } from '../io/block-device.js';
import type { Extent, Volume } from '../thin/volume.js';
import { CliError, q, write as writeOut } from './io.js';
import type { Writable } from 'node:stream';

/** Bytes moved per call: large sequential I/O, bounded memory. */
export const CHUNK = 8 * 1024 * 1024;

/**
 * The batch of a copy between a file or a pipe and a volume (import, export, write): read into a buffer this
 * size, tested for zeros, written out, one batch at a time. Chosen by bench/bulk/buffer-size.ts, which times the
 * copy loop in a fresh process (as a command runs) at each batch size against `cp --sparse=always`; its recorded
 * runs are rendered in docs/cli.md (section bulk-buffer): 128 KiB was the fastest, every larger batch slower.
 * Fresh memory costs most the first time it is touched, a reason for a small, reused buffer by itself.
 */
export const COPY_BUFFER = 128 * 1024;

export class VolumeSink {
  private readonly vol: Volume;
  private readonly bs: number;
  private readonly mapped: Extent[];
  private readonly shared: (vblock: number) => boolean;
  /** The zero tests of the last `plan` (one per piece: 1 all zeros), for the `data` call of the same bytes. */
  private planned: { buf: Uint8Array; pos: number; zero: Uint8Array } | null = null;
  /** Bytes written into the volume (zero pieces skipped on unprovisioned blocks are not counted). */
  written = 0;

  /**
   * `from`/`length`: the volume range the sink will write (its provisioned extents are looked up once);
   * `fresh`: a volume made by this command (nothing provisioned, no lookups). `shared(vblock)` tells whether a
   * provisioned block is shared (a write must copy it).
   */
  constructor(vol: Volume, from: number, length: number, fresh: boolean, shared: (vblock: number) => boolean) {
    this.vol = vol;
    this.bs = vol.blockSize;
    this.mapped = fresh || length === 0 ? [] : vol.extents(from, length);
    this.shared = shared;
  }

  private isMapped(vblock: number): boolean {
    const pos = vblock * this.bs;
    let lo = 0;
    let hi = this.mapped.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const e = this.mapped[mid];
      if (pos < e.offsetBytes) hi = mid - 1;
      else if (pos >= e.offsetBytes + e.lengthBytes) lo = mid + 1;
      else return true;
    }
    return false;
  }

  /** Visit buf at volume position pos in pieces that end at block boundaries. */
  private pieces(buf: Uint8Array, pos: number, fn: (start: number, end: number, vblock: number) => void): void {
    for (let start = 0; start < buf.length; ) {
      const vblock = Math.floor((pos + start) / this.bs);
      const end = Math.min(buf.length, (vblock + 1) * this.bs - pos);
      fn(start, end, vblock);
      start = end;
    }
  }

  /** Data blocks writing buf at pos would provision. */
  plan(buf: Uint8Array, pos: number): number {
    let n = 0;
    const zero = new Uint8Array(Math.ceil(buf.length / this.bs) + 1);
    let i = 0;
    this.pieces(buf, pos, (start, end, vblock) => {
      if (!this.isMapped(vblock)) {
        if (isZero(buf.subarray(start, end))) zero[i] = 1;
        else n++;
      } else if (this.shared(vblock)) n++;
      i++;
    });
    this.planned = { buf, pos, zero };
    return n;
  }

  /** Data blocks that zeroing [pos, pos + length) through `hole` would provision (shared provisioned blocks). */
  planHole(pos: number, length: number): number {
    let n = 0;
    for (const [a, b] of this.mappedIn(pos, length)) {
      for (let v = Math.floor(a / this.bs); v * this.bs < b; v++) if (this.shared(v)) n++;
    }
    return n;
  }

  /** Write buf at volume position pos (see the contract). */
  data(buf: Uint8Array, pos: number): void {
    const plan = this.planned !== null && this.planned.buf === buf && this.planned.pos === pos ? this.planned.zero : null;
    this.planned = null;
    let runStart = -1;
    let runEnd = -1;
    const flush = (): void => {
      if (runStart < 0) return;
      this.vol.writeSync(buf.subarray(runStart, runEnd), pos + runStart);
      this.written += runEnd - runStart;
      runStart = -1;
    };
    let i = 0;
    this.pieces(buf, pos, (start, end, vblock) => {
      const zero = plan !== null ? plan[i++] === 1 : !this.isMapped(vblock) && isZero(buf.subarray(start, end));
      if (zero) {
        flush();
        return;
      }
      if (runStart < 0) runStart = start;
      runEnd = end;
    });
    flush();
  }

  /** The source has a hole over [pos, pos + length): zero what is provisioned there. */
  hole(pos: number, length: number): void {
    for (const [a, b] of this.mappedIn(pos, length)) {
      for (let at = a; at < b; ) {
        const z = zeros(b - at);
        this.vol.writeSync(z, at);
        this.written += z.length;
        at += z.length;
      }
    }
  }

  /** Byte ranges of [pos, pos + length) on provisioned blocks. */
  private mappedIn(pos: number, length: number): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (const e of this.mapped) {
      const a = Math.max(pos, e.offsetBytes);
      const b = Math.min(pos + length, e.offsetBytes + e.lengthBytes);
      if (a < b) out.push([a, b]);
    }
    return out;
  }
}

/** Ranges of [0, size) as data (may hold non-zero bytes) and holes, in order. */
export function fileLayout(fd: number, size: number): Array<{ hole: boolean; start: number; end: number }> {
  const out: Array<{ hole: boolean; start: number; end: number }> = [];
  let pos = 0;
  for (const [a, b] of dataRanges(fd, 0, size)) {
    if (a > pos) out.push({ hole: true, start: pos, end: a });
    out.push({ hole: false, start: a, end: b });
    pos = b;
  }
  if (pos < size) out.push({ hole: true, start: pos, end: size });
  return out;
}

/**
 * Visit the data of a regular file of `size` bytes in chunks (ending at volume block boundaries for a volume
 * offset `offset`), and its holes as ranges. Throws when the file turns out shorter or longer than `size`.
 */
export async function eachFileChunk(
  fd: number,
  name: string,
  size: number,
  offset: number,
  bs: number,
  buf: Uint8Array,
  fn: { data(chunk: Uint8Array, pos: number): void | Promise<void>; hole(pos: number, length: number): void | Promise<void> },
): Promise<void> {
  for (const r of fileLayout(fd, size)) {
    if (r.hole) {
      await fn.hole(r.start, r.end - r.start);
      continue;
    }
    for (let pos = r.start; pos < r.end; ) {
      // End each chunk at a volume block boundary, so that no block is split between two chunks.
      const limit = Math.floor((offset + pos + buf.length) / bs) * bs - offset;
      const n = Math.min(r.end - pos, limit > pos ? limit - pos : buf.length);
      const got = readFull(fd, buf.subarray(0, n), pos);
      if (got < n) throw changedSize(name, size, fd);
      await fn.data(buf.subarray(0, n), pos);
      pos += n;
    }
  }
  if (fstatSync(fd).size !== size) throw changedSize(name, size, fd);
}

function changedSize(name: string, size: number, fd: number): CliError {
  return new CliError(
    `${q(name)} changed size while it was read (${size} bytes at the start, ${fstatSync(fd).size} now): something is writing to it; nothing was written: run again when it is left alone`,
  );
}

/** Standard input in chunks: the descriptor when the command runs as the process, else the stream. */
export class Input {
  private readonly fd: number | undefined;
  private readonly stream: () => Readable;
  private iter: AsyncIterator<unknown> | null = null;
  private left: Uint8Array | null = null;
  private restore: (() => void) | null = null;
  private useFd: boolean;

  constructor(fd: number | undefined, stream: () => Readable) {
    this.fd = fd;
    this.stream = stream;
    this.useFd = fd !== undefined;
    if (fd !== undefined) this.restore = makeBlocking(fd, CHUNK);
  }

  /** Fill buf (up to its length); fewer bytes only at the end of the input. */
  async fill(buf: Uint8Array): Promise<number> {
    let done = 0;
    if (this.useFd && this.fd !== undefined) {
      try {
        for (;;) {
          if (done === buf.length) return done;
          const n = readSync(this.fd, buf, done, buf.length - done, null);
          if (n === 0) return done;
          done += n;
        }
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
        this.useFd = false; // a non-blocking descriptor and no helper to change that: the stream reads the rest
      }
    }
    while (done < buf.length) {
      let part = this.left;
      this.left = null;
      if (part === null) {
        this.iter ??= this.stream()[Symbol.asyncIterator]();
        const r = await this.iter.next();
        if (r.done) break;
        part = typeof r.value === 'string' ? Buffer.from(r.value) : (r.value as Uint8Array);
      }
      const n = Math.min(part.length, buf.length - done);
      buf.set(part.subarray(0, n), done);
      done += n;
      if (n < part.length) this.left = part.subarray(n);
    }
    return done;
  }

  close(): void {
    this.restore?.();
    this.restore = null;
  }
}

/** Standard output for bulk bytes: the descriptor when the command runs as the process, else the stream. */
export class Output {
  private readonly fd: number | undefined;
  private readonly stream: Writable;
  private restore: (() => void) | null = null;
  private useFd: boolean;
  private canSend = true;

  constructor(fd: number | undefined, stream: Writable) {
    this.fd = fd;
    this.stream = stream;
    this.useFd = fd !== undefined;
    if (fd !== undefined) this.restore = makeBlocking(fd, CHUNK);
  }

  /**
   * Write buf. `reused`: the caller will overwrite buf after this returns (the stream path then writes a copy,
   * the descriptor path needs none).
   */
  async write(buf: Uint8Array, reused: boolean): Promise<void> {
    let done = 0;
    if (this.useFd && this.fd !== undefined) {
      try {
        while (done < buf.length) done += writeSync(this.fd, buf, done, Math.min(WRITE_PIECE, buf.length - done));
        return;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EPIPE') throw new CliError('standard output was closed before everything was written (the reader stopped early)');
        if (code !== 'EAGAIN') throw e;
        this.useFd = false; // a non-blocking descriptor and no helper to change that: the stream takes the rest
      }
    }
    const rest = buf.subarray(done);
    await writeOut(this.stream, reused ? Buffer.from(rest) : rest);
  }

  /**
   * Send `length` bytes of `dev` from its byte `offset` to the output inside the kernel, when the output is the
   * process's own descriptor (made blocking) and the device can (BlockDevice.sendTo). Returns the bytes sent
   * (fewer than asked only where the device's file ends: the rest reads as zeros), or null when it cannot
   * (nothing sent: read and write them instead; later calls then give up at once).
   */
  send(dev: BlockDevice, offset: number, length: number): number | null {
    if (!this.useFd || this.fd === undefined || this.restore === null || !this.canSend || dev.sendTo === undefined) return null;
    try {
      const n = dev.sendTo(this.fd, offset, length);
      if (n === null) this.canSend = false;
      return n;
    } catch (e) {
      if (((e as Error).cause as NodeJS.ErrnoException | undefined)?.code === 'EPIPE')
        throw new CliError('standard output was closed before everything was written (the reader stopped early)');
      throw e;
    }
  }

  close(): void {
    this.restore?.();
    this.restore = null;
  }
}
