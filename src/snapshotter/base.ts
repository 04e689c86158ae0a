/**
 * The base filesystem of containerd snapshots without a parent: an empty ext4 that a kernel mounts read-write.
 *
 * Made once per filesystem size: `mkfs.ext4` (e2fsprogs) on a sparse temporary file, with a journal (the kernel
 * mounts it; a crash of a container must not need fsck), root directory 0755 owned by 0:0, lazy inode table and
 * journal initialisation (nothing zeroed), no discard; then `lost+found` is removed with `debugfs` (containerd
 * compares a fresh snapshot's tree exactly: it must be empty). The file's data extents (found with SEEK_DATA
 * when the native helper is built, else by reading and skipping all-zero blocks) are copied into a new thin
 * volume, so the volume maps only the filesystem's own metadata (about 4 MiB for 10 GiB). Every child process
 * is started asynchronously: the caller's event loop keeps serving NBD meanwhile.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ThinpoolError } from '../errors.js';
import { nativeHelpers } from '../io/native.js';
import type { Volume } from '../thin/volume.js';

/** Smallest base filesystem: ext4 with a journal needs a few MiB; below 16 MiB the journal would crowd it out. */
const MIN_BASE_SIZE = 16 * 1024 * 1024;

const ENXIO = 6;
const SBIN = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** An executable on PATH or in the sbin directories (mkfs.ext4 and debugfs live in /sbin). */
export function findTool(name: string): string | null {
  for (const dir of [...(process.env.PATH ?? '').split(':').filter(Boolean), ...SBIN]) {
    const p = join(dir, name);
    if (existsSync(p)) return p;
  }
  return null;
}

function tool(name: string): string {
  const p = findTool(name);
  if (!p)
    throw new ThinpoolError(
      'ENOENT',
      `${name} not found: install e2fsprogs (Debian package e2fsprogs); the snapshotter formats its base filesystem with it`,
    );
  return p;
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    c.on('error', (e) => reject(new ThinpoolError('EIO', `${cmd} could not start: ${e.message}`)));
    c.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new ThinpoolError('EIO', `${cmd} ${args.join(' ')} failed (exit ${code}): ${err.trim()}`));
    });
  });
}

function isZero(b: Uint8Array): boolean {
  const w = new BigUint64Array(b.buffer, b.byteOffset, b.length >>> 3);
  for (let i = 0; i < w.length; i++) if (w[i] !== 0n) return false;
  for (let i = w.length << 3; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** The byte ranges of a file that may hold data: its data extents, or the whole file without the helper. */
function dataRanges(fd: number, size: number): [number, number][] {
  const native = nativeHelpers();
  if (!native) return [[0, size]];
  const out: [number, number][] = [];
  let pos = 0;
  while (pos < size) {
    const start = native.seek(fd, pos, 0);
    if (start === -ENXIO) break; // no data at or after pos
    if (start < 0) return [[0, size]]; // SEEK_DATA not supported here: read it all
    const end = native.seek(fd, start, 1);
    const stop = end < 0 ? size : Math.min(end, size);
    out.push([start, stop]);
    pos = stop;
  }
  return out;
}

/** Copy the non-zero 64 KiB pieces of file ranges into the volume. */
function copyInto(file: string, volume: Volume): void {
  const size = volume.sizeBytes;
  const fd = openSync(file, 'r');
  try {
    const piece = 64 * 1024;
    const buf = Buffer.alloc(1024 * 1024);
    for (const [from, to] of dataRanges(fd, size)) {
      const first = Math.floor(from / piece) * piece;
      for (let pos = first; pos < to; pos += buf.length) {
        const n = readSync(fd, buf, 0, Math.min(buf.length, size - pos), pos);
        if (n <= 0) break;
        for (let off = 0; off < n; off += piece) {
          const part = buf.subarray(off, Math.min(n, off + piece));
          if (!isZero(part)) volume.writeSync(part, pos + off);
        }
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** Write an empty, journalled ext4 filesystem of the volume's size into the (empty, writable) volume. */
export async function writeBaseFilesystem(volume: Volume): Promise<void> {
  const size = volume.sizeBytes;
  if (size < MIN_BASE_SIZE)
    throw new ThinpoolError('EINVAL', `filesystem size ${size} bytes is too small: use at least ${MIN_BASE_SIZE / 1024 / 1024} MiB`);
  const mkfs = tool('mkfs.ext4');
  const debugfs = tool('debugfs');
  const dir = mkdtempSync(join(tmpdir(), 'thinpool-base-'));
  const file = join(dir, 'fs.img');
  try {
    await run(mkfs, [
      '-q',
      '-F',
      '-t',
      'ext4',
      '-b',
      '4096',
      '-L',
      'thinpool',
      '-E',
      'root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1,nodiscard',
      file,
      `${Math.floor(size / 1024)}k`,
    ]);
    await run(debugfs, ['-w', '-R', 'rmdir lost+found', file]);
    copyInto(file, volume);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
