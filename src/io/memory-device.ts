/**
 * An in-memory, sparse `BlockDevice`. Storage is a map of 64 KiB chunks; an absent chunk reads as zeros.
 *
 * Contract (beyond `BlockDevice`):
 * - Every call is immediately "durable": `flush` is a no-op. Use `CrashDevice` to model volatile caches.
 * - `discard` always succeeds (returns true): whole chunks are dropped, partially covered chunks are zeroed.
 * - Invariant: stored bytes at or beyond `sizeBytes` are zero, so growing after a shrink exposes zeros.
 */
import { ThinpoolError } from '../errors.js';
import type { BlockDevice } from './block-device.js';

/** Allocation granularity of `MemoryDevice`. */
export const MEMORY_CHUNK_BYTES = 64 * 1024;

/** Throws EINVAL unless `[offsetBytes, offsetBytes + lengthBytes)` is a valid byte range. */
export function checkRange(offsetBytes: number, lengthBytes: number): void {
  if (
    !Number.isSafeInteger(offsetBytes) ||
    !Number.isSafeInteger(lengthBytes) ||
    offsetBytes < 0 ||
    lengthBytes < 0 ||
    !Number.isSafeInteger(offsetBytes + lengthBytes)
  ) {
    throw new ThinpoolError('EINVAL', `bad byte range: offset ${offsetBytes}, length ${lengthBytes}`);
  }
}

/** Throws EINVAL unless `sizeBytes` is a valid device size. */
export function checkSize(sizeBytes: number): void {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) {
    throw new ThinpoolError('EINVAL', `bad device size: ${sizeBytes}`);
  }
}

function isZero(b: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (b[i] !== 0) return false;
  return true;
}

export class MemoryDevice implements BlockDevice {
  #size: number;
  #chunks = new Map<number, Uint8Array>();
  #closed = false;

  constructor(sizeBytes: number) {
    checkSize(sizeBytes);
    this.#size = sizeBytes;
  }

  get sizeBytes(): number {
    return this.#size;
  }

  read(buf: Uint8Array, offsetBytes: number): void {
    this.#checkOpen();
    checkRange(offsetBytes, buf.length);
    const end = offsetBytes + buf.length;
    for (let pos = offsetBytes; pos < end; ) {
      const index = Math.floor(pos / MEMORY_CHUNK_BYTES);
      const within = pos - index * MEMORY_CHUNK_BYTES;
      const n = Math.min(MEMORY_CHUNK_BYTES - within, end - pos);
      const chunk = this.#chunks.get(index);
      const dst = pos - offsetBytes;
      if (chunk) buf.set(chunk.subarray(within, within + n), dst);
      else buf.fill(0, dst, dst + n);
      pos += n;
    }
  }

  write(buf: Uint8Array, offsetBytes: number): void {
    this.#checkOpen();
    checkRange(offsetBytes, buf.length);
    const end = offsetBytes + buf.length;
    for (let pos = offsetBytes; pos < end; ) {
      const index = Math.floor(pos / MEMORY_CHUNK_BYTES);
      const within = pos - index * MEMORY_CHUNK_BYTES;
      const n = Math.min(MEMORY_CHUNK_BYTES - within, end - pos);
      let chunk = this.#chunks.get(index);
      const src = pos - offsetBytes;
      if (!chunk && isZero(buf, src, src + n)) {
        pos += n; // zeros into an absent chunk: it already reads as zeros, stay sparse
        continue;
      }
      if (!chunk) {
        chunk = new Uint8Array(MEMORY_CHUNK_BYTES);
        this.#chunks.set(index, chunk);
      }
      chunk.set(buf.subarray(src, src + n), within);
      pos += n;
    }
    if (buf.length > 0 && end > this.#size) this.#size = end;
  }

  flush(): void {
    this.#checkOpen();
  }

  resize(sizeBytes: number): void {
    this.#checkOpen();
    checkSize(sizeBytes);
    if (sizeBytes < this.#size) this.#zeroRange(sizeBytes, this.#size);
    this.#size = sizeBytes;
  }

  discard(offsetBytes: number, lengthBytes: number): boolean {
    this.#checkOpen();
    checkRange(offsetBytes, lengthBytes);
    this.#zeroRange(offsetBytes, Math.min(offsetBytes + lengthBytes, this.#size));
    return true;
  }

  close(): void {
    this.#checkOpen();
    this.#closed = true;
  }

  /** A deep copy with the same size and contents (an open device, even if this one is closed). */
  snapshot(): MemoryDevice {
    const copy = new MemoryDevice(this.#size);
    for (const [index, chunk] of this.#chunks) copy.#chunks.set(index, chunk.slice());
    return copy;
  }

  /** Bytes of host memory held for data (allocated chunks × 64 KiB). */
  allocatedBytes(): number {
    return this.#chunks.size * MEMORY_CHUNK_BYTES;
  }

  /** Zeros `[start, end)`: drops wholly covered chunks, zero-fills partially covered ones. */
  #zeroRange(start: number, end: number): void {
    if (start >= end) return;
    const C = MEMORY_CHUNK_BYTES;
    const firstWhole = Math.ceil(start / C);
    const endWhole = Math.floor(end / C); // exclusive
    if (firstWhole > endWhole) {
      // start and end lie inside one chunk.
      const index = endWhole;
      this.#chunks.get(index)?.fill(0, start - index * C, end - index * C);
      return;
    }
    if (start < firstWhole * C) this.#chunks.get(firstWhole - 1)?.fill(0, start - (firstWhole - 1) * C);
    if (end > endWhole * C) this.#chunks.get(endWhole)?.fill(0, 0, end - endWhole * C);
    if (endWhole - firstWhole > this.#chunks.size) {
      for (const index of [...this.#chunks.keys()]) {
        if (index >= firstWhole && index < endWhole) this.#chunks.delete(index);
      }
    } else {
      for (let index = firstWhole; index < endWhole; index++) this.#chunks.delete(index);
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new ThinpoolError('ECLOSED', 'memory device is closed');
  }
}
