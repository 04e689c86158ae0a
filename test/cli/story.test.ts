// The seed's story end to end through the CLI, import/export of sparse images, dump against thin_dump,
// and the demo. Every pool left behind is verified (our checker, thin_check, thin_dump).
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, ftruncateSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { thinDumpText } from '../support/oracle.js';
import { verifyMetadataFile } from '../support/pool-check.js';
import { needTool } from '../support/tools.js';
import { cleanup, cli, tempDir } from './helpers.js';

const hasThin = needTool('thin_dump', 'thin-provisioning-tools');
const root = tempDir();
afterAll(() => cleanup(root));

const BS = 64 * 1024;

async function ok(argv: string[], stdin?: string | Buffer) {
  const r = await cli(argv, { stdin });
  expect(r.stderr, `thinpool ${argv.join(' ')}`).toBe('');
  expect(r.code, `thinpool ${argv.join(' ')}: ${r.stderr}`).toBe(0);
  return r;
}

function verifyPool(pool: string): void {
  verifyMetadataFile(join(pool, 'metadata'));
}

async function dumpEqualsThinDump(pool: string): Promise<void> {
  const r = await ok(['dump', pool]);
  if (hasThin) expect(r.stdout).toBe(thinDumpText(join(pool, 'metadata')));
}

/** Allocated bytes of a file (st_blocks). */
function allocated(path: string): number {
  return statSync(path).blocks * 512;
}

describe('the seed story', () => {
  const pool = join(root, 'story');
  const base = Buffer.alloc(1024 * 1024);

  test('base volume with content, snapshot, write into the snapshot, ls, diff, export', async () => {
    await ok(['init', pool, '--size', '64M']);
    await ok(['create', pool, 'base', '--size', '1MiB']);
    for (let i = 0; i < base.length; i++) base[i] = (i * 7 + 3) & 0xff;
    await ok(['write', pool, 'base', '-'], base);
    await ok(['snapshot', pool, 'base', 'snap']);
    const patch = Buffer.from('changed by the snapshot');
    await ok(['write', pool, 'snap', '--offset', String(3 * BS + 100), '-'], patch);

    const ls = JSON.parse((await ok(['ls', pool, '--json'])).stdout) as Array<Record<string, unknown>>;
    expect(ls.map((v) => [v.name, v.sizeBytes, v.mappedBytes, v.exclusiveBytes, v.sharedBytes, v.origin])).toEqual([
      ['base', 1048576, 16 * BS, BS, 15 * BS, null],
      ['snap', 1048576, 16 * BS, BS, 15 * BS, 'base'],
    ]);
    const table = (await ok(['ls', pool])).stdout;
    expect(table.split('\n')[0]).toMatch(/^NAME\s+ID\s+SIZE\s+MAPPED\s+EXCLUSIVE\s+SHARED\s+ORIGIN\s+CREATED\s+MODE$/);
    expect(table).toMatch(/snap\s+2\s+1 MiB\s+1 MiB\s+64 KiB\s+960 KiB\s+base/);

    const diff = JSON.parse((await ok(['diff', pool, 'base', 'snap', '--json'])).stdout);
    expect(diff).toEqual([{ kind: 'different', begin: 3, length: 1, offsetBytes: 3 * BS, lengthBytes: BS }]);
    expect((await ok(['diff', pool, 'base', 'snap', '--all', '--json'])).stdout).toContain('"same"');

    const expectedSnap = Buffer.from(base);
    patch.copy(expectedSnap, 3 * BS + 100);
    await ok(['export', pool, 'base', join(root, 'base.img')]);
    await ok(['export', pool, 'snap', join(root, 'snap.img')]);
    expect(readFileSync(join(root, 'base.img')).equals(base)).toBe(true);
    expect(readFileSync(join(root, 'snap.img')).equals(expectedSnap)).toBe(true);
    const cmp = spawnSync('cmp', [join(root, 'snap.img'), join(root, 'base.img')], { encoding: 'utf8' });
    expect(cmp.status).toBe(1);
    expect(cmp.stdout).toContain(`byte ${3 * BS + 101}`);

    const read = await ok(['read', pool, 'snap', '--offset', String(3 * BS + 100), '--length', String(patch.length)]);
    expect(read.stdoutBytes.equals(patch)).toBe(true);

    const st = JSON.parse((await ok(['status', pool, '--json'])).stdout);
    expect(st.data.usedBlocks).toBe(17);
    expect(st.blockSize).toBe(BS);
    expect(st.mode).toBe('write');
    expect(st.heldMetadataSnapshot).toBeNull();
    expect((await ok(['status', pool])).stdout).toMatch(/data:\s+1.1 MiB used of 64 MiB/);

    const map = JSON.parse((await ok(['map', pool, 'snap', '--json'])).stdout) as Array<{ offsetBytes: number; lengthBytes: number }>;
    expect(map.reduce((s, e) => s + e.lengthBytes, 0)).toBe(16 * BS);
    expect((await ok(['map', pool, 'snap'])).stdout.split('\n')[0]).toMatch(/OFFSET\s+LENGTH\s+VBLOCK\s+BLOCKS\s+DATA_BLOCK/);

    const check = await ok(['check', pool]);
    expect(check.stdout).toMatch(/OK: 2 volumes/);
    verifyPool(pool);
    await dumpEqualsThinDump(pool);
  });

  test('resize and delete', async () => {
    await ok(['resize', pool, 'snap', '--size', '2M']);
    await ok(['resize', pool, 'base', '--size', String(BS * 8 + 512)]);
    const ls = JSON.parse((await ok(['ls', pool, '--json'])).stdout) as Array<Record<string, number>>;
    expect(ls.map((v) => v.sizeBytes)).toEqual([BS * 8 + 512, 2 * 1024 * 1024]);
    const r = await ok(['read', pool, 'base', '--offset', String(BS * 8), '--length', '512']);
    expect(r.stdoutBytes.equals(base.subarray(BS * 8, BS * 8 + 512))).toBe(true);
    verifyPool(pool);
    const del = await ok(['delete', pool, 'snap']);
    expect(del.stdout).toMatch(/deleted volume snap/);
    expect(JSON.parse((await ok(['ls', pool, '--json'])).stdout)).toHaveLength(1);
    verifyPool(pool);
    await dumpEqualsThinDump(pool);
  });
});

describe('import and export of a sparse image', () => {
  test('same bytes and the same holes', async () => {
    const pool = join(root, 'sparse');
    await ok(['init', pool, '--size', '32M']);
    const img = join(root, 'in.img');
    const size = 8 * 1024 * 1024 + 1000; // not a whole number of blocks, nor of sectors
    const fd = openSync(img, 'w');
    ftruncateSync(fd, size);
    const chunks: Array<[number, Buffer]> = [
      [0, Buffer.alloc(BS, 0x11)],
      [5 * BS + 17, Buffer.from('a few bytes in the middle of block 5')],
      [BS * 64, Buffer.alloc(3 * BS, 0x5a)],
      [size - 10, Buffer.from('0123456789')],
    ];
    for (const [at, b] of chunks) writeSync(fd, b, 0, b.length, at);
    // A block written with zeros: must stay unprovisioned.
    writeSync(fd, Buffer.alloc(BS), 0, BS, 20 * BS);
    closeSync(fd);

    const imp = await ok(['import', pool, 'disk', img]);
    expect(imp.stdout).toMatch(/6 of 129 blocks provisioned/);
    const ls = JSON.parse((await ok(['ls', pool, '--json'])).stdout) as Array<Record<string, number>>;
    expect(ls[0].sizeBytes).toBe(Math.ceil(size / 512) * 512);
    expect(ls[0].mappedBytes).toBe(6 * BS);

    const out = join(root, 'out.img');
    await ok(['export', pool, 'disk', out]);
    const a = readFileSync(img);
    const b = readFileSync(out);
    expect(b.length).toBe(Math.ceil(size / 512) * 512);
    expect(b.subarray(0, size).equals(a)).toBe(true);
    expect(b.subarray(size).every((x) => x === 0)).toBe(true);
    // Holes: only the 6 data blocks are allocated (ext4 allocates in 4 KiB pieces).
    expect(allocated(out)).toBeLessThanOrEqual(6 * BS + 8192);
    expect(allocated(out)).toBeGreaterThanOrEqual(5 * BS);

    // Progress is drawn on a terminal only, on stderr.
    const piped = await cli(['export', pool, 'disk', out]);
    expect(piped.stderr).toBe('');
    const tty = await cli(['export', pool, 'disk', out], { tty: true });
    expect(tty.code).toBe(0);
    expect(tty.stderr).toMatch(/exporting disk: +\d+%/);
    expect(tty.stdout).not.toMatch(/%/);
    verifyPool(pool);
    await dumpEqualsThinDump(pool);
  });
});

describe('demo', () => {
  test('tells the story, and a second run replaces the demo directory', async () => {
    for (let i = 0; i < 2; i++) {
      const r = await cli(['demo'], { cwd: root });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      for (const cmd of ['init', 'import', 'snapshot', 'write', 'ls', 'diff', 'status']) {
        expect(r.stdout).toContain(`$ thinpool ${cmd} thinpool-demo/pool`);
      }
      expect(r.stdout).toMatch(/different\s+1\s+1\s+64 KiB\s+64 KiB/);
      expect(r.stdout).toMatch(/snap\s+2\s+4 MiB\s+192 KiB\s+64 KiB\s+128 KiB\s+base/);
      expect(r.stdout).toContain('hello from the snapshot');
    }
    verifyPool(join(root, 'thinpool-demo', 'pool'));
    await dumpEqualsThinDump(join(root, 'thinpool-demo', 'pool'));
  });

  test('refuses a directory it did not make', async () => {
    const r = await cli(['demo', 'story'], { cwd: root });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^thinpool demo: story exists and was not made by "thinpool demo": give another DIR/);
    expect(existsSync(join(root, 'story', 'metadata'))).toBe(true);
  });
});
