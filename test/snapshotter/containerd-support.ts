// A containerd of the test's own (config, root, state and sockets under the test's directory, the thinpool proxy
// snapshotter as plugin `thinpool`), `ctr` against it, and OCI images built with umoci from a busybox-static
// rootfs: what the containerd tests need. containerd is stopped by pid; nothing of the machine's is touched.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { containerdConfigToml } from '../../src/snapshotter/containerd-config.js';
import { chmodSync, copyFileSync, mkdirSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { needPrerequisite, needTool } from '../support/tools.js';
import { overlayUnavailable } from '../union/layers.js';
import { run, type RunResult, snapshotterUnavailable } from './support.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Containerd {
  readonly child: ChildProcess;
  readonly address: string;
  readonly exited: Promise<void>;

  constructor(
    readonly dir: string,
    snapshotterSocket: string,
  ) {
    mkdirSync(dir, { recursive: true });
    this.address = join(dir, 'c.sock');
    const config = join(dir, 'config.toml');
    writeFileSync(config, containerdConfigToml(dir, snapshotterSocket));
    const log = openSync(join(dir, 'containerd.log'), 'a');
    this.child = spawn('containerd', ['--config', config], { stdio: ['ignore', log, log] });
    this.exited = new Promise((r) => this.child.on('exit', () => r()));
  }

  get log(): string {
    try {
      return readFileSync(join(this.dir, 'containerd.log'), 'utf8');
    } catch {
      return '';
    }
  }

  ctr(args: string[], timeoutMs = 120000): Promise<RunResult> {
    return run('ctr', ['--address', this.address, '--namespace', 'tp', ...args], { timeoutMs });
  }

  async ctrOk(args: string[], timeoutMs = 120000): Promise<string> {
    const r = await this.ctr(args, timeoutMs);
    if (r.code !== 0) throw new Error(`ctr ${args.join(' ')} exited ${r.code ?? r.signal}: ${r.stdout}${r.stderr}`);
    return r.stdout;
  }

  /**
   * `ctr snapshots view KEY PARENT`, made a garbage-collection root. ctr's `view` (unlike its `prepare` and `commit`)
   * gives the view no `containerd.io/gc.root` label and holds no lease, so containerd's collector, woken by an
   * earlier removal (a `ctr run --rm`), may take the view before the next command asks for its mounts. The view is
   * labelled as a root at once; if the collector took it first, it is made again (bounded).
   */
  async viewAsRoot(snapshotter: string, key: string, parent: string): Promise<void> {
    const tries: string[] = [];
    for (let i = 0; i < 10; i++) {
      const v = await this.ctr(['snapshots', '--snapshotter', snapshotter, 'view', key, parent]);
      if (v.code !== 0 && !/already exists/.test(v.stderr)) tries.push(`view: ${v.stderr.trim()}`);
      const root = `containerd.io/gc.root=${new Date().toISOString()}`;
      const l = await this.ctr(['snapshots', '--snapshotter', snapshotter, 'label', key, root]);
      if (l.code === 0) return;
      tries.push(`label: ${l.stderr.trim()}`);
      await sleep(100);
    }
    throw new Error(`view ${key} of ${parent} could not be made a root:\n${tries.join('\n')}`);
  }

  /** Wait until containerd answers and reaches the snapshotter (bounded). */
  async ready(timeoutMs = 60000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.ctr(['snapshots', '--snapshotter', 'thinpool', 'ls'], 10000);
      if (r.code === 0) return;
      if (this.child.exitCode !== null) throw new Error(`containerd exited: ${this.log.slice(-3000)}`);
      if (Date.now() > deadline) throw new Error(`containerd or the snapshotter not ready: ${r.stderr}\n${this.log.slice(-3000)}`);
      await sleep(200);
    }
  }

  /** Snapshot keys the thinpool snapshotter has, as containerd lists them. */
  async snapshots(): Promise<string[]> {
    const out = await this.ctrOk(['snapshots', '--snapshotter', 'thinpool', 'ls']);
    return out
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.split(/\s+/)[0])
      .filter(Boolean);
  }

  async stop(timeoutMs = 30000): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(t);
  }
}

/** A vfs_cap_data v2 value with the effective bit and CAP_NET_RAW permitted (what setcap cap_net_raw+ep writes). */
export const CAP_NET_RAW_EP = (() => {
  const b = Buffer.alloc(20);
  b.writeUInt32LE(0x02000001, 0);
  b.writeUInt32LE(1 << 13, 4);
  return b;
})();

async function ok(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args, { timeoutMs: 120000 });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

async function setXattr(file: string, name: string, value: Buffer): Promise<void> {
  await ok('python3', [
    '-c',
    'import os,sys; os.setxattr(sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]))',
    file,
    name,
    value.toString('hex'),
  ]);
}

/**
 * An OCI image archive of two layers built with umoci: layer 1 a busybox-static rootfs with a character device
 * (1,3) at /data/mydev, a FIFO /data/fifo, a setuid copy /bin/suid, a copy /bin/cap with a security.capability
 * xattr, /etc/gone.txt (with user.note) and /etc/keep.txt; layer 2 deletes /etc/gone.txt (a whiteout) and adds
 * /etc/layer2.txt. Returns the archive path and the image's ref name inside it.
 */
export async function buildTestImage(dir: string, extra?: (rootfs: string) => Promise<void>): Promise<{ archive: string; layout: string }> {
  const layout = join(dir, 'oci');
  const bundle = join(dir, 'bundle');
  await ok('umoci', ['init', '--layout', layout]);
  await ok('umoci', ['new', '--image', `${layout}:img`]);
  await ok('umoci', ['unpack', '--image', `${layout}:img`, bundle]);
  const r = join(bundle, 'rootfs');
  for (const d of ['bin', 'data', 'etc']) mkdirSync(join(r, d), { recursive: true });
  copyFileSync('/bin/busybox', join(r, 'bin', 'busybox'));
  symlinkSync('busybox', join(r, 'bin', 'sh'));
  await ok('mknod', [join(r, 'data', 'mydev'), 'c', '1', '3']);
  await ok('mkfifo', [join(r, 'data', 'fifo')]);
  copyFileSync('/bin/busybox', join(r, 'bin', 'suid'));
  chmodSync(join(r, 'bin', 'suid'), 0o4755);
  copyFileSync('/bin/busybox', join(r, 'bin', 'cap'));
  await setXattr(join(r, 'bin', 'cap'), 'security.capability', CAP_NET_RAW_EP);
  writeFileSync(join(r, 'etc', 'gone.txt'), 'gone\n');
  await setXattr(join(r, 'etc', 'gone.txt'), 'user.note', Buffer.from('hello'));
  writeFileSync(join(r, 'etc', 'keep.txt'), 'layer one\n');
  if (extra) await extra(r);
  await ok('umoci', ['repack', '--refresh-bundle', '--image', `${layout}:img`, bundle]);
  rmSync(join(r, 'etc', 'gone.txt'));
  writeFileSync(join(r, 'etc', 'layer2.txt'), 'layer two\n');
  await ok('umoci', ['repack', '--refresh-bundle', '--image', `${layout}:img`, bundle]);
  const archive = join(dir, 'img.tar');
  await ok('tar', ['cf', archive, '-C', layout, '.']);
  return { archive, layout };
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/**
 * A new image archive: the image of `layout` plus one uncompressed layer (a tar, e.g. what `ctr snapshots diff`
 * wrote), as a new manifest and config in the same layout, tagged `ref`.
 */
export async function addLayer(layout: string, layer: Buffer, ref: string, out: string): Promise<void> {
  const blob = (d: string) => join(layout, 'blobs', 'sha256', d.replace(/^sha256:/, ''));
  const put = (b: Buffer) => {
    const d = sha256(b);
    writeFileSync(join(layout, 'blobs', 'sha256', d), b);
    return { digest: `sha256:${d}`, size: b.length };
  };
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as {
    manifests: { digest: string; annotations?: Record<string, string> }[];
  };
  const manifest = JSON.parse(readFileSync(blob(index.manifests[0].digest), 'utf8')) as {
    config: { digest: string; size: number };
    layers: { mediaType: string; digest: string; size: number }[];
  };
  const config = JSON.parse(readFileSync(blob(manifest.config.digest), 'utf8')) as { rootfs: { diff_ids: string[] }; history?: unknown[] };
  const l = put(layer);
  config.rootfs.diff_ids.push(l.digest);
  config.history = [...(config.history ?? []), { created: new Date().toISOString(), created_by: 'ctr snapshots diff of a container' }];
  const c = put(Buffer.from(JSON.stringify(config)));
  manifest.config = { ...manifest.config, ...c };
  manifest.layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...l });
  const m = put(Buffer.from(JSON.stringify(manifest)));
  const newIndex = {
    schemaVersion: 2,
    manifests: [
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', ...m, annotations: { 'org.opencontainers.image.ref.name': ref } },
    ],
  };
  writeFileSync(join(layout, 'index.json'), JSON.stringify(newIndex));
  await ok('tar', ['cf', out, '-C', layout, '.']);
}

/**
 * Why containerd cannot run both its overlayfs snapshotter and thinpool's here (null: it can), for tests that
 * compare the two: the tools (plus `extraTools`, each with its Debian package), kernel overlayfs and the
 * snapshotter's mounts, each through the gates that fail under CI=true.
 */
export function whyNoContainerdComparison(extraTools: [string, string][] = []): string | null {
  const tools: [string, string][] = [
    ['containerd', 'containerd'],
    ['ctr', 'containerd'],
    ['runc', 'runc'],
    ['umoci', 'umoci'],
    ['busybox', 'busybox-static'],
    ...extraTools,
  ];
  for (const [t, p] of tools) if (!needTool(t, p)) return `${t} not installed (Debian package ${p})`;
  const ovl = overlayUnavailable() ?? null;
  if (!needPrerequisite("containerd's overlayfs snapshotter (kernel overlayfs)", ovl)) return ovl;
  const mounts = snapshotterUnavailable();
  return needPrerequisite("the snapshotter's mounts (loop devices, /dev/fuse, nbdfuse)", mounts) ? null : mounts;
}
