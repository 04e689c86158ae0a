/**
 * The `thinpool` commands on a pool's metadata and space, declared (flags and help) in the order `--help` lists
 * them: check, dump, restore, trim, extend, space, ls-pools, dump-metadata. Their code is in ./commands/meta.ts,
 * ./commands/space.ts and ./commands/rados.ts, loaded only when one runs.
 */
import { Option } from 'commander';
import { SIZES, type Registry } from './define.js';

export function definePoolCommands({ def }: Registry): void {
  def(
    'check',
    'meta',
    'check',
    (c) =>
      c
        .description("fully check the pool's metadata, catalog and data file; exit 1 when damaged")
        .argument('<POOL>', 'pool directory (or a metadata file)')
        .option('--json', 'print the report as JSON'),
    "Checks checksums, block numbers, btree invariants, every metadata and data reference count, the space maps' counters\n(warnings), the catalog and the data file's size. Errors name the structure and the metadata block.",
  );

  def(
    'dump',
    'meta',
    'dump',
    (c) =>
      c
        .description('print the metadata as thin_dump XML (byte-identical to thin_dump)')
        .argument('<POOL>', 'pool directory (or a metadata file)')
        .option('-m, --metadata-snap', 'dump the held metadata snapshot (thin_dump -m)')
        .addOption(new Option('-o, --output <FILE>', 'write to FILE instead of standard output')),
    'Example:\n  thinpool dump ./pool > pool.xml',
  );

  def(
    'restore',
    'meta',
    'restore',
    (c) =>
      c
        .description('create pool POOL whose metadata is built from thin_dump XML (as thin_restore)')
        .argument('<XML>', 'thin_dump XML file, or - for standard input')
        .argument('<POOL>', 'new pool directory (must not hold a pool)')
        .option('-m, --metadata-size <SIZE>', 'metadata file size (default: 48 bytes per data block, at least 2M)'),
    'The data file is sized nr_data_blocks x data_block_size, sparse. Volumes get no names: address them as #ID.',
  );

  def(
    'trim',
    'space',
    'trim',
    (c) => c.description('release every unused data block from the data file (like thin_trim)').argument('<POOL>', 'pool directory'),
    'For pools written before discard passdown or by other tools. Mapped data is not touched.',
  );

  def(
    'extend',
    'space',
    'extend',
    (c) =>
      c
        .description('grow the data device and/or the metadata device')
        .argument('<POOL>', 'pool directory')
        .option('-s, --size <SIZE>', 'new data device size')
        .option('-m, --metadata-size <SIZE>', 'new metadata device size (at most about 15.9 GiB)'),
    `Shrinking is refused.\n${SIZES}`,
  );

  def(
    'space',
    'space',
    'space',
    (c) =>
      c
        .description('show or change the space policy: discard passdown, thresholds, auto-extend, when full')
        .argument('<POOL>', 'pool directory')
        .option('--discard-passdown <on|off>', 'release freed blocks from the data file after each commit')
        .option('--data-thresholds <LIST>', 'data use percentages that raise a warning, e.g. 80,90,95')
        .option('--metadata-thresholds <LIST>', 'metadata use percentages that raise a warning')
        .option('--auto-extend <on|off>', 'grow the data device when its use reaches --auto-extend-at')
        .option('--auto-extend-at <PERCENT>', 'use that triggers growth (default 80)')
        .option('--auto-extend-percent <N>', 'grow by N percent (default 20)')
        .option('--auto-extend-max <SIZE>', 'never grow the data device beyond SIZE')
        .option('--when-full <error|wait>', 'when no space is left and the pool cannot grow')
        .option('--json', 'print JSON'),
    'Example:\n  thinpool space ./pool --auto-extend on --auto-extend-max 100G',
  );

  def(
    'ls-pools',
    'rados',
    'lsPools',
    (c) =>
      c
        .description("list the thin pools in a Ceph RADOS pool, with the holder of each one's write lock")
        .argument('<CEPH_POOL>', 'rados://CEPH_POOL')
        .option('--json', 'print JSON'),
    'Example:\n  thinpool ls-pools rados://rbd --ceph-conf /etc/ceph/ceph.conf',
  );

  def(
    'dump-metadata',
    'rados',
    'dumpMetadata',
    (c) =>
      c
        .description("copy the pool's metadata device into FILE (for thin_check, thin_dump, thinpool check)")
        .argument('<POOL>', 'pool directory or rados://CEPH_POOL/NAME')
        .argument('<FILE>', 'output file (must not exist)'),
    'Reads the committed state without taking the write lock.\nExample:\n  thinpool dump-metadata rados://rbd/pool1 md.bin && thin_check md.bin',
  );
}
