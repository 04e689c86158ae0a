// The device-details codec (src/thin/device-details.ts): the 24-byte value of the device-details tree.
import { expect, test } from 'vitest';
import { DEVICE_DETAILS } from '../../src/thin/device-details.js';

test('device details come back as written, at the edges of their ranges, in the on-disk layout', () => {
  const mem = new Uint32Array(16);
  const view = new DataView(mem.buffer);
  const cases = [
    { mappedBlocks: 0, transactionId: 0, creationTime: 0, snapshottedTime: 0 },
    { mappedBlocks: 2 ** 32, transactionId: 2 ** 32 - 1, creationTime: 1, snapshottedTime: 0xffffff },
    { mappedBlocks: Number.MAX_SAFE_INTEGER, transactionId: 2 ** 40 + 3, creationTime: 2 ** 32 - 1, snapshottedTime: 7 },
  ];
  for (const d of cases) {
    DEVICE_DETAILS.write(mem, 8, d);
    expect(DEVICE_DETAILS.read(mem, 8)).toEqual(d);
    expect(view.getBigUint64(8, true)).toBe(BigInt(d.mappedBlocks));
    expect(view.getBigUint64(16, true)).toBe(BigInt(d.transactionId));
    expect([view.getUint32(24, true), view.getUint32(28, true)]).toEqual([d.creationTime, d.snapshottedTime]);
    expect([mem[0], mem[1], mem[8], mem[9]]).toEqual([0, 0, 0, 0]);
  }
  expect(DEVICE_DETAILS.size).toBe(24);
});
