// The ext2fs worker is a real module: it runs from fs-thread.ts here (through the TypeScript loader) and from
// the compiled fs-thread.js in dist/ and in the package; an error it raises carries its stack, naming the
// worker's own source file and line (not an eval'd string). The built CLI is covered by test/images/cli.test.ts.
import { describe, expect, test } from 'vitest';
import { ThinPool } from '../../src/thin/pool.js';
import { FsError, withFs } from '../../src/images/fs-worker.js';
import { formatExt4 } from '../../src/images/mkfs.js';
import { needTool } from '../support/tools.js';

const haveMkfs = needTool('mkfs.ext4', 'e2fsprogs');

describe.runIf(haveMkfs)('the ext2fs worker thread', () => {
  test("round trip through the worker; its errors are FsError with the worker's file and line", async () => {
    const pool = ThinPool.memory({ size: 64 * 1024 * 1024 });
    try {
      const v = pool.createThinSync('fs', { size: 16 * 1024 * 1024 });
      formatExt4(v);
      const err = await withFs(v, async (fs) => {
        await fs.writeFile('/a/b.txt', Buffer.from('hello'), { mode: 0o640, uid: 7, gid: 8 });
        expect((await fs.readFile('/a/b.txt')).toString()).toBe('hello');
        expect(await fs.lstat('/a/b.txt')).toMatchObject({ type: 'file', mode: 0o640, uid: 7, gid: 8, size: 5 });
        return fs.put({ path: '/l', type: 'link', linkname: '/missing', mode: 0o644, uid: 0, gid: 0 }).then(
          () => null,
          (e: unknown) => e,
        );
      });
      expect(err).toBeInstanceOf(FsError);
      expect(err).toMatchObject({ code: 'ENOENT', message: 'hard link /l: its target /missing does not exist' });
      expect((err as FsError).workerStack).toMatch(/fs-thread\.ts:\d+:\d+/);
    } finally {
      pool.closeSync();
    }
  });
});
