import { afterEach, describe, expect, test } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import {
  GoldenStore,
  createVolumeReadStream,
  createVolumeWriteStream,
  exportVolumeSync,
  goldenSuite,
  randomAccess,
  volumeDigest,
  VolumeDisk,
  type Fork,
} from '../../src/testing/index.js';
import { verifyMetadataDevice, verifyMetadataFile } from '../support/pool-check.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'tp-testing-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  let x = (seed * 2654435761) >>> 0;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = (x >>> 24) | 1;
  }
  return b;
}

/** A 4 MiB + 1000 byte image: data at 0, 1 MiB + 3, and a tail; zeros elsewhere. */
function makeImage(dir: string): { path: string; bytes: Buffer } {
  const bytes = Buffer.alloc(4 * MiB + 1000);
  pattern(5000, 1).copy(bytes, 0);
  pattern(70 * KiB, 2).copy(bytes, MiB + 3);
  pattern(900, 3).copy(bytes, 4 * MiB + 50);
  const path = join(dir, 'image.raw');
  writeFileSync(path, bytes);
  return { path, bytes };
}

const kinds = [
  ['memory', () => GoldenStore.memory({ size: 256 * MiB })],
  ['temp', () => GoldenStore.tempSync({ size: 256 * MiB })],
] as const;

describe.each(kinds)('%s store', (kind, make) => {
  test('load skips zero blocks, forks are writable copies, the golden never changes', async () => {
    const { path, bytes } = makeImage(tmp());
    await using store = make();
    const g = await store.loadImage('base', path);
    expect(g.sizeBytes).toBe(Math.ceil(bytes.length / 512) * 512);
    expect(g.volume.readOnly).toBe(true);
    // blocks 0, 16 and 17 (the 70 KiB piece at 1 MiB + 3 crosses into the next 64 KiB block), 64 (the tail)
    expect(g.volume.map().map((e) => [e.offsetBytes / (64 * KiB), e.lengthBytes / (64 * KiB)])).toEqual([
      [0, 1],
      [16, 2],
      [64, 1],
    ]);
    const full = Buffer.alloc(bytes.length);
    g.volume.readSync(full, 0);
    expect(full.equals(bytes)).toBe(true);
    const digest = volumeDigest(g);

    const a = g.fork();
    const b = store.fork('base');
    expect(a.name).not.toBe(b.name);
    expect(a.name.startsWith('base.fork-')).toBe(true);
    a.writeSync(Buffer.from('hello'), 10);
    b.writeSync(Buffer.alloc(64 * KiB, 7), 2 * MiB);
    const got = Buffer.alloc(5);
    a.readSync(got, 10);
    expect(got.toString()).toBe('hello');
    b.readSync(got, 10);
    expect(got.equals(bytes.subarray(10, 15))).toBe(true);
    expect(() => g.volume.writeSync(Buffer.from('x'), 0)).toThrow(/read-only/);
    expect(volumeDigest(g)).toBe(digest);
    expect(store.liveForks).toBe(2);
    await a.dispose();
    await a.dispose();
    expect(a.disposed).toBe(true);
    expect(store.liveForks).toBe(1);
    expect(store.pool.has(a.name)).toBe(false);
    {
      await using c = g.fork({ name: 'named-fork' });
      expect(store.pool.has('named-fork')).toBe(true);
      expect(c.name).toBe('named-fork');
    }
    expect(store.pool.has('named-fork')).toBe(false);
    {
      using d = g.fork();
      d.writeSync(Buffer.from('sync'), 0);
    }
    expect(store.liveForks).toBe(1);
    // store disposal takes the remaining fork with it
    store.commitSync();
    if (kind === 'memory') verifyMetadataDevice(store.pool.storage.metadata);
    else verifyMetadataFile(join(store.dir!, 'pool', 'metadata'));
  });

  test('export writes a sparse, byte-identical file', async () => {
    const dir = tmp();
    const { path, bytes } = makeImage(dir);
    await using store = make();
    const g = await store.loadImage('base', path);
    await using f = g.fork();
    f.writeSync(Buffer.alloc(64 * KiB), 0); // a provisioned but all-zero block stays a hole in the export
    f.writeSync(pattern(100, 9), 3 * MiB);
    const out = join(dir, 'out.raw');
    await f.exportTo(out);
    const expected = Buffer.from(bytes);
    expected.fill(0, 0, 64 * KiB);
    pattern(100, 9).copy(expected, 3 * MiB);
    const back = readFileSync(out);
    expect(back.length).toBe(f.sizeBytes);
    expect(back.subarray(0, bytes.length).equals(expected)).toBe(true);
    // 3 data pieces of at most 128 KiB each are allocated, not 4 MiB
    expect(statSync(out).blocks * 512).toBeLessThanOrEqual(512 * KiB);
    g.exportToSync(join(dir, 'golden.raw'));
    expect(readFileSync(join(dir, 'golden.raw')).subarray(0, bytes.length).equals(bytes)).toBe(true);
  });

  test('dispose removes the temporary directory and closes the pool', async () => {
    const store = make();
    const f = store.fork(await store.createGolden('g', MiB, (v) => v.writeSync(Buffer.from('x'), 0)));
    const dir = store.dir;
    await store.dispose();
    expect(store.pool.isClosed).toBe(true);
    expect(f.disposed).toBe(true);
    if (dir !== undefined) expect(existsSync(dir)).toBe(false);
    expect(() => store.fork('g')).toThrow(/disposed/);
    await store.dispose();
  });
});

describe('adapters', () => {
  async function withFork(fn: (f: Fork, store: GoldenStore) => Promise<void>): Promise<void> {
    await using store = GoldenStore.memory({ size: 64 * MiB });
    const g = await store.createGolden('g', 4 * MiB, (v) => v.writeSync(pattern(300 * KiB, 5), 100));
    await using f = g.fork();
    await fn(f, store);
  }

  test('read and write streams at an offset', () =>
    withFork(async (f) => {
      const data = pattern(2 * MiB + 17, 6);
      await pipeline(
        Readable.from([data.subarray(0, 1000), data.subarray(1000)]),
        createVolumeWriteStream(f, { start: 12345, flush: true }),
      );
      const chunks: Buffer[] = [];
      for await (const c of createVolumeReadStream(f, { start: 12345, end: 12345 + data.length - 1, highWaterMark: 256 * KiB }))
        chunks.push(c as Buffer);
      expect(Buffer.concat(chunks).equals(data)).toBe(true);
      const all: Buffer[] = [];
      for await (const c of createVolumeReadStream(f)) all.push(c as Buffer);
      expect(Buffer.concat(all).length).toBe(4 * MiB);
      await expect(pipeline(Readable.from([Buffer.alloc(10)]), createVolumeWriteStream(f, { start: 4 * MiB - 5 }))).rejects.toThrow(
        /beyond the end/,
      );
    }));

  test('random-access-storage style object', () =>
    withFork(async (f) => {
      const ras = randomAccess(f);
      const call = <T>(fn: (cb: (err: Error | null, v?: T) => void) => void) =>
        new Promise<T>((res, rej) => fn((err, v) => (err ? rej(err) : res(v as T))));
      let sync = true;
      const p = call<void>((cb) => ras.write(5, Buffer.from('abcdef'), cb));
      sync = false;
      await p;
      expect(sync).toBe(false);
      expect(ras.opened).toBe(true);
      expect((await call<Buffer>((cb) => ras.read(5, 6, cb))).toString()).toBe('abcdef');
      expect(await call<{ size: number }>((cb) => ras.stat(cb))).toEqual({ size: 4 * MiB });
      await expect(call<Buffer>((cb) => ras.read(4 * MiB - 2, 4, cb))).rejects.toThrow(/Could not satisfy length/);
      await call<void>((cb) => ras.del(0, 128 * KiB, cb));
      expect((await call<Buffer>((cb) => ras.read(0, 128 * KiB, cb))).every((b) => b === 0)).toBe(true);
      await call<void>((cb) => ras.truncate(2 * MiB, cb));
      expect(await call<{ size: number }>((cb) => ras.stat(cb))).toEqual({ size: 2 * MiB });
      await call<void>((cb) => ras.unlink(cb));
      expect(f.disposed).toBe(true);
      expect(ras.closed).toBe(true);
      await expect(call<Buffer>((cb) => ras.read(0, 1, cb))).rejects.toThrow(/Closed/);
    }));

  test('file-disk Disk: read, write, discard unmaps, flush', () =>
    withFork(async (f, store) => {
      const goldenDigest = volumeDigest(f.golden);
      const disk = new VolumeDisk(f);
      expect(await disk.getCapacity()).toBe(4 * MiB);
      const buf = Buffer.alloc(300 * KiB);
      await disk.read(buf, 0, buf.length, 100);
      expect(buf.equals(pattern(300 * KiB, 5))).toBe(true);
      await disk.write(Buffer.from('xyz'), 0, 3, 2 * MiB);
      const three = Buffer.alloc(3);
      f.readSync(three, 2 * MiB);
      expect(three.toString()).toBe('xyz');
      const mappedBefore = f.volume.map().length;
      expect(mappedBefore).toBeGreaterThan(0);
      await disk.discard(0, 4 * MiB);
      expect(f.volume.map()).toEqual([]);
      await disk.flush();
      // a golden gives a read-only Disk: writes are dropped, as file-disk does
      const gdisk = new VolumeDisk(f.golden);
      expect(gdisk.readOnly).toBe(true);
      await gdisk.write(Buffer.from('no'), 0, 2, 0);
      await gdisk.discard(0, MiB);
      expect(volumeDigest(f.golden)).toBe(goldenDigest);
      const first = Buffer.alloc(2);
      f.golden.volume.readSync(first, 100);
      expect(first.equals(pattern(2, 5))).toBe(true);
      expect(store.liveForks).toBe(1);
    }));
});

describe('goldenSuite (runner-agnostic)', () => {
  test('setup once, fork per test, teardown', async () => {
    const dir = tmp();
    const { path, bytes } = makeImage(dir);
    let made = 0;
    const suite = goldenSuite({
      image: () => {
        made++;
        return path;
      },
      store: 'temp',
      size: 128 * MiB,
    });
    await Promise.all([suite.setup(), suite.setup()]);
    expect(made).toBe(1);
    const r = await suite.withFork(async (f) => {
      f.writeSync(Buffer.from('changed'), 0);
      return f.name;
    });
    expect(suite.store.pool.has(r)).toBe(false);
    await expect(
      suite.withFork(() => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(suite.store.liveForks).toBe(0);
    const left = suite.fork();
    const buf = Buffer.alloc(bytes.length);
    left.readSync(buf, 0);
    expect(buf.equals(bytes)).toBe(true);
    const storeDir = suite.store.dir!;
    await suite.teardown();
    expect(left.disposed).toBe(true);
    expect(existsSync(storeDir)).toBe(false);
    expect(() => suite.fork()).toThrow(/setup/);
  });

  test('verifyGolden: teardown fails when the golden changed', async () => {
    const { path } = makeImage(tmp());
    const suite = goldenSuite({ image: path, verifyGolden: true });
    await suite.setup();
    const name = suite.golden.name;
    suite.store.pool.updateSync(name, { readOnly: false }); // someone made it writable and wrote to it
    suite.golden.volume.writeSync(Buffer.from('oops'), 0);
    const store = suite.store;
    await expect(suite.teardown()).rejects.toThrow(/changed during the tests/);
    expect(store.disposed).toBe(true);
  });

  test('exportVolumeSync accepts a plain Volume', async () => {
    await using store = GoldenStore.memory({ size: 64 * MiB });
    const g = await store.createGolden('g', MiB, (v) => v.writeSync(Buffer.from('abc'), MiB - 3));
    const out = join(tmp(), 'g.raw');
    exportVolumeSync(g.volume, out);
    const b = readFileSync(out);
    expect(b.length).toBe(MiB);
    expect(b.subarray(MiB - 3).toString()).toBe('abc');
  });
});
