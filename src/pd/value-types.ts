/**
 * Btree value codecs of the persistent-data layer (spec 3.2, 4.3): how a leaf value of each tree the space maps
 * and the mapping tree's level 0 use is laid out, read and written. A `ValueType<V>` is the only place that
 * knows a value's offsets; the btree door (btree.ts) passes values through it, so its callers see plain values.
 *
 * Contract: `read(mem, a)` decodes the value at byte address a of the core's memory (4-aligned, as btree values
 * are), `write(mem, a, v)` stores it; for every in-range v, read after write gives v back. Numbers are exact
 * below 2^53 (u64 fields); nothing here checks ranges (callers do).
 */
import { RefKind } from '../core/abi.js';
import { TWO32 } from '../core/u64.js';

/** A tree's leaf values: their size, what they reference (for shadowing shared leaves and deleting), the codec. */
export interface ValueType<V> {
  readonly size: number;
  readonly ref: RefKind;
  read(mem: Uint32Array, a: number): V;
  write(mem: Uint32Array, a: number, v: V): void;
}

/** A little-endian u64 at byte address a. */
export function readU64(mem: Uint32Array, a: number): number {
  return mem[a >>> 2] + mem[(a >>> 2) + 1] * TWO32;
}

export function writeU64(mem: Uint32Array, a: number, v: number): void {
  mem[a >>> 2] = v >>> 0;
  mem[(a >>> 2) + 1] = Math.floor(v / TWO32);
}

/** A u64 value that references nothing (a metadata block number kept as data, an index key, ...). */
export const U64: ValueType<number> = { size: 8, ref: RefKind.None, read: readU64, write: writeU64 };

/** A u64 metadata block number that holds a reference to another tree (level 0 of the mapping tree). */
export const TREE_ROOT: ValueType<number> = { size: 8, ref: RefKind.Tree, read: readU64, write: writeU64 };

/** A u32 count (the ref-count trees of both space maps, spec 4.4). */
export const U32: ValueType<number> = {
  size: 4,
  ref: RefKind.None,
  read: (mem, a) => mem[a >>> 2],
  write: (mem, a, v) => {
    mem[a >>> 2] = v >>> 0;
  },
};

/** An index entry of a space map (spec 4.3): its bitmap's block, free entries, and the first possibly free one. */
export interface IndexEntry {
  block: number;
  nrFree: number;
  noneFreeBefore: number;
}

/** The 16-byte index entry: bitmap block u64, nr_free u32, none_free_before u32. */
export const INDEX_ENTRY: ValueType<IndexEntry> = {
  size: 16,
  ref: RefKind.None,
  read: (mem, a) => ({ block: readU64(mem, a), nrFree: mem[(a >>> 2) + 2], noneFreeBefore: mem[(a >>> 2) + 3] }),
  write: (mem, a, v) => {
    writeU64(mem, a, v.block);
    mem[(a >>> 2) + 2] = v.nrFree >>> 0;
    mem[(a >>> 2) + 3] = v.noneFreeBefore >>> 0;
  },
};
