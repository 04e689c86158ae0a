/**
 * The `thinpool` command line.
 *
 * `main(argv, io?)` parses argv (without node and script), runs one command and resolves to its exit status:
 * 0 success, 1 failure, 2 usage error. Nothing is printed to stdout but the command's result; errors are one line
 * on stderr ("thinpool CMD: what is wrong: what to do"). Pass `io` to capture the streams (tests).
 *
 * Start-up matters: this module loads only commander and ./io.js; each command's module (and through it the
 * engine and the WASM core) is loaded with a dynamic import() when that command runs.
 */
import { Command, CommanderError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { CliError, type CliIO, type Ctx } from './io.js';
import { explainError } from '../messages.js';
import { collect } from './labels.js';

export type { CliIO } from './io.js';

type Action = (ctx: Ctx, args: string[], opts: Record<string, unknown>) => Promise<number | void>;

/** Lazily loaded command modules: each is imported only when its command runs. */
const modules = {
  volumes: () => import('./commands/volumes.js'),
  info: () => import('./commands/info.js'),
  data: () => import('./commands/data.js'),
  meta: () => import('./commands/meta.js'),
  demo: () => import('./commands/demo.js'),
  space: () => import('./commands/space.js'),
  serve: () => import('./commands/serve.js'),
  image: () => import('./commands/image.js'),
  container: () => import('./commands/container.js'),
  fs: () => import('./commands/fs.js'),
  rados: () => import('./commands/rados.js'),
  bench: () => import('./commands/bench.js'),
  stream: () => import('./commands/stream.js'),
  verbs: () => import('./commands/verbs.js'),
  snapshotter: () => import('./commands/snapshotter.js'),
} as const;

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    if (pkg.version) return pkg.version;
  } catch {
    // the source tree: one level less
  }
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

const SIZES = 'Sizes are bytes or a number with a suffix: 64K, 64KiB, 10M, 10G, 1TiB (IEC, powers of 1024), 1GB (SI, powers of 1000), 8s (512-byte sectors).';

function build(ctx: Ctx, state: { result: number; cmd: string }): Command {
  const program = new Command('thinpool');
  const { io } = ctx;
  program
    .description('Thin provisioning on plain files, byte-compatible with Linux dm-thin metadata.\nA POOL is a directory holding `metadata` (a dm-thin metadata device), `data` (sparse) and `catalog.json`,\nor rados://CEPH_POOL/NAME: the same as objects in a Ceph RADOS pool (cluster from --ceph-conf or CEPH_CONF).')
    .option('--ceph-conf <FILE>', 'Ceph configuration for rados:// pools (default: CEPH_CONF, then /etc/ceph/ceph.conf)')
    .option('--ceph-id <ID>', 'Ceph client id for rados:// pools, without "client." (default: admin)')
    .version(version(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help for a command')
    .addHelpCommand('help [COMMAND]', 'show help for a command')
    .exitOverride()
    .showSuggestionAfterError(true)
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      outputError: () => undefined, // printed by main() as one line
    })
    .addHelpText('after', `\nStart with:  thinpool demo\nEvery command has --help. Exit status: 0 success, 1 failure, 2 usage error.\n${SIZES}`);

  const def = (name: string, mod: keyof typeof modules, fn: string, configure: (c: Command) => Command, help?: string): void => {
    const c = program.command(name);
    configure(c);
    c.helpOption('-h, --help', 'show this help');
    if (help) c.addHelpText('after', `\n${help}`);
    c.action(async (...all: unknown[]) => {
      const command = all[all.length - 1] as Command;
      const opts = command.opts();
      const args = command.processedArgs.map((a) => a as string);
      const m = (await modules[mod]()) as unknown as Record<string, Action>;
      const code = await m[fn](ctx, args, opts);
      state.result = typeof code === 'number' ? code : 0;
    });
  };

  def('init', 'volumes', 'init', (c) => c
    .description('create a pool in directory POOL (made if missing)')
    .argument('<POOL>', 'pool directory')
    .requiredOption('-s, --size <SIZE>', 'data capacity (the sparse data file\'s size)')
    .option('-b, --block-size <SIZE>', 'data block size: 64K to 1G, a multiple of 64K', '64K')
    .option('-m, --metadata-size <SIZE>', 'metadata file size (default: 48 bytes per data block, at least 2M)')
    .option('--object-size <SIZE>', 'rados:// pools: bytes per RADOS data object, a power of two from 4K to 64M (default 4M)'),
  `Examples:\n  thinpool init ./pool --size 10G --block-size 64K\n  thinpool init rados://rbd/pool1 --size 1T --ceph-conf /etc/ceph/ceph.conf\n${SIZES}`);

  def('create', 'volumes', 'create', (c) => c
    .description('create an empty thin volume NAME of virtual size SIZE')
    .argument('<POOL>', 'pool directory')
    .argument('<NAME>', 'volume name: 1-255 characters, no spaces, slashes or control characters, not a number')
    .requiredOption('-s, --size <SIZE>', 'virtual size (a multiple of 512 bytes)')
    .option('-l, --label <K=V>', 'label the volume (repeatable)', collect),
  `Example:\n  thinpool create ./pool base --size 1G --label env=test\n${SIZES}`);

  def('snapshot', 'volumes', 'snapshot', (c) => c
    .description('snapshot volume ORIGIN as NAME (constant time; blocks are shared until written)')
    .argument('<POOL>', 'pool directory')
    .argument('<ORIGIN>', 'volume to snapshot (name or #id)')
    .argument('<NAME>', 'name of the new snapshot')
    .option('-r, --read-only', 'make the snapshot read-only (every write path refuses it: CLI, API, NBD)')
    .option('-l, --label <K=V>', 'label the snapshot (repeatable)', collect),
  'Example:\n  thinpool snapshot ./pool base snap1 --read-only');

  def('rename', 'verbs', 'rename', (c) => c
    .description('rename volume OLD to NEW (lvrename, zfs rename, rbd rename)')
    .argument('<POOL>', 'pool directory')
    .argument('<OLD>', 'volume (name or #id)')
    .argument('<NEW>', 'new name')
    .option('--json', 'print the result as JSON'),
  'The volume keeps its id, data, labels and snapshots (which show the new name as their origin).');

  def('rollback', 'verbs', 'rollback', (c) => c
    .description('make VOLUME\'s content SNAPSHOT\'s, in constant time (zfs rollback, lvconvert --merge)')
    .argument('<POOL>', 'pool directory')
    .argument('<VOLUME>', 'volume to roll back (name or #id)')
    .argument('<SNAPSHOT>', 'a snapshot of VOLUME (or of one of its snapshots)')
    .option('--json', 'print the result as JSON'),
  'VOLUME keeps its name, id, size and labels; no data is copied, and the blocks only VOLUME held are freed at the\ncommit. SNAPSHOT and other snapshots stay. Refused for read-only volumes and volumes owned by images or\ncontainers.\nExample:\n  thinpool rollback ./pool vm1 vm1-before-upgrade');

  def('set', 'verbs', 'set', (c) => c
    .description('change the read-only flag or the labels of VOLUME')
    .argument('<POOL>', 'pool directory')
    .argument('<VOLUME>', 'volume (name or #id)')
    .option('-r, --read-only', 'refuse every write (CLI, API, NBD exports it read-only)')
    .option('-w, --writable', 'allow writes again')
    .option('-l, --label <K=V>', 'add or change a label (repeatable)', collect)
    .option('-u, --unlabel <K>', 'remove a label (repeatable)', collect)
    .option('--json', 'print the result as JSON'),
  'Example:\n  thinpool set ./pool snap1 --read-only --label purpose=golden');

  def('delete', 'volumes', 'remove', (c) => c
    .alias('rm')
    .description('delete volume NAME and release the blocks only it used')
    .argument('<POOL>', 'pool directory')
    .argument('<NAME>', 'volume (name or #id)'));

  def('resize', 'volumes', 'resize', (c) => c
    .description('change the virtual size of NAME (shrinking drops the blocks past the new end)')
    .argument('<POOL>', 'pool directory')
    .argument('<NAME>', 'volume (name or #id)')
    .requiredOption('-s, --size <SIZE>', 'new virtual size (a multiple of 512 bytes)'),
  SIZES);

  def('ls', 'info', 'ls', (c) => c
    .alias('list')
    .description('list volumes: name, id, virtual size, mapped, exclusive and shared bytes, origin, created')
    .argument('<POOL>', 'pool directory')
    .option('-t, --tree', 'show volumes under their origins')
    .option('--json', 'print JSON (sizes in bytes)')
    .option('--bytes', 'print sizes in bytes'),
  'Exclusive bytes are mapped by this volume only (freed by deleting it); shared bytes are also mapped by another\nvolume (thin_ls semantics).');

  def('status', 'info', 'status', (c) => c
    .description('pool usage: data and metadata used/total, block size, transaction id, metadata snapshot, mode')
    .argument('<POOL>', 'pool directory')
    .option('--json', 'print JSON (sizes in bytes)'));

  def('write', 'data', 'write', (c) => c
    .description('write FILE (or standard input) into volume NAME at --offset')
    .argument('<POOL>', 'pool directory')
    .argument('<NAME>', 'volume (name or #id)')
    .argument('[FILE]', 'input file, or - for standard input (the default)')
    .option('-o, --offset <SIZE>', 'byte offset in the volume', '0')
    .option('--commit-every <SIZE>', 'commit after every SIZE bytes of input (long streams keep what was committed if they fail later)'),
  'Example:\n  echo hello | thinpool write ./pool base --offset 1M\n  cat disk.img | thinpool write ./pool disk\nBlocks of zeros that land on unprovisioned blocks leave them unprovisioned (as import does); holes of an\ninput file are not read. The whole input must fit in the volume and in the pool\'s free space, or nothing is\nwritten (one commit at the end; with --commit-every, what was committed before a failure stays).');

  def('read', 'data', 'read', (c) => c
    .description('read volume NAME to standard output')
    .argument('<POOL>', 'pool directory')
    .argument('<NAME>', 'volume (name or #id)')
    .option('-o, --offset <SIZE>', 'byte offset in the volume', '0')
    .option('-l, --length <SIZE>', 'bytes to read (default: to the end of the volume)'),
  'Example:\n  thinpool read ./pool base --offset 1M --length 6');

  def('import', 'data', 'importImage', (c) => c
    .description('create volume NAME from a raw disk image; all-zero blocks stay unprovisioned')
    .argument('<POOL>', 'pool directory')
    .argument('<NAME>', 'name of the new volume')
    .argument('<IMAGE>', 'raw image file')
    .option('-s, --size <SIZE>', 'virtual size of the volume (default: the image size rounded up to 512 bytes)')
    .option('-f, --format <raw>', 'raw: import the bytes as they are, even when they look like a qcow2, VMDK, VHD or VDI image'),
  'Example:\n  thinpool import ./pool disk disk.img\nqcow2, VMDK, VHD/VHDX and VDI images are recognised and refused: convert them first with\n  qemu-img convert -O raw disk.qcow2 disk.img');

  def('export', 'data', 'exportImage', (c) => c
    .description('write volume NAME to FILE as a raw image; unprovisioned and all-zero blocks become holes')
    .argument('<POOL>', 'pool directory')
    .argument('<NAME>', 'volume (name or #id)')
    .argument('<FILE>', 'output file (replaced)'),
  'Example:\n  thinpool export ./pool disk disk.img');

  def('map', 'info', 'map', (c) => c
    .description('list the provisioned extents of volume NAME')
    .argument('<POOL>', 'pool directory')
    .argument('<NAME>', 'volume (name or #id)')
    .option('--json', 'print JSON (offsets and lengths in bytes)')
    .option('--bytes', 'print offsets and lengths in bytes'),
  'Each row is a run of consecutive virtual blocks mapped to consecutive data blocks.');

  def('diff', 'info', 'diff', (c) => c
    .description('the block ranges that differ between volumes A and B (thin_delta semantics)')
    .argument('<POOL>', 'pool directory')
    .argument('<A>', 'volume (name or #id)')
    .argument('<B>', 'volume (name or #id)')
    .option('--all', 'also list the ranges both volumes share (same)')
    .option('--json', 'print JSON')
    .option('--bytes', 'print offsets and lengths in bytes'),
  'Kinds: different (both map the block, to different data), left_only (only A maps it), right_only (only B),\nsame (with --all). Ranges are in data blocks and bytes.');

  def('send', 'stream', 'send', (c) => c
    .description('write SNAPSHOT, or what changed since BASE, as an rbd export-diff stream')
    .argument('<POOL>', 'pool directory')
    .argument('<SNAPSHOT>', 'volume to send (name or #id)')
    .option('-f, --from <BASE>', 'send only the blocks that differ from volume BASE (thin_delta: shared blocks are not read)')
    .option('-o, --output <FILE>', 'write the stream to FILE (made only when complete) instead of standard output')
    .option('--stream-version <1|2>', 'rbd diff stream version: 1 (what rbd import-diff reads) or 2', '1')
    .option('--json', 'with -o: print the summary as JSON'),
  'The stream is Ceph\'s "rbd diff v1" (or v2) format: "thinpool receive" and "rbd import-diff" both apply it.\nExamples:\n  thinpool send ./pool snap1 -o snap1.diff\n  thinpool send ./pool snap2 --from snap1 | ssh host thinpool receive ./pool snap2\n  thinpool send ./pool snap1 | rbd import-diff - rbdpool/image');

  def('receive', 'stream', 'receive', (c) => c
    .description('make volume NAME from an rbd export-diff stream (thinpool send or rbd export-diff)')
    .argument('<POOL>', 'pool directory')
    .argument('<NAME>', 'name of the new volume')
    .option('-i, --input <FILE>', 'read the stream from FILE instead of standard input')
    .option('-f, --from <BASE>', 'base volume of an incremental stream (default: the stream\'s from-snap name)')
    .option('-l, --label <K=V>', 'label the new volume (repeatable)', collect)
    .option('-r, --read-only', 'make the new volume read-only')
    .option('--json', 'print the summary as JSON'),
  'An incremental stream becomes a snapshot of its base with the changes applied: untouched blocks stay shared\nand holes stay holes. A truncated or corrupt stream changes nothing.\nExamples:\n  thinpool receive ./pool snap1 -i snap1.diff\n  rbd export-diff --from-snap s1 rbdpool/image@s2 - | thinpool receive ./pool s2 --from s1');

  def('check', 'meta', 'check', (c) => c
    .description('fully check the pool\'s metadata, catalog and data file; exit 1 when damaged')
    .argument('<POOL>', 'pool directory (or a metadata file)')
    .option('--json', 'print the report as JSON'),
  'Checks checksums, block numbers, btree invariants, every metadata and data reference count, the space maps\' counters\n(warnings), the catalog and the data file\'s size. Errors name the structure and the metadata block.');

  def('dump', 'meta', 'dump', (c) => c
    .description('print the metadata as thin_dump XML (byte-identical to thin_dump)')
    .argument('<POOL>', 'pool directory (or a metadata file)')
    .option('-m, --metadata-snap', 'dump the held metadata snapshot (thin_dump -m)')
    .addOption(new Option('-o, --output <FILE>', 'write to FILE instead of standard output')),
  'Example:\n  thinpool dump ./pool > pool.xml');

  def('restore', 'meta', 'restore', (c) => c
    .description('create pool POOL whose metadata is built from thin_dump XML (as thin_restore)')
    .argument('<XML>', 'thin_dump XML file, or - for standard input')
    .argument('<POOL>', 'new pool directory (must not hold a pool)')
    .option('-m, --metadata-size <SIZE>', 'metadata file size (default: 48 bytes per data block, at least 2M)'),
  'The data file is sized nr_data_blocks x data_block_size, sparse. Volumes get no names: address them as #ID.');

  def('trim', 'space', 'trim', (c) => c
    .description('release every unused data block from the data file (like thin_trim)')
    .argument('<POOL>', 'pool directory'),
  'For pools written before discard passdown or by other tools. Mapped data is not touched.');

  def('extend', 'space', 'extend', (c) => c
    .description('grow the data device and/or the metadata device')
    .argument('<POOL>', 'pool directory')
    .option('-s, --size <SIZE>', 'new data device size')
    .option('-m, --metadata-size <SIZE>', 'new metadata device size (at most about 15.9 GiB)'),
  `Shrinking is refused.\n${SIZES}`);

  def('space', 'space', 'space', (c) => c
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
  'Example:\n  thinpool space ./pool --auto-extend on --auto-extend-max 100G');

  def('ls-pools', 'rados', 'lsPools', (c) => c
    .description('list the thin pools in a Ceph RADOS pool, with the holder of each one\'s write lock')
    .argument('<CEPH_POOL>', 'rados://CEPH_POOL')
    .option('--json', 'print JSON'),
  'Example:\n  thinpool ls-pools rados://rbd --ceph-conf /etc/ceph/ceph.conf');

  def('dump-metadata', 'rados', 'dumpMetadata', (c) => c
    .description('copy the pool\'s metadata device into FILE (for thin_check, thin_dump, thinpool check)')
    .argument('<POOL>', 'pool directory or rados://CEPH_POOL/NAME')
    .argument('<FILE>', 'output file (must not exist)'),
  'Reads the committed state without taking the write lock.\nExample:\n  thinpool dump-metadata rados://rbd/pool1 md.bin && thin_check md.bin');

  def('serve', 'serve', 'serve', (c) => c
    .description('serve volumes over NBD (fixed newstyle) until SIGINT/SIGTERM')
    .argument('<POOL>', 'pool directory')
    .argument('[NAME...]', 'volumes to export (default: all)')
    .option('-l, --listen <HOST:PORT>', 'TCP address to listen on (default 127.0.0.1:10809)')
    .option('-S, --socket <PATH>', 'Unix socket to listen on instead of TCP')
    .option('-r, --read-only', 'export every volume read-only')
    .option('--busy-poll-us <N>', 'after answering, poll the connection N microseconds before sleeping (0-1000, default 50; 0: off)')
    .option('--tls <off|on|require>', 'NBD over TLS (STARTTLS): off, offered (on), or required before anything is served', 'off')
    .option('--tls-psk <FILE>', 'pre-shared keys, psktool format (IDENTITY:HEXKEY lines)')
    .option('--tls-certificates <DIR>', 'X.509: DIR/server-cert.pem, DIR/server-key.pem, optional DIR/ca-cert.pem')
    .option('--tls-allow <ID:NAMES>', 'limit PSK identity ID to the comma-separated exports NAMES (repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--insecure', 'allow a non-loopback --listen address without --tls require')
    .option('--socket-mode <MODE>', 'octal mode of the --socket file (default 600: owner only)')
    .option('--max-connections <N>', 'most clients at once; more are closed as they connect (default 256)')
    .option('--handshake-timeout <SECONDS>', 'close a client that has not finished the handshake in time (default 10)'),
  'Examples:\n  thinpool serve ./pool base --socket /tmp/base.sock\n  nbdinfo "nbd+unix:///base?socket=/tmp/base.sock"\n'
  + '  psktool -u alice -p keys.psk\n  thinpool serve ./pool base --listen 0.0.0.0:10809 --tls require --tls-psk keys.psk\n'
  + '  nbdinfo "nbds://alice@HOST/base?tls-psk-file=keys.psk"\nSee docs/nbd.md for the limits and what happens past them.');

  def('bench', 'bench', 'bench', (c) => c
    .description('compare thinpool (and ext4 on a thinpool volume through NBD) with kernel overlayfs, a userspace union driver, qcow2 chains and the raw file')
    .option('--quick', 'every scenario at tiny sizes (under a minute)')
    .option('--full', 'add the 1 GiB cases (needs tens of GB free and a long time)')
    .option('--scenario <LIST>', 'only these scenarios: small-write,deep-read,create,many,throughput,teardown')
    .option('--out <DIR>', 'where to write results JSON, tables and SVG plots', 'thinpool-bench')
    .option('--work <DIR>', 'scratch directory (default: the system temporary directory)'),
  'Tables go to standard output, progress to standard error. Method and reference figures: docs/benchmarks.md.\nkernel overlayfs needs root (mount); qcow2 needs qemu-utils; rows say why a system was skipped.');

  def('demo', 'demo', 'demo', (c) => c
    .description('a guided tour on a pool it creates: a volume with content, a snapshot, a write, ls, diff, status')
    .argument('[DIR]', 'directory for the demo (replaced if it holds an earlier demo)', 'thinpool-demo'),
  'Example:\n  npx thinpool demo');

  // Command groups (image, container, fs): `thinpool GROUP COMMAND ...`, same lazy loading as def().
  const groups = new Map<string, Command>();
  const sub = (group: string, name: string, mod: keyof typeof modules, fn: string, configure: (c: Command) => Command, help?: string): void => {
    let g = groups.get(group);
    if (!g) {
      g = program.command(group).description({ image: 'images: stacks of read-only layers (import, ls, history, rm, export)', container: 'containers: writable snapshots of an image (create, ls, rm, commit, diff, export)', fs: 'files inside a volume, image or container (ls, cat, put, rm), no mount', lock: 'the write lock of a pool in Ceph RADOS (break)', snapshotter: 'containerd\'s storage: a proxy snapshotter on the pool (serve)' }[group] ?? group).helpOption('-h, --help', 'show this help');
      groups.set(group, g);
    }
    const c = g.command(name);
    configure(c);
    c.helpOption('-h, --help', 'show this help');
    if (help) c.addHelpText('after', `\n${help}`);
    c.action(async (...all: unknown[]) => {
      const command = all[all.length - 1] as Command;
      state.cmd = `${group} ${name}`; // error lines say "thinpool image import: ..."
      const m = (await modules[mod]()) as unknown as Record<string, Action>;
      const code = await m[fn](ctx, command.processedArgs.flat().map((a) => a as string), command.opts());
      state.result = typeof code === 'number' ? code : 0;
    });
  };
  const P = (c: Command): Command => c.argument('<POOL>', 'pool directory');
  sub('image', 'import', 'image', 'importImage', (c) => P(c).description('import an image: an OCI layout directory, an OCI/docker save tar, or layer tarballs (bottom first)')
    .argument('<NAME>', 'image name').argument('<SOURCE...>', 'OCI layout dir, image archive, or layer tarballs (plain or gzipped)')
    .option('--fs-size <SIZE>', 'size of the ext4 filesystem of a new image (default 1G)').option('--json', 'print JSON'),
  'Layers are committed thin snapshots named by chain id; layers already in the pool are reused.\nExample:\n  thinpool image import ./pool app ./app-oci');
  sub('image', 'ls', 'image', 'ls', (c) => P(c).alias('list').description('list images').option('--json', 'print JSON').option('--no-trunc', 'full ids'));
  sub('image', 'history', 'image', 'history', (c) => P(c).description('the layers of an image, newest first, with the bytes each adds').argument('<NAME>', 'image name')
    .option('--json', 'print JSON').option('--no-trunc', 'full ids and commands').option('--bytes', 'sizes in bytes'));
  sub('image', 'export', 'image', 'exportImage', (c) => P(c).description('write an image\'s disk (its top layer\'s ext4 filesystem) to FILE as a raw image').argument('<NAME>', 'image name').argument('<FILE>', 'output file (replaced)'),
    'Example:\n  thinpool image export ./pool app app.img');
  sub('image', 'rm', 'image', 'remove', (c) => P(c).description('remove an image and the layers nothing else uses').argument('<NAME>', 'image name'));
  sub('container', 'create', 'container', 'create', (c) => P(c).description('create a container: a writable snapshot of the image\'s top layer (constant time)').argument('<IMAGE>', 'image name').argument('<NAME>', 'container name'));
  sub('container', 'ls', 'container', 'ls', (c) => P(c).alias('list').description('list containers with their exclusive bytes').option('--json', 'print JSON').option('--bytes', 'sizes in bytes'));
  sub('container', 'rm', 'container', 'remove', (c) => P(c).description('remove a container (frees its exclusive blocks)').argument('<NAME>', 'container name'));
  sub('container', 'commit', 'container', 'commit', (c) => P(c).description('make a container the top layer of a new image').argument('<NAME>', 'container name').argument('<IMAGE>', 'new image name').option('-m, --message <TEXT>', 'history comment'));
  sub('container', 'export', 'container', 'exportContainer', (c) => P(c).description('write a container\'s disk (its ext4 filesystem) to FILE as a raw image; holes stay holes').argument('<NAME>', 'container name').argument('<FILE>', 'output file (replaced)'),
    'Example:\n  thinpool container export ./pool c1 c1.img && e2fsck -fn c1.img');
  sub('container', 'diff', 'container', 'diff', (c) => P(c).description('paths added (A), changed (C) and deleted (D) against the image').argument('<NAME>', 'container name').option('--json', 'print JSON'));
  const V = (c: Command): Command => P(c).argument('<VOLUME>', 'container, image (its top layer), snapshot key or volume name');
  sub('fs', 'ls', 'fs', 'ls', (c) => V(c).description('list a directory').argument('[PATH]', 'path inside the filesystem', '/').option('-l, --long', 'mode, owner, size').option('-R, --recursive', 'the whole tree').option('--json', 'print JSON'));
  sub('fs', 'cat', 'fs', 'cat', (c) => V(c).description('print a file').argument('<PATH>', 'path inside the filesystem'));
  sub('fs', 'put', 'fs', 'put', (c) => V(c).description('write FILE (or standard input) to PATH (refused on committed layers)').argument('<PATH>', 'path inside the filesystem').argument('[FILE]', 'input file, or - for standard input').option('--mode <OCTAL>', 'file mode', '644'));
  sub('fs', 'rm', 'fs', 'rm', (c) => V(c).description('remove PATH (refused on committed layers); freed blocks go back to the pool').argument('<PATH>', 'path inside the filesystem').option('-r, --recursive', 'remove a directory and its contents'));

  sub('snapshotter', 'serve', 'snapshotter', 'serve', (c) => P(c).description('serve containerd\'s snapshots API on a unix socket until SIGTERM/SIGINT')
    .requiredOption('-a, --address <SOCKET>', 'unix socket for containerd (its proxy_plugins entry names it)')
    .option('--state-dir <DIR>', 'directory for the NBD socket and the nbdfuse mount points (default SOCKET.d)')
    .option('--fs-size <SIZE>', 'filesystem size of snapshots without a parent (default 10G; thin: only what is written uses space)')
    .option('-v, --verbose', 'log every failed request to standard error'),
  'containerd config (version 2):\n  [proxy_plugins.thinpool]\n    type = "snapshot"\n    address = "/run/thinpool-snapshotter.sock"\nthen: ctr image pull/import --snapshotter thinpool ...; ctr run --snapshotter thinpool ...\nSnapshots are ext4 filesystems on thin volumes; mounts are loop mounts of files nbdfuse (Debian package\nlibnbd-bin) shows. Needs root, /dev/fuse and loop devices. SIGTERM/SIGINT: exports detached, pool committed, exit 0.');

  sub('lock', 'break', 'rados', 'lockBreak', (c) => c.description('fence the writer holding the pool\'s lock (blocklist its Ceph client), then remove the lock')
    .argument('<POOL>', 'rados://CEPH_POOL/NAME').option('--json', 'print JSON'),
  'For a writer that died or hangs: nothing it still sends lands. As `rbd lock remove`.\nExample:\n  thinpool lock break rados://rbd/pool1');

  program.hook('preAction', (p, action) => {
    state.cmd = action.name();
    const g = p.opts();
    ctx.ceph = { conf: g.cephConf as string | undefined, id: g.cephId as string | undefined };
  });
  return program;
}

/** Run the command line argv; resolves to the exit status. */
export async function main(argv: string[], io?: Partial<CliIO>): Promise<number> {
  const fullIo: CliIO = {
    stdout: io?.stdout ?? process.stdout,
    stderr: io?.stderr ?? process.stderr,
    // Looked up only when a command reads it: making process.stdin turns a pipe on fd 0 non-blocking.
    get stdin() {
      return io?.stdin ?? process.stdin;
    },
    stdinFd: io?.stdin === undefined ? 0 : undefined,
    stdoutFd: io?.stdout === undefined ? 1 : undefined,
    cwd: io?.cwd,
  };
  const ctx: Ctx = { io: fullIo, cwd: fullIo.cwd ?? process.cwd(), main };
  const state = { result: 0, cmd: '' };
  const program = build(ctx, state);
  // The command (or "group subcommand") argv names, for error lines and help hints even when parsing fails.
  const named = (list: readonly Command[], word: string | undefined): Command | undefined =>
    list.find((c) => c.name() === word || c.aliases().includes(word ?? ''));
  const top = named(program.commands, argv[0]);
  const subCmd = top && top.commands.length > 0 ? named(top.commands, argv[1]) : undefined;
  const cmdName = top ? (subCmd ? `${top.name()} ${subCmd.name()}` : top.name()) : '';
  const prefix = (): string => `thinpool${state.cmd || cmdName ? ` ${state.cmd || cmdName}` : ''}`;
  if (argv.length === 0) {
    fullIo.stderr.write(program.helpInformation());
    return 2;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
    return state.result;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return 0;
      if (e.code === 'commander.help') return e.exitCode === 0 ? 0 : 2; // a group without its subcommand
      const msg = e.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ').trim();
      const helpHint = cmdName ? `thinpool ${cmdName} --help` : 'thinpool --help';
      fullIo.stderr.write(`${prefix()}: ${msg} (see "${helpHint}")\n`);
      return 2;
    }
    if (e instanceof CliError) {
      fullIo.stderr.write(`${prefix()}: ${oneLine(e.message)}\n`);
      return e.exitCode;
    }
    const { message, exitCode } = explainError(e);
    fullIo.stderr.write(`${prefix()}: ${oneLine(message)}\n`);
    return exitCode;
  }
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}
