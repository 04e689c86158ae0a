// Build the optional native helper (punch hole, SEEK_DATA/SEEK_HOLE, copy_file_range, FICLONERANGE). Never fails
// the install: without it, file devices fall back to util-linux `fallocate` for holes and to read + write for
// copies. When the running Node's headers are installed next to it (PREFIX/include/node, as distribution
// packages do), node-gyp uses them instead of downloading them (installs without network access work).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'native');
const prefix = join(dirname(process.execPath), '..');
const args = ['rebuild', '--silent'];
if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
const r = spawnSync('node-gyp', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], shell: false });
if (r.status !== 0) {
  process.stderr.write(
    'thinpool: optional native helper not built (punch hole falls back to fallocate(1), block copies to read + write)\n',
  );
}
