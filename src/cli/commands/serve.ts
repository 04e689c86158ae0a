/** serve: the NBD server (src/nbd) behind the command line. */
import type { Ctx } from '../main.js';
import { requirePoolDir } from '../pool.js';

export async function serve(ctx: Ctx, args: string[], opts: Record<string, unknown>): Promise<number> {
  const [dir, ...rest] = args;
  const names = (rest.flat() as string[]).filter((n) => typeof n === 'string');
  const pool = requirePoolDir(ctx, dir);
  const { serveCommand } = await import('../../nbd/serve-command.js');
  return serveCommand({
    pool,
    names,
    listen: opts.listen as string | undefined,
    socket: opts.socket as string | undefined,
    readOnly: opts.readOnly === true,
    busyPollUs: opts.busyPollUs as string | undefined,
    stdout: ctx.io.stdout,
    stderr: ctx.io.stderr,
  });
}
