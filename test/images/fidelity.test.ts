// Image layers as real images carry them, made by GNU tar (--xattrs) from directories the test builds as root:
// device nodes (old and new number encodings), FIFOs, setuid/setgid/sticky modes, owners, times, hard links,
// symlinks, extended attributes (security.capability with binary bytes, user.*, trusted.*), whiteouts of a
// file, a directory and a device, an opaque directory; layers gzip, zstd and plain. The top layer's volume,
// mounted by the kernel (loop, read-only), must equal the reference: the same layers applied with cp -a. Every
// layer passes e2fsck -fn (a file in an upper layer replaces the lower one: its old mode and xattrs go). An attribute too big for the inode is an error naming the path.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { ImageStore } from '../../src/images/images.js';
import { ThinPool } from '../../src/thin/pool.js';
import { needPrerequisite, needTool } from '../support/tools.js';
import { expectFsck, exportSparse } from './support.js';

const haveTools =
  needTool('mkfs.ext4', 'e2fsprogs') &&
  needTool('e2fsck', 'e2fsprogs') &&
  needTool('zstd', 'zstd') &&
  needTool('python3', 'python3') &&
  needTool('mount', 'mount') &&
  needPrerequisite('image fidelity (mknod, xattrs, loop mount)', process.getuid?.() === 0 ? undefined : 'needs root');
const work = mkdtempSync(join(tmpdir(), 'tp-fidelity-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function sh(script: string, cwd = work): string {
  const r = spawnSync('bash', ['-euo', 'pipefail', '-c', script], { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${script}\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** security.capability v2: cap_net_raw (bit 13) permitted and effective. */
const CAP = '\\x01\\x00\\x00\\x02\\x00\\x20\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00';

const setx = (file: string, name: string, pyBytes: string): string =>
  `python3 -c "import os; os.setxattr('${file}', '${name}', b'${pyBytes}', follow_symlinks=False)"`;

// Every entry of a tree, as JSON lines: type, mode, owner, size, device numbers, content hash, link target,
// mtime (not for directories and links), xattrs, and the first path of its hard-link group.
const WALK = `
import os, sys, json, hashlib, stat
root = sys.argv[1]; out = []; seen = {}
for d, dirs, files in os.walk(root):
    dirs.sort()
    for n in sorted(dirs + files):
        p = os.path.join(d, n); r = p[len(root):]
        if r == '/lost+found' or r.startswith('/lost+found/'): continue
        st = os.lstat(p); t = stat.S_IFMT(st.st_mode)
        e = {'path': r, 'fmt': oct(t), 'mode': oct(stat.S_IMODE(st.st_mode)), 'uid': st.st_uid, 'gid': st.st_gid}
        if stat.S_ISREG(t):
            e['size'] = st.st_size; e['sha'] = hashlib.sha256(open(p, 'rb').read()).hexdigest()
            e['link'] = seen.setdefault((st.st_ino), r)
        if stat.S_ISCHR(t) or stat.S_ISBLK(t): e['dev'] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
        if stat.S_ISLNK(t): e['target'] = os.readlink(p)
        if not stat.S_ISDIR(t) and not stat.S_ISLNK(t): e['mtime'] = int(st.st_mtime)
        e['xattrs'] = {k: os.getxattr(p, k, follow_symlinks=False).hex() for k in sorted(os.listxattr(p, follow_symlinks=False)) if k != 'security.selinux'}
        out.append(e)
print(json.dumps(out, indent=1))
`;

function tree(dir: string): unknown {
  writeFileSync(join(work, 'walk.py'), WALK);
  return JSON.parse(sh(`python3 ${join(work, 'walk.py')} ${dir}`));
}

describe.runIf(haveTools)('image layers keep devices, FIFOs, modes, links, times and xattrs', () => {
  test('three layers (gzip, zstd, plain): the kernel-mounted top volume equals the reference tree', async () => {
    const L = [join(work, 'l1'), join(work, 'l2'), join(work, 'l3')];
    sh(`
      mkdir -p l1/etc l1/bin l1/usr/bin l1/tmp l1/dev l1/run l1/data l1/gone l1/opq l1/home/u
      echo base > l1/etc/hostname
      printf '#!/bin/sh\\n' > l1/bin/ping; chmod 4755 l1/bin/ping
      ${setx('l1/bin/ping', 'security.capability', CAP)}
      ${setx('l1/bin/ping', 'user.origin', 'debian')}
      echo sg > l1/usr/bin/sg; chown 0:42 l1/usr/bin/sg; chmod 2755 l1/usr/bin/sg
      chmod 1777 l1/tmp
      mknod l1/dev/null c 1 3; chmod 666 l1/dev/null
      mknod l1/dev/loop7 b 7 200
      mknod l1/dev/big c 300 70000
      mkfifo l1/run/initctl; chmod 600 l1/run/initctl
      head -c 300000 /dev/urandom > l1/data/a; ln l1/data/a l1/data/a-hard
      ln -s ../data/a l1/bin/alink
      echo x > l1/gone/x; echo y > l1/gonefile; echo old > l1/opq/old
      echo u > l1/home/u/f; chown -R 1000:1000 l1/home/u
      ${setx('l1/home/u', 'trusted.overlay', '\\x00\\xffbin')}
      touch -h -d '2001-02-03 04:05:06' l1/etc/hostname l1/dev/null l1/run/initctl l1/data/a
      echo late > l1/etc/late; touch -d @1796611314.9996 l1/etc/late # tar keeps the fraction: not a second later
      mkdir -p l2/opq l2/dev l2/run l2/etc
      touch l2/.wh.gone l2/.wh.gonefile l2/dev/.wh.loop7 l2/opq/.wh..wh..opq
      echo new > l2/opq/new
      mkfifo l2/run/fifo2
      echo two > l2/etc/hostname; ${setx('l2/etc/hostname', 'user.k', 'v')}
      mknod l2/dev/zero c 1 5
      mkdir -p l3/bin
      echo replaced > l3/bin/ping; chmod 755 l3/bin/ping
      ${setx('l3/bin/ping', 'security.capability', CAP)}
      tar --xattrs --xattrs-include='*' --numeric-owner -czf l1.tar.gz -C l1 .
      tar --xattrs --xattrs-include='*' --numeric-owner -cf - -C l2 . | zstd -q -o l2.tar.zst
      tar --xattrs --xattrs-include='*' --numeric-owner -cf l3.tar -C l3 .
      # The reference: each layer applied with its whiteouts, then copied over with cp -a.
      mkdir ref
      for l in l1 l2 l3; do
        (cd $l && find . -name '.wh.*' | sort) | while read -r w; do
          d=$(dirname "$w"); b=$(basename "$w")
          if [ "$b" = .wh..wh..opq ]; then find "ref/$d" -mindepth 1 -maxdepth 1 -exec rm -rf {} +; else rm -rf "ref/$d/\${b#.wh.}"; fi
        done
        (cd $l && find . ! -type d ! -name '.wh.*') | while read -r f; do rm -rf "ref/$f"; done # replaced, not written into
        cp -a $l/. ref/
        find ref -name '.wh.*' -delete
      done
    `);
    expect(L.length).toBe(3);
    const pool = ThinPool.formatSync(join(work, 'pool'), { size: 512 * 1024 * 1024 });
    const img = join(work, 'top.img');
    const mnt = join(work, 'mnt');
    mkdirSync(mnt);
    try {
      const store = new ImageStore(pool, { size: 64 * 1024 * 1024 });
      const r = await store.import('fidelity', [join(work, 'l1.tar.gz'), join(work, 'l2.tar.zst'), join(work, 'l3.tar')]);
      expect(r.applied).toBe(3);
      for (const c of r.image.chainIds) expectFsck(store.snapshotter.volume(c), work);
      exportSparse(store.snapshotter.volume(r.image.chainIds[2]), img);
      sh(`mount -o loop,ro ${img} ${mnt}`);
      try {
        const ours = tree(mnt);
        const ref = tree(join(work, 'ref'));
        expect(ours).toEqual(ref);
        // What the reference holds, so the comparison is known to cover it.
        const by = new Map((ref as Array<{ path: string }>).map((e) => [e.path, e]));
        expect(by.get('/dev/null')).toMatchObject({ fmt: '0o20000', dev: [1, 3], mode: '0o666' });
        expect(by.get('/dev/big')).toMatchObject({ fmt: '0o20000', dev: [300, 70000] });
        expect(by.get('/run/initctl')).toMatchObject({ fmt: '0o10000', mode: '0o600' });
        expect(by.get('/bin/ping')).toEqual(
          expect.objectContaining({ mode: '0o755', xattrs: { 'security.capability': '0100000200200000000000000000000000000000' } }),
        );
        expect(by.get('/bin/alink')).toMatchObject({ target: '../data/a' });
        expect(by.get('/usr/bin/sg')).toMatchObject({ mode: '0o2755', gid: 42 });
        expect(by.get('/tmp')).toMatchObject({ mode: '0o1777' });
        expect(by.get('/etc/late')).toMatchObject({ mtime: 1796611314 });
        expect(by.get('/data/a-hard')).toMatchObject({ link: '/data/a' });
        expect(by.get('/home/u')).toMatchObject({ uid: 1000, xattrs: { 'trusted.overlay': '00ff62696e' } });
        expect(by.get('/etc/hostname')).toMatchObject({ xattrs: { 'user.k': '76' } });
        for (const gone of ['/gone', '/gonefile', '/dev/loop7', '/opq/old']) expect(by.has(gone), gone).toBe(false);
        expect(by.has('/run/fifo2') && by.has('/opq/new') && by.has('/dev/zero')).toBe(true);
      } finally {
        sh(`umount ${mnt}`);
      }
    } finally {
      pool.closeSync();
    }
  }, 240_000);

  test('extended attributes too big for the inode: an error naming the path, no image', async () => {
    sh(
      `mkdir -p big && echo f > big/f && python3 -c "import os; os.setxattr('big/f', 'user.big', b'x' * 200)" && tar --xattrs --xattrs-include='*' -cf big.tar -C big .`,
    );
    const pool = ThinPool.formatSync(join(work, 'pool-big'), { size: 256 * 1024 * 1024 });
    try {
      const store = new ImageStore(pool, { size: 16 * 1024 * 1024 });
      await expect(store.import('big', [join(work, 'big.tar')])).rejects.toThrow(
        /^\/f: its extended attributes \(user\.big\) need more than/,
      );
      expect(store.images()).toEqual([]);
    } finally {
      pool.closeSync();
    }
  });
});
