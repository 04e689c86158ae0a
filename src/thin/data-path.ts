/**
 * The data path of an open pool: byte reads, writes and discards of a thin device, in data blocks.
 *
 * Contract:
 * - Unmapped blocks read as zeros. Runs of virtual blocks mapped to consecutive data blocks are read, or
 *   (when unshared) written in place, with one device call.
 * - A write to an unmapped block allocates a data block and maps it (whole unmapped blocks in a row: their data
 *   blocks are allocated together and consecutive ones written with one device call, then mapped); a write to a shared block (the kernel's
 *   time rule) copies the whole block to a new one first (break sharing); the rest of a new block reads as
 *   zeros (zeroed unless still pristine under the high-water mark, which is raised durably before the write).
 *   The copy goes through the device's copyWithin when it has one (reflink or copy_file_range on a file).
 *   A write of whole 4 KiB granules into a shared block defers the copy instead (pending-copies.ts): the new
 *   block is mapped and the bytes held in memory until the block is copied (before anything reads or copies
 *   it, before its old block is written in place, at the latest by the commit); a block whose every granule
 *   gets written is written whole and never copied.
 *   The mapping is inserted only after the data is written; a failed data write returns the block. Between
 *   an allocation and its mapping (or its return) no commit can run (continueChange: no headroom commit).
 * - Unshared mapped blocks are written in place even in read-only mode (not in failed mode); anything that
 *   needs metadata refuses with the mode's error.
 * - Allocation: auto-extend is asked before the allocation; when the pool is full but this transaction freed
 *   blocks, commit and retry (as the kernel does); else ENOSPC_DATA, with the pool still writable.
 * - A mapping past the end of the data device is corruption (ECORRUPT), never followed.
 * - Discard unmaps whole blocks (a freeing change) and zeroes partial edges through the write path.
 * - headCopy allocates and fills a block before its caller changes any mapping (rollback's partial tail).
 */
import { ThinpoolError, isThinpoolError } from '../errors.js';
import { allParts, copyInside, isAsyncDevice, started } from '../io/block-device.js';
import { change, commit, continueChange } from './commit.js';
import { autoExtend } from './extend.js';
import type { Mapping } from './metadata.js';
import { OP_METADATA_MARGIN } from './pool-state.js';
import type { PoolState } from './pool-state.js';

/** Most unmapped blocks provisioned together by one write (bounds the metadata one change may need). */
const MAX_RUN_BLOCKS = 256;

export class DataPath {
  private readonly s: PoolState;
  private zeroes: Uint8Array | null = null;

  constructor(s: PoolState) {
    this.s = s;
  }

  /**
   * The fast path: a read inside one block is a lookup (through the metadata's mapping cache) and one device
   * read of the caller's buffer (no subarray, no loop); anything longer goes through readLoop.
   */
  readData(id: number, buf: Uint8Array, offset: number): void {
    const s = this.s;
    const bs = s.blockSize;
    const vblock = Math.floor(offset / bs);
    const within = offset - vblock * bs;
    if (within + buf.length > bs || s.closed) {
      this.readLoop(id, buf, offset, null);
      return;
    }
    const md = s.md;
    const dblock = md.lookupData(id, vblock);
    if (dblock < 0) buf.fill(0);
    else if (dblock >= md.nrDataBlocks) this.badMapping(id, vblock, dblock, md.rootOf(id));
    else {
      if (s.pending.size !== 0) s.pending.settle(dblock);
      s.storage.data.read(buf, dblock * bs + within);
    }
  }

  /**
   * readData with the device reads in flight together when the data device takes asynchronous requests
   * (a RADOS device); the mapping lookups stay synchronous.
   */
  readDataAsync(id: number, buf: Uint8Array, offset: number): Promise<void> {
    return started(() => {
      const data = this.s.storage.data;
      if (!isAsyncDevice(data)) {
        this.readData(id, buf, offset);
        return allParts([]);
      }
      const parts: Array<Promise<void>> = [];
      this.readLoop(id, buf, offset, (part, pos) => parts.push(data.readAsync(part, pos)));
      return allParts(parts);
    });
  }

  /**
   * writeData with in-place writes (mapped, unshared blocks) in flight together on an asynchronous data device.
   * Provisioning and copying stay synchronous: between the lookup of a block and its new mapping no other
   * request runs, so requests to one virtual block are ordered (the role of dm-thin's bio-prison cells), and
   * the device applies requests to the same bytes in issue order (a copy reads what was written before it).
   * A commit's data flush waits for every write in flight.
   */
  async writeDataAsync(id: number, buf: Uint8Array, offset: number): Promise<void> {
    const data = this.s.storage.data;
    if (!isAsyncDevice(data)) return this.writeData(id, buf, offset);
    const parts: Array<Promise<void>> = [];
    this.writeLoop(id, buf, offset, (part, pos) => parts.push(data.writeAsync(part, pos)));
    await Promise.all(parts);
  }

  private readLoop(id: number, buf: Uint8Array, offset: number, io: ((part: Uint8Array, pos: number) => void) | null): void {
    const s = this.s;
    s.alive();
    const bs = s.blockSize;
    const md = s.md;
    const data = s.storage.data;
    let done = 0;
    while (done < buf.length) {
      const pos = offset + done;
      const vblock = Math.floor(pos / bs);
      const within = pos - vblock * bs;
      let n = Math.min(bs - within, buf.length - done);
      const dblock = md.lookupData(id, vblock);
      if (dblock >= md.nrDataBlocks) this.badMapping(id, vblock, dblock, md.rootOf(id));
      if (dblock < 0) {
        buf.fill(0, done, done + n);
      } else {
        // One read for a run of virtual blocks mapped to consecutive data blocks.
        let next = vblock + 1;
        while (
          done + n < buf.length &&
          dblock + (next - vblock) < md.nrDataBlocks &&
          md.lookupData(id, next) === dblock + (next - vblock)
        ) {
          n += Math.min(bs, buf.length - done - n);
          next++;
        }
        if (s.pending.size !== 0) for (let d = dblock; d < dblock + (next - vblock); d++) s.pending.settle(d);
        const part = done === 0 && n === buf.length ? buf : buf.subarray(done, done + n);
        if (io === null) data.read(part, dblock * bs + within);
        else io(part, dblock * bs + within);
      }
      done += n;
    }
  }

  writeData(id: number, buf: Uint8Array, offset: number): void {
    this.writeLoop(id, buf, offset, null);
  }

  private writeLoop(id: number, buf: Uint8Array, offset: number, io: ((part: Uint8Array, pos: number) => void) | null): void {
    const s = this.s;
    s.alive();
    const bs = s.blockSize;
    const md = s.md;
    let done = 0;
    while (done < buf.length) {
      const pos = offset + done;
      const vblock = Math.floor(pos / bs);
      const within = pos - vblock * bs;
      let n = Math.min(bs - within, buf.length - done);
      const m = md.lookup(id, vblock);
      if (io !== null && m && !m.shared && m.dblock < md.nrDataBlocks && md.mode !== 'fail') {
        const part = buf.subarray(done, done + n);
        if (s.pending.size === 0 || !s.pending.takeWrite(m.dblock, within, part)) {
          s.dataDirty = true;
          io(part, m.dblock * bs + within); // one block in place, in flight
        }
      } else if (m && !m.shared && m.dblock < md.nrDataBlocks && md.mode !== 'fail' && n < buf.length - done) {
        // A run of mapped, unshared blocks on consecutive data blocks is written in place with one write.
        let next = vblock + 1;
        while (done + n < buf.length && this.inPlaceRun(id, next) === m.dblock + (next - vblock)) {
          n += Math.min(bs, buf.length - done - n);
          next++;
        }
        if (s.pending.size !== 0) s.pending.settleFor(m.dblock, next - vblock);
        s.dataDirty = true;
        s.storage.data.write(buf.subarray(done, done + n), m.dblock * bs + within);
      } else if (io === null && m === null && within === 0 && buf.length - done >= 2 * bs && md.mode === 'write') {
        // One operation (event-gate.ts): listeners hear of thresholds and growth once the run is mapped.
        s.gate.enter();
        try {
          n = this.provisionRun(id, vblock, buf.subarray(done, done + Math.floor((buf.length - done) / bs) * bs));
        } finally {
          s.gate.leave();
        }
      } else {
        this.writeBlock(id, vblock, within, buf.subarray(done, done + n), m);
      }
      done += n;
    }
  }

  discardData(id: number, offset: number, length: number): void {
    const bs = this.s.blockSize;
    const firstFull = Math.ceil(offset / bs);
    const endFull = Math.floor((offset + length) / bs);
    if (firstFull >= endFull) {
      this.zeroRange(id, offset, length);
      return;
    }
    this.zeroRange(id, offset, firstFull * bs - offset);
    this.zeroRange(id, endFull * bs, offset + length - endFull * bs);
    const md = this.s.md;
    const doomed: number[] = [];
    if (endFull - firstFull <= md.deviceDetails(id).mappedBlocks) {
      const root = md.rootOf(id);
      for (let v = firstFull; v < endFull; v++) if (md.lookupDblock(root, v) >= 0) doomed.push(v);
    } else {
      md.forEachMapping(id, (v) => {
        if (v >= firstFull && v < endFull) doomed.push(v);
      });
    }
    for (const v of doomed) change(this.s, () => md.removeMapping(id, v), true);
  }

  /** Zero a byte range of a volume through the write path (only mapped blocks need it). */
  zeroRange(id: number, offset: number, length: number): void {
    const bs = this.s.blockSize;
    let done = 0;
    while (done < length) {
      const pos = offset + done;
      const vblock = Math.floor(pos / bs);
      const within = pos - vblock * bs;
      const n = Math.min(bs - within, length - done);
      const m = this.s.md.lookup(id, vblock);
      if (m) this.writeBlock(id, vblock, within, new Uint8Array(n), m);
      done += n;
    }
  }

  /** The data block vblock is mapped to when a write may go there in place (mapped, not shared), else null. */
  private inPlaceRun(id: number, vblock: number): number | null {
    const m = this.s.md.lookup(id, vblock);
    return m !== null && !m.shared && m.dblock < this.s.md.nrDataBlocks ? m.dblock : null;
  }

  /** Write part into vblock at within; m is vblock's mapping as looked up by the caller (one lookup per block). */
  private writeBlock(id: number, vblock: number, within: number, part: Uint8Array, m: (Mapping & { shared: boolean }) | null): void {
    const s = this.s;
    const md = s.md;
    const bs = s.blockSize;
    const data = s.storage.data;
    if (m && m.dblock >= md.nrDataBlocks) this.badMapping(id, vblock, m.dblock, md.rootOf(id));
    if (m && !m.shared && md.mode !== 'fail') {
      if (s.pending.size !== 0 && s.pending.takeWrite(m.dblock, within, part)) return; // held for a block to be copied
      s.dataDirty = true;
      data.write(part, m.dblock * bs + within); // in place; read-only mode still writes unshared mapped blocks
      return;
    }
    if (md.mode !== 'write') change(s, () => undefined); // refuses with the mode's error
    // One operation (event-gate.ts): listeners hear of thresholds and growth once the block is mapped and what it
    // owes is recorded.
    s.gate.enter();
    try {
      this.provisionBlock(id, vblock, within, part, m);
    } finally {
      s.gate.leave();
    }
  }

  /** writeBlock into a new data block: allocated, written (or its copy deferred), mapped. */
  private provisionBlock(id: number, vblock: number, within: number, part: Uint8Array, m: (Mapping & { shared: boolean }) | null): void {
    const s = this.s;
    const md = s.md;
    const bs = s.blockSize;
    const data = s.storage.data;
    // Copy-on-write of whole granules is deferred: the bytes are held until the block is copied (pending-copies.ts).
    const defer = m !== null && s.pending.canDefer(within, part.length);
    if (m && s.pending.size !== 0) s.pending.settle(m.dblock); // what is copied from it must be whole
    const dblock = this.allocDataBlock();
    // Set after the allocation, which may commit (auto-extend, reclaiming freed blocks): that commit clears it.
    s.dataDirty = true;
    try {
      const pristine = s.highWater.isPristine(dblock);
      s.highWater.beforeWrite(dblock);
      if (part.length < bs && !defer) {
        if (m) this.copyBlock(m.dblock, dblock);
        else if (!pristine) {
          this.zeroData(dblock * bs, within);
          this.zeroData(dblock * bs + within + part.length, bs - within - part.length);
        }
      }
      if (!defer) data.write(part, dblock * bs + within);
    } catch (e) {
      continueChange(s, () => md.releaseDataBlock(dblock));
      throw e;
    }
    continueChange(s, () => md.insertMapping(id, vblock, dblock));
    if (defer) s.pending.add(dblock, m!.dblock, within, part);
  }

  /**
   * Whole unmapped blocks from vblock on (buf holds whole blocks, vblock unmapped): a data block for each of the
   * run of unmapped blocks at the start of buf, the data of consecutive data blocks in one device write, then
   * the mappings, in writeBlock's order (data before mapping; a failed write gives back every block of the run).
   * Only blocks that can be allocated with no commit in between (no auto-extend, no reuse of blocks freed in
   * this transaction, metadata headroom for the whole run): a commit must never find a block allocated and not
   * yet mapped. Returns the bytes it wrote (at least one block: through writeBlock when no run can be made).
   */
  private provisionRun(id: number, vblock: number, buf: Uint8Array): number {
    const s = this.s;
    const md = s.md;
    const bs = s.blockSize;
    const root = md.rootOf(id);
    const set = s.spaceSettings;
    const free = md.dataFreeBlocks - md.dataFreedInTransaction;
    let k = 1;
    const most = Math.min(buf.length / bs, MAX_RUN_BLOCKS, free);
    while (k < most && md.lookupDblock(root, vblock + k) < 0) k++;
    const extends_ = set.autoExtend.enabled && 100 * (md.dataUsedBlocks + k) >= set.autoExtend.atPercent * md.nrDataBlocks;
    if (k < 2 || extends_ || md.metadataFreeBlocks < 2 * OP_METADATA_MARGIN) {
      this.writeBlock(id, vblock, 0, buf.subarray(0, bs), null);
      return bs;
    }
    const dblocks = change(s, () => {
      const out: number[] = [];
      for (let i = 0; i < k; i++) out.push(md.allocDataBlock());
      return out;
    });
    if (s.pending.size !== 0) for (const d of dblocks) s.pending.allocated(d);
    s.dataDirty = true; // after change(), which may commit (metadata headroom) and so clear it
    try {
      for (const d of dblocks) s.highWater.beforeWrite(d);
      for (let i = 0; i < k; ) {
        let j = i + 1;
        while (j < k && dblocks[j] === dblocks[i] + (j - i)) j++;
        s.storage.data.write(buf.subarray(i * bs, j * bs), dblocks[i] * bs);
        i = j;
      }
    } catch (e) {
      continueChange(s, () => {
        for (const d of dblocks) md.releaseDataBlock(d);
      });
      throw e;
    }
    continueChange(s, () => {
      for (let i = 0; i < k; i++) md.insertMapping(id, vblock + i, dblocks[i]);
    });
    return k * bs;
  }

  /**
   * A new data block holding the first `keep` bytes of data block `from` and zeros after them, written before
   * the caller changes any mapping (it is not mapped yet: map it, or give it back with md.releaseDataBlock).
   */
  headCopy(from: number, keep: number): number {
    const s = this.s;
    const bs = s.blockSize;
    if (s.pending.size !== 0) s.pending.settle(from); // what is copied from it must be whole
    const to = this.allocDataBlock();
    s.dataDirty = true;
    try {
      s.highWater.beforeWrite(to);
      this.copyBlock(from, to);
      this.zeroData(to * bs + keep, bs - keep);
    } catch (e) {
      continueChange(s, () => s.md.releaseDataBlock(to));
      throw e;
    }
    return to;
  }

  /** A mapping that points past the data device: corrupt metadata, never followed. */
  private badMapping(id: number, vblock: number, dblock: number, root: number): never {
    throw new ThinpoolError(
      'ECORRUPT',
      `mapping tree of thin device ${id} maps block ${vblock} to data block ${dblock}, beyond the data device (${this.s.md.nrDataBlocks} blocks) (root block ${root})`,
      { structure: 'mapping tree', mblock: root },
    );
  }

  /** A free data block (allocFree), told to the pending copies before anything is written into it. */
  private allocDataBlock(): number {
    const dblock = this.allocFree();
    if (this.s.pending.size !== 0) this.s.pending.allocated(dblock);
    return dblock;
  }

  /** A free data block; when none is free but this transaction freed some, commit and retry (as the kernel does). */
  private allocFree(): number {
    const s = this.s;
    // Growing commits: do it before the allocation, never between an allocation and its mapping.
    const set = s.spaceSettings;
    const md0 = s.md;
    if (set.autoExtend.enabled && 100 * (md0.dataUsedBlocks + 1) >= set.autoExtend.atPercent * md0.nrDataBlocks) autoExtend(s, set);
    return change(s, () => {
      try {
        return s.md.allocDataBlock();
      } catch (e) {
        if (!isThinpoolError(e, 'ENOSPC_DATA')) throw e;
        if (s.md.dataFreedInTransaction > 0) {
          commit(s);
          return s.md.allocDataBlock();
        }
        if (autoExtend(s, s.spaceSettings)) return s.md.allocDataBlock();
        const total = s.md.nrDataBlocks;
        throw new ThinpoolError(
          'ENOSPC_DATA',
          `pool is full: all ${total} data blocks (${total * s.blockSize} bytes) are in use; delete volumes or extend the pool`,
        );
      }
    });
  }

  /** Copy data block `from` (whole: its caller settled it) into `to` (not mapped yet), inside the device where it can. */
  private copyBlock(from: number, to: number): void {
    const bs = this.s.blockSize;
    copyInside(this.s.storage.data, from * bs, to * bs, bs);
  }

  private zeroData(pos: number, len: number): void {
    if (len <= 0) return;
    const z = (this.zeroes ??= new Uint8Array(Math.min(this.s.blockSize, 1024 * 1024)));
    for (let off = 0; off < len; off += z.length) {
      this.s.storage.data.write(z.subarray(0, Math.min(z.length, len - off)), pos + off);
    }
  }
}
