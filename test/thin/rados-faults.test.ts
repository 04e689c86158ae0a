// A rados: pool when its OSD dies: the OSD (bluestore, so it keeps its data) is killed with SIGKILL while the
// pool writes and commits; requests fail within the configured OSD timeout with a typed error instead of
// hanging, the pool stops taking changes, and after the OSD restarts the pool reopens holding every
// acknowledged commit (later writes may have landed too, as on any block device).
import { spawn } from 'node:child_process';
import { describe, expect, test } from 'vitest';
import { isThinpoolError } from '../../src/errors.js';
import { RadosCluster } from '../../src/io/librados.js';
import { RadosDevice } from '../../src/io/rados-device.js';
import { ThinPool } from '../../src/thin/pool.js';
import { breakRadosLock } from '../../src/thin/rados-pool.js';
import { haveCeph } from '../support/ceph-cluster.js';
import { useCephCluster } from '../support/ceph-suite.js';
import { verifyMetadataDevice } from '../support/pool-check.js';
import { seededRng } from '../support/rng.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const VOL = 4 * MiB;

describe.skipIf(!haveCeph())('rados: pool faults', () => {
  const cluster = useCephCluster({ pools: ['tp'], objectStore: 'bluestore' });

  test('OSD killed during writes: typed errors within the timeout, then every acknowledged commit survives a restart', async () => {
    const address = 'rados://tp/faulty';
    const timeout = 3;
    const pool = await ThinPool.format(address, { size: 64 * MiB, ceph: { conf: cluster.ceph.conf, osdTimeoutSeconds: timeout } });
    const v = await pool.createThin('v', { size: VOL });
    await pool.commit();
    const model = new Uint8Array(VOL);
    let acked = model.slice();
    /** Fill bytes written to each 4 KiB chunk since the last acknowledged commit. */
    const since = new Map<number, Set<number>>();
    const rng = seededRng(5);

    // The OSD dies a moment after the write loop starts; the loop blocks the event loop, so the kill comes from
    // a child process (it signals only the OSD this test started).
    const osdPid = cluster.ceph.osdPid();
    const killer = spawn('sh', ['-c', `sleep 0.5; kill -9 ${osdPid}`], { stdio: 'ignore' });
    let failure: unknown;
    let failedAfterMs = 0;
    let rounds = 0;
    for (; rounds < 100_000 && failure === undefined; rounds++) {
      for (let i = 0; i < 8; i++) {
        const off = Math.floor(rng() * (VOL / 4096)) * 4096;
        const b = new Uint8Array(4096).fill(1 + Math.floor(rng() * 255));
        // Recorded before the write: a write that times out was sent and may still land when the OSD returns.
        const c = off / 4096;
        (since.get(c) ?? since.set(c, new Set()).get(c)!).add(b[0]);
        const t0 = Date.now();
        try {
          v.writeSync(b, off);
        } catch (e) {
          failure = e;
          failedAfterMs = Date.now() - t0;
          break;
        }
        model.set(b, off);
      }
      if (failure !== undefined) break;
      const t0 = Date.now();
      try {
        pool.commitSync();
        acked = model.slice();
        since.clear();
      } catch (e) {
        failure = e;
        failedAfterMs = Date.now() - t0;
      }
    }
    await new Promise((r) => killer.on('close', r));
    expect(rounds).toBeGreaterThan(0);
    expect(isThinpoolError(failure, 'EIO'), String(failure)).toBe(true);
    expect((failure as Error).message).toMatch(/timed out/);
    expect(failedAfterMs).toBeGreaterThanOrEqual((timeout - 1) * 1000); // it waited for the bound, not forever
    // No more changes: the pool is read-only or failed, or its next commit of a change fails the same way. (When
    // the failed request was an in-place data write, nothing is left to commit, so a change is made first: a
    // data device error fails the request, as in dm-thin, and only a failed metadata commit stops the pool.)
    if (pool.mode === 'write') {
      await pool.createThin('after-the-fault', { size: 64 * KiB });
      await expect(pool.commit()).rejects.toMatchObject({ code: 'EIO' });
    }
    expect(pool.mode).not.toBe('write');
    pool.closeSync({ commit: false });

    await cluster.ceph.startOsd();
    breakRadosLock(address, { conf: cluster.ceph.conf }); // the dead writer's lock outlives it, as a crashed host's would
    const again = await ThinPool.open(address, { ceph: { conf: cluster.ceph.conf } });
    const back = new Uint8Array(VOL);
    await again.volume('v').read(back, 0);
    // Acknowledged bytes stay unless a later write replaced them: writes into blocks an acknowledged commit
    // mapped go in place and may land without a commit, as on any block device before a flush.
    for (let c = 0; c < VOL / 4096; c++) {
      const got = back.subarray(c * 4096, (c + 1) * 4096);
      if (Buffer.compare(got, acked.subarray(c * 4096, (c + 1) * 4096)) === 0) continue;
      const later = since.get(c);
      expect(
        later !== undefined && got.every((x) => x === got[0]) && later.has(got[0]),
        `chunk ${c} holds neither its acknowledged bytes nor a later write`,
      ).toBe(true);
    }
    await again.close();

    const client = RadosCluster.connect({ conf: cluster.ceph.conf });
    try {
      const md = RadosDevice.open(client.ioctx('tp'), 'faulty.metadata', { readOnly: true });
      verifyMetadataDevice(md);
      md.close();
    } finally {
      client.close();
    }
  });
});
