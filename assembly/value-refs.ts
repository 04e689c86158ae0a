// References held by level-1 mapping values: each names a data block whose count lives in the data space map.
// The data space map is the host's (src/pd/space-map-data.ts); it is reached through one import, and may
// itself call back into this module (its ref-count tree is an ordinary btree).
import * as S from './status';
import { fail } from './tx-state';

// @ts-ignore: decorator
@external("host", "dataRef")
declare function hostDataRef(blockLo: u32, blockHi: u32, delta: i32): i32;

export function dataInc(d: u64): void {
  if (hostDataRef(<u32>d, <u32>(d >> 32), 1) == 0) fail(S.HOST_ERROR, d);
}

export function dataDec(d: u64): void {
  if (hostDataRef(<u32>d, <u32>(d >> 32), -1) == 0) fail(S.HOST_ERROR, d);
}
