// writeFull (src/io/sparse.ts), the write of every bulk path (file devices, export, standard output): a buffer
// larger than one write call (WRITE_PIECE) lands whole at the position given, or at the descriptor's position,
// which then moves past it; an unaligned length and position change nothing.
import * as fs from 'node:fs';
import * as os from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { WRITE_PIECE, writeFull } from '../../src/io/sparse.js';
import { fill } from '../support/model.js';

const tmp = fs.mkdtempSync(join(os.tmpdir(), 'tp-writefull-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** n non-zero pseudo-random bytes (the model's fill), as a Buffer. */
const pattern = (n: number, seed: number): Buffer => Buffer.from(fill(n, seed).buffer);

test('a buffer of several pieces lands whole, at a position and at the current position', () => {
  const a = pattern(3 * WRITE_PIECE + 17, 1);
  const b = pattern(WRITE_PIECE + 5, 2);
  const path = join(tmp, 'f');
  const fd = fs.openSync(path, 'w+');
  try {
    writeFull(fd, a, 1001); // at a position: the file position stays at 0
    fs.writeSync(fd, Buffer.from('start'));
    writeFull(fd, b, null); // at the current position (5), which moves past it
    fs.writeSync(fd, Buffer.from('!'));
  } finally {
    fs.closeSync(fd);
  }
  const want = Buffer.alloc(1001 + a.length);
  a.copy(want, 1001);
  Buffer.from('start').copy(want, 0);
  b.copy(want, 5);
  want[5 + b.length] = '!'.charCodeAt(0);
  expect(fs.readFileSync(path).equals(want)).toBe(true);
});
