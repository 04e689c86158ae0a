/**
 * The shared fixture of the bad-input tests for the commands not in test/cli/bad-input.test.ts (trim, extend,
 * space, serve, bench, and the image, container and fs command groups): test/cli/bad-input-usage.test.ts,
 * bad-input-image-fs.test.ts and bad-input-pool-conditions.test.ts.
 *
 * `useBadInputPools(haveTools)`, called at the top of a test file, makes a temp dir with a master pool (volume v
 * with data, images app and spare, container c1 with a file added), a small input file and two tar layers, in
 * beforeAll (only when haveTools), and in afterAll stops the processes pushed on `children` and removes the dir.
 * It also gives the command table every command is tried from, and copies of the master for tests that change it.
 *
 * `expectFails` runs a command and checks it failed as expected: one line on stderr starting
 * "thinpool CMD: ", the right exit status, nothing on stdout, and every pool given hashed before and after
 * identical.

 */
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { type CliResult, cleanup, cli, expectOneLineError, hashPool, poolCopier, tempDir } from './helpers.js';
import { makeTar, threeLayers } from '../images/support.js';

export async function ok(argv: string[], stdin?: Buffer): Promise<CliResult> {
  const r = await cli(argv, { stdin });
  if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  return r;
}

/** One line on stderr starting "thinpool CMD: ", the exit status; nothing on stdout. */
export function expectOneLineErrorNoStdout(r: CliResult, exit: number, cmd: string, pattern?: RegExp): void {
  expectOneLineError(r, exit, cmd, pattern);
  expect(r.stdout).toBe('');
}

/** The command name errors are prefixed with: "trim", "image import". */
export function cmdOf(argv: string[]): string {
  return ['image', 'container', 'fs'].includes(argv[0]) ? `${argv[0]} ${argv[1] === 'list' ? 'ls' : argv[1]}` : argv[0];
}

/** Run argv, check it failed as expected, and that every pool given is unchanged. */
export async function expectFails(
  pools: string | string[],
  argv: string[],
  exit: number,
  pattern?: RegExp,
  opts: { stdin?: Buffer; cmd?: string } = {},
): Promise<CliResult> {
  const list = Array.isArray(pools) ? pools : [pools];
  const before = list.map((p) => hashPool(p));
  const r = await cli(argv, { stdin: opts.stdin });
  expectOneLineErrorNoStdout(r, exit, opts.cmd ?? cmdOf(argv), pattern);
  expect(list.map((p) => hashPool(p))).toEqual(before);
  return r;
}

// ---- the command table ----
export interface Cmd {
  name: string;
  argv: (pool: string) => string[];
  writes: boolean;
  /** Positional arguments given by argv (after the command words), and how many are required. */
  positional: number;
  required?: number;
  /** The last positional is variadic: an extra argument is not an error. */
  variadic?: boolean;
  group?: boolean;
}

export interface BadInputPools {
  /** The temp dir everything lives in (removed in afterAll). */
  root: string;
  /** The master pool: volume v, images app and spare, container c1 (with /etc/added). */
  master: string;
  /** A 4 KiB input file. */
  small: string;
  /** A tar layer (an image's base) and a second one adding new/file (300 KiB). */
  layer0: string;
  layer1: string;
  /** Processes to stop in afterAll (lock holders). */
  children: ChildProcess[];
  /** Every command, with arguments that succeed on (a copy of) the master pool. */
  CMDS: Cmd[];
  /** A sparse copy of a pool (the master by default), under root. */
  copyPool: (src?: string) => string;
}

/** The master pool, its inputs and the command table, for the test file that calls this (see above). */
export function useBadInputPools(haveTools: boolean): BadInputPools {
  const root = tempDir('tp-bad-more-');
  const master = join(root, 'master');
  const small = join(root, 'small.bin');
  const layer0 = join(root, 'l0.tar');
  const layer1 = join(root, 'l1.tar');
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    if (!haveTools) return;
    writeFileSync(small, Buffer.alloc(4096, 0x42));
    const layers = threeLayers(1000);
    writeFileSync(layer0, await makeTar(layers[0]));
    writeFileSync(
      layer1,
      await makeTar([
        { name: 'new/', type: 'directory' },
        { name: 'new/file', body: Buffer.alloc(300 * 1024, 7) },
      ]),
    );
    await ok(['init', master, '--size', '16M']);
    await ok(['create', master, 'v', '--size', '1M']);
    await ok(['write', master, 'v', '-'], Buffer.alloc(64 * 1024, 0x61));
    await ok(['image', 'import', master, 'app', layer0, '--fs-size', '8M']);
    await ok(['image', 'import', master, 'spare', layer0, '--fs-size', '8M']);
    await ok(['container', 'create', master, 'app', 'c1']);
    await ok(['fs', 'put', master, 'c1', '/etc/added', small]);
  });

  afterAll(() => {
    for (const c of children) c.kill();
    cleanup(root);
  });

  const copy = poolCopier(root);
  const copyPool = (src = master): string => copy(src);

  const CMDS: Cmd[] = [
    { name: 'trim', argv: (p) => ['trim', p], writes: true, positional: 1 },
    { name: 'extend', argv: (p) => ['extend', p, '--size', '128M'], writes: true, positional: 1 },
    { name: 'space', argv: (p) => ['space', p], writes: false, positional: 1 },
    { name: 'space (change)', argv: (p) => ['space', p, '--discard-passdown', 'on'], writes: true, positional: 1 },
    {
      name: 'image import',
      argv: (p) => ['image', 'import', p, 'app2', layer0, '--fs-size', '8M'],
      writes: true,
      positional: 3,
      variadic: true,
      group: true,
    },
    { name: 'image ls', argv: (p) => ['image', 'ls', p], writes: false, positional: 1, group: true },
    { name: 'image history', argv: (p) => ['image', 'history', p, 'app'], writes: false, positional: 2, group: true },
    { name: 'image rm', argv: (p) => ['image', 'rm', p, 'spare'], writes: true, positional: 2, group: true },
    { name: 'container create', argv: (p) => ['container', 'create', p, 'app', 'c2'], writes: true, positional: 3, group: true },
    { name: 'container ls', argv: (p) => ['container', 'ls', p], writes: false, positional: 1, group: true },
    { name: 'container rm', argv: (p) => ['container', 'rm', p, 'c1'], writes: true, positional: 2, group: true },
    { name: 'container commit', argv: (p) => ['container', 'commit', p, 'c1', 'img2'], writes: true, positional: 3, group: true },
    { name: 'container diff', argv: (p) => ['container', 'diff', p, 'c1'], writes: false, positional: 2, group: true },
    { name: 'fs ls', argv: (p) => ['fs', 'ls', p, 'c1', '/etc'], writes: false, positional: 3, required: 2, group: true },
    { name: 'fs cat', argv: (p) => ['fs', 'cat', p, 'c1', '/etc/hostname'], writes: false, positional: 3, group: true },
    { name: 'fs put', argv: (p) => ['fs', 'put', p, 'c1', '/etc/x', small], writes: true, positional: 4, required: 3, group: true },
    { name: 'fs rm', argv: (p) => ['fs', 'rm', p, 'c1', '/etc/hostname'], writes: true, positional: 3, group: true },
  ];

  return { root, master, small, layer0, layer1, children, CMDS, copyPool };
}
