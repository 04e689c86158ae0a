/**
 * A `random-access-storage`-style object over a volume, for libraries written against that interface
 * (hypercore's storage, random-access-file users, ...): callback methods `open`, `read`, `write`, `del`,
 * `truncate`, `stat`, `close`, `unlink`, with the capability flags and 'open'/'close' events.
 *
 * Contract:
 * - Callbacks are always called asynchronously (next tick), errors first.
 * - `read(offset, size)` past the end of the volume fails ("Could not satisfy length"), as in random-access-file.
 * - `write` past the end fails with EINVAL: a volume's size changes only by `truncate` (512-byte multiples;
 *   shrinking unmaps the tail).
 * - `del(offset, size)` discards: whole blocks are unmapped, partial edges zeroed; then the range reads as zeros.
 * - `stat` gives `{ size }`. `unlink` disposes the fork when the storage was made from a Fork, else only closes.
 */
import { EventEmitter } from 'node:events';
import { Fork, volumeOf, type VolumeLike } from './store.js';
import type { Volume } from '../thin/volume.js';

type Cb<T = void> = (err: Error | null, value?: T) => void;

export class VolumeRandomAccess extends EventEmitter {
  readonly volume: Volume;
  readonly #owner: VolumeLike;
  readable = true;
  writable: boolean;
  deletable: boolean;
  truncatable: boolean;
  statable = true;
  opened = false;
  closed = false;
  unlinked = false;

  constructor(v: VolumeLike) {
    super();
    this.#owner = v;
    this.volume = volumeOf(v);
    this.writable = !this.volume.readOnly;
    this.deletable = this.writable;
    this.truncatable = this.writable;
  }

  #run<T>(cb: Cb<T> | undefined, fn: () => T): void {
    let err: Error | null = null;
    let value: T | undefined;
    try {
      if (this.closed) throw new Error('Closed');
      if (!this.opened) {
        this.opened = true;
        this.emit('open');
      }
      value = fn();
    } catch (e) {
      err = e as Error;
    }
    process.nextTick(() => cb?.(err, value));
  }

  open(cb?: Cb): void {
    this.#run(cb, () => undefined);
  }

  read(offset: number, size: number, cb: Cb<Buffer>): void {
    this.#run(cb, () => {
      if (offset + size > this.volume.sizeBytes) throw Object.assign(new Error('Could not satisfy length'), { code: 'ENODATA' });
      const buf = Buffer.alloc(size);
      this.volume.readSync(buf, offset);
      return buf;
    });
  }

  write(offset: number, data: Uint8Array, cb?: Cb): void {
    this.#run(cb, () => {
      this.volume.writeSync(data, offset);
    });
  }

  del(offset: number, size: number, cb?: Cb): void {
    this.#run(cb, () => {
      const end = Math.min(offset + size, this.volume.sizeBytes);
      if (end > offset) this.volume.discardSync(offset, end - offset);
    });
  }

  truncate(offset: number, cb?: Cb): void {
    this.#run(cb, () => {
      if (offset !== this.volume.sizeBytes) this.volume.pool.resizeSync(this.volume.id, offset);
    });
  }

  stat(cb: Cb<{ size: number }>): void {
    this.#run(cb, () => ({ size: this.volume.sizeBytes }));
  }

  close(cb?: Cb): void {
    if (this.closed) {
      process.nextTick(() => cb?.(null));
      return;
    }
    this.closed = true;
    process.nextTick(() => {
      this.emit('close');
      cb?.(null);
    });
  }

  unlink(cb?: Cb): void {
    let err: Error | null = null;
    try {
      if (this.#owner instanceof Fork) this.#owner.disposeSync();
      this.unlinked = true;
    } catch (e) {
      err = e as Error;
    }
    if (err) process.nextTick(() => cb?.(err));
    else
      this.close(() => {
        this.emit('unlink');
        cb?.(null);
      });
  }

  /** Nothing to suspend in memory or in a pool file; kept for the interface. */
  suspend(cb?: Cb): void {
    process.nextTick(() => cb?.(null));
  }
}

/** A random-access-storage style object over a volume, a golden or a fork. */
export function randomAccess(v: VolumeLike): VolumeRandomAccess {
  return new VolumeRandomAccess(v);
}
