/** bench: the block- against file-level copy-on-write comparison (bench/compare), from the command line. */
import type { Ctx } from '../io.js';
import { resolvePath } from '../pool.js';
import { UsageError, q } from '../io.js';

export async function bench(ctx: Ctx, _args: string[], opts: Record<string, unknown>): Promise<number> {
  const args: string[] = [];
  if (opts.quick) args.push('--quick');
  if (opts.full) args.push('--full');
  if (opts.scenario !== undefined) {
    const { SCENARIOS } = await import('../../../bench/compare/run.js');
    const names = String(opts.scenario)
      .split(',')
      .map((x) => x.trim());
    const known = SCENARIOS.map((x) => x.name);
    const unknown = names.filter((n) => !known.includes(n));
    if (names.length === 0 || unknown.length > 0) {
      throw new UsageError(`unknown scenario ${q(unknown.join(',') || String(opts.scenario))}: choose from ${known.join(', ')}`);
    }
    args.push('--scenario', names.join(','));
  }
  const out = resolvePath(ctx, String(opts.out ?? 'thinpool-bench'));
  const { outputDir } = await import('../../../bench/compare/run.js');
  try {
    outputDir(opts.quick ? 'quick' : opts.full ? 'full' : 'default', out); // a quick run never writes into the project's docs/
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  args.push('--out', out);
  if (opts.work) args.push('--work', resolvePath(ctx, String(opts.work)));
  // bench/ sits beside src/ in the source tree and in dist/.
  const { main } = await import('../../../bench/compare/run.js');
  // main reports through process.exitCode (1: a check failed, 2: a usage error such as --quick into the
  // checked-in docs/); hand that back as this command's status and leave process.exitCode as it was.
  const before = process.exitCode;
  process.exitCode = undefined;
  try {
    await main(args);
    return Number(process.exitCode ?? 0);
  } finally {
    process.exitCode = before;
  }
}
