/**
 * One NBD client connection: fixed-newstyle handshake, then the transmission phase.
 *
 * The engine is synchronous, so every complete request found in the input is executed as soon as it is
 * parsed and its reply queued; the replies of one batch of input go out together. Input is paused while the
 * socket's output backlog is large. Any protocol violation the spec allows us to survive gets an error reply;
 * the rest (bad magic, bad client flags, absurd lengths) closes this connection only.
 *
 * I/O, per request (see docs/nbd.md, "Where the time goes"):
 * - Input is read by the socket straight into this connection's input buffer (Node's `onread` user buffer:
 *   no buffer allocated per read, no readable-stream machinery); the payload of a large WRITE is read straight
 *   into a buffer of its own and written to the volume with one call. Where that hook is missing, or with
 *   portableIO, 'data' events are copied into the same buffers (`onData`).
 * - Replies are written with one synchronous write/writev on the socket's descriptor when nothing is queued in
 *   the socket; what the kernel does not take (EAGAIN, partial write) goes through socket.write as before.
 * - After answering, the descriptor is polled for a short, bounded window before the connection goes back to
 *   the event loop (`poll`): a queue-depth-1 client's next request is read without an epoll wake-up.
 */
import { readSync, writeSync, writevSync } from 'node:fs';
import net, { type Socket } from 'node:net';
import * as C from './constants.js';
import { giveBuffer, takeBuffer } from './buffers.js';
import { nbdErrno, OpenExport } from './export.js';

export interface ConnectionHost {
  readonly shuttingDown: boolean;
  /** Resolve an export name ("" = default); null when there is no such export. */
  resolve(name: string): OpenExport | null;
  exportNames(): string[];
  log(msg: string): void;
  closed(conn: Connection): void;
  /** Counts every transmission request parsed (statistics). */
  counted(): void;
  /** Use 'data' events and socket.write only (the portable path; tests cover both). */
  readonly portableIO?: boolean;
  /** Busy-poll window after answering, in microseconds (0: off; see Connection.poll). */
  readonly busyPollMicros: number;
}

type State = 'flags' | 'options' | 'tx' | 'closed';

/** Pause input while more than this many reply bytes wait in the socket. */
const OUTPUT_HIGH = 16 * 1024 * 1024;
/** Most blocks one BLOCK_STATUS request scans (the client re-asks from where the reply ended). */
const STATUS_MAX_BLOCKS = 1 << 16;
/** Replies of one batch totalling at most this are copied into one buffer and sent with one write (stream path). */
const GATHER_BYTES = 128 * 1024;
/** Size of a connection's input buffer: holds any option (64 KiB) and any WRITE up to DIRECT_PAYLOAD whole. */
const INPUT_BYTES = 256 * 1024;
/** WRITE payloads larger than this that have not fully arrived are read straight into a buffer of their own. */
const DIRECT_PAYLOAD = 64 * 1024;
/** The input buffer always offers the socket at least this much room. */
const MIN_ROOM = 16 * 1024;
/** Where the socket reads the next bytes into. */
const INTO_INPUT = 0;
const INTO_PAYLOAD = 1;
const INTO_DISCARD = 2;

/** Node's symbols behind net.Socket's `onread` option, found once (absent: the 'data' event path is used). */
const userBufferKeys = ((): { buf: symbol; cb: symbol; gen: symbol } | null => {
  try {
    const probe = new net.Socket();
    const syms = Object.getOwnPropertySymbols(probe);
    const find = (d: string) => syms.find((x) => x.description === d);
    const buf = find('kBuffer');
    const cb = find('kBufferCb');
    const gen = find('kBufferGen');
    probe.destroy();
    return buf && cb && gen ? { buf, cb, gen } : null;
  } catch {
    return null;
  }
})();
/** Whether this Node exposes the user-buffer input hook (the fast path; tests assert it on supported versions). */
export const FAST_IO_AVAILABLE = userBufferKeys !== null;

interface SocketHandle {
  fd?: number;
  reading?: boolean;
  useUserBuffer?: (b: Uint8Array) => void;
  readStart?: () => number;
}

/** The libuv handle behind a net.Socket (Node internal `_handle`; undefined once closed). */
function socketHandle(socket: Socket): SocketHandle | undefined {
  return (socket as unknown as { _handle?: SocketHandle | null })._handle ?? undefined;
}

/** Nagle off (default) or on: NBD_NODELAY=0 (for experiments). */
const NO_DELAY = process.env.NBD_NODELAY !== '0';
/** A poll loop returns to the event loop after this long at most, so other connections are served. */
const POLL_BUDGET_NS = 1_000_000n;

const TX_BASE_FLAGS = C.TX_HAS_FLAGS | C.TX_SEND_FLUSH | C.TX_SEND_FUA | C.TX_SEND_TRIM | C.TX_SEND_WRITE_ZEROES
  | C.TX_CAN_MULTI_CONN | C.TX_SEND_CACHE | C.TX_SEND_FAST_ZERO;

/** A WRITE whose payload is still arriving (larger than DIRECT_PAYLOAD, or one being discarded). */
interface PendingWrite {
  flags: number;
  hi: number;
  lo: number;
  offset: number;
  length: number;
  /**
   * Where the payload is received (its first `length` bytes, of which `got` have arrived): a pool buffer,
   * handed back once written; null when the payload is only discarded.
   */
  buf: Buffer | null;
  got: number;
  error: number;
}

export class Connection {
  readonly socket: Socket;
  private readonly host: ConnectionHost;
  private state: State = 'flags';
  /** Input: bytes [pos, fill) of `input` are received and not yet parsed. */
  private input: Buffer;
  private pos = 0;
  private fill = 0;
  /** What the socket reads into next (INTO_*), as last handed to it. */
  private into = INTO_INPUT;
  /** The socket's descriptor for synchronous reply writes; -1: use socket.write. */
  private fd = -1;
  /** Input arrives through the user-buffer hook (onRead), not 'data' events. */
  private userBuffer = false;
  /** Inside poll(): reads found there must not start another poll. */
  private polling = false;
  private readonly pollNs: bigint;
  private noZeroes = false;
  private structured = false;
  /** Export name given to the last SET_META_CONTEXT, and whether base:allocation was selected. */
  private meta: { exportName: string; selected: boolean } | null = null;
  private exp: OpenExport | null = null;
  private statusOk = false;
  private pendingWrite: PendingWrite | null = null;
  private out: Buffer[] = [];
  private outBytes = 0;
  /** Pooled buffers behind some of `out` (handed back once written). */
  private outPooled: Buffer[] = [];
  private blocked = false;
  /** DISC received or the server is shutting down: execute what is buffered, then end. */
  private ending = false;
  private reqs = 0;

  constructor(socket: Socket, host: ConnectionHost) {
    this.socket = socket;
    this.host = host;
    socket.setNoDelay(NO_DELAY);
    this.input = Buffer.allocUnsafeSlow(INPUT_BYTES);
    this.pollNs = BigInt(Math.round(host.busyPollMicros * 1000));
    const keys = host.portableIO ? null : userBufferKeys;
    const handle = socketHandle(socket);
    if (keys && handle && typeof handle.useUserBuffer === 'function' && typeof handle.readStart === 'function') {
      // What net.Socket's constructor does for the `onread` option (which net.Server cannot pass to the
      // sockets it accepts): reads land in our buffer, the callback sees how many bytes, and the buffer for
      // the next read is what the generator returns after each callback.
      const s = socket as unknown as Record<symbol, unknown>;
      s[keys.cb] = (n: number) => this.onRead(n);
      s[keys.gen] = () => this.nextTarget();
      s[keys.buf] = this.input;
      handle.useUserBuffer(this.input);
      this.userBuffer = true;
    } else {
      socket.on('data', (chunk: Buffer) => this.onData(chunk));
    }
    if (!host.portableIO && handle && typeof handle.fd === 'number' && handle.fd >= 0) this.fd = handle.fd;
    socket.on('error', () => { /* EPIPE / ECONNRESET: the 'close' event follows */ });
    socket.on('end', () => this.onEnd());
    socket.on('close', () => this.onClose());
    socket.on('drain', () => this.onDrain());
    const greeting = Buffer.alloc(18);
    greeting.writeBigUInt64BE(C.NBDMAGIC, 0);
    greeting.writeBigUInt64BE(C.IHAVEOPT, 8);
    greeting.writeUInt16BE(C.FLAG_FIXED_NEWSTYLE | C.FLAG_NO_ZEROES, 16);
    socket.write(greeting);
  }

  get requests(): number {
    return this.reqs;
  }

  get inTransmission(): boolean {
    return this.state === 'tx';
  }

  /** Server shutdown: finish requests already received, then end the connection. */
  shutdown(): void {
    if (this.state === 'closed') return;
    if (this.state !== 'tx') {
      this.destroy();
      return;
    }
    this.ending = true;
    if (!this.blocked) this.finish();
  }

  destroy(): void {
    if (this.state === 'closed') {
      this.socket.destroy(); // ending already: do not wait for the client any longer
      return;
    }
    this.state = 'closed';
    this.pos = this.fill = 0;
    this.pendingWrite = null;
    this.out = [];
    this.socket.destroy();
  }

  private onEnd(): void {
    // Client EOF (fio and nbdfuse close without DISC): a partial request is dropped, never applied.
    if (this.state === 'closed') return;
    this.pendingWrite = null;
    this.flush();
    this.state = 'closed';
    this.socket.end();
  }

  private onClose(): void {
    this.state = 'closed';
    this.pos = this.fill = 0;
    this.fd = -1;
    this.pendingWrite = null;
    this.out = [];
    this.host.closed(this);
  }

  private onDrain(): void {
    if (!this.blocked || this.state === 'closed') return;
    this.blocked = false;
    this.run();
    if (!this.blocked) {
      if (this.ending) this.finish();
      else this.resumeInput();
    }
  }

  /**
   * Start reading again after output backed up. With the user-buffer hook, onRead returning false made Node
   * stop reading on the handle; restart it on the handle itself rather than through socket.resume(), whose
   * effect depends on readable-stream state that this path never feeds.
   */
  private resumeInput(): void {
    if (!this.userBuffer) {
      this.socket.resume();
      return;
    }
    const h = socketHandle(this.socket);
    if (h && h.reading === false && typeof h.readStart === 'function') {
      h.reading = true;
      const err = h.readStart();
      if (err) this.destroy();
    }
  }

  /** User-buffer input: n bytes were read into what nextTarget() last returned. */
  private onRead(n: number): boolean {
    this.received(n);
    if (this.pollNs > 0n && !this.polling) this.poll();
    return !this.blocked;
  }

  private received(n: number): void {
    if (this.state === 'closed' || this.ending) return;
    const w = this.pendingWrite;
    if (this.into === INTO_INPUT) this.fill += n;
    else if (w) w.got += n; // INTO_PAYLOAD, INTO_DISCARD: bytes of this payload only
    this.run();
  }

  /**
   * After answering, keep reading the descriptor for a short window before going back to the event loop.
   * A client at queue depth 1 sends its next request a few microseconds after our reply; sleeping in epoll in
   * between costs a cross-CPU wake-up of an idle vCPU per request, which here is most of a request's latency.
   * The loop is bounded (the window without input, POLL_BUDGET_NS in all) and only runs in the transmission
   * phase with nothing queued in the socket, so other connections wait at most the budget. The price is server
   * CPU: up to one window per request, spent spinning (docs/nbd.md, "Speed").
   */
  private poll(): void {
    if (this.fd < 0 || this.state !== 'tx') return;
    this.polling = true;
    const start = process.hrtime.bigint();
    let last = start;
    try {
      for (;;) {
        if (this.state !== 'tx' || this.ending || this.blocked || this.socket.writableLength > 0) return;
        const now = process.hrtime.bigint();
        if (now - last > this.pollNs || now - start > POLL_BUDGET_NS) return;
        const target = this.nextTarget();
        let n: number;
        try {
          n = readSync(this.fd, target, 0, target.length, null);
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === 'EAGAIN' || code === 'EWOULDBLOCK') continue;
          return; // errors and resets: the socket's own read reports them
        }
        if (n === 0) return; // end of input: the socket's own read sees it too
        this.received(n);
        last = process.hrtime.bigint();
      }
    } finally {
      this.polling = false;
    }
  }

  /**
   * The buffer the socket reads into next, asked after every read. Only here may the input be compacted:
   * between reads (on 'drain') the socket still holds the last buffer returned.
   */
  private nextTarget(): Buffer {
    const w = this.pendingWrite;
    if (w && w.got < w.length && this.pos === this.fill) {
      this.pos = this.fill = 0;
      if (w.buf) {
        this.into = INTO_PAYLOAD;
        return w.buf.subarray(w.got, w.length);
      }
      this.into = INTO_DISCARD;
      return this.input.subarray(0, Math.min(this.input.length, w.length - w.got));
    }
    this.into = INTO_INPUT;
    this.compact();
    return this.input.subarray(this.fill);
  }

  /** Move the unparsed input to the front; grow the buffer when it still leaves less than MIN_ROOM free. */
  private compact(): void {
    const left = this.fill - this.pos;
    if (this.pos > 0) {
      if (left > 0) this.input.copyWithin(0, this.pos, this.fill);
      this.pos = 0;
      this.fill = left;
    }
    if (this.input.length - this.fill < MIN_ROOM) {
      const b = Buffer.allocUnsafeSlow(Math.max(INPUT_BYTES, 2 * this.input.length));
      this.input.copy(b, 0, 0, this.fill);
      this.input = b;
    }
  }

  /** Stream input (portableIO, or no user-buffer hook): the chunk is copied where a user-buffer read would put it. */
  private onData(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && this.state !== 'closed' && !this.ending) {
      const target = this.nextTarget();
      const k = this.blocked ? chunk.length - at : Math.min(target.length, chunk.length - at);
      if (this.blocked && this.input.length - this.fill < k) {
        // Paused with output backed up: keep the rest of this chunk for after 'drain'.
        const b = Buffer.allocUnsafeSlow(this.fill + k);
        this.input.copy(b, 0, 0, this.fill);
        this.input = b;
      }
      chunk.copy(this.blocked ? this.input : target, this.blocked ? this.fill : 0, at, at + k);
      at += k;
      if (this.blocked) this.fill += k;
      else this.onRead(k);
    }
    if (this.blocked) this.socket.pause();
  }

  /** Process buffered input until it runs out, the connection closes, or output backs up. */
  private run(): void {
    try {
      while (this.state !== 'closed' && !this.blocked) {
        if (!this.step()) break;
        if (this.socket.writableLength + this.outBytes > OUTPUT_HIGH) {
          this.flush();
          // Block only while the socket holds a backlog it will report draining: what flush() handed to the
          // kernel directly is gone, and a 'drain' that never comes would stall this connection for good.
          if (this.socket.writableNeedDrain) this.blocked = true;
        }
      }
    } catch (e) {
      this.host.log(`nbd: connection dropped after an internal error: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
      this.destroy();
    } finally {
      this.flush();
    }
    if (this.ending && !this.blocked && this.state !== 'closed') this.finish();
  }

  private finish(): void {
    if (this.state === 'closed') return;
    this.flush();
    this.state = 'closed';
    this.socket.end();
    // A client that never closes its side must not hold the server.
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  private avail(): number {
    return this.fill - this.pos;
  }

  private push(b: Buffer): void {
    this.out.push(b);
    this.outBytes += b.length;
  }

  /** Send the queued replies with as few socket writes as possible (one write per batch of input). */
  private flush(): void {
    const out = this.out;
    if (out.length === 0) return;
    const bytes = this.outBytes;
    const pooled = this.outPooled;
    this.out = [];
    this.outBytes = 0;
    this.outPooled = [];
    const sock = this.socket;
    if (sock.destroyed) return;
    let from = 0;
    if (this.fd >= 0 && sock.writableLength === 0) {
      // Nothing queued in the socket: hand the replies to the kernel now, in one system call.
      let n = 0;
      try {
        n = out.length === 1 ? writeSync(this.fd, out[0]) : writevSync(this.fd, out);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK') {
          // EPIPE, ECONNRESET: the peer is gone ('close' follows).
          sock.destroy();
          return;
        }
      }
      if (n === bytes) {
        for (const b of pooled) giveBuffer(b);
        return;
      }
      // The kernel took part: the rest goes through the socket, which waits for room.
      while (n >= out[from].length) n -= out[from++].length;
      if (n > 0) out[from] = out[from].subarray(n);
    }
    if (pooled.length > 0 || bytes > GATHER_BYTES) {
      sock.cork();
      for (let i = from; i < out.length - 1; i++) sock.write(out[i]);
      if (pooled.length > 0) sock.write(out[out.length - 1], () => { for (const b of pooled) giveBuffer(b); });
      else sock.write(out[out.length - 1]);
      sock.uncork();
    } else if (from === out.length - 1) sock.write(out[from]);
    else sock.write(Buffer.concat(from === 0 ? out : out.slice(from)));
  }

  /** One parsing step; false when more input is needed. */
  private step(): boolean {
    if (this.pendingWrite) return this.stepPayload();
    const b = this.input;
    const p = this.pos;
    switch (this.state) {
      case 'flags': {
        if (this.avail() < 4) return false;
        const flags = b.readUInt32BE(p);
        this.pos += 4;
        if ((flags & ~(C.FLAG_C_FIXED_NEWSTYLE | C.FLAG_C_NO_ZEROES)) !== 0) {
          this.destroy();
          return false;
        }
        this.noZeroes = (flags & C.FLAG_C_NO_ZEROES) !== 0;
        this.state = 'options';
        return true;
      }
      case 'options': {
        if (this.avail() < 16) return false;
        if (b.readUInt32BE(p) !== C.IHAVEOPT_HI || b.readUInt32BE(p + 4) !== C.IHAVEOPT_LO) {
          this.destroy();
          return false;
        }
        const code = b.readUInt32BE(p + 8);
        const len = b.readUInt32BE(p + 12);
        if (len > C.MAX_OPTION_DATA) {
          this.destroy();
          return false;
        }
        if (this.avail() < 16 + len) return false;
        const data = b.subarray(p + 16, p + 16 + len);
        this.pos += 16 + len;
        this.option(code, data);
        return true;
      }
      case 'tx': {
        if (this.avail() < 28) return false;
        if (b.readUInt32BE(p) !== C.REQUEST_MAGIC) {
          this.destroy();
          return false;
        }
        const flags = b.readUInt16BE(p + 4);
        const type = b.readUInt16BE(p + 6);
        // A small WRITE waits in the input buffer until its whole payload is there (no copy, one write).
        if (type === C.CMD_WRITE && this.avail() < 28 + b.readUInt32BE(p + 24) && b.readUInt32BE(p + 24) <= DIRECT_PAYLOAD) return false;
        const hi = b.readUInt32BE(p + 8);
        const lo = b.readUInt32BE(p + 12);
        const offHi = b.readUInt32BE(p + 16);
        const offset = offHi < 0x200000 ? offHi * 0x100000000 + b.readUInt32BE(p + 20) : Number.MAX_SAFE_INTEGER;
        const length = b.readUInt32BE(p + 24);
        this.pos += 28;
        this.reqs++;
        this.host.counted();
        if (type === C.CMD_WRITE) return this.startWrite(flags, hi, lo, offset, length);
        this.command(type, flags, hi, lo, offset, length);
        return (this.state as State) !== 'closed';
      }
      default:
        return false;
    }
  }

  // ---------------------------------------------------------------- handshake

  private optReply(code: number, type: number, payload: Buffer | null = null): void {
    const len = payload ? payload.length : 0;
    const h = Buffer.allocUnsafe(20 + len);
    h.writeUInt32BE(C.OPTION_REPLY_MAGIC_HI, 0);
    h.writeUInt32BE(C.OPTION_REPLY_MAGIC_LO, 4);
    h.writeUInt32BE(code, 8);
    h.writeUInt32BE(type >>> 0, 12);
    h.writeUInt32BE(len, 16);
    if (payload) payload.copy(h, 20);
    this.push(h);
  }

  private optError(code: number, type: number, msg: string): void {
    this.optReply(code, type, Buffer.from(msg, 'utf8'));
  }

  private option(code: number, data: Buffer): void {
    if (this.host.shuttingDown && code !== C.OPT_ABORT) {
      this.optError(code, C.REP_ERR_SHUTDOWN, 'server is shutting down');
      return;
    }
    switch (code) {
      case C.OPT_EXPORT_NAME:
        return this.exportName(data);
      case C.OPT_ABORT:
        this.optReply(code, C.REP_ACK);
        this.flush();
        this.state = 'closed';
        this.socket.end();
        return;
      case C.OPT_LIST: {
        if (data.length !== 0) return this.optError(code, C.REP_ERR_INVALID, 'LIST takes no data');
        let names: string[];
        try {
          names = this.host.exportNames();
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
        return this.optError(code, C.REP_ERR_POLICY, 'TLS is not supported');
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

  private txFlags(exp: OpenExport): number {
    let f = TX_BASE_FLAGS;
    if (this.structured) f |= C.TX_SEND_DF;
    if (exp.readOnly) f = (f & ~(C.TX_SEND_TRIM | C.TX_SEND_WRITE_ZEROES | C.TX_SEND_FAST_ZERO)) | C.TX_READ_ONLY;
    return f;
  }

  private open(name: string): OpenExport | null {
    try {
      return this.host.resolve(name);
    } catch (e) {
      this.host.log(`nbd: cannot open export "${name}": ${(e as Error).message}`);
      return null;
    }
  }

  private exportName(data: Buffer): void {
    if (data.length > C.MAX_STRING) return this.destroy();
    const exp = this.open(data.toString('utf8'));
    if (!exp) return this.destroy();
    const reply = Buffer.alloc(this.noZeroes ? 10 : 134);
    reply.writeBigUInt64BE(BigInt(exp.size), 0);
    reply.writeUInt16BE(this.txFlags(exp), 8);
    this.push(reply);
    this.enter(exp);
  }

  private enter(exp: OpenExport): void {
    this.exp = exp;
    this.statusOk = this.structured && this.meta !== null && this.meta.selected && this.open(this.meta.exportName)?.name === exp.name;
    this.state = 'tx';
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
    info.writeUInt16BE(this.txFlags(exp), 10);
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

  // ---------------------------------------------------------------- transmission

  private simple(hi: number, lo: number, error: number): void {
    const h = Buffer.allocUnsafe(16);
    h.writeUInt32BE(C.SIMPLE_REPLY_MAGIC, 0);
    h.writeUInt32BE(error, 4);
    h.writeUInt32BE(hi, 8);
    h.writeUInt32BE(lo, 12);
    this.push(h);
  }

  private chunkHeader(b: Buffer, at: number, flags: number, type: number, hi: number, lo: number, len: number): void {
    b.writeUInt32BE(C.STRUCTURED_REPLY_MAGIC, at);
    b.writeUInt16BE(flags, at + 4);
    b.writeUInt16BE(type, at + 6);
    b.writeUInt32BE(hi, at + 8);
    b.writeUInt32BE(lo, at + 12);
    b.writeUInt32BE(len, at + 16);
  }

  /** An error reply: a simple reply, or for READ/BLOCK_STATUS under structured replies an ERROR chunk. */
  private fail(hi: number, lo: number, error: number, chunked: boolean, msg = ''): void {
    if (!chunked || !this.structured) return this.simple(hi, lo, error);
    const m = Buffer.from(msg.slice(0, 1024), 'utf8');
    const b = Buffer.allocUnsafe(20 + 6 + m.length);
    this.chunkHeader(b, 0, C.REPLY_FLAG_DONE, C.REPLY_TYPE_ERROR, hi, lo, 6 + m.length);
    b.writeUInt32BE(error, 20);
    b.writeUInt16BE(m.length, 24);
    m.copy(b, 26);
    this.push(b);
  }

  private done(hi: number, lo: number, chunked: boolean): void {
    if (!chunked || !this.structured) return this.simple(hi, lo, 0);
    const b = Buffer.allocUnsafe(20);
    this.chunkHeader(b, 0, C.REPLY_FLAG_DONE, C.REPLY_TYPE_NONE, hi, lo, 0);
    this.push(b);
  }

  private startWrite(flags: number, hi: number, lo: number, offset: number, length: number): boolean {
    const exp = this.exp!;
    let error = 0;
    if (length > C.MAX_PAYLOAD) {
      if (length > C.MAX_DISCARDED_PAYLOAD) {
        this.destroy();
        return false;
      }
      error = C.EINVAL;
    } else if ((flags & ~C.CMD_FLAG_FUA) !== 0) error = C.EINVAL;
    else if (exp.readOnly) error = C.EPERM;
    else if (offset + length > exp.size) error = C.ENOSPC;
    if (this.avail() >= length) {
      // Whole payload already here: write straight from the input buffer.
      const data = this.input.subarray(this.pos, this.pos + length);
      this.pos += length;
      if (error !== 0) this.simple(hi, lo, error);
      else this.doWrite(flags, hi, lo, offset, data);
      return true;
    }
    // A large payload still arriving: it is read into a buffer of its own (memory grows only as bytes arrive
    // when it is discarded: the input buffer is reused for that).
    const buf = error === 0 ? takeBuffer(length) : null;
    this.pendingWrite = { flags, hi, lo, offset, length, buf, got: 0, error };
    return this.stepPayload();
  }

  /** Move what the input buffer holds of the pending payload into place; apply the WRITE once it is complete. */
  private stepPayload(): boolean {
    const w = this.pendingWrite!;
    const n = Math.min(this.avail(), w.length - w.got);
    if (w.buf && n > 0) this.input.copy(w.buf, w.got, this.pos, this.pos + n);
    w.got += n;
    this.pos += n;
    if (w.got < w.length) return false;
    this.pendingWrite = null;
    if (w.error !== 0) this.simple(w.hi, w.lo, w.error);
    else {
      this.doWrite(w.flags, w.hi, w.lo, w.offset, w.buf!.subarray(0, w.length));
      giveBuffer(w.buf!);
    }
    return true;
  }

  /** Apply a whole WRITE (never a partial one: the payload is complete before anything is written). */
  private doWrite(flags: number, hi: number, lo: number, offset: number, data: Buffer): void {
    const exp = this.exp!;
    try {
      if (data.length > 0) exp.write(data, offset);
      if (flags & C.CMD_FLAG_FUA) exp.flush();
      this.simple(hi, lo, 0);
    } catch (e) {
      this.engineError('WRITE', e);
      this.simple(hi, lo, nbdErrno(e, true));
    }
  }

  private engineError(what: string, e: unknown): void {
    this.host.log(`nbd: ${what} on "${this.exp?.name}" failed: ${e instanceof Error ? e.message : String(e)}`);
  }

  private command(type: number, flags: number, hi: number, lo: number, offset: number, length: number): void {
    const exp = this.exp!;
    const end = offset + length;
    switch (type) {
      case C.CMD_READ: {
        const allowed = C.CMD_FLAG_FUA | (this.structured ? C.CMD_FLAG_DF : 0);
        if ((flags & ~allowed) !== 0) return this.fail(hi, lo, C.EINVAL, true, 'unknown flag');
        if (end > exp.size) return this.fail(hi, lo, C.EINVAL, true, 'read past the end of the export');
        if (length > C.MAX_PAYLOAD) return this.fail(hi, lo, C.EINVAL, true, 'read larger than the maximum payload');
        if (length === 0) return this.done(hi, lo, true);
        return this.read(hi, lo, offset, length, (flags & C.CMD_FLAG_DF) !== 0);
      }
      case C.CMD_DISC:
        this.ending = true;
        this.pos = this.fill;
        return;
      case C.CMD_FLUSH:
        if ((flags & ~C.CMD_FLAG_FUA) !== 0) return this.simple(hi, lo, C.EINVAL);
        try {
          exp.flush();
          return this.simple(hi, lo, 0);
        } catch (e) {
          this.engineError('FLUSH', e);
          return this.simple(hi, lo, C.EIO);
        }
      case C.CMD_TRIM:
        if ((flags & ~C.CMD_FLAG_FUA) !== 0) return this.simple(hi, lo, C.EINVAL);
        if (exp.readOnly) return this.simple(hi, lo, C.EPERM);
        if (end > exp.size) return this.simple(hi, lo, C.EINVAL);
        try {
          exp.trim(offset, length);
          if (flags & C.CMD_FLAG_FUA) exp.flush();
          return this.simple(hi, lo, 0);
        } catch (e) {
          this.engineError('TRIM', e);
          return this.simple(hi, lo, nbdErrno(e, false));
        }
      case C.CMD_CACHE:
        if ((flags & ~C.CMD_FLAG_FUA) !== 0) return this.simple(hi, lo, C.EINVAL);
        if (end > exp.size) return this.simple(hi, lo, C.EINVAL);
        return this.simple(hi, lo, 0);
      case C.CMD_WRITE_ZEROES: {
        if ((flags & ~(C.CMD_FLAG_FUA | C.CMD_FLAG_NO_HOLE | C.CMD_FLAG_FAST_ZERO)) !== 0) return this.simple(hi, lo, C.EINVAL);
        if (exp.readOnly) return this.simple(hi, lo, C.EPERM);
        if (end > exp.size) return this.simple(hi, lo, C.ENOSPC);
        const noHole = (flags & C.CMD_FLAG_NO_HOLE) !== 0;
        if (flags & C.CMD_FLAG_FAST_ZERO) {
          if (noHole || !exp.fastZero(offset, length)) return this.simple(hi, lo, C.ENOTSUP);
        }
        try {
          if (length > 0) exp.zero(offset, length, noHole);
          if (flags & C.CMD_FLAG_FUA) exp.flush();
          return this.simple(hi, lo, 0);
        } catch (e) {
          this.engineError('WRITE_ZEROES', e);
          return this.simple(hi, lo, nbdErrno(e, true));
        }
      }
      case C.CMD_BLOCK_STATUS:
        if ((flags & ~(C.CMD_FLAG_FUA | C.CMD_FLAG_REQ_ONE)) !== 0) return this.fail(hi, lo, C.EINVAL, true, 'unknown flag');
        if (!this.statusOk) return this.fail(hi, lo, C.EINVAL, true, 'no metadata context selected');
        if (end > exp.size || length === 0) return this.fail(hi, lo, C.EINVAL, true, 'bad range');
        return this.blockStatus(hi, lo, offset, length, (flags & C.CMD_FLAG_REQ_ONE) !== 0);
      default:
        return this.fail(hi, lo, C.EINVAL, false);
    }
  }

  private read(hi: number, lo: number, offset: number, length: number, df: boolean): void {
    const exp = this.exp!;
    try {
      if (!this.structured) {
        const b = Buffer.allocUnsafe(16 + length);
        exp.read(b.subarray(16), offset);
        b.writeUInt32BE(C.SIMPLE_REPLY_MAGIC, 0);
        b.writeUInt32BE(0, 4);
        b.writeUInt32BE(hi, 8);
        b.writeUInt32BE(lo, 12);
        this.push(b);
        return;
      }
      const runs = df || exp.oneBlock(offset, length) ? null : exp.runs(offset, length);
      if (runs === null || (runs.length === 1 && runs[0].mapped)) {
        // One data chunk: the common case, one buffer, data read straight into the reply.
        const backing = takeBuffer(28 + length);
        const b = backing.length === 28 + length ? backing : backing.subarray(0, 28 + length);
        try {
          exp.read(b.subarray(28), offset);
        } catch (e) {
          giveBuffer(backing);
          throw e;
        }
        this.chunkHeader(b, 0, C.REPLY_FLAG_DONE, C.REPLY_TYPE_OFFSET_DATA, hi, lo, 8 + length);
        b.writeUInt32BE(Math.floor(offset / 0x100000000), 20);
        b.writeUInt32BE(offset >>> 0, 24);
        this.push(b);
        if (backing !== b) this.outPooled.push(backing);
        return;
      }
      let total = 0;
      for (const r of runs) total += 28 + (r.mapped ? r.length : 4);
      const b = Buffer.allocUnsafe(total);
      let at = 0;
      for (let i = 0; i < runs.length; i++) {
        const r = runs[i];
        const fl = i === runs.length - 1 ? C.REPLY_FLAG_DONE : 0;
        if (r.mapped) {
          exp.read(b.subarray(at + 28, at + 28 + r.length), r.offset);
          this.chunkHeader(b, at, fl, C.REPLY_TYPE_OFFSET_DATA, hi, lo, 8 + r.length);
        } else {
          this.chunkHeader(b, at, fl, C.REPLY_TYPE_OFFSET_HOLE, hi, lo, 12);
          b.writeUInt32BE(r.length, at + 28);
        }
        b.writeUInt32BE(Math.floor(r.offset / 0x100000000), at + 20);
        b.writeUInt32BE(r.offset >>> 0, at + 24);
        at += 28 + (r.mapped ? r.length : 4);
      }
      this.push(b);
    } catch (e) {
      this.engineError('READ', e);
      this.fail(hi, lo, nbdErrno(e, false), true, 'read failed');
    }
  }

  private blockStatus(hi: number, lo: number, offset: number, length: number, reqOne: boolean): void {
    const exp = this.exp!;
    let runs;
    try {
      runs = exp.runs(offset, length, STATUS_MAX_BLOCKS);
    } catch (e) {
      this.engineError('BLOCK_STATUS', e);
      return this.fail(hi, lo, nbdErrno(e, false), true, 'block status failed');
    }
    if (reqOne) runs = runs.slice(0, 1);
    // Extent lengths are u32: split longer runs.
    const ext: number[] = [];
    for (const r of runs) {
      const st = r.mapped ? 0 : C.STATE_HOLE | C.STATE_ZERO;
      let left = r.length;
      while (left > 0) {
        const n = Math.min(left, 0x80000000);
        ext.push(n, st);
        left -= n;
        if (reqOne) break;
      }
    }
    const n = ext.length / 2;
    const b = Buffer.allocUnsafe(24 + 8 * n);
    this.chunkHeader(b, 0, C.REPLY_FLAG_DONE, C.REPLY_TYPE_BLOCK_STATUS, hi, lo, 4 + 8 * n);
    b.writeUInt32BE(C.BASE_ALLOCATION_ID, 20);
    for (let i = 0; i < ext.length; i++) b.writeUInt32BE(ext[i], 24 + 4 * i);
    this.push(b);
  }
}
