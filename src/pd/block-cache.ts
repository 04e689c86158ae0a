/**
 * Block cache: which metadata block sits in which 4 KiB slot of WASM memory.
 *
 * Contract:
 * - `get(mblock, kind, leafVs)` returns the address of the block's bytes, reading and validating it on a miss
 *   (checksum with the kind's salt, self block number, and for nodes the structural checks). A block that fails
 *   validation is never cached; the error names the structure and block.
 * - Addresses stay valid until the next cache call unless the block is pinned: inside `op()` every block
 *   returned by `get`/`create` — or found resident by the WASM core — is pinned until the outermost op
 *   returns. Pinning is a per-slot mark equal to the running op's epoch (in WASM memory, so the core marks
 *   the slots it uses without calling out).
 * - The per-slot dirty flags and kinds live in WASM memory too: the core marks blocks it shadows in place.
 * - `create(mblock, kind)` gives a zeroed, dirty slot for a block newly allocated in this transaction (no read).
 * - Dirty blocks are only ever blocks the committed superblock cannot reach (the transaction manager is the
 *   only caller of `create`/`markDirty`), so they may be written back early when evicted: that is what lets a
 *   transaction be larger than the cache. Checksums are computed (in WASM) when a block is written.
 * - `writeDirty()` writes every dirty block; `drop()` forgets every slot (abort: dirty blocks are discarded).
 */
import type { BlockDevice } from '../io/block-device.js';
import type { Core } from '../core/wasm.js';
import { Status, S_EPOCH, S_NR_DIRTY, NOT_NODE } from '../core/abi.js';
import { statusText } from '../core/status.js';
import { ThinpoolError } from '../errors.js';
import { BlockKind, KIND_NAME, SALT, BLOCK_SIZE } from './block-kinds.js';
import { SlotTable } from './slot-table.js';
import { TWO32 } from '../core/u64.js';

const NO_BLOCK = -1;
export class BlockCache {
  private readonly core: Core;
  private readonly dev: BlockDevice;
  private readonly nrSlots: number;
  private readonly table: SlotTable;
  private readonly blockOf: Float64Array;
  private readonly kindOf: Uint8Array;
  private readonly dirty: Uint8Array;
  private readonly ref: Uint8Array;
  private readonly marks: Uint32Array;
  /** State page words: [S_EPOCH], [S_NR_DIRTY]. */
  private readonly st: Uint32Array;
  private hand = 0;
  private opDepth = 0;
  /** Statistics for status and benchmarks. */
  reads = 0;
  writes = 0;

  constructor(core: Core, dev: BlockDevice) {
    this.core = core;
    this.dev = dev;
    this.nrSlots = core.nrSlots;
    const buf = core.memory.buffer;
    this.blockOf = new Float64Array(this.nrSlots).fill(NO_BLOCK);
    this.kindOf = new Uint8Array(buf, core.kindBase, this.nrSlots);
    this.dirty = new Uint8Array(buf, core.dirtyBase, this.nrSlots);
    this.ref = new Uint8Array(buf, core.refBase, this.nrSlots);
    this.marks = new Uint32Array(buf, core.marksBase, this.nrSlots);
    this.st = new Uint32Array(buf, core.state, 1024);
    this.table = new SlotTable(core);
    this.drop();
    const host = core.host;
    host.node = (lo, hi, vs) => {
      try {
        return this.get(lo + hi * TWO32, BlockKind.Node, vs);
      } catch (e) {
        return core.hostFailed(e);
      }
    };
    host.block = (lo, hi, kind) => {
      try {
        return this.get(lo + hi * TWO32, kind as BlockKind);
      } catch (e) {
        return core.hostFailed(e);
      }
    };
    host.create = (lo, hi, kind, vs) => {
      try {
        return this.create(lo + hi * TWO32, kind as BlockKind, vs === NOT_NODE ? undefined : vs);
      } catch (e) {
        return core.hostFailed(e);
      }
    };
    host.forget = (lo, hi) => this.forget(lo + hi * TWO32);
  }

  private get epoch(): number {
    return this.st[S_EPOCH >>> 2];
  }

  private get nrDirty(): number {
    return this.st[S_NR_DIRTY >>> 2];
  }

  private set nrDirty(n: number) {
    this.st[S_NR_DIRTY >>> 2] = n;
  }

  /** Pinned for the running op (only meaningful while one runs). */
  private pinned(slot: number): boolean {
    return this.opDepth > 0 && this.marks[slot] === this.epoch;
  }

  get device(): BlockDevice {
    return this.dev;
  }

  /** Run fn with every block it touches pinned; pins are released when the outermost op returns. */
  op<T>(fn: () => T): T {
    // A new epoch at the start and at the end of the outermost op: marks made outside ops never pin.
    if (this.opDepth++ === 0) this.st[S_EPOCH >>> 2]++;
    try {
      return fn();
    } finally {
      if (--this.opDepth === 0) this.st[S_EPOCH >>> 2]++;
    }
  }

  private touch(slot: number): number {
    this.ref[slot] = 1;
    this.marks[slot] = this.epoch;
    return this.core.slotAddr(slot);
  }

  /** Address of a validated block. */
  get(mblock: number, kind: BlockKind, leafVs = 0): number {
    const slot = this.table.get(mblock);
    if (slot >= 0) {
      if (this.kindOf[slot] !== kind || (kind === BlockKind.Node && this.table.validatedAs(mblock) !== leafVs)) {
        this.validate(slot, mblock, kind, leafVs);
      }
      return this.touch(slot);
    }
    return this.touch(this.load(mblock, kind, leafVs));
  }

  /** Is the block resident (for tests and statistics)? */
  has(mblock: number): boolean {
    return this.table.get(mblock) >= 0;
  }

  /**
   * A zeroed, dirty slot for a block allocated in this transaction.
   * `leafVs`: for a node, the leaf value size of its tree. The host keeps its own nodes valid, so a dirty node
   * stays registered as a node of that tree and WASM lookups walk uncommitted paths without calling back.
   */
  create(mblock: number, kind: BlockKind, leafVs?: number): number {
    let slot = this.table.get(mblock);
    if (slot < 0) {
      slot = this.victim();
      this.blockOf[slot] = mblock;
    }
    this.table.set(mblock, slot, kind === BlockKind.Node && leafVs !== undefined ? leafVs : NOT_NODE);
    this.kindOf[slot] = kind;
    const addr = this.core.slotAddr(slot);
    this.core.u8.fill(0, addr, addr + BLOCK_SIZE);
    this.setDirty(slot);
    return this.touch(slot);
  }

  /** Mark a resident block dirty; `kind` decides the salt used when it is written. */
  markDirty(mblock: number, kind: BlockKind, leafVs?: number): void {
    const slot = this.table.get(mblock);
    if (slot < 0) throw new ThinpoolError('EFAILED', `block ${mblock} marked dirty while not resident`);
    this.kindOf[slot] = kind;
    this.table.setValidated(mblock, kind === BlockKind.Node && leafVs !== undefined ? leafVs : NOT_NODE);
    this.setDirty(slot);
  }

  private setDirty(slot: number): void {
    if (!this.dirty[slot]) {
      this.dirty[slot] = 1;
      this.nrDirty++;
    }
  }

  private load(mblock: number, kind: BlockKind, leafVs: number): number {
    if (!(mblock > 0 || kind === BlockKind.Superblock) || mblock * BLOCK_SIZE >= this.dev.sizeBytes) {
      throw ThinpoolError.metadata('EBADBLOCKNR', `block number ${mblock} out of range`, KIND_NAME[kind], mblock);
    }
    const slot = this.victim();
    const addr = this.core.slotAddr(slot);
    const view = new Uint8Array(this.core.memory.buffer, addr, BLOCK_SIZE);
    this.dev.read(view, mblock * BLOCK_SIZE);
    this.reads++;
    this.table.set(mblock, slot, NOT_NODE);
    this.blockOf[slot] = mblock;
    try {
      this.validate(slot, mblock, kind, leafVs);
    } catch (e) {
      this.table.delete(mblock);
      this.blockOf[slot] = NO_BLOCK;
      throw e;
    }
    return slot;
  }

  private validate(slot: number, mblock: number, kind: BlockKind, leafVs: number): void {
    const addr = this.core.slotAddr(slot);
    const lo = mblock >>> 0;
    const hi = Math.floor(mblock / TWO32);
    // Dirty blocks were produced by this process and carry no checksum yet: only check their structure kind.
    const s = this.dirty[slot]
      ? Status.OK
      : kind === BlockKind.Node
        ? this.core.x.nodeCheck(addr, lo, hi, leafVs)
        : this.core.x.blockCheck(addr, SALT[kind], lo, hi);
    if (s !== Status.OK) {
      const code = s === Status.BAD_CHECKSUM ? 'EBADCSUM' : s === Status.BAD_BLOCKNR ? 'EBADBLOCKNR' : 'EBADNODE';
      throw ThinpoolError.metadata(code, statusText(s), KIND_NAME[kind], mblock);
    }
    this.kindOf[slot] = kind;
    this.table.setValidated(mblock, kind === BlockKind.Node ? leafVs : NOT_NODE);
  }

  /** Pick a slot to reuse (clock), writing it back first when dirty. */
  private victim(): number {
    for (let sweeps = 0; sweeps < 3 * this.nrSlots; sweeps++) {
      const s = this.hand;
      this.hand = (this.hand + 1) % this.nrSlots;
      if (this.pinned(s)) continue;
      if (this.blockOf[s] === NO_BLOCK) return s;
      if (this.ref[s]) {
        this.ref[s] = 0;
        continue;
      }
      if (this.dirty[s]) this.writeSlot(s);
      this.table.delete(this.blockOf[s]);
      this.blockOf[s] = NO_BLOCK;
      return s;
    }
    throw new ThinpoolError('EFAILED', `metadata cache exhausted: all ${this.nrSlots} slots pinned`);
  }

  private writeSlot(s: number): void {
    const addr = this.core.slotAddr(s);
    this.core.x.blockPrepare(addr, SALT[this.kindOf[s]]);
    this.dev.write(new Uint8Array(this.core.memory.buffer, addr, BLOCK_SIZE), this.blockOf[s] * BLOCK_SIZE);
    this.writes++;
    this.dirty[s] = 0;
    this.nrDirty--;
  }

  /** Write every dirty block (not flushed). */
  writeDirty(): void {
    if (this.nrDirty === 0) return;
    const order: number[] = [];
    for (let s = 0; s < this.nrSlots; s++) if (this.dirty[s]) order.push(s);
    order.sort((a, b) => this.blockOf[a] - this.blockOf[b]);
    for (const s of order) this.writeSlot(s);
  }

  get dirtyCount(): number {
    return this.nrDirty;
  }

  /** Forget a block (it was freed in this transaction and its contents no longer matter). */
  forget(mblock: number): void {
    const s = this.table.get(mblock);
    if (s < 0 || this.pinned(s)) return;
    if (this.dirty[s]) {
      this.dirty[s] = 0;
      this.nrDirty--;
    }
    this.table.delete(mblock);
    this.blockOf[s] = NO_BLOCK;
  }

  /** Forget every slot; dirty contents are discarded (abort to the last commit). */
  drop(): void {
    this.table.clear();
    this.blockOf.fill(NO_BLOCK);
    this.dirty.fill(0);
    this.kindOf.fill(0);
    this.nrDirty = 0;
  }

  get slots(): number {
    return this.nrSlots;
  }
}
