// The tree a container gets on thinpool equals the tree containerd's own overlayfs snapshotter gives for the same
// image, and both equal the merged OCI tree (umoci's unpack of the image). The test starts its own containerd
// (with the thinpool proxy plugin, started first, and the built-in overlayfs snapshotter) under its temp dir,
// imports one image archive through both snapshotters, mounts a view of each image's top snapshot as
// `ctr snapshots mounts` says (ext4 through a loop device / overlay), and compares every path: type, mode
// (setuid/setgid/sticky included), owner, size, SHA-256 of the content, extended attributes with their raw
// bytes, device numbers, symlink targets, modification times of non-directories (to the nanosecond; against umoci's
// tree, whose tars round times to seconds, without them), and which paths are hard links of each other. The
// image is a real distribution tree in part: the host's /etc, /usr/sbin and /usr/share/zoneinfo (thousands of
// files, many owners and modes, symlinks), with a character and a block device, a FIFO, setuid and setgid
// files, a sticky directory, hard links, a security.capability and user.* xattrs added, in two layers with a
// whiteout. Both processes are stopped by pid; nothing is left behind.
import { linkSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Containerd, buildTestImage, whyNoContainerdComparison } from './containerd-support.js';
import { SnapshotterProcess, checkPool, run, thinpool, waitNoLeaks } from './support.js';

const reason = whyNoContainerdComparison([
  ['python3', 'python3'],
  ['thin_check', 'thin-provisioning-tools'],
]);
if (reason) console.warn(`skipping the thinpool / overlayfs tree comparison: ${reason}`);

/**
 * Prints one JSON line per path under the root (the root itself as "/"), sorted: what must be equal. Hard links
 * appear as "link" (the first path of the same inode, in sorted order). Directory sizes and times are left out
 * (they depend on the filesystem); lost+found is listed if present (it must not be).
 */
const WALK = `
import os, sys, json, hashlib, stat
root = sys.argv[1]
paths = ['/']
for d, ds, fs in os.walk(root):
    for n in ds + fs:
        paths.append('/' + os.path.relpath(os.path.join(d, n), root))
paths.sort()
first = {}
for p in paths:
    f = root if p == '/' else root + p
    st = os.lstat(f)
    r = {'path': p, 'mode': oct(st.st_mode), 'uid': st.st_uid, 'gid': st.st_gid}
    x = {}
    for a in sorted(os.listxattr(f, follow_symlinks=False)):
        x[a] = os.getxattr(f, a, follow_symlinks=False).hex()
    if x: r['xattrs'] = x
    if not stat.S_ISDIR(st.st_mode):
        r['size'] = st.st_size
        r['mtime'] = st.st_mtime_ns
        if st.st_nlink > 1:
            k = (st.st_dev, st.st_ino)
            r['link'] = first.setdefault(k, p)
    if stat.S_ISREG(st.st_mode):
        h = hashlib.sha256()
        with open(f, 'rb') as fh:
            for b in iter(lambda: fh.read(1 << 20), b''): h.update(b)
        r['sha256'] = h.hexdigest()
    elif stat.S_ISLNK(st.st_mode):
        r['target'] = os.readlink(f)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        r['dev'] = '%d:%d' % (os.major(st.st_rdev), os.minor(st.st_rdev))
    print(json.dumps(r, sort_keys=True))
`;

async function tree(root: string): Promise<string[]> {
  const r = await run('python3', ['-c', WALK, root], { timeoutMs: 300000 });
  if (r.code !== 0) throw new Error(`tree walk of ${root} failed: ${r.stderr}`);
  return r.stdout.trim().split('\n');
}

describe("the same image on thinpool and on containerd's overlayfs snapshotter", () => {
  if (reason) {
    test.skipIf(reason !== null)(`thinpool and overlayfs trees (skipped: ${reason})`, () => {});
    return;
  }
  const dir = mkdtempSync('/tmp/tp-ctrd-tree-');
  const pool = join(dir, 'pool');
  const sock = join(dir, 'snap.sock');
  let snap: SnapshotterProcess | undefined;
  let ctrd: Containerd | undefined;
  let merged = '';
  let archive = '';
  const mounted: string[] = [];

  beforeAll(async () => {
    expect((await thinpool(['init', pool, '--size', '4G'])).code).toBe(0);
    snap = new SnapshotterProcess(pool, sock, ['--fs-size', '512M']);
    await snap.ready();
    ctrd = new Containerd(join(dir, 'ctrd'), sock);
    await ctrd.ready();
    const built = await buildTestImage(join(dir, 'image'), async (r) => {
      // A real distribution tree, as the host has it (owners, modes, symlinks, many small files).
      for (const d of ['etc', 'usr/sbin', 'usr/share/zoneinfo']) {
        mkdirSync(join(r, d), { recursive: true });
        const cp = await run('cp', ['-a', `/${d}/.`, join(r, d)]);
        if (cp.code !== 0) throw new Error(`cp -a /${d}: ${cp.stderr}`);
      }
      // What cp of a host tree does not bring: a block device, a setgid file, a sticky dir, hard links, xattrs.
      const mk = await run('sh', ['-c', `mknod ${join(r, 'data', 'blk')} b 7 200 && chown 12:34 ${join(r, 'data', 'blk')}`]);
      if (mk.code !== 0) throw new Error(mk.stderr);
      writeFileSync(join(r, 'data', 'sgid'), 'setgid\n');
      chmodSync(join(r, 'data', 'sgid'), 0o2711);
      mkdirSync(join(r, 'data', 'tmp'));
      chmodSync(join(r, 'data', 'tmp'), 0o1777);
      writeFileSync(join(r, 'data', 'linked'), 'one inode, three names\n');
      linkSync(join(r, 'data', 'linked'), join(r, 'data', 'linked2'));
      linkSync(join(r, 'data', 'linked'), join(r, 'etc', 'linked3'));
      const x = await run('python3', [
        '-c',
        'import os,sys; os.setxattr(sys.argv[1], "user.mime_type", b"text/plain"); os.setxattr(sys.argv[2], "user.dir", bytes(range(0, 40)))',
        join(r, 'data', 'linked'),
        join(r, 'data', 'tmp'),
      ]);
      if (x.code !== 0) throw new Error(x.stderr);
    });
    archive = built.archive;
    merged = join(dir, 'image', 'bundle', 'rootfs'); // umoci's unpack, after the last layer: the merged OCI tree
    await ctrd.ctrOk(['images', 'import', '--snapshotter', 'thinpool', '--base-name', 'docker.io/library/tree', archive], 600000);
    await ctrd.ctrOk(['images', 'import', '--snapshotter', 'overlayfs', '--base-name', 'docker.io/library/tree', archive], 600000);
  }, 900000);

  afterAll(async () => {
    for (const m of mounted) await run('umount', [m]);
    // Views go first (containerd removes a snapshotter's snapshots only while that snapshotter answers).
    await ctrd?.ctr(['snapshots', '--snapshotter', 'thinpool', 'rm', 'tree-view']);
    await ctrd?.ctr(['snapshots', '--snapshotter', 'overlayfs', 'rm', 'tree-view']);
    await ctrd?.stop();
    let status: unknown;
    if (snap && snap.child.exitCode === null) status = await snap.stop();
    const problems = status ? await checkPool(pool) : ['the snapshotter had exited'];
    const left = await waitNoLeaks(dir);
    rmSync(dir, { recursive: true, force: true });
    expect(status).toEqual({ code: 0, signal: null });
    expect(problems).toEqual([]);
    expect(left).toEqual({ loops: [], fuseMounts: [], mounts: [], processes: [] });
  }, 300000);

  /** Mount a view of the image's top layer (its chain id, the same key in every snapshotter) as ctr says. */
  async function mountTop(snapshotter: string): Promise<string> {
    const rows = (await ctrd!.ctrOk(['snapshots', '--snapshotter', snapshotter, 'ls']))
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(/\s+/));
    const committed = rows.filter((k) => k[k.length - 1] === 'Committed');
    const tops = committed.filter((k) => !committed.some((o) => o.length === 3 && o[1] === k[0]));
    expect(tops.length, JSON.stringify(rows)).toBe(1);
    await ctrd!.viewAsRoot(snapshotter, 'tree-view', tops[0][0]);
    const mnt = join(dir, `mnt-${snapshotter}`);
    mkdirSync(mnt);
    const cmd = (await ctrd!.ctrOk(['snapshots', '--snapshotter', snapshotter, 'mounts', mnt, 'tree-view'])).trim();
    const m = await run('sh', ['-c', cmd]);
    expect(m.code, `${cmd}: ${m.stderr}`).toBe(0);
    mounted.push(mnt);
    return mnt;
  }

  test('every path equal: type, mode, owner, size, content, xattrs, device numbers, link targets, hard links, mtimes', async () => {
    const onThin = await mountTop('thinpool');
    const onOverlay = await mountTop('overlayfs');
    expect((await run('sh', ['-c', `grep " ${onThin} " /proc/self/mountinfo`])).stdout).toMatch(/ - ext4 \/dev\/loop\d+ ro/);
    expect((await run('sh', ['-c', `grep " ${onOverlay} " /proc/self/mountinfo`])).stdout).toMatch(/ - overlay /);
    const [thin, overlay, oci] = [await tree(onThin), await tree(onOverlay), await tree(merged)];
    // The image is what it claims to be: a few thousand paths, the special files among them.
    expect(oci.length).toBeGreaterThan(1000);
    for (const p of ['"/data/blk"', '"/data/mydev"', '"/data/fifo"', '"/bin/suid"', '"/bin/cap"', '"/data/linked2"', '"/data/sgid"'].map(
      (s) => `"path": ${s}`,
    )) {
      expect(
        oci.some((l) => l.includes(p)),
        p,
      ).toBe(true);
    }
    expect(oci.some((l) => l.includes('"/etc/gone.txt"'))).toBe(false);
    expect(oci.find((l) => l.includes('"path": "/bin/cap"'))).toContain('security.capability');
    const diff = (a: string[], b: string[]) => {
      const sb = new Set(b);
      return a.filter((l) => !sb.has(l)).slice(0, 20);
    };
    expect({ onlyThin: diff(thin, overlay), onlyOverlay: diff(overlay, thin) }).toEqual({ onlyThin: [], onlyOverlay: [] });
    // The merged OCI tree: the same paths and records. Its root is the bundle's own directory, and its times are
    // the originals, which umoci's layer tars round to whole seconds: times are compared above only.
    const seconds = (l: string[]) =>
      l.slice(1).map((x) => {
        const o = JSON.parse(x) as { mtime?: number };
        delete o.mtime;
        return JSON.stringify(o);
      });
    expect({ onlyThin: diff(seconds(thin), seconds(oci)), onlyOci: diff(seconds(oci), seconds(thin)) }).toEqual({
      onlyThin: [],
      onlyOci: [],
    });
  }, 600000);
});
