/**
 * The handshake of one NBD connection (fixed newstyle): the client's flags, then option haggling until the
 * client picks an export (EXPORT_NAME, GO) or leaves (ABORT).
 *
 * Contract and invariants:
 * - Reads whole records from the SocketIO input (client flags: 4 bytes; an option: 16-byte header and its data,
 *   at most MAX_OPTION_DATA) and queues the replies there; replies to pipelined options go out in order.
 * - Every option gets exactly one final reply (ACK or an error), except EXPORT_NAME, which the spec answers with
 *   export data or a closed connection. Errors the spec lets us survive are answered with REP_ERR_*; bad magic,
 *   bad client flags and oversized option data close this connection only.
 * - While the server shuts down every option but ABORT is answered REP_ERR_SHUTDOWN.
 * - TLS (tlsMode): `off` answers STARTTLS REP_ERR_POLICY (NOTLS); `on` acknowledges it and the owner upgrades
 *   the socket (`startTls`, then `tlsStarted` with the new io); `require` (FORCEDTLS) also answers every other
 *   option but ABORT with REP_ERR_TLS_REQD until TLS is up, and closes on EXPORT_NAME, so no export is listed,
 *   described or opened in plain text. A second STARTTLS, or one with data, is REP_ERR_INVALID. Meta context
 *   selections made before TLS are forgotten (the spec forbids carrying per-export state across).
 * - Exports are resolved for the client's PSK identity (`identity`), so an identity limited to some exports
 *   neither sees nor opens the others.
 * - `entered(exp, structured, statusOk)` is called once, when an export is opened for transmission; nothing
 *   is parsed here afterwards (`done`).
 */
import * as C from './constants.js';
import type { OpenExport } from './export.js';
import type { SocketIO } from './socket-io.js';
import { transmissionFlags } from './transmission.js';

/** What the handshake needs from the server. */
export interface HandshakeHost {
  readonly shuttingDown: boolean;
  /**
   * Resolve an export name ("" = default) for a client (`identity`: its PSK identity, null for none); null
   * when there is no such export or this client may not use it.
   */
  resolve(name: string, identity: string | null): OpenExport | null;
  /** The export names this client may see. */
  exportNames(identity: string | null): string[];
  log(msg: string): void;
  /** off: STARTTLS refused; on: offered; require: nothing but STARTTLS (and ABORT) before TLS (FORCEDTLS). */
  readonly tlsMode: 'off' | 'on' | 'require';
}

/** Called when the client has chosen an export and the transmission phase begins. */
export type EnterTransmission = (exp: OpenExport, structured: boolean, statusOk: boolean) => void;

/** The greeting the server sends first: fixed newstyle, and no zeroes after EXPORT_NAME if the client agrees. */
export function greeting(): Buffer {
  const g = Buffer.alloc(18);
  g.writeBigUInt64BE(C.NBDMAGIC, 0);
  g.writeBigUInt64BE(C.IHAVEOPT, 8);
  g.writeUInt16BE(C.FLAG_FIXED_NEWSTYLE | C.FLAG_NO_ZEROES, 16);
  return g;
}

export class Handshake {
  /** An export was entered: the transmission phase owns the input from here on. */
  done = false;
  private gotFlags = false;
  private noZeroes = false;
  private structured = false;
  /** Export name given to the last SET_META_CONTEXT, and whether base:allocation was selected. */
  private meta: { exportName: string; selected: boolean } | null = null;
  /** TLS is running on this connection (after STARTTLS). */
  private secure = false;
  /** The client's PSK identity once TLS is up (null: none, or X.509). */
  identity: string | null = null;

  constructor(
    /** Where options are read and answered: replaced by the TLS one after STARTTLS. */
    public io: SocketIO,
    private readonly host: HandshakeHost,
    private readonly entered: EnterTransmission,
    /** STARTTLS acknowledged: the owner upgrades the socket and hands back a new io (tlsStarted). */
    private readonly startTls: () => void,
  ) {}

  /** TLS is up on a new io: continue the option haggling there. Per-export state from before TLS is dropped. */
  tlsStarted(io: SocketIO): void {
    this.io = io;
    this.secure = true;
    this.meta = null;
  }

  /** Parse and answer one record (the client flags or one option); false when more input is needed. */
  step(): boolean {
    const io = this.io;
    const b = io.input;
    const p = io.pos;
    if (!this.gotFlags) {
      if (io.avail() < 4) return false;
      const flags = b.readUInt32BE(p);
      io.pos += 4;
      if ((flags & ~(C.FLAG_C_FIXED_NEWSTYLE | C.FLAG_C_NO_ZEROES)) !== 0) {
        io.destroy();
        return false;
      }
      this.noZeroes = (flags & C.FLAG_C_NO_ZEROES) !== 0;
      this.gotFlags = true;
      return true;
    }
    if (io.avail() < 16) return false;
    if (b.readUInt32BE(p) !== C.IHAVEOPT_HI || b.readUInt32BE(p + 4) !== C.IHAVEOPT_LO) {
      io.destroy();
      return false;
    }
    const code = b.readUInt32BE(p + 8);
    const len = b.readUInt32BE(p + 12);
    if (len > C.MAX_OPTION_DATA) {
      io.destroy();
      return false;
    }
    if (io.avail() < 16 + len) return false;
    const data = b.subarray(p + 16, p + 16 + len);
    io.pos += 16 + len;
    this.option(code, data);
    return true;
  }

  private optReply(code: number, type: number, payload: Buffer | null = null): void {
    const len = payload ? payload.length : 0;
    const h = Buffer.allocUnsafe(20 + len);
    h.writeUInt32BE(C.OPTION_REPLY_MAGIC_HI, 0);
    h.writeUInt32BE(C.OPTION_REPLY_MAGIC_LO, 4);
    h.writeUInt32BE(code, 8);
    h.writeUInt32BE(type >>> 0, 12);
    h.writeUInt32BE(len, 16);
    if (payload) payload.copy(h, 20);
    this.io.push(h);
  }

  private optError(code: number, type: number, msg: string): void {
    this.optReply(code, type, Buffer.from(msg, 'utf8'));
  }

  private option(code: number, data: Buffer): void {
    if (this.host.shuttingDown && code !== C.OPT_ABORT) {
      this.optError(code, C.REP_ERR_SHUTDOWN, 'server is shutting down');
      return;
    }
    if (this.host.tlsMode === 'require' && !this.secure && code !== C.OPT_STARTTLS && code !== C.OPT_ABORT) {
      // FORCEDTLS: nothing is listed, described or opened in plain text. EXPORT_NAME cannot be refused with an
      // error reply, so the connection is closed.
      if (code === C.OPT_EXPORT_NAME) return this.io.destroy();
      return this.optError(code, C.REP_ERR_TLS_REQD, 'TLS is required: send STARTTLS first');
    }
    switch (code) {
      case C.OPT_EXPORT_NAME:
        return this.exportName(data);
      case C.OPT_ABORT:
        this.optReply(code, C.REP_ACK);
        this.io.end();
        return;
      case C.OPT_LIST: {
        if (data.length !== 0) return this.optError(code, C.REP_ERR_INVALID, 'LIST takes no data');
        let names: string[];
        try {
          names = this.host.exportNames(this.identity);
        } catch (e) {
          return this.optError(code, C.REP_ERR_UNSUP, `cannot list exports: ${(e as Error).message}`);
        }
        for (const n of names) {
          const nb = Buffer.from(n, 'utf8');
          const p = Buffer.allocUnsafe(4 + nb.length);
          p.writeUInt32BE(nb.length, 0);
          nb.copy(p, 4);
          this.optReply(code, C.REP_SERVER, p);
        }
        return this.optReply(code, C.REP_ACK);
      }
      case C.OPT_STARTTLS:
        if (this.host.tlsMode === 'off') return this.optError(code, C.REP_ERR_POLICY, 'TLS is not supported');
        if (this.secure) return this.optError(code, C.REP_ERR_INVALID, 'TLS is already running');
        if (data.length !== 0) return this.optError(code, C.REP_ERR_INVALID, 'STARTTLS takes no data');
        this.optReply(code, C.REP_ACK);
        return this.startTls();
      case C.OPT_INFO:
      case C.OPT_GO:
        return this.infoGo(code, data);
      case C.OPT_STRUCTURED_REPLY:
        if (data.length !== 0) return this.optError(code, C.REP_ERR_INVALID, 'STRUCTURED_REPLY takes no data');
        if (this.structured) return this.optError(code, C.REP_ERR_INVALID, 'structured replies already negotiated');
        this.structured = true;
        return this.optReply(code, C.REP_ACK);
      case C.OPT_LIST_META_CONTEXT:
      case C.OPT_SET_META_CONTEXT:
        return this.metaContext(code, data);
      default:
        // PEEK_EXPORT, EXTENDED_HEADERS and every unknown option.
        return this.optError(code, C.REP_ERR_UNSUP, `option ${code} is not supported`);
    }
  }

  private open(name: string): OpenExport | null {
    try {
      return this.host.resolve(name, this.identity);
    } catch (e) {
      this.host.log(`nbd: cannot open export "${name}": ${(e as Error).message}`);
      return null;
    }
  }

  private exportName(data: Buffer): void {
    if (data.length > C.MAX_STRING) return this.io.destroy();
    const exp = this.open(data.toString('utf8'));
    if (!exp) return this.io.destroy();
    const reply = Buffer.alloc(this.noZeroes ? 10 : 134);
    reply.writeBigUInt64BE(BigInt(exp.size), 0);
    reply.writeUInt16BE(transmissionFlags(exp, this.structured), 8);
    this.io.push(reply);
    this.enter(exp);
  }

  private enter(exp: OpenExport): void {
    const statusOk = this.structured && this.meta !== null && this.meta.selected && this.open(this.meta.exportName)?.name === exp.name;
    this.done = true;
    this.entered(exp, this.structured, statusOk);
  }

  private infoGo(code: number, data: Buffer): void {
    if (data.length < 6) return this.optError(code, C.REP_ERR_INVALID, 'option data too short');
    const nameLen = data.readUInt32BE(0);
    if (nameLen > data.length - 6 || nameLen > C.MAX_STRING) return this.optError(code, C.REP_ERR_INVALID, 'bad name length');
    const name = data.toString('utf8', 4, 4 + nameLen);
    const k = data.readUInt16BE(4 + nameLen);
    if (data.length !== 6 + nameLen + 2 * k) return this.optError(code, C.REP_ERR_INVALID, 'bad information request count');
    const wanted = new Set<number>();
    for (let i = 0; i < k; i++) wanted.add(data.readUInt16BE(6 + nameLen + 2 * i));
    const exp = this.open(name);
    if (!exp) return this.optError(code, C.REP_ERR_UNKNOWN, `export "${name}" not present`);
    const info = Buffer.allocUnsafe(12);
    info.writeUInt16BE(C.INFO_EXPORT, 0);
    info.writeBigUInt64BE(BigInt(exp.size), 2);
    info.writeUInt16BE(transmissionFlags(exp, this.structured), 10);
    this.optReply(code, C.REP_INFO, info);
    if (wanted.has(C.INFO_NAME)) {
      const nb = Buffer.from(exp.name, 'utf8');
      const p = Buffer.allocUnsafe(2 + nb.length);
      p.writeUInt16BE(C.INFO_NAME, 0);
      nb.copy(p, 2);
      this.optReply(code, C.REP_INFO, p);
    }
    const bsz = Buffer.allocUnsafe(14);
    bsz.writeUInt16BE(C.INFO_BLOCK_SIZE, 0);
    bsz.writeUInt32BE(C.MIN_BLOCK, 2);
    bsz.writeUInt32BE(C.PREFERRED_BLOCK, 6);
    bsz.writeUInt32BE(C.MAX_PAYLOAD, 10);
    this.optReply(code, C.REP_INFO, bsz);
    this.optReply(code, C.REP_ACK);
    if (code === C.OPT_GO) this.enter(exp);
  }

  private metaContext(code: number, data: Buffer): void {
    const set = code === C.OPT_SET_META_CONTEXT;
    if (set) this.meta = null; // every SET replaces the selection, even a failed one
    if (!this.structured) return this.optError(code, C.REP_ERR_INVALID, 'structured replies not negotiated');
    if (data.length < 8) return this.optError(code, C.REP_ERR_INVALID, 'option data too short');
    const nameLen = data.readUInt32BE(0);
    if (nameLen > data.length - 8 || nameLen > C.MAX_STRING) return this.optError(code, C.REP_ERR_INVALID, 'bad name length');
    const name = data.toString('utf8', 4, 4 + nameLen);
    const nq = data.readUInt32BE(4 + nameLen);
    let p = 8 + nameLen;
    const queries: string[] = [];
    for (let i = 0; i < nq; i++) {
      if (p + 4 > data.length) return this.optError(code, C.REP_ERR_INVALID, 'query count past the end');
      const ql = data.readUInt32BE(p);
      if (ql > data.length - p - 4 || ql > C.MAX_STRING) return this.optError(code, C.REP_ERR_INVALID, 'query length past the end');
      queries.push(data.toString('utf8', p + 4, p + 4 + ql));
      p += 4 + ql;
    }
    if (p !== data.length) return this.optError(code, C.REP_ERR_INVALID, 'trailing option data');
    const exp = this.open(name);
    if (!exp) return this.optError(code, C.REP_ERR_UNKNOWN, `export "${name}" not present`);
    const match = set
      ? queries.includes(C.BASE_ALLOCATION)
      : queries.length === 0 || queries.some((q) => q === 'base:' || q === C.BASE_ALLOCATION);
    if (match) {
      const nb = Buffer.from(C.BASE_ALLOCATION, 'utf8');
      const r = Buffer.allocUnsafe(4 + nb.length);
      r.writeUInt32BE(set ? C.BASE_ALLOCATION_ID : 0, 0);
      nb.copy(r, 4);
      this.optReply(code, C.REP_META_CONTEXT, r);
    }
    if (set) this.meta = { exportName: name, selected: match };
    this.optReply(code, C.REP_ACK);
  }
}
