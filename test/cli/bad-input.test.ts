// Bad input, generated for every command: missing and extra arguments, bad sizes, unknown pools and volumes,
// duplicate names, names with / or control characters, a locked pool, corrupt and truncated metadata, a
// read-only pool directory, a full pool. Each gets a one-line error with the right exit status, and the pool
// is left byte-for-byte as it was.
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ThinPool } from '../../src/thin/pool.js';
import { verifyMetadataFile } from '../support/pool-check.js';
import {
  SHARED_CONDS,
  type SharedCond,
  cleanup,
  cli,
  conditionPools,
  expectOneLineError,
  expectUnderCondition,
  flipByte,
  hashPool,
  isSharedCond,
  makeReadOnly,
  poolCopier,
  tempDir,
  type CliResult,
} from './helpers.js';

const root = tempDir('tp-bad-');
let master = '';
let small = '';
let xml = '';
const children: ChildProcess[] = [];

beforeAll(async () => {
  master = join(root, 'master');
  small = join(root, 'small.bin');
  writeFileSync(small, Buffer.alloc(4096, 0x42));
  writeFileSync(join(root, 'img.bin'), Buffer.alloc(128 * 1024, 0x33));
  const run = async (argv: string[], stdin?: Buffer) => {
    const r = await cli(argv, { stdin });
    if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  };
  await run(['init', master, '--size', '16M']);
  await run(['create', master, 'a', '--size', '1M']);
  await run(['write', master, 'a', '-'], Buffer.alloc(256 * 1024, 0x61));
  await run(['snapshot', master, 'a', 'b']);
  await run(['write', master, 'b', '-'], Buffer.alloc(1000, 0x62));
  xml = join(root, 'master.xml');
  await run(['dump', master, '--output', xml]);
});

afterAll(() => {
  for (const c of children) c.kill();
  cleanup(root);
});

const copy = poolCopier(root);
const copyPool = (): string => copy(master);

/** Run argv against a pool and check it failed as expected, leaving the pool unchanged. */
async function expectFails(pool: string, argv: string[], exit: number, pattern?: RegExp, stdin?: Buffer): Promise<CliResult> {
  const before = hashPool(pool);
  const r = await cli(argv, { stdin });
  expectOneLineError(r, exit, argv[0] === 'rm' ? 'delete' : argv[0], pattern);
  // check prints its report (the damage found) on stdout before failing.
  if (argv[0] !== 'check') expect(r.stdout).toBe('');
  expect(hashPool(pool)).toEqual(before);
  return r;
}

// ---- the command table ----
interface Cmd {
  name: string;
  /** A valid command line on the master pool layout (volumes a and b). */
  argv: (pool: string) => string[];
  /** Number of positional arguments (all required ones are given by argv). */
  positional: number;
  writes: boolean;
  /** Required positional arguments, when some are optional. */
  required?: number;
}

const out = () => join(root, `out-${Math.random().toString(36).slice(2)}.img`);
const CMDS: Cmd[] = [
  { name: 'create', argv: (p) => ['create', p, 'new1', '--size', '1M'], positional: 2, writes: true },
  { name: 'snapshot', argv: (p) => ['snapshot', p, 'a', 'new2'], positional: 3, writes: true },
  { name: 'delete', argv: (p) => ['delete', p, 'b'], positional: 2, writes: true },
  { name: 'resize', argv: (p) => ['resize', p, 'a', '--size', '2M'], positional: 2, writes: true },
  { name: 'write', argv: (p) => ['write', p, 'a', '--offset', '0', small], positional: 3, writes: true, required: 2 },
  { name: 'import', argv: (p) => ['import', p, 'new3', join(root, 'img.bin')], positional: 3, writes: true },
  { name: 'ls', argv: (p) => ['ls', p], positional: 1, writes: false },
  { name: 'status', argv: (p) => ['status', p], positional: 1, writes: false },
  { name: 'read', argv: (p) => ['read', p, 'a', '--length', '4K'], positional: 2, writes: false },
  { name: 'export', argv: (p) => ['export', p, 'a', out()], positional: 3, writes: false },
  { name: 'map', argv: (p) => ['map', p, 'a'], positional: 2, writes: false },
  { name: 'diff', argv: (p) => ['diff', p, 'a', 'b'], positional: 3, writes: false },
  { name: 'check', argv: (p) => ['check', p], positional: 1, writes: false },
  { name: 'dump', argv: (p) => ['dump', p], positional: 1, writes: false },
];
const POSITIONAL_CMDS = [
  ...CMDS,
  { name: 'init', argv: (p: string) => ['init', p + '-new', '--size', '1M'], positional: 1, writes: true },
  { name: 'restore', argv: (p: string) => ['restore', xml, p + '-new'], positional: 2, writes: true },
];

/** Indices of the positional arguments within argv (options and their values skipped). */
function positionalIdx(argv: string[]): number[] {
  const idx: number[] = [];
  for (let i = 1; i < argv.length; i++) {
    if (argv[i].startsWith('--')) {
      i++;
      continue;
    }
    idx.push(i);
  }
  return idx;
}

describe('every command works on the master pool (control)', () => {
  test.each(CMDS.map((c) => [c.name, c] as const))('%s', async (_n, c) => {
    const pool = copyPool();
    const r = await cli(c.argv(pool));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    verifyMetadataFile(join(pool, 'metadata'));
  });
});

describe('missing and extra arguments: exit 2', () => {
  const cases: Array<[string, string, string[]]> = [];
  for (const c of POSITIONAL_CMDS) {
    const argv = c.argv('POOL');
    const pos = positionalIdx(argv);
    for (let drop = 0; drop < pos.length; drop++) {
      if (pos.length - drop - 1 >= (c.required ?? c.positional)) continue;
      const missing = argv.filter((_a, i) => i !== pos[pos.length - 1 - drop] && !pos.slice(pos.length - drop).includes(i));
      cases.push([c.name, `missing ${pos.length - drop === pos.length ? 'last' : `${drop + 1} last`} argument(s)`, missing]);
    }
    cases.push([c.name, 'an extra argument', [...argv, 'extra']]);
    cases.push([c.name, 'an unknown option', [...argv, '--frobnicate']]);
  }
  for (const name of ['init', 'create', 'resize']) {
    const c = POSITIONAL_CMDS.find((x) => x.name === name)!;
    const argv = c.argv('POOL');
    const i = argv.indexOf('--size');
    cases.push([name, 'no --size', [...argv.slice(0, i), ...argv.slice(i + 2)]]);
  }
  test.each(cases)('%s: %s', async (name, _what, argvTemplate) => {
    const pool = master;
    const argv = argvTemplate.map((a) => a.replace(/^POOL/, pool));
    const r = await expectFails(pool, argv, 2);
    expect(r.stderr).toMatch(new RegExp(`\\(see "thinpool ${name} --help"\\)$`, 'm'));
    expect(existsSync(pool + '-new')).toBe(false);
  });

  test('no command at all prints the help and exits 2', async () => {
    const r = await cli([]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('Usage: thinpool');
  });

  test('an unknown command suggests the right one', async () => {
    const r = await cli(['snapshto', master, 'a', 'x']);
    expectOneLineError(r, 2, '', /unknown command 'snapshto'.*Did you mean snapshot\?/);
  });
});

describe('bad sizes: exit 2, pool unchanged', () => {
  const BAD = ['', 'abc', '10X', '-1', '1.5', '0x10', '1e3', '12 34', '5KiBB', '99999999999999999999'];
  const sites: Array<[string, (p: string, v: string) => string[]]> = [
    ['init --size', (p, v) => ['init', p + '-new', '--size', v]],
    ['init --block-size', (p, v) => ['init', p + '-new', '--size', '1M', '--block-size', v]],
    ['init --metadata-size', (p, v) => ['init', p + '-new', '--size', '1M', '--metadata-size', v]],
    ['create --size', (p, v) => ['create', p, 'new1', '--size', v]],
    ['resize --size', (p, v) => ['resize', p, 'a', '--size', v]],
    ['write --offset', (p, v) => ['write', p, 'a', '--offset', v, small]],
    ['read --offset', (p, v) => ['read', p, 'a', '--offset', v]],
    ['read --length', (p, v) => ['read', p, 'a', '--length', v]],
    ['import --size', (p, v) => ['import', p, 'new3', join(root, 'img.bin'), '--size', v]],
    ['restore --metadata-size', (p, v) => ['restore', xml, p + '-new', '--metadata-size', v]],
  ];
  const cases: Array<[string, string, (p: string, v: string) => string[]]> = [];
  for (const [site, f] of sites) for (const v of BAD) cases.push([site, v, f]);
  // Sizes that parse but are not acceptable there.
  const EXTRA: Array<[string, string, (p: string, v: string) => string[]]> = [
    ['create --size', '0', sites[3][1]],
    ['create --size', '1000', sites[3][1]],
    ['resize --size', '0', sites[4][1]],
    ['resize --size', '100', sites[4][1]],
    ['init --block-size', '32K', sites[1][1]],
    ['init --block-size', '100K', sites[1][1]],
    ['init --block-size', '2G', sites[1][1]],
    ['init --size', '1K', sites[0][1]],
    ['init --metadata-size', '4K', sites[2][1]],
    ['write --offset', '2M', sites[5][1]],
    ['read --offset', '2M', sites[6][1]],
    ['read --length', '2M', sites[7][1]],
    ['import --size', '64K', sites[8][1]],
  ];
  test.each([...cases, ...EXTRA])('%s %j', async (_site, v, f) => {
    const r = await expectFails(master, f(master, v), 2);
    expect(r.stderr).toMatch(/--|size|offset|length|block|bytes/);
    expect(existsSync(master + '-new')).toBe(false);
  });
});

describe('names: exit 2 for bad names, 1 for duplicates', () => {
  const BAD_NAMES = [
    'x/y',
    '/abs',
    'a\\b',
    'new\nline',
    'tab\tbed',
    'bell\x07',
    'del\x7f',
    'esc\x1b[31m',
    'sp ace',
    '',
    '123',
    '#4',
    'x'.repeat(256),
  ];
  const sites: Array<[string, (p: string, n: string) => string[]]> = [
    ['create', (p, n) => ['create', p, n, '--size', '1M']],
    ['snapshot', (p, n) => ['snapshot', p, 'a', n]],
    ['import', (p, n) => ['import', p, n, join(root, 'img.bin')]],
  ];
  const cases: Array<[string, string, (p: string, n: string) => string[]]> = [];
  for (const [s, f] of sites) for (const n of BAD_NAMES) cases.push([s, n, f]);
  test.each(cases)('%s %j', async (_s, n, f) => {
    const r = await expectFails(master, f(master, n), 2, /bad (volume|snapshot) name/);
    // Control characters are never echoed raw.
    // eslint-disable-next-line no-control-regex
    expect(r.stderr.trimEnd()).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
  });
  test.each(sites.flatMap(([s, f]) => ['a', 'b'].map((n) => [s, n, f] as const)))('%s duplicate %s', async (_s, n, f) => {
    await expectFails(master, f(master, n), 1, /already exists.*choose another name/);
  });
});

describe('unknown volumes: exit 1', () => {
  const cases: Array<[string, string[]]> = [
    ['snapshot', ['snapshot', 'P', 'nope', 'x']],
    ['delete', ['delete', 'P', 'nope']],
    ['resize', ['resize', 'P', 'nope', '--size', '1M']],
    ['write', ['write', 'P', 'nope', 'SMALL']],
    ['read', ['read', 'P', 'nope']],
    ['export', ['export', 'P', 'nope', join(root, 'x.img')]],
    ['map', ['map', 'P', 'nope']],
    ['diff A', ['diff', 'P', 'nope', 'a']],
    ['diff B', ['diff', 'P', 'a', 'nope']],
    ['by id', ['map', 'P', '#99']],
  ];
  test.each(cases)('%s', async (_n, argv) => {
    await expectFails(
      master,
      argv.map((a) => (a === 'P' ? master : a === 'SMALL' ? small : a)),
      1,
      /no volume .*: list the volumes with "thinpool ls /,
    );
    expect(existsSync(join(root, 'x.img'))).toBe(false);
  });
});

describe('pool conditions, for every command', () => {
  type Cond = SharedCond | 'corrupt mapping leaf';
  const conds: Cond[] = [...SHARED_CONDS, 'corrupt mapping leaf'];
  let pools = new Map<string, string>();
  let undo: (() => void) | null = null;

  beforeAll(() => {
    ({ pools, undo } = conditionPools(root, copyPool, children));
    const leaf = copyPool();
    // The level-1 leaf of volume a (its own: b's was shadowed by the write into b).
    const p = ThinPool.openSync(leaf, { readOnly: true });
    const aLeaf = p.metadata.deviceDetails(p.volume('a').id).root;
    p.closeSync();
    flipByte(join(leaf, 'metadata'), aLeaf * 4096 + 2048);
    pools.set('corrupt mapping leaf', leaf);
  });
  afterAll(() => undo?.());

  const cases: Array<[string, Cond, Cmd]> = [];
  for (const cond of conds) for (const c of CMDS) cases.push([c.name, cond, c]);

  test.each(cases)('%s on a pool with %s', async (name, cond, c) => {
    const pool = pools.get(cond)!;
    const argv = c.argv(pool);
    if (isSharedCond(cond)) {
      const damaged = name === 'check' ? /is damaged: .*superblock.*block 0|is damaged: .*metadata space map claims/ : /damaged|superblock/;
      await expectUnderCondition(cond, pool, argv, c.writes, (re) => expectFails(pool, argv, 1, re), damaged);
    } else if (['write', 'read', 'export', 'map', 'diff', 'ls', 'dump', 'check'].includes(name)) {
      // corrupt mapping leaf: commands that read volume a's mappings fail; the others do not touch that block.
      await expectFails(pool, argv, 1, /damaged: .*checksum.*block \d+/);
    }
  });

  test('a change that meets damage half-way (delete of a) leaves the pool unchanged, superblock included', async () => {
    const pool = pools.get('corrupt mapping leaf')!;
    await expectFails(pool, ['delete', pool, 'a'], 1, /damaged: .*block \d+/);
    // And the pool is still usable for what does not touch the damage.
    const r = await cli(['create', pool, 'fresh', '--size', '1M']);
    expect(r.code, r.stderr).toBe(0);
  });
});

describe('a full pool', () => {
  let pool = '';
  beforeAll(async () => {
    pool = join(root, 'full');
    const ok = async (argv: string[], stdin?: Buffer) => expect((await cli(argv, { stdin })).code).toBe(0);
    await ok(['init', pool, '--size', '256K']);
    await ok(['create', pool, 'v', '--size', '1M']);
    await ok(['create', pool, 'w', '--size', '1M']);
    await ok(['write', pool, 'v', '-'], Buffer.alloc(128 * 1024, 1));
    await ok(['write', pool, 'w', '-'], Buffer.alloc(128 * 1024, 2));
    await ok(['snapshot', pool, 'v', 's']);
  });
  test.each([
    ['write past the mapped blocks', (p: string) => ['write', p, 'w', '--offset', '128K', small]],
    ['write from stdin', (p: string) => ['write', p, 'w', '--offset', '512K', '-']],
    ['write into a snapshot (copy-on-write)', (p: string) => ['write', p, 's', small]],
    ['write into a snapshotted origin (copy-on-write)', (p: string) => ['write', p, 'v', small]],
    ['import', (p: string) => ['import', p, 'img', join(root, 'img.bin')]],
    ['shrink to a partial block of a shared block', (p: string) => ['resize', p, 'v', '--size', '1536']],
  ])('%s', async (_n, f) => {
    await expectFails(
      pool,
      f(pool),
      1,
      /is full: this needs \d+ free data blocks .* but 0 are free .*nothing was written/,
      Buffer.alloc(10, 7),
    );
  });
  test('writing over unshared mapped blocks still works', async () => {
    const r = await cli(['write', pool, 'w', small]);
    expect(r.code, r.stderr).toBe(0);
    verifyMetadataFile(join(pool, 'metadata'));
  });
});

describe('command-specific failures', () => {
  test('init over an existing pool', async () => {
    await expectFails(master, ['init', master, '--size', '1M'], 1, /already holds a pool: choose another directory/);
  });
  test('init in a read-only directory leaves nothing', async () => {
    const parent = join(root, 'ro-parent');
    mkdirSync(parent);
    const undo = makeReadOnly(parent);
    try {
      const r = await cli(['init', join(parent, 'p'), '--size', '1M']);
      expect(r.code).toBe(1);
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/^thinpool init: /);
    } finally {
      undo();
    }
    expect(existsSync(join(parent, 'p'))).toBe(false);
  });
  test('write: input longer than the volume, nothing written', async () => {
    await expectFails(master, ['write', master, 'a', '--offset', '1021K', small], 1, /does not fit in volume a/);
    await expectFails(
      master,
      ['write', master, 'a', '--offset', '1021K', '-'],
      1,
      /longer than the 3 KiB left in the volume/,
      Buffer.alloc(5000),
    );
  });
  test('write: missing input file', async () => {
    await expectFails(master, ['write', master, 'a', join(root, 'nope.bin')], 1, /nope\.bin: no such file or directory/);
  });
  test('import: missing image, empty image, a directory', async () => {
    await expectFails(master, ['import', master, 'x', join(root, 'nope.img')], 1, /cannot open image .*no such file/);
    writeFileSync(join(root, 'empty.img'), '');
    await expectFails(master, ['import', master, 'x', join(root, 'empty.img')], 1, /is empty/);
    await expectFails(master, ['import', master, 'x', root], 1, /not a regular file/);
  });
  test("export: over the pool's own files, into a missing directory", async () => {
    await expectFails(master, ['export', master, 'a', join(master, 'data')], 2, /refusing to export over the pool's own data file/);
    await expectFails(master, ['export', master, 'a', join(root, 'no-dir', 'x.img')], 1, /does not exist/);
  });
  test('dump --metadata-snap with no snapshot held', async () => {
    await expectFails(master, ['dump', master, '--metadata-snap'], 1, /no current metadata snap/);
  });
  test('restore: missing XML, bad XML, over an existing pool, data beyond the end', async () => {
    await expectFails(master, ['restore', join(root, 'nope.xml'), master + '-new'], 1, /nope\.xml: no such file/);
    writeFileSync(join(root, 'bad.xml'), '<superblock uuid="" time="0"');
    await expectFails(master, ['restore', join(root, 'bad.xml'), master + '-new'], 1, /is not valid thin_dump XML/);
    await expectFails(master, ['restore', xml, master], 1, /already holds a pool/);
    writeFileSync(
      join(root, 'beyond.xml'),
      '<superblock uuid="" time="0" transaction="0" flags="0" version="2" data_block_size="128" nr_data_blocks="4">\n  <device dev_id="1" mapped_blocks="1" transaction="0" creation_time="0" snap_time="0">\n    <single_mapping origin_block="0" data_block="9" time="0"/>\n  </device>\n</superblock>\n',
    );
    await expectFails(master, ['restore', join(root, 'beyond.xml'), master + '-new'], 1, /mapping beyond end of data device \(9 >= 4\)/);
    expect(existsSync(master + '-new')).toBe(false);
  });
  test('demo: DIR is a file', async () => {
    writeFileSync(join(root, 'afile'), 'x');
    const r = await cli(['demo', join(root, 'afile')]);
    expectOneLineError(r, 1, 'demo', /is not a directory/);
  });
  test('the master pool passes every checker after all of the above', () => {
    verifyMetadataFile(join(master, 'metadata'));
  });
});
