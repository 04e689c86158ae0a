// What the CLI's messages claim, checked against what happened: delete separates the space the pool freed from
// what the host file system got back; import refuses image formats that are not raw (by their magic numbers)
// and names the conversion; a full pool names `thinpool extend`; ls shows labels and read-only volumes; a
// restored pool is complete (a catalog, no warning from check).
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { allocatedBytes } from '../../src/io/file-device.js';
import { ThinPool } from '../../src/thin/pool.js';
import { needTool } from '../support/tools.js';
import { cleanup, cli, expectOneLineError, hashPool, tempDir } from './helpers.js';

let root = '';
beforeAll(() => {
  root = tempDir('tp-msg-');
});
afterAll(() => cleanup(root));

let pools = 0;
async function newPool(size = '64M'): Promise<string> {
  const pool = join(root, `pool${pools++}`);
  const r = await cli(['init', pool, '--size', size]);
  expect(r.code, r.stderr).toBe(0);
  return pool;
}

async function ok(argv: string[], stdin?: Buffer): Promise<string> {
  const r = await cli(argv, { stdin });
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

describe('delete: what the pool freed, and separately what the host got back', () => {
  test("an exclusive volume: both, measured against the data file's allocation", async () => {
    const pool = await newPool();
    await ok(['create', pool, 'a', '--size', '4M']);
    await ok(['write', pool, 'a'], Buffer.alloc(1 << 20, 7));
    const before = allocatedBytes(join(pool, 'data'));
    const out = await ok(['delete', pool, 'a']);
    const back = before - allocatedBytes(join(pool, 'data'));
    expect(out).toMatch(/^deleted volume a: 1 MiB freed in the pool, /);
    if (back > 0) expect(out).toMatch(/, 1 MiB returned to the host\n$/);
    else expect(out).toMatch(/, none returned to the host: /);
  });

  test('a volume whose blocks are all shared frees nothing', async () => {
    const pool = await newPool();
    await ok(['create', pool, 'a', '--size', '4M']);
    await ok(['write', pool, 'a'], Buffer.alloc(1 << 20, 7));
    await ok(['snapshot', pool, 'a', 's']);
    expect(await ok(['delete', pool, 's'])).toBe(
      'deleted volume s: 0 B freed in the pool (every block is shared with another volume), nothing to return to the host\n',
    );
  });

  test('with discard passdown off the host gets nothing back, and the message says how to get it', async () => {
    const pool = await newPool();
    await ok(['space', pool, '--discard-passdown', 'off']);
    await ok(['create', pool, 'a', '--size', '4M']);
    await ok(['write', pool, 'a'], Buffer.alloc(1 << 20, 7));
    const before = allocatedBytes(join(pool, 'data'));
    const out = await ok(['delete', pool, 'a']);
    expect(allocatedBytes(join(pool, 'data'))).toBe(before);
    expect(out).toBe(
      `deleted volume a: 1 MiB freed in the pool, none returned to the host yet: discard passdown is off (run "thinpool trim ${pool}")\n`,
    );
  });
});

/** The first bytes of each format, as their specifications place the magic numbers. */
function fakeImage(format: string): Buffer {
  const b = Buffer.alloc(1 << 20);
  b.write('some raw-looking data', 4096);
  switch (format) {
    case 'qcow2':
      b.write('QFI\xfb', 0, 'latin1');
      break;
    case 'vmdk':
      b.write('KDMV', 0, 'latin1');
      break;
    case 'vmdk-descriptor':
      b.write('# Disk DescriptorFile\nversion=1\n', 0, 'latin1');
      break;
    case 'vdi':
      b.write('<<< Oracle VM VirtualBox Disk Image >>>\n', 0, 'latin1');
      b.writeUInt32LE(0xbeda107f, 64);
      break;
    case 'vhdx':
      b.write('vhdxfile', 0, 'latin1');
      break;
    case 'vhd-dynamic':
      b.write('conectix', 0, 'latin1');
      break;
    case 'vhd-fixed':
      b.write('conectix', b.length - 512, 'latin1');
      break;
  }
  return b;
}

describe('import: image formats that are not raw are refused with the conversion to run', () => {
  const names: [string, RegExp][] = [
    ['qcow2', /is a qcow2 image.*qemu-img convert -f qcow2 -O raw /],
    ['vmdk', /is a VMDK image.*-f vmdk -O raw/],
    ['vmdk-descriptor', /is a VMDK image/],
    ['vdi', /is a VDI \(VirtualBox\) image.*-f vdi -O raw/],
    ['vhdx', /is a VHDX image.*-f vhdx -O raw/],
    ['vhd-dynamic', /is a VHD image.*-f vpc -O raw/],
    ['vhd-fixed', /is a VHD \(fixed\) image.*-f vpc -O raw/],
  ];
  test.each(names)('%s: exit 1, one line, pool unchanged', async (format, pattern) => {
    const pool = await newPool();
    const img = join(root, `disk.${format}`);
    writeFileSync(img, fakeImage(format));
    const before = hashPool(pool);
    const r = await cli(['import', pool, 'd', img]);
    expectOneLineError(r, 1, 'import', pattern);
    expect(r.stderr).toMatch(/or give --format raw to import the file's bytes as they are\)$/m);
    expect(hashPool(pool)).toEqual(before);
  });

  test('--format raw imports the bytes as they are', async () => {
    const pool = await newPool();
    const img = join(root, 'forced.qcow2');
    writeFileSync(img, fakeImage('qcow2'));
    expect(await ok(['import', pool, 'd', img, '--format', 'raw'])).toMatch(/^imported .* as volume d /);
    const back = await cli(['read', pool, 'd', '--length', '4']);
    expect(back.stdoutBytes.toString('latin1')).toBe('QFI\xfb');
  });

  test('--format with anything but raw is a usage error', async () => {
    const pool = await newPool();
    const img = join(root, 'plain.img');
    writeFileSync(img, fakeImage('raw'));
    expectOneLineError(await cli(['import', pool, 'd', img, '--format', 'qcow2']), 2, 'import', /--format "?qcow2"? is not supported/);
  });

  test.skipIf(!needTool('qemu-img', 'qemu-utils'))(
    'images made by qemu-img are recognised, and the command given converts them',
    async () => {
      const pool = await newPool();
      for (const fmt of ['qcow2', 'vmdk', 'vdi', 'vpc', 'vhdx']) {
        const img = join(root, `real.${fmt}`);
        const made = spawnSync('qemu-img', ['create', '-q', '-f', fmt, img, '4M'], { encoding: 'utf8' });
        expect(made.status, made.stderr).toBe(0);
        const r = await cli(['import', pool, 'd', img]);
        expectOneLineError(r, 1, 'import', /is a (qcow2|VMDK|VDI|VHD|VHDX)\b.* image, not a raw disk image/);
        const cmd = /"(qemu-img convert [^"]+)"/.exec(r.stderr)![1].split(' ');
        const conv = spawnSync(cmd[0], cmd.slice(1), { encoding: 'utf8' });
        expect(conv.status, `${cmd.join(' ')}: ${conv.stderr}`).toBe(0);
        expect(await ok(['import', pool, `from-${fmt}`, cmd[cmd.length - 1]])).toMatch(/^imported /);
      }
    },
  );
});

describe('a full pool names the ways out, thinpool extend among them', () => {
  test('write beyond the free space', async () => {
    const pool = await newPool('1M');
    await ok(['create', pool, 'a', '--size', '4M']);
    const before = hashPool(pool);
    const r = await cli(['write', pool, 'a'], { stdin: Buffer.alloc(2 << 20, 1) });
    expectOneLineError(
      r,
      1,
      'write',
      new RegExp(`is full: .*nothing was written: delete volumes .*grow the pool \\("thinpool extend ${pool} --size SIZE"\\)`),
    );
    expect(hashPool(pool)).toEqual(before);
  });
});

describe('ls shows labels and read-only volumes', () => {
  test("--json has each volume's labels; the table has a MODE column (rw / ro)", async () => {
    const pool = await newPool();
    const p = ThinPool.openSync(pool);
    p.createThinSync('plain', { size: 1 << 20 });
    p.createThinSync('layer', { size: 1 << 20, labels: { role: 'base layer' }, readOnly: true });
    p.closeSync();
    const json = JSON.parse(await ok(['ls', pool, '--json'])) as { name: string; labels: Record<string, string>; readOnly: boolean }[];
    expect(json.map((v) => [v.name, v.labels, v.readOnly])).toEqual([
      ['plain', {}, false],
      ['layer', { role: 'base layer' }, true],
    ]);
    const table = (await ok(['ls', pool])).trimEnd().split('\n');
    expect(table[0]).toMatch(/\bMODE$/);
    expect(table[1]).toMatch(/^plain .* rw$/);
    expect(table[2]).toMatch(/^layer .* ro$/);
  });
});

describe('restore makes a complete pool', () => {
  test('a catalog tied to the restored metadata: check has no warning, the volumes answer to #ID', async () => {
    const pool = await newPool();
    await ok(['create', pool, 'a', '--size', '4M']);
    await ok(['write', pool, 'a'], Buffer.from('restored bytes'));
    const xml = join(root, 'dump.xml');
    writeFileSync(xml, (await cli(['dump', pool])).stdout);
    const copy = join(root, 'restored');
    expect(await ok(['restore', xml, copy])).toMatch(/^restored /);
    expect(Object.keys(hashPool(copy)).sort()).toEqual(['catalog.json', 'data', 'metadata']);
    const check = await cli(['check', copy, '--json']);
    expect(check.code, check.stdout + check.stderr).toBe(0);
    expect((JSON.parse(check.stdout) as { warnings: unknown[] }).warnings).toEqual([]);
    expect(await ok(['ls', copy])).toMatch(/^#1 +1 /m);
    // The catalog is the pool's own: a later change commits through it.
    await ok(['create', copy, 'b', '--size', '1M']);
    expect((await cli(['check', copy])).code).toBe(0);
  });
});
