// Pools in Ceph RADOS (rados://CEPH_POOL/NAME) on a single-node cluster started by the test: the pool story,
// snapshots at depth, the model test, metadata checked by our checker and thin_check, one writer with fencing,
// read-only opens beside a writer (one commit, or the held metadata root).
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { isThinpoolError, ThinpoolError } from '../../src/errors.js';
import { openFileStorage } from '../../src/thin/lifecycle.js';
import { OPEN_ATTEMPTS } from '../../src/thin/rados-reader.js';
import { MemoryDevice } from '../../src/io/memory-device.js';
import { RadosDevice } from '../../src/io/rados-device.js';
import { ThinPool } from '../../src/thin/pool.js';
import { breakRadosLock, listRadosPools, parseRadosAddress, readRadosMetadata } from '../../src/thin/rados-pool.js';
import { haveCeph } from '../support/ceph-cluster.js';
import { useCephCluster } from '../support/ceph-suite.js';
import { PoolModel, applyToModel, applyToPool, expectPoolEquals, mulberry32, randomOp } from '../support/model.js';
import { verifyMetadataDevice } from '../support/pool-check.js';
import { snapshotDepthStory } from '../support/pool-stories.js';
import { seededBytes } from '../support/rng.js';

const KiB = 1024;
const MiB = 1024 * KiB;

describe.skipIf(!haveCeph())('rados: pools', () => {
  const cluster = useCephCluster({ pools: ['tp'], ioctx: 'tp' });
  let seq = 0;
  const addr = () => `rados://tp/p${seq++}`;
  const opts = () => ({ ceph: { conf: cluster.ceph.conf } });

  /** The metadata device of a pool, read-only through a connection of the test's own: our checker + thin_check. */
  function verify(address: string): void {
    const dev = RadosDevice.open(cluster.io, `${parseRadosAddress(address).name}.metadata`, { readOnly: true });
    try {
      verifyMetadataDevice(dev);
    } finally {
      dev.close();
    }
  }

  test('story: format, write, read, snapshots at depth 30, reopen; metadata passes thin_check', async () => {
    const a = addr();
    const pool = await ThinPool.format(a, { size: 256 * MiB, ...opts(), ceph: { conf: cluster.ceph.conf, objectSize: 1 * MiB } });
    expect(pool.storage.rados?.address).toBe(a);
    const full = await snapshotDepthStory(pool);
    await pool.close();
    verify(a);

    const again = await ThinPool.open(a, opts());
    expect(again.list().map((v) => v.name)).toContain('s30');
    const back = new Uint8Array(16 * MiB);
    await again.volume('base').read(back, 0);
    expect(Buffer.compare(back, full)).toBe(0);
    const b = new Uint8Array(8192);
    await again.volume('s30').read(b, 5 * MiB);
    expect(b.subarray(100, 4196).every((x) => x === 0xab)).toBe(true);
    // Discard releases data objects: blocks read as zeros afterwards.
    await again.delete('base');
    await again.close();
    verify(a);
    expect(listRadosPools('rados://tp', { conf: cluster.ceph.conf }).map((p) => p.address)).toContain(a);
  });

  test('random operation sequences with reopen match the model', () => {
    for (const seed of [11, 12]) {
      const a = addr();
      const BS = 64 * KiB;
      let pool = ThinPool.formatSync(a, { size: 256 * BS, blockSize: BS, metadataSize: 1 * MiB, ...opts() });
      const rng = mulberry32(seed);
      const model = new PoolModel();
      for (let i = 0; i < 80; i++) {
        if (rng() < 0.05) {
          pool.closeSync();
          pool = ThinPool.openSync(a, opts());
          expectPoolEquals(pool, model);
        }
        const op = randomOp(rng, model, BS);
        applyToPool(pool, op);
        applyToModel(model, op);
      }
      expectPoolEquals(pool, model);
      pool.closeSync();
      verify(a);
    }
  });

  test('many requests in flight: writes to one block in issue order, copies see earlier writes, commit waits for all', async () => {
    const a = addr();
    const pool = await ThinPool.format(a, { size: 64 * MiB, ...opts() });
    expect((pool as unknown as { asyncData: boolean }).asyncData).toBe(true);
    const v = await pool.createThin('v', { size: 4 * MiB });
    const model = new Uint8Array(4 * MiB);
    const rng = mulberry32(9);
    const issue: Array<Promise<void>> = [];
    const write = (off: number, len: number, fill: number) => {
      const b = new Uint8Array(len).fill(fill);
      model.set(b, off);
      issue.push(v.write(b, off));
    };
    for (let round = 0; round < 6; round++) {
      // 64 writes at once: many to the same few blocks (provisioning and in place), some across blocks.
      for (let i = 0; i < 64; i++) {
        const off = Math.floor(rng() * 16) * 64 * KiB + Math.floor(rng() * 60) * 1024;
        write(off, 1024 + Math.floor(rng() * 8) * 1024, 1 + Math.floor(rng() * 254));
      }
      if (round === 2) {
        await pool.snapshot('v', 'snap'); // later writes to v copy blocks that writes in flight just wrote
      }
      if (round === 4) await pool.commit();
    }
    const reads = Array.from({ length: 16 }, (_, i) => {
      const b = new Uint8Array(256 * KiB);
      return { b, off: i * 256 * KiB, p: v.read(b, i * 256 * KiB) };
    });
    await Promise.all(issue);
    for (const r of reads) await r.p;
    const back = new Uint8Array(4 * MiB);
    await v.read(back, 0);
    expect(Buffer.compare(back, model)).toBe(0);
    await pool.close();
    const again = await ThinPool.open(a, opts());
    const after = new Uint8Array(4 * MiB);
    await again.volume('v').read(after, 0);
    expect(Buffer.compare(after, model)).toBe(0);
    await again.close();
    verify(a);
  });

  test('an open that fails lets go of the pool; one overtaken by a commit (ESTALE) is tried again, a bounded number of times', async () => {
    const a = addr();
    await (await ThinPool.format(a, { size: 64 * MiB, ...opts() })).close();
    // A failure other than ESTALE passes at once, and the lock the open took is released.
    let calls = 0;
    expect(() =>
      openFileStorage(a, opts(), () => {
        calls++;
        throw new ThinpoolError('EIO', 'injected');
      }),
    ).toThrow('injected');
    expect(calls).toBe(1);
    await (await ThinPool.open(a, opts())).close(); // the writer's lock is free
    // ESTALE: read the next commit, up to OPEN_ATTEMPTS opens, each letting go of the one before.
    calls = 0;
    const got = openFileStorage(a, { ...opts(), readOnly: true }, () => {
      if (++calls < 3) throw new ThinpoolError('ESTALE', 'overtaken');
      return 'opened';
    });
    expect([got, calls]).toEqual(['opened', 3]);
    calls = 0;
    expect(() =>
      openFileStorage(a, opts(), () => {
        calls++;
        throw new ThinpoolError('ESTALE', 'overtaken every time');
      }),
    ).toThrow('overtaken every time');
    expect(calls).toBe(OPEN_ATTEMPTS);
    await (await ThinPool.open(a, opts())).close();
  });

  test('one writer: a second opener gets EBUSY naming the holder; read-only opens need no lock', async () => {
    const a = addr();
    const pool = await ThinPool.format(a, { size: 64 * MiB, ...opts() });
    await pool.createThin('v', { size: 1 * MiB });
    await pool.commit();
    let err: unknown;
    try {
      await ThinPool.open(a, opts());
    } catch (e) {
      err = e;
    }
    expect(isThinpoolError(err, 'EBUSY')).toBe(true);
    expect((err as Error).message).toContain(`process ${process.pid} on host`);
    expect((err as Error).message).toContain(`thinpool lock break ${a}`);
    const ro = await ThinPool.open(a, { ...opts(), readOnly: true });
    expect(ro.list().map((v) => v.name)).toEqual(['v']);
    await ro.close();
    await pool.close();
    const next = await ThinPool.open(a, opts()); // released by close
    await next.close();
    await expect(ThinPool.open('rados://tp/nothing-here', opts())).rejects.toThrow(/no thin pool at rados:\/\/tp\/nothing-here/);
    await expect(ThinPool.format(a, { size: 64 * MiB, ...opts() })).rejects.toThrow(/already holds a thin pool/);
  });

  test('lock break fences the old writer: its later writes fail with EFENCED and never land', async () => {
    const a = addr();
    const old = await ThinPool.format(a, { size: 64 * MiB, ...opts() });
    const v = await old.createThin('v', { size: 1 * MiB });
    await v.write(new Uint8Array(4096).fill(1), 0);
    await old.commit();
    const broken = breakRadosLock(a, { conf: cluster.ceph.conf });
    expect(broken).toHaveLength(1);
    expect(broken[0].pid).toBe(process.pid);
    const next = await ThinPool.open(a, opts());
    // The old holder writes in place (a mapped block) and into a new block: nothing lands.
    await expect(v.write(new Uint8Array(4096).fill(2), 0)).rejects.toMatchObject({ code: 'EFENCED' });
    await expect(v.write(new Uint8Array(4096).fill(3), 512 * KiB)).rejects.toMatchObject({ code: 'EFENCED' });
    await expect(old.commit()).rejects.toBeDefined();
    old.closeSync({ commit: false });
    const b = new Uint8Array(4096);
    await next.volume('v').read(b, 0);
    expect(b.every((x) => x === 1)).toBe(true);
    await next.volume('v').read(b, 512 * KiB);
    expect(b.every((x) => x === 0)).toBe(true);
    expect(next.status().dataBlocks.used).toBe(1);
    await next.close();
    verify(a);
  });
  test('a read-only open beside a writer reads the commit it opened, or fails with ESTALE: never blocks the writer reused', async () => {
    const a = addr();
    // 64 data blocks: once v is deleted, writing w in full must reuse v's blocks.
    const writer = await ThinPool.format(a, { size: 4 * MiB, ...opts() });
    const p1 = seededBytes(2 * MiB, 1);
    await (await writer.createThin('v', { size: 2 * MiB })).write(p1, 0);
    await writer.commit();
    const reader = await ThinPool.open(a, { ...opts(), readOnly: true });
    expect(reader.list().map((x) => x.name)).toEqual(['v']);
    const b = new Uint8Array(64 * KiB);
    await reader.volume('v').read(b, 0);
    expect(b).toEqual(p1.subarray(0, 64 * KiB));
    await expect(reader.volume('v').write(b, 0)).rejects.toBeDefined(); // a reader writes nothing

    await writer.delete('v');
    await writer.commit();
    const p2 = seededBytes(4 * MiB, 2);
    await (await writer.createThin('w', { size: 4 * MiB })).write(p2, 0);
    await writer.commit();
    expect(writer.status().dataBlocks.used).toBe(64);
    // v's blocks now hold w's bytes: the reader must not hand them out as v's.
    for (const off of [64 * KiB, 1 * MiB]) {
      await expect(reader.volume('v').read(b, off)).rejects.toMatchObject({ code: 'ESTALE' });
      expect(() => reader.volume('v').readSync(b, off)).toThrow(/committed since this read-only open/);
    }
    await reader.close();
    const next = await ThinPool.open(a, { ...opts(), readOnly: true }); // opens the last commit
    expect(next.list().map((x) => x.name)).toEqual(['w']);
    await next.volume('w').read(b, 1 * MiB);
    expect(b).toEqual(p2.subarray(1 * MiB, 1 * MiB + 64 * KiB));
    await next.close();
    await writer.close();
    verify(a);
  });

  test('with a held metadata root, read-only opens read the held state while the writer goes on, until it is released', async () => {
    const a = addr();
    const writer = await ThinPool.format(a, { size: 16 * MiB, ...opts() });
    const p1 = seededBytes(2 * MiB, 3);
    await (await writer.createThin('v', { size: 2 * MiB })).write(p1, 0);
    await writer.snapshot('v', 'snap');
    await writer.reserveMetadataSnap();
    // After the reservation: v deleted, its snapshot overwritten, a new volume written in full, renamed, committed.
    await writer.delete('v');
    await writer.volume('snap').write(seededBytes(2 * MiB, 4), 0);
    await writer.commit();
    await (await writer.createThin('w', { size: 4 * MiB })).write(seededBytes(4 * MiB, 5), 0);
    await writer.rename('w', 'w2');
    await writer.commit();

    const reader = await ThinPool.open(a, { ...opts(), readOnly: true });
    expect(reader.metadata.heldRoot).not.toBe(0);
    expect(
      reader
        .list()
        .map((x) => x.name)
        .sort(),
    ).toEqual(['snap', 'v']); // the catalog recorded with the held root
    const b = new Uint8Array(64 * KiB);
    await reader.volume('v').read(b, 0);
    expect(b).toEqual(p1.subarray(0, 64 * KiB));
    // The writer goes on committing: the held trees and the data they map are not reused, so the view holds.
    for (let i = 0; i < 3; i++) {
      await writer.volume('w2').write(seededBytes(64 * KiB, 10 + i), i * 64 * KiB);
      await writer.createThin(`x${i}`, { size: 1 * MiB });
      await writer.commit();
      for (const name of ['v', 'snap']) {
        await reader.volume(name).read(b, (5 + i) * 64 * KiB);
        expect(b).toEqual(p1.subarray((5 + i) * 64 * KiB, (6 + i) * 64 * KiB));
      }
    }
    await writer.releaseMetadataSnap();
    await expect(reader.volume('v').read(b, 20 * 64 * KiB)).rejects.toThrow(/released the metadata snapshot/);
    await reader.close();
    const next = await ThinPool.open(a, { ...opts(), readOnly: true });
    expect(next.metadata.heldRoot).toBe(0);
    expect(
      next
        .list()
        .map((x) => x.name)
        .sort(),
    ).toEqual(['snap', 'w2', 'x0', 'x1', 'x2']);
    await next.close();
    await writer.close();
    verify(a);
  });
  test('a writer in another process commits without pause: every read-only open and metadata copy sees one commit', async () => {
    const a = addr();
    const size = 256 * KiB;
    const pool = await ThinPool.format(a, { size: 4 * MiB, ...opts() });
    await pool.createThin('v', { size });
    await pool.close();
    // Each generation deletes v and writes a new v filled with the generation's byte, so the blocks of the
    // generation before last are reused: a reader mixing commits would see two generations, or another's bytes.
    const script = `
      const { ThinPool } = await import(${JSON.stringify(new URL('../../src/thin/pool.ts', import.meta.url).href)});
      const pool = await ThinPool.open(${JSON.stringify(a)}, { ceph: { conf: ${JSON.stringify(cluster.ceph.conf)} } });
      let stop = false;
      process.on('SIGTERM', () => { stop = true; });
      for (let gen = 1; !stop; gen++) {
        await pool.delete('v');
        await (await pool.createThin('v', { size: ${size} })).write(new Uint8Array(${size}).fill(gen & 255), 0);
        await pool.commit();
        process.stdout.write('gen ' + gen + '\\n');
        await new Promise((r) => setTimeout(r, 20));
      }
      await pool.close();`;
    const register = fileURLToPath(new URL('../support/ts-register.mjs', import.meta.url));
    const child = spawn(process.execPath, ['--import', register, '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    let gen = 0;
    child.stdout.on('data', (d: Buffer) => {
      const m = /gen (\d+)\n$/.exec(String(d));
      if (m) gen = Number(m[1]);
    });
    try {
      while (gen < 2) await new Promise((r) => setTimeout(r, 20));
      const startGen = gen;
      let ok = 0;
      let stale = 0;
      const b = new Uint8Array(size);
      for (let i = 0; i < 40 && (ok < 5 || gen - startGen < 10); i++) {
        try {
          const r = await ThinPool.open(a, { ...opts(), readOnly: true });
          try {
            // Every other open reads v in pieces with pauses between, so that commits fall between its reads;
            // the others read it whole at once (on a loaded machine four reads in a row outlast a commit).
            const piece = i % 2 === 1 ? 64 * KiB : size;
            for (let off = 0; off < size; off += piece) {
              await r.volume('v').read(b.subarray(off, off + piece), off);
              if (i % 2 === 1) await new Promise((res) => setTimeout(res, 40));
            }
          } finally {
            await r.close();
          }
          expect(b.every((x) => x === b[0])).toBe(true);
          ok++;
        } catch (e) {
          if (!isThinpoolError(e, 'ESTALE')) throw e;
          stale++;
        }
        if (i % 10 === 0) {
          let md: MemoryDevice | null = null;
          readRadosMetadata(a, { conf: cluster.ceph.conf }, (chunk, off) => {
            md ??= new MemoryDevice(2 * MiB);
            md.write(chunk, off);
          });
          verifyMetadataDevice(md!);
        }
      }
      expect(ok, `${ok} opens read one whole commit, ${stale} found theirs overtaken (ESTALE)`).toBeGreaterThan(0);
      expect(gen - startGen).toBeGreaterThan(2); // the writer went on meanwhile
    } finally {
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    }
    verify(a);
  }, 120_000);
});
