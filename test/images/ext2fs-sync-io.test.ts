// libext2fs's block I/O answered at once (src/images/ext2fs-sync-io.ts, the disk's readNow/writeNow in
// fs-proxy-disk.ts): the installed `ext2fs` package takes the change (an upgrade that loses it fails here);
// nearly every block I/O of a session is answered without Asyncify; the two ways build the same filesystem,
// checked by reading every file back and by e2fsck; and the disk's sync answers, against a disk of our own
// (a fake owning thread), keep the async path's rules: nothing changed when they decline, a read sees every
// write, a failed write-back fails them, a read-only disk drops writes.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { ThinPool } from '../../src/thin/pool.js';
import type { Volume } from '../../src/thin/volume.js';
import { type FsSession, withFs } from '../../src/images/fs-worker.js';
import { ProxyDisk } from '../../src/images/fs-proxy-disk.js';
import type { IoReply, IoReq } from '../../src/images/fs-protocol.js';
import { formatExt4 } from '../../src/images/mkfs.js';
import { needTool } from '../support/tools.js';

const MiB = 1024 * 1024;
const PAGE = 4096;
const haveMkfs = needTool('mkfs.ext4', 'e2fsprogs');
const haveFsck = needTool('e2fsck', 'e2fsprogs');

/** The same changes, in the same order, whatever the session: files across the disk's 16 MiB write-backs. */
async function changes(fs: FsSession, seed: Buffer): Promise<void> {
  const base = { mode: 0o644, uid: 0, gid: 0 };
  let at = 0;
  const take = (n: number): Buffer => {
    const out = Buffer.alloc(n);
    for (let o = 0; o < n; o += seed.length - at) {
      const k = Math.min(n - o, seed.length - at);
      seed.copy(out, o, at, at + k);
      at = (at + k) % seed.length;
    }
    return out;
  };
  for (let i = 0; i < 40; i++) await fs.writeFile(`/d${i % 4}/s${i}`, take(1 + ((i * 7919) % (200 * 1024))), base);
  for (let i = 0; i < 24; i++) await fs.writeFile(`/big/m${i}`, take(MiB));
  await fs.rmrf('/d1');
  await fs.writeFile('/big/m3', take(3 * MiB + 17)); // rewritten, longer
  await fs.put({ ...base, path: '/d0/link', type: 'symlink', linkname: '../big/m3' });
  // Read back in the same session, after the write-backs moved on.
  expect((await fs.readFile('/big/m0')).length).toBe(MiB);
}

/** Every path under / with its type, mode, size and the sha256 of a file's bytes. */
async function listing(v: Volume): Promise<string[]> {
  return withFs(
    v,
    async (fs) => {
      const out: string[] = [];
      for (const st of await fs.tree('/'))
        out.push(`${st.path} ${st.type} ${st.mode.toString(8)} ${st.size} ${st.type === 'file' ? await fs.hashFile(st.path) : ''}`);
      return out.sort();
    },
    { readOnly: true },
  );
}

function fsck(v: Volume, dir: string): { status: number | null; out: string } {
  const img = join(dir, `${v.label.replace(/\W/g, '_')}.img`);
  const buf = Buffer.alloc(v.sizeBytes);
  v.readSync(buf, 0);
  writeFileSync(img, buf);
  const r = spawnSync('e2fsck', ['-fn', img], { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe.runIf(haveMkfs)('block I/O answered at once', () => {
  test('the installed ext2fs takes the change; nearly every block I/O is answered at once, and none when it is off', async () => {
    const pool = ThinPool.memory({ size: 128 * MiB });
    try {
      const seed = randomBytes(MiB + 4093);
      const counts: Record<string, { syncIo: boolean; now: number; waited: number }> = {};
      for (const syncIo of [true, false]) {
        const v = pool.createThinSync(`fs-${syncIo}`, { size: 64 * MiB });
        formatExt4(v);
        let session: FsSession | null = null;
        await withFs(
          v,
          async (fs) => {
            session = fs;
            await changes(fs, seed);
          },
          { syncIo },
        );
        const s = session! as FsSession;
        counts[String(syncIo)] = { syncIo: s.syncIo, ...s.blockIo! };
      }
      expect(counts.true.syncIo, 'the text of node_modules/ext2fs/lib/libext2fs.js no longer matches: see ext2fs-sync-io.ts').toBe(true);
      expect(counts.false.syncIo).toBe(false);
      expect(counts.false.now).toBe(0);
      const total = counts.false.waited;
      expect(total).toBeGreaterThan(10_000);
      // The same calls either way; answered at once but for window fetches and the full arena's write-backs.
      expect(counts.true.now + counts.true.waited).toBe(total);
      expect(counts.true.waited).toBeLessThan(total / 20);
      console.log(`block I/O of one session: ${total} calls; answered at once ${counts.true.now}, the async way ${counts.true.waited}`);
    } finally {
      pool.closeSync();
    }
  }, 120_000);

  test.runIf(haveFsck)(
    'both ways build the same filesystem: every file read back equal, e2fsck clean',
    async () => {
      const pool = ThinPool.memory({ size: 160 * MiB });
      const dir = mkdtempSync(join(tmpdir(), 'tp-syncio-'));
      try {
        const seed = randomBytes(MiB + 4093);
        const lists: string[][] = [];
        for (const syncIo of [true, false]) {
          const v = pool.createThinSync(`fs-${syncIo}`, { size: 64 * MiB });
          formatExt4(v);
          await withFs(v, (fs) => changes(fs, seed), { syncIo });
          lists.push(await listing(v));
          const r = fsck(v, dir);
          expect(r.status, r.out).toBe(0);
        }
        expect(lists[0].length).toBeGreaterThan(50);
        expect(lists[0]).toEqual(lists[1]);
      } finally {
        pool.closeSync();
        rmSync(dir, { recursive: true, force: true });
      }
    },
    120_000,
  );
});

/** A disk over `backing`, served by a fake owning thread: reads fill windows, writes copy runs back. */
function fakeDisk(backing: Uint8Array, opts: { readOnly?: boolean; answerNow?: boolean; failWrites?: boolean } = {}) {
  let shared: Uint8Array | null = null;
  const log: string[] = [];
  const io = async (m: Omit<IoReq, 't' | 'id'>): Promise<IoReply> => {
    log.push(m.op);
    if (m.op === 'attach') shared = new Uint8Array(m.shared!);
    else if (m.op === 'read') shared!.set(backing.subarray(m.offset!, m.offset! + m.length!), m.at!);
    else if (m.op === 'write') {
      if (opts.failWrites) throw Object.assign(new Error('no space'), { code: 'ENOSPC_DATA' });
      const r = m.runs!;
      for (let i = 0; i < r.length; i += 3) backing.set(shared!.subarray(r[i + 1], r[i + 1] + r[i + 2]), r[i]);
    }
    return { t: 'io-reply', id: 0, n: m.length };
  };
  const disk = new ProxyDisk(opts.readOnly === true, backing.length, io, opts.answerNow !== false);
  return { disk, log };
}

describe('the disk: readNow and writeNow', () => {
  const page = (b: number): Uint8Array => new Uint8Array(PAGE).fill(b);

  test('a read at hand only after its window is fetched; writes laid over it; declined calls change nothing', async () => {
    const backing = new Uint8Array(4 * MiB).fill(9);
    const { disk, log } = fakeDisk(backing);
    const out = new Uint8Array(PAGE);
    expect(disk.readNow(out, 0), 'no window yet').toBeUndefined();
    expect(out.every((x) => x === 0)).toBe(true);
    expect(disk.writeNow(page(1), 100), 'not page-aligned').toBeUndefined();
    expect(disk.writeNow(new Uint8Array(100), 0), 'not whole pages').toBeUndefined();
    expect(disk.writeNow(new Uint8Array([...page(2), ...page(3)]), PAGE)).toBe(0);
    expect(log).toEqual([]); // nothing asked of the owning thread
    await disk.read(out, 0, PAGE, 0); // fetches window 0
    expect(out.every((x) => x === 9)).toBe(true);
    const two = new Uint8Array(2 * PAGE);
    expect(disk.readNow(two, PAGE)).toBe(0);
    expect(two.subarray(0, PAGE).every((x) => x === 2) && two.subarray(PAGE).every((x) => x === 3)).toBe(true);
    // A write into a cached window is seen by the next read at once; the backing is not written yet.
    expect(disk.writeNow(page(4), 0)).toBe(0);
    expect(disk.readNow(out, 0)).toBe(0);
    expect(out.every((x) => x === 4)).toBe(true);
    expect(backing[0]).toBe(9);
    // A read across a window not fetched declines as a whole, and fills nothing.
    const across = new Uint8Array(2 * PAGE);
    expect(disk.readNow(across, 256 * 1024 - PAGE)).toBeUndefined();
    expect(across.every((x) => x === 0)).toBe(true);
    await disk.writeBack();
    expect(backing.subarray(0, 3 * PAGE)).toEqual(new Uint8Array([...page(4), ...page(2), ...page(3)]));
    expect(disk.counts).toEqual({ now: 4, waited: 1 });
  });

  test('a full arena declines a new page (a page already dirty is still taken); the async write posts it', async () => {
    const backing = new Uint8Array(20 * MiB);
    const { disk, log } = fakeDisk(backing);
    const pages = (16 * MiB) / PAGE;
    for (let p = 0; p < pages; p++) expect(disk.writeNow(page(p & 0xff), p * PAGE)).toBe(0);
    expect(disk.writeNow(page(7), pages * PAGE)).toBeUndefined();
    expect(disk.writeNow(page(8), 0)).toBe(0);
    expect(log).toEqual([]);
    await disk.write(page(7), 0, PAGE, pages * PAGE);
    expect(log).toEqual(['attach', 'write']);
    await disk.writeBack();
    expect(backing[0]).toBe(8);
    expect(backing[PAGE + 1]).toBe(1);
    expect(backing[pages * PAGE]).toBe(7);
  });

  test('after a failed write-back both decline, and the async path reports the error', async () => {
    const { disk } = fakeDisk(new Uint8Array(20 * MiB), { failWrites: true });
    for (let p = 0; p <= (16 * MiB) / PAGE; p++) await disk.write(page(1), 0, PAGE, p * PAGE); // posts the first arena
    await expect(disk.writeBack()).rejects.toMatchObject({ code: 'ENOSPC_DATA' });
    expect(disk.writeNow(page(1), 0)).toBeUndefined();
    expect(disk.readNow(new Uint8Array(PAGE), 0)).toBeUndefined();
    await expect(disk.write(page(1), 0, PAGE, 0)).rejects.toMatchObject({ code: 'ENOSPC_DATA' });
  });

  test('a read-only disk drops writes at once; a disk told not to answer declines everything', async () => {
    const backing = new Uint8Array(MiB).fill(5);
    const ro = fakeDisk(backing, { readOnly: true }).disk;
    expect(ro.writeNow(page(1), 0)).toBe(0);
    const out = new Uint8Array(PAGE);
    await ro.read(out, 0, PAGE, 0);
    expect(out.every((x) => x === 5)).toBe(true);
    const off = fakeDisk(backing, { answerNow: false }).disk;
    await off.read(out, 0, PAGE, 0);
    expect(off.readNow(out, 0)).toBeUndefined();
    expect(off.writeNow(page(1), 0)).toBeUndefined();
  });
});
