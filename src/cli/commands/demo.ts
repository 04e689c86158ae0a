/**
 * `thinpool demo [DIR]`: the story a newcomer sees first, run on a pool it creates in DIR (replaced when DIR holds
 * an earlier demo). Each step prints the command line it runs, then that command's own output.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CliError, q, write } from '../io.js';
import type { Ctx } from '../io.js';
import { resolvePath } from '../pool.js';

const MARKER = '.thinpool-demo';

function quoteArg(a: string): string {
  return /^[\w./:=@%+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

export async function demo(ctx: Ctx, [dirArg]: string[]): Promise<number> {
  const dir = dirArg ?? 'thinpool-demo';
  const abs = resolvePath(ctx, dir);
  if (existsSync(abs)) {
    if (!statSync(abs).isDirectory()) throw new CliError(`${q(dir)} exists and is not a directory: give another DIR ("thinpool demo DIR")`);
    const entries = readdirSync(abs);
    if (entries.includes(MARKER)) rmSync(abs, { recursive: true, force: true });
    else if (entries.length > 0)
      throw new CliError(`${q(dir)} exists and was not made by "thinpool demo": give another DIR ("thinpool demo DIR")`);
  }
  mkdirSync(abs, { recursive: true });
  writeFileSync(join(abs, MARKER), 'made by `thinpool demo`; the next run replaces this directory\n');

  // The base image: 4 MiB, text in the first two 64 KiB blocks and in block 40, zeros elsewhere.
  const img = Buffer.alloc(4 * 1024 * 1024);
  const text = (s: string, at: number): void => {
    img.write(s.repeat(Math.ceil(65536 / s.length)).slice(0, 65536), at);
  };
  text('thinpool demo: the base volume, block 0. ', 0);
  text('thinpool demo: the base volume, block 1. ', 65536);
  text('thinpool demo: the base volume, block 40. ', 40 * 65536);
  writeFileSync(join(abs, 'base.img'), img);
  writeFileSync(join(abs, 'hello.txt'), 'hello from the snapshot\n');

  const pool = join(dir, 'pool');
  const out = ctx.io.stdout;
  const say = (s: string): Promise<void> => write(out, s);
  const run = async (...argv: string[]): Promise<void> => {
    await say(`\n$ thinpool ${argv.map(quoteArg).join(' ')}\n`);
    const code = await ctx.main(argv, ctx.io);
    if (code !== 0) throw new CliError(`the demo stopped: "thinpool ${argv.join(' ')}" failed (exit ${code})`);
  };

  await say(`A tour of thinpool in ${dir}/ (run it again to start over).\n`);
  await say('\n# A pool: a directory with a dm-thin metadata file and a sparse data file.\n');
  await run('init', pool, '--size', '256M', '--block-size', '64K');
  await say('\n# A base volume from a 4 MiB raw image holding data in 3 blocks: zero blocks take no space.\n');
  await run('import', pool, 'base', join(dir, 'base.img'));
  await say('\n# A snapshot: instant, it shares every block with base.\n');
  await run('snapshot', pool, 'base', 'snap');
  await say('\n# A write into the snapshot copies just the block it touches (copy-on-write); base is unchanged.\n');
  await run('write', pool, 'snap', '--offset', '64K', join(dir, 'hello.txt'));
  await say('\n# Who uses what: exclusive bytes are mapped by one volume only, shared bytes by both.\n');
  await run('ls', pool);
  await say('\n# The one block that differs (thin_delta semantics).\n');
  await run('diff', pool, 'base', 'snap');
  await say('\n# The pool as a whole.\n');
  await run('status', pool);
  await say('\n# The snapshot reads back what was written; base still has its old block 1.\n');
  await run('read', pool, 'snap', '--offset', '64K', '--length', '24');
  await run('read', pool, 'base', '--offset', '64K', '--length', '41');
  await say('\n');
  await say(
    `\n# Next: "thinpool check ${pool}", "thinpool dump ${pool}" (thin_dump XML), "thinpool export ${pool} snap snap.img", "thinpool --help".\n`,
  );
  return 0;
}
