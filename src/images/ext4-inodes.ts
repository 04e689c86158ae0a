/**
 * What libext2fs's JS binding cannot write, written into the unmounted ext4 filesystem of a volume directly:
 * file times, device nodes and FIFOs, and extended attributes. After a layer is applied (files made through
 * libext2fs, devices and FIFOs as empty regular files standing in for them), `patchInodes` edits the inodes
 * and directory entries in place and redoes their checksums (metadata_csum: crc32c seeded from the filesystem
 * UUID, the inode number and generation).
 *
 * Contract:
 * - Times: i_atime and i_mtime (seconds, and the nanosecond extra fields when the inode has them); past 2038
 *   the extra epoch bits.
 * - Devices and FIFOs: the stand-in inode gets the node's type bits, the device numbers in i_block (the old
 *   16-bit encoding when both fit in a byte, else the new one in i_block[1]), no extent flag; each directory
 *   entry naming it gets the node's file type.
 * - Extended attributes (`user.`, `trusted.`, `security.`) are stored in the inode body (256-byte inodes leave
 *   about 90 bytes); what does not fit, or another namespace, is an error naming the path: nothing is dropped.
 * - Only those fields and the checksums change; `e2fsck -fn` stays clean.
 */
import { ThinpoolError } from '../errors.js';
import type { Volume } from '../thin/volume.js';

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** crc32c as ext4 uses it (no pre/post inversion: the caller passes the seed). */
function crc32cRaw(crc: number, b: Uint8Array): number {
  let c = crc >>> 0;
  for (let i = 0; i < b.length; i++) c = TABLE[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return c >>> 0;
}

export type SpecialKind = 'char' | 'block' | 'fifo';

export interface SpecialNode {
  kind: SpecialKind;
  major: number;
  minor: number;
}

/** A directory entry whose file type must say what its inode became. */
export interface DirentFix {
  dir: number;
  name: string;
  kind: SpecialKind;
  path: string;
}

export interface InodeChanges {
  /** Modification (and access) time in ms, by inode number. */
  times?: Map<number, number>;
  /** Stand-in inodes that become device nodes or FIFOs. */
  specials?: Map<number, SpecialNode>;
  dirents?: DirentFix[];
  /** Extended attributes by inode number, with the path they came from (for errors). */
  xattrs?: Map<number, { path: string; attrs: Map<string, Buffer> }>;
}

interface Geometry {
  blockSize: number;
  inodesPerGroup: number;
  inodeSize: number;
  descSize: number;
  is64: boolean;
  csum: boolean;
  filetype: boolean;
  extAttr: boolean;
  seed: number;
  gdtOffset: number;
}

function geometry(v: Volume): Geometry {
  const sb = Buffer.alloc(1024);
  v.readSync(sb, 1024);
  if (sb.readUInt16LE(0x38) !== 0xef53) throw new ThinpoolError('EINVAL', `volume ${v.label} holds no ext4 filesystem`);
  const blockSize = 1024 << sb.readUInt32LE(0x18);
  const compat = sb.readUInt32LE(0x5c);
  const incompat = sb.readUInt32LE(0x60);
  const roCompat = sb.readUInt32LE(0x64);
  const is64 = (incompat & 0x80) !== 0;
  const csum = (roCompat & 0x400) !== 0;
  let seed = 0;
  if (csum) seed = (incompat & 0x2000) !== 0 ? sb.readUInt32LE(0x270) : crc32cRaw(0xffffffff, sb.subarray(0x68, 0x78));
  return {
    blockSize,
    inodesPerGroup: sb.readUInt32LE(0x28),
    inodeSize: sb.readUInt16LE(0x58),
    descSize: is64 ? Math.max(32, sb.readUInt16LE(0xfe)) : 32,
    is64,
    csum,
    filetype: (incompat & 0x2) !== 0,
    extAttr: (compat & 0x8) !== 0,
    seed,
    gdtOffset: (blockSize === 1024 ? 2 : 1) * blockSize,
  };
}

const le32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
};

/** Reads and writes inodes and blocks of one filesystem, keeping their checksums right. */
class Ext4Editor {
  readonly g: Geometry;
  private readonly tables = new Map<number, number>();
  private readonly tableBlocks = new Map<number, { b: Buffer; dirty: boolean }>();
  constructor(readonly v: Volume) {
    this.g = geometry(v);
  }

  private inodePos(ino: number): number {
    const g = this.g;
    const group = Math.floor((ino - 1) / g.inodesPerGroup);
    let table = this.tables.get(group);
    if (table === undefined) {
      const desc = Buffer.alloc(g.descSize);
      this.v.readSync(desc, g.gdtOffset + group * g.descSize);
      table = desc.readUInt32LE(0x08) + (g.is64 ? desc.readUInt32LE(0x28) * 2 ** 32 : 0);
      this.tables.set(group, table);
    }
    return table * g.blockSize + ((ino - 1) % g.inodesPerGroup) * g.inodeSize;
  }

  /**
   * The inode table block holding an inode, read once: inodes are read from and written into it, and
   * `flush()` writes the blocks written to (one I/O per block instead of one per inode).
   */
  private tableBlock(ino: number): { block: { b: Buffer; dirty: boolean }; at: number } {
    const pos = this.inodePos(ino);
    const start = pos - (pos % this.g.blockSize);
    let block = this.tableBlocks.get(start);
    if (!block) {
      block = { b: Buffer.alloc(this.g.blockSize), dirty: false };
      this.v.readSync(block.b, start);
      this.tableBlocks.set(start, block);
    }
    return { block, at: pos - start };
  }

  /** A copy of the inode (see tableBlock). */
  readInode(ino: number): Buffer {
    const { block, at } = this.tableBlock(ino);
    return Buffer.from(block.b.subarray(at, at + this.g.inodeSize));
  }

  /** Bytes of the inode past the first 128 that are fields (i_extra_isize). */
  extra(inode: Buffer): number {
    return this.g.inodeSize > 128 ? inode.readUInt16LE(0x80) : 0;
  }

  writeInode(ino: number, inode: Buffer): void {
    if (this.g.csum) {
      const hasHi = 128 + this.extra(inode) >= 0x84;
      inode.writeUInt16LE(0, 0x7c);
      if (hasHi) inode.writeUInt16LE(0, 0x82);
      let c = crc32cRaw(this.g.seed, le32(ino));
      c = crc32cRaw(c, inode.subarray(0x64, 0x68)); // i_generation
      c = crc32cRaw(c, inode);
      inode.writeUInt16LE(c & 0xffff, 0x7c);
      if (hasHi) inode.writeUInt16LE(c >>> 16, 0x82);
    }
    const { block, at } = this.tableBlock(ino);
    block.b.set(inode.subarray(0, this.g.inodeSize), at);
    block.dirty = true;
  }

  /** Write the inode table blocks that inodes were written into. */
  flush(): void {
    for (const [start, block] of this.tableBlocks) {
      if (!block.dirty) continue;
      this.v.writeSync(block.b, start);
      block.dirty = false;
    }
  }

  readBlock(n: number): Buffer {
    const b = Buffer.alloc(this.g.blockSize);
    this.v.readSync(b, n * this.g.blockSize);
    return b;
  }

  /** Physical blocks of an inode that uses extents, in logical order. */
  blocksOf(inode: Buffer, what: string): number[] {
    if ((inode.readUInt32LE(0x20) & 0x80000) === 0) throw new ThinpoolError('EINVAL', `${what} does not use extents: cannot edit it`);
    const out: number[] = [];
    const walk = (node: Buffer, depth: number): void => {
      if (node.readUInt16LE(0) !== 0xf30a) throw new ThinpoolError('EIO', `${what}: damaged extent tree`);
      const entries = node.readUInt16LE(2);
      const d = node.readUInt16LE(6);
      if (d > 5 || depth > 5) throw new ThinpoolError('EIO', `${what}: extent tree too deep`);
      for (let i = 0; i < entries; i++) {
        const e = node.subarray(12 + 12 * i, 24 + 12 * i);
        if (d === 0) {
          let len = e.readUInt16LE(4);
          if (len > 32768) len -= 32768;
          const start = e.readUInt16LE(6) * 2 ** 32 + e.readUInt32LE(8);
          for (let k = 0; k < len; k++) out.push(start + k);
        } else walk(this.readBlock(e.readUInt16LE(8) * 2 ** 32 + e.readUInt32LE(4)), depth + 1);
      }
    };
    walk(inode.subarray(0x28, 0x28 + 60), 0);
    return out;
  }

  /** Write a directory block back, redoing its dirent-tail checksum when it has one. */
  writeDirBlock(dirIno: number, dirInode: Buffer, n: number, b: Buffer): void {
    const bs = this.g.blockSize;
    if (this.g.csum && b.readUInt32LE(bs - 12) === 0 && b.readUInt16LE(bs - 8) === 12 && b[bs - 5] === 0xde) {
      let c = crc32cRaw(this.g.seed, le32(dirIno));
      c = crc32cRaw(c, dirInode.subarray(0x64, 0x68));
      c = crc32cRaw(c, b.subarray(0, bs - 12));
      b.writeUInt32LE(c, bs - 4);
    }
    this.v.writeSync(b, n * bs);
  }
}

const FT: Record<SpecialKind, number> = { char: 3, block: 4, fifo: 5 };
const IFMT: Record<SpecialKind, number> = { char: 0o020000, block: 0o060000, fifo: 0o010000 };

function setTimes(ed: Ext4Editor, inode: Buffer, ms: number): void {
  const secs = Math.floor(ms / 1000);
  const nsec = Math.round((ms - secs * 1000) * 1e6);
  const lo = secs >>> 0;
  const epoch = Math.floor((secs - (secs | 0)) / 2 ** 32) & 3;
  inode.writeUInt32LE(lo, 0x08); // atime
  inode.writeUInt32LE(lo, 0x10); // mtime
  const extra = ed.extra(inode);
  const extraVal = ((nsec << 2) | epoch) >>> 0;
  if (128 + extra >= 0x8c) inode.writeUInt32LE(extraVal, 0x88); // mtime_extra
  if (128 + extra >= 0x90) inode.writeUInt32LE(extraVal, 0x8c); // atime_extra
}

function makeSpecial(inode: Buffer, s: SpecialNode): void {
  inode.writeUInt16LE(IFMT[s.kind] | (inode.readUInt16LE(0) & 0o7777), 0);
  inode.writeUInt32LE(inode.readUInt32LE(0x20) & ~0x80000, 0x20); // no extents
  inode.fill(0, 0x28, 0x28 + 60);
  inode.writeUInt32LE(0, 0x04);
  inode.writeUInt32LE(0, 0x6c);
  if (s.kind === 'fifo') return;
  if (s.major < 256 && s.minor < 256) inode.writeUInt32LE((s.major << 8) | s.minor, 0x28);
  else inode.writeUInt32LE(((s.minor & 0xff) | (s.major << 8) | ((s.minor & ~0xff) << 12)) >>> 0, 0x2c);
}

const XATTR_INDEX: Array<[string, number]> = [
  ['user.', 1],
  ['trusted.', 4],
  ['security.', 6],
];

function xattrHash(name: Buffer, value: Buffer): number {
  let h = 0;
  for (const c of name) h = ((h << 5) ^ (h >>> 27) ^ (c > 127 ? c - 256 : c)) >>> 0;
  const padded = Buffer.alloc(Math.ceil(value.length / 4) * 4);
  value.copy(padded);
  for (let i = 0; i < padded.length; i += 4) h = ((h << 16) ^ (h >>> 16) ^ padded.readUInt32LE(i)) >>> 0;
  return h;
}

/** Lay the attributes out in the inode body after i_extra_isize (replacing any there). */
function setXattrs(ed: Ext4Editor, inode: Buffer, path: string, attrs: Map<string, Buffer>): void {
  if (!ed.g.extAttr) throw new ThinpoolError('EINVAL', `${path}: the image filesystem has no extended attribute support (ext_attr)`);
  const start = 128 + ed.extra(inode);
  const first = start + 4;
  const end = ed.g.inodeSize;
  let entry = first;
  let valueEnd = end;
  const entries: Buffer[] = [];
  for (const [full, value] of [...attrs].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const ns = XATTR_INDEX.find(([p]) => full.startsWith(p));
    if (!ns)
      throw new ThinpoolError(
        'EINVAL',
        `${path}: extended attribute ${full} is in a namespace image layers cannot carry here (only user.*, trusted.*, security.*)`,
      );
    const name = Buffer.from(full.slice(ns[0].length), 'utf8');
    if (name.length === 0 || name.length > 255)
      throw new ThinpoolError('EINVAL', `${path}: extended attribute name ${JSON.stringify(full)} is empty or too long`);
    const esize = (16 + name.length + 3) & ~3;
    const vsize = (value.length + 3) & ~3;
    valueEnd -= vsize;
    if (entry + esize + 4 > valueEnd) {
      throw new ThinpoolError(
        'EINVAL',
        `${path}: its extended attributes (${[...attrs.keys()].join(', ')}) need more than the ${end - first - 4} bytes an inode holds: not supported (no attribute block is written)`,
      );
    }
    const e = Buffer.alloc(esize);
    e[0] = name.length;
    e[1] = ns[1];
    e.writeUInt16LE(valueEnd - first, 2);
    e.writeUInt32LE(0, 4);
    e.writeUInt32LE(value.length, 8);
    e.writeUInt32LE(xattrHash(name, value), 12);
    name.copy(e, 16);
    entries.push(e);
    entry += esize;
    inode.fill(0, valueEnd, valueEnd + vsize);
    value.copy(inode, valueEnd);
  }
  if (start + 4 > end) throw new ThinpoolError('EINVAL', `${path}: inodes of this filesystem have no room for extended attributes`);
  inode.fill(0, start, valueEnd);
  if (entries.length === 0) return;
  inode.writeUInt32LE(0xea020000, start);
  let p = first;
  for (const e of entries) {
    e.copy(inode, p);
    p += e.length;
  }
}

/** Find the entry `name` in directory `dir` and set its file type. */
function fixDirent(ed: Ext4Editor, f: DirentFix): void {
  if (!ed.g.filetype) return;
  const dirInode = ed.readInode(f.dir);
  const want = Buffer.from(f.name, 'utf8');
  for (const n of ed.blocksOf(dirInode, `directory of ${f.path}`)) {
    const b = ed.readBlock(n);
    for (let off = 0; off + 8 <= b.length; ) {
      const recLen = b.readUInt16LE(off + 4);
      if (recLen < 8) break;
      const nameLen = b[off + 6];
      if (b.readUInt32LE(off) !== 0 && nameLen === want.length && b.subarray(off + 8, off + 8 + nameLen).equals(want)) {
        b[off + 7] = FT[f.kind];
        ed.writeDirBlock(f.dir, dirInode, n, b);
        return;
      }
      off += recLen;
    }
  }
  throw new ThinpoolError('EIO', `${f.path}: its directory entry was not found to set its type`);
}

/** Apply the changes (see the module comment) to the unmounted filesystem of v. */
export function patchInodes(v: Volume, c: InodeChanges): void {
  const inos = new Set<number>([...(c.times?.keys() ?? []), ...(c.specials?.keys() ?? []), ...(c.xattrs?.keys() ?? [])]);
  if (inos.size === 0 && !c.dirents?.length) return;
  const ed = new Ext4Editor(v);
  for (const ino of [...inos].sort((a, b) => a - b)) {
    const inode = ed.readInode(ino);
    const sp = c.specials?.get(ino);
    if (sp) makeSpecial(inode, sp);
    const x = c.xattrs?.get(ino);
    if (x) setXattrs(ed, inode, x.path, x.attrs);
    const t = c.times?.get(ino);
    if (t !== undefined) setTimes(ed, inode, t);
    ed.writeInode(ino, inode);
  }
  ed.flush();
  for (const f of c.dirents ?? []) fixDirent(ed, f);
}

/** Set atime and mtime (milliseconds since the epoch) of inodes, by inode number. */
export function setInodeTimes(v: Volume, times: Map<number, number>): void {
  patchInodes(v, { times });
}
