/**
 * Fault injection: a `BlockDevice` wrapper that fails chosen calls with EIO.
 *
 * Contract: `reads`, `writes` and `flushes` count the calls made so far (failed ones included), separately.
 * `failAt({ read: n })` makes the read issued when `reads === n` throw EIO without reaching the inner device;
 * the fault fires once and is then cleared (likewise for write and flush). Numbers are absolute, so
 * `failAt({ write: dev.writes })` fails the next write. Other calls pass through; `close` closes the inner device.
 */
import { ThinpoolError } from '../errors.js';
import type { BlockDevice } from './block-device.js';

export interface FaultPlan {
  read?: number;
  write?: number;
  flush?: number;
}

export class FaultDevice implements BlockDevice {
  readonly inner: BlockDevice;
  #reads = 0;
  #writes = 0;
  #flushes = 0;
  #plan: FaultPlan = {};
  #closed = false;

  constructor(inner: BlockDevice) {
    this.inner = inner;
  }

  get reads(): number {
    return this.#reads;
  }
  get writes(): number {
    return this.#writes;
  }
  get flushes(): number {
    return this.#flushes;
  }
  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }

  /** Schedules one-shot faults; keys given replace earlier ones, `undefined` keys leave them. */
  failAt(plan: FaultPlan): void {
    for (const key of ['read', 'write', 'flush'] as const) {
      const n = plan[key];
      if (n === undefined) continue;
      if (!Number.isSafeInteger(n) || n < 0) throw new ThinpoolError('EINVAL', `failAt: bad ${key} index ${n}`);
      this.#plan[key] = n;
    }
  }

  /** Removes every scheduled fault. */
  clearFaults(): void {
    this.#plan = {};
  }

  read(buf: Uint8Array, offsetBytes: number): void {
    this.#checkOpen();
    this.#maybeFail('read', this.#reads++);
    this.inner.read(buf, offsetBytes);
  }

  write(buf: Uint8Array, offsetBytes: number): void {
    this.#checkOpen();
    this.#maybeFail('write', this.#writes++);
    this.inner.write(buf, offsetBytes);
  }

  flush(): void {
    this.#checkOpen();
    this.#maybeFail('flush', this.#flushes++);
    this.inner.flush();
  }

  resize(sizeBytes: number): void {
    this.#checkOpen();
    this.inner.resize(sizeBytes);
  }

  discard(offsetBytes: number, lengthBytes: number): boolean {
    this.#checkOpen();
    return this.inner.discard(offsetBytes, lengthBytes);
  }

  close(): void {
    this.#checkOpen();
    this.#closed = true;
    this.inner.close();
  }

  #maybeFail(kind: keyof FaultPlan, index: number): void {
    if (this.#plan[kind] !== index) return;
    delete this.#plan[kind];
    throw new ThinpoolError('EIO', `injected fault: ${kind} #${index}`);
  }

  #checkOpen(): void {
    if (this.#closed) throw new ThinpoolError('ECLOSED', 'fault device is closed');
  }
}
