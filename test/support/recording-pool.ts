// A memory pool whose data device records every call (test/thin/data-path.test.ts, pending-copies.test.ts):
// what the data path sends to the device, seen from below.
import { ThinpoolError } from '../../src/errors.js';
import type { BlockDevice, CopyPath } from '../../src/io/block-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { MemoryCatalogStore } from '../../src/thin/catalog.js';
import { MemoryHighWaterStore } from '../../src/thin/high-water.js';
import { ThinPool } from '../../src/thin/pool.js';
import { keepOpen } from './model.js';

export interface DeviceCalls {
  reads: Array<[number, number]>;
  writes: Array<[number, number]>;
  copies: Array<[number, number, number]>;
  asyncReads: Array<[number, number]>;
  asyncWrites: Array<[number, number]>;
  /** One entry per flush: the number of (synchronous) writes recorded before it. */
  flushes: number[];
}

export interface RecordingOptions {
  /** Give the device copyWithin (recorded in `copies`, made through memory). */
  copy?: boolean;
  /** Give the device readAsync/writeAsync, applied at once and completed later: a network device as the pool sees it. */
  async?: boolean;
  /** recordingPool: give the pool a high-water mark at 0 (every block above it pristine, never zeroed). */
  highWater?: boolean;
}

/** A memory data device of `sizeBytes` recording each call as [offset, length] in bytes. */
export function recordingDevice(sizeBytes: number, opts: RecordingOptions = {}) {
  const dev = new MemoryDevice(sizeBytes);
  const calls: DeviceCalls = { reads: [], writes: [], copies: [], asyncReads: [], asyncWrites: [], flushes: [] };
  let failCopies = 0;
  const wrapped: BlockDevice & Record<string, unknown> = {
    ...keepOpen(dev),
    get sizeBytes() {
      return dev.sizeBytes;
    },
    read: (b: Uint8Array, o: number) => {
      calls.reads.push([o, b.length]);
      dev.read(b, o);
    },
    write: (b: Uint8Array, o: number) => {
      calls.writes.push([o, b.length]);
      dev.write(b, o);
    },
    flush: () => {
      calls.flushes.push(calls.writes.length);
      dev.flush();
    },
  };
  if (opts.copy) {
    wrapped.copyWithin = (src: number, dst: number, len: number): CopyPath => {
      calls.copies.push([src, dst, len]);
      if (failCopies > 0) {
        failCopies--;
        throw new ThinpoolError('EIO', 'copy failed (test)');
      }
      const b = new Uint8Array(len);
      dev.read(b, src);
      dev.write(b, dst);
      return 'copy';
    };
  }
  if (opts.async) {
    wrapped.readAsync = (b: Uint8Array, o: number) => {
      calls.asyncReads.push([o, b.length]);
      dev.read(b, o);
      return Promise.resolve();
    };
    wrapped.writeAsync = (b: Uint8Array, o: number) => {
      calls.asyncWrites.push([o, b.length]);
      dev.write(b.slice(), o);
      return Promise.resolve();
    };
  }
  /** Forget the calls recorded so far (the arrays stay the same objects). */
  const clear = () => {
    for (const k of Object.keys(calls) as Array<keyof DeviceCalls>) calls[k].length = 0;
  };
  /** The next n copyWithin calls fail with EIO (recorded, nothing copied). */
  const failNextCopies = (n: number) => {
    failCopies = n;
  };
  return { dev, wrapped, calls, clear, failNextCopies };
}

/**
 * A pool formatted on a 1 MiB memory metadata device and a recording data device of `blocks` blocks of
 * `blockSize`, the format's calls cleared; `crashCopy()` opens a pool on copies of the devices as they are now
 * (what a crash with nothing lost would leave).
 */
export function recordingPool(blocks: number, blockSize: number, opts: RecordingOptions = {}) {
  const meta = new MemoryDevice(1 << 20);
  const data = recordingDevice(blocks * blockSize, opts);
  const catalog = new MemoryCatalogStore();
  const highWater = opts.highWater ? new MemoryHighWaterStore(0) : undefined;
  const pool = ThinPool.formatStorage(
    { metadata: keepOpen(meta), data: data.wrapped, catalog, highWater },
    { size: blocks * blockSize, blockSize },
  );
  data.clear();
  const crashCopy = () => ThinPool.openStorage({ metadata: meta.snapshot(), data: data.dev.snapshot(), catalog: catalog.clone() });
  return { pool, meta, catalog, data, crashCopy };
}
