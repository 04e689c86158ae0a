// assembly/crc32c.ts through the core's exports: the slice-by-8 CRC-32C against a bitwise reference, and the
// metadata block checksum (spec 1.2: crc32c of bytes 4..4095 from 0xFFFFFFFF, no final XOR, then ^ salt).
import { describe, expect, test } from 'vitest';
import { Salt, Status } from '../../src/core/abi.js';
import { Core } from '../../src/core/wasm.js';

/** Bitwise CRC-32C register update (reflected, polynomial 0x82F63B78), no final XOR. */
function reference(crc: number, bytes: Uint8Array): number {
  let c = crc >>> 0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return c >>> 0;
}

describe('crc32c', () => {
  const core = new Core(16, 64);
  const p = core.param;

  test('the check value of "123456789": 0xE3069283 after the final XOR the raw register leaves out', () => {
    core.u8.set(new TextEncoder().encode('123456789'), p);
    expect((core.x.crc32c(0xffffffff, p, 9) ^ 0xffffffff) >>> 0).toBe(0xe3069283);
  });

  test('every length 0..40 at every alignment 0..7 agrees with the bitwise reference (8-byte and tail loops)', () => {
    const bytes = Uint8Array.from({ length: 64 }, (_, i) => (i * 151 + 7) & 0xff);
    core.u8.set(bytes, p);
    for (let off = 0; off < 8; off++) {
      for (let len = 0; len <= 40; len++) {
        const want = reference(0xffffffff, bytes.subarray(off, off + len));
        expect(core.x.crc32c(0xffffffff, p + off, len) >>> 0, `offset ${off} length ${len}`).toBe(want);
      }
    }
  });

  test('the register chains: crc(a ++ b) = crc(crc(a), b)', () => {
    const bytes = Uint8Array.from({ length: 100 }, (_, i) => (i * 37) & 0xff);
    core.u8.set(bytes, p);
    const whole = core.x.crc32c(0xffffffff, p, 100) >>> 0;
    expect(core.x.crc32c(core.x.crc32c(0xffffffff, p, 33), p + 33, 67) >>> 0).toBe(whole);
  });
});

describe('block checksum, prepare and check', () => {
  const core = new Core(16, 64);
  const p = core.slotAddr(0);

  test('blockChecksum covers bytes 4..4095 and is xored with the salt', () => {
    core.u8.fill(0, p, p + 4096);
    for (let i = 0; i < 4096; i++) core.u8[p + i] = (i * 13) & 0xff;
    const want = (reference(0xffffffff, core.u8.subarray(p + 4, p + 4096)) ^ Salt.Bitmap) >>> 0;
    expect(core.x.blockChecksum(p, Salt.Bitmap) >>> 0).toBe(want);
    core.u8[p] ^= 0xff; // the checksum field itself is not covered
    expect(core.x.blockChecksum(p, Salt.Bitmap) >>> 0).toBe(want);
  });

  test('blockPrepare then blockCheck: OK; a flipped byte, another salt or another block number is refused', () => {
    core.u8.fill(0, p, p + 4096);
    core.dv.setUint32(p + 8, 77, true); // self block number (lo, hi) at byte 8
    core.x.blockPrepare(p, Salt.Index);
    expect(core.x.blockCheck(p, Salt.Index, 77, 0)).toBe(Status.OK);
    expect(core.x.blockCheck(p, Salt.Bitmap, 77, 0)).toBe(Status.BAD_CHECKSUM);
    expect(core.x.blockCheck(p, Salt.Index, 78, 0)).toBe(Status.BAD_BLOCKNR);
    expect(core.x.blockCheck(p, Salt.Index, 77, 1)).toBe(Status.BAD_BLOCKNR);
    core.u8[p + 4095] ^= 1;
    expect(core.x.blockCheck(p, Salt.Index, 77, 0)).toBe(Status.BAD_CHECKSUM);
  });
});
