// dump / restore / check against thin-provisioning-tools 0.9.0, on the project's fixtures and on CLI-made pools,
// plus a smoke test of the shipped bin through node.
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { FileDevice } from '../../src/io/file-device.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import {
  buildFixtureImages,
  CORRUPT,
  expectedDumpFile,
  fixturesAvailable,
  fixtureSource,
  GOOD_FIXTURES,
} from '../support/dm-thin-fixtures.js';
import { projectRoot, thinCheck, thinDumpText } from '../support/oracle.js';
import { verifyMetadataFile } from '../support/pool-check.js';
import { requireFreshBuild } from '../support/dist.js';
import { needTool } from '../support/tools.js';
import { cleanup, cli, tempDir } from './helpers.js';

const hasThin = needTool('thin_dump', 'thin-provisioning-tools');
const root = tempDir('tp-meta-');
afterAll(() => cleanup(root));

const haveFixtures = fixturesAvailable();
const images = join(root, 'fixtures');
mkdirSync(images);
let built = false;
/** A fixture's metadata image, built on first use. */
function image(name: string): string {
  if (!built) {
    buildFixtureImages(images);
    built = true;
  }
  return join(images, `${name}.bin`);
}

describe.skipIf(!haveFixtures)('dump equals thin_dump on the fixtures', () => {
  test.each(GOOD_FIXTURES)('%s', async (name) => {
    const bin = image(name);
    const r = await cli(['dump', bin]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(readFileSync(expectedDumpFile(name), 'utf8'));
    if (hasThin) expect(r.stdout).toBe(thinDumpText(bin));
    if (existsSync(fixtureSource(`${name}.dump-m.xml`))) {
      const m = await cli(['dump', bin, '--metadata-snap']);
      expect(m.code).toBe(0);
      expect(m.stdout).toBe(readFileSync(fixtureSource(`${name}.dump-m.xml`), 'utf8'));
    }
  });
  test('a pool directory holding a fixture as its metadata', async () => {
    const dir = join(root, 'fixture-pool');
    mkdirSync(dir);
    copyFileSync(image('03-snapshots'), join(dir, 'metadata'));
    const r = await cli(['dump', dir, '-o', join(root, 'o.xml')]);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(join(root, 'o.xml'), 'utf8')).toBe(readFileSync(expectedDumpFile('03-snapshots'), 'utf8'));
  });
});

describe("restore of the fixtures' XML", () => {
  test.each(GOOD_FIXTURES)('%s: thin_check passes and thin_dump prints it back', async (name) => {
    const xml = expectedDumpFile(name);
    const pool = join(root, `restored-${name}`);
    const r = await cli(['restore', xml, pool]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const md = join(pool, 'metadata');
    const text = readFileSync(xml, 'utf8');
    const nr = Number(/nr_data_blocks="(\d+)"/.exec(text)![1]);
    const bs = Number(/data_block_size="(\d+)"/.exec(text)![1]) * 512;
    expect(statSync(join(pool, 'data')).size).toBe(nr * bs);
    expect(statSync(join(pool, 'data')).blocks).toBe(0);
    expect((await cli(['dump', pool])).stdout).toBe(text);
    if (hasThin) {
      expect(thinCheck(md).status).toBe(0);
      expect(thinDumpText(md)).toBe(text);
    }
    // The restored pool works: ls, and check (needs_check of 06 is a warning).
    const ls = await cli(['ls', pool, '--json']);
    expect(ls.code, ls.stderr).toBe(0);
    expect((await cli(['check', pool])).code).toBe(0);
  });
  test('restore from standard input', async () => {
    const text = readFileSync(expectedDumpFile('02-single-thin'), 'utf8');
    const r = await cli(['restore', '-', join(root, 'from-stdin')], { stdin: text });
    expect(r.code, r.stderr).toBe(0);
    expect((await cli(['dump', join(root, 'from-stdin')])).stdout).toBe(text);
  });
});

describe('check finds what thin_check finds, and more', () => {
  let pool = '';
  const blocks: number[] = [];
  beforeAll(async () => {
    pool = join(root, 'victim');
    const run = async (argv: string[], stdin?: Buffer) => expect((await cli(argv, { stdin })).code).toBe(0);
    await run(['init', pool, '--size', '2G']);
    await run(['create', pool, 'a', '--size', '1G']);
    // Enough mappings for internal nodes in the level-1 tree and two data bitmap blocks.
    const img = Buffer.alloc(32 * 1024 * 1024);
    for (let b = 0; b < img.length / 65536; b++) img.writeUInt32LE(b + 1, b * 65536);
    writeFileFull(join(root, 'big.img'), img);
    await run(['write', pool, 'a', join(root, 'big.img')]);
    await run(['snapshot', pool, 'a', 'b']);
    await run(['write', pool, 'b', '--offset', '100M', '-'], Buffer.alloc(5 * 65536, 9));
    verifyMetadataFile(join(pool, 'metadata'));
    // Every metadata block in use (non-zero on disk).
    const fd = openSync(join(pool, 'metadata'), 'r');
    const buf = Buffer.alloc(4096);
    const n = statSync(join(pool, 'metadata')).size / 4096;
    for (let i = 0; i < n; i++) {
      readSync(fd, buf, 0, 4096, i * 4096);
      if (buf.some((x) => x !== 0)) blocks.push(i);
    }
    closeSync(fd);
    expect(blocks.length).toBeGreaterThan(10);
  });

  test('a flipped byte in every metadata block in use', async () => {
    const missed: string[] = [];
    for (const blk of blocks) {
      for (const off of [16, 2048]) {
        const dir = join(root, `dmg-${blk}-${off}`);
        mkdirSync(dir);
        spawnSync('cp', ['--sparse=always', join(pool, 'metadata'), join(pool, 'data'), join(pool, 'catalog.json'), dir]);
        const fd = openSync(join(dir, 'metadata'), 'r+');
        const b = Buffer.alloc(1);
        readSync(fd, b, 0, 1, blk * 4096 + off);
        b[0] ^= 0x5a;
        writeSync(fd, b, 0, 1, blk * 4096 + off);
        closeSync(fd);
        const thin = hasThin ? thinCheck(join(dir, 'metadata')).status : 1;
        const ours = await cli(['check', dir]);
        if (thin !== 0 && ours.code !== 1) missed.push(`block ${blk} byte ${off}: thin_check ${thin}, ours ${ours.code}`);
        if (ours.code === 1) {
          expect(ours.stderr).toMatch(/^thinpool check: .* is damaged: .*block \d+/);
          expect(ours.stderr.trimEnd().split('\n')).toHaveLength(1);
        }
      }
    }
    expect(missed).toEqual([]);
  });

  test('a wrong data reference count, which thin_check 0.9.0 misses', async () => {
    const dir = join(root, 'refcount');
    mkdirSync(dir);
    spawnSync('cp', ['--sparse=always', join(pool, 'metadata'), join(pool, 'data'), join(pool, 'catalog.json'), dir]);
    const dev = FileDevice.open(join(dir, 'metadata'));
    const md = ThinMetadata.open(dev);
    ThinMetadata.internals(md).dsm.inc(3);
    md.commit();
    dev.close();
    if (hasThin) expect(thinCheck(join(dir, 'metadata')).status).toBe(0);
    const r = await cli(['check', dir]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/data reference counts differ for block 3, expected 1, but got 2/);
    const j = await cli(['check', dir, '--json']);
    expect(JSON.parse(j.stdout).ok).toBe(false);
  });

  test.skipIf(!haveFixtures)('the corrupt-leaf fixture', async () => {
    const r = await cli(['check', image(CORRUPT)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/checksum.*block 10/);
  });
});

function writeFileFull(path: string, b: Buffer): void {
  const fd = openSync(path, 'w');
  writeSync(fd, b);
  closeSync(fd);
}

describe('the shipped command', () => {
  test('node bin/thinpool.js --help and a run (of a fresh build)', () => {
    requireFreshBuild();
    const bin = join(projectRoot, 'bin/thinpool.js');
    const h = spawnSync('node', [bin, '--help'], { encoding: 'utf8' });
    expect(h.status).toBe(0);
    expect(h.stdout).toMatch(/Usage: thinpool/);
    for (const c of [
      'init',
      'create',
      'snapshot',
      'delete',
      'resize',
      'ls',
      'status',
      'write',
      'read',
      'import',
      'export',
      'map',
      'diff',
      'check',
      'dump',
      'restore',
      'demo',
    ]) {
      expect(h.stdout).toContain(`  ${c}`);
      const ch = spawnSync('node', [bin, c, '--help'], { encoding: 'utf8' });
      expect(ch.status, c).toBe(0);
      expect(ch.stdout).toContain(`Usage: thinpool ${c}`);
    }
    // A reader that stops before the help is written (`| true` closes the pipe at once): no crash, no stack.
    const closed = spawnSync('sh', ['-c', '"$1" "$2" snapshot --help | true', 'sh', process.execPath, bin], { encoding: 'utf8' });
    expect(closed.stderr).not.toMatch(/EPIPE|Unhandled|at /);
    const bad = spawnSync('node', [bin, 'create'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    const pool = join(root, 'bin-pool');
    const init = spawnSync('node', [bin, 'init', pool, '--size', '8M'], { encoding: 'utf8' });
    expect(init.status, init.stderr).toBe(0);
    const w = spawnSync('node', [bin, 'create', pool, 'v', '--size', '1M'], { encoding: 'utf8' });
    expect(w.status, w.stderr).toBe(0);
    const wr = spawnSync('node', [bin, 'write', pool, 'v'], { input: 'piped in', encoding: 'utf8' });
    expect(wr.status, wr.stderr).toBe(0);
    expect(wr.stderr).toBe('');
    const rd = spawnSync('node', [bin, 'read', pool, 'v', '--length', '8'], { encoding: 'utf8' });
    expect(rd.stdout).toBe('piped in');
    verifyMetadataFile(join(pool, 'metadata'));
  });
});

test('a writer stopped between its commit and publishing the catalog: check, ls and read see that commit; the next writer publishes it', async () => {
  const pool = join(root, 'unpublished');
  const run = async (argv: string[]) => {
    const r = await cli(argv);
    expect(r.code, `${argv.join(' ')}: ${r.stderr}`).toBe(0);
    return r.stdout;
  };
  await run(['init', pool, '--size', '4M']);
  await run(['create', pool, 'a', '--size', '1M']);
  await run(['create', pool, 'gone', '--size', '1M']);
  const older = readFileSync(join(pool, 'catalog.json'));
  await run(['create', pool, 'c', '--size', '1M']);
  await run(['delete', pool, 'gone']);
  // The state a stop between steps 2 and 3 of the catalog's protocol leaves: the staged catalog tied to the
  // superblock on disk, the catalog of two commits before still published.
  renameSync(join(pool, 'catalog.json'), join(pool, 'catalog.next.json'));
  writeFileSync(join(pool, 'catalog.json'), older);
  const names = async () => (JSON.parse(await run(['ls', pool, '--json'])) as Array<{ name: string }>).map((v) => v.name);
  expect(await names()).toEqual(['a', 'c']);
  const report = JSON.parse(await run(['check', pool, '--json'])) as { ok: boolean; warnings: unknown[] };
  expect(report.ok).toBe(true);
  expect(report.warnings, 'the published catalog names "gone", which that commit deleted: not a finding').toEqual([]);
  expect(await run(['read', pool, 'c', '--length', '4'])).toBe('\0\0\0\0');
  expect(existsSync(join(pool, 'catalog.next.json')), 'readers leave it for the next writer').toBe(true);
  await run(['create', pool, 'd', '--size', '1M']);
  expect(await names()).toEqual(['a', 'c', 'd']);
  expect(existsSync(join(pool, 'catalog.next.json'))).toBe(false);
  verifyMetadataFile(join(pool, 'metadata'));
});
