/**
 * A thin volume: byte-addressed reads and writes over its dm-thin device.
 *
 * Contract:
 * - Unprovisioned ranges read as zeros. The first write to a block provisions it; the rest of a fresh block
 *   reads as zeros (new blocks are zeroed, like dm-thin without skip_block_zeroing). A write to a block that is
 *   shared by the kernel's time rule copies that one block to a new one first (break sharing).
 * - `discard` unmaps whole blocks and zeroes partial edges.
 * - Writes are durable after `flush()` (a pool commit). The async methods do their I/O synchronously and
 *   resolve at once; `readSync`/`writeSync` are the same without the promise (the fast path).
 * - A read-only volume (committed image layer, view) refuses every write path with EROFS.
 */
import { ThinpoolError, isThinpoolError } from '../errors.js';
import type { ThinPool } from './pool.js';

export interface Extent {
  /** Byte offset in the volume. */
  offsetBytes: number;
  lengthBytes: number;
  /** First data block of the run (consecutive virtual blocks map to consecutive data blocks). */
  dblock: number;
}

export class Volume {
  readonly pool: ThinPool;
  readonly id: number;

  /** @internal use pool.volume() */
  constructor(pool: ThinPool, id: number) {
    this.pool = pool;
    this.id = id;
  }

  get name(): string | undefined {
    return this.pool.recordOf(this.id)?.name;
  }

  get sizeBytes(): number {
    return this.pool.sizeOf(this.id);
  }

  get readOnly(): boolean {
    return this.pool.recordOf(this.id)?.readOnly === true;
  }

  private range(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new ThinpoolError('EINVAL', `bad range: offset ${offset}, length ${length}`);
    }
    const size = this.sizeBytes;
    if (offset + length > size) {
      throw new ThinpoolError('EINVAL', `range ${offset}+${length} beyond the end of volume ${this.label} (${size} bytes)`);
    }
  }

  get label(): string {
    return this.name ?? `#${this.id}`;
  }

  /** Fill buf from the volume at offsetBytes. */
  readSync(buf: Uint8Array, offsetBytes: number): void {
    this.range(offsetBytes, buf.length);
    this.pool.readData(this.id, buf, offsetBytes);
  }

  writeSync(buf: Uint8Array, offsetBytes: number): void {
    this.range(offsetBytes, buf.length);
    if (this.readOnly) throw new ThinpoolError('EROFS', `volume ${this.label} is read-only`);
    this.pool.writeData(this.id, buf, offsetBytes);
  }

  async read(buf: Uint8Array, offsetBytes: number): Promise<void> {
    this.readSync(buf, offsetBytes);
  }

  /**
   * Like writeSync; when the pool is full and its policy is `whenFull: 'wait'`, waits (up to the policy's
   * timeout) for space to be freed by other work in this process, then retries.
   */
  async write(buf: Uint8Array, offsetBytes: number): Promise<void> {
    const deadline = Date.now() + this.pool.spaceSettings.waitTimeoutMs;
    for (;;) {
      try {
        this.writeSync(buf, offsetBytes);
        return;
      } catch (e) {
        if (!isThinpoolError(e, 'ENOSPC_DATA') || this.pool.spaceSettings.whenFull !== 'wait' || Date.now() >= deadline) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  discardSync(offsetBytes: number, lengthBytes: number): void {
    this.range(offsetBytes, lengthBytes);
    if (this.readOnly) throw new ThinpoolError('EROFS', `volume ${this.label} is read-only`);
    this.pool.discardData(this.id, offsetBytes, lengthBytes);
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.discardSync(offsetBytes, lengthBytes);
  }

  /** Make everything written so far durable (a pool commit). */
  async flush(): Promise<void> {
    this.pool.commitSync();
  }

  flushSync(): void {
    this.pool.commitSync();
  }

  /** Provisioned extents in volume order, coalesced over consecutive data blocks. */
  map(): Extent[] {
    return this.extents(0, this.sizeBytes);
  }

  /**
   * Provisioned extents that meet [offsetBytes, offsetBytes + lengthBytes), in whole blocks (an extent may start
   * before or end after the range), coalesced over consecutive data blocks. Reads only the mapping tree nodes
   * that can hold the range.
   */
  extents(offsetBytes: number, lengthBytes: number): Extent[] {
    const bs = this.pool.blockSize;
    const out: Extent[] = [];
    let cur: Extent | null = null;
    const first = Math.floor(offsetBytes / bs);
    const end = Math.ceil((offsetBytes + lengthBytes) / bs);
    this.pool.metadata.forEachMappingIn(this.id, first, end, (vblock, dblock) => {
      if (cur && cur.offsetBytes + cur.lengthBytes === vblock * bs && cur.dblock + cur.lengthBytes / bs === dblock) {
        cur.lengthBytes += bs;
      } else {
        cur = { offsetBytes: vblock * bs, lengthBytes: bs, dblock };
        out.push(cur);
      }
    });
    return out;
  }
}
