/**
 * thin_dump's XML lines written as ASCII bytes straight into a fixed buffer, for dumps of any size: no string
 * per line, so a dump of millions of mappings leaves no garbage behind and its memory is the buffer.
 *
 * Contract: `XmlBytes` writes exactly the characters `xmlSuperblockOpen`, `xmlDeviceOpen`, `xmlMappingLine` and
 * the closing tags of thin-xml.ts make (numbers are non-negative integers below 2^53, printed in decimal).
 * `full` says the buffer holds at least `pieceBytes`; `take()` hands the bytes written so far over as a view of
 * the buffer and starts again at its beginning: the view is valid until the next write (copy it to keep it).
 * The buffer grows only while one piece is being filled past its size (never beyond a piece plus one leaf's
 * lines in a dump).
 */
import {
  XML_DEVICE_CLOSE,
  XML_SUPERBLOCK_CLOSE,
  xmlDeviceOpen,
  xmlSuperblockOpen,
  type XmlDevice,
  type XmlSuperblock,
} from './thin-xml.js';

const SINGLE_1 = Buffer.from('    <single_mapping origin_block="');
const SINGLE_2 = Buffer.from('" data_block="');
const RANGE_1 = Buffer.from('    <range_mapping origin_begin="');
const RANGE_2 = Buffer.from('" data_begin="');
const RANGE_3 = Buffer.from('" length="');
const TIME = Buffer.from('" time="');
const END = Buffer.from('"/>\n');
/** Longest line a mapping can make: four numbers of at most 16 digits and the fixed text. */
const MAX_LINE = 256;

export class XmlBytes {
  private buf: Buffer;
  private pos = 0;
  private readonly pieceBytes: number;

  constructor(pieceBytes = 1 << 20) {
    this.pieceBytes = pieceBytes;
    this.buf = Buffer.allocUnsafe(pieceBytes + MAX_LINE);
  }

  get full(): boolean {
    return this.pos >= this.pieceBytes;
  }

  take(): Buffer {
    const out = this.buf.subarray(0, this.pos);
    this.pos = 0;
    return out;
  }

  /** Any text (header lines): may grow the buffer. */
  text(s: string): void {
    this.room(Buffer.byteLength(s));
    this.pos += this.buf.write(s, this.pos);
  }

  private room(need: number): void {
    if (this.pos + need + MAX_LINE <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(2 * (this.pos + need + MAX_LINE));
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
  }

  superblockOpen(sb: Omit<XmlSuperblock, 'devices' | 'uuid'>): void {
    this.text(xmlSuperblockOpen(sb));
  }

  deviceOpen(dev: Omit<XmlDevice, 'mappings'>): void {
    this.text(xmlDeviceOpen(dev));
  }

  deviceClose(): void {
    this.text(XML_DEVICE_CLOSE);
  }

  superblockClose(): void {
    this.text(XML_SUPERBLOCK_CLOSE);
  }

  /** One coalesced run (length >= 1): a single_mapping or a range_mapping line. */
  mapping(vblock: number, dblock: number, length: number, time: number): void {
    if (this.pos + MAX_LINE > this.buf.length) this.room(0);
    if (length === 1) {
      this.bytes(SINGLE_1);
      this.num(vblock);
      this.bytes(SINGLE_2);
      this.num(dblock);
    } else {
      this.bytes(RANGE_1);
      this.num(vblock);
      this.bytes(RANGE_2);
      this.num(dblock);
      this.bytes(RANGE_3);
      this.num(length);
    }
    this.bytes(TIME);
    this.num(time);
    this.bytes(END);
  }

  private bytes(b: Buffer): void {
    b.copy(this.buf, this.pos);
    this.pos += b.length;
  }

  private num(n: number): void {
    const buf = this.buf;
    if (n < 10) {
      buf[this.pos++] = 48 + n;
      return;
    }
    let digits = 1;
    for (let p = 10; p <= n && digits < 17; p *= 10) digits++;
    let end = this.pos + digits;
    this.pos = end;
    while (n >= 10) {
      const q = Math.floor(n / 10);
      buf[--end] = 48 + (n - q * 10);
      n = q;
    }
    buf[--end] = 48 + n;
  }
}
