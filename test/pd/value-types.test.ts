// The persistent-data value codecs (src/pd/value-types.ts): u64, u32 and space-map index entries.
import { expect, test } from 'vitest';
import { INDEX_ENTRY, TREE_ROOT, U32, U64 } from '../../src/pd/value-types.js';

test('u64 and u32 values come back as written, little-endian', () => {
  const mem = new Uint32Array(8);
  const view = new DataView(mem.buffer);
  for (const v of [0, 1, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER]) {
    for (const vt of [U64, TREE_ROOT]) {
      vt.write(mem, 8, v);
      expect(vt.read(mem, 8)).toBe(v);
      expect(view.getBigUint64(8, true)).toBe(BigInt(v));
    }
  }
  for (const v of [0, 3, 2 ** 32 - 1]) {
    U32.write(mem, 4, v);
    expect(U32.read(mem, 4)).toBe(v);
    expect(view.getUint32(4, true)).toBe(v);
  }
  expect([U64.size, TREE_ROOT.size, U32.size]).toEqual([8, 8, 4]);
});

test('an index entry is bitmap block u64, nr_free u32, none_free_before u32', () => {
  const mem = new Uint32Array(12);
  const view = new DataView(mem.buffer);
  const e = { block: 2 ** 33 + 5, nrFree: 16320, noneFreeBefore: 17 };
  INDEX_ENTRY.write(mem, 16, e);
  expect(INDEX_ENTRY.read(mem, 16)).toEqual(e);
  expect([view.getBigUint64(16, true), view.getUint32(24, true), view.getUint32(28, true)]).toEqual([BigInt(e.block), 16320, 17]);
  expect([mem[0], mem[3], mem[8]]).toEqual([0, 0, 0]);
});
