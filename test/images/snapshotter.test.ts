// The snapshotter API with containerd's semantics, stored in the pool's catalog and committed with it.
import { afterAll, describe, expect, test } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ThinPool } from '../../src/thin/pool.js';
import { Snapshotter } from '../../src/images/snapshotter.js';
import { withFs } from '../../src/images/fs-worker.js';
import { needTool } from '../support/tools.js';
import { verifyMetadataFile } from '../support/pool-check.js';
import { expectFsck } from './support.js';

const haveTools = needTool('mkfs.ext4', 'e2fsprogs') && needTool('e2fsck', 'e2fsprogs');
const work = mkdtempSync(join(tmpdir(), 'tp-snapshotter-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const SIZE = 64 * 1024 * 1024;

describe.skipIf(!haveTools)('snapshotter', () => {
  test('prepare, commit, view, remove, stat, update, usage, walk', async () => {
    const dir = join(work, 'p1');
    const pool = ThinPool.formatSync(dir, { size: 512 * 1024 * 1024 });
    const sn = new Snapshotter(pool, { size: SIZE });
    const a = sn.prepare('a', undefined, { team: 'x' });
    expect(a).toMatchObject({ key: 'a', kind: 'active', labels: { team: 'x' } });
    expect(a.parent).toBeUndefined();
    await withFs(sn.volume('a'), (fs) => fs.writeFile('/hello', Buffer.alloc(300000, 1)));
    expect(() => sn.prepare('a')).toThrow(/already exists/);
    expect(() => sn.prepare('b', 'a')).toThrow(/not committed/);
    expect(() => sn.view('v', 'a')).toThrow(/not committed/);

    const c = sn.commit('layer1', 'a');
    expect(c).toMatchObject({ key: 'layer1', kind: 'committed', labels: { team: 'x' } });
    expect(sn.has('a')).toBe(false);
    expect(sn.volume('layer1').readOnly).toBe(true);
    expect(() => sn.volume('layer1').writeSync(Buffer.alloc(4096), 0)).toThrow(/read-only/);

    const b = sn.prepare('b', 'layer1');
    expect(b.parent).toBe('layer1');
    const v = sn.view('v', 'layer1');
    expect(v.kind).toBe('view');
    expect(sn.volume('v').readOnly).toBe(true);
    await withFs(sn.volume('v'), async (fs) => {
      expect((await fs.readFile('/hello')).length).toBe(300000);
      await expect(fs.writeFile('/x', Buffer.from('x'))).rejects.toThrow(/read-only/);
    });
    await withFs(sn.volume('b'), (fs) => fs.writeFile('/mine', Buffer.alloc(200000, 2)));

    // usage: exclusive bytes of this snapshot only
    const ub = sn.usage('b');
    expect(ub.size).toBeGreaterThanOrEqual(200000);
    expect(sn.usage('v').size).toBe(0);
    expect(sn.usage('layer1').size).toBeLessThan(ub.mapped);

    // remove refuses a parent with children
    expect(() => sn.remove('layer1')).toThrow(/has children/);
    expect(sn.walk('parent==layer1').map((s) => s.key)).toEqual(['b', 'v']);
    expect(sn.walk('kind==committed').map((s) => s.key)).toEqual(['layer1']);
    expect(sn.walk('labels."team"==x').map((s) => s.key)).toEqual(['layer1']);
    expect(sn.walk((s) => s.kind !== 'committed').map((s) => s.key)).toEqual(['b', 'v']);
    expect(() => sn.walk('bogus')).toThrow(/bad filter/);

    const u = sn.update('b', { role: 'app' });
    expect(u.labels).toEqual({ role: 'app' });
    expect(sn.stat('b').labels).toEqual({ role: 'app' });

    // Everything is in the catalog, committed with the pool.
    pool.closeSync();
    verifyMetadataFile(join(dir, 'metadata'));
    const pool2 = ThinPool.openSync(dir);
    const sn2 = new Snapshotter(pool2, { size: SIZE });
    expect(sn2.walk().map((s) => [s.key, s.kind])).toEqual([
      ['b', 'active'],
      ['layer1', 'committed'],
      ['v', 'view'],
    ]);
    expect(sn2.stat('b').labels).toEqual({ role: 'app' });
    expect(sn2.volume('layer1').readOnly).toBe(true);
    for (const k of ['b', 'layer1', 'v']) expectFsck(sn2.volume(k), work);
    const used = pool2.status().dataBlocks.used;
    const exclusive = sn2.usage('b').size;
    expect(sn2.remove('b')).toBe(exclusive);
    expect((used - pool2.status().dataBlocks.used) * pool2.blockSize).toBe(exclusive);
    sn2.remove('v');
    sn2.remove('layer1');
    expect(sn2.walk()).toEqual([]);
    pool2.closeSync();
    verifyMetadataFile(join(dir, 'metadata'));
  });

  test('a failed transaction deletes the volumes it made and commits nothing', async () => {
    const pool = ThinPool.memory({ size: 256 * 1024 * 1024 });
    const sn = new Snapshotter(pool, { size: SIZE });
    sn.commit('base', sn.prepare('tmp').key);
    sn.prepare('pre', 'base');
    const names = pool.list().map((v) => v.name);
    const ext = JSON.stringify(pool.getExtension('snapshotter'));
    await expect(
      sn.transaction(async () => {
        sn.prepare('x1', 'base');
        sn.commit('x2', 'x1');
        sn.prepare('x3', 'x2');
        sn.commit('pre-done', 'pre');
        // nothing is in the catalog until the transaction ends
        expect(JSON.stringify(pool.getExtension('snapshotter'))).toBe(ext);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(pool.list().map((v) => v.name)).toEqual(names);
    expect(JSON.stringify(pool.getExtension('snapshotter'))).toBe(ext);
    expect(sn.walk().map((s) => [s.key, s.kind])).toEqual([
      ['base', 'committed'],
      ['pre', 'active'],
    ]);
    expect(sn.volume('pre').readOnly).toBe(false);
    pool.closeSync();
  });
});

describe.skipIf(!haveTools)('bad input to the images API', () => {
  test('a filesystem size below the mkfs.ext4 minimum is refused up front; names are checked and quoted', async () => {
    const { checkContainerName, checkImageName, quoteName } = await import('../../src/images/names.js');
    const { MIN_FS_SIZE } = await import('../../src/images/mkfs.js');
    const dir = join(work, 'bad');
    const pool = ThinPool.formatSync(dir, { size: 64 * 1024 * 1024 });
    try {
      expect(() => new Snapshotter(pool, { size: 4096 })).toThrow(/too small for an ext4 filesystem: use at least/);
      expect(() => new Snapshotter(pool, { size: MIN_FS_SIZE - 1 })).toThrow(/too small/);
      const sn = new Snapshotter(pool, { size: MIN_FS_SIZE });
      sn.prepare('tiny');
      await withFs(sn.volume('tiny'), (fs) => fs.writeFile('/f', Buffer.alloc(100000, 3)));
      expect(await withFs(sn.volume('tiny'), async (fs) => (await fs.readFile('/f')).length)).toBe(100000);
      expect(() => checkImageName('library/app:1.0')).not.toThrow();
      expect(() => checkContainerName('web-1.a_b')).not.toThrow();
      expect(() => checkContainerName('a/b')).toThrow(/bad container name a\/b: .*no "\/"/);
      // eslint-disable-next-line no-control-regex
      expect(() => checkImageName('del\x7f')).toThrow(
        expect.objectContaining({ code: 'EINVAL', message: expect.not.stringMatching(/[\x00-\x1f\x7f]/) }),
      );
      expect(quoteName('a\x7fb\n')).toBe('"a\\u007fb\\n"');
    } finally {
      pool.closeSync();
    }
  });

  test('a volume without ext4: ENOENT, no libext2fs internals in the message', async () => {
    const dir = join(work, 'nofs');
    const pool = ThinPool.formatSync(dir, { size: 64 * 1024 * 1024 });
    try {
      const v = pool.createThinSync('raw', { size: 4 * 1024 * 1024 });
      const err = await withFs(v, async () => 1).catch((e: unknown) => e as Error & { code: string });
      expect(err).toMatchObject({
        code: 'ENOENT',
        message: 'volume raw holds no ext4 filesystem (or a damaged one that cannot be mounted)',
      });
    } finally {
      pool.closeSync();
    }
  });
});
