/**
 * The block-time codec of a level-1 mapping value (spec 5.2): a little-endian u64 holding
 * (data block << 24) | time, data block below 2^40, time below 2^24. Values are read where they lie: in the
 * core's memory, as two u32 words at a byte address (low word first), so no u64 is ever built in JS.
 * `BLOCK_TIME` is the level-1 tree's value type (a value references its data block), built on these.
 *
 * Contract: for 0 <= dblock < 2^40 and 0 <= time < 2^24, writeBlockTime then blockOf/timeOf give them back.
 * The byte address is 8-aligned (btree values are); nothing here checks ranges (the callers do).
 */
import { RefKind } from '../core/abi.js';
import type { ValueType } from '../pd/value-types.js';

/** A level-1 mapping value: the data block a virtual block maps to, and the time it was mapped. */
export interface Mapping {
  dblock: number;
  time: number;
}

/** The data block of the value at byte address a. */
export function blockOf(u32: Uint32Array, a: number): number {
  return u32[(a >>> 2) + 1] * 256 + (u32[a >>> 2] >>> 24);
}

/** The time stamp of the value at byte address a. */
export function timeOf(u32: Uint32Array, a: number): number {
  return u32[a >>> 2] & 0xffffff;
}

/** Store (dblock << 24) | time at byte address a. */
export function writeBlockTime(u32: Uint32Array, a: number, dblock: number, time: number): void {
  u32[a >>> 2] = (((dblock % 256) << 24) | time) >>> 0;
  u32[(a >>> 2) + 1] = Math.floor(dblock / 256);
}

/** The level-1 tree's values. */
export const BLOCK_TIME: ValueType<Mapping> = {
  size: 8,
  ref: RefKind.Data,
  read: (mem, a) => ({ dblock: blockOf(mem, a), time: timeOf(mem, a) }),
  write: (mem, a, v) => writeBlockTime(mem, a, v.dblock, v.time),
};
