// The transaction manager's host doors (src/pd/transaction-manager.ts): a failed allocation or reference drop
// surfaces as a typed error naming the structure, never as a slot address the caller would write through.
import { expect, test } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { BlockKind } from '../../src/pd/block-kinds.js';
import { LEAF } from '../../src/pd/transaction-manager.js';

function fresh(): ThinMetadata {
  return ThinMetadata.format(new MemoryDevice(256 * 1024), { nrDataBlocks: 64, dataBlockSectors: 128 });
}

/** Call fn until it throws; the error and how many calls succeeded. */
function untilThrow(fn: () => void): { e: unknown; n: number } {
  for (let n = 0; n < 1000; n++) {
    try {
      fn();
    } catch (e) {
      return { e, n };
    }
  }
  return { e: undefined, n: 1000 };
}

test('newNode on a full metadata device: ENOSPC_METADATA, after handing out only real blocks', () => {
  const md = fresh();
  const blocks: number[] = [];
  const { e, n } = untilThrow(() => {
    blocks.push(ThinMetadata.internals(md).tm.newNode(LEAF, 8).block);
  });
  expect(isThinpoolError(e, 'ENOSPC_METADATA'), String(e)).toBe(true);
  expect(n).toBeGreaterThan(0);
  expect(new Set(blocks).size).toBe(blocks.length);
  for (const b of blocks) expect(b > 0 && b < 64, `block ${b}`).toBe(true);
});

test('newBlock on a full metadata device: ENOSPC_METADATA', () => {
  const md = fresh();
  const { e, n } = untilThrow(() => {
    ThinMetadata.internals(md).tm.newBlock(BlockKind.Bitmap);
  });
  expect(isThinpoolError(e, 'ENOSPC_METADATA'), String(e)).toBe(true);
  expect(n).toBeGreaterThan(0);
});

test('dec of a block with no reference: ECORRUPT naming the space map and the block', () => {
  const md = fresh();
  const b = ThinMetadata.internals(md).tm.newNode(LEAF, 8).block;
  expect(ThinMetadata.internals(md).tm.dec(b)).toBe(0);
  let err: unknown;
  try {
    ThinMetadata.internals(md).tm.dec(b);
  } catch (e) {
    err = e;
  }
  expect(isThinpoolError(err, 'ECORRUPT'), String(err)).toBe(true);
  expect(err).toMatchObject({ structure: 'space map', mblock: b });
});

test('dec of a block past the metadata device: EBADBLOCKNR naming the space map', () => {
  const md = fresh();
  let err: unknown;
  try {
    ThinMetadata.internals(md).tm.dec(1_000_000);
  } catch (e) {
    err = e;
  }
  expect(isThinpoolError(err, 'EBADBLOCKNR'), String(err)).toBe(true);
  expect(err).toMatchObject({ structure: 'space map', mblock: 1_000_000 });
});

test('dec of a block number past 2^32 is refused whole, not taken for the block its low word names', () => {
  const md = fresh();
  const { tm } = ThinMetadata.internals(md);
  const b = tm.newNode(LEAF, 8).block;
  let err: unknown;
  try {
    tm.dec(2 ** 32 + b);
  } catch (e) {
    err = e;
  }
  expect(isThinpoolError(err, 'EBADBLOCKNR'), String(err)).toBe(true);
  expect(err).toMatchObject({ structure: 'space map', mblock: 2 ** 32 + b });
  expect(tm.dec(b)).toBe(0); // b kept its one reference
});
