// The block -> slot table of the metadata cache, shared with the host (src/pd/slot-table.ts writes it; WASM
// only reads it). Open addressing, linear probing, 16-byte entries: block lo, block hi, slot + 1 (0 = empty),
// leaf value size the slot was validated for as a btree node (0xffffffff = not a validated node).
// Every slot WASM hands out is marked with the current epoch: inside a host operation that pins it (the host
// never evicts a slot marked with the running operation's epoch).
import { NOT_NODE, S_EPOCH } from './abi';
import { MARKS, STATE, KINDS } from './tx-state';

let TABLE: usize = 0;
let MASK: u32 = 0;
let SLOTS: usize = 0;
let REFS: usize = 0;

export function setCacheLayout(table: usize, mask: u32, slots: usize, refs: usize): void {
  TABLE = table;
  MASK = mask;
  SLOTS = slots;
  REFS = refs;
}

// @ts-ignore: decorator
@inline export function slotHash(lo: u32, hi: u32): u32 {
  let h = (lo * 0x9E3779B1) ^ (hi * 0x85EBCA77);
  h ^= h >>> 16;
  return h;
}

/** Address of the table entry of a resident block, or 0. */
export function tableEntry(lo: u32, hi: u32): usize {
  let i = slotHash(lo, hi) & MASK;
  for (let n: u32 = 0; n <= MASK; n++) {
    const e = TABLE + (<usize>i << 4);
    if (load<u32>(e, 8) == 0) return 0;
    if (load<u32>(e) == lo && load<u32>(e, 4) == hi) return e;
    i = (i + 1) & MASK;
  }
  return 0;
}

// @ts-ignore: decorator
@inline export function entrySlot(e: usize): u32 {
  return load<u32>(e, 8) - 1;
}

/** Mark a slot referenced (clock) and pinned for the running operation; returns its address. */
// @ts-ignore: decorator
@inline export function useSlot(slot: u32): usize {
  store<u8>(REFS + <usize>slot, 1);
  store<u32>(MARKS + (<usize>slot << 2), load<u32>(STATE, S_EPOCH));
  return SLOTS + (<usize>slot << 12);
}

/** Address of a resident node validated for leafVs; 0 when the host must be asked. */
export function residentNode(lo: u32, hi: u32, leafVs: u32): usize {
  const e = tableEntry(lo, hi);
  if (e == 0 || load<u32>(e, 12) != leafVs) return 0;
  return useSlot(entrySlot(e));
}

/** Address of a resident non-node block last validated as `kind`; 0 when the host must be asked. */
export function residentBlock(lo: u32, hi: u32, kind: u32): usize {
  const e = tableEntry(lo, hi);
  if (e == 0 || load<u32>(e, 12) != NOT_NODE) return 0;
  const slot = entrySlot(e);
  if (<u32>load<u8>(KINDS + <usize>slot) != kind) return 0;
  return useSlot(slot);
}
