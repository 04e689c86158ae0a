/**
 * Setup for an A/B of the bulk commands (bench/_ab.ts --setup), run before every timed command, untimed:
 * makes DIR/raw.img (1 GiB, 256 MiB of random data in 8 MiB runs, the rest holes: the image of
 * bench/bulk/speed.ts) and DIR/pool (4 GiB) if they do not exist yet, deletes the volume `w` if it exists and,
 * for `write`, creates it again (1 GiB, nothing provisioned); then syncs, so each run starts with no dirty pages
 * left by the one before.
 *   node dist/bench/ab/_bulk-setup.js DIR write|import
 * The timed commands: `cat DIR/raw.img | node {root}/bin/thinpool.js write DIR/pool w`, or
 * `node {root}/bin/thinpool.js import DIR/pool w DIR/raw.img`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeImage } from '../bulk/_image.js';

const [dir, command] = process.argv.slice(2);
if (dir === undefined || (command !== 'write' && command !== 'import'))
  throw new Error('usage: node dist/bench/ab/_bulk-setup.js DIR write|import');
const BIN = fileURLToPath(new URL('../../../bin/thinpool.js', import.meta.url));
const MiB = 1024 * 1024;
const tp = (...args: string[]): void => {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`thinpool ${args.join(' ')} failed: ${r.stderr}`);
};
mkdirSync(dir, { recursive: true });
const raw = join(dir, 'raw.img');
if (!existsSync(raw)) makeImage(raw, 1024 * MiB, 32, 8 * MiB);
const pool = join(dir, 'pool');
if (!existsSync(pool)) tp('init', pool, '--size', '4G');
const ls = spawnSync(process.execPath, [BIN, 'ls', pool, '--json'], { encoding: 'utf8' });
if (ls.status !== 0) throw new Error(`thinpool ls failed: ${ls.stderr}`);
if ((JSON.parse(ls.stdout) as Array<{ name: string }>).some((v) => v.name === 'w')) tp('delete', pool, 'w');
if (command === 'write') tp('create', pool, 'w', '--size', '1G');
spawnSync('sync');
