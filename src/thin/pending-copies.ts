/**
 * Deferred copy-on-write copies ("pending copies") of an open pool's transaction.
 *
 * A write of whole granules (4 KiB, aligned) into a shared block does not copy the block first: the pool
 * allocates the new block, writes the caller's bytes there, maps it, and records an entry here: `target` holds
 * the written granules, every other granule is still owed from the same granule of `source` (the block it
 * replaced). Later whole-granule writes into `target` pay off part of the debt; a block written whole owes
 * nothing and is never copied. `settle(target)` copies what is still owed (one device copy per run of owed
 * granules) and drops the entry.
 *
 * Contract (the owner, the data path and the commit, keeps these):
 * - Entries live only inside one transaction. Every entry is settled before the commit's data flush (so a
 *   committed mapping never points at a block with owed bytes), and the table is cleared when the transaction
 *   is dropped (abort): block numbers mean nothing after that.
 * - `target` is read only after `settle(target)`: by the data path's reads, by a copy-on-write from it, and by
 *   anything handed data block numbers (extents).
 * - An in-place write into `target` goes through `beforeInPlace`: whole granules are marked written, anything
 *   else settles first (a later copy of owed granules must never land on newer bytes).
 * - `source` must keep its bytes until its entries settle: an in-place write into it goes through
 *   `beforeInPlace`, which settles them first. A source freed in this transaction keeps its bytes, since freed
 *   blocks are reused and released to the host only after the commit, which settles first.
 * - Bounded: at most MAX_OWED_GRANULES granules owed in all; adding past that settles every entry first.
 */
import { ThinpoolError } from '../errors.js';

/** The unit of the debt: writes that cover whole aligned granules can be deferred. */
export const GRANULE = 4096;

/** Granule flags kept at most (1 MiB of flags): past it every entry is settled. */
const MAX_OWED_GRANULES = 1 << 20;

interface Entry {
  source: number;
  /** 1 where the granule has been written into the target. */
  written: Uint8Array;
  /** Granules not yet written (still owed). */
  owed: number;
}

/** Copy bytes inside the data device: (source byte, destination byte, length). */
export type CopyBytes = (src: number, dst: number, length: number) => void;

export class PendingCopies {
  private readonly blockSize: number;
  private readonly copy: CopyBytes;
  private readonly targets = new Map<number, Entry>();
  /** source block -> the targets that still owe bytes from it */
  private readonly sources = new Map<number, number[]>();
  private flags = 0;

  constructor(blockSize: number, copy: CopyBytes) {
    this.blockSize = blockSize;
    this.copy = copy;
  }

  /** Entries not yet settled. The data path tests this before anything else (0 on almost every call). */
  get size(): number {
    return this.targets.size;
  }

  /** Can a write of `length` bytes at `within` of a shared block be deferred (whole granules, not the whole block)? */
  canDefer(within: number, length: number): boolean {
    return within % GRANULE === 0 && length % GRANULE === 0 && length > 0 && length < this.blockSize;
  }

  /** Does data block `dblock` owe bytes? */
  owes(dblock: number): boolean {
    return this.targets.has(dblock);
  }

  /**
   * Record that `target` (just mapped in place of `source`) holds `length` bytes written at `within` (whole
   * granules, canDefer) and owes the rest of `source`.
   */
  add(target: number, source: number, within: number, length: number): void {
    const granules = this.blockSize / GRANULE;
    if (this.flags + granules > MAX_OWED_GRANULES) this.settleAll();
    if (this.targets.has(target)) {
      throw new ThinpoolError('ECORRUPT', `data block ${target} was allocated twice in one transaction (it still owes copied bytes)`, {
        structure: 'data space map',
      });
    }
    const written = new Uint8Array(granules);
    written.fill(1, within / GRANULE, (within + length) / GRANULE);
    this.targets.set(target, { source, written, owed: granules - length / GRANULE });
    this.flags += granules;
    const list = this.sources.get(source);
    if (list) list.push(target);
    else this.sources.set(source, [target]);
  }

  /**
   * Before `length` bytes at `within` of `dblock` are written in place: a source settles its targets; a target
   * marks whole granules written (and needs no copy at all once every granule is), or settles first.
   */
  beforeInPlace(dblock: number, within: number, length: number): void {
    const targets = this.sources.get(dblock);
    if (targets !== undefined) for (const t of targets.slice()) this.settle(t);
    const e = this.targets.get(dblock);
    if (e === undefined) return;
    if (within % GRANULE !== 0 || length % GRANULE !== 0) {
      this.settle(dblock);
      return;
    }
    const end = (within + length) / GRANULE;
    for (let g = within / GRANULE; g < end; g++) {
      if (e.written[g] === 0) {
        e.written[g] = 1;
        e.owed--;
      }
    }
    if (e.owed === 0) this.drop(dblock, e);
  }

  /** Copy what `dblock` still owes from its source, in runs of owed granules, and drop its entry. */
  settle(dblock: number): void {
    const e = this.targets.get(dblock);
    if (e === undefined) return;
    const bs = this.blockSize;
    const n = e.written.length;
    for (let g = 0; g < n; ) {
      if (e.written[g] === 1) {
        g++;
        continue;
      }
      let end = g + 1;
      while (end < n && e.written[end] === 0) end++;
      this.copy(e.source * bs + g * GRANULE, dblock * bs + g * GRANULE, (end - g) * GRANULE);
      g = end;
    }
    this.drop(dblock, e); // only after every copy returned: a failed copy leaves the entry to settle again
  }

  /** Settle every entry (before a commit, and before data block numbers leave the pool). */
  settleAll(): void {
    for (const t of [...this.targets.keys()]) this.settle(t);
  }

  /** Forget every entry (the transaction was dropped). */
  clear(): void {
    this.targets.clear();
    this.sources.clear();
    this.flags = 0;
  }

  private drop(target: number, e: Entry): void {
    this.targets.delete(target);
    this.flags -= e.written.length;
    const list = this.sources.get(e.source)!;
    const at = list.indexOf(target);
    list.splice(at, 1);
    if (list.length === 0) this.sources.delete(e.source);
  }
}
