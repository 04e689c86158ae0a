/**
 * Crash simulation for power-loss testing.
 *
 * Model:
 * - Each `CrashDevice` owns a durable image (a `MemoryDevice`) and a log of unflushed updates (write, resize,
 *   discard). Reads see the volatile state: durable image plus the whole log. `flush` applies the log to the
 *   durable image and empties it. `close` does not flush.
 * - A `CrashClock` is shared by the devices of one system (e.g. a pool's metadata and data devices) so they
 *   all crash at the same instant.
 * - `clock.crash(rng)` fixes, for every registered device, its post-crash image: the durable image plus a
 *   random subset of its unflushed updates applied in log order (each kept with probability 1/2). If the last
 *   kept update is a write it may be torn (probability 1/2): then each 512-byte sector it touches (aligned to
 *   device offsets) lands independently with probability 1/2. Resizes and discards are atomic. Devices are
 *   visited in registration order and draw from `rng` in a fixed order, so a seeded rng reproduces the crash.
 *   `device.afterCrash()` returns a fresh copy of that image, ready to be wrapped in a new `CrashDevice`.
 * - `clock.armAt(n)` makes the n-th I/O call (read/write/flush over all devices of the clock, counted from 0
 *   in `clock.ops`) throw EIO without taking effect; from then on the clock is down and every call of its
 *   devices except `close` throws EIO. `clock.crash(rng)` may follow to obtain the post-crash images.
 *   `clock.ops` counts the I/O calls that ran (so it equals n once the armed call has thrown).
 * - `copyWithin` is one I/O call and one unflushed update: a write, at the destination, of the bytes the source
 *   holds in the volatile state (a crash may lose, keep or tear it like any write), as a file system's reflink
 *   or copy_file_range is until the next fdatasync. `peek` reads the volatile state without an I/O call (for
 *   harnesses that log what a call did).
 */
import { ThinpoolError } from '../errors.js';
import type { BlockDevice, CopyPath } from './block-device.js';
import { MemoryDevice } from './memory-device.js';

/** Sector size at which an unflushed write may tear. */
export const SECTOR_BYTES = 512;

type Update =
  | { kind: 'write'; offset: number; data: Uint8Array }
  | { kind: 'resize'; sizeBytes: number }
  | { kind: 'discard'; offset: number; length: number };

function apply(image: MemoryDevice, u: Update): void {
  if (u.kind === 'write') image.write(u.data, u.offset);
  else if (u.kind === 'resize') image.resize(u.sizeBytes);
  else image.discard(u.offset, u.length);
}

export class CrashClock {
  #ops = 0;
  #armAt: number | undefined;
  #down = false;
  #crashed = false;
  #devices: CrashDevice[] = [];

  /** I/O calls (read/write/flush) that ran so far over all devices of this clock. */
  get ops(): number {
    return this.#ops;
  }

  /** True once an armed call fired or `crash` was called: every device call (except close) throws EIO. */
  get down(): boolean {
    return this.#down;
  }

  /** Arms the clock so that I/O call number `n` (0-based, compared with `ops`) fails and downs the clock. */
  armAt(n: number): void {
    if (!Number.isSafeInteger(n) || n < this.#ops) {
      throw new ThinpoolError('EINVAL', `armAt(${n}): must be an integer >= ops (${this.#ops})`);
    }
    this.#armAt = n;
  }

  /** Crashes every registered device now; see the file header for the model. Only once per clock. */
  crash(rng: () => number): void {
    if (this.#crashed) throw new ThinpoolError('EINVAL', 'clock has already crashed');
    this.#crashed = true;
    this.#down = true;
    for (const d of this.#devices) d._captureCrash(rng);
  }

  /** @internal Registers a device; called by the `CrashDevice` constructor. */
  _register(d: CrashDevice): void {
    if (this.#crashed) throw new ThinpoolError('EINVAL', 'clock has already crashed');
    this.#devices.push(d);
  }

  /** @internal Accounts one I/O call; throws EIO if the clock is down or this call is the armed one. */
  _tick(): void {
    this._checkUp();
    if (this.#armAt === this.#ops) {
      this.#down = true;
      throw new ThinpoolError('EIO', `simulated crash at I/O call ${this.#ops}`);
    }
    this.#ops++;
  }

  /** @internal Throws EIO if the clock is down. */
  _checkUp(): void {
    if (this.#down) throw new ThinpoolError('EIO', 'simulated crash: device is down');
  }
}

export class CrashDevice implements BlockDevice {
  readonly clock: CrashClock;
  #durable: MemoryDevice;
  #volatile: MemoryDevice;
  #log: Update[] = [];
  #afterCrash: MemoryDevice | undefined;
  #closed = false;

  /**
   * `image` is the initial durable content (taken over, not copied) or a size for an empty device.
   */
  constructor(clock: CrashClock, image: MemoryDevice | number) {
    this.clock = clock;
    this.#durable = typeof image === 'number' ? new MemoryDevice(image) : image;
    this.#volatile = this.#durable.snapshot();
    clock._register(this);
  }

  get sizeBytes(): number {
    return this.#volatile.sizeBytes;
  }

  /** Number of updates written since the last flush. */
  get unflushed(): number {
    return this.#log.length;
  }

  read(buf: Uint8Array, offsetBytes: number): void {
    this.#checkOpen();
    this.clock._tick();
    this.#volatile.read(buf, offsetBytes);
  }

  write(buf: Uint8Array, offsetBytes: number): void {
    this.#checkOpen();
    this.clock._tick();
    this.#volatile.write(buf, offsetBytes);
    if (buf.length > 0) this.#log.push({ kind: 'write', offset: offsetBytes, data: buf.slice() });
  }

  copyWithin(srcBytes: number, dstBytes: number, lengthBytes: number): CopyPath {
    this.#checkOpen();
    this.clock._tick();
    const data = new Uint8Array(lengthBytes);
    this.#volatile.read(data, srcBytes);
    this.#volatile.write(data, dstBytes);
    if (lengthBytes > 0) this.#log.push({ kind: 'write', offset: dstBytes, data });
    return 'copy';
  }

  /** Fill buf from the volatile state at offsetBytes without counting an I/O call. */
  peek(buf: Uint8Array, offsetBytes: number): void {
    this.#checkOpen();
    this.#volatile.read(buf, offsetBytes);
  }

  flush(): void {
    this.#checkOpen();
    this.clock._tick();
    for (const u of this.#log) apply(this.#durable, u);
    this.#log = [];
  }

  resize(sizeBytes: number): void {
    this.#checkOpen();
    this.clock._checkUp();
    this.#volatile.resize(sizeBytes);
    this.#log.push({ kind: 'resize', sizeBytes });
  }

  discard(offsetBytes: number, lengthBytes: number): boolean {
    this.#checkOpen();
    this.clock._checkUp();
    this.#volatile.discard(offsetBytes, lengthBytes);
    this.#log.push({ kind: 'discard', offset: offsetBytes, length: lengthBytes });
    return true;
  }

  close(): void {
    this.#checkOpen();
    this.#closed = true;
  }

  /** A fresh copy of the image this device holds after `clock.crash`; throws EINVAL before the crash. */
  afterCrash(): MemoryDevice {
    if (!this.#afterCrash) throw new ThinpoolError('EINVAL', 'afterCrash: the clock has not crashed');
    return this.#afterCrash.snapshot();
  }

  /** @internal Computes the post-crash image; called by `CrashClock.crash`. */
  _captureCrash(rng: () => number): void {
    const image = this.#durable.snapshot();
    const kept = this.#log.filter(() => rng() < 0.5);
    const last = kept.pop();
    for (const u of kept) apply(image, u);
    if (last) {
      if (last.kind === 'write' && rng() < 0.5) tornWrite(image, last.offset, last.data, rng);
      else apply(image, last);
    }
    this.#afterCrash = image;
  }

  #checkOpen(): void {
    if (this.#closed) throw new ThinpoolError('ECLOSED', 'crash device is closed');
  }
}

/** Applies the sectors of a write that land: each touched 512-byte sector independently with probability 1/2. */
function tornWrite(image: MemoryDevice, offset: number, data: Uint8Array, rng: () => number): void {
  const end = offset + data.length;
  for (let pos = offset; pos < end; ) {
    const next = Math.min(end, (Math.floor(pos / SECTOR_BYTES) + 1) * SECTOR_BYTES);
    if (rng() < 0.5) image.write(data.subarray(pos - offset, next - offset), pos);
    pos = next;
  }
}
