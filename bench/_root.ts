/**
 * What benches share about where they run (a helper: its `_` keeps the runner from running it): the repository
 * root for benches that run the built command line or read dist/ (the nearest directory above this module
 * holding package.json, whether it runs from dist/bench or from source), and their scratch directory.
 */
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('package.json not found');
    dir = up;
  }
  return dir;
}

/**
 * Where benches put their scratch files: $THINPOOL_BENCH_DIR when set (a disk other than the temporary
 * directory's), else the temporary directory. One variable for every bench.
 */
export function benchScratch(): string {
  return process.env.THINPOOL_BENCH_DIR ?? tmpdir();
}
