// The ext2fs worker is a real module: it runs from fs-thread.ts here (through the TypeScript loader) and from
// the compiled fs-thread.js in dist/ and in the package; an error it raises carries its stack, naming the
// worker's own source file and line (not an eval'd string). The built CLI is covered by test/images/cli.test.ts.
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { ThinPool } from '../../src/thin/pool.js';
import type { Volume } from '../../src/thin/volume.js';
import { FsError, FsSession, withFs } from '../../src/images/fs-worker.js';
import { formatExt4 } from '../../src/images/mkfs.js';
import { needTool } from '../support/tools.js';

const haveMkfs = needTool('mkfs.ext4', 'e2fsprogs');

/** A fresh ext4 filesystem of volMiB MiB in a memory pool, handed to fn; the pool is closed afterwards. */
async function onExt4<T>(volMiB: number, fn: (v: Volume) => Promise<T>): Promise<T> {
  const pool = ThinPool.memory({ size: (volMiB + 64) * 1024 * 1024 });
  try {
    const v = pool.createThinSync('fs', { size: volMiB * 1024 * 1024 });
    formatExt4(v);
    return await fn(v);
  } finally {
    pool.closeSync();
  }
}

describe.runIf(haveMkfs)('the ext2fs worker thread', () => {
  test("round trip through the worker; its errors are FsError with the worker's file and line", async () => {
    await onExt4(16, async (v) => {
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
    });
  });

  test('a batch runs its calls in order; after a failed one nothing later is applied and settle throws that error', async () => {
    await onExt4(16, async (v) => {
      const base = { mode: 0o644, uid: 0, gid: 0 };
      const inos: number[] = [];
      const settled = await withFs(v, async (fs) => {
        const b = fs.batch();
        b.put({ ...base, path: '/d/a', type: 'file', data: Buffer.from('first') }, (r) => inos.push(r.ino));
        b.put({ ...base, path: '/l', type: 'link', linkname: '/missing' }, (r) => inos.push(r.ino));
        b.put({ ...base, path: '/d/b', type: 'file', data: Buffer.from('after') }, (r) => inos.push(r.ino));
        b.rmrf('/d/a');
        const err = await b.settle().then(
          () => null,
          (e: unknown) => e,
        );
        await expect(b.room()).rejects.toBe(err);
        return { err, a: await fs.lstat('/d/a'), b: await fs.lstat('/d/b'), text: (await fs.readFile('/d/a')).toString() };
      });
      expect(settled.err).toBeInstanceOf(FsError);
      expect(settled.err).toMatchObject({ code: 'ENOENT', message: 'hard link /l: its target /missing does not exist' });
      expect(settled.a).toMatchObject({ type: 'file', size: 5 });
      expect(settled.text).toBe('first');
      expect(settled.b).toBeNull();
      expect(inos).toEqual([settled.a!.ino]);
      // After the batch, unchained calls run again; a read-only session's batch refuses before sending.
      await withFs(v, async (fs) => {
        await fs.writeFile('/c', Buffer.from('c'));
        expect(await fs.lstat('/c')).toMatchObject({ size: 1 });
      });
      await withFs(
        v,
        async (fs) => {
          expect(() => fs.batch().put({ ...base, path: '/x', type: 'dir' })).toThrow(/read-only.*cannot write \/x/);
        },
        { readOnly: true },
      );
    });
  });

  test("a batch's shared data goes round its ring: every file keeps its own bytes, nothing is overwritten in flight", async () => {
    await onExt4(96, async (v) => {
      const base = { mode: 0o600, uid: 0, gid: 0 };
      const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
      const want = new Map<string, string>();
      await withFs(v, async (fs) => {
        const b = fs.batch();
        // 24 files of 1 MiB (the ring's end falls between two of them), then 24 of 600 KiB: 38 MiB, more than
        // the ring holds, sent without waiting for any answer.
        for (let i = 0; i < 48; i++) {
          const body = randomBytes(i < 24 ? 1024 * 1024 : 600 * 1024);
          const piece = await b.reserve(body.length);
          piece.set(body);
          b.putShared({ ...base, path: `/f/${i}`, type: 'file' }, piece);
          want.set(`/f/${i}`, sha(body));
        }
        // A file written through its handle in 1 MiB pieces of the ring.
        const big = randomBytes(5 * 1024 * 1024 + 123);
        const fd = (await b.putNow({ ...base, path: '/big', type: 'file' })).fd!;
        for (let pos = 0; pos < big.length; pos += 1024 * 1024) {
          const part = big.subarray(pos, Math.min(big.length, pos + 1024 * 1024));
          const piece = await b.reserve(part.length);
          piece.set(part);
          b.writeShared(fd, piece, pos);
        }
        b.close(fd);
        want.set('/big', sha(big));
        // Only the view the last reserve() gave can be sent.
        const piece = await b.reserve(10);
        expect(() => b.putShared({ ...base, path: '/x', type: 'file' }, piece.subarray(1))).toThrow(RangeError);
        await b.settle();
      });
      await withFs(
        v,
        async (fs) => {
          for (const [path, hash] of want) expect([path, sha(await fs.readFile(path))]).toEqual([path, hash]);
          expect(await fs.lstat('/big')).toMatchObject({ mode: 0o600, size: 5 * 1024 * 1024 + 123 });
        },
        { readOnly: true },
      );
    });
  });

  test('the disk reads back what it wrote after its write-backs and its window cache have moved on', async () => {
    // 48 MiB of fresh files in one session: blocks libext2fs allocates are unprovisioned when it first reads
    // them (made as zeroes in the worker), then written back (every 16 MiB) and dropped from the 32 MiB of
    // cached windows; reading them again in the same session must fetch them, not make them as zeroes.
    await onExt4(96, async (v) => {
      const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
      await withFs(v, async (fs) => {
        const want: string[] = [];
        for (let i = 0; i < 48; i++) {
          const body = randomBytes(1024 * 1024);
          await fs.writeFile(`/f${i}`, body);
          want.push(sha(body));
        }
        const got: string[] = [];
        for (let i = 0; i < 48; i++) got.push(sha(await fs.readFile(`/f${i}`)));
        expect(got).toEqual(want);
      });
    });
  });

  test("entries made again in a directory made by the same session replace the first; the inode numbers put returns are the entries' own", async () => {
    await onExt4(16, async (v) => {
      const base = { mode: 0o644, uid: 0, gid: 0 };
      const out = await withFs(v, async (fs) => {
        const inos = new Map<string, number>();
        const put = async (e: Parameters<typeof fs.put>[0]): Promise<void> => {
          inos.set(e.path, (await fs.put(e)).ino);
        };
        // /n is made by this session (as the parent of /n/x), so the worker knows what is in it.
        await put({ ...base, path: '/n/x', type: 'file', data: Buffer.from('one') });
        await put({ ...base, path: '/n/x', type: 'file', data: Buffer.from('two'), mode: 0o600 });
        await put({ ...base, path: '/n/y', type: 'file', data: Buffer.from('file first') });
        await put({ ...base, path: '/n/y', type: 'dir', mode: 0o750, uid: 3, gid: 4 });
        await put({ ...base, path: '/n/y/inner', type: 'file', data: Buffer.from('in') });
        await put({ ...base, path: '/n/s', type: 'symlink', linkname: 'x', uid: 5, gid: 6 });
        await put({ ...base, path: '/n/s2', type: 'dir' });
        await put({ ...base, path: '/n/h', type: 'link', linkname: '/n/x' });
        await put({ ...base, path: '/n/d', type: 'dir', mode: 0o700 });
        await put({ ...base, path: '/n/d', type: 'dir', mode: 0o755, uid: 9, gid: 9 }); // again: kept, changed
        await fs.rmrf('/n/x'); // a removal: what the worker knew is forgotten, and looked up again
        await put({ ...base, path: '/n/x', type: 'symlink', linkname: 'h' });
        await put({ ...base, path: '/n/s2', type: 'symlink', linkname: 'y' });
        await put({ ...base, path: '/n/s2', type: 'file', data: Buffer.from('s2') }); // made before the removal, then again
        const names = ['/n/x', '/n/y', '/n/y/inner', '/n/s', '/n/s2', '/n/h', '/n/d'];
        const stats = Object.fromEntries(await Promise.all(names.map(async (n) => [n, await fs.lstat(n)] as const)));
        return { inos, stats, list: await fs.readdir('/n'), h: (await fs.readFile('/n/h')).toString() };
      });
      expect(out.list).toEqual(['d', 'h', 's', 's2', 'x', 'y']);
      expect(out.h).toBe('two');
      expect(out.stats['/n/h']).toMatchObject({ type: 'file', mode: 0o600, nlink: 1, size: 3 });
      expect(out.stats['/n/x']).toMatchObject({ type: 'symlink', target: 'h' });
      expect(out.stats['/n/y']).toMatchObject({ type: 'dir', mode: 0o750, uid: 3, gid: 4 });
      expect(out.stats['/n/s']).toMatchObject({ type: 'symlink', target: 'x', uid: 5, gid: 6 });
      expect(out.stats['/n/d']).toMatchObject({ type: 'dir', mode: 0o755, uid: 9, gid: 9 });
      expect(out.stats['/n/s2']).toMatchObject({ type: 'file', size: 2 });
      for (const n of ['/n/x', '/n/y', '/n/y/inner', '/n/s', '/n/s2', '/n/h', '/n/d']) expect(out.inos.get(n), n).toBe(out.stats[n]!.ino);
    });
  });

  test('a prestarted worker is the one the next session uses', async () => {
    await onExt4(16, async (v) => {
      // Use up the idle workers earlier tests left, so that prestart has to start one.
      const sessions = [];
      while (FsSession.workerCounts().idle > 0) sessions.push(await FsSession.open(v, { readOnly: true }));
      const before = FsSession.workerCounts().spawned;
      FsSession.prestart();
      FsSession.prestart(); // one is idle now: nothing more is started
      expect(FsSession.workerCounts()).toEqual({ spawned: before + 1, idle: 1 });
      const s = await FsSession.open(v, { readOnly: true });
      expect(FsSession.workerCounts()).toEqual({ spawned: before + 1, idle: 0 });
      expect(await s.lstat('/')).toMatchObject({ type: 'dir' });
      await s.close();
      for (const o of sessions) await o.close();
    });
  });
});
