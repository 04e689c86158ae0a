// The block -> slot table of the metadata cache, shared with the host (src/pd/slot-table.ts writes it; WASM
// only reads it). Open addressing, linear probing, 16-byte entries: block lo, block hi, slot + 1 (0 = empty),
// leaf value size the slot was validated for as a btree node (0xffffffff = not a validated node).
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

/** Address of a resident node validated for leafVs, marking it referenced; 0 when the host must be asked. */
export function residentNode(lo: u32, hi: u32, leafVs: u32): usize {
  let i = slotHash(lo, hi) & MASK;
  for (let n: u32 = 0; n <= MASK; n++) {
    const e = TABLE + (<usize>i << 4);
    const s = load<u32>(e, 8);
    if (s == 0) return 0;
    if (load<u32>(e) == lo && load<u32>(e, 4) == hi) {
      if (load<u32>(e, 12) != leafVs) return 0;
      store<u8>(REFS + <usize>(s - 1), 1);
      return SLOTS + (<usize>(s - 1) << 12);
    }
    i = (i + 1) & MASK;
  }
  return 0;
}
