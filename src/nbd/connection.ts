/**
 * One NBD client connection: the socket plumbing (socket-io.ts) driven by the handshake (handshake.ts) and
 * then the transmission phase (transmission.ts); STARTTLS moves the connection onto TLS (tls.ts).
 *
 * Contract and invariants:
 * - The server's greeting is sent at once; input is parsed by the handshake until it enters an export, then by
 *   the transmission phase for the rest of the connection. Busy-polling is allowed in the transmission phase only.
 * - The handshake (TLS included) must reach the transmission phase within `handshakeTimeoutMs`, else the
 *   connection is closed: a client cannot hold a connection slot by saying nothing.
 * - STARTTLS: once its ACK is sent, the plain SocketIO lets go of the socket (input the client sent before
 *   reading the ACK breaks the protocol and closes the connection), and a new SocketIO reads and writes through
 *   a TLSSocket on the same connection: decrypted input lands in the connection's buffer through the TLS
 *   socket's user-buffer hook (unless portableIO), replies go through socket.write (the descriptor carries
 *   ciphertext, so neither direct writes nor reading it apply; the busy-poll window keeps the event loop hot
 *   instead, see SocketIO.keepHot).
 * - Any protocol violation the spec allows us to survive gets an error reply; the rest (bad magic, bad client
 *   flags, absurd lengths, a failed TLS handshake) closes this connection only, never the server.
 * - Server shutdown: a connection still in the handshake is closed; one in transmission executes the requests it
 *   has received, then ends.
 * - `host.closed(this)` is called exactly once, when the connection's socket has closed.
 */
import type { Socket } from 'node:net';
import type { OpenExport } from './export.js';
import { greeting, Handshake, type HandshakeHost } from './handshake.js';
import { type IoOwner, SocketIO } from './socket-io.js';
import { type NbdTlsOptions, upgradeToTls } from './tls.js';
import { Transmission, type TransmissionHost } from './transmission.js';

export { FAST_IO_AVAILABLE } from './socket-io.js';

export interface ConnectionHost extends HandshakeHost, TransmissionHost {
  closed(conn: Connection): void;
  /** Use 'data' events and socket.write only (the portable path; tests cover both). */
  readonly portableIO?: boolean;
  /** Busy-poll window after answering, in microseconds (0: off; see SocketIO.poll). */
  readonly busyPollMicros: number;
  /** TLS credentials and policy (absent: tlsMode is off). */
  readonly tls?: NbdTlsOptions;
  /** Milliseconds from accept to the transmission phase before the connection is dropped. */
  readonly handshakeTimeoutMs: number;
  /** Reply bytes a connection may queue before its input is paused (SocketIO maxQueuedBytes). */
  readonly maxQueuedBytes: number;
}

export class Connection {
  private readonly host: ConnectionHost;
  private io: SocketIO;
  private readonly handshake: Handshake;
  private tx: Transmission | null = null;
  private readonly owner: IoOwner;
  private deadline: NodeJS.Timeout | null;
  private gone = false;

  constructor(socket: Socket, host: ConnectionHost) {
    this.host = host;
    this.owner = {
      step: () => (this.tx ? this.tx.step() : this.handshake.step()),
      closed: () => this.closed(),
      log: (msg) => host.log(msg),
    };
    this.io = new SocketIO(socket, this.owner, {
      portable: host.portableIO === true,
      busyPollMicros: host.busyPollMicros,
      maxQueuedBytes: host.maxQueuedBytes,
    });
    this.handshake = new Handshake(
      this.io,
      host,
      (exp, structured, statusOk) => this.enter(exp, structured, statusOk),
      () => this.startTls(),
    );
    this.deadline = setTimeout(() => {
      this.deadline = null;
      if (this.tx || this.io.closed) return;
      host.log(`nbd: handshake not finished within ${host.handshakeTimeoutMs} ms: connection closed`);
      this.io.destroy();
    }, host.handshakeTimeoutMs);
    this.deadline.unref();
    socket.write(greeting());
  }

  /** The connection's socket (a TLSSocket after STARTTLS). */
  get socket(): Socket {
    return this.io.socket;
  }

  get requests(): number {
    return this.tx?.requests ?? 0;
  }

  get inTransmission(): boolean {
    return this.tx !== null && !this.io.closed;
  }

  /** Reply bytes queued for this client and not yet taken by it. */
  get queuedBytes(): number {
    return this.io.queuedBytes;
  }

  /** The connection keeps the event loop hot after answering (SocketIO.keepHot: TLS, portable I/O). */
  get hot(): boolean {
    return this.io.hot;
  }

  /** Server shutdown: finish requests already received, then end the connection. */
  shutdown(): void {
    if (this.io.closed) {
      if (!this.tx) this.io.socket.destroy(); // between STARTTLS and the TLS socket, or ending
      return;
    }
    if (!this.tx) this.io.destroy();
    else this.io.endAfterBuffered();
  }

  destroy(): void {
    this.io.destroy();
  }

  private closed(): void {
    if (this.gone) return;
    this.gone = true;
    if (this.deadline) clearTimeout(this.deadline);
    this.deadline = null;
    this.host.closed(this);
  }

  private enter(exp: OpenExport, structured: boolean, statusOk: boolean): void {
    if (this.deadline) clearTimeout(this.deadline);
    this.deadline = null;
    this.tx = new Transmission(this.io, this.host, exp, structured, statusOk);
    this.io.pollReady = true;
    // No spin while asynchronous requests (a RADOS pool's) are in flight on the server: their completions come
    // through the event loop. RADOS reads at queue depth 16: 8.7-12.6k op/s spinning, 11.9-15.5k not (docs/rados.md).
    this.io.mayPoll = () => this.host.asyncInFlight === 0;
  }

  /** The ACK to STARTTLS is queued: send it, let go of the plain socket, and continue over TLS. */
  private startTls(): void {
    const plain = this.io;
    const t = this.host.tls;
    plain.flush();
    if (!t || plain.avail() > 0) {
      // The client sent more before reading the ACK (the spec forbids it): the bytes cannot be TLS for us.
      plain.destroy();
      return;
    }
    plain.detach();
    const socket = plain.socket;
    // Upgrade once the read that brought STARTTLS has returned (and stopped reading on the handle).
    setImmediate(() => {
      if (socket.destroyed || this.host.shuttingDown) {
        socket.destroy();
        this.closed();
        return;
      }
      let up: ReturnType<typeof upgradeToTls> | null = null;
      up = upgradeToTls(
        socket,
        t,
        () => {
          this.handshake.identity = up?.identity() ?? null;
        },
        (why) => this.host.log(`nbd: TLS handshake failed: ${why}`),
      );
      this.io = new SocketIO(up.socket, this.owner, {
        portable: this.host.portableIO === true,
        plainDescriptor: false,
        busyPollMicros: this.host.busyPollMicros,
        maxQueuedBytes: this.host.maxQueuedBytes,
      });
      this.handshake.tlsStarted(this.io);
    });
  }
}
