/**
 * Applying a layer tarball (plain, gzip or zstd) to the filesystem of an active snapshot, with OCI whiteouts.
 *
 * Rules (as Docker/containerd unpack a layer):
 * - Entry paths are taken relative to the root; a `..` that climbs above the root is refused, and so is writing
 *   through a symbolic link (a parent component that is a link, whatever its target): an error, nothing
 *   outside the path asked for is touched.
 * - Regular files, directories, symbolic links, hard links, device nodes and FIFOs are created with their mode
 *   (setuid, setgid and sticky bits included) and owner; a path that exists is replaced (an existing directory
 *   stays when the entry is a directory: mode and owner set). Extended attributes (pax `SCHILY.xattr.*`) are
 *   kept. What libext2fs cannot make (device nodes, FIFOs, attributes, times) is recorded in the result and
 *   written into the inodes once unmounted (`patchInodes`, ext4-inodes.ts); nothing is skipped silently.
 * - `.wh.NAME` deletes NAME; `.wh..wh..opq` deletes every entry of its directory that this layer did not
 *   itself unpack.
 * - The diff id is the sha256 of the uncompressed stream; with `expectDiffId` a mismatch is an error.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Decompress } from 'fzstd';
import { ThinpoolError } from '../errors.js';
import type { DirentFix, InodeChanges, SpecialKind } from './ext4-inodes.js';
import { CHUNK, type FsSession } from './fs-worker.js';
import { readTar, TarError } from './tar-reader.js';

export interface ApplyResult extends InodeChanges {
  diffId: string;
  entries: number;
  /** Entries not applied: always 0 (what cannot be represented is an error); kept for callers that print it. */
  skipped: number;
  bytes: number;
  /** Modification times from the tar (ms), by inode number: written with patchInodes once unmounted. */
  times: Map<number, number>;
  specials: Map<number, { kind: SpecialKind; major: number; minor: number }>;
  dirents: DirentFix[];
  xattrs: Map<number, { path: string; attrs: Map<string, Buffer> }>;
}

/** Normalize a tar path to "/a/b"; "" for the root. Throws on a path that climbs above the root. */
export function cleanPath(name: string, what = 'path'): string {
  const out: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length === 0) throw new ThinpoolError('EINVAL', `layer ${what} ${JSON.stringify(name)} escapes the root`);
      out.pop();
    } else out.push(part);
  }
  return out.length ? '/' + out.join('/') : '';
}

/** A stream of zstd-compressed bytes, decompressed (fzstd, in this thread). */
function unzstd(raw: Readable): Readable {
  const out = new Readable({
    read() {
      raw.resume();
    },
  });
  const dec = new Decompress((chunk) => {
    if (!out.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength))) raw.pause();
  });
  raw.on('data', (c: Buffer) => {
    try {
      dec.push(c);
    } catch (e) {
      raw.destroy();
      out.destroy(new ThinpoolError('EINVAL', `corrupt zstd data: ${(e as Error).message}`));
    }
  });
  raw.on('end', () => {
    try {
      dec.push(new Uint8Array(0), true);
      out.push(null);
    } catch (e) {
      out.destroy(new ThinpoolError('EINVAL', `truncated or corrupt zstd data: ${(e as Error).message}`));
    }
  });
  raw.on('error', (e) => out.destroy(e));
  return out;
}

async function magic(path: string): Promise<'gzip' | 'zstd' | 'plain'> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await fh.read(head, 0, 4, 0);
    if (bytesRead >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
    if (bytesRead >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
    return 'plain';
  } finally {
    await fh.close();
  }
}

/** An uncompressed tar stream of a file, by its magic: gzip, zstd, or plain (each chunk its own buffer). */
export async function openLayer(path: string): Promise<Readable> {
  const kind = await magic(path);
  const raw = createReadStream(path, { highWaterMark: CHUNK });
  if (kind === 'gzip') return raw.pipe(createGunzip());
  if (kind === 'zstd') return unzstd(raw);
  return raw;
}

/**
 * A file's bytes in chunks of at most CHUNK bytes, read into two buffers in turn (no fresh memory per chunk):
 * a chunk stays valid until the next-but-one is read, so its consumer copies what it keeps.
 */
export async function* fileChunks(path: string): AsyncGenerator<Buffer> {
  const fh = await open(path, 'r');
  try {
    const bufs = [Buffer.allocUnsafeSlow(CHUNK), Buffer.allocUnsafeSlow(CHUNK)];
    for (let i = 0, pos = 0; ; i ^= 1) {
      const { bytesRead } = await fh.read(bufs[i], 0, CHUNK, pos);
      if (bytesRead === 0) return;
      pos += bytesRead;
      yield bufs[i].subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}

/**
 * Like openLayer, for consumers that copy what they keep of a chunk before reading the next-but-one (hashing,
 * readTar and applyLayer): a plain tar comes through fileChunks' two reused buffers.
 */
export async function layerChunks(path: string): Promise<AsyncIterable<Buffer>> {
  return (await magic(path)) === 'plain' ? fileChunks(path) : openLayer(path);
}

/** sha256 of a stream, as "sha256:hex". */
export async function digestStream(s: AsyncIterable<Buffer | Uint8Array>): Promise<string> {
  const h = createHash('sha256');
  for await (const c of s) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}

/** A layer whose tar stream is empty once uncompressed: no tar archive at all (an empty layer is 1 KiB of zeros). */
export function emptyLayer(label: string): ThinpoolError {
  return new ThinpoolError('EINVAL', `layer ${label} is empty once uncompressed: not a tar archive`);
}

function wrapTarError(e: unknown, label: string): unknown {
  if (e instanceof ThinpoolError) return e;
  const msg = (e as Error)?.message ?? String(e);
  if ((e as { code?: string })?.code === 'ESYMLINK' || (e as { code?: string })?.code === 'ENOTDIR')
    return new ThinpoolError('EINVAL', `layer ${label}: ${msg}`, { cause: e });
  const libErr = /UNKNOWN \((\d{10})\)/.exec(msg);
  if ((e as { code?: string })?.code === 'ENOSPC' || (libErr && Number(libErr[1]) >= 2133571328)) {
    return new ThinpoolError(
      'EINVAL',
      `layer ${label}: the image's filesystem refused a write (${libErr ? `libext2fs error ${libErr[1]}` : 'ENOSPC'}): it is probably full; import with a larger --fs-size`,
      { cause: e },
    );
  }
  if (
    e instanceof TarError ||
    /Unexpected end|unexpected end|Invalid tar|incorrect header|invalid|Z_/.test(msg) ||
    (e as { code?: string })?.code?.startsWith?.('Z_')
  ) {
    return new ThinpoolError('EINVAL', `layer ${label} is not a valid tar archive (truncated or corrupt): ${msg}`, { cause: e });
  }
  return e;
}

const KINDS: Record<string, SpecialKind> = { char: 'char', block: 'block', fifo: 'fifo' };

/**
 * Apply an uncompressed tar stream to a mounted filesystem. `checkpoint`, when given, is awaited every few
 * entries and every MiB of a large file: it may throw to stop the apply (an interrupted command).
 */
export async function applyLayer(
  fs: FsSession,
  input: AsyncIterable<Buffer | Uint8Array>,
  opts: { label: string; expectDiffId?: string; checkpoint?: () => Promise<void> },
): Promise<ApplyResult> {
  const hash = createHash('sha256');
  // An input that ends cleanly with no byte at all is no tar archive (refused with its own message).
  let inputBytes = 0;
  let inputEnded = false;
  async function* hashing(): AsyncGenerator<Buffer> {
    for await (const c of input) {
      hash.update(c as Buffer);
      inputBytes += (c as Buffer).length;
      yield c as Buffer;
    }
    inputEnded = true;
  }
  const hashed = hashing();
  const unpacked = new Set<string>();
  const opaque: string[] = [];
  let entries = 0;
  let bytes = 0;
  const times = new Map<number, number>();
  const specials = new Map<number, { kind: SpecialKind; major: number; minor: number }>();
  const dirents: DirentFix[] = [];
  const xattrs = new Map<number, { path: string; attrs: Map<string, Buffer> }>();
  const batch = fs.batch();
  try {
    for await (const entry of readTar(hashed)) {
      const h = entry.header;
      const path = cleanPath(h.name);
      if (opts.checkpoint && entries % 16 === 0) await opts.checkpoint();
      await batch.room();
      entries++;
      const base = path.slice(path.lastIndexOf('/') + 1);
      const parent = path.slice(0, path.lastIndexOf('/')) || '/';
      if (base === '.wh..wh..opq') {
        opaque.push(parent);
        continue;
      }
      if (base.startsWith('.wh.')) {
        const victim = (parent === '/' ? '' : parent) + '/' + base.slice(4);
        batch.rmrf(victim);
        continue;
      }
      if (path === '') {
        // the root itself
        if (h.type === 'dir') {
          await batch.settle(); // its failure is ignored: an unchained call, once everything before it is applied
          await fs.put({ path: '/', type: 'dir', mode: h.mode, uid: h.uid, gid: h.gid }).catch(() => undefined);
        }
        continue;
      }
      const common = { path, mode: h.mode, uid: h.uid, gid: h.gid };
      const stamp = (r: { ino: number }): void => {
        if (Number.isFinite(h.mtimeMs) && h.mtimeMs >= 0) times.set(r.ino, h.mtimeMs);
        if (h.xattrs.size) xattrs.set(r.ino, { path, attrs: h.xattrs });
      };
      switch (h.type) {
        case 'dir':
          batch.put({ ...common, type: 'dir' }, stamp);
          break;
        case 'symlink':
          batch.put({ ...common, type: 'symlink', linkname: h.linkname }, stamp);
          break;
        case 'link': {
          const target = cleanPath(h.linkname, 'hard link target');
          if (target === '') throw new ThinpoolError('EINVAL', `layer ${opts.label}: hard link ${path} points at the root`);
          const r = await batch.putNow({ ...common, type: 'link', linkname: target, wantParent: true });
          if (Number.isFinite(h.mtimeMs) && h.mtimeMs >= 0) times.set(r.ino, h.mtimeMs);
          // A link to a device or FIFO: its directory entry gets the node's type too.
          const kind = specials.get(r.ino)?.kind ?? (await batch.lstatNow(path))?.special;
          if (kind === 'char' || kind === 'block' || kind === 'fifo') dirents.push({ dir: r.parent!, name: base, kind, path });
          break;
        }
        case 'char':
        case 'block':
        case 'fifo': {
          // An empty file stands in for the node until patchInodes gives it its type and numbers.
          const kind = KINDS[h.type];
          batch.put({ ...common, type: 'file', data: new Uint8Array(0), wantParent: true }, (r) => {
            specials.set(r.ino, { kind, major: h.devmajor, minor: h.devminor });
            dirents.push({ dir: r.parent!, name: base, kind, path });
            stamp(r);
          });
          break;
        }
        case 'file': {
          const size = h.size;
          bytes += size;
          if (size === 0) {
            batch.put({ ...common, type: 'file', data: new Uint8Array(0) }, stamp);
            break;
          }
          // The body goes in pieces of at most CHUNK bytes, each copied once into the batch's data ring (memory
          // the worker shares).
          if (size <= CHUNK) {
            const piece = await batch.reserve(size);
            let fill = 0;
            for await (const c of entry.body()) {
              piece.set(c, fill);
              fill += c.length;
            }
            batch.putShared({ ...common, type: 'file' }, piece, stamp);
            break;
          }
          const put = await batch.putNow({ ...common, type: 'file' });
          stamp(put);
          const fd = put.fd!;
          try {
            let pos = 0;
            let piece: Uint8Array | null = null;
            let fill = 0;
            for await (const c of entry.body()) {
              for (let off = 0; off < c.length; ) {
                piece ??= await batch.reserve(Math.min(size - pos, CHUNK));
                const n = Math.min(piece.length - fill, c.length - off);
                piece.set(c.subarray(off, off + n), fill);
                fill += n;
                off += n;
                if (fill === piece.length) {
                  batch.writeShared(fd, piece, pos);
                  pos += fill;
                  piece = null;
                  fill = 0;
                  if (opts.checkpoint) await opts.checkpoint();
                  await batch.room();
                }
              }
            }
          } finally {
            batch.close(fd);
          }
          break;
        }
      }
      unpacked.add(path);
    }
    // The tar's end-of-archive blocks and any padding after them count in the diff id: read the input through.
    for await (const _ of hashed) {
      /* hashed on the way */
    }
    await batch.settle();
  } catch (e) {
    await hashed.return(undefined).catch(() => undefined); // closes the input (a file handle) if still open
    // A call that failed came before what failed here: that is the error (as when every call was awaited).
    const first = await batch.settle().then(
      () => e,
      (f: unknown) => f,
    );
    if (inputEnded && inputBytes === 0) throw emptyLayer(opts.label);
    throw wrapTarError(first, opts.label);
  }
  if (inputBytes === 0) throw emptyLayer(opts.label);
  // Opaque directories: drop what lower layers put there (keep what this layer unpacked, and the way to it).
  const onPath = new Set<string>();
  for (const p of unpacked) for (let i = p.lastIndexOf('/'); i > 0; i = p.lastIndexOf('/', i - 1)) onPath.add(p.slice(0, i));
  const prune = async (dir: string): Promise<void> => {
    for (const name of await fs.readdir(dir)) {
      const p = (dir === '/' ? '' : dir) + '/' + name;
      if (unpacked.has(p) || onPath.has(p)) {
        const st = await fs.lstat(p);
        if (st?.type === 'dir') await prune(p);
        continue;
      }
      await fs.rmrf(p);
    }
  };
  for (const dir of opaque) {
    const st = await fs.lstat(dir);
    if (!st) {
      await fs.mkdirp(dir);
      continue;
    }
    if (st.type === 'dir') await prune(dir);
  }
  const diffId = `sha256:${hash.digest('hex')}`;
  if (opts.expectDiffId && opts.expectDiffId !== diffId) {
    throw new ThinpoolError(
      'EINVAL',
      `layer ${opts.label}: its content digest ${diffId} does not match the diff id ${opts.expectDiffId} in the image config (corrupt or tampered layer)`,
    );
  }
  return { diffId, entries, skipped: 0, bytes, times, specials, dirents, xattrs };
}
