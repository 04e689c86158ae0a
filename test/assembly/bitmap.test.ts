// assembly/bitmap.ts through the core's exports: 2-bit space-map entries after a 16-byte header (spec 4.2;
// entry i is bits 2i (weight 2) and 2i+1 (weight 1)), checked against a plain array model.
import { describe, expect, test } from 'vitest';
import { ENTRIES_PER_BITMAP } from '../../src/core/abi.js';
import { Core } from '../../src/core/wasm.js';
import { seededRng } from '../support/rng.js';

describe('space-map bitmaps', () => {
  const core = new Core(16, 64);
  const cur = core.slotAddr(0);
  const com = core.slotAddr(1);
  const clear = (p: number) => core.u8.fill(0, p, p + 4096);

  test('ENTRIES_PER_BITMAP entries fill the 4080 payload bytes exactly', () => {
    expect(ENTRIES_PER_BITMAP * 2).toBe(4080 * 8);
  });

  test('set/get round-trip every value at the edges; the bit order is the on-disk one; neighbours and header untouched', () => {
    clear(cur);
    for (const i of [0, 1, 2, 3, 4, 31, 32, 16319]) {
      for (const v of [1, 2, 3, 0]) {
        core.x.bitmapSet(cur, i, v);
        expect(core.x.bitmapGet(cur, i), `entry ${i} value ${v}`).toBe(v);
      }
    }
    core.x.bitmapSet(cur, 5, 1); // weight 1 is the higher bit of the pair: bit 11 of the payload
    expect(core.u8[cur + 16 + 1]).toBe(1 << 3);
    core.x.bitmapSet(cur, 5, 2);
    expect(core.u8[cur + 16 + 1]).toBe(1 << 2);
    expect(core.x.bitmapGet(cur, 4)).toBe(0);
    expect(core.x.bitmapGet(cur, 6)).toBe(0);
    expect([...core.u8.subarray(cur, cur + 16)]).toEqual(new Array(16).fill(0));
  });

  test('findFree and countFree agree with a model (free means 0 in both the current and the committed copy)', () => {
    const rnd = seededRng(23);
    for (let round = 0; round < 20; round++) {
      clear(cur);
      clear(com);
      const a = new Uint8Array(ENTRIES_PER_BITMAP);
      const b = new Uint8Array(ENTRIES_PER_BITMAP);
      const density = rnd() < 0.5 ? 0.99 : 0.5;
      for (let i = 0; i < ENTRIES_PER_BITMAP; i++) {
        if (rnd() < density) a[i] = 1 + Math.floor(rnd() * 3);
        if (rnd() < density / 2) b[i] = 1 + Math.floor(rnd() * 3);
        if (a[i]) core.x.bitmapSet(cur, i, a[i]);
        if (b[i]) core.x.bitmapSet(com, i, b[i]);
      }
      const from = Math.floor(rnd() * ENTRIES_PER_BITMAP);
      const to = from + Math.floor(rnd() * (ENTRIES_PER_BITMAP - from + 1));
      let want = -1;
      for (let i = from; i < to; i++)
        if (a[i] === 0 && b[i] === 0) {
          want = i;
          break;
        }
      expect(core.x.bitmapFindFree(cur, com, from, to), `round ${round} [${from}, ${to})`).toBe(want);
      let wantAlone = -1;
      for (let i = from; i < to; i++)
        if (a[i] === 0) {
          wantAlone = i;
          break;
        }
      expect(core.x.bitmapFindFree(cur, cur, from, to)).toBe(wantAlone);
      const n = Math.floor(rnd() * (ENTRIES_PER_BITMAP + 1));
      expect(core.x.bitmapCountFree(cur, n), `round ${round} first ${n}`).toBe(a.subarray(0, n).filter((v) => v === 0).length);
    }
  });

  test('findFree of an empty range is -1', () => {
    clear(cur);
    expect(core.x.bitmapFindFree(cur, cur, 10, 10)).toBe(-1);
    expect(core.x.bitmapFindFree(cur, cur, 11, 10)).toBe(-1);
  });

  test('fillFromCounts writes min(count, 3) for entries < n and zero beyond', () => {
    core.u8.fill(0xff, cur, cur + 4096);
    const counts = core.param;
    const c = [0, 1, 2, 3, 4, 1000, 0, 7];
    for (let i = 0; i < c.length; i++) core.dv.setUint32(counts + 4 * (10 + i), c[i], true);
    core.x.bitmapFillFromCounts(cur, counts, 10, 6);
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((i) => core.x.bitmapGet(cur, i))).toEqual([0, 1, 2, 3, 3, 3, 0, 0]);
    expect(core.x.bitmapCountFree(cur, ENTRIES_PER_BITMAP)).toBe(ENTRIES_PER_BITMAP - 5);
  });
});
