// The transaction's entry points for the host. Block numbers and keys cross as (lo, hi) u32 pairs; results
// that do not fit the return value go to the state page (S_RESULT, S_HIT). An export returns a status (or an
// address / count / block >= 0, with -status on failure); the block an error is about is at S_ERR_BLOCK.
import { Status as S, S_RESULT, S_HIT } from './abi';
import { STATE, err, clearErr } from './tx-state';
import { insertKey, removeKey, delTree, hit } from './btree-update';
import { newNode, newBlock, tmDec, shadowed } from './transaction-manager';
import { metaInc, metaDec, metaAlloc } from './space-map-metadata';
import { dataCount, dataInc, dataDec, dataAlloc, dataExtend, dataLoad, dataLoadBitmap } from './space-map-data';
export { dsmAfterCommit, setDataSpaceMapLayout } from './space-map-data';
export { smReserve, smFreeBlocks } from './space-map-metadata';

// @ts-ignore: decorator
@inline function u64of(lo: u32, hi: u32): u64 { return (<u64>hi << 32) | <u64>lo; }

function finish(result: u64): i32 {
  if (err != S.OK) return err;
  store<u64>(STATE + S_RESULT, result);
  store<u32>(STATE + S_HIT, hit ? 1 : 0);
  return S.OK;
}

function addressOrStatus(p: usize): i32 {
  if (err != S.OK) return -err;
  store<u64>(STATE + S_RESULT, shadowed);
  return <i32>p;
}

export function btreeInsert(rootLo: u32, rootHi: u32, keyLo: u32, keyHi: u32, src: usize, leafVs: u32, ref: u32): i32 {
  clearErr();
  return finish(insertKey(u64of(rootLo, rootHi), u64of(keyLo, keyHi), src, leafVs, ref));
}

export function btreeRemove(rootLo: u32, rootHi: u32, keyLo: u32, keyHi: u32, leafVs: u32, ref: u32): i32 {
  clearErr();
  return finish(removeKey(u64of(rootLo, rootHi), u64of(keyLo, keyHi), leafVs, ref));
}

export function btreeDel(rootLo: u32, rootHi: u32, leafVs: u32, ref: u32): i32 {
  clearErr();
  delTree(u64of(rootLo, rootHi), leafVs, ref);
  return err;
}

export function tmNewNode(flags: u32, vs: u32, leafVs: u32): i32 {
  clearErr();
  return addressOrStatus(newNode(flags, vs, leafVs));
}

export function tmNewBlock(kind: u32): i32 {
  clearErr();
  return addressOrStatus(newBlock(kind));
}

/** Drop a reference (the block leaves the cache at 0); the new count, or -status. */
export function tmDecRef(lo: u32, hi: u32): i32 {
  clearErr();
  const c = tmDec(u64of(lo, hi));
  return err != S.OK ? -err : <i32>c;
}

export function smInc(lo: u32, hi: u32): i32 {
  clearErr();
  metaInc(u64of(lo, hi));
  return err;
}

/** Drop a reference without touching the cache; the new count, or -status. */
export function smDec(lo: u32, hi: u32): i32 {
  clearErr();
  const c = metaDec(u64of(lo, hi));
  return err != S.OK ? -err : <i32>c;
}

/** A block with count 1, or -status. */
export function smAlloc(): i32 {
  clearErr();
  const b = metaAlloc();
  return err != S.OK ? -err : <i32>b;
}

/** Reference count of a data block, or -status. */
export function dsmCount(lo: u32, hi: u32): i32 {
  clearErr();
  const c = dataCount(u64of(lo, hi));
  return err != S.OK ? -err : <i32>c;
}

export function dsmInc(lo: u32, hi: u32): i32 {
  clearErr();
  dataInc(u64of(lo, hi));
  return err;
}

/** Drop a reference to a data block; the new count, or -status. */
export function dsmDec(lo: u32, hi: u32): i32 {
  clearErr();
  const c = dataDec(u64of(lo, hi));
  return err != S.OK ? -err : <i32>c;
}

/** Allocate a data block (count 1) to S_RESULT; a status. */
export function dsmAlloc(): i32 {
  clearErr();
  return finish(dataAlloc());
}

export function dsmExtend(lo: u32, hi: u32): i32 {
  clearErr();
  dataExtend(u64of(lo, hi));
  return err;
}

/** Begin loading a committed data space map; the number of bitmaps, or -status. */
export function dsmLoad(nrLo: u32, nrHi: u32, refLo: u32, refHi: u32): i32 {
  clearErr();
  const n = dataLoad(u64of(nrLo, nrHi), u64of(refLo, refHi));
  return err != S.OK ? -err : n;
}

export function dsmLoadBitmap(j: u32, lo: u32, hi: u32): i32 {
  clearErr();
  dataLoadBitmap(j, u64of(lo, hi));
  return err;
}
