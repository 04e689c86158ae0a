// thinpool send / receive on the command line: full and incremental round trips through files, standard
// input/output and a real shell pipe between two processes; --help, --json, exit statuses; bad input (unknown
// pools, volumes and bases, taken and bad names, truncated and corrupt streams, bad options) leaves both pools
// byte-identical; every pool that changed passes thin_check, the strict checker and our own.
import { requireFreshBuild } from '../support/dist.js';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { projectRoot } from '../support/oracle.js';
import { verifyMetadataFile } from '../support/pool-check.js';
import { cleanup, cli, expectOneLineError, hashPool, poolCopier, tempDir, type CliResult } from './helpers.js';

const root = tempDir('tp-stream-');
const copy = poolCopier(root);
let src = '';
let dst = '';
const bin = join(projectRoot, 'bin/thinpool.js');

async function ok(argv: string[], stdin?: Buffer): Promise<CliResult> {
  const r = await cli(argv, { stdin });
  if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  return r;
}

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  let x = seed >>> 0;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = (x >>> 24) | 1;
  }
  return b;
}

/**
 * A pool's files for a stream cut while it was applied from a pipe: all byte-identical but the durable data
 * high-water mark (data.hwm), which only ever rises and may have (see src/stream/receive.ts). Streams read from
 * a file are checked before the pool is opened, and there every file is compared (hashPool).
 */
function stable(pool: string): Record<string, string> {
  const { 'data.hwm': _hwm, ...rest } = hashPool(pool);
  return rest;
}

async function readVol(pool: string, name: string): Promise<Buffer> {
  return (await ok(['read', pool, name])).stdoutBytes;
}

beforeAll(async () => {
  src = join(root, 'src');
  await ok(['init', src, '--size', '32M']);
  await ok(['create', src, 'v', '--size', '2M']);
  await ok(['write', src, 'v', '--offset', '0', '-'], pattern(200_000, 1));
  await ok(['write', src, 'v', '--offset', '1M', '-'], pattern(70_000, 2));
  await ok(['snapshot', src, 'v', 's1']);
  await ok(['write', src, 'v', '--offset', '64K', '-'], pattern(1000, 3));
  await ok(['write', src, 'v', '--offset', '1600K', '-'], pattern(5000, 4));
  await ok(['snapshot', src, 'v', 's2']);
  dst = join(root, 'dst');
  await ok(['init', dst, '--size', '32M']);
});

afterAll(() => cleanup(root));

describe('send and receive on the command line', () => {
  test('--help of both commands: exit 0, usage on stdout', async () => {
    for (const c of ['send', 'receive']) {
      const r = await cli([c, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`Usage: thinpool ${c}`));
      expect(r.stdout).toMatch(/rbd/);
    }
  });

  test('full and incremental through files, with --json; the copies equal the sources and pass the checkers', async () => {
    const d = copy(dst);
    const f1 = join(root, 's1.diff');
    const f2 = join(root, 's2.diff');
    const sent = await ok(['send', src, 's1', '-o', f1, '--json']);
    const js = JSON.parse(sent.stdout) as { snapshot: string; base: null; streamBytes: number; dataBytes: number };
    expect(js).toMatchObject({ snapshot: 's1', base: null, streamBytes: readFileSync(f1).length });
    expect(readFileSync(f1).subarray(0, 12).toString()).toBe('rbd diff v1\n');
    const s2 = await ok(['send', src, 's2', '--from', 's1', '-o', f2]);
    expect(s2.stdout).toMatch(/^sent s2 since s1 to .*s2\.diff: /);
    expect(readdirSync(root).filter((f) => f.includes('.partial-'))).toEqual([]);
    expect(readFileSync(f2).length).toBeLessThan(2 * 65536 + 200); // two changed blocks

    const r1 = await ok(['receive', d, 's1', '-i', f1, '--json']);
    expect(JSON.parse(r1.stdout)).toMatchObject({ name: 's1', base: null, toSnap: 's1', sizeBytes: 2 * 1024 * 1024 });
    verifyMetadataFile(join(d, 'metadata'));
    const r2 = await ok(['receive', d, 's2', '-i', f2, '--label', 'origin=src', '--read-only']);
    expect(r2.stdout).toMatch(/^received s2 \(id 2, 2 MiB\) as a snapshot of s1: /);
    verifyMetadataFile(join(d, 'metadata'));
    expect((await readVol(d, 's1')).equals(await readVol(src, 's1'))).toBe(true);
    expect((await readVol(d, 's2')).equals(await readVol(src, 's2'))).toBe(true);
    const ls = JSON.parse((await ok(['ls', d, '--json'])).stdout) as Array<{
      name: string;
      readOnly: boolean;
      sharedBytes: number;
      mappedBytes: number;
    }>;
    const r2ls = ls.find((v) => v.name === 's2')!;
    expect(r2ls.readOnly).toBe(true);
    expect(r2ls.sharedBytes).toBeGreaterThan(0);
    const srcLs = JSON.parse((await ok(['ls', src, '--json'])).stdout) as Array<{ name: string; mappedBytes: number }>;
    expect(r2ls.mappedBytes).toBeLessThanOrEqual(srcLs.find((v) => v.name === 's2')!.mappedBytes);
  });

  test('standard output into standard input, v2 streams', async () => {
    const d = copy(dst);
    const a = await ok(['send', src, 's1', '--stream-version', '2']);
    expect(a.stdoutBytes.subarray(0, 12).toString()).toBe('rbd diff v2\n');
    await ok(['receive', d, 'x1'], a.stdoutBytes);
    const b = await ok(['send', src, 's2', '--from', 's1', '--stream-version', '2']);
    await ok(['receive', d, 'x2', '--from', 'x1'], b.stdoutBytes);
    expect((await readVol(d, 'x2')).equals(await readVol(src, 's2'))).toBe(true);
    verifyMetadataFile(join(d, 'metadata'));
  });

  test('a real pipe between two processes: send | receive', () => {
    requireFreshBuild();
    const d = copy(dst);
    const r = spawnSync('sh', ['-c', `node "${bin}" send "${src}" s2 | node "${bin}" receive "${d}" piped`], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^received piped/);
    const a = spawnSync('node', [bin, 'read', d, 'piped'], { maxBuffer: 1 << 24 }).stdout;
    const b = spawnSync('node', [bin, 'read', src, 's2'], { maxBuffer: 1 << 24 }).stdout;
    expect(Buffer.compare(a, b)).toBe(0);
    verifyMetadataFile(join(d, 'metadata'));
  });

  describe('bad input: one line, right exit status, both pools byte-identical', () => {
    let full: Buffer;
    let incr: Buffer;
    beforeAll(async () => {
      full = (await ok(['send', src, 's1'])).stdoutBytes;
      incr = (await ok(['send', src, 's2', '--from', 's1'])).stdoutBytes;
    });

    // One copy of dst for all failing commands: each must leave it as it was.
    let d = '';
    beforeAll(() => {
      d = copy(dst);
    });
    async function fails(cmd: string, exit: number, argv: (p: string) => string[], re: RegExp, stdin?: () => Buffer): Promise<void> {
      const before = [hashPool(src), stable(d)];
      const r = await cli(argv(d), { stdin: stdin?.() });
      expectOneLineError(r, exit, cmd, re);
      expect([hashPool(src), stable(d)]).toEqual(before);
    }

    const recvCases: Array<[string, number, (p: string) => string[], RegExp, (() => Buffer)?]> = [
      ['an unknown pool', 1, () => ['receive', join(root, 'nope'), 'x'], /no pool/, () => full],
      ['a bad name', 2, (p) => ['receive', p, 'a/b'], /bad volume name/, () => full],
      ['an empty stream', 1, (p) => ['receive', p, 'x'], /empty/, () => Buffer.alloc(0)],
      ['not a stream', 1, (p) => ['receive', p, 'x'], /banner/, () => Buffer.from('hello world, not a diff')],
      ['a truncated full stream', 1, (p) => ['receive', p, 'x'], /truncated/, () => full.subarray(0, full.length - 1000)],
      ['a stream without its end record', 1, (p) => ['receive', p, 'x'], /truncated/, () => full.subarray(0, full.length - 1)],
      ['an incremental stream without its base', 1, (p) => ['receive', p, 'x'], /incremental from "s1"/, () => incr],
      ['--from an unknown base', 1, (p) => ['receive', p, 'x', '--from', 'nope'], /nope/, () => incr],
      ['a missing input file', 1, (p) => ['receive', p, 'x', '-i', join(root, 'missing.diff')], /no such file/],
      ['an input directory', 2, (p) => ['receive', p, 'x', '-i', root], /directory/],
      ['a bad label', 2, (p) => ['receive', p, 'x', '--label', 'novalue'], /KEY=VALUE/, () => full],
      ['a reserved label', 2, (p) => ['receive', p, 'x', '--label', 'thinpool.owner=me'], /reserved/, () => full],
      ['an extra argument', 2, (p) => ['receive', p, 'x', 'y'], /too many|unexpected/i, () => full],
    ];
    test.each(recvCases)('receive: %s', async (_w, exit, argv, re, stdin) => fails('receive', exit, argv, re, stdin));

    test('receive: a taken name', async () => {
      const d = copy(dst);
      await ok(['receive', d, 'x'], full);
      const before = hashPool(d);
      const r = await cli(['receive', d, 'x'], { stdin: full });
      expectOneLineError(r, 1, 'receive', /already exists/);
      expect(hashPool(d)).toEqual(before);
    });

    test('receive: a stream cut inside the incremental part, onto an existing base', async () => {
      const d = copy(dst);
      await ok(['receive', d, 's1'], full);
      const before = stable(d);
      for (const cut of [13, 40, incr.length >> 1, incr.length - 1]) {
        const r = await cli(['receive', d, 's2'], { stdin: incr.subarray(0, cut) });
        expectOneLineError(r, 1, 'receive', /truncated/);
        expect(stable(d), `cut at ${cut}`).toEqual(before);
        const f = join(root, 'cut.diff');
        writeFileSync(f, incr.subarray(0, cut));
        const hashed = hashPool(d);
        expectOneLineError(await cli(['receive', d, 's2', '-i', f]), 1, 'receive', /truncated/);
        expect(hashPool(d), `file cut at ${cut}`).toEqual(hashed);
      }
      verifyMetadataFile(join(d, 'metadata'));
    });

    const sendCases: Array<[string, number, (p: string) => string[], RegExp]> = [
      ['an unknown volume', 1, () => ['send', src, 'nope'], /no volume named "nope"/],
      ['an unknown base', 1, () => ['send', src, 's2', '--from', 'nope'], /no volume named "nope"/],
      ['a bad stream version', 2, () => ['send', src, 's2', '--stream-version', '3'], /must be 1 or 2/],
      ['--json without -o', 2, () => ['send', src, 's2', '--json'], /-o FILE/],
      ['an output directory', 2, () => ['send', src, 's2', '-o', root], /directory/],
      ['an output in a missing directory', 1, () => ['send', src, 's2', '-o', join(root, 'no/such/file')], /does not exist/],
      ['a missing argument', 2, () => ['send', src], /missing required argument/],
    ];
    test.each(sendCases)('send: %s', async (_w, exit, argv, re) => fails('send', exit, argv, re));

    test('send of an unknown volume leaves no output file behind', async () => {
      const f = join(root, 'never.diff');
      const r = await cli(['send', src, 'nope', '-o', f]);
      expectOneLineError(r, 1, 'send');
      expect(existsSync(f)).toBe(false);
      expect(readdirSync(root).filter((n) => n.includes('.partial-'))).toEqual([]);
    });
  });

  test('a damaged stream file is refused and nothing is received', async () => {
    const d = copy(dst);
    const f = join(root, 'damaged.diff');
    const bytes = (await ok(['send', src, 's1'])).stdoutBytes;
    const bad = Buffer.from(bytes);
    bad[12] = 0x58; // the first record's tag
    writeFileSync(f, bad);
    const before = hashPool(d);
    expectOneLineError(await cli(['receive', d, 'x', '-i', f]), 1, 'receive', /unknown record tag/);
    writeFileSync(f, bytes);
    truncateSync(f, 30);
    expectOneLineError(await cli(['receive', d, 'x', '-i', f]), 1, 'receive', /truncated/);
    expect(hashPool(d)).toEqual(before);
  });
});
