/**
 * The `thinpool` command groups, declared (flags and help) in the order `--help` lists them: image (import,
 * ls, history, export, rm), container (create, ls, rm, commit, export, diff), fs (ls, cat, put, rm),
 * snapshotter serve, lock break and metadata-snap (reserve, release). Their code is in ./commands/image.ts,
 * container.ts, fs.ts, snapshotter.ts, rados.ts and metadata-snap.ts, loaded only when one runs.
 */
import type { Command } from 'commander';
import type { Registry } from './define.js';

export function defineCommandGroups({ sub }: Registry): void {
  const P = (c: Command): Command => c.argument('<POOL>', 'pool directory');
  sub(
    'image',
    'import',
    'image',
    'importImage',
    (c) =>
      P(c)
        .description('import an image: an OCI layout directory, an OCI/docker save tar, or layer tarballs (bottom first)')
        .argument('<NAME>', 'image name')
        .argument('<SOURCE...>', 'OCI layout dir, image archive, or layer tarballs (plain or gzipped)')
        .option('--fs-size <SIZE>', 'size of the ext4 filesystem of a new image (default 1G)')
        .option('--json', 'print JSON'),
    'Layers are committed thin snapshots named by chain id; layers already in the pool are reused.\nExample:\n  thinpool image import ./pool app ./app-oci',
  );
  sub('image', 'ls', 'image', 'ls', (c) =>
    P(c).alias('list').description('list images').option('--json', 'print JSON').option('--no-trunc', 'full ids'),
  );
  sub('image', 'history', 'image', 'history', (c) =>
    P(c)
      .description('the layers of an image, newest first, with the bytes each adds')
      .argument('<NAME>', 'image name')
      .option('--json', 'print JSON')
      .option('--no-trunc', 'full ids and commands')
      .option('--bytes', 'sizes in bytes'),
  );
  sub(
    'image',
    'export',
    'image',
    'exportImage',
    (c) =>
      P(c)
        .description("write an image's disk (its top layer's ext4 filesystem) to FILE as a raw image")
        .argument('<NAME>', 'image name')
        .argument('<FILE>', 'output file (replaced)'),
    'Example:\n  thinpool image export ./pool app app.img',
  );
  sub('image', 'rm', 'image', 'remove', (c) =>
    P(c).description('remove an image and the layers nothing else uses').argument('<NAME>', 'image name'),
  );
  sub('container', 'create', 'container', 'create', (c) =>
    P(c)
      .description("create a container: a writable snapshot of the image's top layer (constant time)")
      .argument('<IMAGE>', 'image name')
      .argument('<NAME>', 'container name'),
  );
  sub('container', 'ls', 'container', 'ls', (c) =>
    P(c)
      .alias('list')
      .description('list containers with their exclusive bytes')
      .option('--json', 'print JSON')
      .option('--bytes', 'sizes in bytes'),
  );
  sub('container', 'rm', 'container', 'remove', (c) =>
    P(c).description('remove a container (frees its exclusive blocks)').argument('<NAME>', 'container name'),
  );
  sub('container', 'commit', 'container', 'commit', (c) =>
    P(c)
      .description('make a container the top layer of a new image')
      .argument('<NAME>', 'container name')
      .argument('<IMAGE>', 'new image name')
      .option('-m, --message <TEXT>', 'history comment'),
  );
  sub(
    'container',
    'export',
    'container',
    'exportContainer',
    (c) =>
      P(c)
        .description("write a container's disk (its ext4 filesystem) to FILE as a raw image; holes stay holes")
        .argument('<NAME>', 'container name')
        .argument('<FILE>', 'output file (replaced)'),
    'Example:\n  thinpool container export ./pool c1 c1.img && e2fsck -fn c1.img',
  );
  sub('container', 'diff', 'container', 'diff', (c) =>
    P(c)
      .description('paths added (A), changed (C) and deleted (D) against the image')
      .argument('<NAME>', 'container name')
      .option('--json', 'print JSON'),
  );
  const V = (c: Command): Command => P(c).argument('<VOLUME>', 'container, image (its top layer), snapshot key or volume name');
  sub('fs', 'ls', 'fs', 'ls', (c) =>
    V(c)
      .description('list a directory')
      .argument('[PATH]', 'path inside the filesystem', '/')
      .option('-l, --long', 'mode, owner, size')
      .option('-R, --recursive', 'the whole tree')
      .option('--json', 'print JSON'),
  );
  sub('fs', 'cat', 'fs', 'cat', (c) => V(c).description('print a file').argument('<PATH>', 'path inside the filesystem'));
  sub('fs', 'put', 'fs', 'put', (c) =>
    V(c)
      .description('write FILE (or standard input) to PATH (refused on committed layers)')
      .argument('<PATH>', 'path inside the filesystem')
      .argument('[FILE]', 'input file, or - for standard input')
      .option('--mode <OCTAL>', 'file mode', '644'),
  );
  sub('fs', 'rm', 'fs', 'rm', (c) =>
    V(c)
      .description('remove PATH (refused on committed layers); freed blocks go back to the pool')
      .argument('<PATH>', 'path inside the filesystem')
      .option('-r, --recursive', 'remove a directory and its contents'),
  );

  sub(
    'snapshotter',
    'serve',
    'snapshotter',
    'serve',
    (c) =>
      P(c)
        .description("serve containerd's snapshots API on a unix socket until SIGTERM/SIGINT")
        .requiredOption('-a, --address <SOCKET>', 'unix socket for containerd (its proxy_plugins entry names it)')
        .option('--state-dir <DIR>', 'directory for the NBD socket and the nbdfuse mount points (default SOCKET.d)')
        .option('--fs-size <SIZE>', 'filesystem size of snapshots without a parent (default 10G; thin: only what is written uses space)')
        .option('-v, --verbose', 'log every failed request to standard error'),
    'containerd config (version 2):\n  [proxy_plugins.thinpool]\n    type = "snapshot"\n    address = "/run/thinpool-snapshotter.sock"\nthen: ctr image pull/import --snapshotter thinpool ...; ctr run --snapshotter thinpool ...\nSnapshots are ext4 filesystems on thin volumes; mounts are loop mounts of files nbdfuse (Debian package\nlibnbd-bin) shows. Needs root, /dev/fuse and loop devices. SIGTERM/SIGINT: exports detached, pool committed, exit 0.',
  );

  sub(
    'lock',
    'break',
    'rados',
    'lockBreak',
    (c) =>
      c
        .description("fence the writer holding the pool's lock (blocklist its Ceph client), then remove the lock")
        .argument('<POOL>', 'rados://CEPH_POOL/NAME')
        .option('--json', 'print JSON'),
    'For a writer that died or hangs: nothing it still sends lands. As `rbd lock remove`.\nExample:\n  thinpool lock break rados://rbd/pool1',
  );

  const HELD =
    'At most one is held. It keeps mappings, not data contents (as dm-thin\'s reserve_metadata_snap): the blocks it\nmaps stay allocated until it is released, even when their volume is deleted, but writes to a block a live\nvolume still maps land in place. "thinpool status" shows it; "thinpool dump POOL --metadata-snap" and\nthin_dump -m read it; read-only opens of a rados:// pool read it for as long as it is held.';
  sub(
    'metadata-snap',
    'reserve',
    'metaSnap',
    'reserve',
    (c) => P(c).description('hold a snapshot of the committed metadata (dm-thin reserve_metadata_snap)').option('--json', 'print JSON'),
    `${HELD}\nExample:\n  thinpool metadata-snap reserve ./pool && thinpool dump ./pool --metadata-snap`,
  );
  sub(
    'metadata-snap',
    'release',
    'metaSnap',
    'release',
    (c) => P(c).description('release the held metadata snapshot and the blocks only it kept').option('--json', 'print JSON'),
    'Example:\n  thinpool metadata-snap release ./pool',
  );
}
