// The read-only view of a rados: pool (src/thin/rados-reader.ts) without a cluster: its devices are memory devices
// with asynchronous reads the test completes when it chooses. What is checked: asynchronous reads share their
// superblock checks (one per batch, not one per read) and each is still checked by a superblock read that started
// after it completed, so a commit landing between a read and its check fails it with ESTALE.
import { describe, expect, test } from 'vitest';
import type { AsyncBlockDevice } from '../../src/io/block-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { sha256Hex } from '../../src/sha256.js';
import { type CatalogData, emptyCatalog, type Envelope } from '../../src/thin/catalog.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { heldTag, OPEN_ATTEMPTS, openReaderView, sharedCheck } from '../../src/thin/rados-reader.js';
import { readSuperblock } from '../../src/thin/superblock.js';

const MiB = 1024 * 1024;
const BLOCK = 4096;

/** A memory device whose asynchronous reads wait in `pending` until the test releases them; reads are logged. */
class HeldReads implements AsyncBlockDevice {
  readonly writeBackBytes = 0;
  readonly pending: Array<() => void> = [];
  /** Offsets read, in the order the reads took their bytes (sync reads at once, async ones when released). */
  readonly log: number[] = [];
  constructor(readonly inner: MemoryDevice) {}
  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }
  read(buf: Uint8Array, off: number): void {
    this.log.push(off);
    this.inner.read(buf, off);
  }
  readAsync(buf: Uint8Array, off: number): Promise<void> {
    return new Promise((resolve) =>
      this.pending.push(() => {
        this.read(buf, off);
        resolve();
      }),
    );
  }
  /** Release the reads waiting now (not those they start), then let their continuations run. */
  async release(): Promise<number> {
    const now = this.pending.splice(0);
    for (const r of now) r();
    for (let i = 0; i < 10; i++) await Promise.resolve();
    return now.length;
  }
  write(buf: Uint8Array, off: number): void {
    this.inner.write(buf, off);
  }
  async writeAsync(buf: Uint8Array, off: number): Promise<void> {
    this.write(buf, off);
  }
  flush(): void {}
  resize(n: number): void {
    this.inner.resize(n);
  }
  discard(): boolean {
    return false;
  }
  close(): void {}
}

/** Metadata formatted (committed) on a memory device, the writer's ThinMetadata beside it. */
function formatted() {
  const dev = new MemoryDevice(4 * MiB);
  const md = ThinMetadata.format(dev, { nrDataBlocks: 1000, dataBlockSectors: 128 });
  md.commit();
  return { dev, md };
}

function view() {
  const { dev: mdDev, md } = formatted();
  md.createThin(1);
  md.commit();
  const metadata = new HeldReads(mdDev);
  const data = new HeldReads(new MemoryDevice(4 * MiB));
  data.inner.write(new Uint8Array(BLOCK).fill(7), 3 * BLOCK);
  const catalog = { readStaged: () => null, readPublished: () => null };
  const v = openReaderView({ readAll: () => null }, 'p', metadata, data, catalog);
  expect(metadata.log).toEqual([0, 0]); // the superblock before and after (no held root to read)
  v.settle();
  metadata.log.length = 0;
  return { md, v, metadata, data };
}

/** A catalog naming one volume (what the tests tell catalogs apart by). */
function catalogNaming(name: string): CatalogData {
  return { ...emptyCatalog(), volumes: { [name]: { id: 1 } } } as unknown as CatalogData;
}

/** A device whose reads of block 0 run `onBlock0` first (a writer committing between the open's reads). */
class Block0Hook extends HeldReads {
  constructor(
    inner: MemoryDevice,
    readonly onBlock0: (nth: number) => void,
  ) {
    super(inner);
  }
  #n = 0;
  override read(buf: Uint8Array, off: number): void {
    if (off === 0) this.onBlock0(this.#n++);
    super.read(buf, off);
  }
}

describe('asynchronous reads of a read-only rados: view', () => {
  test('sixteen reads completing together are checked by one superblock read started after they completed', async () => {
    const { v, metadata, data } = view();
    const bufs = Array.from({ length: 16 }, () => new Uint8Array(BLOCK));
    const done = bufs.map((b) => v.data.readAsync(b, 3 * BLOCK));
    expect(await data.release()).toBe(16);
    expect(metadata.pending.length).toBe(1); // one check for the batch
    expect(await metadata.release()).toBe(1);
    await Promise.all(done);
    expect(metadata.log).toEqual([0]);
    for (const b of bufs) expect(b[0]).toBe(7);
  });

  test('a read completing while a check is in flight waits for the next check: the one in flight started before it', async () => {
    const { v, metadata, data } = view();
    const first = v.data.readAsync(new Uint8Array(BLOCK), 0);
    await data.release();
    expect(metadata.pending.length).toBe(1);
    let secondDone = false;
    const second = v.data.readAsync(new Uint8Array(BLOCK), BLOCK).then(() => {
      secondDone = true;
    });
    const third = v.data.readAsync(new Uint8Array(BLOCK), 2 * BLOCK);
    await data.release(); // both complete while the first check is in flight
    expect(metadata.pending.length).toBe(1);
    await metadata.release(); // the first check ends: the next starts, shared by the second and third reads
    await first;
    expect(secondDone).toBe(false);
    expect(metadata.pending.length).toBe(1);
    await metadata.release();
    await Promise.all([second, third]);
    expect(metadata.log).toEqual([0, 0]);
  });

  test('a commit between a read and its check fails that read with ESTALE; reads checked before it stand', async () => {
    const { md, v, metadata, data } = view();
    const early = v.data.readAsync(new Uint8Array(BLOCK), 0);
    await data.release();
    await metadata.release();
    await early;
    const late = v.data.readAsync(new Uint8Array(BLOCK), 0);
    await data.release();
    // The writer commits after the read took its bytes and before the check reads the superblock.
    md.createThin(2);
    md.commit();
    await metadata.release();
    await expect(late).rejects.toMatchObject({ code: 'ESTALE' });
    // So does every later read, synchronous or not.
    expect(() => v.data.read(new Uint8Array(BLOCK), 0)).toThrow(/committed since this read-only open/);
  });
});

describe('sharedCheck', () => {
  function runs() {
    const started: Array<{ resolve(): void; reject(e: Error): void }> = [];
    const run = () =>
      new Promise<void>((resolve, reject) => {
        started.push({ resolve, reject });
      });
    return { started, check: sharedCheck(run) };
  }
  const tick = async () => {
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };

  test('calls before a run starts share it; calls during a run share the next; a failure is its own callers only', async () => {
    const { started, check } = runs();
    const a = check();
    expect(check()).toBe(a); // not started yet: joins
    await tick();
    expect(started.length).toBe(1);
    const b = check();
    const c = check();
    expect(started.length).toBe(1); // b and c wait for the run after a's
    started[0].reject(new Error('first'));
    await expect(a).rejects.toThrow('first');
    await tick();
    expect(started.length).toBe(2);
    started[1].resolve();
    await expect(Promise.all([b, c])).resolves.toBeDefined();
    const d = check(); // nothing going: a run of its own
    await tick();
    expect(started.length).toBe(3);
    started[2].resolve();
    await d;
  });
});

describe('opening a read-only rados: view', () => {
  const noCatalog = { readStaged: () => null, readPublished: () => null };
  const data = () => new HeldReads(new MemoryDevice(MiB));

  test('a commit between the two superblock reads starts the open over; one on every read fails it after the attempts', () => {
    const { dev, md } = formatted();
    const once = new Block0Hook(dev, (n) => {
      if (n === 1) {
        md.createThin(1);
        md.commit();
      }
    });
    const v = openReaderView({ readAll: () => null }, 'p', once, data(), noCatalog);
    expect(once.log).toEqual([0, 0, 0, 0]);
    expect(v.heldRoot).toBe(0);
    let id = 10;
    const always = new Block0Hook(dev, () => {
      md.createThin(id++);
      md.commit();
    });
    expect(() => openReaderView({ readAll: () => null }, 'p', always, data(), noCatalog)).toThrow(
      `during each of ${OPEN_ATTEMPTS} attempts`,
    );
    expect(always.log.length).toBe(2 * OPEN_ATTEMPTS);
  });

  test('the catalog is the staged one when its fingerprint is the superblock, else the published one', () => {
    const { dev } = formatted();
    const sb = new Uint8Array(BLOCK);
    dev.read(sb, 0);
    const staged = (fingerprint: string): Envelope => ({ fingerprint, catalog: catalogNaming('staged') });
    const store = (fingerprint: string) => ({ readStaged: () => staged(fingerprint), readPublished: () => catalogNaming('published') });
    const md = new HeldReads(dev);
    const ours = openReaderView({ readAll: () => null }, 'p', md, data(), store(sha256Hex(sb.subarray(0, 512))));
    expect(ours.catalog.readPublished()).toEqual(catalogNaming('staged'));
    const other = openReaderView({ readAll: () => null }, 'p', md, data(), store('another commit'));
    expect(other.catalog.readPublished()).toEqual(catalogNaming('published'));
    for (const refused of [
      () => other.catalog.stage(catalogNaming('x'), 'f'),
      () => other.catalog.publish(),
      () => other.catalog.discardStaged(),
    ])
      expect(refused).toThrow(expect.objectContaining({ code: 'EROFS', message: expect.stringMatching(/changes nothing/) }));
    expect(other.catalog.readStaged()).toBeNull();
  });

  test('before the pool is settled any commit fails a read as one that came while opening', () => {
    const { dev, md } = formatted();
    const v = openReaderView({ readAll: () => null }, 'p', new HeldReads(dev), data(), noCatalog);
    md.createThin(1);
    md.commit();
    expect(() => v.data.read(new Uint8Array(BLOCK), 0)).toThrow(/while the pool was being opened/);
    const erofs = expect.objectContaining({ code: 'EROFS', message: expect.stringMatching(/writes nothing/) });
    expect(() => v.data.write(new Uint8Array(BLOCK), 0)).toThrow(erofs);
    expect(() => v.metadata.discard(0, BLOCK)).toThrow(erofs);
    expect(() => v.metadata.resize(8 * MiB)).toThrow(erofs);
    expect(v.data.sizeBytes).toBe(MiB);
    expect(v.metadata.sizeBytes).toBe(4 * MiB);
  });
});

describe('a read-only rados: view of a held metadata root', () => {
  /** A pool whose held root is taken with device 1 and whose live state then gained device 2 (committed). */
  function held(recorded: (heldSb: ReturnType<typeof readSuperblock>) => Envelope | null) {
    const { dev, md } = formatted();
    md.createThin(1);
    const root = md.reserveMetadataSnap();
    md.commit();
    md.createThin(2);
    md.commit();
    const raw = new Uint8Array(BLOCK);
    dev.read(raw, root * BLOCK);
    const heldSb = readSuperblock(raw, root);
    const env = recorded(heldSb);
    const io = { readAll: (oid: string) => (oid === 'p.catalog.held' && env ? new TextEncoder().encode(JSON.stringify(env)) : null) };
    const metadata = new HeldReads(dev);
    const store = { readStaged: () => null, readPublished: () => catalogNaming('published') };
    const data = new HeldReads(new MemoryDevice(MiB));
    const v = openReaderView(io, 'p', metadata, data, store);
    return { dev, md, root, heldSb, v, metadata, data };
  }

  test("block 0 reads as the held state's superblock, from the view itself; the catalog is the one recorded with that root", () => {
    // The tag's form is part of the pool's format: writers of earlier versions recorded it so.
    const { dev, root, heldSb, v, metadata } = held((sb) => ({
      fingerprint: `roots ${sb.dataMappingRoot} ${sb.deviceDetailsRoot}`,
      catalog: catalogNaming('held'),
    }));
    expect(heldTag(heldSb)).toBe(`roots ${heldSb.dataMappingRoot} ${heldSb.deviceDetailsRoot}`);
    expect(v.heldRoot).toBe(root);
    expect(v.catalog.readPublished()).toEqual(catalogNaming('held'));
    const live = new Uint8Array(BLOCK);
    dev.read(live, 0);
    expect(readSuperblock(live).dataMappingRoot).not.toBe(heldSb.dataMappingRoot);
    metadata.log.length = 0;
    const b = new Uint8Array(BLOCK);
    v.metadata.read(b, 0);
    expect(metadata.log).toEqual([]); // nothing of the cluster's read
    const seen = readSuperblock(b);
    expect([seen.dataMappingRoot, seen.deviceDetailsRoot, seen.heldRoot]).toEqual([heldSb.dataMappingRoot, heldSb.deviceDetailsRoot, root]);
    // A read that starts in block 0 and goes past it: block 0's part from the view, the rest from the device.
    const two = new Uint8Array(2 * BLOCK);
    v.metadata.read(two, 0);
    expect(two.subarray(0, BLOCK)).toEqual(b);
    const block1 = new Uint8Array(BLOCK);
    dev.read(block1, BLOCK);
    expect(two.subarray(BLOCK)).toEqual(block1);
    const off = new Uint8Array(BLOCK);
    v.metadata.read(off, 100);
    expect(off.subarray(0, BLOCK - 100)).toEqual(b.subarray(100));
    expect(off.subarray(BLOCK - 100)).toEqual(block1.subarray(0, 100));
  });

  test('a held catalog that is not a catalog fails the open, naming its object', () => {
    expect(() => held(() => ({ fingerprint: 'x' }) as unknown as Envelope)).toThrow(
      expect.objectContaining({ code: 'ECORRUPT', message: expect.stringContaining('RADOS object p.catalog.held') }),
    );
  });

  test('closing a device of the view closes the device under it', () => {
    const { v, metadata } = held(() => null);
    let closed = 0;
    metadata.close = () => {
      closed++;
    };
    v.metadata.close();
    expect(closed).toBe(1);
  });

  test('a catalog recorded with another root is not used: the published one is', () => {
    const { v } = held(() => ({ fingerprint: 'roots 1 2', catalog: catalogNaming('held') }));
    expect(v.catalog.readPublished()).toEqual(catalogNaming('published'));
    expect(held(() => null).v.catalog.readPublished()).toEqual(catalogNaming('published'));
  });

  test('once settled, reads hold while the root is held and the writer commits; they fail once it is released or replaced', async () => {
    const { dev, md, root, v, metadata, data } = held(() => null);
    v.settle();
    md.createThin(3);
    md.commit();
    metadata.log.length = 0;
    v.data.read(new Uint8Array(BLOCK), 0);
    expect(metadata.log).toEqual([0, root * BLOCK]);
    const r = v.data.readAsync(new Uint8Array(BLOCK), 0);
    await data.release();
    await metadata.release(); // the superblock
    await metadata.release(); // the held root
    await r;
    // Another root's bytes where the held one was: replaced.
    const saved = new Uint8Array(BLOCK);
    dev.read(saved, root * BLOCK);
    dev.write(new Uint8Array(BLOCK).fill(9), root * BLOCK);
    expect(() => v.data.read(new Uint8Array(BLOCK), 0)).toThrow(/replaced the metadata snapshot/);
    const a = v.data.readAsync(new Uint8Array(BLOCK), 0);
    await data.release();
    await metadata.release();
    await metadata.release();
    await expect(a).rejects.toThrow(/replaced the metadata snapshot/);
    dev.write(saved, root * BLOCK);
    md.releaseMetadataSnap();
    md.commit();
    expect(() => v.data.read(new Uint8Array(BLOCK), 0)).toThrow(/released the metadata snapshot/);
  });
});
