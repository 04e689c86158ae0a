/**
 * NbdServer: a fixed-newstyle NBD server exporting the volumes of one open ThinPool.
 *
 *   const server = new NbdServer(pool, { exports: ['vol1'] });
 *   await server.listen({ host: '127.0.0.1', port: 10809 });   // or { path: '/run/thinpool.sock' }
 *   ...
 *   await server.close();   // stop accepting, finish requests already received, commit the pool
 *
 * Exports are volumes by name: the listed ones, or every named volume of the pool. The empty name "" is the
 * default export (`defaultExport`, else the only export when there is exactly one). Read-only volumes
 * (committed image layers, views), a read-only server and a pool that is not writable export read-only.
 * FLUSH and FUA commit the pool; all connections share the pool, so CAN_MULTI_CONN is advertised.
 *
 * Safety (docs/nbd.md, "Serving beyond localhost"):
 * - TLS (`tls`): STARTTLS with pre-shared keys and/or X.509; `require` serves nothing in plain text. A PSK
 *   identity can be limited to some exports (`tls.allow`): the others are neither listed nor opened for it.
 * - `listen` refuses a TCP address other than loopback unless TLS is required or `insecure` is set, and creates
 *   a Unix socket with mode `socketMode` (default 0600: the owner only).
 * - Limits: at most `maxConnections` at once (more are closed on accept), a handshake deadline
 *   (`handshakeTimeoutMs`), and at most `maxQueuedReplyBytes` of replies queued per connection before its input
 *   is paused (plus the one reply being built); request sizes are capped as constants.ts says.
 * Listed exports, and any volume a client opens, are claimed in use (pool.claim) until close(): such a volume
 * is not rolled back meanwhile.
 */
import { chmodSync, existsSync, lstatSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { ThinpoolError } from '../errors.js';
import type { ThinPool } from '../thin/pool.js';
import { Connection, type ConnectionHost } from './connection.js';
import { OpenExport } from './export.js';
import { OUTPUT_HIGH } from './socket-io.js';
import { checkTlsOptions, type NbdTlsOptions } from './tls.js';

/** Default most connections at once. */
const DEFAULT_MAX_CONNECTIONS = 256;
/** Default time from accept to the transmission phase (TLS handshake included). */
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/** Is this a loopback address (or a name that always means one)? */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  if (/^::ffff:127\./.test(h)) return true;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

const DEFAULT_BUSY_POLL_US = 50;
/** Most a busy-poll window may be (it is spent spinning on one connection). */
export const MAX_BUSY_POLL_US = 1000;

function busyPollMicros(v: number | undefined): number {
  const env = process.env.NBD_BUSY_POLL_US;
  const x = v ?? (env !== undefined && env !== '' ? Number(env) : DEFAULT_BUSY_POLL_US);
  if (!(Number.isFinite(x) && x >= 0 && x <= MAX_BUSY_POLL_US)) {
    throw new RangeError(`busy-poll window ${String(x)} us: expected 0 to ${MAX_BUSY_POLL_US}`);
  }
  return x;
}

export interface NbdServerOptions {
  /** Volume names to export; default every named volume (looked up when a client asks). */
  exports?: string[];
  /**
   * Export names that stand for another volume reference (a name or `#ID`): `container/web` -> `#12`. An aliased
   * export is served under its export name; names not in the map are volume references themselves.
   */
  aliases?: ReadonlyMap<string, string>;
  /** Export everything read-only. */
  readOnly?: boolean;
  /** The volume served for the empty export name. */
  defaultExport?: string;
  /** Diagnostics (engine errors, internal errors); default: none. */
  log?: (msg: string) => void;
  /**
   * Socket I/O through public Node APIs only ('data' events, socket.write). By default input is read straight
   * into per-connection buffers and replies are written on the socket's descriptor where this Node version
   * allows it (see docs/nbd.md, "Speed"); this turns that off. Default: env NBD_PORTABLE_IO=1, else false.
   */
  portableIO?: boolean;
  /**
   * After answering a connection's requests, keep reading its socket for up to this many microseconds before
   * sleeping in the event loop (fast I/O path only). At queue depth 1 this saves a cross-CPU wake-up per
   * request at the cost of server CPU (docs/nbd.md, "Speed"). 0 turns it off. Default: env NBD_BUSY_POLL_US,
   * else 50.
   */
  busyPollMicros?: number;
  /** NBD over TLS (STARTTLS); default: no TLS (STARTTLS is refused). */
  tls?: NbdTlsOptions;
  /** Allow a TCP listener on a non-loopback address without TLS required (anyone reaching it reads and writes). */
  insecure?: boolean;
  /** Mode of a Unix socket created by listen (default 0o600). */
  socketMode?: number;
  /** Most client connections at once; more are closed as they arrive (default 256). */
  maxConnections?: number;
  /** Milliseconds a client has from connecting to the transmission phase (default 10000). */
  handshakeTimeoutMs?: number;
  /** Reply bytes one connection may queue before its input is paused (default 16 MiB). */
  maxQueuedReplyBytes?: number;
}

export type NbdListenOptions = { port?: number; host?: string } | { path: string };

export interface NbdAddress {
  host?: string;
  port?: number;
  path?: string;
  /** A URI clients understand (nbd://host:port or nbd+unix:///?socket=path), for the default export. */
  uri: string;
}

export class NbdServer {
  readonly pool: ThinPool;
  private readonly opts: NbdServerOptions;
  private readonly listeners: net.Server[] = [];
  private readonly conns = new Set<Connection>();
  private closing: Promise<void> | null = null;
  private idleWaiters: (() => void)[] = [];
  private served = 0;
  private nreq = 0;
  /** Volumes this server has claimed (pool.claim: a volume in use is not rolled back), by device id. */
  private readonly claims = new Map<number, () => void>();

  /** The busy-poll window every connection uses (validated once). */
  private readonly pollMicros: number;

  private refusedCount = 0;

  constructor(pool: ThinPool, opts: NbdServerOptions = {}) {
    this.pool = pool;
    this.opts = opts;
    this.pollMicros = busyPollMicros(opts.busyPollMicros);
    if (opts.tls) checkTlsOptions(opts.tls);
    const positive = (what: string, v: number | undefined) => {
      if (v !== undefined && !(Number.isInteger(v) && v > 0))
        throw new ThinpoolError('EINVAL', `${what} ${String(v)}: expected a positive integer`);
    };
    positive('maxConnections', opts.maxConnections);
    positive('handshakeTimeoutMs', opts.handshakeTimeoutMs);
    positive('maxQueuedReplyBytes', opts.maxQueuedReplyBytes);
    if (opts.exports) {
      for (const n of opts.exports) this.claimVolume(pool.volume(opts.aliases?.get(n) ?? n).id); // throws ENOENT now, not at the first client
    }
  }

  /** Number of open client connections. */
  get connections(): number {
    return this.conns.size;
  }

  /** Transmission requests received so far. */
  get requests(): number {
    return this.nreq;
  }

  /** Connections accepted so far. */
  get accepted(): number {
    return this.served;
  }

  /** Connections closed on arrival because maxConnections were open. */
  get refused(): number {
    return this.refusedCount;
  }

  /** Connections keeping the event loop hot after their last request (busy-poll window without a descriptor). */
  get hotConnections(): number {
    let n = 0;
    for (const c of this.conns) if (c.hot) n++;
    return n;
  }

  /** Reply bytes queued for clients and not yet taken by them, over all connections. */
  get queuedReplyBytes(): number {
    let n = 0;
    for (const c of this.conns) n += c.queuedBytes;
    return n;
  }

  private readonly host: ConnectionHost = ((server: NbdServer): ConnectionHost => ({
    get shuttingDown(): boolean {
      return server.closing !== null;
    },
    resolve: (name, identity) => this.resolve(name, identity),
    exportNames: (identity) => this.exportNames().filter((n) => this.allowed(n, identity)),
    get tlsMode(): 'off' | 'on' | 'require' {
      return server.opts.tls?.mode ?? 'off';
    },
    get tls() {
      return server.opts.tls;
    },
    get handshakeTimeoutMs(): number {
      return server.opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    },
    get maxQueuedBytes(): number {
      return server.opts.maxQueuedReplyBytes ?? OUTPUT_HIGH;
    },
    log: (msg) => this.opts.log?.(msg),
    get portableIO(): boolean {
      return server.opts.portableIO ?? process.env.NBD_PORTABLE_IO === '1';
    },
    get busyPollMicros(): number {
      return server.pollMicros;
    },
    counted: () => {
      this.nreq++;
    },
    asyncInFlight: 0,
    closed: (conn) => {
      this.conns.delete(conn);
      if (this.conns.size === 0) {
        const w = this.idleWaiters;
        this.idleWaiters = [];
        for (const f of w) f();
      }
    },
  }))(this);

  /** Names offered by NBD_OPT_LIST. */
  exportNames(): string[] {
    if (this.opts.exports) return [...this.opts.exports];
    return this.pool
      .list()
      .map((v) => v.name)
      .filter((n): n is string => n !== undefined);
  }

  /** May this PSK identity use this export (tls.allow)? */
  private allowed(name: string, identity: string | null): boolean {
    const allow = this.opts.tls?.allow;
    if (identity === null || !allow || !allow.has(identity)) return true;
    return allow.get(identity)!.includes(name);
  }

  private resolve(name: string, identity: string | null): OpenExport | null {
    if (this.pool.isClosed) return null;
    let target = name;
    if (name === '') {
      if (this.opts.defaultExport !== undefined) target = this.opts.defaultExport;
      else {
        const names = this.exportNames();
        if (names.length !== 1) return null;
        target = names[0];
      }
    } else if (this.opts.exports && !this.opts.exports.includes(name)) return null;
    const ref = this.opts.aliases?.get(target);
    if (!this.pool.has(ref ?? target)) return null;
    if (!this.allowed(target, identity)) return null;
    const vol = this.pool.volume(ref ?? target);
    this.claimVolume(vol.id);
    return new OpenExport(this.pool, ref !== undefined ? target : (vol.name ?? target), vol, this.opts.readOnly === true);
  }

  /** Hold vol in use until the server closes (once per volume). */
  private claimVolume(id: number): void {
    if (!this.claims.has(id)) this.claims.set(id, this.pool.claim(id, 'an NBD server'));
  }

  /** Listen on a TCP port (default 127.0.0.1:10809; port 0 picks one) or a Unix socket path. */
  listen(opts: NbdListenOptions = {}): Promise<NbdAddress> {
    if (this.closing) return Promise.reject(new Error('server is closed'));
    if (!('path' in opts)) {
      const host = opts.host ?? '127.0.0.1';
      if (!isLoopback(host) && this.opts.tls?.mode !== 'require' && this.opts.insecure !== true) {
        return Promise.reject(
          new ThinpoolError(
            'EINVAL',
            `refusing to serve on ${host}, which is not a loopback address, without TLS required: anyone who reaches it could read and write every export (require TLS, or say insecure to accept that)`,
          ),
        );
      }
    }
    const srv = net.createServer({ noDelay: true }, (sock) => this.accept(sock));
    this.listeners.push(srv);
    return new Promise((resolve, reject) => {
      srv.once('error', reject);
      const done = () => {
        srv.off('error', reject);
        srv.on('error', (e) => this.opts.log?.(`nbd: listener error: ${e.message}`));
        const a = srv.address();
        if (typeof a === 'string') resolve({ path: a, uri: `nbd+unix:///?socket=${a}` });
        else if (a) {
          const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
          resolve({ host: a.address, port: a.port, uri: `nbd://${host}:${a.port}` });
        } else reject(new Error('no address'));
      };
      if ('path' in opts) {
        // A stale socket file from a killed server would make listen fail with EADDRINUSE.
        if (existsSync(opts.path) && lstatSync(opts.path).isSocket()) unlinkSync(opts.path);
        const mode = this.opts.socketMode ?? 0o600;
        const path = opts.path;
        const listened = () => {
          try {
            chmodSync(path, mode);
          } catch (e) {
            srv.close();
            reject(e);
            return;
          }
          done();
        };
        // The socket is bound inside listen(): a umask makes it private from its first moment (chmod then sets
        // the mode asked for). Worker threads cannot change the umask; there chmod alone does it.
        let old: number | null = null;
        try {
          old = process.umask(0o177);
        } catch {
          old = null;
        }
        try {
          srv.listen(path, listened);
        } finally {
          if (old !== null) process.umask(old);
        }
      } else {
        srv.listen(opts.port ?? 10809, opts.host ?? '127.0.0.1', done);
      }
    });
  }

  private accept(sock: net.Socket): void {
    if (this.closing) {
      sock.destroy();
      return;
    }
    if (this.conns.size >= (this.opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS)) {
      this.refusedCount++;
      if (this.refusedCount === 1 || this.refusedCount % 1000 === 0) {
        this.opts.log?.(`nbd: ${this.conns.size} connections open (the most allowed): closing new ones (${this.refusedCount} so far)`);
      }
      sock.destroy();
      return;
    }
    this.served++;
    this.conns.add(new Connection(sock, this.host));
  }

  /**
   * Stop accepting, let every connection finish the requests it has received, then commit the pool (when it
   * is open and writable). The pool itself stays open: closing it is the caller's business.
   */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    // net.Server.close() calls back only once every connection has ended: start it, shut connections down, then wait.
    const stopped = Promise.all(this.listeners.map((s) => new Promise<void>((r) => s.close(() => r()))));
    if (this.conns.size > 0) {
      const idle = new Promise<void>((r) => this.idleWaiters.push(r));
      for (const c of [...this.conns]) c.shutdown();
      const timer = setTimeout(() => {
        for (const c of [...this.conns]) c.destroy();
      }, 5000);
      await idle;
      clearTimeout(timer);
    }
    await stopped;
    for (const release of this.claims.values()) release();
    this.claims.clear();
    if (!this.pool.isClosed && this.pool.mode === 'write') {
      try {
        this.pool.commitSync();
      } catch (e) {
        this.opts.log?.(`nbd: final commit failed: ${(e as Error).message}`);
        throw e;
      }
    }
  }
}
