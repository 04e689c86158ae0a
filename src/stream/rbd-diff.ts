/**
 * Ceph's `rbd export-diff` stream format, v1 and v2 (the records Ceph documents for incremental backup): a
 * banner, metadata records (from-snap 'f', to-snap 't', image size 's'), data records (updated data 'w', zeroed
 * range 'z') and the end record 'e'. All integers are little-endian.
 *
 *   v1: banner "rbd diff v1\n"; 'f'/'t': le32 name length + name; 's': le64 size; 'w': le64 offset, le64 length,
 *       data; 'z': le64 offset, le64 length; 'e'.
 *   v2: banner "rbd diff v2\n"; every record but 'e' carries an le64 length of what follows its tag, so a reader
 *       skips tags it does not know ('p', Ceph's snapshot protection flag, is one byte and is read and ignored).
 *
 * Contract:
 * - The encoder returns each record as bytes; a data record's payload is passed through, not copied.
 * - The decoder reads from any async source of byte chunks (a Readable, a pipe) in bounded memory: a data
 *   record is handed on in pieces of at most `maxPiece` bytes (each with its own offset), never whole.
 * - A stream that ends before 'e', a bad banner, an unknown tag in v1, a v2 length that disagrees with its
 *   record, a name longer than 4096 bytes, a data record before the size record or past the image size, and a
 *   metadata record after a data record are all `ThinpoolError('ESTREAM')` naming the byte offset in the stream.
 *   Bytes after 'e' are not read, and the source is not closed then; on an error it is released (return()).
 */
import { ThinpoolError } from '../errors.js';

const BANNER_V1 = 'rbd diff v1\n';
const BANNER_V2 = 'rbd diff v2\n';
/** Longest snapshot name accepted (rbd's own limit when it reads one). */
const MAX_NAME = 4096;
/** Default largest piece of a data record the decoder hands on. */
export const DEFAULT_PIECE = 1024 * 1024;

export type DiffVersion = 1 | 2;

const TAG = { from: 0x66, to: 0x74, size: 0x73, write: 0x77, zero: 0x7a, end: 0x65, protect: 0x70 } as const;

// ---- encoder ----

/** Builds the records of one stream (v1 or v2). */
export class DiffEncoder {
  readonly version: DiffVersion;
  constructor(version: DiffVersion = 1) {
    if (version !== 1 && version !== 2) throw new ThinpoolError('EINVAL', `rbd diff stream version ${String(version)} is not 1 or 2`);
    this.version = version;
  }

  banner(): Uint8Array {
    return Buffer.from(this.version === 1 ? BANNER_V1 : BANNER_V2, 'latin1');
  }

  private head(tag: number, bodyLength: number, extra: number): Buffer {
    const v2 = this.version === 2 ? 8 : 0;
    const b = Buffer.alloc(1 + v2 + extra);
    b[0] = tag;
    if (v2) b.writeBigUInt64LE(BigInt(bodyLength), 1);
    return b;
  }

  private named(tag: number, name: string): Uint8Array {
    const n = Buffer.from(name, 'utf8');
    if (n.length > MAX_NAME)
      throw new ThinpoolError('EINVAL', `snapshot name is ${n.length} bytes, more than the ${MAX_NAME} an rbd diff stream allows`);
    const b = this.head(tag, 4 + n.length, 4 + n.length);
    const at = b.length - 4 - n.length;
    b.writeUInt32LE(n.length, at);
    n.copy(b, at + 4);
    return b;
  }

  fromSnap(name: string): Uint8Array {
    return this.named(TAG.from, name);
  }

  toSnap(name: string): Uint8Array {
    return this.named(TAG.to, name);
  }

  size(bytes: number): Uint8Array {
    const b = this.head(TAG.size, 8, 8);
    b.writeBigUInt64LE(BigInt(bytes), b.length - 8);
    return b;
  }

  private range(tag: number, offset: number, length: number, payload: number): Buffer {
    const b = this.head(tag, 16 + payload, 16);
    b.writeBigUInt64LE(BigInt(offset), b.length - 16);
    b.writeBigUInt64LE(BigInt(length), b.length - 8);
    return b;
  }

  /** The header of a data record; `length` bytes of data must follow it. */
  writeHeader(offset: number, length: number): Uint8Array {
    return this.range(TAG.write, offset, length, length);
  }

  zero(offset: number, length: number): Uint8Array {
    return this.range(TAG.zero, offset, length, 0);
  }

  end(): Uint8Array {
    return Uint8Array.of(TAG.end);
  }
}

// ---- decoder ----

export type DiffRecord =
  | { type: 'from'; name: string }
  | { type: 'to'; name: string }
  | { type: 'size'; size: number }
  /** A piece of a data record: `data` goes at `offset` (a record longer than the piece size comes in several). */
  | { type: 'write'; offset: number; data: Uint8Array }
  | { type: 'zero'; offset: number; length: number }
  | { type: 'end' };

export interface DecodeOptions {
  /** Largest data piece handed on (default 1 MiB). */
  maxPiece?: number;
  /** Called with the number of stream bytes consumed so far (progress). */
  onBytes?: (consumed: number) => void;
}

type Source = AsyncIterable<Uint8Array | string> | Iterable<Uint8Array>;

/** Reads exact byte counts from an async chunk source, keeping at most one source chunk buffered. */
class ByteReader {
  private readonly it: AsyncIterator<Uint8Array | string> | Iterator<Uint8Array>;
  private chunk: Uint8Array = new Uint8Array(0);
  private pos = 0;
  private ended = false;
  /** Bytes consumed so far. */
  consumed = 0;

  constructor(src: Source) {
    this.it =
      Symbol.asyncIterator in src
        ? (src as AsyncIterable<Uint8Array | string>)[Symbol.asyncIterator]()
        : (src as Iterable<Uint8Array>)[Symbol.iterator]();
  }

  private async fill(): Promise<boolean> {
    while (this.pos >= this.chunk.length) {
      if (this.ended) return false;
      const r = await this.it.next();
      if (r.done) {
        this.ended = true;
        return false;
      }
      const v = r.value;
      this.chunk = typeof v === 'string' ? Buffer.from(v, 'latin1') : v;
      this.pos = 0;
    }
    return true;
  }

  /** Up to max bytes (at least 1), or null at the end of the source. The view is valid until the next call. */
  async some(max: number): Promise<Uint8Array | null> {
    if (!(await this.fill())) return null;
    const n = Math.min(max, this.chunk.length - this.pos);
    const out = this.chunk.subarray(this.pos, this.pos + n);
    this.pos += n;
    this.consumed += n;
    return out;
  }

  /** Exactly n bytes (copied), or throws ESTREAM naming what was being read. */
  async exact(n: number, what: string): Promise<Buffer> {
    const out = Buffer.alloc(n);
    let got = 0;
    while (got < n) {
      const part = await this.some(n - got);
      if (part === null) throw truncated(this.consumed, what);
      out.set(part, got);
      got += part.length;
    }
    return out;
  }

  async close(): Promise<void> {
    await this.it.return?.();
  }
}

function truncated(at: number, what: string): ThinpoolError {
  return new ThinpoolError(
    'ESTREAM',
    `rbd diff stream ends at byte ${at}, inside ${what}: the stream is truncated (nothing was applied); send it again`,
  );
}

function corrupt(at: number, what: string): ThinpoolError {
  return new ThinpoolError('ESTREAM', `rbd diff stream is corrupt at byte ${at}: ${what}`);
}

function u64(b: Buffer, at: number, pos: number, what: string): number {
  const v = b.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(pos, `${what} ${v} is out of range`);
  return Number(v);
}

/**
 * Decode an rbd diff stream (v1 or v2, told by its banner). Yields the records in stream order and stops after
 * 'e'. Throws ESTREAM on anything malformed (see the contract above); the caller decides what was applied.
 */
export async function* decodeDiff(src: Source, opts: DecodeOptions = {}): AsyncGenerator<DiffRecord, void, undefined> {
  const maxPiece = Math.max(1, opts.maxPiece ?? DEFAULT_PIECE);
  const r = new ByteReader(src);
  let finished = false;
  try {
    const banner = await r.exact(BANNER_V1.length, 'the banner').catch((e: unknown) => {
      throw r.consumed === 0
        ? new ThinpoolError('ESTREAM', 'rbd diff stream is empty: expected the banner "rbd diff v1" or "rbd diff v2"', { cause: e })
        : e;
    });
    const text = banner.toString('latin1');
    const version: DiffVersion | null = text === BANNER_V1 ? 1 : text === BANNER_V2 ? 2 : null;
    if (version === null)
      throw corrupt(0, `banner ${JSON.stringify(text)} is not "rbd diff v1\\n" or "rbd diff v2\\n" (not an rbd export-diff stream)`);
    let size: number | null = null;
    let inData = false;
    for (;;) {
      opts.onBytes?.(r.consumed);
      const at = r.consumed;
      const tagB = await r.exact(1, 'a record tag');
      const tag = tagB[0]!;
      if (tag === TAG.end) {
        finished = true;
        yield { type: 'end' };
        return;
      }
      let len = -1;
      if (version === 2) len = u64(await r.exact(8, `the length of record '${String.fromCharCode(tag)}'`), 0, at + 1, 'record length');
      const expect = (n: number, what: string): void => {
        if (version === 2 && len !== n) throw corrupt(at, `${what} record says it is ${len} bytes long, expected ${n}`);
      };
      switch (tag) {
        case TAG.from:
        case TAG.to: {
          const what = tag === TAG.from ? 'from-snap' : 'to-snap';
          if (inData) throw corrupt(at, `${what} record after data records`);
          const n = (await r.exact(4, `the ${what} name length`)).readUInt32LE(0);
          if (n > MAX_NAME) throw corrupt(at, `${what} name is ${n} bytes long (at most ${MAX_NAME})`);
          expect(4 + n, what);
          const name = (await r.exact(n, `the ${what} name`)).toString('utf8');
          yield tag === TAG.from ? { type: 'from', name } : { type: 'to', name };
          break;
        }
        case TAG.size: {
          if (inData) throw corrupt(at, 'size record after data records');
          expect(8, 'size');
          size = u64(await r.exact(8, 'the image size'), 0, at, 'image size');
          yield { type: 'size', size };
          break;
        }
        case TAG.write:
        case TAG.zero: {
          const what = tag === TAG.write ? 'data' : 'zero';
          const head = await r.exact(16, `the ${what} record's offset and length`);
          const offset = u64(head, 0, at, `${what} offset`);
          const length = u64(head, 8, at, `${what} length`);
          expect(tag === TAG.write ? 16 + length : 16, what);
          if (size === null) throw corrupt(at, `${what} record before the size record`);
          if (offset + length > size) throw corrupt(at, `${what} record ${offset}+${length} runs past the image size ${size}`);
          inData = true;
          if (tag === TAG.zero) {
            yield { type: 'zero', offset, length };
            break;
          }
          for (let done = 0; done < length; ) {
            const piece = await r.exact(Math.min(maxPiece, length - done), `the ${length} bytes of a data record at offset ${offset}`);
            yield { type: 'write', offset: offset + done, data: piece };
            done += piece.length;
            opts.onBytes?.(r.consumed);
          }
          break;
        }
        case TAG.protect:
          if (version === 2) {
            expect(1, 'protection status');
            await r.exact(1, 'the protection status');
            break;
          }
          throw corrupt(at, `unknown record tag 0x${tag.toString(16)} ('${String.fromCharCode(tag)}') in a v1 stream`);
        default: {
          if (version === 1) throw corrupt(at, `unknown record tag 0x${tag.toString(16)} in a v1 stream`);
          // v2: skip a record this reader does not know, without holding it.
          for (let left = len; left > 0; ) {
            const part = await r.some(Math.min(left, 65536));
            if (part === null) throw truncated(r.consumed, `an unknown record (tag 0x${tag.toString(16)})`);
            left -= part.length;
          }
        }
      }
    }
  } finally {
    // After the end record the source is left as it is (the rest belongs to the caller); otherwise released.
    if (!finished) await r.close();
  }
}
