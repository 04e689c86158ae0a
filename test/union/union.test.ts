import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Union, type UnionError } from '../../src/union/index.js';
import { writeLayer, type LayerOp } from './layers.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'union-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Layers bottom first; returns a union with a fresh writable branch. */
function make(layers: LayerOp[][]): Union {
  const lower = layers
    .map((ops, i) => {
      const p = join(dir, `l${i}`);
      writeLayer(p, ops, 'aufs');
      return p;
    })
    .reverse();
  const upper = join(dir, 'upper');
  writeLayer(upper, [], 'aufs');
  return new Union({ lower, upper });
}

const text = (u: Union, p: string) => u.readFile(p).toString('utf8');
const code = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return (e as UnionError).code;
  }
  return 'ok';
};

describe('merged view', () => {
  it('upper layers shadow lower ones and directories merge', () => {
    const u = make([
      [
        { file: 'etc/a', content: 'a0' },
        { file: 'etc/b', content: 'b0' },
        { file: 'bin/sh', content: 'sh' },
      ],
      [
        { file: 'etc/a', content: 'a1' },
        { file: 'etc/c', content: 'c1' },
      ],
    ]);
    expect(u.readdir('')).toEqual(['bin', 'etc']);
    expect(u.readdir('etc')).toEqual(['a', 'b', 'c']);
    expect(text(u, 'etc/a')).toBe('a1');
    expect(text(u, 'etc/b')).toBe('b0');
    expect(u.branchOf('etc/b')).toBe(2);
  });

  it('whiteouts hide lower entries and are not listed', () => {
    const u = make([
      [
        { file: 'etc/a', content: 'a' },
        { file: 'etc/b', content: 'b' },
        { file: 'opt/x/y', content: 'y' },
      ],
      [{ del: 'etc/a' }, { del: 'opt' }],
    ]);
    expect(u.readdir('etc')).toEqual(['b']);
    expect(u.readdir('')).toEqual(['etc']);
    expect(u.exists('etc/a')).toBe(false);
    expect(code(() => u.stat('opt/x/y'))).toBe('ENOENT');
  });

  it('an opaque directory does not merge with the ones below', () => {
    const u = make([
      [
        { file: 'var/old', content: 'o' },
        { file: 'var/keep/k', content: 'k' },
      ],
      [{ opaque: 'var' }, { file: 'var/new', content: 'n' }],
    ]);
    expect(u.readdir('var')).toEqual(['new']);
    expect(u.exists('var/keep/k')).toBe(false);
  });

  it('a non-directory above a directory shadows it, and a file is not a directory', () => {
    const u = make([[{ file: 'x/inner', content: 'i' }], [{ file: 'x', content: 'file now' }]]);
    expect(u.stat('x').isFile()).toBe(true);
    expect(code(() => u.readdir('x'))).toBe('ENOTDIR');
    expect(code(() => u.stat('x/inner'))).toBe('ENOTDIR');
  });
});

describe('changes', () => {
  it('copies a whole file up on its first write, and only then', () => {
    const u = make([[{ file: 'data/big', content: 'x'.repeat(100_000) }]]);
    const f = u.open('data/big', 'r+');
    const buf = Buffer.alloc(4);
    f.read(buf, 0);
    expect(f.copiedUp).toBe(false);
    expect(u.counters.copyUps).toBe(0);
    f.write(Buffer.from('ABCD'), 50_000);
    f.write(Buffer.from('EFGH'), 60_000);
    f.close();
    expect(u.counters).toMatchObject({ copyUps: 1, copyUpBytes: 100_000 });
    expect(u.branchOf('data/big')).toBe(0);
    const up = readFileSync(join(dir, 'upper/data/big'), 'utf8');
    expect(up.length).toBe(100_000);
    expect(up.slice(50_000, 50_004)).toBe('ABCD');
    expect(readFileSync(join(dir, 'l0/data/big'), 'utf8')).toBe('x'.repeat(100_000));
    expect(statSync(join(dir, 'upper/data')).isDirectory()).toBe(true);
  });

  it('unlink of a lower file leaves a whiteout; unlink of an upper-only file leaves none', () => {
    const u = make([[{ file: 'a', content: '1' }]]);
    u.unlink('a');
    expect(u.exists('a')).toBe(false);
    expect(existsSync(join(dir, 'upper/.wh.a'))).toBe(true);
    expect(readFileSync(join(dir, 'l0/a'), 'utf8')).toBe('1');
    u.writeFile('n', 'new');
    u.unlink('n');
    expect(existsSync(join(dir, 'upper/.wh.n'))).toBe(false);
    expect(u.readdir('')).toEqual([]);
  });

  it('creating over a whiteout removes it; mkdir over a whiteout makes an opaque directory', () => {
    const u = make([
      [
        { file: 'a', content: 'old' },
        { file: 'd/x', content: 'x' },
      ],
    ]);
    u.unlink('a');
    u.writeFile('a', 'again');
    expect(text(u, 'a')).toBe('again');
    expect(existsSync(join(dir, 'upper/.wh.a'))).toBe(false);
    u.unlink('d/x');
    u.rmdir('d');
    expect(u.exists('d')).toBe(false);
    u.mkdir('d');
    expect(u.readdir('d')).toEqual([]);
    expect(existsSync(join(dir, 'upper/d/.wh..wh..opq'))).toBe(true);
  });

  it('rmdir refuses a non-empty merged directory', () => {
    const u = make([[{ file: 'd/x', content: 'x' }]]);
    expect(code(() => u.rmdir('d'))).toBe('ENOTEMPTY');
    expect(code(() => u.mkdir('d'))).toBe('EEXIST');
    expect(code(() => u.mkdir('nope/d'))).toBe('ENOENT');
    expect(code(() => u.open('d', 'r'))).toBe('EISDIR');
  });

  it('a read-only union refuses changes and reserved names are refused', () => {
    writeLayer(join(dir, 'l'), [{ file: 'a', content: 'a' }], 'aufs');
    const u = new Union({ lower: [join(dir, 'l')] });
    expect(text(u, 'a')).toBe('a');
    expect(code(() => u.unlink('a'))).toBe('EROFS');
    expect(code(() => u.open('a', 'r+'))).toBe('EROFS');
    expect(code(() => u.stat('.wh.a'))).toBe('EINVAL');
    expect(code(() => u.stat('../etc'))).toBe('EINVAL');
  });
});
