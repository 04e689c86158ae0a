/**
 * The base filesystem: `mkfs.ext4` (e2fsprogs) on a sparse temporary file, copied into a thin volume block by
 * block, skipping all-zero blocks, so the volume maps only the filesystem's own metadata.
 *
 * Choices: 4 KiB blocks, no journal (layers are written once, in process, by libext2fs, which does not journal;
 * a container's filesystem is never mounted by a kernel), lazy inode table init, root owned by 0:0.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ThinpoolError } from '../errors.js';
import { copyNonZero } from '../io/sparse.js';
import { findTool } from '../io/system-tools.js';
import type { Volume } from '../thin/volume.js';

/**
 * The smallest filesystem an image layer gets: mkfs.ext4 (4 KiB blocks, no journal) needs 240 KiB with
 * e2fsprogs 1.47; 1 MiB leaves room for other versions and for lost+found and a few files.
 */
export const MIN_FS_SIZE = 1024 * 1024;

/** Format an ext4 filesystem of the volume's size into an (empty, writable) volume. */
export function formatExt4(volume: Volume, label = 'thinpool'): void {
  const mkfs = findTool('mkfs.ext4');
  if (!mkfs)
    throw new ThinpoolError('ENOENT', 'mkfs.ext4 not found: install e2fsprogs (Debian package e2fsprogs) to create image filesystems');
  const dir = mkdtempSync(join(tmpdir(), 'thinpool-mkfs-'));
  const file = join(dir, 'fs.img');
  try {
    const size = volume.sizeBytes;
    const r = spawnSync(
      mkfs,
      [
        '-q',
        '-F',
        '-t',
        'ext4',
        '-b',
        '4096',
        '-L',
        label.slice(0, 16),
        '-O',
        '^has_journal',
        '-E',
        'root_owner=0:0,lazy_itable_init=1,nodiscard',
        file,
        `${Math.floor(size / 1024)}k`,
      ],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new ThinpoolError('EIO', `mkfs.ext4 failed: ${(r.stderr || r.error?.message || '').trim()}`);
    // Only the ranges mkfs wrote (SEEK_DATA/SEEK_HOLE): a 2 GiB image holds a few MiB of metadata, and
    // reading its holes cost 10-20 s on a loaded machine. 64 KiB pieces that are all zeros stay unwritten.
    const fd = openSync(file, 'r');
    try {
      copyNonZero(fd, size, 64 * 1024, (part, offset) => volume.writeSync(part, offset));
    } finally {
      closeSync(fd);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
