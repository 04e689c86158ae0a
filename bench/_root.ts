/**
 * The repository root for benches that run the built command line or read dist/ (a helper: its `_` keeps the
 * runner from running it): the nearest directory above this module holding package.json, whether it runs from
 * dist/bench or from source.
 */
import { existsSync } from 'node:fs';
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
