// The ext2fs worker is started with this process's Node options less what a worker refuses
// (src/images/worker-exec-argv.ts): V8 options such as --max-old-space-size or --expose-gc made every image
// command fail with ERR_WORKER_INVALID_EXEC_ARGV before it began. Unit cases on the filter, and the built CLI run
// as `node --max-old-space-size=... --expose-gc --stack-size=... bin/thinpool.js image import ...`.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { workerExecArgv } from '../../src/images/worker-exec-argv.js';
import { cleanup, tempDir } from '../cli/helpers.js';
import { requireFreshBuild } from '../support/dist.js';
import { needTool } from '../support/tools.js';
import { makeTar } from './support.js';

const BIN = join(import.meta.dirname, '../../bin/thinpool.js');
const haveTools = needTool('mkfs.ext4', 'e2fsprogs');
const work = tempDir('tp-worker-argv-');
afterAll(() => cleanup(work));

test('options a worker accepts are kept in order, with their separate values; V8 options are dropped', () => {
  expect(workerExecArgv([])).toEqual([]);
  expect(workerExecArgv(['--no-warnings', '--conditions', 'x', '--enable-source-maps'])).toEqual([
    '--no-warnings',
    '--conditions',
    'x',
    '--enable-source-maps',
  ]);
  expect(
    workerExecArgv(['--max-old-space-size=300', '--no-warnings', '--expose-gc', '--conditions=y', '--stack-size=2000', '--liftoff-only']),
  ).toEqual(['--no-warnings', '--conditions=y']);
});

test('a main script given as a string: --input-type, -e and -p are dropped with their values', () => {
  expect(workerExecArgv(['--input-type=module', '-e', 'code', '--no-warnings'])).toEqual(['--no-warnings']);
  expect(workerExecArgv(['--input-type', 'module', '--eval', 'code', '--expose-gc'])).toEqual([]);
  expect(workerExecArgv(['-p', '1+1', '--print=2', '--eval=3', '--no-deprecation'])).toEqual(['--no-deprecation']);
});

describe.skipIf(!haveTools)('the CLI under V8 options', () => {
  test('node --max-old-space-size --expose-gc --stack-size bin/thinpool.js image import works and the image reads back', async () => {
    requireFreshBuild();
    const pool = join(work, 'pool');
    const layer = join(work, 'layer.tar');
    writeFileSync(
      layer,
      await makeTar([
        { name: 'etc/', type: 'directory' },
        { name: 'etc/hello', body: Buffer.from('hello\n') },
      ]),
    );
    const run = (...args: string[]) =>
      spawnSync(process.execPath, ['--max-old-space-size=1024', '--expose-gc', '--stack-size=900', BIN, ...args], {
        encoding: 'utf8',
        timeout: 120_000,
      });
    const init = run('init', pool, '--size', '1G');
    expect(init.status, init.stderr).toBe(0);
    const imp = run('image', 'import', pool, 'app', layer, '--fs-size', '64M');
    expect(imp.stderr).not.toContain('ERR_WORKER_INVALID_EXEC_ARGV');
    expect(imp.status, imp.stderr).toBe(0);
    const cat = run('fs', 'cat', pool, 'app', '/etc/hello');
    expect(cat.status, cat.stderr).toBe(0);
    expect(cat.stdout).toBe('hello\n');
  });
});
