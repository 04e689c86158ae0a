/**
 * The optional native helper (native/thinpool_native.c): punch hole and SEEK_DATA/SEEK_HOLE, which node:fs
 * lacks. Null when it was not built (no compiler at install time): callers fall back.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface NativeHelpers {
  /** 0 or -errno. */
  punchHole(fd: number, offset: number, length: number): number;
  /** whence 0 = SEEK_DATA, 1 = SEEK_HOLE; the offset found or -errno (-ENXIO: no data at or after). */
  seek(fd: number, offset: number, whence: 0 | 1): number;
}

let cached: NativeHelpers | null | undefined;

export function nativeHelpers(): NativeHelpers | null {
  if (cached !== undefined) return cached;
  cached = null;
  if (process.env.THINPOOL_NO_NATIVE === '1') return cached;
  const require = createRequire(import.meta.url);
  for (const rel of ['../../native/build/Release/thinpool_native.node', '../../../native/build/Release/thinpool_native.node']) {
    const path = fileURLToPath(new URL(rel, import.meta.url));
    if (!existsSync(path)) continue;
    try {
      cached = require(path) as NativeHelpers;
      break;
    } catch {
      // a stale build for another Node ABI: fall back
    }
  }
  return cached;
}
