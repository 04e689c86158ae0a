/** snapshotter serve: containerd's proxy snapshotter (src/snapshotter) behind the command line. */
import { ThinPool } from '../../thin/pool.js';
import { explainError } from '../../messages.js';
import { CliError, UsageError, q } from '../io.js';
import type { Ctx } from '../io.js';
import { requirePoolDir, resolvePath, sizeArg } from '../pool.js';

/** A unix socket path must fit in sun_path (108 bytes with its terminating NUL). */
const MAX_SOCKET_PATH = 107;

export async function serve(ctx: Ctx, [dir]: string[], opts: Record<string, unknown>): Promise<number> {
  if (typeof opts.address !== 'string' || opts.address === '')
    throw new UsageError("--address SOCKET is required (the unix socket containerd's proxy_plugins entry names)");
  const socket = resolvePath(ctx, opts.address);
  const stateDir = resolvePath(ctx, typeof opts.stateDir === 'string' ? opts.stateDir : `${socket}.d`);
  if (socket.length > MAX_SOCKET_PATH)
    throw new UsageError(`socket path ${q(socket)} is longer than ${MAX_SOCKET_PATH} bytes: use a shorter --address`);
  if (`${stateDir}/nbd.sock`.length > MAX_SOCKET_PATH)
    throw new UsageError(`state directory ${q(stateDir)} is too long for a unix socket inside it: use a shorter --state-dir`);
  const fsSize = sizeArg(opts.fsSize ?? '10G', '--fs-size');
  const abs = requirePoolDir(ctx, dir);
  let pool: ThinPool;
  try {
    pool = ThinPool.openSync(abs);
  } catch (e) {
    throw new CliError(`cannot open pool ${q(dir)}: ${explainError(e, { pool: dir }).message}`);
  }
  if (pool.mode !== 'write') {
    pool.closeSync();
    throw new CliError(`pool ${q(dir)} is not writable (mode ${pool.mode}): run "thinpool check ${q(dir)}"`);
  }
  const { serveSnapshotter } = await import('../../snapshotter/serve.js');
  return serveSnapshotter({
    pool,
    poolName: dir,
    socket,
    stateDir,
    fsSize,
    stdout: ctx.io.stdout,
    stderr: ctx.io.stderr,
    verbose: opts.verbose === true,
  });
}
