/**
 * `thinpool serve POOL [NAME...] [--listen HOST:PORT | --socket PATH] [--read-only] [--tls off|on|require
 *  --tls-psk FILE --tls-certificates DIR --tls-allow ID:NAME,...] [--insecure] [--socket-mode MODE]
 *  [--max-connections N] [--handshake-timeout SECONDS]`
 *
 * Opens the pool, exports the named volumes (all named volumes when none are given) over NBD, and runs until
 * SIGINT/SIGTERM (or opts.signal aborts): then it stops accepting, lets connections finish the requests they
 * have sent, commits, closes the pool and resolves 0. Startup failures print one line to stderr and resolve
 * 1 (2 for a bad command line). A TCP address other than loopback is refused without `--tls require` unless
 * `--insecure` is given; `--tls on|require` needs `--tls-psk` and/or `--tls-certificates`.
 */
import { isThinpoolError } from '../errors.js';
import { formatSize, parseSize } from '../sizes.js';
import { explainError, q } from '../messages.js';
import { ThinPool } from '../thin/pool.js';
import { type CephOptions, isRadosAddress } from '../thin/rados-pool.js';
import { isLoopback, MAX_BUSY_POLL_US, NbdServer, type NbdListenOptions } from './server.js';
import { type NbdTlsOptions, readCertificateDir, readPskFile } from './tls.js';

export interface ServeCommandOptions {
  pool: string;
  /** The cluster and client of a rados:// pool. */
  ceph?: CephOptions;
  names: string[];
  /** Export names standing for other volumes (NbdServerOptions.aliases), resolved once the pool is open. */
  aliases?: (pool: ThinPool) => ReadonlyMap<string, string>;
  /** HOST:PORT, :PORT or PORT (default 127.0.0.1:10809). */
  listen?: string;
  /** Unix socket path (instead of TCP). */
  socket?: string;
  readOnly?: boolean;
  /** Busy-poll window in microseconds (NbdServerOptions.busyPollMicros), as given on the command line. */
  busyPollUs?: string;
  /** rados:// pools: the write-back size (CephOptions.writeBackBytes) as given on the command line (e.g. 24M). */
  writeBack?: string;
  /** off (default), on or require. */
  tls?: string;
  /** psktool key file. */
  tlsPsk?: string;
  /** Directory with server-cert.pem, server-key.pem, ca-cert.pem. */
  tlsCertificates?: string;
  /** IDENTITY:NAME[,NAME...], each limiting one PSK identity to those exports. */
  tlsAllow?: string[];
  /** Serve a non-loopback TCP address without TLS required. */
  insecure?: boolean;
  /** Octal mode of the Unix socket (default 600). */
  socketMode?: string;
  maxConnections?: string;
  /** Seconds. */
  handshakeTimeout?: string;
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

function parseTls(opts: ServeCommandOptions): NbdTlsOptions | undefined {
  const mode = opts.tls ?? 'off';
  if (mode !== 'off' && mode !== 'on' && mode !== 'require') throw new Error(`bad --tls "${mode}": expected off, on or require`);
  if (mode === 'off') {
    if (opts.tlsPsk !== undefined || opts.tlsCertificates !== undefined || (opts.tlsAllow?.length ?? 0) > 0) {
      throw new Error('--tls-psk, --tls-certificates and --tls-allow need --tls on or --tls require');
    }
    return undefined;
  }
  if (opts.tlsPsk === undefined && opts.tlsCertificates === undefined) {
    throw new Error(`--tls ${mode} needs --tls-psk FILE (make one with: psktool -u IDENTITY -p FILE) and/or --tls-certificates DIR`);
  }
  let allow: Map<string, string[]> | undefined;
  for (const a of opts.tlsAllow ?? []) {
    const m = /^([^:]+):(.+)$/.exec(a);
    if (!m) throw new Error(`bad --tls-allow "${a}": expected IDENTITY:NAME[,NAME...]`);
    allow ??= new Map();
    allow.set(m[1], [...(allow.get(m[1]) ?? []), ...m[2].split(',').filter((n) => n !== '')]);
  }
  if (allow && opts.tlsPsk === undefined) throw new Error('--tls-allow limits PSK identities: it needs --tls-psk');
  return { mode, allow };
}

function parseCount(flag: string, text: string | undefined, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > max) throw new Error(`bad ${flag} "${text}": expected 1 to ${max}`);
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
  let tls: NbdTlsOptions | undefined;
  let socketMode: number | undefined;
  let maxConnections: number | undefined;
  let handshakeTimeout: number | undefined;
  let writeBackBytes = 0;
  try {
    where = opts.socket !== undefined ? { path: opts.socket } : parseListen(opts.listen ?? '127.0.0.1:10809');
    busyPollMicros = opts.busyPollUs === undefined ? undefined : parseBusyPoll(opts.busyPollUs);
    tls = parseTls(opts);
    if (opts.socketMode !== undefined) {
      if (!/^0?[0-7]{3}$/.test(opts.socketMode))
        throw new Error(`bad --socket-mode "${opts.socketMode}": expected an octal mode such as 600 or 660`);
      if (opts.socket === undefined) throw new Error('--socket-mode applies to --socket only');
      socketMode = Number.parseInt(opts.socketMode, 8);
    }
    maxConnections = parseCount('--max-connections', opts.maxConnections, 65536);
    handshakeTimeout = parseCount('--handshake-timeout', opts.handshakeTimeout, 3600);
    if (opts.writeBack !== undefined) {
      writeBackBytes = parseSize(opts.writeBack, '--write-back');
      if (writeBackBytes > 0 && !isRadosAddress(opts.pool))
        throw new Error(
          "--write-back applies to rados:// pools only: a file pool's writes already land in the page cache and are made durable by FLUSH and FUA",
        );
      if (writeBackBytes > 0 && opts.readOnly === true) throw new Error('--write-back and --read-only cannot be used together');
    }
  } catch (e) {
    stderr.write(`thinpool serve: ${(e as Error).message}\n`);
    return 2;
  }
  if ('host' in where && where.host !== undefined && !isLoopback(where.host) && tls?.mode !== 'require' && opts.insecure !== true) {
    stderr.write(
      `thinpool serve: refusing to listen on ${where.host}, which is not a loopback address, without --tls require: anyone who reaches it could read and write every export (use --tls require with --tls-psk or --tls-certificates, or --insecure to accept that)\n`,
    );
    return 2;
  }
  if (tls) {
    try {
      if (opts.tlsPsk !== undefined) tls.psk = readPskFile(opts.tlsPsk);
      if (opts.tlsCertificates !== undefined) tls.certificates = readCertificateDir(opts.tlsCertificates);
    } catch (e) {
      stderr.write(`thinpool serve: ${(e as Error).message}\n`);
      return 1;
    }
  }
  let pool: ThinPool;
  try {
    pool = await ThinPool.open(opts.pool, {
      readOnly: opts.readOnly === true,
      ceph: writeBackBytes > 0 ? { ...opts.ceph, writeBackBytes } : opts.ceph,
    });
    pool.on('threshold', (e) =>
      stderr.write(`thinpool serve: warning: ${e.resource} use reached ${e.threshold}% (${e.usedBlocks} of ${e.totalBlocks} blocks)\n`),
    );
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
    const aliases = opts.aliases?.(pool);
    for (const n of opts.names) {
      if (!pool.has(aliases?.get(n) ?? n)) throw new Error(`no volume named "${n}" in ${opts.pool}`);
    }
    const names = opts.names.length > 0 ? opts.names : undefined;
    server = new NbdServer(pool, {
      exports: names,
      aliases,
      readOnly: opts.readOnly,
      busyPollMicros,
      tls,
      insecure: opts.insecure === true,
      socketMode,
      maxConnections,
      handshakeTimeoutMs: handshakeTimeout === undefined ? undefined : handshakeTimeout * 1000,
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
    const uri = tls?.mode === 'require' ? addr.uri.replace(/^nbd(\+unix)?:/, (_m, u: string | undefined) => `nbds${u ?? ''}:`) : addr.uri;
    const how =
      (tls ? `, TLS ${tls.mode === 'require' ? 'required' : 'offered'}` : '') +
      (writeBackBytes > 0 ? `, write-back ${formatSize(writeBackBytes)}` : '');
    stdout.write(`serving ${list.length} export${list.length === 1 ? '' : 's'}${ro}${how} on ${uri}: ${list.join(', ')}\n`);
    opts.onListening?.(uri);
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
