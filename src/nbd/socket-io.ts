/**
 * The byte plumbing of one NBD connection, with no knowledge of the protocol: input into a buffer the parser
 * reads in place, replies queued and sent in batches, flow control, and the end of the connection.
 *
 * Contract with the owner (the protocol, see connection.ts):
 * - Input bytes [pos, fill) of `input` are received and not parsed yet. After each arrival `owner.step()` is
 *   called until it returns false (needs more input), the connection closes, or output backs up; the owner
 *   advances `pos` as it parses. Only this class moves or grows the buffer (compaction happens between reads).
 * - A large payload that has not fully arrived may be received straight into a buffer of its own: the owner sets
 *   `payload` ({ buf, length, got }); once the input buffer is drained the socket reads into buf (or, with a
 *   null buf, into scratch space that is thrown away), counting `got`. The owner clears `payload` when complete.
 * - Replies are `push`ed and sent by `flush` (after every batch of input, in one write when possible). Pooled
 *   buffers given with a reply are handed back to the pool once the socket has taken it.
 * - Input is paused while more than `maxQueuedBytes` (OUTPUT_HIGH) reply bytes wait in the socket and resumed on
 *   'drain'. Since the check runs after each request, a connection holds at most that bound plus one reply.
 * - `ending`: execute what is buffered, then end (DISC, server shutdown); `closed`: nothing more is parsed or sent.
 *
 * Three ways in and out, chosen per socket (docs/nbd.md, "Where the time goes"):
 * - Fast input: Node's `onread` user-buffer hook: the socket reads straight into `input` (or the payload
 *   buffer); no buffer allocated per read, no readable-stream machinery.
 * - Direct output: replies are written with one synchronous write/writev on the descriptor when nothing is queued
 *   in the socket; what the kernel does not take (EAGAIN, partial write) goes through socket.write.
 * - Busy-poll: after answering in the transmission phase (`pollReady`), the descriptor is read for a short,
 *   bounded window before going back to the event loop, so a queue-depth-1 client's next request is read without
 *   an epoll wake-up.
 * - Hot loop: where the descriptor cannot be read directly (a TLS socket: it carries ciphertext that only the
 *   TLS socket may read; the portable path), the same window is spent in the event loop instead: one
 *   setImmediate after another keeps libuv polling with a zero timeout, so the next request is still picked up
 *   without the thread going to sleep, while the TLS machinery (decryption, write completions) runs as usual.
 * - Portable fallback (`portable`, or a socket without the hooks): 'data' events are copied into the same
 *   buffers and replies go through socket.write only. A TLS socket (`plainDescriptor: false`) uses the
 *   user-buffer hook of its TLS handle for input (decrypted bytes) and socket.write for output.
 */
import { readSync, writeSync, writevSync } from 'node:fs';
import type { Socket } from 'node:net';
import { giveBuffer } from './buffers.js';
import { socketHandle, userBufferKeys } from './socket-handle.js';
import { spinGuard } from './spin-guard.js';

export { FAST_IO_AVAILABLE } from './socket-handle.js';

/** What drives a SocketIO: the protocol parser. */
export interface IoOwner {
  /** Parse and execute one unit of buffered input; false when more input is needed. */
  step(): boolean;
  /** The socket has closed (either side, or destroyed). */
  closed(): void;
  log(msg: string): void;
}

/** A payload received outside the input buffer: `got` of its `length` bytes have arrived in `buf` (null: dropped). */
export interface Payload {
  buf: Buffer | null;
  length: number;
  got: number;
}

export interface SocketIOOptions {
  /** 'data' events and socket.write only. */
  portable: boolean;
  /**
   * The socket's descriptor carries what is written to the socket (false for a TLS socket: its descriptor carries
   * ciphertext, so replies must go through socket.write and the descriptor is never read directly).
   */
  plainDescriptor?: boolean;
  /** Busy-poll window after answering, in microseconds (0: off). */
  busyPollMicros: number;
  /** Pause input while more than this many reply bytes wait to be sent (default OUTPUT_HIGH). */
  maxQueuedBytes?: number;
}

/** By default, pause input while more than this many reply bytes wait in the socket. */
export const OUTPUT_HIGH = 16 * 1024 * 1024;
/** Replies of one batch totalling at most this are copied into one buffer and sent with one write (stream path). */
const GATHER_BYTES = 128 * 1024;
/** Size of a connection's input buffer: holds any option (64 KiB) and any WRITE up to DIRECT_PAYLOAD whole. */
const INPUT_BYTES = 256 * 1024;
/** The input buffer always offers the socket at least this much room. */
const MIN_ROOM = 16 * 1024;
/** Where the socket reads the next bytes into. */
const INTO_INPUT = 0;
const INTO_PAYLOAD = 1;
const INTO_DISCARD = 2;

/** Nagle off (default) or on: NBD_NODELAY=0 (for experiments). */
const NO_DELAY = process.env.NBD_NODELAY !== '0';
/** A poll loop returns to the event loop after this long at most, so other connections are served. */
const POLL_BUDGET_NS = 1_000_000n;

export class SocketIO {
  readonly socket: Socket;
  private readonly owner: IoOwner;
  /** Input: bytes [pos, fill) of `input` are received and not yet parsed. */
  input: Buffer;
  pos = 0;
  fill = 0;
  /** A payload being received outside `input` (see the contract above). */
  payload: Payload | null = null;
  /** Busy-polling allowed (the owner's transmission phase). */
  pollReady = false;
  /**
   * Busy-polling allowed now (checked before each poll and on every turn of it): the owner says no while
   * asynchronous requests are in flight, whose completions come through the event loop (a spin would hold them
   * back, and take the CPU the threads answering them need).
   */
  mayPoll: () => boolean = () => true;
  /** Output backed up: input is paused until 'drain'. */
  blocked = false;
  /** Execute what is buffered, then end. */
  ending = false;
  /** Nothing more is parsed or sent. */
  closed = false;
  /** What the socket reads into next (INTO_*), as last handed to it. */
  private into = INTO_INPUT;
  /** The socket's descriptor for synchronous reply writes; -1: use socket.write. */
  private fd = -1;
  /** Input arrives through the user-buffer hook (onRead), not 'data' events. */
  private userBuffer = false;
  /** Inside poll(): reads found there must not start another poll. */
  private polling = false;
  /** Handed over to another reader (detach): the user-buffer hook must stop reading. */
  private detached = false;
  private readonly pollNs: bigint;
  /** Hot loop: when input last arrived (hrtime ns), and whether a tick is scheduled. */
  private lastInputNs = 0n;
  private hotScheduled = false;
  private readonly outputHigh: number;
  private out: Buffer[] = [];
  private outBytes = 0;
  /** Pooled buffers behind some of `out` (handed back once written). */
  private outPooled: Buffer[] = [];

  constructor(socket: Socket, owner: IoOwner, opts: SocketIOOptions) {
    this.socket = socket;
    this.owner = owner;
    socket.setNoDelay(NO_DELAY);
    this.input = Buffer.allocUnsafeSlow(INPUT_BYTES);
    this.pollNs = BigInt(Math.round(opts.busyPollMicros * 1000));
    this.outputHigh = opts.maxQueuedBytes ?? OUTPUT_HIGH;
    const keys = opts.portable ? null : userBufferKeys;
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
      socket.on('data', this.listeners.data);
    }
    if (!opts.portable && opts.plainDescriptor !== false && handle && typeof handle.fd === 'number' && handle.fd >= 0) this.fd = handle.fd;
    socket.on('error', () => {
      /* EPIPE / ECONNRESET: the 'close' event follows */
    });
    socket.on('end', this.listeners.end);
    socket.on('close', this.listeners.close);
    socket.on('drain', this.listeners.drain);
  }

  private readonly listeners = {
    data: (chunk: Buffer) => this.onData(chunk),
    end: () => this.onEnd(),
    close: () => this.onClose(),
    drain: () => this.onDrain(),
  };

  /**
   * Let go of the socket without closing it (STARTTLS: another reader takes it over). Call after flush(), with
   * no unparsed input left; input stops at once (no further read lands in our buffers), nothing more is sent,
   * and the owner's closed() is not called for this socket any more.
   */
  detach(): void {
    this.closed = true;
    this.detached = true;
    this.fd = -1;
    this.payload = null;
    this.out = [];
    const s = this.socket;
    s.off('data', this.listeners.data);
    s.off('end', this.listeners.end);
    s.off('close', this.listeners.close);
    s.off('drain', this.listeners.drain);
    if (!this.userBuffer) s.pause();
  }

  /** Reply bytes this connection holds that the client has not taken yet (queued here and in the socket). */
  get queuedBytes(): number {
    return this.closed ? 0 : this.socket.writableLength + this.outBytes;
  }

  avail(): number {
    return this.fill - this.pos;
  }

  /** Queue a reply; `pooled` is a pool buffer behind it, handed back once the socket has taken the reply. */
  push(b: Buffer, pooled?: Buffer): void {
    this.out.push(b);
    this.outBytes += b.length;
    if (pooled) this.outPooled.push(pooled);
  }

  /** Close now, dropping what is buffered either way. */
  destroy(): void {
    if (this.closed) {
      this.socket.destroy(); // ending already: do not wait for the client any longer
      return;
    }
    this.closed = true;
    this.pos = this.fill = 0;
    this.payload = null;
    this.out = [];
    this.socket.destroy();
  }

  /** Send what is queued and end our side now (ABORT, client EOF). */
  end(): void {
    this.flush();
    this.closed = true;
    this.socket.end();
  }

  /** Execute what is buffered, then end (server shutdown in the transmission phase). */
  endAfterBuffered(): void {
    if (this.closed) return;
    this.ending = true;
    if (!this.blocked) this.finish();
  }

  private onEnd(): void {
    // Client EOF (fio and nbdfuse close without DISC): a partial request is dropped, never applied.
    if (this.closed) return;
    this.payload = null;
    this.end();
  }

  private onClose(): void {
    this.closed = true;
    this.pos = this.fill = 0;
    this.fd = -1;
    this.payload = null;
    this.out = [];
    this.owner.closed();
  }

  private onDrain(): void {
    if (!this.blocked || this.closed) return;
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
    return !this.blocked && !this.detached;
  }

  private received(n: number): void {
    if (this.closed || this.ending) return;
    const w = this.payload;
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
    if (!this.pollReady || this.closed) return;
    if (this.fd < 0) {
      this.keepHot();
      return;
    }
    this.polling = true;
    const start = process.hrtime.bigint();
    let last = start;
    try {
      for (;;) {
        if (!this.pollReady || !this.mayPoll() || this.closed || this.ending || this.blocked || this.socket.writableLength > 0) return;
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
   * Without a descriptor to read (TLS, portable): keep the event loop from sleeping for the poll window after
   * the last input, by scheduling one immediate after another (libuv polls with a zero timeout while an
   * immediate is pending). Each tick returns to the event loop, so other connections and the TLS socket's own
   * work run in between; the chain ends once the window passes without input or the connection leaves the
   * transmission phase. Costs server CPU the way the busy-poll does, and nothing when the client is idle. On a
   * machine with no idle CPU the spin only takes time from other tasks (the client among them): spinGuard
   * (spin-guard.ts) sees that and turns the loop off for a while.
   */
  private keepHot(): void {
    const now = process.hrtime.bigint();
    this.lastInputNs = now;
    if (this.hotScheduled || !this.mayPoll() || !spinGuard.allowed(now)) return;
    this.hotScheduled = true;
    spinGuard.start(now);
    setImmediate(this.hotTick);
  }

  private readonly hotTick = (): void => {
    const now = process.hrtime.bigint();
    const end = this.closed || this.ending || !this.pollReady || !this.mayPoll() || now - this.lastInputNs > this.pollNs;
    if (!end && spinGuard.check(now, false)) {
      setImmediate(this.hotTick);
      return;
    }
    spinGuard.check(now, true); // the chain ends here: the client went quiet, or the guard stopped it
    this.hotScheduled = false;
  };

  /** Whether the hot loop is running (tests: it must stop once the client goes quiet). */
  get hot(): boolean {
    return this.hotScheduled;
  }

  /**
   * The buffer the socket reads into next, asked after every read. Only here may the input be compacted:
   * between reads (on 'drain') the socket still holds the last buffer returned.
   */
  private nextTarget(): Buffer {
    const w = this.payload;
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

  /** Stream input (portable, or no user-buffer hook): the chunk is copied where a user-buffer read would put it. */
  private onData(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !this.closed && !this.ending) {
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
  run(): void {
    try {
      while (!this.closed && !this.blocked) {
        if (!this.owner.step()) break;
        if (this.socket.writableLength + this.outBytes > this.outputHigh) {
          this.flush();
          // Block only while the socket holds a backlog it will report draining: what flush() handed to the
          // kernel directly is gone, and a 'drain' that never comes would stall this connection for good.
          if (this.socket.writableNeedDrain) this.blocked = true;
        }
      }
    } catch (e) {
      this.owner.log(`nbd: connection dropped after an internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      this.destroy();
    } finally {
      this.flush();
    }
    if (this.ending && !this.blocked && !this.closed) this.finish();
  }

  private finish(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.socket.end();
    // A client that never closes its side must not hold the server.
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  /** Send the queued replies with as few socket writes as possible (one write per batch of input). */
  flush(): void {
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
      if (pooled.length > 0)
        sock.write(out[out.length - 1], () => {
          for (const b of pooled) giveBuffer(b);
        });
      else sock.write(out[out.length - 1]);
      sock.uncork();
    } else if (from === out.length - 1) sock.write(out[from]);
    else sock.write(Buffer.concat(from === 0 ? out : out.slice(from)));
  }
}
