// `import` into a fresh volume checks metadata space up front with the bound of an ascending write (cli/pool.ts
// metadataNeeded): an image that fits is imported (the general bound, three times as much, refused it), the
// metadata it really took stays under the bound, and an image that does not fit is refused with one line
// naming the pool, before anything is written (no volume, the pool unchanged, `check` clean).
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterAll, describe, expect, test } from 'vitest';
import type { Ctx } from '../../src/cli/io.js';
import { metadataNeeded, withPool } from '../../src/cli/pool.js';
import { ThinpoolError } from '../../src/errors.js';
import { cleanup, cli, expectOneLineError, tempDir } from './helpers.js';

const MiB = 1024 * 1024;
const root = tempDir('tp-import-md-');
afterAll(() => cleanup(root));

/** n bytes, no 64 KiB block of them all zeros. */
function nonZero(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i += 4096) b.writeUInt32LE((i * 2654435761) >>> 0 || 1, i);
  return b;
}

async function status(pool: string): Promise<{ metadata: { usedBlocks: number; freeBytes: number } }> {
  const r = await cli(['status', pool, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

describe('import: the metadata bound of a fresh volume', () => {
  test('the fresh bound is the general one less the shadowing and split margins', () => {
    expect(metadataNeeded(0)).toBe(0);
    expect(metadataNeeded(0, { freshAscending: true })).toBe(0);
    expect(metadataNeeded(32768)).toBe(328 * 3 + 80);
    expect(metadataNeeded(32768, { freshAscending: true })).toBe(328 + 64);
    expect(metadataNeeded(1, { freshAscending: true })).toBe(1 + 64);
  });

  test('an image the general bound refused is imported; what it took is under the bound', async () => {
    const pool = join(root, 'fits');
    expect((await cli(['init', pool, '--size', '1G', '--metadata-size', '512K'])).code).toBe(0);
    const img = join(root, 'fits.img');
    writeFileSync(img, nonZero(200 * MiB)); // 3,200 blocks: fresh bound 96, general bound 176
    const before = await status(pool);
    const free = before.metadata.freeBytes / 4096;
    expect(metadataNeeded(3200, { freshAscending: true })).toBeLessThanOrEqual(free);
    expect(metadataNeeded(3200)).toBeGreaterThan(free);
    const r = await cli(['import', pool, 'v', img]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('3200 of 3200 blocks provisioned');
    const after = await status(pool);
    expect(after.metadata.usedBlocks - before.metadata.usedBlocks).toBeLessThanOrEqual(metadataNeeded(3200, { freshAscending: true }));
    const c = await cli(['check', pool]);
    expect(c.code, c.stderr).toBe(0);
  });

  test('an image that does not fit is refused before anything is written', async () => {
    const pool = join(root, 'full');
    expect((await cli(['init', pool, '--size', '448M', '--metadata-size', '512K'])).code).toBe(0); // data for it all
    const img = join(root, 'full.img');
    writeFileSync(img, nonZero(400 * MiB)); // 6,400 blocks: fresh bound 128, more than is free
    const metadata = () =>
      createHash('sha256')
        .update(readFileSync(join(pool, 'metadata')))
        .digest('hex');
    const was = metadata();
    const r = await cli(['import', pool, 'v', img]);
    expectOneLineError(r, 1, 'import', /short of metadata space: this may need 128 free metadata blocks .* nothing was written/);
    expect(metadata()).toBe(was);
    expect((await status(pool)).metadata.usedBlocks).toBeGreaterThan(0);
    expect(JSON.parse((await cli(['status', pool, '--json'])).stdout).data.usedBlocks).toBe(0);
    expect((await cli(['ls', pool])).stdout).not.toMatch(/\bv\b/);
  });
});

// withPool's undoOnError: what the engine committed on its own during a failed command (it commits when
// metadata runs low) is undone in a fresh transaction; the error keeps its one line.
describe('withPool undoOnError', () => {
  const io = () => ({ stdout: new PassThrough(), stderr: new PassThrough(), stdin: Readable.from([]) });
  const ctx = (): Ctx => ({ io: io() as unknown as Ctx['io'], cwd: root, main: async () => 0 });

  test('a volume committed during a failed command is removed; the pool is as before it', async () => {
    const pool = join(root, 'undo');
    expect((await cli(['init', pool, '--size', '64M'])).code).toBe(0);
    expect((await cli(['create', pool, 'keep', '--size', '1M'])).code).toBe(0);
    let made = -1;
    const run = withPool(
      ctx(),
      pool,
      'write',
      (p) => {
        const v = p.createThinSync('half', { size: 1024 * 1024 });
        made = v.id;
        v.writeSync(new Uint8Array(65536).fill(7), 0);
        p.commitSync(); // as the engine does when metadata runs low
        throw new ThinpoolError('EIO', 'the source failed');
      },
      { undoOnError: (p) => p.has('half') && p.volume('half').id === made && p.deleteSync('half') },
    );
    await expect(run).rejects.toThrow(/the source failed/);
    const ls = JSON.parse((await cli(['ls', pool, '--json'])).stdout) as { name: string }[];
    expect(ls.map((v) => v.name)).toEqual(['keep']);
    const st = await status(pool);
    expect((await cli(['check', pool])).code).toBe(0);
    expect(st.metadata.usedBlocks).toBeGreaterThan(0);
    const data = JSON.parse((await cli(['status', pool, '--json'])).stdout) as { data: { usedBlocks: number } };
    expect(data.data.usedBlocks).toBe(0);
  });

  test('an undo that fails is said after the error', async () => {
    const pool = join(root, 'undo-fails');
    expect((await cli(['init', pool, '--size', '64M'])).code).toBe(0);
    const run = withPool(
      ctx(),
      pool,
      'write',
      () => {
        throw new ThinpoolError('EIO', 'the source failed');
      },
      {
        undoOnError: () => {
          throw new Error('no way back');
        },
      },
    );
    await expect(run).rejects.toThrow(/the source failed.*what it had committed could not be undone \(no way back\)/);
  });
});
