// rename, rollback, set, snapshot --read-only, --label on create and snapshot, ls --tree on the command line:
// each works (--help, --json, exit 0) and passes thin_check, the strict checker and our own afterwards; bad input
// (unknown names, a taken name, a rollback onto an unrelated volume or onto itself, read-only violations, owned
// volumes, bad labels, contradicting options) gets one line, exit 1 or 2, and leaves the pool byte-identical.
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { verifyMetadataFile } from '../support/pool-check.js';
import { needTool } from '../support/tools.js';
import { cleanup, cli, expectOneLineError, hashPool, holdLock, poolCopier, tempDir, type CliResult } from './helpers.js';

const haveTools = needTool('mkfs.ext4', 'e2fsprogs');
const root = tempDir('tp-verbs-');
const copy = poolCopier(root);
let master = '';
const children: ChildProcess[] = [];

async function ok(argv: string[], stdin?: Buffer): Promise<CliResult> {
  const r = await cli(argv, { stdin });
  if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  return r;
}

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = ((i * 31 + seed * 17) % 251) + 1;
  return b;
}

async function readVol(pool: string, name: string): Promise<Buffer> {
  return (await ok(['read', pool, name])).stdoutBytes;
}

interface Ls {
  name: string;
  id: number;
  sizeBytes: number;
  readOnly: boolean;
  labels: Record<string, string>;
  origin: string | null;
  children?: Ls[];
}
async function ls(pool: string): Promise<Ls[]> {
  return JSON.parse((await ok(['ls', pool, '--json'])).stdout) as Ls[];
}

beforeAll(async () => {
  master = join(root, 'master');
  await ok(['init', master, '--size', '32M']);
  await ok(['create', master, 'vm', '--size', '1M', '--label', 'env=test', '--label', 'tier=gold']);
  await ok(['write', master, 'vm', '-'], pattern(300_000, 1));
  await ok(['snapshot', master, 'vm', 'before', '--read-only', '--label', 'why=upgrade']);
  await ok(['write', master, 'vm', '--offset', '100K', '-'], pattern(400_000, 2));
  await ok(['snapshot', master, 'vm', 'after']);
  await ok(['snapshot', master, 'after', 'after-child']);
  await ok(['create', master, 'other', '--size', '1M']);
  await ok(['write', master, 'other', '-'], pattern(1000, 3));
  if (haveTools) {
    const layer = join(root, 'layer.tar');
    const { makeTar } = await import('../images/support.js');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(
      layer,
      await makeTar([
        { name: 'etc/', type: 'directory' },
        { name: 'etc/hello', body: Buffer.from('hi') },
      ]),
    );
    await ok(['image', 'import', master, 'app', layer, '--fs-size', '8M']);
  }
});

afterAll(() => {
  for (const c of children) c.kill();
  cleanup(root);
});

describe('create and snapshot with labels, snapshot --read-only, ls --tree', () => {
  test('labels and the read-only flag are kept and shown', async () => {
    const vols = await ls(master);
    const by = (n: string) => vols.find((v) => v.name === n)!;
    expect(by('vm').labels).toEqual({ env: 'test', tier: 'gold' });
    expect(by('vm').readOnly).toBe(false);
    expect(by('before')).toMatchObject({ readOnly: true, labels: { why: 'upgrade' }, origin: 'vm' });
    const w = await cli(['write', master, 'before', '-'], { stdin: Buffer.from('x') });
    expectOneLineError(w, 1, 'write', /read-only/);
    verifyMetadataFile(join(master, 'metadata'));
  });

  test('ls --tree draws volumes under their origins; --json nests them', async () => {
    const t = (await ok(['ls', master, '--tree'])).stdout.split('\n');
    expect(t[0]).toMatch(/^NAME\s+ID\s+SIZE\s+MAPPED\s+EXCLUSIVE\s+SHARED\s+ORIGIN\s+CREATED\s+MODE$/);
    const names = t
      .slice(1)
      .filter((l) => l)
      .map((l) => /^(.*?\S)\s{2,}\d+\s/.exec(l)![1]);
    expect(names.slice(0, 5)).toEqual(['vm', '├─ before', '└─ after', '   └─ after-child', 'other']);
    expect(t.find((l) => l.startsWith('├─ before'))).toMatch(/\sro$/);
    const tree = JSON.parse((await ok(['ls', master, '--tree', '--json'])).stdout) as Ls[];
    const vm = tree.find((v) => v.name === 'vm')!;
    expect(vm.children!.map((c) => c.name)).toEqual(['before', 'after']);
    expect(vm.children![1]!.children!.map((c) => c.name)).toEqual(['after-child']);
    expect(tree.map((v) => v.name)).toContain('other');
  });
});

describe('rename', () => {
  test('renames, keeps id, data, labels; snapshots show the new origin name', async () => {
    const p = copy(master);
    const before = (await ls(p)).find((v) => v.name === 'vm')!;
    const data = await readVol(p, 'vm');
    const r = await ok(['rename', p, 'vm', 'vm2', '--json']);
    expect(JSON.parse(r.stdout)).toEqual({ id: before.id, from: 'vm', to: 'vm2' });
    const after = await ls(p);
    expect(after.find((v) => v.name === 'vm2')).toMatchObject({ id: before.id, labels: before.labels });
    expect(after.find((v) => v.name === 'before')!.origin).toBe('vm2');
    expect((await readVol(p, 'vm2')).equals(data)).toBe(true);
    expect((await ok(['rename', p, `#${before.id}`, 'vm3'])).stdout).toBe(`renamed vm2 to vm3 (id ${before.id})\n`);
    verifyMetadataFile(join(p, 'metadata'));
  });
});

describe('rollback', () => {
  test("VOLUME gets SNAPSHOT's content, keeps name, id, size and labels; frees what only it held", async () => {
    const p = copy(master);
    const vm = (await ls(p)).find((v) => v.name === 'vm')!;
    const want = await readVol(p, 'before');
    const afterBytes = await readVol(p, 'after');
    const r = JSON.parse((await ok(['rollback', p, 'vm', 'before', '--json'])).stdout) as { id: number; freedBytes: number };
    expect(r.id).toBe(vm.id);
    expect((await readVol(p, 'vm')).equals(want)).toBe(true);
    const now = (await ls(p)).find((v) => v.name === 'vm')!;
    expect(now).toMatchObject({ id: vm.id, sizeBytes: vm.sizeBytes, labels: vm.labels, readOnly: false });
    // The later snapshot is untouched; writes to vm do not reach the snapshot.
    expect((await readVol(p, 'after')).equals(afterBytes)).toBe(true);
    await ok(['write', p, 'vm', '-'], Buffer.from('new data'));
    expect((await readVol(p, 'before')).equals(want)).toBe(true);
    verifyMetadataFile(join(p, 'metadata'));
  });

  test('frees the blocks only VOLUME held, at the commit', async () => {
    const p = copy(master);
    await ok(['create', p, 'solo', '--size', '1M']);
    await ok(['snapshot', p, 'solo', 'solo-empty']);
    await ok(['write', p, 'solo', '-'], pattern(5 * 65536, 9));
    const used = JSON.parse((await ok(['status', p, '--json'])).stdout).data.usedBlocks as number;
    const out = (await ok(['rollback', p, 'solo', 'solo-empty'])).stdout;
    expect(out).toMatch(/^rolled solo back to solo-empty \(id \d+, 1 MiB; 320 KiB freed\)\n$/);
    expect(JSON.parse((await ok(['status', p, '--json'])).stdout).data.usedBlocks).toBe(used - 5);
    verifyMetadataFile(join(p, 'metadata'));
  });

  test('onto a snapshot of a snapshot of VOLUME', async () => {
    const p = copy(master);
    await ok(['rollback', p, 'vm', 'after-child']);
    expect((await readVol(p, 'vm')).equals(await readVol(p, 'after-child'))).toBe(true);
    verifyMetadataFile(join(p, 'metadata'));
  });
});

describe('set', () => {
  test('--read-only refuses writes; --writable allows them again; labels added and removed', async () => {
    const p = copy(master);
    const r = JSON.parse((await ok(['set', p, 'other', '--read-only', '--label', 'a=1', '--label', 'b=2', '--json'])).stdout);
    expect(r).toMatchObject({ name: 'other', readOnly: true, labels: { a: '1', b: '2' } });
    expectOneLineError(await cli(['write', p, 'other', '-'], { stdin: Buffer.from('x') }), 1, 'write', /read-only/);
    expectOneLineError(await cli(['resize', p, 'other', '--size', '2M']), 1, 'resize', /read-only/);
    expectOneLineError(await cli(['rollback', p, 'other', 'vm']), 1, 'rollback', /read-only|not a snapshot/);
    const w = await ok(['set', p, 'other', '--writable', '--unlabel', 'a']);
    expect(w.stdout).toBe('other (id 5): writable, labels b=2\n');
    await ok(['write', p, 'other', '-'], Buffer.from('x'));
    verifyMetadataFile(join(p, 'metadata'));
  });
});

describe('--help', () => {
  test.each(['rename', 'rollback', 'set'])('%s --help: exit 0', async (c) => {
    const r = await cli([c, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`Usage: thinpool ${c} `));
  });
});

describe('bad input: one line, exit status, pool byte-identical', () => {
  let p = '';
  beforeAll(() => {
    p = copy(master);
  });
  const cases: Array<[string, number, string[], RegExp]> = [
    ['rename: unknown volume', 1, ['rename', 'P', 'nope', 'x'], /no volume named "nope"/],
    ['rename: a taken name', 1, ['rename', 'P', 'vm', 'other'], /already exists/],
    ['rename: a bad new name', 2, ['rename', 'P', 'vm', 'a/b'], /bad new name/],
    ['rename: a number as new name', 2, ['rename', 'P', 'vm', '12'], /bad new name/],
    ['rename: a missing argument', 2, ['rename', 'P', 'vm'], /missing required argument/],
    ['rename: an extra argument', 2, ['rename', 'P', 'vm', 'a', 'b'], /too many|unexpected/i],
    ['rollback: unknown volume', 1, ['rollback', 'P', 'nope', 'before'], /no volume named "nope"/],
    ['rollback: unknown snapshot', 1, ['rollback', 'P', 'vm', 'nope'], /no volume named "nope"/],
    ['rollback: an unrelated volume', 1, ['rollback', 'P', 'vm', 'other'], /not a snapshot of vm/],
    ['rollback: onto its origin', 1, ['rollback', 'P', 'after', 'vm'], /not a snapshot of after/],
    ['rollback: onto itself', 1, ['rollback', 'P', 'vm', 'vm'], /itself/],
    ['rollback: a read-only volume', 1, ['rollback', 'P', 'before', 'vm'], /read-only/],
    ['set: nothing to set', 2, ['set', 'P', 'vm'], /nothing to set/],
    ['set: --read-only and --writable', 2, ['set', 'P', 'vm', '--read-only', '--writable'], /contradict/],
    ['set: a label without =', 2, ['set', 'P', 'vm', '--label', 'x'], /KEY=VALUE/],
    ['set: a reserved label', 2, ['set', 'P', 'vm', '--label', 'thinpool.owner=x'], /reserved/],
    ['set: unlabel a reserved key', 2, ['set', 'P', 'vm', '--unlabel', 'thinpool.owner'], /reserved/],
    ['set: unlabel a missing key', 1, ['set', 'P', 'vm', '--unlabel', 'nope'], /has no label nope/],
    ['set: the same key both ways', 2, ['set', 'P', 'vm', '--label', 'a=1', '--unlabel', 'a'], /both/],
    ['set: unknown volume', 1, ['set', 'P', 'nope', '--read-only'], /no volume named "nope"/],
    ['create: a bad label', 2, ['create', 'P', 'new', '--size', '1M', '--label', '=x'], /bad label key/],
    ['snapshot: a bad label', 2, ['snapshot', 'P', 'vm', 'new', '--label', 'a b=c'], /bad label key/],
    ['snapshot: a taken name', 1, ['snapshot', 'P', 'vm', 'other', '--read-only'], /already exists/],
    ['ls: --tree with an extra argument', 2, ['ls', 'P', 'x', '--tree'], /too many|unexpected/i],
  ];
  test.each(cases)('%s', async (_w, exit, argv, re) => {
    const before = hashPool(p);
    const r = await cli(argv.map((a) => (a === 'P' ? p : a)));
    expectOneLineError(r, exit, argv[0]!, re);
    expect(hashPool(p)).toEqual(before);
  });

  test.skipIf(!haveTools)('image layers and containers are refused (owned by images)', async () => {
    const before = hashPool(p);
    const layer = (await ls(p)).find((v) => v.labels['thinpool.owner'] === 'images' && v.readOnly)!;
    expectOneLineError(await cli(['rename', p, layer.name, 'mine']), 1, 'rename', /belongs to images/);
    expectOneLineError(await cli(['set', p, layer.name, '--writable']), 1, 'set', /belongs to images/);
    expectOneLineError(await cli(['rollback', p, layer.name, 'vm']), 1, 'rollback', /belongs to images|read-only/);
    expect(hashPool(p)).toEqual(before);
  });

  test('a pool held by another process (a server): refused, byte-identical', async () => {
    const q = copy(master);
    children.push(holdLock(q));
    const before = hashPool(q);
    expectOneLineError(await cli(['rollback', q, 'vm', 'before']), 1, 'rollback', /open in process/);
    expectOneLineError(await cli(['rename', q, 'vm', 'x']), 1, 'rename', /open in process/);
    expect(hashPool(q)).toEqual(before);
  });
});
