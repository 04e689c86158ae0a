/**
 * A streaming reader of tar archives as image layers are written (POSIX ustar and pax, GNU tar): entry by
 * entry, each body read straight from the input chunks without copying them.
 *
 * Contract:
 * - `readTar(input)` yields entries in order; the caller may read an entry's body (`body()`, at most once) or
 *   not: what is left of it is skipped before the next entry.
 * - pax extended headers (`x`) set path, linkpath, size, uid, gid, mtime and extended attributes
 *   (`SCHILY.xattr.NAME` with the value's raw bytes, `LIBARCHIVE.xattr.NAME` base64); GNU long names (`L`,
 *   `K`) set path and link target; global pax headers (`g`) and GNU volume labels (`V`) are skipped.
 * - Numbers are octal or GNU base-256. A header whose checksum is wrong, an archive that ends inside an entry,
 *   or a GNU sparse file is an error (`TarError`, whose message says what is wrong). Two zero blocks or the
 *   end of the input after a whole entry end the archive.
 */

/**
 * A pax time ("1796611314.987654321") in whole milliseconds, the fraction cut, not rounded: rounding took
 * .9996 s into the next second, so a file read back a second later than tar wrote it. NaN when not a time
 * (the entry is then not stamped); a negative time stays negative (and is not stamped either).
 */
export function paxTimeMs(v: string): number {
  const m = /^(-?)(\d+)(?:\.(\d*))?$/.exec(v.trim());
  if (!m) return NaN;
  const ms = Number(m[2]) * 1000 + Number((m[3] ?? '').padEnd(3, '0').slice(0, 3));
  return m[1] ? -ms : ms;
}

export type TarType = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'dir' | 'fifo';

export interface TarHeader {
  name: string;
  type: TarType;
  /** Permission bits including setuid, setgid and sticky (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Modification time in ms since the epoch (pax times keep their fraction). */
  mtimeMs: number;
  linkname: string;
  devmajor: number;
  devminor: number;
  /** Extended attributes by full name (`security.capability`, `user.x`), with their raw bytes. */
  xattrs: Map<string, Buffer>;
}

export interface TarEntry {
  header: TarHeader;
  /** The body's bytes, as subarrays of the input's chunks (valid until the next chunk is read). */
  body(): AsyncGenerator<Buffer>;
}

export class TarError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TarError';
  }
}

const BLOCK = 512;
const TYPES: Record<string, TarType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'link',
  '2': 'symlink',
  '3': 'char',
  '4': 'block',
  '5': 'dir',
  '6': 'fifo',
};

/** Pulls exact byte counts out of an async iterable of chunks. */
class Bytes {
  private readonly it: AsyncIterator<Buffer>;
  private cur: Buffer = Buffer.alloc(0);
  private pos = 0;
  constructor(input: AsyncIterable<Buffer | Uint8Array>) {
    this.it = (input as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  /** Bytes available now (at least one, reading a chunk if none), as a view; null at the end of the input. */
  private async some(max: number): Promise<Buffer | null> {
    while (this.pos >= this.cur.length) {
      const r = await this.it.next();
      if (r.done) return null;
      const v = r.value as Uint8Array;
      this.cur = Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      this.pos = 0;
    }
    const n = Math.min(max, this.cur.length - this.pos);
    const out = this.cur.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** Exactly n bytes (copied only when they span chunks), or null at a clean end before the first byte. */
  async exact(n: number): Promise<Buffer | null> {
    const first = await this.some(n);
    if (first === null) return null;
    if (first.length === n) return first;
    const out = Buffer.allocUnsafe(n);
    first.copy(out, 0);
    let got = first.length;
    while (got < n) {
      const b = await this.some(n - got);
      if (b === null) throw new TarError(`unexpected end of the archive (${n - got} bytes missing)`);
      b.copy(out, got);
      got += b.length;
    }
    return out;
  }

  /** Up to n bytes at a time, n in all. */
  async *stream(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      const b = await this.some(left);
      if (b === null) throw new TarError(`unexpected end of the archive (${left} bytes of an entry missing)`);
      left -= b.length;
      yield b;
    }
  }

  async skip(n: number): Promise<void> {
    for await (const _ of this.stream(n)) {
      /* skipped */
    }
  }
}

function str(b: Buffer, start: number, len: number): string {
  const f = b.subarray(start, start + len);
  const z = f.indexOf(0);
  return f.subarray(0, z < 0 ? f.length : z).toString('utf8');
}

function num(b: Buffer, start: number, len: number, what: string): number {
  const f = b.subarray(start, start + len);
  if (f[0] & 0x80) {
    // GNU base-256, big-endian, two's complement
    let v = f[0] & 0x7f;
    if (f[0] & 0x40) throw new TarError(`invalid tar header: negative ${what}`);
    for (let i = 1; i < f.length; i++) v = v * 256 + f[i];
    return v;
  }
  const s = f.toString('latin1').replace(/\0.*$/s, '').trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new TarError(`invalid tar header: ${what} ${JSON.stringify(s)} is not an octal number`);
  return parseInt(s, 8);
}

function checksumOk(h: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
  return num(h, 148, 8, 'checksum') === sum;
}

/** The records of a pax extended header: keys as text, values as raw bytes. */
function paxRecords(b: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let p = 0;
  while (p < b.length) {
    const sp = b.indexOf(0x20, p);
    if (sp < 0) break;
    const len = parseInt(b.subarray(p, sp).toString('latin1'), 10);
    if (!(len > 0) || p + len > b.length) throw new TarError('invalid pax extended header');
    const rec = b.subarray(sp + 1, p + len - 1); // without the trailing newline
    const eq = rec.indexOf(0x3d);
    if (eq < 0) throw new TarError('invalid pax extended header record (no "=")');
    out.set(rec.subarray(0, eq).toString('utf8'), rec.subarray(eq + 1));
    p += len;
  }
  return out;
}

/** The entries of a tar archive (see the module comment). */
export async function* readTar(input: AsyncIterable<Buffer | Uint8Array>): AsyncGenerator<TarEntry> {
  const bytes = new Bytes(input);
  let pax: Map<string, Buffer> | null = null;
  let longName: string | null = null;
  let longLink: string | null = null;
  for (;;) {
    const h = await bytes.exact(BLOCK);
    if (h === null) return;
    if (h.every((x) => x === 0)) return;
    if (!checksumOk(h)) throw new TarError('invalid tar header (bad checksum): not a tar archive, or a corrupt one');
    const flag = String.fromCharCode(h[156]);
    let size = num(h, 124, 12, 'size');
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    if (flag === 'x' || flag === 'L' || flag === 'K') {
      const body = size === 0 ? Buffer.alloc(0) : Buffer.from((await bytes.exact(size))!);
      await bytes.skip(padded - size);
      if (flag === 'x') pax = paxRecords(body);
      else if (flag === 'L') longName = str(body, 0, body.length);
      else longLink = str(body, 0, body.length);
      continue;
    }
    if (flag === 'g' || flag === 'V') {
      await bytes.skip(padded);
      continue;
    }
    if (flag === 'S') throw new TarError(`GNU sparse file ${str(h, 0, 100)}: not supported (write the layer without --sparse)`);
    const type = TYPES[flag];
    if (!type) throw new TarError(`unsupported tar entry type ${JSON.stringify(flag)} for ${str(h, 0, 100)}`);
    const ustar = h.subarray(257, 263).toString('latin1') === 'ustar\0';
    const prefix = ustar ? str(h, 345, 155) : '';
    let name = longName ?? (prefix ? `${prefix}/${str(h, 0, 100)}` : str(h, 0, 100));
    let linkname = longLink ?? str(h, 157, 100);
    let uid = num(h, 108, 8, 'uid');
    let gid = num(h, 116, 8, 'gid');
    let mtimeMs = num(h, 136, 12, 'mtime') * 1000;
    const xattrs = new Map<string, Buffer>();
    if (pax) {
      for (const [k, v] of pax) {
        if (k === 'path') name = v.toString('utf8');
        else if (k === 'linkpath') linkname = v.toString('utf8');
        else if (k === 'size') size = Number(v.toString('latin1'));
        else if (k === 'uid') uid = Number(v.toString('latin1'));
        else if (k === 'gid') gid = Number(v.toString('latin1'));
        else if (k === 'mtime') mtimeMs = paxTimeMs(v.toString('latin1'));
        else if (k.startsWith('SCHILY.xattr.')) xattrs.set(k.slice(13), Buffer.from(v));
        else if (k.startsWith('LIBARCHIVE.xattr.'))
          xattrs.set(decodeURIComponent(k.slice(17)), Buffer.from(v.toString('latin1'), 'base64'));
      }
      if (!Number.isSafeInteger(size) || size < 0 || !Number.isSafeInteger(uid) || !Number.isSafeInteger(gid))
        throw new TarError(`invalid pax header for ${name}`);
    }
    pax = null;
    longName = null;
    longLink = null;
    const header: TarHeader = {
      name,
      type,
      mode: num(h, 100, 8, 'mode') & 0o7777,
      uid,
      gid,
      size,
      mtimeMs,
      linkname,
      devmajor: type === 'char' || type === 'block' ? num(h, 329, 8, 'devmajor') : 0,
      devminor: type === 'char' || type === 'block' ? num(h, 337, 8, 'devminor') : 0,
      xattrs,
    };
    // A directory's size field is not followed by data (as GNU tar and tar-stream read it); other entries'
    // data is there (empty for links, devices and FIFOs as tars write them) and only a file's is used.
    const bodySize = type === 'dir' ? 0 : size;
    const bodyPadded = Math.ceil(bodySize / BLOCK) * BLOCK;
    let read = false;
    let consumed = 0;
    const entry: TarEntry = {
      header,
      body: async function* () {
        if (read) throw new TarError(`the body of ${name} was already read`);
        read = true;
        for await (const b of bytes.stream(bodySize)) {
          consumed += b.length;
          yield b;
        }
      },
    };
    yield entry;
    await bytes.skip(bodyPadded - consumed);
  }
}
