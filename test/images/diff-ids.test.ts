// The diff ids of layer tarballs given without an image config (src/images/source.ts, images.ts): the sha256 of
// each layer's uncompressed bytes, read before applying only where a layer already in the pool could be reused
// (a committed layer on the same parent), else computed while applying. Either way the same ids and chain ids,
// the same reuse, and the same refusal of a layer that is empty once uncompressed, with nothing left behind.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, describe, expect, test } from 'vitest';
import { ImageStore } from '../../src/images/images.js';
import { chainIds, readSource } from '../../src/images/source.js';
import { ThinPool } from '../../src/thin/pool.js';
import { needTool } from '../support/tools.js';
import { makeTar, threeLayers } from './support.js';

const haveMkfs = needTool('mkfs.ext4', 'e2fsprogs');
const work = mkdtempSync(join(tmpdir(), 'tp-diff-ids-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe.runIf(haveMkfs)('diff ids of layer tarballs', () => {
  test('read only when needed; the same ids and reuse either way; an empty layer refused either way', async () => {
    const [l0, l1] = threeLayers(100 * 1024);
    const plain0 = await makeTar(l0);
    const plain1 = await makeTar(l1);
    const f0 = join(work, 'l0.tar.gz');
    const f1 = join(work, 'l1.tar');
    writeFileSync(f0, gzipSync(plain0));
    writeFileSync(f1, plain1);
    // The source names no diff ids: each layer reads its own when asked.
    const src = await readSource([f0, f1]);
    expect(src.layers.map((l) => l.diffId)).toEqual([undefined, undefined]);
    expect(await src.layers[0].digest!()).toBe(sha(gunzipSync(readFileSync(f0))));
    expect(src.configFor!([sha(plain0), sha(plain1)]).config.rootfs.diff_ids).toEqual([sha(plain0), sha(plain1)]);

    const pool = ThinPool.memory({ size: 512 * 1024 * 1024 });
    try {
      const store = new ImageStore(pool, { size: 32 * 1024 * 1024 });
      // A fresh pool: nothing to reuse, the ids come from the apply.
      const a = await store.import('a', [f0, f1]);
      expect([a.applied, a.reused]).toEqual([2, 0]);
      const im = store.image('a');
      expect(im.diffIds).toEqual([sha(plain0), sha(plain1)]);
      expect(im.chainIds).toEqual(chainIds(im.diffIds));
      expect(im.id).toMatch(/^sha256:[0-9a-f]{64}$/);
      // Layers on the same parent now exist: the ids are read first, and both layers are reused.
      const b = await store.import('b', [f0, f1]);
      expect([b.applied, b.reused]).toEqual([0, 2]);
      expect(store.image('b').chainIds).toEqual(im.chainIds);

      // A gzip of nothing, with and without a layer it could be reused as: refused the same way, nothing left.
      const empty = join(work, 'empty.tar.gz');
      writeFileSync(empty, gzipSync(Buffer.alloc(0)));
      const before = { vols: pool.list().length, used: pool.status().dataBlocks.used };
      await expect(store.import('c', [empty])).rejects.toThrow(/layer 1 \(empty\.tar\.gz\) is empty once uncompressed: not a tar archive/);
      const fresh = ThinPool.memory({ size: 512 * 1024 * 1024 });
      try {
        const other = new ImageStore(fresh, { size: 32 * 1024 * 1024 });
        await expect(other.import('c', [empty])).rejects.toThrow(
          /layer 1 \(empty\.tar\.gz\) is empty once uncompressed: not a tar archive/,
        );
        expect(other.images()).toEqual([]);
      } finally {
        fresh.closeSync();
      }
      expect({ vols: pool.list().length, used: pool.status().dataBlocks.used }).toEqual(before);
    } finally {
      pool.closeSync();
    }
  }, 120_000);
});
