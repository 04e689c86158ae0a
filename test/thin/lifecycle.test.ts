// The pool's lifecycle (src/thin/lifecycle.ts) through ThinPool and the module's exports, on memory devices and
// small file pools in a temporary directory: the geometry rules (block size, metadata size by the dm-thin rule),
// which directories a pool is formatted into or opened from, the lock released whenever formatting or opening
// fails, the unclean-stop marker a read-only opener leaves, the data device checked against the superblock,
// the catalog read back (for a reader: the one tied to the superblock on disk, staged or published), entries for missing devices dropped, and close.
import { existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import type { BlockDevice } from '../../src/io/block-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { ReadAheadDevice } from '../../src/io/read-ahead-device.js';
import { MAX_METADATA_BLOCKS } from '../../src/pd/space-map-metadata.js';
import { type CatalogData, MemoryCatalogStore } from '../../src/thin/catalog.js';
import { defaultMetadataSize, isPoolDir, UNCLEAN_MARKER } from '../../src/thin/lifecycle.js';
import { ThinPool } from '../../src/thin/pool.js';
import { fill, keepOpen } from '../support/model.js';
import { thrownError } from '../support/thrown.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const BS = 64 * KiB;
const dirs: string[] = [];

function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'thinpool-lifecycle-'));
  dirs.push(d);
  return d;
}

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A lock file left by a process that is not running (pid far above any pid_max). */
function staleLock(dir: string): void {
  writeFileSync(join(dir, 'lock'), '2000000000 1\n');
}

test('metadata size by the dm-thin rule: 48 bytes per data block, clamped to [2 MiB, 16 GiB], in whole 4 KiB blocks', () => {
  expect(defaultMetadataSize(64 * BS, BS)).toBe(2 * MiB);
  expect(defaultMetadataSize(100_000 * BS, BS)).toBe(1172 * 4096); // 4,800,000 bytes rounded up
  expect(defaultMetadataSize(100_000 * 2 * BS, 2 * BS)).toBe(1172 * 4096);
  expect(defaultMetadataSize(2 ** 50, BS)).toBe(MAX_METADATA_BLOCKS * 4096);
  expect(defaultMetadataSize(2 ** 50, BS)).toBe(defaultMetadataSize(2 ** 52, BS));
  expect(ThinPool.memory({ size: 64 * BS }).status().metadataBlocks.total).toBe(512);
  const mid = ThinPool.memory({ size: 50_000 * BS });
  expect(mid.status()).toMatchObject({ blockSize: BS, metadataBlocks: { total: 586 }, dataBlocks: { total: 50_000 } });
  mid.closeSync();
});

test('block sizes: multiples of 64 KiB from 64 KiB to 1 GiB, else EINVAL before anything is made', () => {
  for (const bs of [32 * KiB, 96 * KiB, 1024 * MiB + 64 * KiB, 64 * KiB + 0.5, Number.NaN, 0]) {
    expect(
      thrownError(() => ThinPool.memory({ size: 64 * MiB, blockSize: bs })),
      String(bs),
    ).toEqual({
      code: 'EINVAL',
      message: `block size ${bs} must be a multiple of 64 KiB between 64 KiB and 1 GiB`,
    });
    const storage = { metadata: new MemoryDevice(MiB), data: new MemoryDevice(0), catalog: new MemoryCatalogStore() };
    expect(thrownError(() => ThinPool.formatStorage(storage, { size: 64 * MiB, blockSize: bs })).code).toBe('EINVAL');
    const dir = join(tmp(), 'p');
    expect(thrownError(() => ThinPool.formatSync(dir, { size: 64 * MiB, blockSize: bs })).code).toBe('EINVAL');
    expect(existsSync(dir)).toBe(false);
  }
  const big = ThinPool.memory({ size: 1024 * MiB, blockSize: 1024 * MiB });
  expect(big.status().dataBlocks.total).toBe(1);
  big.closeSync();
  const dflt = ThinPool.memory({ size: 10 * BS + 100 });
  expect([dflt.blockSize, dflt.status().dataBlocks.total]).toEqual([BS, 10]);
  dflt.closeSync();
});

test('a file pool: its files, sizes rounded to whole blocks, the size and metadata limits, and a directory that holds one', () => {
  const dir = join(tmp(), 'p');
  expect(thrownError(() => ThinPool.formatSync(dir, { size: BS - 1 }))).toEqual({
    code: 'EINVAL',
    message: `pool size ${BS - 1} is smaller than one block (65536 bytes)`,
  });
  expect(thrownError(() => ThinPool.formatSync(dir, { size: 4 * BS, metadataSize: 64 * KiB - 4096 }))).toEqual({
    code: 'EINVAL',
    message: `metadata size ${64 * KiB - 4096} is below 64 KiB`,
  });
  expect(existsSync(join(dir, 'metadata'))).toBe(false);
  expect(isPoolDir(dir)).toBe(false);
  const pool = ThinPool.formatSync(dir, { size: 8 * BS + 4096, metadataSize: 64 * KiB, blockSize: BS });
  expect(pool.status().metadataBlocks.total).toBe(16);
  expect(pool.storage.data.sizeBytes).toBe(8 * BS);
  expect(pool.storage.metadata.sizeBytes).toBe(64 * KiB);
  expect(readFileSync(join(dir, 'data.hwm'), 'utf8')).toBe('0\n');
  expect(isPoolDir(dir)).toBe(true);
  expect(isPoolDir(join(dir, 'nothing-here'))).toBe(false);
  pool.closeSync();
  const one = ThinPool.formatSync(join(tmp(), 'one'), { size: BS });
  expect(one.status().dataBlocks.total).toBe(1);
  one.closeSync();
  for (const f of ['metadata', 'data', 'catalog.json']) {
    const other = join(tmp(), 'q');
    const p = ThinPool.formatSync(other, { size: 4 * BS });
    p.closeSync();
    for (const g of ['metadata', 'data', 'catalog.json']) if (g !== f) rmSync(join(other, g), { force: true });
    expect(
      thrownError(() => ThinPool.formatSync(other, { size: 4 * BS })),
      f,
    ).toEqual({
      code: 'EEXIST',
      message: `${join(other, f)} exists: ${other} already holds a pool`,
    });
  }
});

test('a failed format releases the lock: the directory can be opened again in this process', () => {
  const dir = join(tmp(), 'p');
  // A 64 KiB metadata device cannot hold the space maps of a million data blocks.
  expect(thrownError(() => ThinPool.formatSync(dir, { size: 1_000_000 * BS, metadataSize: 64 * KiB }))).toEqual({
    code: 'EINVAL',
    message: 'a data device of 1000000 blocks needs more space-map bitmaps than the metadata device has blocks (16)',
  });
  expect(existsSync(join(dir, 'lock'))).toBe(false);
  rmSync(dir, { recursive: true });
  ThinPool.formatSync(dir, { size: 4 * BS }).closeSync();
});

test('open: ENOENT without a metadata file; a missing data file or a short one fails and releases the lock', () => {
  const root = tmp();
  expect(thrownError(() => ThinPool.openSync(root))).toEqual({
    code: 'ENOENT',
    message: `${root} is not a thinpool pool (no metadata file)`,
  });
  const dir = join(root, 'p');
  const pool = ThinPool.formatSync(dir, { size: 8 * BS });
  pool.createThinSync('v', { size: 2 * BS }).writeSync(fill(BS, 1), 0);
  pool.closeSync();
  const data = readFileSync(join(dir, 'data'));
  rmSync(join(dir, 'data'));
  expect(thrownError(() => ThinPool.openSync(dir)).code).toBe('ENOENT');
  expect(existsSync(join(dir, 'lock'))).toBe(false);
  writeFileSync(join(dir, 'data'), data);
  truncateSync(join(dir, 'data'), 8 * BS - 512);
  expect(thrownError(() => ThinPool.openSync(dir))).toEqual({
    code: 'EBADSUPER',
    message: `data device is ${8 * BS - 512} bytes but the superblock (block 0) describes 8 blocks of ${BS} bytes`,
  });
  expect(thrownError(() => ThinPool.openSync(dir, { readOnly: true })).code).toBe('EBADSUPER');
  expect(() => ThinPool.openSync(dir)).toThrow(expect.objectContaining({ structure: 'superblock', mblock: 0 }));
  truncateSync(join(dir, 'data'), 8 * BS);
  const again = ThinPool.openSync(dir);
  const got = new Uint8Array(BS);
  again.volume('v').readSync(got, 0);
  expect(Buffer.compare(got, fill(BS, 1))).toBe(0);
  again.closeSync();
  // A reader's devices refuse writes.
  const ro = ThinPool.openSync(dir, { readOnly: true });
  for (const dev of [ro.storage.metadata, ro.storage.data]) {
    expect(() => dev.write(new Uint8Array(4096), 0)).toThrow(expect.objectContaining({ code: 'EROFS' }));
  }
  ro.closeSync();
});

test('a stale lock: a reader leaves the unclean marker, the next writer reports the unclean stop and removes it', () => {
  const dir = join(tmp(), 'p');
  const pool = ThinPool.formatSync(dir, { size: 16 * BS });
  const v = pool.createThinSync('v', { size: 8 * BS });
  v.writeSync(fill(BS, 1), 0);
  pool.commitSync();
  v.writeSync(fill(2 * BS, 2), BS); // written, never committed
  pool.closeSync({ commit: false });

  const clean = ThinPool.openSync(dir, { readOnly: true });
  clean.closeSync();
  expect(existsSync(join(dir, UNCLEAN_MARKER))).toBe(false);

  staleLock(dir);
  const reader = ThinPool.openSync(dir, { readOnly: true });
  expect(reader.storage.uncleanStop).toBe(false);
  expect(reader.releasedOnOpen).toBe(0);
  reader.closeSync();
  expect(readFileSync(join(dir, UNCLEAN_MARKER), 'utf8')).toBe('the last writer stopped without closing the pool\n');

  const writer = ThinPool.openSync(dir);
  expect(writer.releasedOnOpen).toBeGreaterThan(0);
  expect(writer.storage.uncleanStop).toBe(false);
  expect(existsSync(join(dir, UNCLEAN_MARKER))).toBe(false);
  writer.closeSync();

  const next = ThinPool.openSync(dir);
  expect(next.releasedOnOpen).toBe(0);
  next.closeSync();
  staleLock(dir);
  const taker = ThinPool.openSync(dir);
  expect(taker.releasedOnOpen).toBeGreaterThan(0); // a writer taking over a stale lock releases the free blocks
  expect(existsSync(join(dir, UNCLEAN_MARKER))).toBe(false);
  taker.closeSync();
  expect(existsSync(join(dir, 'lock'))).toBe(false);
});

test('a reader sees the published catalog (none: no names); a writer recovers it; records of missing devices are dropped', () => {
  const meta = new MemoryDevice(MiB);
  const data = new MemoryDevice(16 * BS);
  const catalog = new MemoryCatalogStore();
  const storage = (c = catalog) => ({ metadata: keepOpen(meta), data: keepOpen(data), catalog: c });
  const pool = ThinPool.formatStorage(storage(), { size: 16 * BS, blockSize: BS });
  pool.createThinSync('a', { size: BS });
  pool.createThinSync('b', { size: BS });
  pool.closeSync();
  const reader = ThinPool.openStorage(storage(), { readOnly: true });
  expect(reader.list().map((v) => v.name)).toEqual(['a', 'b']);
  reader.closeSync();
  const none = ThinPool.openStorage(storage(new MemoryCatalogStore()), { readOnly: true });
  expect(none.list().map((v) => [v.id, v.name])).toEqual([
    [1, undefined],
    [2, undefined],
  ]);
  none.closeSync();
  // The catalog still names b, which another tool deleted from the metadata.
  const saved = catalog.readPublished()!;
  const writer = ThinPool.openStorage(storage());
  writer.deleteSync('b');
  writer.closeSync();
  catalog.stage(saved, 'x');
  catalog.publish();
  const back = ThinPool.openStorage(storage());
  expect(back.list().map((v) => v.name)).toEqual(['a']);
  expect(back.recordOf(2)).toBeUndefined();
  back.closeSync();
  expect(catalog.readPublished()!.volumes.map((v) => v.name)).toEqual(['a']);
});

test('a writer stopped between its commit and publishing the catalog: a reader sees the staged catalog of the superblock and changes nothing', () => {
  const meta = new MemoryDevice(MiB);
  const data = new MemoryDevice(16 * BS);
  const catalog = new MemoryCatalogStore();
  const storage = () => ({ metadata: keepOpen(meta), data: keepOpen(data), catalog });
  const pool = ThinPool.formatStorage(storage(), { size: 16 * BS, blockSize: BS });
  pool.createThinSync('a', { size: BS });
  pool.createThinSync('gone', { size: BS });
  pool.closeSync();
  // The next commit makes c and deletes gone; the catalog is staged and the superblock written, then the writer
  // stops before it publishes.
  const stopping = {
    ...storage(),
    catalog: {
      readPublished: () => catalog.readPublished(),
      readStaged: () => catalog.readStaged(),
      stage: (c: CatalogData, f: string) => catalog.stage(c, f),
      publish: () => undefined,
      discardStaged: () => catalog.discardStaged(),
    },
  };
  const writer = ThinPool.openStorage(stopping);
  writer.createThinSync('c', { size: BS });
  writer.deleteSync('gone');
  writer.commitSync();
  writer.closeSync({ commit: false });
  expect(catalog.readPublished()!.volumes.map((v) => v.name)).toEqual(['a', 'gone']);
  const staged = JSON.stringify(catalog.readStaged());
  const reader = ThinPool.openStorage(storage(), { readOnly: true });
  expect(reader.list().map((v) => v.name)).toEqual(['a', 'c']);
  reader.closeSync();
  expect(JSON.stringify(catalog.readStaged()), 'a reader leaves the staged catalog where it is').toBe(staged);
  expect(catalog.readPublished()!.volumes.map((v) => v.name)).toEqual(['a', 'gone']);
  // A staged catalog of another superblock (the crash came before the superblock was written) is not seen.
  catalog.stage({ ...catalog.readStaged()!.catalog, volumes: [] }, 'another superblock');
  const before = ThinPool.openStorage(storage(), { readOnly: true });
  expect(before.list().map((v) => [v.id, v.name])).toEqual([
    [1, 'a'],
    [3, undefined],
  ]);
  before.closeSync();
  // A writer discards it: the published catalog stays, with its records of devices the metadata holds.
  const discarding = ThinPool.openStorage(storage());
  expect(catalog.readStaged()).toBeNull();
  discarding.closeSync({ commit: false });
  expect(catalog.readPublished()!.volumes.map((v) => v.name)).toEqual(['a', 'gone']);
  catalog.stage(JSON.parse(staged).catalog, JSON.parse(staged).fingerprint);
  // The next writer rolls the right one forward.
  const next = ThinPool.openStorage(storage());
  expect(next.list().map((v) => v.name)).toEqual(['a', 'c']);
  next.closeSync();
  expect(catalog.readStaged()).toBeNull();
  expect(catalog.readPublished()!.volumes.map((v) => v.name)).toEqual(['a', 'c']);
});

test('close closes both devices and releases the storage once, even when a device fails to close', () => {
  const events: string[] = [];
  const dev = (name: string, d: BlockDevice, fail = false): BlockDevice => ({
    ...keepOpen(d),
    get sizeBytes() {
      return d.sizeBytes;
    },
    close: () => {
      events.push(`close ${name}`);
      if (fail) throw new Error(`${name} close failed`);
    },
  });
  const pool = ThinPool.formatStorage(
    {
      metadata: dev('metadata', new MemoryDevice(MiB), true),
      data: dev('data', new MemoryDevice(16 * BS)),
      catalog: new MemoryCatalogStore(),
      release: () => events.push('release'),
    },
    { size: 16 * BS, blockSize: BS },
  );
  expect(() => pool.closeSync()).toThrow('metadata close failed');
  expect(events).toEqual(['close metadata', 'release']);
  expect(pool.isClosed).toBe(true);
  pool.closeSync();
  expect(events).toEqual(['close metadata', 'release']);
  const ok = ThinPool.memory({ size: 16 * BS });
  ok.closeSync();
  expect(ok.isClosed).toBe(true);
  expect(thrownError(() => ok.list()).code).toBe('ECLOSED');
});

test('formatting onto a data device smaller than the pool grows it, durably, before the superblock is written', () => {
  const events: string[] = [];
  const meta = new MemoryDevice(MiB);
  const raw = new MemoryDevice(4096);
  const data: BlockDevice = {
    ...keepOpen(raw),
    get sizeBytes() {
      return raw.sizeBytes;
    },
    resize: (s) => {
      events.push(`resize ${s}`);
      raw.resize(s);
    },
    flush: () => {
      events.push('flush');
      raw.flush();
    },
  };
  const metadata: BlockDevice = {
    ...keepOpen(meta),
    get sizeBytes() {
      return meta.sizeBytes;
    },
    write: (b, o) => {
      if (events.at(-1) !== 'metadata') events.push('metadata');
      meta.write(b, o);
    },
  };
  const pool = ThinPool.formatStorage({ metadata, data, catalog: new MemoryCatalogStore() }, { size: 8 * BS + 1, blockSize: BS });
  expect(events.slice(0, 3)).toEqual([`resize ${8 * BS}`, 'flush', 'metadata']);
  expect(raw.sizeBytes).toBe(8 * BS);
  pool.closeSync();
  events.length = 0;
  const same = ThinPool.formatStorage({ metadata, data, catalog: new MemoryCatalogStore() }, { size: 8 * BS, blockSize: BS });
  expect(events[0]).toBe('metadata');
  same.closeSync();
});

test('readAheadBytes: a read-only open of a file pool reads its metadata ahead; a writable open ignores it', () => {
  const dir = join(tmp(), 'p');
  const pool = ThinPool.formatSync(dir, { size: 64 * BS, blockSize: BS });
  pool.createThinSync('a', { size: 8 * BS }).writeSync(fill(4 * BS, 7), 0);
  pool.closeSync();
  const plain = ThinPool.openSync(dir, { readOnly: true });
  const want = plain.list();
  expect(plain.storage.metadata).not.toBeInstanceOf(ReadAheadDevice);
  plain.closeSync();
  const ahead = ThinPool.openSync(dir, { readOnly: true, readAheadBytes: 8 * 4096, cacheBlocks: 64 });
  expect(ahead.storage.metadata).toBeInstanceOf(ReadAheadDevice);
  expect(ahead.list()).toEqual(want);
  expect(thrownError(() => ahead.storage.metadata.write(new Uint8Array(4096), 0)).code).toBe('EROFS');
  ahead.closeSync();
  // Writable: the option is ignored and the pool writes as ever.
  const writer = ThinPool.openSync(dir, { readAheadBytes: 8 * 4096 });
  expect(writer.storage.metadata).not.toBeInstanceOf(ReadAheadDevice);
  writer.createThinSync('b', { size: BS });
  writer.closeSync();
  const again = ThinPool.openSync(dir, { readOnly: true, readAheadBytes: 8 * 4096 });
  expect(again.list().map((v) => v.name)).toEqual(['a', 'b']);
  again.closeSync();
});

test('cacheBlocks as a rule: given the data blocks the superblock describes, before the cache is made', () => {
  const dir = join(tmp(), 'p');
  ThinPool.formatSync(dir, { size: 40 * BS }).closeSync();
  const seen: number[] = [];
  const rule = (n: number): number => {
    seen.push(n);
    return 100 + n;
  };
  const ro = ThinPool.openSync(dir, { readOnly: true, cacheBlocks: rule });
  expect(seen).toEqual([40]);
  expect(ro.metadata.cacheBlocks).toBe(140);
  ro.closeSync();
  const rw = ThinPool.openSync(dir, { cacheBlocks: () => 70 });
  expect(rw.metadata.cacheBlocks).toBe(70);
  rw.closeSync();
  // A number is taken as it is (capped at the metadata's size, at least 64).
  const n = ThinPool.openSync(dir, { readOnly: true, cacheBlocks: 10 });
  expect(n.metadata.cacheBlocks).toBe(64);
  n.closeSync();
});
