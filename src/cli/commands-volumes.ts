/**
 * The `thinpool` commands on volumes as a whole, declared (flags and help) in the order `--help` lists them:
 * init, create, snapshot, rename, rollback, set, delete, resize, ls, status. Their code is in
 * ./commands/volumes.ts, ./commands/verbs.ts and ./commands/info.ts, loaded only when one runs.
 */
import { collect } from './labels.js';
import { SIZES, type Registry } from './define.js';

export function defineVolumeCommands({ def }: Registry): void {
  def(
    'init',
    'volumes',
    'init',
    (c) =>
      c
        .description('create a pool in directory POOL (made if missing)')
        .argument('<POOL>', 'pool directory')
        .requiredOption('-s, --size <SIZE>', "data capacity (the sparse data file's size)")
        .option('-b, --block-size <SIZE>', 'data block size: 64K to 1G, a multiple of 64K', '64K')
        .option('-m, --metadata-size <SIZE>', 'metadata file size (default: 48 bytes per data block, at least 2M)')
        .option('--object-size <SIZE>', 'rados:// pools: bytes per RADOS data object, a power of two from 4K to 64M (default 4M)'),
    `Examples:\n  thinpool init ./pool --size 10G --block-size 64K\n  thinpool init rados://rbd/pool1 --size 1T --ceph-conf /etc/ceph/ceph.conf\n${SIZES}`,
  );

  def(
    'create',
    'volumes',
    'create',
    (c) =>
      c
        .description('create an empty thin volume NAME of virtual size SIZE')
        .argument('<POOL>', 'pool directory')
        .argument('<NAME>', 'volume name: 1-255 characters, no spaces, slashes or control characters, not a number')
        .requiredOption('-s, --size <SIZE>', 'virtual size (a multiple of 512 bytes)')
        .option('-l, --label <K=V>', 'label the volume (repeatable)', collect),
    `Example:\n  thinpool create ./pool base --size 1G --label env=test\n${SIZES}`,
  );

  def(
    'snapshot',
    'volumes',
    'snapshot',
    (c) =>
      c
        .description('snapshot volume ORIGIN as NAME (constant time; blocks are shared until written)')
        .argument('<POOL>', 'pool directory')
        .argument('<ORIGIN>', 'volume to snapshot (name or #id)')
        .argument('<NAME>', 'name of the new snapshot')
        .option('-r, --read-only', 'make the snapshot read-only (every write path refuses it: CLI, API, NBD)')
        .option('-l, --label <K=V>', 'label the snapshot (repeatable)', collect),
    'Example:\n  thinpool snapshot ./pool base snap1 --read-only',
  );

  def(
    'rename',
    'verbs',
    'rename',
    (c) =>
      c
        .description('rename volume OLD to NEW (lvrename, zfs rename, rbd rename)')
        .argument('<POOL>', 'pool directory')
        .argument('<OLD>', 'volume (name or #id)')
        .argument('<NEW>', 'new name')
        .option('--json', 'print the result as JSON'),
    'The volume keeps its id, data, labels and snapshots (which show the new name as their origin).',
  );

  def(
    'rollback',
    'verbs',
    'rollback',
    (c) =>
      c
        .description("make VOLUME's content SNAPSHOT's, in constant time (zfs rollback, lvconvert --merge)")
        .argument('<POOL>', 'pool directory')
        .argument('<VOLUME>', 'volume to roll back (name or #id)')
        .argument('<SNAPSHOT>', 'a snapshot of VOLUME (or of one of its snapshots)')
        .option('--json', 'print the result as JSON'),
    'VOLUME keeps its name, id, size and labels; no data is copied, and the blocks only VOLUME held are freed at the\ncommit. SNAPSHOT and other snapshots stay. Refused for read-only volumes and volumes owned by images or\ncontainers.\nExample:\n  thinpool rollback ./pool vm1 vm1-before-upgrade',
  );

  def(
    'set',
    'verbs',
    'set',
    (c) =>
      c
        .description('change the read-only flag or the labels of VOLUME')
        .argument('<POOL>', 'pool directory')
        .argument('<VOLUME>', 'volume (name or #id)')
        .option('-r, --read-only', 'refuse every write (CLI, API, NBD exports it read-only)')
        .option('-w, --writable', 'allow writes again')
        .option('-l, --label <K=V>', 'add or change a label (repeatable)', collect)
        .option('-u, --unlabel <K>', 'remove a label (repeatable)', collect)
        .option('--json', 'print the result as JSON'),
    'Example:\n  thinpool set ./pool snap1 --read-only --label purpose=golden',
  );

  def('delete', 'volumes', 'remove', (c) =>
    c
      .alias('rm')
      .description('delete volume NAME and release the blocks only it used')
      .argument('<POOL>', 'pool directory')
      .argument('<NAME>', 'volume (name or #id)'),
  );

  def(
    'resize',
    'volumes',
    'resize',
    (c) =>
      c
        .description('change the virtual size of NAME (shrinking drops the blocks past the new end)')
        .argument('<POOL>', 'pool directory')
        .argument('<NAME>', 'volume (name or #id)')
        .requiredOption('-s, --size <SIZE>', 'new virtual size (a multiple of 512 bytes)'),
    SIZES,
  );

  def(
    'ls',
    'info',
    'ls',
    (c) =>
      c
        .alias('list')
        .description('list volumes: name, id, virtual size, mapped, exclusive and shared bytes, origin, created')
        .argument('<POOL>', 'pool directory')
        .option('-t, --tree', 'show volumes under their origins')
        .option('--json', 'print JSON (sizes in bytes)')
        .option('--bytes', 'print sizes in bytes'),
    'Exclusive bytes are mapped by this volume only (freed by deleting it); shared bytes are also mapped by another\nvolume (thin_ls semantics).',
  );

  def('status', 'info', 'status', (c) =>
    c
      .description('pool usage: data and metadata used/total, block size, transaction id, metadata snapshot, mode')
      .argument('<POOL>', 'pool directory')
      .option('--json', 'print JSON (sizes in bytes)'),
  );
}
