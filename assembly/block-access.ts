// Metadata blocks as the transaction sees them: resident blocks are used straight from the shared slot table;
// everything that changes residency (reading a block, giving a new block a slot, dropping a freed one) is the
// host's, through imports. A host import that fails returns 0 after recording the error on its side.
// Every host import has one signature, (u32, u32, u32, u32) -> u32, unused arguments 0 (forget and dataFreed
// return 0): V8 compiles a wasm-to-JS wrapper per import signature, with TurboFan, when the module is compiled,
// and each costs a start-up of the CLI milliseconds.
import { Status as S, BlockKind, NOT_NODE, S_NR_DIRTY } from './abi';
import { DIRTY, KINDS, STATE, setErr } from './tx-state';
import { residentNode, residentBlock, tableEntry, entrySlot } from './slot-table';

// @ts-ignore: decorator
@external("host", "node")
declare function hostNode(blockLo: u32, blockHi: u32, leafValueSize: u32, unused: u32): usize;
// @ts-ignore: decorator
@external("host", "block")
declare function hostBlock(blockLo: u32, blockHi: u32, kind: u32, unused: u32): usize;
// @ts-ignore: decorator
@external("host", "create")
declare function hostCreate(blockLo: u32, blockHi: u32, kind: u32, leafValueSize: u32): usize;
// @ts-ignore: decorator
@external("host", "forget")
declare function hostForget(blockLo: u32, blockHi: u32, unused: u32, unused2: u32): usize;

/** Validated node b of a tree whose leaves hold leafVs-byte values; 0 on failure (err set). */
export function getNode(b: u64, leafVs: u32): usize {
  const lo = <u32>b;
  const hi = <u32>(b >> 32);
  let p = residentNode(lo, hi, leafVs);
  if (p == 0) p = hostNode(lo, hi, leafVs, 0);
  if (p == 0) setErr(S.HOST_ERROR, b);
  return p;
}

/** Validated non-node block b of the given kind; 0 on failure (err set). */
export function getBlock(b: u64, kind: u32): usize {
  const lo = <u32>b;
  const hi = <u32>(b >> 32);
  let p = residentBlock(lo, hi, kind);
  if (p == 0) p = hostBlock(lo, hi, kind, 0);
  if (p == 0) setErr(S.HOST_ERROR, b);
  return p;
}

/** A zeroed, dirty slot for block b, newly allocated in this transaction; 0 on failure (err set). */
export function createBlock(b: u64, kind: u32, leafVs: u32): usize {
  const p = hostCreate(<u32>b, <u32>(b >> 32), kind, kind == BlockKind.Node ? leafVs : NOT_NODE);
  if (p == 0) setErr(S.HOST_ERROR, b);
  return p;
}

/** Mark resident block b dirty (written back with kind's salt; a node stays registered for leafVs). */
export function markDirty(b: u64, kind: u32, leafVs: u32): void {
  const e = tableEntry(<u32>b, <u32>(b >> 32));
  if (e == 0) {
    setErr(S.HOST_ERROR, b);
    return;
  }
  const slot = <usize>entrySlot(e);
  if (load<u8>(DIRTY + slot) == 0) {
    store<u8>(DIRTY + slot, 1);
    store<u32>(STATE, load<u32>(STATE, S_NR_DIRTY) + 1, S_NR_DIRTY);
  }
  store<u8>(KINDS + slot, <u8>kind);
  store<u32>(e, kind == BlockKind.Node ? leafVs : NOT_NODE, 12);
}

/** Block b was freed in this transaction: its contents no longer matter. */
export function forgetBlock(b: u64): void {
  hostForget(<u32>b, <u32>(b >> 32), 0, 0);
}
