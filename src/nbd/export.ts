/**
 * An opened NBD export: a thin volume plus the per-block mapping queries the protocol needs (holes in reads,
 * base:allocation block status). All engine calls are synchronous, except readAsync/writeAsync, used for exports
 * of pools whose data device keeps many requests in flight (`async`: RADOS).
 */
import { isThinpoolError } from '../errors.js';
import type { ThinPool } from '../thin/pool.js';
import type { Volume } from '../thin/volume.js';
import { EINVAL, EIO, ENOSPC, EPERM } from './constants.js';

/** A run of consecutive bytes that are all mapped or all unmapped. */
export interface Run {
  offset: number;
  length: number;
  mapped: boolean;
}

const ZEROES = new Uint8Array(1024 * 1024);

export class OpenExport {
  readonly name: string;
  readonly volume: Volume;
  readonly size: number;
  readonly readOnly: boolean;
  /** The volume's pool keeps many data requests in flight (a RADOS pool): READ and WRITE run asynchronously. */
  readonly async: boolean;
  /**
   * A WRITE that is alone may run synchronously: an async export whose data device answers asynchronous writes
   * only once the cluster has them (no write-back), so a synchronous write answers no later.
   */
  readonly syncLoneWrites: boolean;
  private readonly pool: ThinPool;
  private readonly bs: number;

  constructor(pool: ThinPool, name: string, volume: Volume, readOnly: boolean) {
    this.pool = pool;
    this.name = name;
    this.volume = volume;
    this.size = volume.sizeBytes;
    this.readOnly = readOnly || volume.readOnly || pool.mode !== 'write';
    this.bs = pool.blockSize;
    this.async = pool.asyncData;
    this.syncLoneWrites = this.async && pool.writeBackBytes === 0;
  }

  readAsync(buf: Uint8Array, offset: number): Promise<void> {
    return this.volume.read(buf, offset);
  }

  writeAsync(buf: Uint8Array, offset: number): Promise<void> {
    return this.volume.write(buf, offset);
  }

  /**
   * Mapped/unmapped runs covering [offset, offset + length), split at block boundaries only where the state
   * changes. Scans at most maxBlocks blocks (the result then covers less than asked; at least one run).
   */
  runs(offset: number, length: number, maxBlocks = Infinity): Run[] {
    const md = this.pool.metadata;
    const root = md.rootOf(this.volume.id);
    const bs = this.bs;
    const end = offset + length;
    const out: Run[] = [];
    let pos = offset;
    let scanned = 0;
    let cur: Run | null = null;
    while (pos < end && scanned < maxBlocks) {
      const vblock = Math.floor(pos / bs);
      const next = Math.min(end, (vblock + 1) * bs);
      const mapped = md.lookupDblock(root, vblock) >= 0;
      if (cur !== null && cur.mapped === mapped) cur.length += next - pos;
      else {
        cur = { offset: pos, length: next - pos, mapped };
        out.push(cur);
      }
      pos = next;
      scanned++;
    }
    return out;
  }

  /** Does the range lie within one block? (fast path of reads) */
  oneBlock(offset: number, length: number): boolean {
    return Math.floor(offset / this.bs) === Math.floor((offset + length - 1) / this.bs);
  }

  read(buf: Uint8Array, offset: number): void {
    this.volume.readSync(buf, offset);
  }

  write(buf: Uint8Array, offset: number): void {
    this.volume.writeSync(buf, offset);
  }

  /** TRIM: unmap the whole blocks inside the range; partial blocks at the edges are left alone (advisory). */
  trim(offset: number, length: number): void {
    const bs = this.bs;
    const first = Math.ceil(offset / bs) * bs;
    const end = Math.floor((offset + length) / bs) * bs;
    if (end > first) this.volume.discardSync(first, end - first);
  }

  /** WRITE_ZEROES: unmap whole blocks and zero the edges, or (noHole) write zeroes so the range stays provisioned. */
  zero(offset: number, length: number, noHole: boolean): void {
    if (!noHole) {
      this.volume.discardSync(offset, length);
      return;
    }
    for (let done = 0; done < length; ) {
      const n = Math.min(ZEROES.length, length - done);
      this.volume.writeSync(ZEROES.subarray(0, n), offset + done);
      done += n;
    }
  }

  /** Would zeroing this range be a pure metadata change (only whole blocks, or edges already unmapped)? */
  fastZero(offset: number, length: number): boolean {
    const bs = this.bs;
    const head = offset % bs;
    const tail = (offset + length) % bs;
    const runs = (o: number, l: number) => l === 0 || this.runs(o, l).every((r) => !r.mapped);
    return (head === 0 || runs(offset, Math.min(length, bs - head))) && (tail === 0 || runs(offset + length - tail, tail));
  }

  flush(): void {
    this.pool.commitSync();
  }
}

/** Map an engine error onto an NBD error value. */
export function nbdErrno(e: unknown, write: boolean): number {
  if (isThinpoolError(e)) {
    switch (e.code) {
      case 'EINVAL':
        return write ? ENOSPC : EINVAL;
      case 'EROFS':
        return EPERM;
      case 'ENOSPC_DATA':
      case 'ENOSPC_METADATA':
        return ENOSPC;
      default:
        return EIO;
    }
  }
  return EIO;
}
