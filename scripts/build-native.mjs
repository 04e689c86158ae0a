// Build the optional native helper (punch hole, SEEK_DATA/SEEK_HOLE). Never fails the install: without it,
// file devices fall back to util-linux `fallocate` and, failing that, keep working without returning space.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'native');
const r = spawnSync('node-gyp', ['rebuild', '--silent'], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], shell: false });
if (r.status !== 0) {
  process.stderr.write('thinpool: optional native helper not built (punch hole falls back to fallocate(1))\n');
}
