/**
 * The `thinpool` commands on what volumes hold, declared (flags and help) in the order `--help` lists them:
 * write, read, import, export, map, diff, send, receive. Their code is in ./commands/data.ts,
 * ./commands/info.ts and ./commands/stream.ts, loaded only when one runs.
 */
import { collect } from './labels.js';
import type { Registry } from './define.js';

export function defineContentCommands({ def }: Registry): void {
  def(
    'write',
    'data',
    'write',
    (c) =>
      c
        .description('write FILE (or standard input) into volume NAME at --offset')
        .argument('<POOL>', 'pool directory')
        .argument('<NAME>', 'volume (name or #id)')
        .argument('[FILE]', 'input file, or - for standard input (the default)')
        .option('-o, --offset <SIZE>', 'byte offset in the volume', '0')
        .option(
          '--commit-every <SIZE>',
          'commit after every SIZE bytes of input (long streams keep what was committed if they fail later)',
        ),
    "Example:\n  echo hello | thinpool write ./pool base --offset 1M\n  cat disk.img | thinpool write ./pool disk\nBlocks of zeros that land on unprovisioned blocks leave them unprovisioned (as import does); holes of an\ninput file are not read. The whole input must fit in the volume and in the pool's free space, or nothing is\nwritten (one commit at the end; with --commit-every, what was committed before a failure stays).",
  );

  def(
    'read',
    'data',
    'read',
    (c) =>
      c
        .description('read volume NAME to standard output')
        .argument('<POOL>', 'pool directory')
        .argument('<NAME>', 'volume (name or #id)')
        .option('-o, --offset <SIZE>', 'byte offset in the volume', '0')
        .option('-l, --length <SIZE>', 'bytes to read (default: to the end of the volume)'),
    'Example:\n  thinpool read ./pool base --offset 1M --length 6',
  );

  def(
    'import',
    'data',
    'importImage',
    (c) =>
      c
        .description('create volume NAME from a raw disk image; all-zero blocks stay unprovisioned')
        .argument('<POOL>', 'pool directory')
        .argument('<NAME>', 'name of the new volume')
        .argument('<IMAGE>', 'raw image file')
        .option('-s, --size <SIZE>', 'virtual size of the volume (default: the image size rounded up to 512 bytes)')
        .option('-f, --format <raw>', 'raw: import the bytes as they are, even when they look like a qcow2, VMDK, VHD or VDI image'),
    'Example:\n  thinpool import ./pool disk disk.img\nqcow2, VMDK, VHD/VHDX and VDI images are recognised and refused: convert them first with\n  qemu-img convert -O raw disk.qcow2 disk.img',
  );

  def(
    'export',
    'data',
    'exportImage',
    (c) =>
      c
        .description('write volume NAME to FILE as a raw image; unprovisioned and all-zero blocks become holes')
        .argument('<POOL>', 'pool directory')
        .argument('<NAME>', 'volume (name or #id)')
        .argument('<FILE>', 'output file (replaced)'),
    'Example:\n  thinpool export ./pool disk disk.img',
  );

  def(
    'map',
    'info',
    'map',
    (c) =>
      c
        .description('list the provisioned extents of volume NAME')
        .argument('<POOL>', 'pool directory')
        .argument('<NAME>', 'volume (name or #id)')
        .option('--json', 'print JSON (offsets and lengths in bytes)')
        .option('--bytes', 'print offsets and lengths in bytes'),
    'Each row is a run of consecutive virtual blocks mapped to consecutive data blocks.',
  );

  def(
    'diff',
    'info',
    'diff',
    (c) =>
      c
        .description('the block ranges that differ between volumes A and B (thin_delta semantics)')
        .argument('<POOL>', 'pool directory')
        .argument('<A>', 'volume (name or #id)')
        .argument('<B>', 'volume (name or #id)')
        .option('--all', 'also list the ranges both volumes share (same)')
        .option('--json', 'print JSON')
        .option('--bytes', 'print offsets and lengths in bytes'),
    'Kinds: different (both map the block, to different data), left_only (only A maps it), right_only (only B),\nsame (with --all). Ranges are in data blocks and bytes.',
  );

  def(
    'send',
    'stream',
    'send',
    (c) =>
      c
        .description('write SNAPSHOT, or what changed since BASE, as an rbd export-diff stream')
        .argument('<POOL>', 'pool directory')
        .argument('<SNAPSHOT>', 'volume to send (name or #id)')
        .option('-f, --from <BASE>', 'send only the blocks that differ from volume BASE (thin_delta: shared blocks are not read)')
        .option('-o, --output <FILE>', 'write the stream to FILE (made only when complete) instead of standard output')
        .option('--stream-version <1|2>', 'rbd diff stream version: 1 (what rbd import-diff reads) or 2', '1')
        .option('--json', 'with -o: print the summary as JSON'),
    'The stream is Ceph\'s "rbd diff v1" (or v2) format: "thinpool receive" and "rbd import-diff" both apply it.\nExamples:\n  thinpool send ./pool snap1 -o snap1.diff\n  thinpool send ./pool snap2 --from snap1 | ssh host thinpool receive ./pool snap2\n  thinpool send ./pool snap1 | rbd import-diff - rbdpool/image',
  );

  def(
    'receive',
    'stream',
    'receive',
    (c) =>
      c
        .description('make volume NAME from an rbd export-diff stream (thinpool send or rbd export-diff)')
        .argument('<POOL>', 'pool directory')
        .argument('<NAME>', 'name of the new volume')
        .option('-i, --input <FILE>', 'read the stream from FILE instead of standard input')
        .option('-f, --from <BASE>', "base volume of an incremental stream (default: the stream's from-snap name)")
        .option('-l, --label <K=V>', 'label the new volume (repeatable)', collect)
        .option('-r, --read-only', 'make the new volume read-only')
        .option('--json', 'print the summary as JSON'),
    'An incremental stream becomes a snapshot of its base with the changes applied: untouched blocks stay shared\nand holes stay holes. A truncated or corrupt stream changes nothing.\nExamples:\n  thinpool receive ./pool snap1 -i snap1.diff\n  rbd export-diff --from-snap s1 rbdpool/image@s2 - | thinpool receive ./pool s2 --from s1',
  );
}
