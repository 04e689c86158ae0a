// FileDevice's flush-behind (file-device.ts): every FLUSH_BEHIND_STARTS write-back starts of a bulk writer, an
// fdatasync runs on the thread pool, one at a time; an error it meets is thrown by every later flush (the kernel
// reports a write-back error once per open file, so the commit's own fdatasync would not see it); a close while
// one runs closes the descriptor when it ends. node:fs's fdatasync is wrapped here so the test decides when each
// one ends and how; the file itself is real.
import * as os from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, test, vi } from 'vitest';

/** The fdatasync calls made through the wrapper, each ended by the test: real (null) or with an error. */
const pending: Array<{ fd: number; end: (error: NodeJS.ErrnoException | null) => Promise<void> }> = [];

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  const fdatasync = (fd: number, cb: (e: NodeJS.ErrnoException | null) => void): void => {
    const end = (error: NodeJS.ErrnoException | null): Promise<void> =>
      new Promise((done) => {
        if (error !== null) {
          cb(error);
          done();
        } else
          real.fdatasync(fd, (e) => {
            cb(e);
            done();
          });
      });
    pending.push({ fd, end });
  };
  return { ...real, default: { ...real, fdatasync }, fdatasync };
});

const fs = await import('node:fs');
const { FileDevice, FLUSH_BEHIND_STARTS } = await import('../../src/io/file-device.js');
const { nativeHelpers } = await import('../../src/io/native.js');

const tmp = fs.mkdtempSync(join(os.tmpdir(), 'tp-flush-behind-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
beforeEach(() => {
  pending.length = 0;
});

const helper = nativeHelpers()?.startWriteBack !== undefined;
const KiB = 1024;
const eio = (): NodeJS.ErrnoException => Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO', errno: -5 });
/** End the oldest pending fdatasync (really, or with `error`) once its callback has run. */
function endOne(error: NodeJS.ErrnoException | null): Promise<void> {
  const p = pending.shift();
  if (p === undefined) throw new Error('no fdatasync pending');
  return p.end(error);
}
/** Descriptors of this process open on path. */
function openOn(path: string): number {
  return fs.readdirSync('/proc/self/fd').filter((n) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${n}`) === path;
    } catch {
      return false;
    }
  }).length;
}

describe('FileDevice flush-behind', () => {
  test(`one fdatasync behind every ${FLUSH_BEHIND_STARTS} write-back starts, never two at once`, async () => {
    const dev = FileDevice.create(join(tmp, 'a'), 4 * 1024 * KiB);
    try {
      dev.writeBehind(64 * KiB);
      const piece = Buffer.alloc(64 * KiB, 7);
      for (let i = 0; i < FLUSH_BEHIND_STARTS - 1; i++) dev.write(piece, i * piece.length);
      expect(dev.flushesBehindStarted).toBe(0);
      dev.write(piece, (FLUSH_BEHIND_STARTS - 1) * piece.length);
      expect(dev.flushesBehindStarted).toBe(helper ? 1 : 0);
      expect(pending.length).toBe(helper ? 1 : 0);
      // As many starts again while the first runs: none more.
      for (let i = 0; i < FLUSH_BEHIND_STARTS; i++) dev.write(piece, (FLUSH_BEHIND_STARTS + i) * piece.length);
      expect(dev.writeBacksStarted).toBe(helper ? 2 * FLUSH_BEHIND_STARTS : 0);
      expect(dev.flushesBehindStarted).toBe(helper ? 1 : 0);
      if (helper) await endOne(null);
      for (let i = 0; i < FLUSH_BEHIND_STARTS; i++) dev.write(piece, i * piece.length);
      expect(dev.flushesBehindStarted).toBe(helper ? 2 : 0);
      if (helper) await endOne(null);
      dev.flush(); // no error met: the flush passes
      const back = Buffer.alloc(piece.length);
      dev.read(back, 0);
      expect(back.equals(piece)).toBe(true);
    } finally {
      dev.close();
    }
  });

  test('a write-back error a flush-behind met is thrown by every later flush', async () => {
    const path = join(tmp, 'b');
    const dev = FileDevice.create(path, 1024 * KiB);
    try {
      dev.writeBehind(16 * KiB);
      for (let i = 0; i < FLUSH_BEHIND_STARTS; i++) dev.write(Buffer.alloc(16 * KiB, 1), i * 16 * KiB);
      if (!helper) {
        dev.flush();
        return;
      }
      await endOne(eio());
      for (let i = 0; i < 2; i++) {
        let thrown: unknown;
        try {
          dev.flush();
        } catch (e) {
          thrown = e;
        }
        expect(thrown).toMatchObject({ code: 'EIO' });
        expect((thrown as Error).message).toContain('flush-behind');
        expect((thrown as Error).message).toContain(path);
      }
    } finally {
      dev.close();
    }
  });

  test('a close while a flush-behind runs closes the descriptor when it ends', async () => {
    const path = join(tmp, 'c');
    const dev = FileDevice.create(path, 1024 * KiB);
    dev.writeBehind(16 * KiB);
    for (let i = 0; i < FLUSH_BEHIND_STARTS; i++) dev.write(Buffer.alloc(16 * KiB, 2), i * 16 * KiB);
    dev.close();
    expect(() => dev.flush()).toThrow(expect.objectContaining({ code: 'ECLOSED' }));
    if (!helper) {
      expect(openOn(path)).toBe(0);
      return;
    }
    expect(openOn(path)).toBe(1); // still open: the fdatasync behind uses its number
    await endOne(null);
    expect(openOn(path)).toBe(0);
    const back = Buffer.alloc(16 * KiB);
    const again = FileDevice.open(path);
    try {
      again.read(back, 0);
    } finally {
      again.close();
    }
    expect(back.every((b) => b === 2)).toBe(true);
  });
});
