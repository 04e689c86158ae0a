import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isThinpoolError } from '../../src/errors.js';
import {
  type BlockDevice,
  CrashClock,
  CrashDevice,
  FaultDevice,
  FileDevice,
  MemoryDevice,
  RecordingDevice,
  allocatedBytes,
} from '../../src/io/index.js';

import { RadosDevice } from '../../src/io/rados-device.js';
import { haveCeph } from '../support/ceph-cluster.js';
import { useCephCluster } from '../support/ceph-suite.js';
import { seededRng, seededBytes } from '../support/rng.js';

const KiB = 1024;

const seeded = seededRng;

/**
 * Read into a buffer that holds other bytes first (0xa5): a read must set every byte of it, zeros where the
 * device holds nothing (a reused buffer, as the engine's caches hand out, must not show through).
 */
function readAt(dev: BlockDevice, offset: number, length: number): Uint8Array {
  const b = new Uint8Array(length).fill(0xa5);
  dev.read(b, offset);
  return b;
}

function isZero(b: Uint8Array): boolean {
  return b.every((x) => x === 0);
}

/** Fast byte comparison; reports the first differing offset. */
function expectBytes(actual: Uint8Array, expected: Uint8Array): void {
  if (Buffer.from(actual.buffer, actual.byteOffset, actual.length).equals(expected)) return;
  let i = 0;
  while (i < actual.length && i < expected.length && actual[i] === expected[i]) i++;
  expect.fail(`bytes differ at ${i} (lengths ${actual.length} / ${expected.length})`);
}

function expectCode(fn: () => unknown, code: string): void {
  let thrown: unknown;
  try {
    fn();
  } catch (e) {
    thrown = e;
  }
  expect(isThinpoolError(thrown), `expected ThinpoolError ${code}, got ${String(thrown)}`).toBe(true);
  expect((thrown as { code: string }).code).toBe(code);
}

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'thinpool-io-'));
afterAll(() => fs.rmSync(tmpDir, { recursive: true, force: true }));
let fileSeq = 0;

/** The shared `BlockDevice` contract; `make(size)` returns a fresh open device of `size` bytes. */
function blockDeviceContract(name: string, make: (sizeBytes: number) => BlockDevice): void {
  describe(`BlockDevice contract: ${name}`, () => {
    it('reads unwritten bytes and bytes past the end as zeros', () => {
      const dev = make(1024 * KiB);
      expect(dev.sizeBytes).toBe(1024 * KiB);
      expect(isZero(readAt(dev, 0, 8 * KiB))).toBe(true);
      expect(isZero(readAt(dev, 1024 * KiB - 100, 300))).toBe(true);
      expect(isZero(readAt(dev, 5000 * KiB, 77))).toBe(true);
      dev.close();
    });

    it('round-trips writes at unaligned offsets and lengths', () => {
      const dev = make(1024 * KiB);
      const cases: Array<[number, number]> = [
        [0, 1],
        [1, 511],
        [513, 4096],
        [64 * KiB - 3, 7], // straddles a 64 KiB boundary
        [100_001, 200_003],
      ];
      cases.forEach(([off, len], i) => {
        const data = seededBytes(len, i + 1);
        dev.write(data, off);
        expectBytes(readAt(dev, off, len), data);
      });
      // Neighbours of a small write are untouched.
      dev.write(new Uint8Array([0xaa, 0xbb]), 700_000);
      expectBytes(readAt(dev, 699_999, 4), new Uint8Array([0, 0xaa, 0xbb, 0]));
      // Overwrite in the middle of an earlier write.
      const base = seededBytes(10_000, 42);
      dev.write(base, 800_000);
      dev.write(new Uint8Array(3).fill(9), 805_000);
      const expected = base.slice();
      expected.fill(9, 5000, 5003);
      expectBytes(readAt(dev, 800_000, 10_000), expected);
      dev.flush();
      expectBytes(readAt(dev, 800_000, 10_000), expected);
      dev.close();
    });

    it('grows on a write past the end', () => {
      const dev = make(64 * KiB);
      const data = seededBytes(1000, 7);
      dev.write(data, 200 * KiB + 5);
      expect(dev.sizeBytes).toBe(200 * KiB + 5 + 1000);
      expectBytes(readAt(dev, 200 * KiB + 5, 1000), data);
      expect(isZero(readAt(dev, 64 * KiB, 136 * KiB + 5))).toBe(true);
      dev.close();
    });

    it('resizes: growing exposes zeros, shrinking drops the tail', () => {
      const dev = make(256 * KiB);
      dev.write(seededBytes(256 * KiB, 3), 0);
      dev.resize(100 * KiB + 3);
      expect(dev.sizeBytes).toBe(100 * KiB + 3);
      expectBytes(readAt(dev, 0, 100 * KiB + 3), seededBytes(256 * KiB, 3).subarray(0, 100 * KiB + 3));
      expect(isZero(readAt(dev, 100 * KiB + 3, 10))).toBe(true);
      dev.resize(300 * KiB);
      expect(dev.sizeBytes).toBe(300 * KiB);
      expect(isZero(readAt(dev, 100 * KiB + 3, 200 * KiB - 3))).toBe(true);
      expectBytes(readAt(dev, 0, 4), seededBytes(256 * KiB, 3).subarray(0, 4));
      dev.close();
    });

    it('discard: a range reported released reads as zeros, otherwise it is unchanged', () => {
      const dev = make(1024 * KiB);
      const data = seededBytes(1024 * KiB, 11);
      dev.write(data, 0);
      for (const [off, len] of [
        [128 * KiB, 256 * KiB],
        [600 * KiB + 17, 100 * KiB + 5],
        [900 * KiB + 1, 100],
      ] as Array<[number, number]>) {
        const before = readAt(dev, off, len);
        const ok = dev.discard(off, len);
        const after = readAt(dev, off, len);
        if (ok) expect(isZero(after)).toBe(true);
        else expectBytes(after, before);
        // Bytes around the range survive.
        expectBytes(readAt(dev, off - 1, 1), data.subarray(off - 1, off));
        expectBytes(readAt(dev, off + len, 1), data.subarray(off + len, off + len + 1));
      }
      expect(dev.sizeBytes).toBe(1024 * KiB);
      dev.close();
    });

    it('rejects bad arguments with EINVAL', () => {
      const dev = make(64 * KiB);
      expectCode(() => dev.read(new Uint8Array(1), -1), 'EINVAL');
      expectCode(() => dev.write(new Uint8Array(1), 1.5), 'EINVAL');
      expectCode(() => dev.resize(-4), 'EINVAL');
      dev.close();
    });

    it('throws ECLOSED after close', () => {
      const dev = make(64 * KiB);
      dev.close();
      expectCode(() => dev.read(new Uint8Array(1), 0), 'ECLOSED');
      expectCode(() => dev.write(new Uint8Array(1), 0), 'ECLOSED');
      expectCode(() => dev.flush(), 'ECLOSED');
      expectCode(() => dev.resize(0), 'ECLOSED');
      expectCode(() => dev.discard(0, 1), 'ECLOSED');
      expectCode(() => dev.close(), 'ECLOSED');
    });
  });
}

blockDeviceContract('FileDevice', (size) => FileDevice.create(path.join(tmpDir, `dev-${fileSeq++}.img`), size));
blockDeviceContract('MemoryDevice', (size) => new MemoryDevice(size));
blockDeviceContract('CrashDevice (no crash)', (size) => new CrashDevice(new CrashClock(), size));
blockDeviceContract('FaultDevice (no faults)', (size) => new FaultDevice(new MemoryDevice(size)));
blockDeviceContract('RecordingDevice', (size) => new RecordingDevice(new MemoryDevice(size)));

describe.skipIf(!haveCeph())('on a Ceph cluster', () => {
  const cluster = useCephCluster({ pools: ['tp'], ioctx: 'tp' });
  // 64 KiB objects: the contract's ranges cross many object boundaries; 4 MiB: the default.
  blockDeviceContract('RadosDevice (64 KiB objects)', (size) =>
    RadosDevice.create(cluster.io, `dev-${fileSeq++}`, size, { objectSize: 64 * KiB }),
  );
  blockDeviceContract('RadosDevice (4 MiB objects)', (size) => RadosDevice.create(cluster.io, `dev-${fileSeq++}`, size));

  describe('RadosDevice', () => {
    it('many requests in flight: issue order per byte, async and sync mixed; flush waits for all', async () => {
      const dev = RadosDevice.create(cluster.io, `async-${fileSeq++}`, 1024 * KiB, { objectSize: 64 * KiB });
      const model = new Uint8Array(1024 * KiB);
      const rng = seeded(77);
      const pending: Array<Promise<void>> = [];
      for (let i = 0; i < 300; i++) {
        const off = Math.floor(rng() * 1000 * KiB);
        const data = seededBytes(1 + Math.floor(rng() * 20 * KiB), i);
        model.set(data, off);
        if (i % 10 === 9)
          dev.write(data, off); // a synchronous write lands after the async ones before it
        else pending.push(dev.writeAsync(data, off));
      }
      dev.flush(); // returns only when every write above is acknowledged
      expectBytes(readAt(dev, 0, 1024 * KiB), model);
      await Promise.all(pending);
      const reads = Array.from({ length: 16 }, (_, i) => {
        const b = new Uint8Array(64 * KiB + 7).fill(0xa5);
        return dev.readAsync(b, i * 60 * KiB).then(() => expectBytes(b, model.subarray(i * 60 * KiB, i * 60 * KiB + b.length)));
      });
      await Promise.all(reads);
      const past = new Uint8Array(100).fill(1);
      await dev.readAsync(past, 2000 * KiB);
      expect(isZero(past)).toBe(true);
      dev.close();
    });

    it('keeps size and contents across open; removes whole objects on discard and shrink', () => {
      const dev = RadosDevice.create(cluster.io, 'persist', 256 * KiB, { objectSize: 64 * KiB });
      expectCode(() => RadosDevice.create(cluster.io, 'persist', 4096), 'EEXIST');
      dev.write(seededBytes(256 * KiB, 4), 0);
      expect(dev.objectCount()).toBe(4);
      dev.write(seededBytes(10, 5), 300 * KiB); // grows: recorded by flush
      dev.flush();
      dev.close();
      const again = RadosDevice.open(cluster.io, 'persist');
      expect(again.sizeBytes).toBe(300 * KiB + 10);
      expect(again.objectSize).toBe(64 * KiB);
      expectBytes(readAt(again, 0, 256 * KiB), seededBytes(256 * KiB, 4));
      expectBytes(readAt(again, 300 * KiB, 10), seededBytes(10, 5));
      expect(again.discard(64 * KiB, 128 * KiB)).toBe(true);
      expect(again.objectCount()).toBe(3);
      again.resize(32 * KiB);
      expect(again.objectCount()).toBe(1);
      expect(cluster.io.size('persist.0000000000000000')).toBe(32 * KiB);
      again.close();
      const ro = RadosDevice.open(cluster.io, 'persist', { readOnly: true });
      expect(ro.sizeBytes).toBe(32 * KiB);
      expectCode(() => ro.write(new Uint8Array(1), 0), 'EROFS');
      ro.close();
      RadosDevice.destroy(cluster.io, 'persist');
      expect(RadosDevice.exists(cluster.io, 'persist')).toBe(false);
      expectCode(() => RadosDevice.open(cluster.io, 'persist'), 'ENOENT');
    });
  });
});

describe('FileDevice', () => {
  it('create makes a sparse file and fails with EEXIST if it exists', () => {
    const p = path.join(tmpDir, `create-${fileSeq++}.img`);
    const dev = FileDevice.create(p, 64 * 1024 * KiB);
    expect(fs.statSync(p).size).toBe(64 * 1024 * KiB);
    expect(allocatedBytes(p)).toBeLessThan(1024 * KiB);
    dev.close();
    expectCode(() => FileDevice.create(p, 4096), 'EEXIST');
  });

  it('open sees the file size and contents; read-only rejects writes', () => {
    const p = path.join(tmpDir, `open-${fileSeq++}.img`);
    const dev = FileDevice.create(p, 8 * KiB);
    dev.write(seededBytes(100, 5), 4000);
    dev.flush();
    dev.close();
    const ro = FileDevice.open(p, { readOnly: true });
    expect(ro.sizeBytes).toBe(8 * KiB);
    expectBytes(readAt(ro, 4000, 100), seededBytes(100, 5));
    expectCode(() => ro.write(new Uint8Array(1), 0), 'EROFS');
    expect(ro.discard(0, 8 * KiB)).toBe(false);
    ro.close();
    expectCode(() => FileDevice.open(path.join(tmpDir, 'missing.img')), 'ENOENT');
  });

  it('discard punches a hole for large ranges and declines small ones', () => {
    const p = path.join(tmpDir, `punch-${fileSeq++}.img`);
    const dev = FileDevice.create(p, 1024 * KiB);
    dev.write(seededBytes(1024 * KiB, 9), 0);
    dev.flush();
    expect(dev.discard(0, 4 * KiB)).toBe(false);
    const before = allocatedBytes(p);
    if (dev.discard(256 * KiB, 512 * KiB)) {
      expect(allocatedBytes(p)).toBeLessThan(before);
      expect(isZero(readAt(dev, 256 * KiB, 512 * KiB))).toBe(true);
      expect(fs.statSync(p).size).toBe(1024 * KiB);
    }
    dev.close();
  });
});

describe('MemoryDevice', () => {
  it('is sparse and snapshots are deep copies', () => {
    const dev = new MemoryDevice(1024 * 1024 * KiB);
    expect(dev.allocatedBytes()).toBe(0);
    dev.write(new Uint8Array([1]), 500 * 1024 * KiB);
    expect(dev.allocatedBytes()).toBe(64 * KiB);
    const snap = dev.snapshot();
    dev.write(new Uint8Array([2]), 500 * 1024 * KiB);
    expectBytes(readAt(snap, 500 * 1024 * KiB, 1), new Uint8Array([1]));
    expect(dev.discard(0, dev.sizeBytes)).toBe(true);
    expect(dev.allocatedBytes()).toBe(0);
  });
});

describe('CrashDevice', () => {
  const never = () => 0.99; // keeps no unflushed update
  const always = () => 0; // keeps every update; the last one is "torn" with every sector landing

  it('loses unflushed writes and keeps flushed ones', () => {
    const clock = new CrashClock();
    const dev = new CrashDevice(clock, 64 * KiB);
    dev.write(seededBytes(1000, 1), 0);
    dev.flush();
    dev.write(seededBytes(1000, 2), 2000);
    expectBytes(readAt(dev, 2000, 1000), seededBytes(1000, 2)); // visible before the crash
    clock.crash(never);
    const img = dev.afterCrash();
    expectBytes(readAt(img, 0, 1000), seededBytes(1000, 1));
    expect(isZero(readAt(img, 2000, 1000))).toBe(true);
    expectCode(() => dev.read(new Uint8Array(1), 0), 'EIO');
  });

  it('may keep unflushed writes', () => {
    const clock = new CrashClock();
    const dev = new CrashDevice(clock, 64 * KiB);
    dev.write(seededBytes(1000, 1), 0);
    dev.write(seededBytes(1000, 2), 2000);
    clock.crash(always);
    const img = dev.afterCrash();
    expectBytes(readAt(img, 0, 1000), seededBytes(1000, 1));
    expectBytes(readAt(img, 2000, 1000), seededBytes(1000, 2));
  });

  it('crashes all devices of a clock together and continues from the image', () => {
    const clock = new CrashClock();
    const meta = new CrashDevice(clock, 64 * KiB);
    const data = new CrashDevice(clock, 64 * KiB);
    meta.write(seededBytes(10, 1), 0);
    data.write(seededBytes(10, 2), 0);
    data.flush();
    clock.crash(never);
    expect(isZero(readAt(meta.afterCrash(), 0, 10))).toBe(true);
    expectBytes(readAt(data.afterCrash(), 0, 10), seededBytes(10, 2));
    const next = new CrashDevice(new CrashClock(), data.afterCrash());
    expectBytes(readAt(next, 0, 10), seededBytes(10, 2));
  });

  it('tears the last kept write at 512-byte sector granularity', () => {
    const old = seededBytes(8 * KiB, 100);
    const neu = seededBytes(8 * KiB, 200);
    const off = 1000; // unaligned: touches partial sectors at both ends
    const len = 5000;
    let torn = 0;
    for (let seed = 1; seed <= 200; seed++) {
      const img = new MemoryDevice(16 * KiB);
      img.write(old, 0);
      const clock = new CrashClock();
      const dev = new CrashDevice(clock, img);
      dev.write(neu.subarray(off, off + len), off);
      clock.crash(seeded(seed));
      const out = readAt(dev.afterCrash(), 0, 8 * KiB);
      let landed = 0;
      let sectors = 0;
      for (let s = 0; s < 8 * KiB; s += 512) {
        const lo = Math.max(s, off);
        const hi = Math.min(s + 512, off + len);
        if (lo >= hi) {
          expectBytes(out.subarray(s, s + 512), old.subarray(s, s + 512));
          continue;
        }
        sectors++;
        const got = out.subarray(lo, hi);
        const isNew = got.every((b, i) => b === neu[lo + i]);
        const isOld = got.every((b, i) => b === old[lo + i]);
        expect(isNew || isOld).toBe(true);
        if (isNew) landed++;
        // Bytes of the sector outside the write are never changed.
        expectBytes(out.subarray(s, lo), old.subarray(s, lo));
        expectBytes(out.subarray(hi, s + 512), old.subarray(hi, s + 512));
      }
      if (landed > 0 && landed < sectors) torn++;
    }
    expect(torn).toBeGreaterThan(10);
  });

  it('armAt(n) fails the n-th I/O call across devices and downs the clock', () => {
    const workload = (clock: CrashClock) => {
      const a = new CrashDevice(clock, 64 * KiB);
      const b = new CrashDevice(clock, 64 * KiB);
      a.write(seededBytes(10, 1), 0); // op 0
      b.write(seededBytes(10, 2), 0); // op 1
      a.flush(); // op 2
      b.read(new Uint8Array(10), 0); // op 3
      b.flush(); // op 4
      return [a, b] as const;
    };
    const full = new CrashClock();
    workload(full);
    expect(full.ops).toBe(5);

    const clock = new CrashClock();
    clock.armAt(2);
    let err: unknown;
    try {
      workload(clock);
    } catch (e) {
      err = e;
    }
    expect(isThinpoolError(err, 'EIO')).toBe(true);
    expect(clock.ops).toBe(2);
    expect(clock.down).toBe(true);
    // The flush at op 2 never happened: nothing is durable.
    clock.crash(never);
    expect(clock.ops).toBe(2);
  });

  it('after an armed crash every later call throws EIO', () => {
    const clock = new CrashClock();
    const dev = new CrashDevice(clock, 64 * KiB);
    dev.write(seededBytes(10, 1), 0); // op 0
    dev.flush(); // op 1
    clock.armAt(3);
    dev.write(seededBytes(10, 2), 0); // op 2
    expectCode(() => dev.flush(), 'EIO');
    expectCode(() => dev.read(new Uint8Array(1), 0), 'EIO');
    expectCode(() => dev.write(new Uint8Array(1), 0), 'EIO');
    expectCode(() => dev.resize(0), 'EIO');
    clock.crash(never);
    expectBytes(readAt(dev.afterCrash(), 0, 10), seededBytes(10, 1));
  });
});

describe('FaultDevice', () => {
  it('fails exactly the n-th op of each kind, once, with EIO', () => {
    const dev = new FaultDevice(new MemoryDevice(64 * KiB));
    dev.failAt({ read: 1, write: 2, flush: 0 });
    const b = new Uint8Array(4);
    dev.read(b, 0);
    expectCode(() => dev.read(b, 0), 'EIO');
    dev.read(b, 0);
    expect(dev.reads).toBe(3);

    dev.write(seededBytes(4, 1), 0);
    dev.write(seededBytes(4, 2), 0);
    expectCode(() => dev.write(seededBytes(4, 3), 0), 'EIO');
    expectBytes(readAt(dev, 0, 4), seededBytes(4, 2)); // the failed write did not land
    dev.write(seededBytes(4, 4), 0);
    expect(dev.writes).toBe(4);

    expectCode(() => dev.flush(), 'EIO');
    dev.flush();
    expect(dev.flushes).toBe(2);

    dev.failAt({ write: dev.writes });
    expectCode(() => dev.write(b, 0), 'EIO');
  });
});

describe('RecordingDevice', () => {
  it('replaying a prefix reproduces the state at that point', () => {
    const rec = new RecordingDevice(new MemoryDevice(256 * KiB));
    const states: Uint8Array[] = [readAt(rec, 0, 256 * KiB)];
    const ops: Array<() => void> = [
      () => rec.write(seededBytes(5000, 1), 100),
      () => rec.flush(),
      () => rec.write(seededBytes(300, 2), 4000),
      () => rec.discard(0, 64 * KiB),
      () => rec.write(seededBytes(10, 3), 200 * KiB),
      () => rec.resize(128 * KiB),
      () => rec.flush(),
    ];
    for (const op of ops) {
      op();
      states.push(readAt(rec, 0, 256 * KiB));
    }
    expect(rec.events.length).toBe(ops.length);
    for (let prefix = 0; prefix <= rec.events.length; prefix++) {
      const target = new MemoryDevice(256 * KiB);
      rec.replay(prefix, target);
      expectBytes(readAt(target, 0, 256 * KiB), states[prefix]);
    }
    // A target that refuses discards still ends up with the same contents.
    const refusing = new MemoryDevice(256 * KiB);
    const target: BlockDevice = {
      get sizeBytes() {
        return refusing.sizeBytes;
      },
      read: (b, o) => refusing.read(b, o),
      write: (b, o) => refusing.write(b, o),
      flush: () => refusing.flush(),
      resize: (n) => refusing.resize(n),
      discard: () => false,
      close: () => refusing.close(),
    };
    rec.replay(4, target);
    expectBytes(readAt(refusing, 0, 256 * KiB), states[4]);
    expectCode(() => rec.replay(rec.events.length + 1, new MemoryDevice(0)), 'EINVAL');
  });
});
