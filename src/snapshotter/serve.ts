/**
 * Running the containerd snapshotter on an open pool until SIGTERM / SIGINT (or an abort signal).
 *
 * Start: exports (the NBD socket, leftovers of a killed predecessor removed, orphaned volumes deleted), then the
 * gRPC socket; one line on stdout once containerd can connect. Stop: no new requests (those in flight get up
 * to 5 s), every export torn down (lazily for volumes something still mounts), the pool committed and closed.
 * Resolves to the exit status: 0 after a clean stop, 1 when starting or stopping failed.
 */
import { isThinpoolError } from '../errors.js';
import type { ThinPool } from '../thin/pool.js';
import { serveGrpc } from './grpc.js';
import { ContainerdSnapshotter } from './snapshotter.js';

export interface ServeSnapshotterOptions {
  /** The pool, open for writing; closed by this function. */
  pool: ThinPool;
  /** What the pool is called in messages. */
  poolName: string;
  /** Absolute path of the gRPC unix socket. */
  socket: string;
  /** Absolute path of the state directory (NBD socket, FUSE mount points). */
  stateDir: string;
  /** Filesystem size of snapshots without a parent, bytes. */
  fsSize: number;
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
  /** Log every failed request to stderr. */
  verbose?: boolean;
  signal?: AbortSignal;
}

const PREFIX = 'thinpool snapshotter serve';

export async function serveSnapshotter(opts: ServeSnapshotterOptions): Promise<number> {
  const { pool, stderr } = opts;
  const log = (m: string) => stderr.write(`${PREFIX}: ${m}\n`);
  pool.on('threshold', (e) => log(`warning: ${e.resource} use reached ${e.threshold}% (${e.usedBlocks} of ${e.totalBlocks} blocks)`));
  pool.on('warning', (w) => log(`warning: ${w.message}`));
  const snap = new ContainerdSnapshotter(pool, { fsSize: opts.fsSize, stateDir: opts.stateDir, log });

  let release = (): void => {};
  const stopped = new Promise<void>((resolve) => {
    const on = () => resolve();
    process.once('SIGINT', on);
    process.once('SIGTERM', on);
    opts.signal?.addEventListener('abort', on, { once: true });
    if (opts.signal?.aborted) resolve();
    release = () => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
    };
  });

  let server;
  try {
    await snap.start();
    server = await serveGrpc(snap, opts.socket, { onError: opts.verbose ? (m, e) => log(`${m}: ${(e as Error).message}`) : undefined });
  } catch (e) {
    release();
    log(`cannot start: ${(e as Error).message}`);
    await snap.close().catch(() => undefined);
    pool.closeSync();
    return 1;
  }
  opts.stdout.write(`serving containerd snapshots of ${opts.poolName} on ${server.address}\n`);
  await stopped;
  release();
  let status = 0;
  await server.stop(5000);
  try {
    await snap.close();
  } catch (e) {
    log(`stopping the exports failed: ${(e as Error).message}`);
    status = 1;
  }
  try {
    pool.closeSync();
  } catch (e) {
    log(`closing the pool failed: ${isThinpoolError(e) ? `${e.code}: ` : ''}${(e as Error).message}`);
    status = 1;
  }
  return status;
}
