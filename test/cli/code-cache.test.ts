// The shipped command's code cache (bin/thinpool.js) is an optimisation only: a run with no cache, with a cache
// file of garbage or a truncated one under the exact name the bin looks for, or with the cache turned off
// prints the same and exits the same; a run that found no usable cache leaves one V8 accepts (the next run
// does not rewrite it); the cache is kept per command.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { requireFreshBuild } from '../support/dist.js';
import { projectRoot } from '../support/oracle.js';
import { cleanup, tempDir } from './helpers.js';

const bin = join(projectRoot, 'bin/thinpool.js');
const cacheDir = join(projectRoot, 'dist/.v8-cache');
let dir = '';
let pool = '';
let cacheFile = '';

function run(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  requireFreshBuild();
  dir = tempDir('tp-code-cache-');
  pool = join(dir, 'pool');
  expect(run(['init', pool, '--size', '8M']).status).toBe(0);
  expect(run(['create', pool, 'v', '--size', '1M']).status).toBe(0);
  const id = /^\/\/ thinpool-bundle ([0-9a-f]+)\n/.exec(readFileSync(join(projectRoot, 'dist/src/cli/thinpool.cjs'), 'latin1'))?.[1];
  expect(id).toBeDefined();
  cacheFile = join(cacheDir, `${id}-${process.version}-${process.arch}-ls.bin`);
});

afterAll(() => {
  if (cacheFile) rmSync(cacheFile, { force: true });
  cleanup(dir);
});

describe('the code cache of bin/thinpool.js', () => {
  test('none, garbage, truncated or turned off: the same output; a usable cache is left and then kept', () => {
    const off = run(['ls', pool], { THINPOOL_CODE_CACHE: '0' });
    expect(off.status, off.stderr).toBe(0);
    expect(off.stdout).toMatch(/^v\s/m);

    rmSync(cacheFile, { force: true });
    const none = run(['ls', pool]);
    expect(none).toEqual(off);
    expect(existsSync(cacheFile)).toBe(true);
    const good = readFileSync(cacheFile);

    // Accepted: the next run leaves the file as it was.
    const before = statSync(cacheFile).mtimeMs;
    expect(run(['ls', pool])).toEqual(off);
    expect(statSync(cacheFile).mtimeMs).toBe(before);

    for (const bad of [Buffer.alloc(good.length, 0x5a), good.subarray(0, good.length >> 1), Buffer.alloc(0)]) {
      writeFileSync(cacheFile, bad);
      expect(run(['ls', pool])).toEqual(off);
      // Rejected, so replaced by one made by this run.
      expect(readFileSync(cacheFile).equals(bad)).toBe(false);
      expect(run(['ls', pool])).toEqual(off);
    }
  });

  test('a failed run writes no cache', () => {
    rmSync(cacheFile, { force: true });
    const r = run(['ls', join(dir, 'missing')]);
    expect(r.status).toBe(1);
    expect(existsSync(cacheFile)).toBe(false);
  });
});
