/**
 * The `thinpool` commands that run a service or a tour, declared (flags and help) in the order `--help` lists
 * them: serve (NBD), bench, demo. Their code is in ./commands/serve.ts, ./commands/bench.ts and
 * ./commands/demo.ts, loaded only when one runs.
 */
import type { Registry } from './define.js';

export function defineServiceCommands({ def }: Registry): void {
  def(
    'serve',
    'serve',
    'serve',
    (c) =>
      c
        .description('serve volumes over NBD (fixed newstyle) until SIGINT/SIGTERM')
        .argument('<POOL>', 'pool directory')
        .argument('[NAME...]', 'volumes to export (default: all); container/NAME or image/NAME: a container or image by its name')
        .option('-l, --listen <HOST:PORT>', 'TCP address to listen on (default 127.0.0.1:10809)')
        .option('-S, --socket <PATH>', 'Unix socket to listen on instead of TCP')
        .option('-r, --read-only', 'export every volume read-only')
        .option(
          '--write-back <SIZE>',
          "rados:// pools: answer up to SIZE of writes before the cluster acknowledges them, as librbd's cache (FLUSH and FUA wait for them; a failure among them fails the next FLUSH and every later write); default 0: off",
        )
        .option('--busy-poll-us <N>', 'after answering, poll the connection N microseconds before sleeping (0-1000, default 50; 0: off)')
        .option('--tls <off|on|require>', 'NBD over TLS (STARTTLS): off, offered (on), or required before anything is served', 'off')
        .option('--tls-psk <FILE>', 'pre-shared keys, psktool format (IDENTITY:HEXKEY lines)')
        .option('--tls-certificates <DIR>', 'X.509: DIR/server-cert.pem, DIR/server-key.pem, optional DIR/ca-cert.pem')
        .option(
          '--tls-allow <ID:NAMES>',
          'limit PSK identity ID to the comma-separated exports NAMES (repeatable)',
          (v: string, prev: string[]) => [...prev, v],
          [] as string[],
        )
        .option('--insecure', 'allow a non-loopback --listen address without --tls require')
        .option('--socket-mode <MODE>', 'octal mode of the --socket file (default 600: owner only)')
        .option('--max-connections <N>', 'most clients at once; more are closed as they connect (default 256)')
        .option('--handshake-timeout <SECONDS>', 'close a client that has not finished the handshake in time (default 10)'),
    'Examples:\n  thinpool serve ./pool base --socket /tmp/base.sock\n  nbdinfo "nbd+unix:///base?socket=/tmp/base.sock"\n' +
      '  psktool -u alice -p keys.psk\n  thinpool serve ./pool base --listen 0.0.0.0:10809 --tls require --tls-psk keys.psk\n' +
      '  nbdinfo "nbds://alice@HOST/base?tls-psk-file=keys.psk"\nSee docs/nbd.md for the limits and what happens past them.',
  );

  def(
    'bench',
    'bench',
    'bench',
    (c) =>
      c
        .description(
          'compare thinpool (and ext4 on a thinpool volume through NBD) with kernel overlayfs, a userspace union driver, qcow2 chains and the raw file; and containerd on its overlayfs snapshotter against containerd on thinpool',
        )
        .option('--quick', 'every scenario at tiny sizes (under a minute)')
        .option('--full', 'add the 1 GiB cases (needs tens of GB free and a long time)')
        .option('--scenario <LIST>', 'only these scenarios: small-write,deep-read,create,many,throughput,teardown,containerd')
        .option('--out <DIR>', 'where to write results JSON, tables and SVG plots', 'thinpool-bench')
        .option('--work <DIR>', 'scratch directory (default: the system temporary directory)'),
    'Tables go to standard output, progress to standard error. Method and reference figures: docs/benchmarks.md.\nkernel overlayfs needs root (mount); qcow2 needs qemu-utils; containerd needs containerd, runc, umoci, busybox-static,\nFUSE and loop devices; rows say why a system was skipped.',
  );

  def(
    'demo',
    'demo',
    'demo',
    (c) =>
      c
        .description('a guided tour on a pool it creates: a volume with content, a snapshot, a write, ls, diff, status')
        .argument('[DIR]', 'directory for the demo (replaced if it holds an earlier demo)', 'thinpool-demo'),
    'Example:\n  npx thinpool demo',
  );
}
