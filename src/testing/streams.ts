/**
 * Node stream adapters for a volume: a Readable from a byte range and a Writable at an offset.
 *
 * Contract:
 * - `createVolumeReadStream(v, { start, end })` reads bytes start..end inclusive (like fs.createReadStream),
 *   default the whole volume, in chunks of `highWaterMark` bytes (default 1 MiB).
 * - `createVolumeWriteStream(v, { start })` writes the chunks it receives one after another from `start`;
 *   a write past the end of the volume fails the stream with EINVAL (volumes do not grow by writing).
 *   `flush: true` commits the pool when the stream finishes.
 */
import { Readable, Writable } from 'node:stream';
import { volumeOf, type VolumeLike } from './store.js';

export interface VolumeReadStreamOptions {
  /** First byte (default 0). */
  start?: number;
  /** Last byte, inclusive (default the last byte of the volume). */
  end?: number;
  /** Chunk size (default 1 MiB). */
  highWaterMark?: number;
}

export interface VolumeWriteStreamOptions {
  /** Where the first byte goes (default 0). */
  start?: number;
  /** Commit the pool when the stream ends (default false). */
  flush?: boolean;
  highWaterMark?: number;
}

export function createVolumeReadStream(v: VolumeLike, opts: VolumeReadStreamOptions = {}): Readable {
  const vol = volumeOf(v);
  const size = vol.sizeBytes;
  const start = opts.start ?? 0;
  const endExclusive = Math.min(size, opts.end === undefined ? size : opts.end + 1);
  const hwm = opts.highWaterMark ?? 1024 * 1024;
  if (!Number.isSafeInteger(start) || start < 0 || start > size)
    throw new RangeError(`start ${start} is outside the volume (${size} bytes)`);
  let pos = start;
  return new Readable({
    highWaterMark: hwm,
    read() {
      try {
        if (pos >= endExclusive) {
          this.push(null);
          return;
        }
        const n = Math.min(hwm, endExclusive - pos);
        const buf = Buffer.allocUnsafe(n);
        vol.readSync(buf, pos);
        pos += n;
        this.push(buf);
      } catch (e) {
        this.destroy(e as Error);
      }
    },
  });
}

export function createVolumeWriteStream(v: VolumeLike, opts: VolumeWriteStreamOptions = {}): Writable {
  const vol = volumeOf(v);
  let pos = opts.start ?? 0;
  if (!Number.isSafeInteger(pos) || pos < 0 || pos > vol.sizeBytes)
    throw new RangeError(`start ${pos} is outside the volume (${vol.sizeBytes} bytes)`);
  return new Writable({
    highWaterMark: opts.highWaterMark,
    write(chunk: Buffer, _enc, cb) {
      try {
        vol.writeSync(chunk, pos);
        pos += chunk.length;
        cb();
      } catch (e) {
        cb(e as Error);
      }
    },
    writev(chunks, cb) {
      try {
        for (const { chunk } of chunks) {
          vol.writeSync(chunk as Buffer, pos);
          pos += (chunk as Buffer).length;
        }
        cb();
      } catch (e) {
        cb(e as Error);
      }
    },
    final(cb) {
      try {
        if (opts.flush) vol.flushSync();
        cb();
      } catch (e) {
        cb(e as Error);
      }
    },
  });
}
