/**
 * The transmission phase of one NBD connection: parse requests from the connection's input and execute them
 * against one open export, queueing one reply per request.
 *
 * Contract and invariants:
 * - The engine is synchronous: a request is executed as soon as it is parsed and its reply queued on the
 *   SocketIO; the replies of one batch of input go out together (SocketIO.flush). Exception: on an `async`
 *   export (a RADOS pool) READ and WRITE are started as parsed and stay in flight together; each reply is
 *   queued and flushed when its request completes (replies may come out of order, as NBD allows; a FLUSH
 *   commits, which waits for every data write in flight). A READ that is alone (nothing in flight on the
 *   server, no further request waiting in this connection's input) runs synchronously: one round trip that
 *   delays nobody already waiting, without the hand-off from librados's thread to the event loop (queue depth 1).
 *   So does a WRITE that is alone, unless the export's device has write-back (which answers sooner).
 * - A WRITE is applied whole or not at all: its payload is complete before anything is written. A payload of up
 *   to DIRECT_PAYLOAD waits in the input buffer; a larger one still arriving is received into a buffer of its own
 *   (SocketIO.payload) and a refused one (too large, read-only, past the end, bad flags) is read and dropped.
 * - Request-size caps (constants.ts): READ and WRITE payloads up to MAX_PAYLOAD (32 MiB); a WRITE payload up to
 *   MAX_DISCARDED_PAYLOAD (64 MiB) is read and answered EINVAL, a larger one closes the connection; one
 *   BLOCK_STATUS scans at most STATUS_MAX_BLOCKS blocks.
 * - Errors the spec lets us survive get an error reply (under structured replies an ERROR chunk for READ and
 *   BLOCK_STATUS); a bad request magic closes this connection only. Engine errors are logged and answered
 *   with the errno they map to.
 */
import * as C from './constants.js';
import { giveBuffer, takeBuffer } from './buffers.js';
import { nbdErrno, type OpenExport } from './export.js';
import type { Payload, SocketIO } from './socket-io.js';

/** What the transmission phase needs from the server. */
export interface TransmissionHost {
  log(msg: string): void;
  /** Counts every transmission request parsed (statistics). */
  counted(): void;
  /** Asynchronous requests (READ/WRITE of `async` exports) in flight on the whole server; kept by Transmission. */
  asyncInFlight: number;
}

/** Most blocks one BLOCK_STATUS request scans (the client re-asks from where the reply ended). */
const STATUS_MAX_BLOCKS = 1 << 16;
/** WRITE payloads larger than this that have not fully arrived are read straight into a buffer of their own. */
const DIRECT_PAYLOAD = 64 * 1024;

const TX_BASE_FLAGS =
  C.TX_HAS_FLAGS |
  C.TX_SEND_FLUSH |
  C.TX_SEND_FUA |
  C.TX_SEND_TRIM |
  C.TX_SEND_WRITE_ZEROES |
  C.TX_CAN_MULTI_CONN |
  C.TX_SEND_CACHE |
  C.TX_SEND_FAST_ZERO;

/** The transmission flags announced for an export (what this phase accepts). */
export function transmissionFlags(exp: OpenExport, structured: boolean): number {
  let f = TX_BASE_FLAGS;
  if (structured) f |= C.TX_SEND_DF;
  if (exp.readOnly) f = (f & ~(C.TX_SEND_TRIM | C.TX_SEND_WRITE_ZEROES | C.TX_SEND_FAST_ZERO)) | C.TX_READ_ONLY;
  return f;
}

/** A WRITE whose payload is still arriving (larger than DIRECT_PAYLOAD, or one being discarded). */
interface PendingWrite extends Payload {
  flags: number;
  hi: number;
  lo: number;
  offset: number;
  /**
   * Where the payload is received (its first `length` bytes, of which `got` have arrived): a pool buffer,
   * handed back once written; null when the payload is only discarded.
   */
  buf: Buffer | null;
  error: number;
}

export class Transmission {
  /** Requests parsed on this connection. */
  requests = 0;

  constructor(
    private readonly io: SocketIO,
    private readonly host: TransmissionHost,
    readonly exp: OpenExport,
    /** Structured replies negotiated. */
    private readonly structured: boolean,
    /** base:allocation selected for this export: BLOCK_STATUS allowed. */
    private readonly statusOk: boolean,
  ) {}

  /** Parse and execute one request (or the next part of a pending WRITE payload); false when more input is needed. */
  step(): boolean {
    const io = this.io;
    if (io.payload) return this.stepPayload();
    if (io.avail() < 28) return false;
    const b = io.input;
    const p = io.pos;
    if (b.readUInt32BE(p) !== C.REQUEST_MAGIC) {
      io.destroy();
      return false;
    }
    const flags = b.readUInt16BE(p + 4);
    const type = b.readUInt16BE(p + 6);
    // A small WRITE waits in the input buffer until its whole payload is there (no copy, one write).
    if (type === C.CMD_WRITE && io.avail() < 28 + b.readUInt32BE(p + 24) && b.readUInt32BE(p + 24) <= DIRECT_PAYLOAD) return false;
    const hi = b.readUInt32BE(p + 8);
    const lo = b.readUInt32BE(p + 12);
    const offHi = b.readUInt32BE(p + 16);
    const offset = offHi < 0x200000 ? offHi * 0x100000000 + b.readUInt32BE(p + 20) : Number.MAX_SAFE_INTEGER;
    const length = b.readUInt32BE(p + 24);
    io.pos += 28;
    this.requests++;
    this.host.counted();
    if (type === C.CMD_WRITE) return this.startWrite(flags, hi, lo, offset, length);
    this.command(type, flags, hi, lo, offset, length);
    return !io.closed;
  }

  private simple(hi: number, lo: number, error: number): void {
    const h = Buffer.allocUnsafe(16);
    h.writeUInt32BE(C.SIMPLE_REPLY_MAGIC, 0);
    h.writeUInt32BE(error, 4);
    h.writeUInt32BE(hi, 8);
    h.writeUInt32BE(lo, 12);
    this.io.push(h);
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
  private replyError(hi: number, lo: number, error: number, chunked: boolean, msg = ''): void {
    if (!chunked || !this.structured) return this.simple(hi, lo, error);
    const m = Buffer.from(msg.slice(0, 1024), 'utf8');
    const b = Buffer.allocUnsafe(20 + 6 + m.length);
    this.chunkHeader(b, 0, C.REPLY_FLAG_DONE, C.REPLY_TYPE_ERROR, hi, lo, 6 + m.length);
    b.writeUInt32BE(error, 20);
    b.writeUInt16BE(m.length, 24);
    m.copy(b, 26);
    this.io.push(b);
  }

  private done(hi: number, lo: number, chunked: boolean): void {
    if (!chunked || !this.structured) return this.simple(hi, lo, 0);
    const b = Buffer.allocUnsafe(20);
    this.chunkHeader(b, 0, C.REPLY_FLAG_DONE, C.REPLY_TYPE_NONE, hi, lo, 0);
    this.io.push(b);
  }

  private startWrite(flags: number, hi: number, lo: number, offset: number, length: number): boolean {
    const exp = this.exp;
    let error = 0;
    if (length > C.MAX_PAYLOAD) {
      if (length > C.MAX_DISCARDED_PAYLOAD) {
        this.io.destroy();
        return false;
      }
      error = C.EINVAL;
    } else if ((flags & ~C.CMD_FLAG_FUA) !== 0) error = C.EINVAL;
    else if (exp.readOnly) error = C.EPERM;
    else if (offset + length > exp.size) error = C.ENOSPC;
    if (this.io.avail() >= length) {
      // Whole payload already here: write straight from the input buffer.
      const data = this.io.input.subarray(this.io.pos, this.io.pos + length);
      this.io.pos += length;
      if (error !== 0) this.simple(hi, lo, error);
      else this.doWrite(flags, hi, lo, offset, data);
      return true;
    }
    // A large payload still arriving: it is read into a buffer of its own (memory grows only as bytes arrive
    // when it is discarded: the input buffer is reused for that).
    const buf = error === 0 ? takeBuffer(length) : null;
    const w: PendingWrite = { flags, hi, lo, offset, length, buf, got: 0, error };
    this.io.payload = w;
    return this.stepPayload();
  }

  /** Move what the input buffer holds of the pending payload into place; apply the WRITE once it is complete. */
  private stepPayload(): boolean {
    const w = this.io.payload as PendingWrite;
    const n = Math.min(this.io.avail(), w.length - w.got);
    if (w.buf && n > 0) this.io.input.copy(w.buf, w.got, this.io.pos, this.io.pos + n);
    w.got += n;
    this.io.pos += n;
    if (w.got < w.length) return false;
    this.io.payload = null;
    if (w.error !== 0) this.simple(w.hi, w.lo, w.error);
    else {
      this.doWrite(w.flags, w.hi, w.lo, w.offset, w.buf!.subarray(0, w.length));
      giveBuffer(w.buf!);
    }
    return true;
  }

  /** Apply a whole WRITE (never a partial one: the payload is complete before anything is written). */
  private doWrite(flags: number, hi: number, lo: number, offset: number, data: Buffer): void {
    const exp = this.exp;
    if (exp.async && data.length > 0 && !(exp.syncLoneWrites && this.alone()))
      return this.writeAsync(flags, hi, lo, offset, Buffer.from(data));
    try {
      if (data.length > 0) exp.write(data, offset);
      if (flags & C.CMD_FLAG_FUA) exp.flush();
      this.simple(hi, lo, 0);
    } catch (e) {
      this.engineError('WRITE', e);
      this.simple(hi, lo, nbdErrno(e, true));
    }
  }

  /**
   * An asynchronous export's WRITE: the payload (copied: the input buffer is reused) is in flight with other
   * requests; the reply is queued and sent when the cluster acknowledges it.
   */
  private writeAsync(flags: number, hi: number, lo: number, offset: number, data: Buffer): void {
    const exp = this.exp;
    this.host.asyncInFlight++;
    exp
      .writeAsync(data, offset)
      .then(() => {
        if (flags & C.CMD_FLAG_FUA) exp.flush();
        this.simple(hi, lo, 0);
      })
      .catch((e: unknown) => {
        this.engineError('WRITE', e);
        this.simple(hi, lo, nbdErrno(e, true));
      })
      .finally(() => {
        this.host.asyncInFlight--;
        this.io.flush();
      });
  }

  /** Nothing in flight on the server and no further request header waiting in this connection's input. */
  private alone(): boolean {
    return this.host.asyncInFlight === 0 && this.io.avail() < 28;
  }

  /** An asynchronous export's READ: one data chunk (holes read as zeros), replied when the data has arrived. */
  private readAsync(hi: number, lo: number, offset: number, length: number): void {
    const head = this.structured ? 28 : 16;
    // As the synchronous path: a small reply is cut from the shared slab, a large one is pooled (takeBuffer).
    const backing = takeBuffer(head + length);
    const b = backing.length === head + length ? backing : backing.subarray(0, head + length);
    this.host.asyncInFlight++;
    this.exp
      .readAsync(b.subarray(head), offset)
      .then(() => {
        if (this.structured) {
          this.chunkHeader(b, 0, C.REPLY_FLAG_DONE, C.REPLY_TYPE_OFFSET_DATA, hi, lo, 8 + length);
          b.writeUInt32BE(Math.floor(offset / 0x100000000), 20);
          b.writeUInt32BE(offset >>> 0, 24);
        } else {
          b.writeUInt32BE(C.SIMPLE_REPLY_MAGIC, 0);
          b.writeUInt32BE(0, 4);
          b.writeUInt32BE(hi, 8);
          b.writeUInt32BE(lo, 12);
        }
        this.io.push(b, backing !== b ? backing : undefined);
      })
      .catch((e: unknown) => {
        giveBuffer(backing);
        this.engineError('READ', e);
        this.replyError(hi, lo, nbdErrno(e, false), true, 'read failed');
      })
      .finally(() => {
        this.host.asyncInFlight--;
        this.io.flush();
      });
  }

  private engineError(what: string, e: unknown): void {
    this.host.log(`nbd: ${what} on "${this.exp.name}" failed: ${e instanceof Error ? e.message : String(e)}`);
  }

  private command(type: number, flags: number, hi: number, lo: number, offset: number, length: number): void {
    const exp = this.exp;
    const end = offset + length;
    switch (type) {
      case C.CMD_READ: {
        const allowed = C.CMD_FLAG_FUA | (this.structured ? C.CMD_FLAG_DF : 0);
        if ((flags & ~allowed) !== 0) return this.replyError(hi, lo, C.EINVAL, true, 'unknown flag');
        if (end > exp.size) return this.replyError(hi, lo, C.EINVAL, true, 'read past the end of the export');
        if (length > C.MAX_PAYLOAD) return this.replyError(hi, lo, C.EINVAL, true, 'read larger than the maximum payload');
        if (length === 0) return this.done(hi, lo, true);
        return this.read(hi, lo, offset, length, (flags & C.CMD_FLAG_DF) !== 0);
      }
      case C.CMD_DISC:
        this.io.ending = true;
        this.io.pos = this.io.fill;
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
        if ((flags & ~(C.CMD_FLAG_FUA | C.CMD_FLAG_REQ_ONE)) !== 0) return this.replyError(hi, lo, C.EINVAL, true, 'unknown flag');
        if (!this.statusOk) return this.replyError(hi, lo, C.EINVAL, true, 'no metadata context selected');
        if (end > exp.size || length === 0) return this.replyError(hi, lo, C.EINVAL, true, 'bad range');
        return this.blockStatus(hi, lo, offset, length, (flags & C.CMD_FLAG_REQ_ONE) !== 0);
      default:
        return this.replyError(hi, lo, C.EINVAL, false);
    }
  }

  private read(hi: number, lo: number, offset: number, length: number, df: boolean): void {
    const exp = this.exp;
    if (exp.async && !this.alone()) return this.readAsync(hi, lo, offset, length);
    try {
      if (!this.structured) {
        const b = Buffer.allocUnsafe(16 + length);
        exp.read(b.subarray(16), offset);
        b.writeUInt32BE(C.SIMPLE_REPLY_MAGIC, 0);
        b.writeUInt32BE(0, 4);
        b.writeUInt32BE(hi, 8);
        b.writeUInt32BE(lo, 12);
        this.io.push(b);
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
        this.io.push(b, backing !== b ? backing : undefined);
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
      this.io.push(b);
    } catch (e) {
      this.engineError('READ', e);
      this.replyError(hi, lo, nbdErrno(e, false), true, 'read failed');
    }
  }

  private blockStatus(hi: number, lo: number, offset: number, length: number, reqOne: boolean): void {
    const exp = this.exp;
    let runs;
    try {
      runs = exp.runs(offset, length, STATUS_MAX_BLOCKS);
    } catch (e) {
      this.engineError('BLOCK_STATUS', e);
      return this.replyError(hi, lo, nbdErrno(e, false), true, 'block status failed');
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
    this.io.push(b);
  }
}
