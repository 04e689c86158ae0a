/**
 * A view of a memory device for tests of the metadata readers (the checker): it counts the reads of each 4 KiB
 * block, and can fail one chosen read of one block with any error (a typed one, or a bug's TypeError), which
 * src/io/fault-device.ts (EIO by call number) does not.
 */
import type { BlockDevice } from '../../src/io/block-device.js';
import type { MemoryDevice } from '../../src/io/memory-device.js';

/** A view of a memory device that counts the reads of each 4 KiB block and can fail one read of one block. */
export class BlockReadsDevice implements BlockDevice {
  readonly reads = new Map<number, number>();
  /** When set: the read of `block` numbered `at` (0: the next) throws `error`. */
  failing: { block: number; at: number; error: unknown } | null = null;
  constructor(readonly inner: MemoryDevice) {}
  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }
  read(buf: Uint8Array, offsetBytes: number): void {
    const b = offsetBytes / 4096;
    const n = this.reads.get(b) ?? 0;
    this.reads.set(b, n + 1);
    const f = this.failing;
    if (f !== null && f.block === b && f.at-- === 0) throw f.error;
    this.inner.read(buf, offsetBytes);
  }
  write(buf: Uint8Array, offsetBytes: number): void {
    this.inner.write(buf, offsetBytes);
  }
  flush(): void {
    this.inner.flush();
  }
  resize(sizeBytes: number): void {
    this.inner.resize(sizeBytes);
  }
  discard(offsetBytes: number, lengthBytes: number): boolean {
    return this.inner.discard(offsetBytes, lengthBytes);
  }
  close(): void {
    this.inner.close();
  }
  /** Fail the read of `block` numbered `at` (0: the next) with `error`; returns this device. */
  failReadOf(block: number, error: unknown, at = 0): this {
    this.failing = { block, at, error };
    return this;
  }
  /** Reads so far, per block, and forget them. */
  take(): Map<number, number> {
    const r = new Map(this.reads);
    this.reads.clear();
    return r;
  }
}
