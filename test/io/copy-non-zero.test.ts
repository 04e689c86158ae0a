// copyNonZero (src/io/sparse.ts), how mkfs's sparse image reaches a volume (image layers, the snapshotter's base
// filesystem): every piece holding a non-zero byte is handed over once, at its own offset, aligned to the piece
// size; all-zero pieces (written zeros or holes) are not; data at the very start and end of the size and pieces
// that straddle a data range's edge come through; a size that is not a multiple of the piece ends short.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { copyNonZero } from '../../src/io/sparse.js';
import { fill } from '../support/model.js';

const tmp = fs.mkdtempSync(join(os.tmpdir(), 'tp-copynz-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const KiB = 1024;
const PIECE = 64 * KiB;

/** A sparse file of `size` bytes with `writes` ([offset, bytes]) written and the rest left as holes. */
function sparseFile(name: string, size: number, writes: Array<[number, Uint8Array]>): string {
  const path = join(tmp, name);
  const fd = fs.openSync(path, 'w');
  try {
    fs.ftruncateSync(fd, size);
    for (const [at, b] of writes) fs.writeSync(fd, b, 0, b.length, at);
  } finally {
    fs.closeSync(fd);
  }
  return path;
}

/** What copyNonZero hands over: [offset, length] per call, and the bytes rebuilt into a buffer of `size`. */
function copied(path: string, size: number): { calls: Array<[number, number]>; image: Buffer } {
  const calls: Array<[number, number]> = [];
  const image = Buffer.alloc(size);
  const fd = fs.openSync(path, 'r');
  try {
    copyNonZero(fd, size, PIECE, (part, offset) => {
      calls.push([offset, part.length]);
      image.set(part, offset);
    });
  } finally {
    fs.closeSync(fd);
  }
  return { calls, image };
}

test('non-zero pieces come through once each, aligned, with data at both ends and across range edges', () => {
  const size = 5 * 1024 * KiB + 3 * KiB; // not a multiple of the piece: the last piece is 3 KiB
  const writes: Array<[number, Uint8Array]> = [
    [0, fill(100, 1)], // the first byte of the file
    [PIECE - 50, fill(100, 2)], // straddles the edge between pieces 0 and 1
    [3 * PIECE, new Uint8Array(PIECE)], // written zeros: data on disk, but nothing to hand over
    [40 * PIECE + 4 * KiB, fill(8 * KiB, 3)], // mid-piece, far into the file (past the first 1 MiB read)
    [size - 10, fill(10, 4)], // the last bytes
  ];
  const path = sparseFile('a', size, writes);
  const { calls, image } = copied(path, size);
  expect(calls).toEqual([
    [0, PIECE],
    [PIECE, PIECE],
    [40 * PIECE, PIECE],
    [80 * PIECE, 3 * KiB],
  ]);
  expect(image.equals(fs.readFileSync(path))).toBe(true);
});

test('a file of holes hands over nothing; bytes past the size given are not read', () => {
  expect(copied(sparseFile('holes', 3 * 1024 * KiB, []), 3 * 1024 * KiB).calls).toEqual([]);
  const path = sparseFile('tail', 2 * PIECE, [[PIECE + 8, fill(16, 5)]]);
  expect(copied(path, PIECE).calls).toEqual([]);
});
