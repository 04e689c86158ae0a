/**
 * Setup for an A/B of `thinpool image import` (bench/_ab.ts --setup): makes DIR/layer.tar (a 10 MiB layer: one
 * directory, one file of random bytes) and DIR/pool (a pool whose base filesystem exists, the layer imported once
 * as `base`, so later imports of it reuse it) if they do not exist yet; run before every timed import, untimed.
 *   node dist/bench/ab/_image-setup.js DIR
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import tar from 'tar-stream';

const dir = process.argv[2];
if (dir === undefined) throw new Error('usage: node dist/bench/ab/_image-setup.js DIR');
const BIN = fileURLToPath(new URL('../../../bin/thinpool.js', import.meta.url));
mkdirSync(dir, { recursive: true });
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
  for (const args of [
    ['init', pool, '--size', '4G'],
    ['image', 'import', pool, 'base', layer],
  ]) {
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`thinpool ${args.join(' ')} failed: ${r.stderr}`);
  }
}
