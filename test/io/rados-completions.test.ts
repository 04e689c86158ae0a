// Asynchronous librados requests (librados-aio.ts) on both completion paths: the native helper's C callback
// (native/rados_aio.c) and the koffi waiter. Each path: many requests in flight at once land and read back, a
// request's settle hook runs before its promise settles, waitAll settles every hook before it returns, a
// request librados or the helper refuses fails with a typed error, and nothing stays in flight. On a real
// single-node cluster started for this file; skipped (a failure under CI=true) without Ceph. Under CI=true the
// native helper must be built (npm ci builds it), so the native path is never silently skipped.
import { describe, expect, it } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import { RadosIoctx } from '../../src/io/librados.js';
import { haveCeph } from '../support/ceph-cluster.js';
import { useCephCluster } from '../support/ceph-suite.js';
import { seededBytes } from '../support/rng.js';

const KiB = 1024;

describe.skipIf(!haveCeph())('librados completions (needs ceph-mon, ceph-osd, ceph-common)', () => {
  const cluster = useCephCluster({ pools: ['tp'], ioctx: 'tp' });

  it('the native path is there when the helper is built (always under CI)', () => {
    const ok = RadosIoctx.useCompletionPath('native');
    if (process.env.CI === 'true') expect(ok, 'native helper not built: npm ci builds it (node-gyp)').toBe(true);
    if (ok) expect(RadosIoctx.completionPath).toBe('native');
    expect(RadosIoctx.useCompletionPath('koffi')).toBe(true);
    expect(RadosIoctx.completionPath).toBe('koffi');
  });

  for (const path of ['native', 'koffi'] as const) {
    describe(path, () => {
      const use = () => {
        const ok = RadosIoctx.useCompletionPath(path);
        if (!ok) expect(process.env.CI, 'native helper missing under CI').not.toBe('true');
        return ok;
      };

      it('64 writes and 64 reads in flight at once land and read back; hooks run before promises settle', async () => {
        if (!use()) return;
        const before = RadosIoctx.requestsStarted;
        const order: string[] = [];
        const writes: Promise<void>[] = [];
        for (let i = 0; i < 64; i++) {
          const oid = `${path}-obj-${i % 8}`;
          writes.push(
            cluster.io
              .aioWrite(oid, seededBytes(4 * KiB, i), Math.floor(i / 8) * 4 * KiB, (e) => order.push(`settle ${i} ${e === null}`))
              .then(() => {
                order.push(`resolve ${i}`);
              }),
          );
        }
        expect(RadosIoctx.inFlight).toBe(64);
        await Promise.all(writes);
        expect(RadosIoctx.inFlight).toBe(0);
        for (let i = 0; i < 64; i++) {
          expect(order).toContain(`settle ${i} true`);
          expect(order.indexOf(`settle ${i} true`)).toBeLessThan(order.indexOf(`resolve ${i}`));
        }
        const bufs = Array.from({ length: 64 }, () => new Uint8Array(4 * KiB));
        const got = await Promise.all(bufs.map((b, i) => cluster.io.aioRead(`${path}-obj-${i % 8}`, b, Math.floor(i / 8) * 4 * KiB)));
        expect(RadosIoctx.inFlight).toBe(0);
        for (let i = 0; i < 64; i++) {
          expect(got[i]).toBe(4 * KiB);
          expect(Buffer.from(bufs[i]).equals(Buffer.from(seededBytes(4 * KiB, i))), `read ${i}`).toBe(true);
        }
        // A read into part of a larger buffer fills exactly that part.
        const big = new Uint8Array(12 * KiB).fill(7);
        expect(await cluster.io.aioRead(`${path}-obj-3`, big.subarray(4 * KiB, 8 * KiB), 0)).toBe(4 * KiB);
        expect(big.subarray(0, 4 * KiB).every((x) => x === 7)).toBe(true);
        expect(Buffer.from(big.subarray(4 * KiB, 8 * KiB)).equals(Buffer.from(seededBytes(4 * KiB, 3)))).toBe(true);
        expect(big.subarray(8 * KiB).every((x) => x === 7)).toBe(true);
        // Every request above went the chosen way, none the other.
        const after = RadosIoctx.requestsStarted;
        const other = path === 'native' ? 'koffi' : 'native';
        expect(after[path] - before[path]).toBe(129);
        expect(after[other]).toBe(before[other]);
      });

      it('waitAll settles every hook before it returns; the path cannot change while requests are in flight', async () => {
        if (!use()) return;
        const settled = new Set<number>();
        const writes = Array.from({ length: 32 }, (_, i) =>
          cluster.io.aioWrite(`${path}-wait`, seededBytes(4 * KiB, 100 + i), i * 4 * KiB, (e) => {
            expect(e).toBeNull();
            settled.add(i);
          }),
        );
        let code = '';
        try {
          RadosIoctx.useCompletionPath(path === 'native' ? 'koffi' : 'native');
        } catch (e) {
          code = (e as { code: string }).code;
        }
        expect(code).toBe('EBUSY');
        cluster.io.waitAll();
        expect(settled.size).toBe(32);
        expect(RadosIoctx.inFlight).toBe(0);
        await Promise.all(writes);
        const all = new Uint8Array(128 * KiB);
        expect(cluster.io.read(`${path}-wait`, all, 0)).toBe(128 * KiB);
        for (let i = 0; i < 32; i++)
          expect(Buffer.from(all.subarray(i * 4 * KiB, (i + 1) * 4 * KiB)).equals(Buffer.from(seededBytes(4 * KiB, 100 + i)))).toBe(true);
      });

      it('a missing object reads 0 bytes; a refused request fails typed and leaves nothing in flight', async () => {
        if (!use()) return;
        expect(await cluster.io.aioRead(`${path}-never-written`, new Uint8Array(4 * KiB), 0)).toBe(0);
        const long = 'x'.repeat(3000); // longer than the helper's name buffer and the OSD's name limit
        let err: unknown = null;
        let hook: unknown = 'not called';
        await cluster.io.aioWrite(long, new Uint8Array(4 * KiB), 0, (e) => (hook = e)).catch((e) => (err = e));
        expect(isThinpoolError(err), String(err)).toBe(true);
        expect(String((err as Error).message)).toContain('write of 4096 bytes at 0 to object xxx');
        expect(isThinpoolError(hook)).toBe(true);
        expect(RadosIoctx.inFlight).toBe(0);
      });
    });
  }
});
