// The level-1 mapping value codec (src/thin/block-time.ts): (data block << 24) | time as two u32 words.
import { expect, test } from 'vitest';
import { blockOf, timeOf, writeBlockTime } from '../../src/thin/block-time.js';

test('data block and time come back as written, at the edges of their ranges', () => {
  const u32 = new Uint32Array(8);
  const view = new DataView(u32.buffer);
  for (const [dblock, time] of [
    [0, 0],
    [1, 1],
    [255, 0xffffff],
    [256, 7],
    [0x12345678, 0xabcdef],
    [2 ** 40 - 1, 0xffffff],
  ]) {
    writeBlockTime(u32, 8, dblock, time);
    expect([blockOf(u32, 8), timeOf(u32, 8)]).toEqual([dblock, time]);
    // The on-disk form: a little-endian u64 equal to dblock * 2^24 + time.
    expect(view.getBigUint64(8, true)).toBe(BigInt(dblock) * 2n ** 24n + BigInt(time));
    expect([u32[0], u32[1], u32[4], u32[5]]).toEqual([0, 0, 0, 0]);
  }
});
