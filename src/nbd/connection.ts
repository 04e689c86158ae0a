/**
 * One NBD client connection: the socket plumbing (socket-io.ts) driven by the handshake (handshake.ts) and
 * then the transmission phase (transmission.ts).
 *
 * Contract and invariants:
 * - The server's greeting is sent at once; input is parsed by the handshake until it enters an export, then by
 *   the transmission phase for the rest of the connection. Busy-polling is allowed in the transmission phase only.
 * - Any protocol violation the spec allows us to survive gets an error reply; the rest (bad magic, bad client
 *   flags, absurd lengths) closes this connection only, never the server.
 * - Server shutdown: a connection still in the handshake is closed; one in transmission executes the requests it
 *   has received, then ends.
 * - `host.closed(this)` is called exactly once, when the socket has closed.
 */
import type { Socket } from 'node:net';
import type { OpenExport } from './export.js';
import { greeting, Handshake, type HandshakeHost } from './handshake.js';
import { SocketIO } from './socket-io.js';
import { Transmission, type TransmissionHost } from './transmission.js';

export { FAST_IO_AVAILABLE } from './socket-io.js';

export interface ConnectionHost extends HandshakeHost, TransmissionHost {
  closed(conn: Connection): void;
  /** Use 'data' events and socket.write only (the portable path; tests cover both). */
  readonly portableIO?: boolean;
  /** Busy-poll window after answering, in microseconds (0: off; see SocketIO.poll). */
  readonly busyPollMicros: number;
}

export class Connection {
  readonly socket: Socket;
  private readonly host: ConnectionHost;
  private readonly io: SocketIO;
  private readonly handshake: Handshake;
  private tx: Transmission | null = null;

  constructor(socket: Socket, host: ConnectionHost) {
    this.socket = socket;
    this.host = host;
    this.io = new SocketIO(socket, {
      step: () => (this.tx ? this.tx.step() : this.handshake.step()),
      closed: () => host.closed(this),
      log: (msg) => host.log(msg),
    }, { portable: host.portableIO === true, busyPollMicros: host.busyPollMicros });
    this.handshake = new Handshake(this.io, host, (exp, structured, statusOk) => this.enter(exp, structured, statusOk));
    socket.write(greeting());
  }

  get requests(): number {
    return this.tx?.requests ?? 0;
  }

  get inTransmission(): boolean {
    return this.tx !== null && !this.io.closed;
  }

  /** Server shutdown: finish requests already received, then end the connection. */
  shutdown(): void {
    if (this.io.closed) return;
    if (!this.tx) this.io.destroy();
    else this.io.endAfterBuffered();
  }

  destroy(): void {
    this.io.destroy();
  }

  private enter(exp: OpenExport, structured: boolean, statusOk: boolean): void {
    this.tx = new Transmission(this.io, this.host, exp, structured, statusOk);
    this.io.pollReady = true;
  }
}
