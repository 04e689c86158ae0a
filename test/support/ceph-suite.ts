/**
 * One single-node Ceph cluster for the describe block that calls `useCephCluster` (test/support/ceph-cluster.ts
 * starts and stops it), with a librados client of the test's own connected to one RADOS pool when `ioctx` names
 * it. Started in beforeAll, stopped in afterAll (the client closed first); the getters throw before the start.
 * Kept apart from ceph-cluster.ts, which the benchmarks use without vitest.
 */
import { afterAll, beforeAll } from 'vitest';
import { RadosCluster, type RadosIoctx } from '../../src/io/librados.js';
import { type CephCluster, type CephClusterOptions, startCephCluster } from './ceph-cluster.js';

export interface CephSuite {
  /** The cluster (conf, tools, OSD control). */
  readonly ceph: CephCluster;
  /** The test's own librados connection (needs `ioctx`). */
  readonly client: RadosCluster;
  /** An I/O context on the pool `ioctx` named. */
  readonly io: RadosIoctx;
}

export function useCephCluster(opts: CephClusterOptions & { ioctx?: string }): CephSuite {
  let ceph: CephCluster | undefined;
  let client: RadosCluster | undefined;
  let io: RadosIoctx | undefined;
  beforeAll(async () => {
    ceph = await startCephCluster(opts);
    if (opts.ioctx !== undefined) {
      client = RadosCluster.connect({ conf: ceph.conf });
      io = client.ioctx(opts.ioctx);
    }
  });
  afterAll(async () => {
    client?.close();
    await ceph?.stop();
  });
  const started = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`${what}: the cluster is not started (use it inside tests, after beforeAll)`);
    return v;
  };
  return {
    get ceph() {
      return started(ceph, 'ceph');
    },
    get client() {
      return started(client, 'client (pass ioctx to useCephCluster)');
    },
    get io() {
      return started(io, 'io (pass ioctx to useCephCluster)');
    },
  };
}
