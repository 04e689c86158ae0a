/**
 * src/sha256.ts gives what node:crypto's sha256 gives: the FIPS 180-4 examples, every length across the
 * padding boundaries (55, 56, 63, 64, 119, 120 bytes ...), a superblock-sized input and random inputs.
 */
import { createHash } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { sha256Hex } from '../../src/sha256.js';

const nodeSha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('sha256Hex', () => {
  test('the FIPS 180-4 examples', () => {
    expect(sha256Hex(new Uint8Array())).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(sha256Hex(Buffer.from('abc'))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(sha256Hex(Buffer.from('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'))).toBe(
      '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
    );
  });

  test('every length from 0 to 300 bytes matches node:crypto', () => {
    const b = new Uint8Array(300);
    for (let i = 0; i < b.length; i++) b[i] = (i * 151 + 7) & 0xff;
    for (let n = 0; n <= b.length; n++) expect(sha256Hex(b.subarray(0, n)), `length ${n}`).toBe(nodeSha(b.subarray(0, n)));
  });

  test('superblock-sized and random inputs (a view into a larger buffer too) match node:crypto', () => {
    let seed = 12345;
    const rnd = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed >>> 24;
    };
    for (const n of [512, 4096, 1000, 65536 + 3]) {
      const big = new Uint8Array(n + 17);
      for (let i = 0; i < big.length; i++) big[i] = rnd();
      const view = big.subarray(9, 9 + n);
      expect(sha256Hex(view), `length ${n}`).toBe(nodeSha(view));
    }
  });
});
