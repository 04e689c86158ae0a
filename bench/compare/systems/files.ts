/** Writing test data the same way for every system (1 MiB chunks), so page-cache history is the same. */
import { closeSync, fsyncSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Volume } from '../../../src/index.js';
import { rng } from '../lib/stats.js';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
export const KiB = 1024;

let chunk: Buffer | undefined;
/** 1 MiB of pseudo-random bytes (incompressible), the same in every run. */
export function dataChunk(): Buffer {
  if (!chunk) {
    chunk = Buffer.alloc(MiB);
    const r = rng(42);
    for (let i = 0; i < MiB; i += 4) chunk.writeUInt32LE((r() * 2 ** 32) >>> 0, i);
  }
  return chunk;
}

export function writeDataFile(path: string, size: number): void {
  mkdirSync(dirname(path), { recursive: true });
  const fd = openSync(path, 'w');
  try {
    const c = dataChunk();
    for (let off = 0; off < size; off += MiB) writeSync(fd, c, 0, Math.min(MiB, size - off), off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function writeVolume(vol: Volume, size: number, at = 0): void {
  const c = dataChunk();
  for (let off = 0; off < size; off += MiB) vol.writeSync(c.subarray(0, Math.min(MiB, size - off)), at + off);
}

/** Open, pwrite, close: one write through a path (raw file, or kernel overlay's merged view). */
export function pwriteAt(path: string, buf: Uint8Array, pos: number): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, buf, 0, buf.length, pos);
  } finally {
    closeSync(fd);
  }
}
