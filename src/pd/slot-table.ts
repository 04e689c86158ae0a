/**
 * The block -> slot map of the metadata cache, kept in WASM memory so the WASM core can resolve resident
 * nodes without calling back into JS (assembly/slot-table.ts reads it; only this class writes it).
 * Open addressing with linear probing and backward-shift deletion; 16-byte entries:
 * [block lo, block hi, slot + 1 (0 = empty), leaf value size the slot was validated for (NOT_NODE otherwise)].
 */
import { NOT_NODE } from '../core/abi.js';
import type { Core } from '../core/wasm.js';
import { TWO32 } from '../core/u64.js';

export { NOT_NODE };

function hash(lo: number, hi: number): number {
  let h = Math.imul(lo, 0x9e3779b1) ^ Math.imul(hi, 0x85ebca77);
  h ^= h >>> 16;
  return h >>> 0;
}

export class SlotTable {
  private readonly u32: Uint32Array;
  private readonly base: number;
  private readonly mask: number;

  constructor(core: Core) {
    this.u32 = core.u32;
    this.base = core.tableBase >>> 2;
    this.mask = core.tableCap - 1;
  }

  private find(mblock: number): number {
    const lo = mblock >>> 0;
    const hi = Math.floor(mblock / TWO32);
    const u = this.u32;
    let i = hash(lo, hi) & this.mask;
    for (;;) {
      const e = this.base + (i << 2);
      if (u[e + 2] === 0) return -1 - i;
      if (u[e] === lo && u[e + 1] === hi) return i;
      i = (i + 1) & this.mask;
    }
  }

  /** Slot of mblock, or -1. */
  get(mblock: number): number {
    const i = this.find(mblock);
    return i < 0 ? -1 : this.u32[this.base + (i << 2) + 2] - 1;
  }

  set(mblock: number, slot: number, leafVs: number = NOT_NODE): void {
    let i = this.find(mblock);
    if (i < 0) i = -1 - i;
    const e = this.base + (i << 2);
    this.u32[e] = mblock >>> 0;
    this.u32[e + 1] = Math.floor(mblock / TWO32);
    this.u32[e + 2] = slot + 1;
    this.u32[e + 3] = leafVs >>> 0;
  }

  /** Record what the resident block was validated as (a node with this leaf value size, or NOT_NODE). */
  setValidated(mblock: number, leafVs: number): void {
    const i = this.find(mblock);
    if (i >= 0) this.u32[this.base + (i << 2) + 3] = leafVs >>> 0;
  }

  validatedAs(mblock: number): number {
    const i = this.find(mblock);
    return i < 0 ? NOT_NODE : this.u32[this.base + (i << 2) + 3];
  }

  delete(mblock: number): void {
    let i = this.find(mblock);
    if (i < 0) return;
    const u = this.u32;
    const mask = this.mask;
    for (;;) {
      u[this.base + (i << 2) + 2] = 0;
      let j = i;
      for (;;) {
        j = (j + 1) & mask;
        const ej = this.base + (j << 2);
        if (u[ej + 2] === 0) return;
        const k = hash(u[ej], u[ej + 1]) & mask;
        // Move j back to i when its home k is not cyclically in (i, j].
        const between = i <= j ? k > i && k <= j : k > i || k <= j;
        if (!between) {
          const ei = this.base + (i << 2);
          u[ei] = u[ej];
          u[ei + 1] = u[ej + 1];
          u[ei + 2] = u[ej + 2];
          u[ei + 3] = u[ej + 3];
          i = j;
          break;
        }
      }
    }
  }

  clear(): void {
    this.u32.fill(0, this.base, this.base + (this.mask + 1) * 4);
  }
}
