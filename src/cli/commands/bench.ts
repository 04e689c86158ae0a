/** bench: the block- against file-level copy-on-write comparison (bench/compare), from the command line. */
import type { Ctx } from '../main.js';
import { resolvePath } from '../pool.js';

export async function bench(ctx: Ctx, _args: string[], opts: Record<string, unknown>): Promise<number> {
  const args: string[] = [];
  if (opts.quick) args.push('--quick');
  if (opts.full) args.push('--full');
  if (opts.scenario) args.push('--scenario', String(opts.scenario));
  args.push('--out', resolvePath(ctx, String(opts.out ?? 'thinpool-bench')));
  if (opts.work) args.push('--work', resolvePath(ctx, String(opts.work)));
  // bench/ sits beside src/ in the source tree and in dist/.
  const { main } = await import('../../../bench/compare/run.js');
  const before = process.exitCode;
  await main(args);
  const failed = process.exitCode === 1 && before !== 1;
  if (failed) process.exitCode = before;
  return failed ? 1 : 0;
}
