/**
 * Deferred copy-on-write copies ("pending copies") of an open pool's transaction.
 *
 * A write of whole granules (4 KiB, aligned) into a shared block neither copies the block nor writes at once:
 * the pool allocates the new block, maps it, and records an entry here holding the written bytes in memory:
 * `target` is to hold them over the bytes of `source` (the block it replaced). Later whole-granule writes into
 * `target` are held too; once every granule is held the block is written whole, with one device write and no
 * copy. `settle(target)` makes the block real: one device copy of `source` into `target`, then one write per run
 * of held granules (the two calls the copy-on-write made before it was deferred), and drops the entry.
 *
 * Contract (the owner, the data path and the commit, keeps these):
 * - Entries live only inside one transaction. Every entry is settled before the commit's data flush (so a
 *   committed mapping never points at a block that is not whole on the device), and the table is cleared when
 *   the transaction is dropped (abort): block numbers mean nothing after that. Held bytes are as durable as any
 *   unflushed write: a crash loses them together with the uncommitted mapping that pointed at them.
 * - `target`'s device bytes are read only after `settle(target)`: by the data path's reads, by a copy-on-write
 *   from it, and by anything handed data block numbers (extents).
 * - An in-place write into a block goes through `takeWrite` (one block) or `settleFor` (a run of blocks):
 *   whole granules for a target are held (the caller writes nothing), anything else settles first; and a
 *   `source` settles its targets first, since they are copied from its bytes as they were.
 * - Every data block allocated goes through `allocated` before anything is written into it: a block freed in
 *   the transaction that allocated it may be allocated again at once (a block whose committed count is not 0
 *   is reused, and released to the host, only after the commit, which settles first).
 * - Bounded: at most MAX_HELD_BYTES held in all; a new entry past that settles every entry first, and a held
 *   in-place write past it makes its own block real at once. Blocks over MAX_DEFER_BLOCK bytes are copied at
 *   once, as before.
 */
import { ThinpoolError } from '../errors.js';

/** The unit of what is held: writes that cover whole aligned granules can be deferred. */
export const GRANULE = 4096;

/** Bytes held in all at most (past it every entry is settled). */
const MAX_HELD_BYTES = 32 * 1024 * 1024;

/** Larger blocks are copied at once. */
const MAX_DEFER_BLOCK = 1024 * 1024;

interface Entry {
  source: number;
  /** The bytes written into each granule, or undefined where the granule still reads as the source's. */
  held: Array<Uint8Array | undefined>;
  /** Granules not held. */
  owed: number;
}

/** How the owner reaches the data device: copy bytes inside it, and write. */
export interface PendingIO {
  copy(src: number, dst: number, length: number): void;
  write(buf: Uint8Array, offset: number): void;
}

export class PendingCopies {
  private readonly blockSize: number;
  private readonly io: PendingIO;
  private readonly targets = new Map<number, Entry>();
  /** source block -> the targets that are to be copied from it */
  private readonly sources = new Map<number, number[]>();
  private heldBytes = 0;
  private readonly maxHeld: number;
  private scratch: Uint8Array | null = null;

  /** `maxHeldBytes`: the bound on held bytes (MAX_HELD_BYTES; smaller in tests). */
  constructor(blockSize: number, io: PendingIO, maxHeldBytes = MAX_HELD_BYTES) {
    this.blockSize = blockSize;
    this.io = io;
    this.maxHeld = maxHeldBytes;
  }

  /** Entries not yet settled. The data path tests this before anything else (0 on almost every call). */
  get size(): number {
    return this.targets.size;
  }

  /** Can a write of `length` bytes at `within` of a shared block be deferred (whole granules, not the whole block)? */
  canDefer(within: number, length: number): boolean {
    return within % GRANULE === 0 && length % GRANULE === 0 && length > 0 && length < this.blockSize && this.blockSize <= MAX_DEFER_BLOCK;
  }

  /**
   * Record that `target` (just mapped in place of `source`) holds `data` at `within` (whole granules, canDefer)
   * over the bytes of `source`; the bytes are copied, the caller may reuse `data`.
   */
  add(target: number, source: number, within: number, data: Uint8Array): void {
    if (this.heldBytes + data.length > this.maxHeld) this.settleAll();
    if (this.targets.has(target)) {
      throw new ThinpoolError('ECORRUPT', `data block ${target} was allocated twice in one transaction (it is still to be copied)`, {
        structure: 'data space map',
      });
    }
    const e: Entry = { source, held: new Array(this.blockSize / GRANULE), owed: this.blockSize / GRANULE };
    this.targets.set(target, e);
    const list = this.sources.get(source);
    if (list) list.push(target);
    else this.sources.set(source, [target]);
    this.hold(e, within, data);
  }

  /**
   * An in-place write of `data` at `within` of `dblock` is about to be made. Returns true when it was taken:
   * whole granules of a target are held (and the block written whole once every granule is); the caller then
   * writes nothing. Otherwise the caller writes, after this settled what the write could spoil: the block
   * itself when it is a target written in part of a granule, and the targets copied from it when it is a source.
   */
  takeWrite(dblock: number, within: number, data: Uint8Array): boolean {
    this.settleSourceOf(dblock);
    const e = this.targets.get(dblock);
    if (e === undefined) return false;
    if (within % GRANULE !== 0 || data.length % GRANULE !== 0) {
      this.settle(dblock);
      return false;
    }
    this.hold(e, within, data);
    if (e.owed === 0) this.writeWhole(dblock, e);
    else if (this.heldBytes > this.maxHeld) this.settle(dblock);
    return true;
  }

  /** Before an in-place write over data blocks [first, first + count): settle every entry it could spoil. */
  settleFor(first: number, count: number): void {
    for (let d = first; d < first + count; d++) {
      this.settleSourceOf(d);
      this.settle(d);
    }
  }

  /**
   * `dblock` was just allocated (so it was free: nothing maps it), before anything is written into it. Blocks
   * freed in the transaction that allocated them can be allocated again at once: a target's entry is dropped
   * with what it held (no mapping reaches it), and the targets to be copied from a source are made real now,
   * while its bytes are still the old ones.
   */
  allocated(dblock: number): void {
    this.settleSourceOf(dblock);
    const e = this.targets.get(dblock);
    if (e !== undefined) this.drop(dblock, e);
  }

  /** Make `dblock` whole on the device (the source's bytes, the held ones over them) and drop its entry. */
  settle(dblock: number): void {
    const e = this.targets.get(dblock);
    if (e === undefined) return;
    const bs = this.blockSize;
    this.io.copy(e.source * bs, dblock * bs, bs);
    const n = e.held.length;
    for (let g = 0; g < n; ) {
      if (e.held[g] === undefined) {
        g++;
        continue;
      }
      let end = g + 1;
      while (end < n && e.held[end] !== undefined) end++;
      this.io.write(this.gather(e, g, end), dblock * bs + g * GRANULE);
      g = end;
    }
    this.drop(dblock, e); // only after every call returned: a failure leaves the entry to settle again
  }

  /** Settle every entry (before a commit, and before data block numbers leave the pool). */
  settleAll(): void {
    for (const t of [...this.targets.keys()]) this.settle(t);
  }

  /** Forget every entry (the transaction was dropped). */
  clear(): void {
    this.targets.clear();
    this.sources.clear();
    this.heldBytes = 0;
  }

  private settleSourceOf(dblock: number): void {
    const targets = this.sources.get(dblock);
    if (targets !== undefined) for (const t of targets.slice()) this.settle(t);
  }

  /** Hold a copy of `data` (whole granules) at `within` of e. */
  private hold(e: Entry, within: number, data: Uint8Array): void {
    const copy = new Uint8Array(data); // a copy (Buffer's slice would be a view of the caller's memory)
    for (let g = within / GRANULE, at = 0; at < copy.length; g++, at += GRANULE) {
      if (e.held[g] === undefined) {
        e.owed--;
        this.heldBytes += GRANULE;
      }
      e.held[g] = copy.subarray(at, at + GRANULE);
    }
  }

  /** Every granule held: the block is written whole, nothing copied. */
  private writeWhole(dblock: number, e: Entry): void {
    this.io.write(this.gather(e, 0, e.held.length), dblock * this.blockSize);
    this.drop(dblock, e);
  }

  /** Held granules [g, end) of e as one contiguous buffer (valid until the next call). */
  private gather(e: Entry, g: number, end: number): Uint8Array {
    const out = (this.scratch ??= new Uint8Array(this.blockSize)).subarray(0, (end - g) * GRANULE);
    for (let k = g; k < end; k++) out.set(e.held[k]!, (k - g) * GRANULE);
    return out;
  }

  private drop(target: number, e: Entry): void {
    this.targets.delete(target);
    this.heldBytes -= (e.held.length - e.owed) * GRANULE;
    const list = this.sources.get(e.source)!;
    list.splice(list.indexOf(target), 1);
    if (list.length === 0) this.sources.delete(e.source);
  }
}
