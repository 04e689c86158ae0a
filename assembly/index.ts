// The thinpool WASM core. Memory is imported and fixed-size: the host lays out the metadata block slots, the
// metadata count arrays and the transaction's state above `heapBase()`, so views made once stay valid (no
// memory.grow, ever).
export { crcInit, crc32c, blockChecksum } from './crc32c';
export {
  maxEntriesFor, nodeInit, nodeCheck, nodeLowerBound, nodeInsertAt, nodeRemoveAt, nodeSplitInto, nodeMergeInto,
  nodeRedistribute,
} from './node';
export { bitmapGet, bitmapSet, bitmapFindFree, bitmapCountFree, bitmapFillFromCounts } from './bitmap';
export { btreeLookup } from './btree-lookup';
export { setCacheLayout } from './slot-table';
export { setTxLayout, txReset } from './tx-state';
export { abiFieldCount, abiField } from './abi-layout';
export {
  btreeInsert, btreeRemove, btreeDel, tmNewNode, tmNewBlock, tmDecRef, smInc, smDec,
  smAlloc, smReserve, smFreeBlocks, dsmCount, dsmInc, dsmDec, dsmAlloc, dsmExtend, dsmLoad, dsmLoadBitmap,
  dsmAfterCommit, setDataSpaceMapLayout,
} from './tx-exports';
import { blockChecksum } from './crc32c';
import { Status as S } from './abi';

/** First 4 KiB-aligned address the host may use. */
export function heapBase(): usize {
  return (__heap_base + 4095) & ~<usize>4095;
}

/** Store the checksum of a block with the given salt. */
export function blockPrepare(p: usize, salt: u32): void {
  store<u32>(p, blockChecksum(p, salt));
}

/** Check checksum then self block number (at byte 8) of a non-node block. */
export function blockCheck(p: usize, salt: u32, blockLo: u32, blockHi: u32): i32 {
  if (load<u32>(p) != blockChecksum(p, salt)) return S.BAD_CHECKSUM;
  if (load<u32>(p, 8) != blockLo || load<u32>(p, 12) != blockHi) return S.BAD_BLOCKNR;
  return S.OK;
}
