/**
 * Applying a layer tarball (plain or gzipped) to the filesystem of an active snapshot, with OCI whiteouts.
 *
 * Rules (as Docker/containerd unpack a layer):
 * - Entry paths are taken relative to the root; a `..` that climbs above the root is refused, and so is writing
 *   through a symbolic link (a parent component that is a link, whatever its target): an error, nothing
 *   outside the path asked for is touched.
 * - Regular files, directories, symbolic links and hard links are created with their mode and owner; a path
 *   that exists is replaced (an existing directory stays when the entry is a directory: mode and owner set).
 * - `.wh.NAME` deletes NAME; `.wh..wh..opq` deletes every entry of its directory that this layer did not
 *   itself unpack. Devices and FIFOs are counted and skipped (libext2fs cannot make them).
 * - The diff id is the sha256 of the uncompressed stream; with `expectDiffId` a mismatch is an error.
 * Times: libext2fs has no utimes, so files carry the time of the import (a known limit).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type Readable, Transform } from 'node:stream';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import { ThinpoolError } from '../errors.js';
import { CHUNK, type FsSession } from './fs-worker.js';

export interface ApplyResult {
  diffId: string;
  entries: number;
  skipped: number;
  bytes: number;
  /** Modification times from the tar (ms), by inode number: set with setInodeTimes once unmounted. */
  times: Map<number, number>;
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

/** An uncompressed tar stream of a file, gunzipping when it starts with the gzip magic. */
export async function openLayer(path: string): Promise<Readable> {
  const head = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = createReadStream(path, { start: 0, end: 3 });
    s.on('data', (c) => chunks.push(c as Buffer));
    s.on('end', () => resolve(Buffer.concat(chunks)));
    s.on('error', reject);
  });
  const raw = createReadStream(path, { highWaterMark: CHUNK });
  if (head[0] === 0x1f && head[1] === 0x8b) return raw.pipe(createGunzip());
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) throw new ThinpoolError('EINVAL', `layer ${path} is zstd-compressed: not supported, use gzip or plain tar`);
  return raw;
}

/** sha256 of a stream, as "sha256:hex". */
export async function digestStream(s: Readable): Promise<string> {
  const h = createHash('sha256');
  for await (const c of s) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}

function wrapTarError(e: unknown, label: string): unknown {
  if (e instanceof ThinpoolError) return e;
  const msg = (e as Error)?.message ?? String(e);
  if ((e as { code?: string })?.code === 'ESYMLINK' || (e as { code?: string })?.code === 'ENOTDIR') return new ThinpoolError('EINVAL', `layer ${label}: ${msg}`, { cause: e });
  const libErr = /UNKNOWN \((\d{10})\)/.exec(msg);
  if ((e as { code?: string })?.code === 'ENOSPC' || (libErr && Number(libErr[1]) >= 2133571328)) {
    return new ThinpoolError('EINVAL', `layer ${label}: the image's filesystem refused a write (${libErr ? `libext2fs error ${libErr[1]}` : 'ENOSPC'}): it is probably full; import with a larger --fs-size`, { cause: e });
  }
  if (/Unexpected end|unexpected end|Invalid tar|incorrect header|invalid|Z_/.test(msg) || (e as { code?: string })?.code?.startsWith?.('Z_')) {
    return new ThinpoolError('EINVAL', `layer ${label} is not a valid tar archive (truncated or corrupt): ${msg}`, { cause: e });
  }
  return e;
}

/** Apply an uncompressed tar stream to a mounted filesystem. */
export async function applyLayer(fs: FsSession, input: Readable, opts: { label: string; expectDiffId?: string }): Promise<ApplyResult> {
  const hash = createHash('sha256');
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  const extract = tar.extract();
  const unpacked = new Set<string>();
  const opaque: string[] = [];
  let entries = 0;
  let skipped = 0;
  let bytes = 0;
  const times = new Map<number, number>();
  let failure: unknown = null;
  input.on('error', (e) => { failure ??= e; extract.destroy(e); });
  input.pipe(tap).pipe(extract);
  try {
    for await (const entry of extract) {
      const h = entry.header;
      const path = cleanPath(h.name);
      entries++;
      const base = path.slice(path.lastIndexOf('/') + 1);
      const parent = path.slice(0, path.lastIndexOf('/')) || '/';
      if (base === '.wh..wh..opq') {
        opaque.push(parent);
        entry.resume();
        continue;
      }
      if (base.startsWith('.wh.')) {
        const victim = (parent === '/' ? '' : parent) + '/' + base.slice(4);
        await fs.rmrf(victim);
        entry.resume();
        continue;
      }
      if (path === '') { // the root itself
        if (h.type === 'directory') await fs.put({ path: '/', type: 'dir', mode: (h.mode ?? 0o755) & 0o7777, uid: h.uid ?? 0, gid: h.gid ?? 0 }).catch(() => undefined);
        entry.resume();
        continue;
      }
      const common = { path, mode: (h.mode ?? 0o644) & 0o7777, uid: h.uid ?? 0, gid: h.gid ?? 0 };
      const mtime = h.mtime instanceof Date ? h.mtime.getTime() : NaN;
      const stamp = (r: { ino: number }): void => {
        if (Number.isFinite(mtime) && mtime >= 0) times.set(r.ino, mtime);
      };
      switch (h.type) {
        case 'directory':
          stamp(await fs.put({ ...common, type: 'dir' }));
          entry.resume();
          break;
        case 'symlink':
          stamp(await fs.put({ ...common, type: 'symlink', linkname: h.linkname ?? '' }));
          entry.resume();
          break;
        case 'link': {
          const target = cleanPath(h.linkname ?? '', 'hard link target');
          if (target === '') throw new ThinpoolError('EINVAL', `layer ${opts.label}: hard link ${path} points at the root`);
          stamp(await fs.put({ ...common, type: 'link', linkname: target }));
          entry.resume();
          break;
        }
        case 'file':
        case 'contiguous-file': {
          const size = h.size ?? 0;
          bytes += size;
          if (size <= CHUNK) {
            const parts: Buffer[] = [];
            for await (const c of entry) parts.push(c as Buffer);
            stamp(await fs.put({ ...common, type: 'file', data: Buffer.concat(parts) }));
          } else {
            const put = await fs.put({ ...common, type: 'file' });
            stamp(put);
            const fd = put.fd!;
            try {
              let pos = 0;
              let pend: Buffer[] = [];
              let pendLen = 0;
              for await (const c of entry) {
                pend.push(c as Buffer);
                pendLen += (c as Buffer).length;
                if (pendLen >= CHUNK) {
                  const b = Buffer.concat(pend);
                  await fs.write(fd, b, pos);
                  pos += b.length;
                  pend = [];
                  pendLen = 0;
                }
              }
              if (pendLen) await fs.write(fd, Buffer.concat(pend), pos);
            } finally {
              await fs.closeFile(fd);
            }
          }
          break;
        }
        default:
          skipped++;
          entry.resume();
          continue;
      }
      unpacked.add(path);
    }
  } catch (e) {
    throw wrapTarError(failure ?? e, opts.label);
  }
  if (failure) throw wrapTarError(failure, opts.label);
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
    throw new ThinpoolError('EINVAL', `layer ${opts.label}: its content digest ${diffId} does not match the diff id ${opts.expectDiffId} in the image config (corrupt or tampered layer)`);
  }
  return { diffId, entries, skipped, bytes, times };
}

