/** serve: the NBD server (src/nbd) behind the command line. */
import type { Ctx } from '../io.js';
import { cephOptions, requirePoolDir } from '../pool.js';

export async function serve(ctx: Ctx, args: string[], opts: Record<string, unknown>): Promise<number> {
  const [dir, ...rest] = args;
  const names = (rest.flat() as string[]).filter((n) => typeof n === 'string');
  const pool = requirePoolDir(ctx, dir);
  const { serveCommand } = await import('../../nbd/serve-command.js');
  return serveCommand({
    pool,
    ceph: cephOptions(ctx),
    names,
    listen: opts.listen as string | undefined,
    socket: opts.socket as string | undefined,
    readOnly: opts.readOnly === true,
    busyPollUs: opts.busyPollUs as string | undefined,
    tls: opts.tls as string | undefined,
    tlsPsk: opts.tlsPsk as string | undefined,
    tlsCertificates: opts.tlsCertificates as string | undefined,
    tlsAllow: opts.tlsAllow as string[] | undefined,
    insecure: opts.insecure === true,
    socketMode: opts.socketMode as string | undefined,
    maxConnections: opts.maxConnections as string | undefined,
    handshakeTimeout: opts.handshakeTimeout as string | undefined,
    stdout: ctx.io.stdout,
    stderr: ctx.io.stderr,
  });
}
