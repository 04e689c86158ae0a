/**
 * Setup for an A/B of `thinpool image import` (bench/_ab.ts --setup), run before every timed import, untimed.
 *   node dist/bench/ab/_image-setup.js DIR
 * makes DIR/layer.tar (a 10 MiB layer: one directory, one file of random bytes) and DIR/pool (a pool whose base
 * filesystem exists, the layer imported once as `base`, so later imports of it reuse it) if they do not exist yet.
 *   node dist/bench/ab/_image-setup.js DIR --four-layers ROOT
 * makes DIR/layer0.tar ... layer3.tar (the ~100 MiB image of bench/images/import.ts) if they do not exist yet,
 * and DIR/pool4 afresh with ROOT's build (the side's tree): its base filesystem made by importing layer3.tar as
 * `warm`, as that bench's command step does, then a `sync`. The timed command then imports all four layers.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import tar from 'tar-stream';
import { benchLayers, makeTar } from '../images/_layers.js';

const dir = process.argv[2];
const four = process.argv[3] === '--four-layers';
if (dir === undefined || (four && process.argv[4] === undefined))
  throw new Error('usage: node dist/bench/ab/_image-setup.js DIR [--four-layers ROOT]');
const BIN = four ? join(process.argv[4], 'bin', 'thinpool.js') : fileURLToPath(new URL('../../../bin/thinpool.js', import.meta.url));
const tp = (...args: string[]): void => {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`thinpool ${args.join(' ')} failed: ${r.stderr}`);
};
mkdirSync(dir, { recursive: true });

if (four) {
  const layers = [0, 1, 2, 3].map((i) => join(dir, `layer${i}.tar`));
  if (!layers.every((f) => existsSync(f))) {
    for (const [i, l] of benchLayers().entries()) writeFileSync(layers[i], await makeTar(l));
  }
  const pool = join(dir, 'pool4');
  rmSync(pool, { recursive: true, force: true });
  tp('init', pool, '--size', '8G');
  tp('image', 'import', pool, 'warm', layers[3]);
  spawnSync('sync');
} else {
  const layer = join(dir, 'layer.tar');
  if (!existsSync(layer)) {
    const pack = tar.pack();
    const chunks: Buffer[] = [];
    pack.on('data', (c: unknown) => chunks.push(c as Buffer));
    const end = new Promise<void>((r) => pack.on('end', () => r()));
    pack.entry({ name: 'srv/', type: 'directory', mode: 0o755, mtime: new Date(1700000000000) });
    const body = randomBytes(10 << 20);
    pack.entry({ name: 'srv/big.bin', size: body.length, mode: 0o644, mtime: new Date(1700000000000) }, body);
    pack.finalize();
    await end;
    writeFileSync(layer, Buffer.concat(chunks));
  }
  const pool = join(dir, 'pool');
  if (!existsSync(pool)) {
    tp('init', pool, '--size', '4G');
    tp('image', 'import', pool, 'base', layer);
  }
}
