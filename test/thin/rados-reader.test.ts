// The read-only view of a rados: pool (src/thin/rados-reader.ts) without a cluster: its devices are memory devices
// with asynchronous reads the test completes when it chooses. What is checked: asynchronous reads share their
// superblock checks (one per batch, not one per read) and each is still checked by a superblock read that started
// after it completed, so a commit landing between a read and its check fails it with ESTALE.
import { describe, expect, test } from 'vitest';
import type { AsyncBlockDevice } from '../../src/io/block-device.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { ThinMetadata } from '../../src/thin/metadata.js';
import { openReaderView, sharedCheck } from '../../src/thin/rados-reader.js';

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

function view() {
  const mdDev = new MemoryDevice(4 * MiB);
  const md = ThinMetadata.format(mdDev, { nrDataBlocks: 1000, dataBlockSectors: 128 });
  md.createThin(1);
  md.commit();
  const metadata = new HeldReads(mdDev);
  const data = new HeldReads(new MemoryDevice(4 * MiB));
  data.inner.write(new Uint8Array(BLOCK).fill(7), 3 * BLOCK);
  const catalog = { readStaged: () => null, readPublished: () => null };
  const v = openReaderView({ readAll: () => null }, 'p', metadata, data, catalog);
  v.settle();
  metadata.log.length = 0;
  return { md, v, metadata, data };
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
