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
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ThinpoolError } from '../errors.js';
import { copyNonZero } from '../io/sparse.js';
import { findTool } from '../io/system-tools.js';
import type { Volume } from '../thin/volume.js';

/** Smallest base filesystem: ext4 with a journal needs a few MiB; below 16 MiB the journal would crowd it out. */
const MIN_BASE_SIZE = 16 * 1024 * 1024;

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

/** Copy the non-zero 64 KiB pieces of the file's data ranges into the volume. */
function copyInto(file: string, volume: Volume): void {
  const fd = openSync(file, 'r');
  try {
    copyNonZero(fd, volume.sizeBytes, 64 * 1024, (part, offset) => volume.writeSync(part, offset));
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
