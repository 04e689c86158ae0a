// Errors that point at the cause, for the commands a user runs first (init, create, import, snapshot, ls, export,
// serve): a typo'd pool path, a file where a directory is expected, a pool made by a foreign or newer tool, a
// full disk and no permission. Each failure is one line saying what is wrong and what to do; the pool (or the
// file in its place) is byte-for-byte unchanged.
import { copyFileSync, cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ThinpoolError } from '../../src/errors.js';
import { explainError } from '../../src/messages.js';
import { cleanup, cli, expectOneLineError, hashPool, tempDir } from './helpers.js';

let root = '';
let master = '';
let img = '';

beforeAll(async () => {
  root = tempDir('tp-cause-');
  master = join(root, 'master');
  expect((await cli(['init', master, '--size', '64M'])).code).toBe(0);
  expect((await cli(['create', master, 'a', '--size', '1M'])).code).toBe(0);
  img = join(root, 'disk.img');
  writeFileSync(img, Buffer.alloc(128 * 1024, 3));
});
afterAll(() => cleanup(root));

/** argv of each first command against pool P. */
const commands: [string, (p: string) => string[]][] = [
  ['create', (p) => ['create', p, 'b', '--size', '1M']],
  ['import', (p) => ['import', p, 'b', img]],
  ['snapshot', (p) => ['snapshot', p, 'a', 'b']],
  ['ls', (p) => ['ls', p]],
  ['export', (p) => ['export', p, 'a', join(root, 'out.img')]],
  ['serve', (p) => ['serve', p, '--socket', join(root, 'never.sock')]],
];

let copies = 0;
function copy(): string {
  const dst = join(root, `copy${copies++}`);
  cpSync(master, dst, { recursive: true });
  return dst;
}

describe.each(commands)('%s', (cmd, argv) => {
  test("a typo'd pool path: no pool there, check the path or init one", async () => {
    expectOneLineError(
      await cli(argv(join(root, 'mastr'))),
      1,
      cmd,
      /no pool at .*mastr.* \(no such directory\): check the path, or create one with "thinpool init/,
    );
  });

  test('a file where the pool directory is expected', async () => {
    const file = join(root, `file-${cmd}`);
    writeFileSync(file, 'not a pool');
    expectOneLineError(await cli(argv(file)), 1, cmd, /is not a directory: a pool is a directory made by "thinpool init"/);
    expect(readFileSync(file, 'utf8')).toBe('not a pool');
  });

  test('a pool path running through a file', async () => {
    const file = join(root, `through-${cmd}`);
    writeFileSync(file, 'x');
    const r = await cli(argv(join(file, 'pool')));
    expectOneLineError(r, 1, cmd, /no pool at|not a directory|check the path/);
  });

  test("metadata that is not dm-thin metadata (another tool's files): says so, pool unchanged", async () => {
    const p = copy();
    writeFileSync(join(p, 'metadata'), Buffer.alloc(1 << 20, 0x5a));
    const before = hashPool(p);
    expectOneLineError(
      await cli(argv(p)),
      1,
      cmd,
      /metadata" is not dm-thin metadata \(no superblock magic\)|metadata is not dm-thin metadata \(no superblock magic\): .* was not made by thinpool or another dm-thin tool, or its metadata was overwritten; check the path/,
    );
    expect(hashPool(p)).toEqual(before);
  });

  test('metadata of a newer version: names the version and what to use', async () => {
    const p = copy();
    const md = readFileSync(join(p, 'metadata'));
    md.writeUInt32LE(3, 40);
    writeFileSync(join(p, 'metadata'), md);
    const before = hashPool(p);
    expectOneLineError(
      await cli(argv(p)),
      1,
      cmd,
      /has dm-thin metadata version 3, newer than this thinpool reads \(1 to 2\): use the tool that made it, or a newer thinpool/,
    );
    expect(hashPool(p)).toEqual(before);
  });

  test('a catalog of a newer version: names the version and what to use', async () => {
    const p = copy();
    const cat = JSON.parse(readFileSync(join(p, 'catalog.json'), 'utf8')) as { catalog: { version: number } };
    cat.catalog.version = 2;
    writeFileSync(join(p, 'catalog.json'), JSON.stringify(cat));
    const before = hashPool(p);
    expectOneLineError(
      await cli(argv(p)),
      1,
      cmd,
      /the catalog of .* is version 2, newer than this thinpool reads \(1\): use the thinpool that made it, or a newer one/,
    );
    expect(hashPool(p)).toEqual(before);
  });
});

describe('init', () => {
  test('over a file: exit 1, one line, the file untouched', async () => {
    const file = join(root, 'init-file');
    writeFileSync(file, 'keep me');
    expectOneLineError(
      await cli(['init', file, '--size', '64M']),
      1,
      'init',
      /exists and is not a directory: give a new or empty directory for the pool/,
    );
    expect(readFileSync(file, 'utf8')).toBe('keep me');
  });

  test('under a file: a part of the path is a file', async () => {
    const file = join(root, 'init-parent');
    writeFileSync(file, 'keep me');
    expectOneLineError(
      await cli(['init', join(file, 'pool'), '--size', '64M']),
      1,
      'init',
      /a part of this path is a file, not a directory: check the path/,
    );
    expect(readFileSync(file, 'utf8')).toBe('keep me');
  });
});

describe('files next to the pool', () => {
  test('export into a path under a file', async () => {
    const file = join(root, 'export-parent');
    writeFileSync(file, 'x');
    const before = hashPool(master);
    expectOneLineError(
      await cli(['export', master, 'a', join(file, 'out.img')]),
      1,
      'export',
      /is a file, not a directory: check the path/,
    );
    expect(hashPool(master)).toEqual(before);
  });

  test('import of an image under a file', async () => {
    const file = join(root, 'import-parent');
    writeFileSync(file, 'x');
    const before = hashPool(master);
    expectOneLineError(
      await cli(['import', master, 'b', join(file, 'disk.img')]),
      1,
      'import',
      /cannot open image .*: a part of the path is a file, not a directory: check the path/,
    );
    expect(hashPool(master)).toEqual(before);
  });

  test('a metadata file that is a directory', async () => {
    const p = join(root, 'md-dir');
    mkdirSync(join(p, 'metadata'), { recursive: true });
    copyFileSync(join(master, 'data'), join(p, 'data'));
    expectOneLineError(
      await cli(['ls', p]),
      1,
      'ls',
      /metadata" is a directory, not a metadata file|metadata is a directory, not a metadata file/,
    );
  });
});

describe('host conditions the engine reports as EIO (full disk, no permission)', () => {
  const eio = (code: string): ThinpoolError =>
    new ThinpoolError('EIO', `write /p/data: ${code}`, { cause: Object.assign(new Error(code), { code }) });

  test('a full host file system names the cause and the remedy', () => {
    for (const code of ['ENOSPC', 'EDQUOT']) {
      const { message, exitCode } = explainError(eio(code), { pool: 'pool', mode: 'write' });
      expect(exitCode).toBe(1);
      expect(message).toBe(
        `the file system holding pool is full (${code}): free space on it (see "df pool") and retry; the pool keeps its last commit`,
      );
    }
  });

  test('no permission: a reading command is told it cannot read, a changing one that it cannot write', () => {
    expect(explainError(eio('EACCES'), { pool: 'pool', mode: 'read' }).message).toBe(
      "cannot read pool pool (EACCES): run as the pool's owner or fix its permissions",
    );
    expect(explainError(eio('EACCES'), { pool: 'pool', mode: 'write' }).message).toMatch(
      /^pool is not writable \(EACCES\): this command changes the pool/,
    );
  });

  test('system errors: full disk, path through a file, existing file', () => {
    const sys = (code: string): NodeJS.ErrnoException => Object.assign(new Error(code), { code, path: '/x/y' });
    expect(explainError(sys('ENOSPC')).message).toBe('/x/y: the host file system is full (ENOSPC): free space on it and retry');
    expect(explainError(sys('ENOTDIR')).message).toBe('/x/y: a part of this path is a file, not a directory: check the path');
  });
});
