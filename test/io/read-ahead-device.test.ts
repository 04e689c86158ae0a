import { describe, expect, it } from 'vitest';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { ReadAheadDevice } from '../../src/io/read-ahead-device.js';
import { seededRng } from '../support/rng.js';
import { codeOf } from '../support/thrown.js';

const KiB = 1024;

/** A memory device of `size` bytes holding a seeded pattern. */
function patterned(size: number, seed: number): { dev: MemoryDevice; bytes: Uint8Array } {
  const rng = seededRng(seed);
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = Math.floor(rng() * 256);
  const dev = new MemoryDevice(size);
  dev.write(bytes, 0);
  return { dev, bytes };
}

function readAt(dev: ReadAheadDevice, offset: number, length: number): Uint8Array {
  const b = new Uint8Array(length);
  dev.read(b, offset);
  return b;
}

function expected(bytes: Uint8Array, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  if (offset < bytes.length) out.set(bytes.subarray(offset, Math.min(bytes.length, offset + length)));
  return out;
}

describe('ReadAheadDevice', () => {
  it('returns what the wrapped device holds, for any offset and length, zeros past the end', () => {
    const size = 300 * KiB + 123;
    const { dev, bytes } = patterned(size, 7);
    const ra = new ReadAheadDevice(dev, 64 * KiB);
    expect(ra.sizeBytes).toBe(size);
    const rng = seededRng(11);
    for (let i = 0; i < 500; i++) {
      const offset = Math.floor(rng() * (size + 8 * KiB));
      const length = Math.floor(rng() * (rng() < 0.1 ? 100 * KiB : 6 * KiB));
      expect(Buffer.from(readAt(ra, offset, length)).equals(expected(bytes, offset, length)), `read ${offset}+${length}`).toBe(true);
    }
    // The last bytes, a read that ends exactly at the end, one wholly past it.
    expect(Buffer.from(readAt(ra, size - 4 * KiB, 4 * KiB)).equals(expected(bytes, size - 4 * KiB, 4 * KiB))).toBe(true);
    expect(readAt(ra, size + 10 * KiB, 4 * KiB).every((x) => x === 0)).toBe(true);
    ra.close();
  });

  it('sends one request per window to the device for reads in block order', () => {
    const { dev, bytes } = patterned(1024 * KiB, 3);
    const ra = new ReadAheadDevice(dev, 128 * KiB);
    for (let off = 0; off < 1024 * KiB; off += 4 * KiB) {
      expect(Buffer.from(readAt(ra, off, 4 * KiB)).equals(expected(bytes, off, 4 * KiB))).toBe(true);
    }
    expect(ra.reads).toBe(8);
    // Inside the current window again: no request; behind it: a new window from there.
    readAt(ra, 1000 * KiB, 4 * KiB);
    expect(ra.reads).toBe(8);
    expect(Buffer.from(readAt(ra, 4 * KiB, 4 * KiB)).equals(expected(bytes, 4 * KiB, 4 * KiB))).toBe(true);
    expect(ra.reads).toBe(9);
    // A read larger than the window goes straight to the device.
    expect(Buffer.from(readAt(ra, 0, 200 * KiB)).equals(expected(bytes, 0, 200 * KiB))).toBe(true);
    expect(ra.reads).toBe(10);
    ra.close();
  });

  it('is read-only, rejects a bad window and bad ranges, and closes the wrapped device', () => {
    const { dev } = patterned(64 * KiB, 5);
    expect(codeOf(() => new ReadAheadDevice(dev, 0))).toBe('EINVAL');
    const ra = new ReadAheadDevice(dev);
    expect(codeOf(() => ra.write(new Uint8Array(16), 0))).toBe('EROFS');
    expect(codeOf(() => ra.resize(128 * KiB))).toBe('EROFS');
    expect(codeOf(() => ra.discard(0, 4 * KiB))).toBe('EROFS');
    expect(codeOf(() => readAt(ra, -1, 16))).toBe('EINVAL');
    ra.flush();
    ra.close();
    expect(codeOf(() => readAt(ra, 0, 16))).toBe('ECLOSED');
    expect(codeOf(() => ra.close())).toBe('ECLOSED');
    expect(codeOf(() => dev.read(new Uint8Array(16), 0))).toBe('ECLOSED');
  });

  it('keeps no window after a failed read (a failed refill may have left part of the window overwritten)', () => {
    const { dev } = patterned(64 * KiB, 9);
    const ra = new ReadAheadDevice(dev, 32 * KiB);
    readAt(ra, 0, 4 * KiB);
    readAt(ra, 8 * KiB, 4 * KiB);
    expect(ra.reads).toBe(1);
    dev.close(); // the wrapped device fails from now on
    expect(codeOf(() => readAt(ra, 40 * KiB, 4 * KiB))).toBe('ECLOSED');
    // Inside the window held before the failure: asked of the device again, not served from the window.
    expect(codeOf(() => readAt(ra, 4 * KiB, 4 * KiB))).toBe('ECLOSED');
    expect(ra.reads).toBe(3);
  });
});
