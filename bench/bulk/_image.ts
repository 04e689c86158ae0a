/**
 * Shared by the bulk benches (bench/bulk/speed.ts, bench/bulk/floors.ts); a helper, never run by the runner (its
 * name starts with `_`). Owns: the raw image they copy (`makeImage`: random data in evenly spread runs, the rest
 * holes; dense when the runs fill it) and the shell quoting of the command lines they time (`sh`).
 */
import { randomFillSync } from 'node:crypto';
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';

/**
 * A sparse raw image: `runs` runs of random data of `runLen` bytes spread evenly over `size` bytes (the last run
 * ends at the image's end: data at both edges). With runs * runLen = size the file is all data.
 */
export function makeImage(path: string, size: number, runs: number, runLen: number): void {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, size);
    const buf = Buffer.alloc(runLen);
    const stride = Math.floor(size / runs);
    for (let i = 0; i < runs; i++) {
      randomFillSync(buf);
      const at = i === runs - 1 ? size - runLen : i * stride;
      writeSync(fd, buf, 0, runLen, at);
    }
  } finally {
    closeSync(fd);
  }
}

/** `s` quoted for sh. */
export const sh = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
