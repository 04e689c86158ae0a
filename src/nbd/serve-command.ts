/**
 * `thinpool serve POOL [NAME...] [--listen HOST:PORT | --socket PATH] [--read-only]`
 *
 * Opens the pool, exports the named volumes (all named volumes when none are given) over NBD, and runs until
 * SIGINT/SIGTERM (or opts.signal aborts): then it stops accepting, lets connections finish the requests they
 * have sent, commits, closes the pool and resolves 0. Startup failures print one line to stderr and resolve
 * 1 (2 for a bad command line).
 */
import { isThinpoolError } from '../errors.js';
import { explainError } from '../cli/errors.js';
import { q } from '../cli/io.js';
import { ThinPool } from '../thin/pool.js';
import { MAX_BUSY_POLL_US, NbdServer, type NbdListenOptions } from './server.js';

export interface ServeCommandOptions {
  pool: string;
  names: string[];
  /** HOST:PORT, :PORT or PORT (default 127.0.0.1:10809). */
  listen?: string;
  /** Unix socket path (instead of TCP). */
  socket?: string;
  readOnly?: boolean;
  /** Busy-poll window in microseconds (NbdServerOptions.busyPollMicros), as given on the command line. */
  busyPollUs?: string;
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
  /** Stop without a signal (tests, embedding). */
  signal?: AbortSignal;
  /** Called once listening, with the URI clients use. */
  onListening?: (uri: string) => void;
}

/** Parse HOST:PORT, [V6]:PORT, :PORT or PORT. */
export function parseListen(text: string): { host: string; port: number } {
  let host = '127.0.0.1';
  let portText = text;
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  if (v6) {
    host = v6[1];
    portText = v6[2];
  } else if (text.includes(':')) {
    const i = text.lastIndexOf(':');
    if (i > 0) host = text.slice(0, i);
    portText = text.slice(i + 1);
  }
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`bad --listen "${text}": expected HOST:PORT, :PORT or PORT`);
  }
  return { host, port };
}

function parseBusyPoll(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n > MAX_BUSY_POLL_US) throw new Error(`bad --busy-poll-us "${text}": expected 0 to ${MAX_BUSY_POLL_US}`);
  return n;
}

export async function serveCommand(opts: ServeCommandOptions): Promise<number> {
  const { stdout, stderr } = opts;
  if (opts.listen !== undefined && opts.socket !== undefined) {
    stderr.write('thinpool serve: --listen and --socket cannot be used together\n');
    return 2;
  }
  let where: NbdListenOptions;
  let busyPollMicros: number | undefined;
  try {
    where = opts.socket !== undefined ? { path: opts.socket } : parseListen(opts.listen ?? '127.0.0.1:10809');
    busyPollMicros = opts.busyPollUs === undefined ? undefined : parseBusyPoll(opts.busyPollUs);
  } catch (e) {
    stderr.write(`thinpool serve: ${(e as Error).message}\n`);
    return 2;
  }
  let pool: ThinPool;
  try {
    pool = await ThinPool.open(opts.pool, { readOnly: opts.readOnly === true });
    pool.on('threshold', (e) => stderr.write(`thinpool serve: warning: ${e.resource} use reached ${e.threshold}% (${e.usedBlocks} of ${e.totalBlocks} blocks)\n`));
    pool.on('extended', (e) => stderr.write(`thinpool serve: ${e.resource} device grown from ${e.fromBlocks} to ${e.toBlocks} blocks\n`));
    pool.on('warning', (w) => stderr.write(`thinpool serve: warning: ${w.message}\n`));
  } catch (e) {
    // The same explained line and remedy as the other commands ("is open in process N: wait for it to finish
    // (or stop it) and retry", "metadata of POOL is damaged: ... run thinpool check").
    const { message } = explainError(e, { pool: opts.pool });
    stderr.write(`thinpool serve: cannot open pool ${q(opts.pool)}: ${message.replace(/[\r\n]+/g, ' ')}\n`);
    return 1;
  }
  let server: NbdServer;
  try {
    for (const n of opts.names) {
      if (!pool.has(n)) throw new Error(`no volume named "${n}" in ${opts.pool}`);
    }
    const names = opts.names.length > 0 ? opts.names : undefined;
    server = new NbdServer(pool, {
      exports: names,
      readOnly: opts.readOnly,
      busyPollMicros,
      defaultExport: names ? names[0] : undefined,
      log: (m) => stderr.write(`${m}\n`),
    });
  } catch (e) {
    stderr.write(`thinpool serve: ${(e as Error).message}\n`);
    pool.closeSync();
    return 1;
  }
  let stoppedCleanup = (): void => {};
  const stopped = new Promise<string>((resolve) => {
    const onSig = (sig: string) => () => resolve(sig);
    const sigint = onSig('SIGINT');
    const sigterm = onSig('SIGTERM');
    process.once('SIGINT', sigint);
    process.once('SIGTERM', sigterm);
    const cleanup = () => {
      process.off('SIGINT', sigint);
      process.off('SIGTERM', sigterm);
    };
    opts.signal?.addEventListener('abort', () => resolve('abort'), { once: true });
    if (opts.signal?.aborted) resolve('abort');
    stoppedCleanup = cleanup;
  });
  try {
    const addr = await server.listen(where);
    const list = opts.names.length > 0 ? opts.names : server.exportNames();
    const ro = opts.readOnly ? ' (read-only)' : '';
    stdout.write(`serving ${list.length} export${list.length === 1 ? '' : 's'}${ro} on ${addr.uri}: ${list.join(', ')}\n`);
    opts.onListening?.(addr.uri);
  } catch (e) {
    stoppedCleanup();
    stderr.write(`thinpool serve: cannot listen on ${opts.socket ?? opts.listen ?? '127.0.0.1:10809'}: ${(e as Error).message}\n`);
    await server.close().catch(() => undefined);
    pool.closeSync();
    return 1;
  }
  await stopped;
  stoppedCleanup();
  let status = 0;
  try {
    await server.close();
  } catch (e) {
    stderr.write(`thinpool serve: commit failed: ${(e as Error).message}\n`);
    status = 1;
  }
  try {
    pool.closeSync();
  } catch (e) {
    stderr.write(`thinpool serve: closing the pool failed: ${isThinpoolError(e) ? `${e.code}: ` : ''}${(e as Error).message}\n`);
    status = 1;
  }
  return status;
}
