// A small raw NBD client for protocol, robustness and fuzz tests: exact control over every byte sent.
import net from 'node:net';
import tls from 'node:tls';

/** Client credentials for STARTTLS: a PSK identity and key, or the CA that signed the server's certificate. */
export type ClientTls = { identity: string; key: Buffer } | { ca: Buffer };

export const OPT_MAGIC = 0x49484156454f5054n;

export class RawClient {
  /** The socket: the plain one, or the TLSSocket after startTls. */
  sock: net.Socket;
  /** The plain TCP socket underneath. */
  readonly plain: net.Socket;
  private buf: Buffer = Buffer.alloc(0);
  private waiter: (() => void) | null = null;
  ended = false;
  private readonly onData = (d: Buffer) => {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    this.wake();
  };
  private readonly onClose = () => {
    this.ended = true;
    this.wake();
  };

  private constructor(sock: net.Socket) {
    this.sock = sock;
    this.plain = sock;
    this.attach(sock);
  }

  private attach(sock: net.Socket): void {
    sock.on('data', this.onData);
    sock.on('close', this.onClose);
    sock.on('error', () => {
      /* closed */
    });
  }

  /**
   * Send STARTTLS and, on ACK, run the TLS handshake on this connection. Resolves null on success, else what
   * went wrong: the option reply type (a number) or the TLS error message.
   */
  async startTls(creds: ClientTls): Promise<number | string | null> {
    this.sendOption(5);
    const r = await this.optionReplies();
    if (!r) return 'closed';
    if (r[r.length - 1].type !== 1) return r[r.length - 1].type;
    if (this.buf.length > 0) throw new Error('bytes after the ACK to STARTTLS');
    this.sock.off('data', this.onData);
    this.sock.off('close', this.onClose);
    const opts: tls.ConnectionOptions = { socket: this.sock, minVersion: 'TLSv1.2' };
    if ('identity' in creds) {
      opts.ciphers = 'ECDHE-PSK:DHE-PSK:PSK:!kRSAPSK';
      opts.pskCallback = () => ({ identity: creds.identity, psk: creds.key });
      opts.checkServerIdentity = () => undefined;
    } else {
      opts.ca = creds.ca;
      opts.servername = 'localhost';
    }
    const t = tls.connect(opts);
    this.sock = t;
    this.attach(t);
    return new Promise((resolve) => {
      t.once('secureConnect', () => resolve(null));
      t.once('error', (e) => resolve(e.message));
      t.once('close', () => resolve('closed'));
    });
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  static connect(where: { port: number; host?: string } | { path: string }): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const sock = 'path' in where ? net.connect(where.path) : net.connect(where.port, where.host ?? '127.0.0.1');
      sock.setNoDelay(true);
      sock.once('connect', () => resolve(new RawClient(sock)));
      sock.once('error', reject);
    });
  }

  /** Exactly n bytes, or null when the server closed first. */
  async read(n: number, timeoutMs = 10000): Promise<Buffer | null> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.ended) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timeout waiting for ${n} bytes (have ${this.buf.length})`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiter = () => {
          clearTimeout(t);
          r();
        };
      });
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Resolves true once the server has closed the connection (within timeoutMs). */
  async waitClosed(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended && Date.now() < deadline) {
      await new Promise<void>((r) => {
        const t = setTimeout(r, 50);
        this.waiter = () => {
          clearTimeout(t);
          r();
        };
      });
    }
    return this.ended;
  }

  write(b: Uint8Array): void {
    if (!this.sock.destroyed) this.sock.write(b);
  }

  close(): void {
    this.sock.destroy();
    this.plain.destroy();
  }

  // ---- handshake helpers ----
  async greeting(clientFlags = 3): Promise<number> {
    const g = await this.read(18);
    if (!g) throw new Error('no greeting');
    if (g.readBigUInt64BE(0) !== 0x4e42444d41474943n || g.readBigUInt64BE(8) !== OPT_MAGIC) throw new Error('bad greeting');
    const f = Buffer.alloc(4);
    f.writeUInt32BE(clientFlags >>> 0);
    this.write(f);
    return g.readUInt16BE(16);
  }

  sendOption(code: number, data: Uint8Array = Buffer.alloc(0)): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(OPT_MAGIC, 0);
    h.writeUInt32BE(code >>> 0, 8);
    h.writeUInt32BE(data.length, 12);
    this.write(Buffer.concat([h, data]));
  }

  async optionReply(): Promise<{ code: number; type: number; data: Buffer } | null> {
    const h = await this.read(20);
    if (!h) return null;
    if (h.readBigUInt64BE(0) !== 0x0003e889045565a9n) throw new Error('bad option reply magic');
    const len = h.readUInt32BE(16);
    const data = await this.read(len);
    if (!data) return null;
    return { code: h.readUInt32BE(8), type: h.readUInt32BE(12), data: Buffer.from(data) };
  }

  /** All replies to one option up to the final one (ACK or error). */
  async optionReplies(): Promise<{ code: number; type: number; data: Buffer }[] | null> {
    const out = [];
    for (;;) {
      const r = await this.optionReply();
      if (!r) return null;
      out.push(r);
      if (r.type === 1 || r.type >= 0x80000000) return out;
    }
  }

  static goData(name: string, infos: number[] = [3]): Buffer {
    const n = Buffer.from(name, 'utf8');
    const b = Buffer.alloc(6 + n.length + 2 * infos.length);
    b.writeUInt32BE(n.length, 0);
    n.copy(b, 4);
    b.writeUInt16BE(infos.length, 4 + n.length);
    infos.forEach((t, i) => {
      b.writeUInt16BE(t, 6 + n.length + 2 * i);
    });
    return b;
  }

  static metaData(name: string, queries: string[]): Buffer {
    const parts: Buffer[] = [];
    const n = Buffer.from(name, 'utf8');
    const h = Buffer.alloc(4);
    h.writeUInt32BE(n.length);
    parts.push(h, n);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(queries.length);
    parts.push(c);
    for (const q of queries) {
      const qb = Buffer.from(q, 'utf8');
      const l = Buffer.alloc(4);
      l.writeUInt32BE(qb.length);
      parts.push(l, qb);
    }
    return Buffer.concat(parts);
  }

  /** STRUCTURED_REPLY (optional), SET_META_CONTEXT base:allocation (optional), GO. Returns size and flags. */
  async negotiate(
    name = '',
    opts: { structured?: boolean; meta?: boolean; tls?: ClientTls } = {},
  ): Promise<{ size: number; flags: number }> {
    await this.greeting();
    if (opts.tls) {
      const t = await this.startTls(opts.tls);
      if (t !== null) throw new Error(`STARTTLS failed: ${String(t)}`);
    }
    if (opts.structured !== false) {
      this.sendOption(8);
      const r = await this.optionReplies();
      if (!r || r[0].type !== 1) throw new Error('STRUCTURED_REPLY refused');
      if (opts.meta !== false) {
        this.sendOption(10, RawClient.metaData(name, ['base:allocation']));
        const m = await this.optionReplies();
        if (!m || m[m.length - 1].type !== 1) throw new Error('SET_META_CONTEXT failed');
      }
    }
    this.sendOption(7, RawClient.goData(name));
    const rs = await this.optionReplies();
    if (!rs) throw new Error('closed during GO');
    const last = rs[rs.length - 1];
    if (last.type !== 1) throw new Error(`GO failed: 0x${last.type.toString(16)} ${last.data.toString()}`);
    const info = rs.find((r) => r.type === 3 && r.data.readUInt16BE(0) === 0);
    if (!info) throw new Error('no INFO_EXPORT');
    return { size: Number(info.data.readBigUInt64BE(2)), flags: info.data.readUInt16BE(10) };
  }

  // ---- transmission helpers ----
  static request(type: number, flags: number, cookie: bigint, offset: bigint | number, length: number, payload?: Uint8Array): Buffer {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(0x25609513, 0);
    h.writeUInt16BE(flags, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(cookie, 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length >>> 0, 24);
    return payload ? Buffer.concat([h, payload]) : h;
  }

  send(type: number, flags: number, cookie: bigint, offset: bigint | number, length: number, payload?: Uint8Array): void {
    this.write(RawClient.request(type, flags, cookie, offset, length, payload));
  }

  /**
   * One whole reply (a simple reply, or structured chunks up to DONE). For a simple reply to a READ pass
   * readLength so the data is consumed.
   */
  async reply(readLength = 0): Promise<Reply | null> {
    const m = await this.read(4);
    if (!m) return null;
    const magic = m.readUInt32BE(0);
    if (magic === 0x67446698) {
      const rest = await this.read(12);
      if (!rest) return null;
      const error = rest.readUInt32BE(0);
      const cookie = rest.readBigUInt64BE(4);
      let data: Buffer | undefined;
      if (error === 0 && readLength > 0) {
        const d = await this.read(readLength);
        if (!d) return null;
        data = Buffer.from(d);
      }
      return { cookie, error, simple: true, chunks: [], data };
    }
    if (magic !== 0x668e33ef) throw new Error(`bad reply magic 0x${magic.toString(16)}`);
    const rep: Reply = { cookie: 0n, error: 0, simple: false, chunks: [] };
    let first = true;
    for (;;) {
      const h = first ? await this.read(16) : await this.read(20).then((b) => b && b.subarray(4));
      if (!h) return null;
      if (!first && h === null) return null;
      const flags = h.readUInt16BE(0);
      const type = h.readUInt16BE(2);
      const cookie = h.readBigUInt64BE(4);
      const len = h.readUInt32BE(12);
      const payload = await this.read(len);
      if (!payload) return null;
      rep.cookie = cookie;
      rep.chunks.push({ flags, type, payload: Buffer.from(payload) });
      if (type & 0x8000) rep.error = payload.readUInt32BE(0);
      if (flags & 1) return rep;
      first = false;
    }
  }
}

export interface Reply {
  cookie: bigint;
  error: number;
  simple: boolean;
  chunks: { flags: number; type: number; payload: Buffer }[];
  data?: Buffer;
}

/** Assemble the data of a structured READ reply over [offset, offset+length). */
export function assembleRead(rep: Reply, offset: number, length: number): Buffer {
  if (rep.simple) return rep.data ?? Buffer.alloc(0);
  const out = Buffer.alloc(length);
  const seen = new Uint8Array(length);
  for (const c of rep.chunks) {
    if (c.type === 1) {
      const at = Number(c.payload.readBigUInt64BE(0)) - offset;
      const d = c.payload.subarray(8);
      if (at < 0 || at + d.length > length) throw new Error('data chunk outside the request');
      d.copy(out, at);
      seen.fill(1, at, at + d.length);
    } else if (c.type === 2) {
      const at = Number(c.payload.readBigUInt64BE(0)) - offset;
      const n = c.payload.readUInt32BE(8);
      if (at < 0 || at + n > length || n === 0) throw new Error('hole chunk outside the request');
      seen.fill(1, at, at + n);
    }
  }
  if (rep.error === 0 && seen.includes(0)) throw new Error('read reply does not cover the request');
  return out;
}
