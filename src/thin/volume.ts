/**
 * A thin volume: byte-addressed reads and writes over its dm-thin device.
 *
 * Contract:
 * - Unprovisioned ranges read as zeros. The first write to a block provisions it; the rest of a fresh block
 *   reads as zeros (new blocks are zeroed, like dm-thin without skip_block_zeroing). A write to a block that is
 *   shared by the kernel's time rule copies that one block to a new one first (break sharing).
 * - `discard` unmaps whole blocks and zeroes partial edges.
 * - Writes are durable after `flush()` (a pool commit). The async methods do their I/O synchronously and
 *   resolve at once, except on a pool whose data device takes asynchronous requests (RADOS): there device I/O
 *   of many calls is in flight together; `readSync`/`writeSync` are the same without the promise.
 * - A read-only volume (committed image layer, view) refuses every write path with EROFS.
 * - A volume depends only on VolumeIO (its pool's data path and the catalog record of its device), never on the
 *   whole pool: this file imports nothing from the pool's files.
 */
import { ThinpoolError, isThinpoolError } from '../errors.js';
import { allParts, started } from '../io/block-device.js';

/** What a volume needs from its pool: the data path, the catalog record of its device, the commit. */
export interface VolumeIO {
  readonly blockSize: number;
  /** The space policy's answer to a full pool (async writes may wait for space). */
  readonly spaceSettings: { readonly whenFull: 'error' | 'wait'; readonly waitTimeoutMs: number };
  recordOf(id: number): { readonly name: string; readonly readOnly?: boolean } | undefined;
  sizeOf(id: number): number;
  readData(id: number, buf: Uint8Array, offset: number): void;
  writeData(id: number, buf: Uint8Array, offset: number): void;
  /** True when the data device takes asynchronous requests: then read/write use the *Async data path. */
  readonly asyncData?: boolean;
  /** The same with device I/O in flight together (a pool on an asynchronous data device). */
  readDataAsync?(id: number, buf: Uint8Array, offset: number): Promise<void>;
  writeDataAsync?(id: number, buf: Uint8Array, offset: number): Promise<void>;
  discardData(id: number, offset: number, length: number): void;
  /** Make everything written so far durable (a pool commit). */
  commitSync(): void;
  forEachMappingIn(id: number, first: number, end: number, fn: (vblock: number, dblock: number) => void): void;
}

/**
 * The pool a volume belongs to, opaque here. pool.ts widens it to ThinPool by declaration merging, so
 * `volume.pool` is fully typed for users while this file does not import the pool (no import circle).
 */
// biome-ignore lint/suspicious/noEmptyInterface: widened to ThinPool in pool.ts
export interface VolumePool {}

export interface Extent {
  /** Byte offset in the volume. */
  offsetBytes: number;
  lengthBytes: number;
  /** First data block of the run (consecutive virtual blocks map to consecutive data blocks). */
  dblock: number;
}

export class Volume {
  readonly pool: VolumePool;
  readonly id: number;
  readonly #io: VolumeIO;

  /** @internal use pool.volume() */
  constructor(pool: VolumePool, io: VolumeIO, id: number) {
    this.pool = pool;
    this.#io = io;
    this.id = id;
  }

  /** Data block size of the pool in bytes. */
  get blockSize(): number {
    return this.#io.blockSize;
  }

  get name(): string | undefined {
    return this.#io.recordOf(this.id)?.name;
  }

  get sizeBytes(): number {
    return this.#io.sizeOf(this.id);
  }

  get readOnly(): boolean {
    return this.#io.recordOf(this.id)?.readOnly === true;
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

  /**
   * Fill buf from the volume at offsetBytes. The common case (a safe integer offset, the range inside the volume)
   * is checked with one size lookup; anything else goes through range() for its error.
   */
  readSync(buf: Uint8Array, offsetBytes: number): void {
    const io = this.#io;
    if (!(offsetBytes >= 0 && offsetBytes + buf.length <= io.sizeOf(this.id) && Number.isSafeInteger(offsetBytes))) {
      this.range(offsetBytes, buf.length);
    }
    io.readData(this.id, buf, offsetBytes);
  }

  writeSync(buf: Uint8Array, offsetBytes: number): void {
    this.range(offsetBytes, buf.length);
    if (this.readOnly) throw new ThinpoolError('EROFS', `volume ${this.label} is read-only`);
    this.#io.writeData(this.id, buf, offsetBytes);
  }

  read(buf: Uint8Array, offsetBytes: number): Promise<void> {
    return started(() => {
      const io = this.#io;
      if (!io.asyncData || io.readDataAsync === undefined) {
        this.readSync(buf, offsetBytes);
        return allParts([]);
      }
      this.range(offsetBytes, buf.length);
      return io.readDataAsync(this.id, buf, offsetBytes);
    });
  }

  /**
   * Like writeSync; when the pool is full and its policy is `whenFull: 'wait'`, waits (up to the policy's
   * timeout) for space to be freed by other work in this process, then retries.
   */
  async write(buf: Uint8Array, offsetBytes: number): Promise<void> {
    const deadline = Date.now() + this.#io.spaceSettings.waitTimeoutMs;
    for (;;) {
      try {
        if (!this.#io.asyncData || this.#io.writeDataAsync === undefined) this.writeSync(buf, offsetBytes);
        else {
          this.range(offsetBytes, buf.length);
          if (this.readOnly) throw new ThinpoolError('EROFS', `volume ${this.label} is read-only`);
          await this.#io.writeDataAsync(this.id, buf, offsetBytes);
        }
        return;
      } catch (e) {
        if (!isThinpoolError(e, 'ENOSPC_DATA') || this.#io.spaceSettings.whenFull !== 'wait' || Date.now() >= deadline) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  discardSync(offsetBytes: number, lengthBytes: number): void {
    this.range(offsetBytes, lengthBytes);
    if (this.readOnly) throw new ThinpoolError('EROFS', `volume ${this.label} is read-only`);
    this.#io.discardData(this.id, offsetBytes, lengthBytes);
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.discardSync(offsetBytes, lengthBytes);
  }

  /** Make everything written so far durable (a pool commit). */
  async flush(): Promise<void> {
    this.#io.commitSync();
  }

  flushSync(): void {
    this.#io.commitSync();
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
    const bs = this.#io.blockSize;
    const out: Extent[] = [];
    let cur: Extent | null = null;
    const first = Math.floor(offsetBytes / bs);
    const end = Math.ceil((offsetBytes + lengthBytes) / bs);
    this.#io.forEachMappingIn(this.id, first, end, (vblock, dblock) => {
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
