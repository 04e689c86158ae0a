/**
 * The union driver's merged view equals kernel overlayfs's on the same layers (each written in its driver's
 * format), before and after the same changes. Skipped locally, with the reason, where mounting is not possible;
 * a failure in CI (needPrerequisite).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
  openSync,
  writeSync,
  closeSync,
  unlinkSync,
  rmdirSync,
  lstatSync,
  readdirSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Union } from '../../src/union/index.js';
import { needPrerequisite } from '../support/tools.js';
import { hostView, overlayUnavailable, snapshotTree, writeLayer, type LayerOp } from './layers.js';

const LAYERS: LayerOp[][] = [
  [
    { file: 'etc/passwd', content: 'root:x:0:0' },
    { file: 'etc/hosts', content: '127.0.0.1' },
    { file: 'usr/bin/tool', content: 'v1' },
    { file: 'usr/lib/libx.so', content: 'lib' },
    { file: 'var/cache/c1', content: 'c1' },
    { file: 'var/cache/sub/c2', content: 'c2' },
    { file: 'opt/app/cfg', content: 'cfg' },
    { link: 'bin', target: 'usr/bin' },
    { dir: 'empty' },
  ],
  [
    { file: 'usr/bin/tool', content: 'v2' },
    { del: 'etc/hosts' },
    { opaque: 'var/cache' },
    { file: 'var/cache/fresh', content: 'f' },
    { file: 'home/u/.profile', content: 'p' },
  ],
  [{ del: 'opt' }, { file: 'etc/hosts', content: 'restored' }, { file: 'usr/lib/libx.so', content: 'lib3' }, { del: 'usr/bin/tool' }],
];

/** The same changes through each view. */
interface Ops {
  write(p: string, pos: number, s: string): void;
  create(p: string, s: string): void;
  unlink(p: string): void;
  mkdir(p: string): void;
  rmdir(p: string): void;
}

function change(v: Ops): void {
  v.write('etc/passwd', 2, 'ZZ');
  v.create('etc/new', 'n');
  v.unlink('usr/lib/libx.so');
  v.unlink('var/cache/fresh');
  v.rmdir('var/cache');
  v.mkdir('var/cache');
  v.create('var/cache/again', 'a');
  v.mkdir('opt');
  v.unlink('home/u/.profile');
  v.create('usr/bin/tool', 'v4');
}

const canMount = needPrerequisite('kernel overlayfs comparison', overlayUnavailable());

describe.skipIf(!canMount)('merged view equals kernel overlayfs', () => {
  let dir: string;
  let mnt: string;
  let mounted = false;
  let union: Union;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'union-ovl-'));
    const lowerA: string[] = [];
    const lowerO: string[] = [];
    LAYERS.forEach((ops, i) => {
      writeLayer(join(dir, `a${i}`), ops, 'aufs');
      writeLayer(join(dir, `o${i}`), ops, 'overlay');
      lowerA.unshift(join(dir, `a${i}`));
      lowerO.unshift(join(dir, `o${i}`));
    });
    for (const d of ['ua', 'uo', 'work', 'mnt']) mkdirSync(join(dir, d));
    mnt = join(dir, 'mnt');
    execFileSync('mount', [
      '-t',
      'overlay',
      'overlay',
      '-o',
      `lowerdir=${lowerO.join(':')},upperdir=${join(dir, 'uo')},workdir=${join(dir, 'work')}`,
      mnt,
    ]);
    mounted = true;
    union = new Union({ lower: lowerA, upper: join(dir, 'ua') });
  });

  afterAll(() => {
    if (mounted) spawnSync('umount', [mnt]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const unionView = () =>
    snapshotTree({
      readdir: (p) => union.readdir(p),
      lstat: (p) => union.stat(p),
      read: (p) => union.readFile(p).toString('utf8'),
      readlink: (p) => readlinkSync(join(union.branches[union.branchOf(p)]!.root, p)),
    });

  it('on the layers as written', () => {
    const kernel = snapshotTree(hostView(mnt));
    expect(kernel['etc/hosts']).toBe('file:644:restored');
    expect(unionView()).toEqual(kernel);
  });

  it('after the same changes through both', () => {
    change({
      write: (p, pos, s) => {
        const f = union.open(p, 'r+');
        f.write(Buffer.from(s), pos);
        f.close();
      },
      create: (p, s) => union.writeFile(p, s),
      unlink: (p) => union.unlink(p),
      mkdir: (p) => union.mkdir(p),
      rmdir: (p) => union.rmdir(p),
    });
    change({
      write: (p, pos, s) => {
        const fd = openSync(join(mnt, p), 'r+');
        writeSync(fd, s, pos);
        closeSync(fd);
      },
      create: (p, s) => writeFileSync(join(mnt, p), s),
      unlink: (p) => unlinkSync(join(mnt, p)),
      mkdir: (p) => mkdirSync(join(mnt, p)),
      rmdir: (p) => rmdirSync(join(mnt, p)),
    });
    const kernel = snapshotTree(hostView(mnt));
    expect(kernel['etc/passwd']).toBe('file:644:roZZ:x:0:0');
    expect(unionView()).toEqual(kernel);
    // The writable branches hold the same copied-up files (whiteouts differ in format only).
    const files = (root: string): string[] => {
      const out: string[] = [];
      const walk = (p: string): void => {
        for (const n of readdirSync(join(root, p))) {
          const c = p ? `${p}/${n}` : n;
          const st = lstatSync(join(root, c));
          if (st.isDirectory()) walk(c);
          else if (st.isFile() && !n.startsWith('.wh.')) out.push(`${c}=${readFileSync(join(root, c), 'utf8')}`);
        }
      };
      walk('');
      return out.sort();
    };
    expect(files(join(dir, 'ua'))).toEqual(files(join(dir, 'uo')));
  });
});
