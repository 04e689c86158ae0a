/**
 * Start-up of the shipped command: `node bin/thinpool.js snapshot POOL v0 sN` on a pool with 100 volumes, against
 * `node -e ""` in the same run. Prints medians and the ratio. Run after `npm run build`:
 *   node dist/bench/cli-startup.js [runs]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ThinPool } from '../src/thin/pool.js';

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('package.json not found');
    dir = up;
  }
  return dir;
}

function time(cmd: string, args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return ms;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

const root = findRoot();
const bin = resolve(root, 'bin/thinpool.js');
if (!existsSync(join(root, 'dist/src/cli/main.js'))) throw new Error('dist/ is missing: run `npm run build` first');
const runs = Number(process.argv[2] ?? 10);
const dir = mkdtempSync(join(tmpdir(), 'tp-bench-cli-'));
try {
  const pool = join(dir, 'pool');
  const p = ThinPool.formatSync(pool, { size: 1024 ** 3 });
  const data = new Uint8Array(64 * 1024).fill(7);
  for (let i = 0; i < 100; i++) {
    const v = p.createThinSync(`v${i}`, { size: 64 * 1024 * 1024 });
    v.writeSync(data, (i % 16) * 65536);
  }
  p.closeSync();
  // Warm-up (page cache, compile cache).
  time('node', ['-e', '']);
  time('node', [bin, 'snapshot', pool, 'v0', 'warm']);
  const base: number[] = [];
  const cli: number[] = [];
  for (let i = 0; i < runs; i++) {
    base.push(time('node', ['-e', '']));
    cli.push(time('node', [bin, 'snapshot', pool, 'v0', `s${i}`]));
  }
  const b = median(base);
  const c = median(cli);
  console.log(`node -e "":                          median ${b.toFixed(1)} ms (${runs} runs)`);
  console.log(`thinpool snapshot (100+ volumes):    median ${c.toFixed(1)} ms (${runs} runs)`);
  console.log(`ratio: ${(c / b).toFixed(2)}x node start-up (+${(c - b).toFixed(1)} ms)`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
