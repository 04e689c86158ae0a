/**
 * A `BlockDevice` wrapper that records every state-changing call in order, for replaying prefixes of a
 * workload (e.g. to check that every prefix of flushed writes leaves recoverable metadata).
 *
 * Contract: a call is recorded only after the inner device accepted it. Writes record a copy of the bytes.
 * `replay(prefix, target)` applies events `[0, prefix)` to `target`; a recorded discard that `target` refuses
 * (returns false) is replayed as a write of zeros so the resulting contents match.
 */
import { ThinpoolError } from '../errors.js';
import type { BlockDevice } from './block-device.js';

export type RecordedEvent =
  | { readonly kind: 'write'; readonly offset: number; readonly data: Uint8Array }
  | { readonly kind: 'flush' }
  | { readonly kind: 'resize'; readonly sizeBytes: number }
  | { readonly kind: 'discard'; readonly offset: number; readonly length: number };

/** Largest zero buffer written at once when replaying a refused discard. */
const ZERO_CHUNK_BYTES = 1024 * 1024;

export class RecordingDevice implements BlockDevice {
  readonly inner: BlockDevice;
  readonly #events: RecordedEvent[] = [];
  #closed = false;

  constructor(inner: BlockDevice) {
    this.inner = inner;
  }

  /** The recorded events, oldest first (live view; do not mutate). */
  get events(): readonly RecordedEvent[] {
    return this.#events;
  }

  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }

  read(buf: Uint8Array, offsetBytes: number): void {
    this.#checkOpen();
    this.inner.read(buf, offsetBytes);
  }

  write(buf: Uint8Array, offsetBytes: number): void {
    this.#checkOpen();
    this.inner.write(buf, offsetBytes);
    this.#events.push({ kind: 'write', offset: offsetBytes, data: buf.slice() });
  }

  flush(): void {
    this.#checkOpen();
    this.inner.flush();
    this.#events.push({ kind: 'flush' });
  }

  resize(sizeBytes: number): void {
    this.#checkOpen();
    this.inner.resize(sizeBytes);
    this.#events.push({ kind: 'resize', sizeBytes });
  }

  discard(offsetBytes: number, lengthBytes: number): boolean {
    this.#checkOpen();
    const ok = this.inner.discard(offsetBytes, lengthBytes);
    if (ok) this.#events.push({ kind: 'discard', offset: offsetBytes, length: lengthBytes });
    return ok;
  }

  close(): void {
    this.#checkOpen();
    this.#closed = true;
    this.inner.close();
  }

  /** Applies the first `prefix` recorded events to `target`. */
  replay(prefix: number, target: BlockDevice): void {
    if (!Number.isSafeInteger(prefix) || prefix < 0 || prefix > this.#events.length) {
      throw new ThinpoolError('EINVAL', `replay: prefix ${prefix} outside [0, ${this.#events.length}]`);
    }
    for (let i = 0; i < prefix; i++) {
      const e = this.#events[i]!;
      if (e.kind === 'write') target.write(e.data, e.offset);
      else if (e.kind === 'flush') target.flush();
      else if (e.kind === 'resize') target.resize(e.sizeBytes);
      else if (!target.discard(e.offset, e.length)) zeroFill(target, e.offset, e.length);
    }
  }

  #checkOpen(): void {
    if (this.#closed) throw new ThinpoolError('ECLOSED', 'recording device is closed');
  }
}

/** Writes zeros over `[offset, offset + length)` clamped to the target's size (discard never grows). */
function zeroFill(target: BlockDevice, offset: number, length: number): void {
  const end = Math.min(offset + length, target.sizeBytes);
  for (let pos = offset; pos < end; pos += ZERO_CHUNK_BYTES) {
    target.write(new Uint8Array(Math.min(ZERO_CHUNK_BYTES, end - pos)), pos);
  }
}
