/**
 * A `file-disk` Disk over a volume, so libraries written for balena's disk interface work on a fork directly:
 * `ext2fs` (`withMountedDisk(new VolumeDisk(fork), 0, ...)`), `balena-image-fs`, partition readers.
 *
 * Contract:
 * - `_getCapacity` is the volume size; `_read`/`_write` go straight to the volume (reads past the end are cut
 *   short and report fewer bytes); `_flush` commits the pool only when `commitOnFlush` (default: no-op, test
 *   disks need no durability); `discard` unmaps whole blocks of the volume and zeroes partial edges, so a
 *   trimmed filesystem returns blocks to the pool.
 * - file-disk's own bookkeeping (recordWrites/recordReads/discarded chunks) still works when asked for.
 * - A read-only volume (a golden) gives a read-only Disk: file-disk then drops writes silently, as FileDisk does.
 */
import { Disk, type ReadResult, type WriteResult } from 'file-disk';
import type { Volume } from '../thin/volume.js';
import { volumeOf, type VolumeLike } from './store.js';

export interface VolumeDiskOptions {
  /** Force read-only (default: the volume's own flag). */
  readOnly?: boolean;
  /** Record writes in memory instead of writing them (file-disk's copy-on-write mode). Default false. */
  recordWrites?: boolean;
  recordReads?: boolean;
  /** Make flush() commit the pool. Default false. */
  commitOnFlush?: boolean;
}

export class VolumeDisk extends Disk {
  readonly volume: Volume;
  readonly #commitOnFlush: boolean;

  constructor(v: VolumeLike, opts: VolumeDiskOptions = {}) {
    const vol = volumeOf(v);
    super(opts.readOnly ?? vol.readOnly, opts.recordWrites ?? false, opts.recordReads ?? false, true);
    this.volume = vol;
    this.#commitOnFlush = opts.commitOnFlush === true;
  }

  protected override async _getCapacity(): Promise<number> {
    return this.volume.sizeBytes;
  }

  protected override async _read(buffer: Buffer, bufferOffset: number, length: number, fileOffset: number): Promise<ReadResult> {
    const n = Math.max(0, Math.min(length, this.volume.sizeBytes - fileOffset));
    if (n > 0) this.volume.readSync(buffer.subarray(bufferOffset, bufferOffset + n), fileOffset);
    return { bytesRead: n, buffer };
  }

  protected override async _write(buffer: Buffer, bufferOffset: number, length: number, fileOffset: number): Promise<WriteResult> {
    this.volume.writeSync(buffer.subarray(bufferOffset, bufferOffset + length), fileOffset);
    return { bytesWritten: length, buffer };
  }

  protected override async _flush(): Promise<void> {
    if (this.#commitOnFlush) this.volume.flushSync();
  }

  protected async _discard(offset: number, length: number): Promise<void> {
    const end = Math.min(offset + length, this.volume.sizeBytes);
    if (end > offset) this.volume.discardSync(offset, end - offset);
  }

  /** file-disk only records a discard; also unmap it in the volume (unless read-only or recording writes). */
  override async discard(offset: number, length: number): Promise<void> {
    if (this.recordWrites || this.recordReads) await super.discard(offset, length);
    if (!this.readOnly && !this.recordWrites) await this._discard(offset, length);
  }
}
