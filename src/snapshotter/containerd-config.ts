/**
 * The config.toml of a private containerd that uses `thinpool snapshotter serve` as its `thinpool` proxy
 * snapshotter: its root, state and sockets all under one directory (nothing shared with a system containerd),
 * the CRI plugin off. `extra` lines (TOML sections of their own) go before the proxy plugin. Used by the tests and
 * the containerd benchmark, and a starting point for a user's own config (docs/snapshotter.md).
 */
import { join } from 'node:path';

export function containerdConfigToml(dir: string, snapshotterSocket: string, extra: readonly string[] = []): string {
  return [
    'version = 2',
    `root = "${join(dir, 'root')}"`,
    `state = "${join(dir, 'state')}"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = "${join(dir, 'c.sock')}"`,
    '[ttrpc]',
    `  address = "${join(dir, 'c.sock.ttrpc')}"`,
    '[debug]',
    `  address = "${join(dir, 'debug.sock')}"`,
    '[metrics]',
    '  address = ""',
    ...extra,
    '[proxy_plugins.thinpool]',
    '  type = "snapshot"',
    `  address = "${snapshotterSocket}"`,
    '',
  ].join('\n');
}
